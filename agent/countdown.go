package agent

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/internal/clock"
)

// What the desktop session tells its user of the time rules: the countdown
// before a mandatory job runs, with the deferrals left and the deadline of
// a job the user may defer; the warning of a client that was off at a
// job's mandatory time; the countdown before the machine restarts.

// noticeMarks are how long before the end of a countdown the user is told
// again; the last is the final warning.
var noticeMarks = []time.Duration{time.Minute, 10 * time.Second}

// forUser reports whether the session counts a mandatory job down for its
// user: one the desktop runs (it needs the user), one the user may defer,
// or one this client first saw after its mandatory time with a grace after
// offline: the user is warned, whichever face runs it.
func forUser(f Facts) bool {
	_, late := f.Job.GraceEnd(f.firstSeen())
	return !f.Job.Command.Automated || f.Job.Deferrals != nil || late
}

// countdown counts a mandatory job down for the user (see forUser), then
// queues it to run when the desktop runs it. It waits, silently, for the
// job's mandatory time and for the end of a deferral; it warns the user
// during the grace after offline of a client that saw the job late; once
// the job is due it warns the user for the grace period (Config.Grace),
// saying how to defer a job that allows it; and it waits for a maintenance
// window a job requires. Before each notice it decides again: a job that
// is over, cancelled or expired stops the countdown silently, and one
// deferred meanwhile waits for the end of the deferral.
func (d *Desktop) countdown(ctx context.Context, job events.JobOffered, queue chan<- events.JobOffered) {
	log := d.log.With(zap.String("job", job.JobID))
	for ctx.Err() == nil {
		f, dec, err := d.decide(ctx, job, true, false, nil)
		if err != nil || !countingDown(dec) {
			log.Info("mandatory job not for the desktop now", zap.String("why", whyNot(dec, err)))
			return
		}
		due, rule, _ := unattendedDue(f)
		switch {
		case f.Now.Before(due) && rule == RuleGraceAfterOffline:
			off, hint := d.deferralHint(f)
			n := Notice{Kind: NoticeCountdown, JobID: job.JobID, Hint: hint,
				Text: fmt.Sprintf("%s was mandatory at %s, while this computer was off: it starts in %s (at %s): save your work%s",
					describe(job), userTime(*job.MandatoryAfter), left(f.Now, due), userTime(due), off)}
			if !d.warn(ctx, job, n, due, due) {
				return
			}
			continue
		case f.Now.Before(due):
			if !clock.SleepUntil(ctx, d.cfg.Clock, due) {
				return
			}
			continue
		}
		if w, waits := windowRule(f); waits {
			log.Info("mandatory job waits for a maintenance window", zap.String("why", w.Why))
			if !clock.SleepUntil(ctx, d.cfg.Clock, minTime(w.Until, f.Now.Add(windowRecheck))) {
				return
			}
			continue
		}
		end := f.Now.Add(d.cfg.Grace)
		off, hint := d.deferralHint(f)
		n := Notice{Kind: NoticeCountdown, JobID: job.JobID, Hint: hint,
			Text: fmt.Sprintf("%s is mandatory and starts in %s: save your work%s", describe(job), left(f.Now, end), off)}
		if !d.warn(ctx, job, n, end, due) {
			return
		}
		if f, dec, err = d.decide(ctx, job, true, false, nil); err != nil || !countingDown(dec) {
			return
		}
		if due2, _, _ := unattendedDue(f); due2.After(due) {
			continue // deferred during the countdown
		}
		if job.Command.Automated {
			return // the service runs it now
		}
		select {
		case queue <- job:
		case <-ctx.Done():
		}
		return
	}
}

// countingDown reports whether a desktop's unattended decision keeps a
// countdown going: the job runs, waits for its time or the user's rules,
// for a window, or for the service to run it (an automated job).
func countingDown(dec Decision) bool {
	switch dec.Rule {
	case RuleDue, RuleInterrupted, RuleMandatoryTime, RuleGraceAfterOffline, RuleDeferred, RuleWindow, RuleAutomated:
		return dec.Action == Run || dec.Action == Wait
	}
	return false
}

// whyNot says why a countdown stops.
func whyNot(dec Decision, err error) string {
	if err != nil {
		return err.Error()
	}
	return dec.Why
}

// warn tells the user first, then tells again how long is left at each of
// noticeMarks before end, deciding before each notice that the job is
// still counted down (due unchanged: not deferred meanwhile). It reports
// false when the countdown stops (ctx ended, the job no longer for the
// desktop); a deferral ends it early, reporting true.
func (d *Desktop) warn(ctx context.Context, job events.JobOffered, first Notice, end, due time.Time) bool {
	d.tell(first)
	for _, mark := range noticeMarks {
		at := end.Add(-mark)
		if !at.After(d.now()) {
			continue
		}
		if !clock.SleepUntil(ctx, d.cfg.Clock, at) {
			return false
		}
		f, dec, err := d.decide(ctx, job, true, false, nil)
		if err != nil || !countingDown(dec) {
			return false
		}
		if now, _, _ := unattendedDue(f); now.After(due) {
			return true // deferred: counted down again when the deferral ends
		}
		d.tell(Notice{Kind: NoticeCountdown, JobID: job.JobID, Text: fmt.Sprintf("%s starts in %s", describe(job), mark)})
	}
	return clock.SleepUntil(ctx, d.cfg.Clock, end)
}

