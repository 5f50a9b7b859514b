package events

import "errors"

// Sentinel errors. Every validation error wraps exactly one of them, so a
// caller can tell with errors.Is which rule an event broke; the message added
// around it names the field and how to fix it.
var (
	// ErrInvalidID: a client id, group name or job id is not a subject token
	// of 1 to 64 characters from [A-Za-z0-9_-].
	ErrInvalidID = errors.New("invalid id")
	// ErrInvalidTarget: a target has an unknown kind, or a name where none is
	// allowed, or a job has no target.
	ErrInvalidTarget = errors.New("invalid target")
	// ErrTimeWindow: the offer, mandatory and expiry times are out of order
	// (offer_after <= mandatory_after < expire_after) or missing.
	ErrTimeWindow = errors.New("invalid time window")
	// ErrEmptyArgv: a command line has no program to run.
	ErrEmptyArgv = errors.New("empty argv")
	// ErrInvalidArgv: an argument of a command line contains a NUL byte or
	// is not valid UTF-8.
	ErrInvalidArgv = errors.New("invalid argv")
	// ErrTimeout: a command line's timeout is missing, negative or over 24h.
	ErrTimeout = errors.New("invalid timeout")
	// ErrBackgroundNotAutomated: a background (service-only) command line is
	// not marked automated.
	ErrBackgroundNotAutomated = errors.New("background command line must be automated")
	// ErrPlatform: a platform is not "os/arch" with known names or "*".
	ErrPlatform = errors.New("invalid platform")
	// ErrExitCode: a success exit code is outside 0..4294967295.
	ErrExitCode = errors.New("invalid success exit code")
	// ErrMaxAttempts: max_attempts is outside 1..100.
	ErrMaxAttempts = errors.New("invalid max attempts")
	// ErrTooLarge: an event's data, or a field of it, is larger than allowed.
	ErrTooLarge = errors.New("too large")
	// ErrMissingAttribute: a required CloudEvents attribute is missing or
	// does not have the value pcm requires.
	ErrMissingAttribute = errors.New("missing or invalid CloudEvents attribute")
	// ErrUnknownType: the event type is not one pcm knows.
	ErrUnknownType = errors.New("unknown event type")
	// ErrMalformed: the message is not a CloudEvent pcm can read (not JSON,
	// truncated, wrong field types, contradicting headers).
	ErrMalformed = errors.New("malformed event")
	// ErrSchema: the event's data does not satisfy the JSON schema of its type.
	ErrSchema = errors.New("data does not match schema")
	// ErrInvalidState: a status has an unknown state or runner, or fields that
	// do not fit its state.
	ErrInvalidState = errors.New("invalid status")
	// ErrInvalidPackage: a package reference is incomplete, not UTF-8, has a
	// negative size, or its sha256 is not 64 hex digits; or a package name,
	// version or NAME@VERSION spec breaks ValidPackagePart.
	ErrInvalidPackage = errors.New("invalid package reference")
)

// ErrUnexpectedType: a known event type arrived where another was expected,
// such as a status published on a jobs subject.
var ErrUnexpectedType = errors.New("unexpected event type")

// Errors of signed events (signature.go). Verify wraps exactly one of them.
var (
	// ErrUnsigned: an offer or cancellation carries no signature (no pcmsig
	// attribute) where signed events are required.
	ErrUnsigned = errors.New("unsigned event")
	// ErrBadSignature: an event's signature does not match its content (it
	// was altered after signing), is not base64url, or its pcmkey/pcmsig
	// attributes are not strings.
	ErrBadSignature = errors.New("bad signature")
	// ErrUntrustedKey: an event is signed by a key that is not among the
	// trusted public keys.
	ErrUntrustedKey = errors.New("untrusted signing key")
	// ErrInvalidKey: a signing key pair or a trusted public key is not an
	// nkeys user or account key (seeds start with SU or SA, public keys with
	// U or A).
	ErrInvalidKey = errors.New("invalid key")
)

// Errors of a job's plan (plan.go).
var (
	// ErrInvalidPlan: a rollout plan breaks a rule: no rings, percentages
	// not increasing, above 100 or not ending at 100, rings by group after
	// percentages, no soak time between several rings, a last ring that
	// opens after the expiry, a halt threshold out of range.
	ErrInvalidPlan = errors.New("invalid rollout plan")
	// ErrInvalidRequires: a job requires an invalid job id, itself, a job
	// twice, too many jobs, or a job that requires it (a cycle).
	ErrInvalidRequires = errors.New("invalid requires")
)

// Errors of the time rules (schedule.go) and maintenance windows
// (window.go).
var (
	// ErrDeferrals: a job's deferrals allow too few or too many deferrals,
	// last too short or too long, have a deadline outside the job's time
	// window, or are given to a job nobody could defer (optional, or
	// background).
	ErrDeferrals = errors.New("invalid deferrals")
	// ErrGraceAfterOffline: a job's grace after offline is out of range or
	// given to an optional job.
	ErrGraceAfterOffline = errors.New("invalid grace after offline")
	// ErrRestartExitCodes: a restart exit code is outside 0..4294967295, or
	// a command line names restart exit codes without may_reboot.
	ErrRestartExitCodes = errors.New("invalid restart exit codes")
	// ErrWindow: a maintenance window has bad days, date, times or time
	// zone, or never opens.
	ErrWindow = errors.New("invalid maintenance window")
)
