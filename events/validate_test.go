package events_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pcm-project/pcm/events"
)

var t0 = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

func ptr[T any](v T) *T { return &v }

func validJob() events.JobOffered {
	return events.JobOffered{
		JobID:          "01JOB",
		Name:           "install editor",
		Command:        events.CommandLine{Name: "install", Argv: []string{"/bin/true"}, Automated: true, Timeout: events.Duration(time.Minute)},
		Targets:        []events.Target{{Kind: events.TargetGroup, Name: "lab"}},
		OfferAfter:     t0,
		MandatoryAfter: ptr(t0.Add(time.Hour)),
		ExpireAfter:    t0.Add(24 * time.Hour),
	}
}

// TestJobValidationRules covers every rule of a job offer with a valid and an
// invalid case, and asserts the sentinel of each invalid one.
func TestJobValidationRules(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*events.JobOffered)
		want   error // nil: valid
	}{
		{"id: 64 chars ok", func(j *events.JobOffered) { j.JobID = strings.Repeat("a", 64) }, nil},
		{"id: dash and underscore ok", func(j *events.JobOffered) { j.JobID = "a-b_C9" }, nil},
		{"id: 65 chars", func(j *events.JobOffered) { j.JobID = strings.Repeat("a", 65) }, events.ErrInvalidID},
		{"id: empty", func(j *events.JobOffered) { j.JobID = "" }, events.ErrInvalidID},
		{"id: dot", func(j *events.JobOffered) { j.JobID = "a.b" }, events.ErrInvalidID},
		{"id: space", func(j *events.JobOffered) { j.JobID = "a b" }, events.ErrInvalidID},
		{"id: wildcard star", func(j *events.JobOffered) { j.JobID = "a*" }, events.ErrInvalidID},
		{"id: wildcard gt", func(j *events.JobOffered) { j.JobID = ">" }, events.ErrInvalidID},
		{"id: unicode", func(j *events.JobOffered) { j.JobID = "jöb" }, events.ErrInvalidID},
		{"target: client ok", func(j *events.JobOffered) { j.Targets = []events.Target{{Kind: events.TargetClient, Name: "ws-1"}} }, nil},
		{"target: all ok", func(j *events.JobOffered) { j.Targets = []events.Target{{Kind: events.TargetAll}} }, nil},
		{"target: none", func(j *events.JobOffered) { j.Targets = nil }, events.ErrInvalidTarget},
		{"target: unknown kind", func(j *events.JobOffered) { j.Targets = []events.Target{{Kind: "site", Name: "x"}} }, events.ErrInvalidTarget},
		{"target: all with name", func(j *events.JobOffered) { j.Targets = []events.Target{{Kind: events.TargetAll, Name: "x"}} }, events.ErrInvalidTarget},
		{"target: bad client id", func(j *events.JobOffered) { j.Targets = []events.Target{{Kind: events.TargetClient, Name: "a.b"}} }, events.ErrInvalidID},
		{"window: offer == mandatory ok", func(j *events.JobOffered) { j.MandatoryAfter = ptr(j.OfferAfter) }, nil},
		{"window: optional ok", func(j *events.JobOffered) { j.MandatoryAfter = nil }, nil},
		{"window: mandatory before offer", func(j *events.JobOffered) { j.MandatoryAfter = ptr(j.OfferAfter.Add(-time.Second)) }, events.ErrTimeWindow},
		{"window: mandatory == expire", func(j *events.JobOffered) { j.MandatoryAfter = ptr(j.ExpireAfter) }, events.ErrTimeWindow},
		{"window: mandatory after expire", func(j *events.JobOffered) { j.MandatoryAfter = ptr(j.ExpireAfter.Add(time.Hour)) }, events.ErrTimeWindow},
		{"window: expire before offer", func(j *events.JobOffered) { j.MandatoryAfter = nil; j.ExpireAfter = j.OfferAfter.Add(-time.Hour) }, events.ErrTimeWindow},
		{"window: missing offer", func(j *events.JobOffered) { j.OfferAfter = time.Time{} }, events.ErrTimeWindow},
		{"window: missing expire", func(j *events.JobOffered) { j.ExpireAfter = time.Time{} }, events.ErrTimeWindow},
		{"argv: with args ok", func(j *events.JobOffered) { j.Command.Argv = []string{"msiexec", "/i", "x.msi"} }, nil},
		{"argv: empty", func(j *events.JobOffered) { j.Command.Argv = nil }, events.ErrEmptyArgv},
		{"argv: empty program", func(j *events.JobOffered) { j.Command.Argv = []string{""} }, events.ErrEmptyArgv},
		{"argv: NUL byte", func(j *events.JobOffered) { j.Command.Argv = []string{"echo", "a\x00b"} }, events.ErrInvalidArgv},
		{"timeout: 24h ok", func(j *events.JobOffered) { j.Command.Timeout = events.Duration(24 * time.Hour) }, nil},
		{"timeout: zero", func(j *events.JobOffered) { j.Command.Timeout = 0 }, events.ErrTimeout},
		{"timeout: negative", func(j *events.JobOffered) { j.Command.Timeout = events.Duration(-time.Second) }, events.ErrTimeout},
		{"timeout: over 24h", func(j *events.JobOffered) { j.Command.Timeout = events.Duration(25 * time.Hour) }, events.ErrTimeout},
		{"background: automated ok", func(j *events.JobOffered) { j.Command.Background = true }, nil},
		{"background: not automated", func(j *events.JobOffered) { j.Command.Background = true; j.Command.Automated = false }, events.ErrBackgroundNotAutomated},
		{"platform: exact ok", func(j *events.JobOffered) { j.Command.Platforms = []string{"linux/amd64"} }, nil},
		{"platform: wildcards ok", func(j *events.JobOffered) { j.Command.Platforms = []string{"windows/*", "*/arm64", "*/*"} }, nil},
		{"platform: no slash", func(j *events.JobOffered) { j.Command.Platforms = []string{"linux"} }, events.ErrPlatform},
		{"platform: two slashes", func(j *events.JobOffered) { j.Command.Platforms = []string{"linux/amd64/v3"} }, events.ErrPlatform},
		{"platform: unknown os", func(j *events.JobOffered) { j.Command.Platforms = []string{"beos/amd64"} }, events.ErrPlatform},
		{"platform: unknown arch", func(j *events.JobOffered) { j.Command.Platforms = []string{"linux/amd46"} }, events.ErrPlatform},
		{"exit codes: 0 and 3010 ok", func(j *events.JobOffered) { j.Command.SuccessExitCodes = []int64{0, 3010, 4294967295} }, nil},
		{"exit codes: negative", func(j *events.JobOffered) { j.Command.SuccessExitCodes = []int64{-1} }, events.ErrExitCode},
		{"exit codes: too big", func(j *events.JobOffered) { j.Command.SuccessExitCodes = []int64{1 << 32} }, events.ErrExitCode},
		{"max attempts: 3 ok", func(j *events.JobOffered) { j.MaxAttempts = 3 }, nil},
		{"max attempts: negative", func(j *events.JobOffered) { j.MaxAttempts = -1 }, events.ErrMaxAttempts},
		{"max attempts: 101", func(j *events.JobOffered) { j.MaxAttempts = 101 }, events.ErrMaxAttempts},
		{"package: ok", func(j *events.JobOffered) {
			j.Package = &events.PackageRef{Name: "editor", Version: "1.2", SHA256: strings.Repeat("ab", 32)}
		}, nil},
		{"package: bad digest", func(j *events.JobOffered) {
			j.Package = &events.PackageRef{Name: "editor", Version: "1.2", SHA256: "abc"}
		}, events.ErrInvalidPackage},
		{"name: too long", func(j *events.JobOffered) { j.Name = strings.Repeat("n", 129) }, events.ErrTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			j := validJob()
			tc.mutate(&j)
			err := j.Validate()
			if tc.want == nil {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				// A valid job must also make a valid event that parses back.
				ev, err := events.NewJobOffered("ci", j)
				if err != nil {
					t.Fatalf("NewJobOffered: %v", err)
				}
				if _, err := events.ParseJobOffered(ev); err != nil {
					t.Fatalf("ParseJobOffered of a valid job: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("want %v, got %v", tc.want, err)
			}
			if _, err := events.NewJobOffered("ci", j); !errors.Is(err, tc.want) {
				t.Fatalf("NewJobOffered: want %v, got %v", tc.want, err)
			}
		})
	}
}

