package events

import (
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits of a job offer.
const (
	// MaxDataSize is the largest event data pcm accepts, in bytes.
	MaxDataSize = 64 << 10
	// MaxTimeout is the longest a command line may run.
	MaxTimeout = 24 * time.Hour
	// MaxAttemptsLimit is the largest max_attempts a job may ask for.
	MaxAttemptsLimit = 100
	// maxExitCode is the largest exit code a platform reports (Windows: a DWORD).
	maxExitCode = 1<<32 - 1
	// maxNameLen bounds free-text names.
	maxNameLen = 128
)

// JobOffered is the data of a pcm.job.offered.v1 event: run this command line
// (of this package) on these clients, offered from OfferAfter, mandatory from
// MandatoryAfter, expiring at ExpireAfter.
type JobOffered struct {
	// JobID identifies the job; it is also the event's id and subject.
	JobID string `json:"job_id"`
	// Name is a human-readable name of the job (optional).
	Name string `json:"name,omitempty"`
	// Package names the package whose content the command runs in (optional).
	Package *PackageRef `json:"package,omitempty"`
	// Command is what runs on each client.
	Command CommandLine `json:"command"`
	// Targets are the addressees; the offer is published once per target.
	Targets []Target `json:"targets"`
	// OfferAfter: nothing runs before this instant.
	OfferAfter time.Time `json:"offer_after"`
	// MandatoryAfter, when set, is when the job runs without anyone acting.
	// A job without it is optional: only a user at the desktop runs it.
	MandatoryAfter *time.Time `json:"mandatory_after,omitempty"`
	// ExpireAfter: nothing runs after this instant; the job reports expired.
	ExpireAfter time.Time `json:"expire_after"`
	// MaxAttempts bounds the runs of a failing command on a client (default 1).
	MaxAttempts int `json:"max_attempts,omitempty"`
	// JobPlan stages the job in rings, detects whether it is already in
	// place and names the jobs it requires (plan.go).
	JobPlan
	// TimeRules: deferrals, grace after offline, maintenance windows
	// (schedule.go).
	TimeRules
}

// CommandLine is what a job runs, and how.
type CommandLine struct {
	// Name of the command line ("install", "uninstall", ...), optional.
	Name string `json:"name,omitempty"`
	// Argv is the program and its arguments, run without a shell.
	Argv []string `json:"argv"`
	// Shell runs Argv through the platform shell; off unless explicit.
	Shell bool `json:"shell,omitempty"`
	// Background marks a service-only command line, never shown to the user.
	Background bool `json:"background,omitempty"`
	// Automated marks a command line that needs no user input; the service
	// runs mandatory automated jobs. Background implies automated.
	Automated bool `json:"automated,omitempty"`
	// Platforms the command supports as "os/arch", "*" as a wildcard on either
	// side; empty means every platform.
	Platforms []string `json:"platforms,omitempty"`
	// Timeout after which the command's whole process tree is killed.
	Timeout Duration `json:"timeout"`
	// SuccessExitCodes are the exit codes that mean success (default 0).
	SuccessExitCodes []int64 `json:"success_exit_codes,omitempty"`
	// MayReboot says the command may restart the machine: its restart exit
	// codes (RestartRules) ask the agent to restart it.
	MayReboot bool `json:"may_reboot,omitempty"`
	// RestartRules: the exit codes that mean "restart required"
	// (schedule.go).
	RestartRules
}

// PackageRef pins the package a job's command runs in.
type PackageRef struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	// SHA256 is the hex digest of the package content, pinned at publish time.
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size,omitempty"`
}

// Mandatory reports whether the job has a mandatory time.
func (j JobOffered) Mandatory() bool { return j.MandatoryAfter != nil }

// Succeeded reports whether exit code means success for this command line.
func (c CommandLine) Succeeded(exit int) bool {
	if len(c.SuccessExitCodes) == 0 {
		return exit == 0
	}
	for _, code := range c.SuccessExitCodes {
		if code == int64(exit) && exit >= 0 {
			return true
		}
	}
	return false
}

// Validate checks every rule of a job offer and returns the first broken one,
// wrapping its sentinel. It does not look at the clock: a job whose window has
// passed is valid here (it is expired, not malformed).
func (j JobOffered) Validate() error {
	if err := ValidID("job id", j.JobID); err != nil {
		return err
	}
	if len(j.Name) > maxNameLen {
		return fmt.Errorf("%w: name is %d bytes long: use at most %d", ErrTooLarge, len(j.Name), maxNameLen)
	}
	if err := validateTargets(j.Targets); err != nil {
		return err
	}
	if err := j.validateWindow(); err != nil {
		return err
	}
	if j.MaxAttempts < 0 || j.MaxAttempts > MaxAttemptsLimit {
		return fmt.Errorf("%w: max_attempts is %d: use 1 to %d (or leave it out for 1)", ErrMaxAttempts, j.MaxAttempts, MaxAttemptsLimit)
	}
	if j.Package != nil {
		if err := j.Package.Validate(); err != nil {
			return err
		}
	}
	if err := j.Command.Validate(); err != nil {
		return err
	}
	if err := j.JobPlan.validate(j); err != nil {
		return err
	}
	return j.validateTimeRules()
}