// deferralHint tells the user whether a job may be put off, for how
// long, how often they still may and until when, or why they no longer
// may (text, appended to a notice's text), and how to put it off from the
// command line (hint, the notice's Hint); "" and "" for a job that allows
// no deferral.
func (d *Desktop) deferralHint(f Facts) (text, hint string) {
	if f.Job.Deferrals == nil {
		return "", ""
	}
	off := deferralOffer(f)
	deadline := ""
	if off.Deadline != nil {
		deadline = ", deadline " + userTime(*off.Deadline)
	}
	if !off.Allowed {
		return fmt.Sprintf(" (it cannot be put off: %s%s)", off.Why, deadline), ""
	}
	return fmt.Sprintf("; it can be put off for %s (%d of %d deferrals left%s)",
			time.Duration(f.Job.Deferrals.Each), off.leftNow(), f.Job.Deferrals.Max, deadline),
		"put it off with: pcm desktop defer " + f.Job.JobID
}

// restartCountdown warns the user that the machine restarts for job, as
// its status st asks, at st.RestartAt: at once, then at each of
// noticeMarks before it (the last one the final warning). It runs in the
// background, once per job; a restart whose time has passed is not
// announced.
func (d *Desktop) restartCountdown(ctx context.Context, st events.JobStatus, job events.JobOffered) {
	if st.RestartAt == nil || !st.RestartAt.After(d.now()) || !d.restartsOnce(st.JobID) {
		return
	}
	if job.Name == "" && job.Package == nil {
		if found, err := d.find(ctx, st.JobID); err == nil {
			job = found.Job
		}
	}
	at := *st.RestartAt
	go func() {
		d.tell(Notice{Kind: NoticeRestart, JobID: st.JobID, Text: fmt.Sprintf("this computer restarts at %s (in %s) to finish %s: save your work",
			userTime(at), left(d.now(), at), describe(job))})
		for i, mark := range noticeMarks {
			if !at.Add(-mark).After(d.now()) {
				continue
			}
			if !clock.SleepUntil(ctx, d.cfg.Clock, at.Add(-mark)) {
				return
			}
			what := "this computer restarts in %s to finish %s"
			if i == len(noticeMarks)-1 {
				what = "final warning: this computer restarts in %s to finish %s"
			}
			d.tell(Notice{Kind: NoticeRestart, JobID: st.JobID, Text: fmt.Sprintf(what, mark, describe(job))})
		}
	}()
}

// restartsOnce reports whether the restart of jobID is announced for the
// first time.
func (d *Desktop) restartsOnce(jobID string) bool {
	d.seenMu.Lock()
	defer d.seenMu.Unlock()
	if d.restarts == nil {
		d.restarts = map[string]bool{}
	}
	if d.restarts[jobID] {
		return false
	}
	d.restarts[jobID] = true
	return true
}

// hearRestarts subscribes to this client's statuses and delivers those
// that ask for a restart, read back from the broker (what is heard is a
// hint: the stored status is what counts).
func (d *Desktop) hearRestarts(ctx context.Context) (<-chan events.JobStatus, func(), error) {
	out := make(chan events.JobStatus, 16)
	var wg sync.WaitGroup
	sub, err := d.nc.Subscribe(events.StatusSubjectsOfClient(d.cfg.ClientID), func(m *nats.Msg) {
		ev, err := events.Decode(m.Header, m.Data)
		if err != nil {
			return
		}
		heard, err := events.ParseJobStatus(ev)
		if err != nil || !heard.RestartRequired {
			return
		}
		wg.Go(func() {
			rctx, cancel := context.WithTimeout(ctx, publishTimeout)
			defer cancel()
			if stored, err := d.lastStatus(rctx, heard.JobID); err == nil && stored != nil && stored.RestartRequired {
				select {
				case out <- *stored:
				case <-ctx.Done():
				}
			}
		})
	})
	if err != nil {
		return nil, nil, fmt.Errorf("hearing the statuses of %s: %w", d.cfg.ClientID, err)
	}
	return out, func() { _ = sub.Unsubscribe(); wg.Wait() }, nil
}

// userTime writes an instant for the user: local time, with the day when
// it is not today.
func userTime(t time.Time) string {
	t = t.Local()
	if y, m, dd := t.Date(); y == time.Now().Year() && m == time.Now().Month() && dd == time.Now().Day() {
		return t.Format("15:04:05")
	}
	return t.Format("Mon 2 Jan 15:04")
}

// left is how long from now until end, rounded for the user.
func left(now, end time.Time) time.Duration {
	return max(end.Sub(now), 0).Round(time.Second)
}