func TestDataSizeLimit(t *testing.T) {
	j := validJob()
	j.Command.Argv = []string{"echo", strings.Repeat("x", 60<<10)}
	if _, err := events.NewJobOffered("ci", j); err != nil {
		t.Fatalf("60 KiB of argv must fit: %v", err)
	}
	j.Command.Argv = []string{"echo", strings.Repeat("x", 65<<10)}
	if _, err := events.NewJobOffered("ci", j); !errors.Is(err, events.ErrTooLarge) {
		t.Fatalf("want ErrTooLarge, got %v", err)
	}
}

func TestStatusValidation(t *testing.T) {
	valid := func() events.JobStatus {
		return events.JobStatus{JobID: "j1", ClientID: "ws-1", State: events.StateSucceeded, Attempt: 1, Runner: events.RunnerService, ExitCode: ptr(0)}
	}
	cases := []struct {
		name   string
		mutate func(*events.JobStatus)
		want   error
	}{
		{"ok", func(*events.JobStatus) {}, nil},
		{"desktop ok", func(s *events.JobStatus) { s.Runner = events.RunnerDesktop; s.User = "ann" }, nil},
		{"bad client", func(s *events.JobStatus) { s.ClientID = "ws.1" }, events.ErrInvalidID},
		{"bad job", func(s *events.JobStatus) { s.JobID = "" }, events.ErrInvalidID},
		{"unknown state", func(s *events.JobStatus) { s.State = "done" }, events.ErrInvalidState},
		{"unknown runner", func(s *events.JobStatus) { s.Runner = "cron" }, events.ErrInvalidState},
		{"attempt 0", func(s *events.JobStatus) { s.Attempt = 0 }, events.ErrMaxAttempts},
		{"tail too long", func(s *events.JobStatus) { s.OutputTail = strings.Repeat("x", 4097) }, events.ErrTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := valid()
			tc.mutate(&s)
			ev, err := events.NewJobStatus(s)
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				if ev.ID() != "j1.ws-1.succeeded.1" && s.Runner == events.RunnerService {
					t.Fatalf("status id %q", ev.ID())
				}
				got, err := events.ParseJobStatus(ev)
				if err != nil || got.State != s.State {
					t.Fatalf("parse back: %+v, %v", got, err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("want %v, got %v", tc.want, err)
			}
		})
	}
}

