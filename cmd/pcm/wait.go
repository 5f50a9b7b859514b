package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/pflag"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/rollout"
)

// Exit codes of pcm publish --wait.
const (
	// exitFailed: more clients failed than --max-failures allows.
	exitFailed = 1
	// exitTimeout: --wait-timeout elapsed with clients unfinished.
	exitTimeout = 2
)

// DefaultWaitTimeout is how long pcm publish --wait waits by default.
const defaultWaitTimeout = 30 * time.Minute

// waitFlags are pcm publish's --wait flags.
type waitFlags struct {
	wait        bool
	timeout     time.Duration
	maxFailures int
}

func (f *waitFlags) register(fl *pflag.FlagSet) {
	fl.BoolVar(&f.wait, "wait", false, "after publishing, follow the rollout live and exit 0 when every targeted client succeeded (or the job is not applicable there), 1 when more than --max-failures failed or the staged rollout is halted, 2 on --wait-timeout")
	// --timeout is the command line's own timeout (how long the job may run
	// on a client), so the wait's is --wait-timeout.
	fl.DurationVar(&f.timeout, "wait-timeout", defaultWaitTimeout, "with --wait: give up after this long and exit 2, listing the unfinished clients (not --timeout, which is how long the command may run on a client)")
	fl.IntVar(&f.maxFailures, "max-failures", 0, "with --wait: exit 1 as soon as more than this many clients failed (default for a rollout with --halt-at: no limit, its halt threshold judges)")
}

// maxListed bounds the clients an exit message names.
const maxListed = 20

// waitForRollout follows job's rollout, showing progress on w (a progress
// bar on a terminal, one plain line per change otherwise), until its
// verdict: it returns nil when every expected client is done within
// --max-failures, an exitError with code 1 as soon as more failed, and one
// with code 2 when --wait-timeout elapses first.
func waitForRollout(ctx context.Context, w io.Writer, js jetstream.JetStream, jobID string, f waitFlags) error {
	start := time.Now()
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	if f.timeout > 0 {
		ctx, cancel = context.WithTimeout(parent, f.timeout)
	}
	defer cancel()
	d := newDisplay(w, false)
	bar := isTerminal(w)
	watcher, err := rollout.Watch(ctx, js, jobID)
	if err != nil {
		return waitEnded(parent, ctx, d, jobID, f, nil, err)
	}
	defer watcher.Stop()
	var tick <-chan time.Time
	if bar {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		tick = t.C
	}
	var cur *rollout.Rollout
	for {
		select {
		case r, ok := <-watcher.Updates():
			if !ok {
				endBar(w, bar)
				return waitEnded(parent, ctx, d, jobID, f, cur, watcher.Err())
			}
			if cur == nil {
				if len(r.Clients) == 0 {
					return &exitError{code: exitFailed, err: fmt.Errorf("no client is expected to run job %s: no client is named and no enrolled client's consumer takes %s (enroll clients with pcm enroll CLIENT --group G)",
						jobID, targetList(r.Targets))}
				}
				limit := "max failures " + strconv.Itoa(f.maxFailures)
				if f.maxFailures == rollout.NoFailureLimit {
					limit = "until done or halted"
				}
				fmt.Fprintf(w, "waiting for job %s on %s (timeout %s, %s): %s (%d done, %d failed)\n",
					jobID, plural(len(r.Clients), "client"), f.timeout, limit, countsText(r), r.Done, r.Failed)
				if ne := notEnrolled(r); len(ne) > 0 {
					fmt.Fprintf(w, "not enrolled, so they cannot receive the job until pcm enroll: %s\n", strings.Join(ne, ", "))
				}
			} else if !bar {
				for _, line := range changeLines(d, *cur, r) {
					fmt.Fprintln(w, line)
				}
			}
			cur = &r
			if bar {
				drawBar(w, r, time.Since(start))
			}
			switch r.Verdict(f.maxFailures) {
			case rollout.VerdictFailed:
				endBar(w, bar)
				return &exitError{code: exitFailed, err: fmt.Errorf("%s (more than --max-failures %d)", failedOn(d, r), f.maxFailures)}
			case rollout.VerdictHalted:
				endBar(w, bar)
				return &exitError{code: exitFailed, err: haltedErr(r)}
			case rollout.VerdictSucceeded:
				endBar(w, bar)
				fmt.Fprintf(w, "job %s done on %s in %s: %s\n", jobID, plural(len(r.Clients), "client"), time.Since(start).Round(time.Millisecond), countsText(r))
				return nil
			}
		case <-tick:
			if cur != nil {
				drawBar(w, *cur, time.Since(start))
			}
		}
	}
}

