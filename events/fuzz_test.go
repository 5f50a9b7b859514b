package events_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"

	"github.com/pcm-project/pcm/events"
)

// The fuzz targets of the wire contract. Run one with, for example,
//
//	go test -run '^$' -fuzz '^FuzzDecode$' -fuzztime 60s ./events/
//
// Without -fuzz, go test runs them on their seeds and on the corpus checked
// in under testdata/fuzz/<FuzzName>/, so every crash ever found stays a
// regression test.

// sentinels are every sentinel error of the events package.
var sentinels = []error{
	events.ErrInvalidID, events.ErrInvalidTarget, events.ErrTimeWindow, events.ErrEmptyArgv,
	events.ErrInvalidArgv, events.ErrTimeout, events.ErrBackgroundNotAutomated, events.ErrPlatform,
	events.ErrExitCode, events.ErrMaxAttempts, events.ErrTooLarge, events.ErrMissingAttribute,
	events.ErrUnknownType, events.ErrMalformed, events.ErrSchema, events.ErrInvalidState,
	events.ErrInvalidPackage, events.ErrUnexpectedType,
}

// wrapsSentinel reports whether err wraps at least one of want (all the
// package's sentinels when want is empty).
func wrapsSentinel(err error, want ...error) bool {
	if len(want) == 0 {
		want = sentinels
	}
	for _, s := range want {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// testdataSchema reads an example of testdata/schema.
func testdataSchema(name string) ([]byte, error) {
	return os.ReadFile(filepath.Join("testdata", "schema", filepath.FromSlash(name)))
}

// fuzzHeader reads a NATS header written as "Key: value" lines.
func fuzzHeader(s string) nats.Header {
	h := nats.Header{}
	for _, line := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		h.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	return h
}

// headerText writes h as fuzzHeader reads it.
func headerText(h nats.Header) string {
	var b strings.Builder
	for k, vs := range h {
		for _, v := range vs {
			b.WriteString(k + ": " + v + "\n")
		}
	}
	return b.String()
}

// seedEvents returns one valid event of each type, with fixed times.
func seedEvents(t testing.TB) []event.Event {
	t.Helper()
	j := validJob()
	j.Package = &events.PackageRef{Name: "editor", Version: "1.2", SHA256: strings.Repeat("ab", 32), Size: 10}
	j.Command.Platforms = []string{"linux/*", "*/arm64"}
	j.Command.SuccessExitCodes = []int64{0, 3010}
	j.MaxAttempts = 3
	offer, err := events.NewJobOffered("ci", j)
	if err != nil {
		t.Fatal(err)
	}
	cancel, err := events.NewJobCancelled("ci", events.JobCancelled{JobID: j.JobID, Reason: "superseded", Targets: j.Targets})
	if err != nil {
		t.Fatal(err)
	}
	code := 0
	st, err := events.NewJobStatus(events.JobStatus{JobID: j.JobID, ClientID: "ws-1", State: events.StateSucceeded,
		Attempt: 1, MaxAttempts: 3, ExitCode: &code, StartedAt: ptr(t0), FinishedAt: ptr(t0.Add(time.Second)),
		Runner: events.RunnerService, OutputTail: "done\n", LockRevision: 7})
	if err != nil {
		t.Fatal(err)
	}
	out := []event.Event{offer, cancel, st}
	for i := range out {
		out[i].SetTime(t0)
	}
	return out
}

// FuzzDecode feeds arbitrary NATS headers and bodies to Decode and the Parse
// functions. Nothing may panic; every refusal wraps a sentinel; an event
// Decode accepts must re-encode (structured mode, as pcm publishes) and
// decode to the same event; data a Parse function accepts must re-encode
// through its constructor and parse to the same data.
func FuzzDecode(f *testing.F) {
	for _, ev := range seedEvents(f) {
		msg, err := events.NewMsg("pcm.jobs.all", ev, ev.ID())
		if err != nil {
			f.Fatal(err)
		}
		f.Add(headerText(msg.Header), msg.Data)
		f.Add("", msg.Data)
		f.Add("", msg.Data[:len(msg.Data)/2])
		// The same event in binary mode: ce- headers and the data as body.
		h := nats.Header{}
		h.Set("ce-specversion", ev.SpecVersion())
		h.Set("ce-id", ev.ID())
		h.Set("ce-source", ev.Source())
		h.Set("ce-type", ev.Type())
		h.Set("ce-subject", ev.Subject())
		h.Set("ce-time", ev.Time().Format(time.RFC3339Nano))
		h.Set("Content-Type", events.ContentTypeJSON)
		f.Add(headerText(h), ev.Data())
		h.Set("Content-Type", events.ContentTypeCloudEvents)
		f.Add(headerText(h), ev.Data())
	}
	f.Add("", []byte("not json"))
	f.Add("", []byte(`{"specversion":"0.3","id":"x","source":"/pcm/publisher/ci","type":"pcm.job.offered.v1","subject":"x","datacontenttype":"application/json","data":{}}`))
	f.Add("", []byte(`{"specversion":"1.0","id":"x","source":"/pcm/publisher/ci","type":"pcm.job.offered.v1","subject":"x","datacontenttype":"application/json","data_base64":"e30="}`))
	f.Add("", []byte(`{"specversion":"1.0","id":"x","source":"s","type":"pcm.job.status.v1","subject":"x","datacontenttype":"application/json","data":"a string","ext":1}`))
	f.Add("Content-Type: text/plain", []byte(`{}`))
	f.Add("ce-id: other", []byte(`{"specversion":"1.0","id":"x","source":"s","type":"t"}`))

	f.Fuzz(func(t *testing.T, header string, body []byte) {
		h := fuzzHeader(header)
		ev, err := events.Decode(h, body)
		if err != nil {
			if !wrapsSentinel(err, events.ErrMalformed, events.ErrTooLarge, events.ErrMissingAttribute, events.ErrUnknownType) {
				t.Fatalf("Decode error wraps no sentinel of its contract: %v", err)
			}
			return
		}
		if err := events.ValidateAttributes(ev); err != nil {
			t.Fatalf("Decode accepted an event ValidateAttributes refuses: %v", err)
		}
		first, err := json.Marshal(ev)
		if err != nil {
			t.Fatalf("an accepted event does not encode: %v", err)
		}
		msg, err := events.NewMsg("pcm.jobs.all", ev, ev.ID())
		if err != nil {
			t.Fatalf("NewMsg of an accepted event: %v", err)
		}
		again, err := events.Decode(msg.Header, msg.Data)
		if err != nil {
			t.Fatalf("a re-encoded event does not decode: %v\n%s", err, msg.Data)
		}
		second, err := json.Marshal(again)
		if err != nil || !bytes.Equal(first, second) {
			t.Fatalf("re-encoding changed the event (%v):\n%s\n%s", err, first, second)
		}
		if _, err := events.Decode(nats.Header{}, events.StructuredJSON(h, body)); err != nil {
			t.Fatalf("the StructuredJSON of an accepted event does not decode: %v", err)
		}
		checkParseRoundTrip(t, ev)
	})
}

// checkParseRoundTrip parses ev with the Parse function of its type; when it
// is accepted, the data is rebuilt with the type's constructor, encoded,
// decoded and parsed again, and must come back the same.
func checkParseRoundTrip(t *testing.T, ev event.Event) {
	t.Helper()
	var (
		data    any
		rebuilt event.Event
		err     error
	)
	switch ev.Type() {
	case events.TypeJobOffered:
		var j events.JobOffered
		if j, err = events.ParseJobOffered(ev); err == nil {
			data = j
			rebuilt, err = events.NewJobOffered(events.PublisherOf(ev), j)
		}
	case events.TypeJobCancelled:
		var c events.JobCancelled
		if c, err = events.ParseJobCancelled(ev); err == nil {
			data = c
			rebuilt, err = events.NewJobCancelled(events.PublisherOf(ev), c)
		}
	case events.TypeJobStatus:
		var s events.JobStatus
		if s, err = events.ParseJobStatus(ev); err == nil {
			data = s
			rebuilt, err = events.NewJobStatus(s)
		}
	default:
		t.Fatalf("Decode accepted an unknown type %q", ev.Type())
	}
	if data == nil {
		if !wrapsSentinel(err) {
			t.Fatalf("Parse error wraps no sentinel: %v", err)
		}
		return
	}
	if err != nil {
		t.Fatalf("parsed %s data is refused by its constructor: %v", ev.Type(), err)
	}
	msg, err := events.NewMsg("pcm.jobs.all", rebuilt, rebuilt.ID())
	if err != nil {
		t.Fatal(err)
	}
	ev2, err := events.Decode(msg.Header, msg.Data)
	if err != nil {
		t.Fatalf("rebuilt %s does not decode: %v", ev.Type(), err)
	}
	var again any
	switch ev.Type() {
	case events.TypeJobOffered:
		again, err = events.ParseJobOffered(ev2)
	case events.TypeJobCancelled:
		again, err = events.ParseJobCancelled(ev2)
	case events.TypeJobStatus:
		again, err = events.ParseJobStatus(ev2)
	}
	if err != nil {
		t.Fatalf("rebuilt %s does not parse: %v", ev.Type(), err)
	}
	a, _ := json.Marshal(data)
	b, _ := json.Marshal(again)
	if !bytes.Equal(a, b) {
		t.Fatalf("%s data changed through a round trip:\n%s\n%s", ev.Type(), a, b)
	}
}

// FuzzJobOffered feeds arbitrary JSON to JobOffered.Validate. Nothing may
// panic; a refusal wraps a sentinel; a job Validate accepts must satisfy the
// JSON schema (or agents would reject what publishers send), and must go
// through NewJobOffered, NewMsg, Decode and ParseJobOffered unchanged.
func FuzzJobOffered(f *testing.F) {
	for _, name := range []string{"pcm.job.offered.v1.full.json", "pcm.job.offered.v1.minimal.json"} {
		b, err := testdataSchema("valid/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	j := validJob()
	b, _ := json.Marshal(j)
	f.Add(b)
	f.Add([]byte(`{"job_id":"a","command":{"argv":["x\u0000"],"timeout":"1s"},"targets":[{"kind":"all"}],"offer_after":"2026-01-01T00:00:00Z","expire_after":"2026-01-02T00:00:00Z"}`))
	f.Add([]byte(`{"job_id":"a","package":{"name":"p","version":"1","sha256":"` + strings.Repeat("0", 64) + `","size":-1},"command":{"argv":["x"],"timeout":"1s"},"targets":[{"kind":"all"}],"offer_after":"2026-01-01T00:00:00Z","expire_after":"2026-01-02T00:00:00Z"}`))
	f.Add([]byte(`{"job_id":"a","command":{"argv":["x"],"timeout":"25h"},"targets":[{"kind":"client","name":"a.b"}],"offer_after":"2026-01-02T00:00:00Z","expire_after":"2026-01-01T00:00:00Z"}`))

	f.Fuzz(func(t *testing.T, data []byte) {
		var job events.JobOffered
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&job); err != nil {
			return
		}
		if err := job.Validate(); err != nil {
			if !wrapsSentinel(err) {
				t.Fatalf("Validate error wraps no sentinel: %v", err)
			}
			return
		}
		body, err := json.Marshal(job)
		if err != nil {
			t.Fatalf("a valid job does not encode: %v", err)
		}
		if err := events.ValidateSchema(events.TypeJobOffered, body); err != nil {
			t.Fatalf("Validate accepts a job its schema refuses: %v\n%s", err, body)
		}
		ev, err := events.NewJobOffered("fuzz", job)
		if errors.Is(err, events.ErrTooLarge) {
			return
		}
		if err != nil {
			t.Fatalf("NewJobOffered refuses a valid job: %v", err)
		}
		msg, err := events.NewMsg(events.JobSubject(job.Targets[0]), ev, job.JobID)
		if err != nil {
			t.Fatal(err)
		}
		ev2, err := events.Decode(msg.Header, msg.Data)
		if err != nil {
			t.Fatalf("a valid job's offer does not decode: %v", err)
		}
		got, err := events.ParseJobOffered(ev2)
		if err != nil {
			t.Fatalf("a valid job's offer does not parse: %v\n%s", err, msg.Data)
		}
		again, _ := json.Marshal(got)
		if !bytes.Equal(body, again) {
			t.Fatalf("the job changed on the wire:\n%s\n%s", body, again)
		}
	})
}

// FuzzJobStatus is FuzzJobOffered for statuses: what JobStatus.Validate
// accepts (what an agent builds) must satisfy the schema every reader
// checks, and survive the wire unchanged.
func FuzzJobStatus(f *testing.F) {
	for _, name := range []string{"pcm.job.status.v1.succeeded.json", "pcm.job.status.v1.rejected.json"} {
		b, err := testdataSchema("valid/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"job_id":"j","client_id":"c","state":"failed","attempt":1,"max_attempts":101,"pid":-1,"runner":"service"}`))

	f.Fuzz(func(t *testing.T, data []byte) {
		var s events.JobStatus
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&s); err != nil {
			return
		}
		if err := s.Validate(); err != nil {
			if !wrapsSentinel(err) {
				t.Fatalf("Validate error wraps no sentinel: %v", err)
			}
			return
		}
		body, err := json.Marshal(s)
		if err != nil {
			t.Fatalf("a valid status does not encode: %v", err)
		}
		if err := events.ValidateSchema(events.TypeJobStatus, body); err != nil {
			t.Fatalf("Validate accepts a status its schema refuses: %v\n%s", err, body)
		}
		ev, err := events.NewJobStatus(s)
		if errors.Is(err, events.ErrTooLarge) {
			return
		}
		if err != nil {
			t.Fatalf("NewJobStatus refuses a valid status: %v", err)
		}
		msg, err := events.NewMsg(events.StatusSubject(s.ClientID, s.JobID), ev, ev.ID())
		if err != nil {
			t.Fatal(err)
		}
		ev2, err := events.Decode(msg.Header, msg.Data)
		if err != nil {
			t.Fatalf("a valid status does not decode: %v", err)
		}
		got, err := events.ParseJobStatus(ev2)
		if err != nil {
			t.Fatalf("a valid status does not parse: %v\n%s", err, msg.Data)
		}
		again, _ := json.Marshal(got)
		if !bytes.Equal(body, again) {
			t.Fatalf("the status changed on the wire:\n%s\n%s", body, again)
		}
	})
}

// FuzzJobFields builds jobs field by field, as a Go caller of the publisher
// does (no JSON on the way in, so strings may hold any bytes), and checks
// that a job Validate accepts reaches an agent unchanged: the same argv,
// platforms, package, timeout and window. Free-text names are left out: the
// wire normalizes them to UTF-8, which changes nothing a job does.
func FuzzJobFields(f *testing.F) {
	f.Add("01JOB", "/bin/true", "--flag", "linux/amd64", "editor", "1.2", int64(time.Minute), int64(0), int64(3600), int64(7200), 1)
	f.Add("a_b-c", "msiexec", "/i x.msi", "windows/*", "", "", int64(time.Hour), int64(3010), int64(0), int64(86400), 3)
	f.Add("x", "sh", "\xff\xfe", "*/arm64", "p\x00", "v", int64(-1), int64(-5), int64(10), int64(5), 0)
	f.Add("x", "prog\xc3", "arg", "linux/*", "pkg\xff", "1", int64(time.Second), int64(1), int64(0), int64(60), 101)

	f.Fuzz(func(t *testing.T, id, prog, arg, platform, pkgName, pkgVersion string, timeout, exitCode, mandatory, expire int64, attempts int) {
		j := events.JobOffered{
			JobID: id,
			Command: events.CommandLine{Argv: []string{prog, arg}, Automated: true, Timeout: events.Duration(timeout),
				Platforms: []string{platform}, SuccessExitCodes: []int64{exitCode}},
			Targets:     []events.Target{{Kind: events.TargetAll}},
			OfferAfter:  t0,
			ExpireAfter: t0.Add(time.Duration(expire) * time.Second),
			MaxAttempts: attempts,
		}
		if mandatory != 0 {
			j.MandatoryAfter = ptr(t0.Add(time.Duration(mandatory) * time.Second))
		}
		if pkgName != "" || pkgVersion != "" {
			j.Package = &events.PackageRef{Name: pkgName, Version: pkgVersion, SHA256: strings.Repeat("0f", 32)}
		}
		if err := j.Validate(); err != nil {
			if !wrapsSentinel(err) {
				t.Fatalf("Validate error wraps no sentinel: %v", err)
			}
			return
		}
		ev, err := events.NewJobOffered("fuzz", j)
		if err != nil {
			t.Fatalf("NewJobOffered refuses a valid job: %v", err)
		}
		msg, err := events.NewMsg(events.SubjectJobsAll, ev, j.JobID)
		if err != nil {
			t.Fatal(err)
		}
		ev2, err := events.Decode(msg.Header, msg.Data)
		if err != nil {
			t.Fatalf("a valid job's offer does not decode: %v", err)
		}
		got, err := events.ParseJobOffered(ev2)
		if err != nil {
			t.Fatalf("a valid job's offer does not parse: %v\n%s", err, msg.Data)
		}
		if strings.Join(got.Command.Argv, "\x00") != strings.Join(j.Command.Argv, "\x00") {
			t.Fatalf("argv changed on the wire: %q became %q", j.Command.Argv, got.Command.Argv)
		}
		if got.Command.Platforms[0] != platform || got.Command.Timeout != j.Command.Timeout ||
			got.Command.SuccessExitCodes[0] != exitCode || got.Attempts() != j.Attempts() {
			t.Fatalf("command changed on the wire: %+v became %+v", j.Command, got.Command)
		}
		if (j.Package == nil) != (got.Package == nil) || j.Package != nil && *j.Package != *got.Package {
			t.Fatalf("package changed on the wire: %+v became %+v", j.Package, got.Package)
		}
		if !got.OfferAfter.Equal(j.OfferAfter) || !got.ExpireAfter.Equal(j.ExpireAfter) ||
			(j.MandatoryAfter == nil) != (got.MandatoryAfter == nil) || j.MandatoryAfter != nil && !got.MandatoryAfter.Equal(*j.MandatoryAfter) {
			t.Fatalf("window changed on the wire: %+v became %+v", j, got)
		}
	})
}
