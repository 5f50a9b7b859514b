package events

import "time"

// The lifecycle rules of a job on a client, written once: the agent's two
// faces, the publisher's rollout and inventory views and the CLI call them.

// Defaults a job gets for the fields its publisher leaves zero (see
// JobOffered.WithDefaults).
const (
	// DefaultExpiry is how long after offer_after (or after
	// mandatory_after, when that is later) a job expires.
	DefaultExpiry = 7 * 24 * time.Hour
	// DefaultTimeout is a command line's timeout when none is given.
	DefaultTimeout = time.Hour
)

// WithDefaults returns j with the defaults applied to the fields left zero:
// offer_after now (or the mandatory time, when that is already past: a job
// mandatory "a moment ago" is offered from then), expire_after
// DefaultExpiry after the offer time (after the mandatory time when that is
// later), a timeout of DefaultTimeout, and a background command line marked
// automated. It sets no job id and changes nothing that was given.
func (j JobOffered) WithDefaults(now time.Time) JobOffered {
	now = now.UTC()
	if j.OfferAfter.IsZero() {
		j.OfferAfter = now
		if m := j.MandatoryAfter; m != nil && m.Before(now) {
			j.OfferAfter = *m
		}
	}
	if j.ExpireAfter.IsZero() {
		j.ExpireAfter = j.OfferAfter.Add(DefaultExpiry)
		if m := j.MandatoryAfter; m != nil && !m.Before(j.ExpireAfter) {
			j.ExpireAfter = m.Add(DefaultExpiry)
		}
	}
	if j.Command.Timeout == 0 {
		j.Command.Timeout = Duration(DefaultTimeout)
	}
	if j.Command.Background {
		j.Command.Automated = true
	}
	return j
}

// Attempts is MaxAttempts with its default applied.
func (j JobOffered) Attempts() int { return attemptsOf(j.MaxAttempts) }

// attemptsOf is a max_attempts value with its default (1) applied.
func attemptsOf(maxAttempts int) int {
	if maxAttempts <= 0 {
		return 1
	}
	return maxAttempts
}

// EndsJob reports whether s ends its job on its client, when the job allows
// maxAttempts attempts (zero or less: the default, 1). A status ends the job
// when it is final and either not retryable (succeeded, cancelled, expired,
// not_applicable) or the last allowed attempt. A rejection never does: it
// names an event the agent refused (a forged or malformed offer may carry
// any job id), not a run, so the real offer of that job still runs. A
// restarted status, which follows the success of the job's attempt, ends
// it; a deferred one does not.
func (s JobStatus) EndsJob(maxAttempts int) bool {
	if s.State == StateRestarted {
		return true
	}
	if !s.State.Final() || s.State == StateRejected {
		return false
	}
	return !s.State.Retryable() || s.Attempt >= attemptsOf(maxAttempts)
}

// Failure reports whether a job that ended in s failed on its client: it
// ran and did not succeed (failed, timed_out), or never ran in its window
// (expired). A job that succeeded, did not apply to the client
// (not_applicable) or was cancelled by its publisher did not fail, and a
// rejection does not end a job (see JobStatus.EndsJob).
func (s State) Failure() bool {
	return s == StateFailed || s == StateTimedOut || s == StateExpired
}

// NextAttempt numbers the next attempt of a job on a client: one more than
// the attempts already made, which are the most of those its journal
// counts (journaled) and of the attempt its last status reports (last; nil
// when there is none). A rejection counts no attempt, nor does a deferral
// (it carries the attempt it put off). A final status that ends a job
// without running it carries the number this gives.
func NextAttempt(journaled int, last *JobStatus) int {
	made := max(journaled, 0)
	if last != nil && last.State != StateRejected && last.State != StateDeferred {
		made = max(made, last.Attempt)
	}
	return made + 1
}

// Supersedes reports whether s replaces cur as the latest status of a job
// on a client, whatever order the two are read in: a status of a later
// attempt does, one of an earlier attempt never does; within one attempt a
// started status never replaces a final one (a started status published
// late), and restarted, which follows the final status of its attempt,
// replaces it.
func (s JobStatus) Supersedes(cur JobStatus) bool {
	switch {
	case s.Attempt != cur.Attempt:
		return s.Attempt > cur.Attempt
	case cur.State == StateRestarted:
		return s.State == StateRestarted
	case s.State == StateRestarted:
		return true
	}
	return !cur.State.Final() || s.State.Final()
}