func validateTargets(targets []Target) error {
	if len(targets) == 0 {
		return fmt.Errorf("%w: targets is empty: name at least one client, group or all", ErrInvalidTarget)
	}
	for _, t := range targets {
		if err := t.Validate(); err != nil {
			return err
		}
	}
	return nil
}

func (j JobOffered) validateWindow() error {
	if j.OfferAfter.IsZero() {
		return fmt.Errorf("%w: offer_after is missing: give the instant the job is offered from", ErrTimeWindow)
	}
	if j.ExpireAfter.IsZero() {
		return fmt.Errorf("%w: expire_after is missing: give the instant the job expires", ErrTimeWindow)
	}
	if m := j.MandatoryAfter; m != nil {
		if m.Before(j.OfferAfter) {
			return fmt.Errorf("%w: mandatory_after (%s) is before offer_after (%s): a job cannot be mandatory before it is offered",
				ErrTimeWindow, m.Format(time.RFC3339), j.OfferAfter.Format(time.RFC3339))
		}
		if !m.Before(j.ExpireAfter) {
			return fmt.Errorf("%w: mandatory_after (%s) is not before expire_after (%s): move the expiry later",
				ErrTimeWindow, m.Format(time.RFC3339), j.ExpireAfter.Format(time.RFC3339))
		}
	}
	if !j.OfferAfter.Before(j.ExpireAfter) {
		return fmt.Errorf("%w: expire_after (%s) is not after offer_after (%s): move the expiry later",
			ErrTimeWindow, j.ExpireAfter.Format(time.RFC3339), j.OfferAfter.Format(time.RFC3339))
	}
	return nil
}

// Validate checks the rules of a command line.
func (c CommandLine) Validate() error {
	if len(c.Name) > maxNameLen {
		return fmt.Errorf("%w: command name is %d bytes long: use at most %d", ErrTooLarge, len(c.Name), maxNameLen)
	}
	if err := validateArgv("command argv", c.Argv); err != nil {
		return err
	}
	if c.Timeout <= 0 {
		return fmt.Errorf("%w: timeout is %s: give a positive duration such as \"30m\"", ErrTimeout, c.Timeout)
	}
	if time.Duration(c.Timeout) > MaxTimeout {
		return fmt.Errorf("%w: timeout is %s: use at most 24h", ErrTimeout, c.Timeout)
	}
	if c.Background && !c.Automated {
		return fmt.Errorf("%w: command is background but not automated: a service-only command cannot ask the user anything, set automated", ErrBackgroundNotAutomated)
	}
	for _, p := range c.Platforms {
		if err := ValidPlatform(p); err != nil {
			return err
		}
	}
	for _, code := range c.SuccessExitCodes {
		if code < 0 || code > maxExitCode {
			return fmt.Errorf("%w: %d: exit codes run from 0 to 4294967295", ErrExitCode, code)
		}
	}
	return nil
}

// validateArgv checks a program and its arguments; field names them in
// the errors ("command argv", "detect argv").
func validateArgv(field string, argv []string) error {
	if len(argv) == 0 || argv[0] == "" {
		return fmt.Errorf("%w: %s is empty: give the program to run and its arguments", ErrEmptyArgv, field)
	}
	for i, a := range argv {
		if strings.IndexByte(a, 0) >= 0 {
			return fmt.Errorf("%w: %s[%d] contains a NUL byte, which no program can receive: remove it", ErrInvalidArgv, field, i)
		}
		if !utf8.ValidString(a) {
			return fmt.Errorf("%w: %s[%d] %q is not valid UTF-8, so it would change on the wire: give it as UTF-8 text", ErrInvalidArgv, field, i, a)
		}
	}
	return nil
}

var shaPattern = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Validate checks a package reference.
func (p PackageRef) Validate() error {
	if p.Name == "" || p.Version == "" {
		return fmt.Errorf("%w: package needs a name and a version (NAME@VERSION)", ErrInvalidPackage)
	}
	if !utf8.ValidString(p.Name) || !utf8.ValidString(p.Version) {
		return fmt.Errorf("%w: package name %q or version %q is not valid UTF-8, so it would change on the wire", ErrInvalidPackage, p.Name, p.Version)
	}
	if len(p.Name) > maxNameLen || len(p.Version) > maxNameLen {
		return fmt.Errorf("%w: package name or version is longer than %d bytes", ErrInvalidPackage, maxNameLen)
	}
	if !shaPattern.MatchString(p.SHA256) {
		return fmt.Errorf("%w: package sha256 %q is not 64 lower-case hex digits", ErrInvalidPackage, p.SHA256)
	}
	if p.Size < 0 {
		return fmt.Errorf("%w: package size is %d: give the size in bytes (0 or more), or leave it out", ErrInvalidPackage, p.Size)
	}
	return nil
}