// waitEnded is the outcome of a wait whose rollout stopped being followed
// (err says why; cur is the last rollout seen, if any): interrupted, timed
// out (exit 2, naming the unfinished clients), or failed.
func waitEnded(parent, ctx context.Context, d display, jobID string, f waitFlags, cur *rollout.Rollout, err error) error {
	switch {
	case parent.Err() != nil:
		return fmt.Errorf("interrupted while waiting for job %s", jobID)
	case errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil:
		if cur == nil {
			return &exitError{code: exitTimeout, err: fmt.Errorf("timed out after %s before the rollout of job %s could be read", f.timeout, jobID)}
		}
		un := cur.Unfinished()
		return &exitError{code: exitTimeout, err: fmt.Errorf("timed out after %s waiting for job %s: %d of %s unfinished: %s",
			f.timeout, jobID, len(un), plural(len(cur.Clients), "client"), listClients(d, un))}
	case err == nil:
		return fmt.Errorf("the rollout of job %s stopped being followed", jobID)
	default:
		return err
	}
}

// failedOn says on which clients a rollout failed: "job J failed on 2 of
// 5 clients: c1 (failed, exit 3: ...), ...".
func failedOn(d display, r rollout.Rollout) string {
	return fmt.Sprintf("job %s failed on %d of %s: %s", r.JobID, r.Failed, plural(len(r.Clients), "client"), listClients(d, r.FailedClients()))
}

// haltedErr says that a staged rollout is halted, how far it went and how
// to let it go on.
func haltedErr(r rollout.Rollout) error {
	return fmt.Errorf("job %s %s, with %d of %s done (%d failed); pcm resume %s lets its rings go on",
		r.JobID, haltText(r), r.Done, plural(len(r.Clients), "client"), r.Failed, r.JobID)
}

// notEnrolled names the clients the job names that are not enrolled.
func notEnrolled(r rollout.Rollout) []string {
	var out []string
	for _, c := range r.Clients {
		if !c.Enrolled {
			out = append(out, c.Client)
		}
	}
	return out
}

// haltText says who halted a rollout and why: "halted by controller c1:
// failed on 2 of 5 finished clients (40% > halt_at 20%) with ring 1 of 3
// open".
func haltText(r rollout.Rollout) string {
	s := "halted"
	if r.HaltedBy != "" {
		s += " by " + r.HaltedBy
	}
	if h := r.Halted; h != nil {
		switch {
		case h.Reason != "":
			s += ": " + h.Reason
		case h.Finished > 0:
			s += fmt.Sprintf(": failed on %d of %d finished clients", h.Failed, h.Finished)
		}
	}
	return s
}

// listClients names clients with their state and detail, at most maxListed.
func listClients(d display, cs []rollout.ClientRollout) string {
	var parts []string
	for i, c := range cs {
		if i == maxListed {
			parts = append(parts, fmt.Sprintf("and %d more (see pcm status)", len(cs)-maxListed))
			break
		}
		parts = append(parts, c.Client+" ("+clientSummary(d, c)+")")
	}
	return strings.Join(parts, ", ")
}

// clientSummary describes a client's state briefly: "failed, exit 3: exit
// code 3 is not a success code", "offline since T", "started".
func clientSummary(d display, c rollout.ClientRollout) string {
	why := c.Explain(d.time)
	if !events.State(c.State).Known() {
		return why // the explanation of a client without status starts with its state
	}
	s := stateLabel(string(c.State))
	if c.ExitCode != nil {
		s += fmt.Sprintf(", exit %d", *c.ExitCode)
	}
	if why != "" {
		s += ": " + why
	}
	return s
}

// targetList renders targets as "group:lab all".
func targetList(ts []events.Target) string {
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = t.String()
	}
	return strings.Join(s, " ")
}

// barWidth is the width of the progress bar's gauge.
const barWidth = 30

// drawBar redraws the progress line: done/expected, failures, running, elapsed.
func drawBar(w io.Writer, r rollout.Rollout, elapsed time.Duration) {
	n := len(r.Clients)
	filled := 0
	if n > 0 {
		filled = r.Done * barWidth / n
	}
	gauge := strings.Repeat("#", filled) + strings.Repeat(".", barWidth-filled)
	fmt.Fprintf(w, "\r\x1b[K[%s] %d/%d done, %d failed, %d running  %s",
		gauge, r.Done, n, r.Failed, r.Counts[rollout.ClientState(events.StateStarted)], elapsed.Round(time.Second))
}

// endBar ends the progress line.
func endBar(w io.Writer, bar bool) {
	if bar {
		fmt.Fprintln(w)
	}
}