func TestCancelledValidation(t *testing.T) {
	c := events.JobCancelled{JobID: "j1", Reason: "wrong version", Targets: []events.Target{{Kind: events.TargetAll}}}
	ev, err := events.NewJobCancelled("ci", c)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := events.ParseJobCancelled(ev); err != nil || got.JobID != "j1" || ev.Subject() != "j1" {
		t.Fatalf("parse back: %+v, %v", got, err)
	}
	c.Targets = nil
	if _, err := events.NewJobCancelled("ci", c); !errors.Is(err, events.ErrInvalidTarget) {
		t.Fatalf("want ErrInvalidTarget, got %v", err)
	}
	c.Targets = []events.Target{{Kind: events.TargetAll}}
	c.Reason = strings.Repeat("r", 2000)
	if _, err := events.NewJobCancelled("ci", c); !errors.Is(err, events.ErrTooLarge) {
		t.Fatalf("want ErrTooLarge, got %v", err)
	}
	if _, err := events.NewJobCancelled("c i", events.JobCancelled{JobID: "j", Targets: []events.Target{{Kind: events.TargetAll}}}); !errors.Is(err, events.ErrInvalidID) {
		t.Fatalf("bad publisher name: want ErrInvalidID, got %v", err)
	}
}

func TestPlatformMatches(t *testing.T) {
	cases := []struct {
		platforms []string
		os, arch  string
		want      bool
	}{
		{nil, "linux", "amd64", true},
		{[]string{"linux/amd64"}, "linux", "amd64", true},
		{[]string{"linux/amd64"}, "linux", "arm64", false},
		{[]string{"windows/*"}, "windows", "arm64", true},
		{[]string{"*/arm64"}, "darwin", "arm64", true},
		{[]string{"windows/*", "darwin/*"}, "linux", "amd64", false},
	}
	for _, c := range cases {
		if got := events.PlatformMatches(c.platforms, c.os, c.arch); got != c.want {
			t.Errorf("PlatformMatches(%v, %s/%s) = %v, want %v", c.platforms, c.os, c.arch, got, c.want)
		}
	}
}

func TestSucceeded(t *testing.T) {
	c := events.CommandLine{}
	if !c.Succeeded(0) || c.Succeeded(1) {
		t.Fatal("default success codes must be {0}")
	}
	c.SuccessExitCodes = []int64{0, 3010}
	if !c.Succeeded(3010) || c.Succeeded(1) || c.Succeeded(-1) {
		t.Fatal("explicit success codes")
	}
}
