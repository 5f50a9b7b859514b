package events

import (
	"fmt"
	"slices"
	"time"
)

// The time rules for people: how long a user may put a job off, how a
// client that was off at a job's mandatory time warns its user first, which
// jobs wait for a maintenance window, and which exit codes ask for a
// restart. The agent's decision applies them (agent.Decide); this file
// holds their data and their validation.

// Limits of the time rules.
const (
	// MaxDeferrals is the most deferrals a job may allow.
	MaxDeferrals = 20
	// MinDeferral and MaxDeferral bound how long one deferral puts a job off.
	MinDeferral, MaxDeferral = time.Minute, 7 * 24 * time.Hour
	// MinGraceAfterOffline and MaxGraceAfterOffline bound the grace a
	// client that first sees a job after its mandatory time gives its user.
	MinGraceAfterOffline, MaxGraceAfterOffline = time.Minute, 7 * 24 * time.Hour
	// OfflineSlack is how late after a job's mandatory time a client may
	// first see it and still count as having been online then: a client that
	// first sees it later was off (or cut off) at that time.
	OfflineSlack = time.Minute
)

// DefaultWindowsRestartExitCodes are the exit codes that mean "restart
// required" on Windows for a command line that may reboot and names none:
// 3010 (ERROR_SUCCESS_REBOOT_REQUIRED) and 1641
// (ERROR_SUCCESS_REBOOT_INITIATED), as Windows Installer returns them.
var DefaultWindowsRestartExitCodes = []int64{3010, 1641}

// TimeRules are the time rules for people a job may carry (embedded in
// JobOffered; their fields are the job's).
type TimeRules struct {
	// Deferrals, when set, let the user at the desktop put the mandatory
	// job off, a number of times, each for a while, up to a deadline.
	Deferrals *Deferrals `json:"deferrals,omitempty"`
	// GraceAfterOffline gives a client that first sees the job after its
	// mandatory time (it was off) this long, counted from first sight,
	// before the job runs unattended, so that the user is warned instead of
	// surprised at boot. The grace never extends past expire_after (see
	// JobOffered.GraceEnd). Zero: none.
	GraceAfterOffline Duration `json:"grace_after_offline,omitempty"`
	// InWindow makes the job start only inside a maintenance window of the
	// client (its own, its groups' or every client's: PCM_WINDOWS), and only
	// when the command's timeout fits in what is left of the window. A
	// restart the job requires waits for a window too.
	InWindow bool `json:"in_window,omitempty"`
}

// Deferrals say how the user may put a mandatory job off.
type Deferrals struct {
	// Max is how many times the user may defer the job (1 to MaxDeferrals).
	Max int `json:"max"`
	// Each is how long one deferral puts the job off (MinDeferral to
	// MaxDeferral).
	Each Duration `json:"each"`
	// Deadline, when set, is the hard deadline: no deferral lasts past it,
	// and none is granted once it has passed. At or after mandatory_after,
	// before expire_after.
	Deadline *time.Time `json:"deadline,omitempty"`
}

// Until is when a deferral granted at now ends: Each later, but never
// after the deadline.
func (d Deferrals) Until(now time.Time) time.Time {
	until := now.Add(time.Duration(d.Each))
	if d.Deadline != nil && d.Deadline.Before(until) {
		until = *d.Deadline
	}
	return until
}

// RestartRules are the restart rules of a command line (embedded in
// CommandLine; their fields are the command line's).
type RestartRules struct {
	// RestartExitCodes are exit codes that mean the command succeeded and
	// the machine must restart to finish (only with may_reboot). A command
	// line that may reboot and names none has
	// DefaultWindowsRestartExitCodes on Windows, none elsewhere.
	RestartExitCodes []int64 `json:"restart_exit_codes,omitempty"`
}

// RestartCodes are the exit codes that mean "restart required" for c on a
// client running goos.
func (c CommandLine) RestartCodes(goos string) []int64 {
	switch {
	case !c.MayReboot:
		return nil
	case len(c.RestartExitCodes) > 0:
		return c.RestartExitCodes
	case goos == "windows":
		return DefaultWindowsRestartExitCodes
	}
	return nil
}

// RestartRequired reports whether exit means "succeeded, restart required"
// for c on a client running goos.
func (c CommandLine) RestartRequired(exit int, goos string) bool {
	return exit >= 0 && slices.Contains(c.RestartCodes(goos), int64(exit))
}

// Late reports whether a client that first saw the job at firstSeen saw it
// after its mandatory time (by more than OfflineSlack): it was off then.
func (j JobOffered) Late(firstSeen time.Time) bool {
	return j.MandatoryAfter != nil && firstSeen.After(j.MandatoryAfter.Add(OfflineSlack))
}

// GraceEnd is when the grace after offline of a client that first saw the
// job at firstSeen ends, and whether it has one at all (the job gives a
// grace and the client saw it late). The grace never extends past
// expire_after: it ends early enough for the command's timeout to fit
// before the job expires, and never before first sight.
func (j JobOffered) GraceEnd(firstSeen time.Time) (time.Time, bool) {
	if j.GraceAfterOffline <= 0 || !j.Late(firstSeen) {
		return time.Time{}, false
	}
	end := firstSeen.Add(time.Duration(j.GraceAfterOffline))
	if latest := j.ExpireAfter.Add(-time.Duration(j.Command.Timeout)); latest.Before(end) {
		end = latest
	}
	if end.Before(firstSeen) {
		end = firstSeen
	}
	return end, true
}

// validateTimeRules checks the time rules of a job and the restart rules of
// its command line.
func (j JobOffered) validateTimeRules() error {
	if d := j.Deferrals; d != nil {
		switch {
		case d.Max < 1 || d.Max > MaxDeferrals:
			return fmt.Errorf("%w: deferrals.max is %d: give 1 to %d (or leave deferrals out)", ErrDeferrals, d.Max, MaxDeferrals)
		case time.Duration(d.Each) < MinDeferral || time.Duration(d.Each) > MaxDeferral:
			return fmt.Errorf("%w: deferrals.each is %s: give %s to %s (such as 4h)", ErrDeferrals, d.Each, MinDeferral, MaxDeferral)
		case j.MandatoryAfter == nil:
			return fmt.Errorf("%w: deferrals on a job without mandatory_after: an optional job never runs by itself, so there is nothing to defer; give mandatory_after or leave deferrals out", ErrDeferrals)
		case j.Command.Background:
			return fmt.Errorf("%w: deferrals on a background job: a background job is never shown to the user, who could not defer it; drop background or deferrals", ErrDeferrals)
		case d.Deadline != nil && d.Deadline.Before(*j.MandatoryAfter):
			return fmt.Errorf("%w: deferrals.deadline (%s) is before mandatory_after (%s): give a deadline at or after the mandatory time",
				ErrDeferrals, d.Deadline.Format(time.RFC3339), j.MandatoryAfter.Format(time.RFC3339))
		case d.Deadline != nil && !d.Deadline.Before(j.ExpireAfter):
			return fmt.Errorf("%w: deferrals.deadline (%s) is not before expire_after (%s): give a deadline before the job expires",
				ErrDeferrals, d.Deadline.Format(time.RFC3339), j.ExpireAfter.Format(time.RFC3339))
		}
	}
	if g := time.Duration(j.GraceAfterOffline); g != 0 {
		switch {
		case g < MinGraceAfterOffline || g > MaxGraceAfterOffline:
			return fmt.Errorf("%w: grace_after_offline is %s: give %s to %s (such as 30m), or leave it out", ErrGraceAfterOffline, j.GraceAfterOffline, MinGraceAfterOffline, MaxGraceAfterOffline)
		case j.MandatoryAfter == nil:
			return fmt.Errorf("%w: grace_after_offline on a job without mandatory_after: an optional job never runs by itself; give mandatory_after or leave the grace out", ErrGraceAfterOffline)
		}
	}
	for _, code := range j.Command.RestartExitCodes {
		if code < 0 || code > maxExitCode {
			return fmt.Errorf("%w: restart exit code %d: exit codes run from 0 to 4294967295", ErrRestartExitCodes, code)
		}
	}
	if len(j.Command.RestartExitCodes) > 0 && !j.Command.MayReboot {
		return fmt.Errorf("%w: restart_exit_codes without may_reboot: set may_reboot (--may-reboot) so that the agent may restart the machine, or leave the codes out", ErrRestartExitCodes)
	}
	return nil
}

// TimeRulesStatus are what a status says of the time rules (embedded in
// JobStatus; their fields are the status's).
type TimeRulesStatus struct {
	// DeferredUntil is set on a deferred status: the user put the job off
	// until then.
	DeferredUntil *time.Time `json:"deferred_until,omitempty"`
	// Deferral numbers the user's deferrals of the job on this client, from
	// 1; DeferralsMax is how many the job allows (so Max minus Deferral are
	// left). Set on a deferred status.
	Deferral     int `json:"deferral,omitempty"`
	DeferralsMax int `json:"deferrals_max,omitempty"`
	// RestartRequired is set on a succeeded status whose exit code means the
	// machine must restart to finish; RestartAt is when the agent restarts
	// it at the earliest (after the user's countdown, and in a maintenance
	// window when the job requires one).
	RestartRequired bool       `json:"restart_required,omitempty"`
	RestartAt       *time.Time `json:"restart_at,omitempty"`
}

// DeferralsLeft is how many deferrals a deferred status leaves.
func (s JobStatus) DeferralsLeft() int { return max(s.DeferralsMax-s.Deferral, 0) }

// validateTimeRules checks what a status says of the time rules.
func (s JobStatus) validateTimeRules() error {
	switch {
	case s.State == StateDeferred && (s.DeferredUntil == nil || s.Deferral < 1 || s.Deferral > MaxDeferrals || s.DeferralsMax < s.Deferral || s.DeferralsMax > MaxDeferrals):
		return fmt.Errorf("%w: a deferred status needs deferred_until, deferral (1 to %d) and deferrals_max (at least deferral)", ErrInvalidState, MaxDeferrals)
	case s.State != StateDeferred && (s.DeferredUntil != nil || s.Deferral != 0 || s.DeferralsMax != 0):
		return fmt.Errorf("%w: deferred_until, deferral and deferrals_max belong to a deferred status, not a %s one", ErrInvalidState, s.State)
	case s.RestartRequired && s.State != StateSucceeded:
		return fmt.Errorf("%w: restart_required belongs to a succeeded status, not a %s one", ErrInvalidState, s.State)
	}
	return nil
}
