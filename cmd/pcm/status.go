package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/rollout"
)

func newStatusCmd(g *globals) *cobra.Command {
	var output string
	var watch, utc bool
	cmd := &cobra.Command{
		Use:   "status JOB",
		Short: "Show where a job ran, where it did not, and why",
		Long: `Lists every client the job targets (the clients named explicitly, and every enrolled client
whose consumer takes one of its targets' subjects) with its latest state, exit code, runner and
time. A client that has reported nothing says why: pending (received, waiting for its time or for
the user), not received (enrolled, but its agent has not fetched the job; or not enrolled at
all), queued behind job J (its agent is online and busy with another job), offline since T (its
heartbeat is stale), site NAME unreachable since T (a client of a branch site whose link to the
hub is down: T is when the hub last heard from the site), or locked by desktop (the desktop face holds the client's lock). A summary
line counts the clients per state. The heading names the publisher and the key that signed the
job.

For a staged rollout (pcm publish --rings) the RING column gives each client's ring, a line per
ring says whether it is open, waiting for its time or halted, with its clients' counts, and
clients that have not started the job of a halted rollout say halted. A client waiting for a job
it requires (--requires) says which one.

-o table (default), wide (adds attempt, host, platform, user, groups and the last line of the
command's output), json or yaml (with the output's tail). --watch keeps
following the job: it subscribes to its statuses, the agents' heartbeats and the locks and shows
every change (on a terminal it redraws the table; otherwise it prints one line per change, or one
JSON document per change with -o json) until the job is over on every client it targets or
its staged rollout is halted; it then exits as pcm publish --wait does: 0, or 1 when it failed on
a client or was halted.`,
		Example: `  pcm status 01JD3S1M9ZQ6V3W5X7Y9A1B2C3
  pcm status 01JD3S1M9ZQ6V3W5X7Y9A1B2C3 -o json | jq '.clients[] | select(.failed)'
  pcm status 01JD3S1M9ZQ6V3W5X7Y9A1B2C3 --watch`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output, "table", "wide", "json", "yaml"); err != nil {
				return err
			}
			nc, js, err := g.connect("pcm status")
			if err != nil {
				return err
			}
			defer nc.Close()
			out := cmd.OutOrStdout()
			d := newDisplay(out, utc)
			if !watch {
				r, err := rollout.Read(cmd.Context(), js, args[0])
				if err != nil {
					return err
				}
				return renderRollout(out, d, r, output)
			}
			return watchStatus(cmd.Context(), out, d, js, args[0], output)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output: table, wide (adds attempt, host, platform, user, groups and the output tail), json or yaml")
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "keep following the job and show every change")
	addUTCFlag(cmd, &utc)
	return cmd
}

// renderRollout writes a rollout as a table (with a heading and a summary
// line) or as one indented JSON document.
func renderRollout(w io.Writer, d display, r rollout.Rollout, output string) error {
	if structured(output) {
		return writeDocument(w, output, r)
	}
	fmt.Fprintln(w, rolloutHeading(d, r))
	t := newTable(w)
	head := []string{"CLIENT", "STATE", "EXIT", "RUNNER", "TIME"}
	if output == "wide" {
		head = append(head, "ATTEMPT", "HOST", "PLATFORM", "USER", "GROUPS", "OUTPUT")
	}
	if r.Plan != nil {
		head = append(head, "RING")
	}
	row(t, append(head, "DETAIL")...)
	for _, c := range r.Clients {
		exit := "-"
		if c.ExitCode != nil {
			exit = strconv.Itoa(*c.ExitCode)
		}
		at := "-"
		if c.Time != nil {
			at = d.time(*c.Time)
		}
		client := c.Client
		if !c.Expected {
			client += "*"
		}
		cells := []string{client, d.paint(string(c.State), stateLabel(string(c.State))), exit, dash(string(c.Runner)), at}
		if output == "wide" {
			attempt := "-"
			if c.Attempt > 0 {
				attempt = fmt.Sprintf("%d/%d", c.Attempt, c.MaxAttempts)
			}
			cells = append(cells, attempt, dash(c.Host), dash(c.Platform), dash(c.User), dash(strings.Join(c.Groups, ",")), dash(lastLine(c.OutputTail)))
		}
		if r.Plan != nil {
			ring := "-"
			if c.Ring > 0 {
				ring = strconv.Itoa(c.Ring)
			}
			cells = append(cells, ring)
		}
		row(t, append(cells, dash(c.Explain(d.time)))...)
	}
	if err := t.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, summaryLine(r))
	return nil
}

// rolloutHeading is the line above the table: the job, who published it,
// its targets and window, and a cancellation.
func rolloutHeading(d display, r rollout.Rollout) string {
	targets := make([]string, len(r.Targets))
	for i, t := range r.Targets {
		targets[i] = t.String()
	}
	s := "job " + r.JobID
	if r.Name != "" {
		s += " (" + r.Name + ")"
	}
	s += fmt.Sprintf(" by %s at %s to %s, expires %s", publisherText(r.Publisher, r.Signer), d.time(r.OfferedAt), strings.Join(targets, " "), d.time(r.ExpireAfter))
	if r.Cancelled != nil {
		s += "; CANCELLED"
		if r.Cancelled.Reason != "" {
			s += ": " + r.Cancelled.Reason
		}
	}
	if r.Halted != nil {
		s += "; HALTED " + strings.TrimPrefix(haltText(r), "halted ")
	}
	if len(r.Requires) > 0 {
		s += "; requires " + strings.Join(r.Requires, " ")
	}
	for _, rs := range r.Rings {
		s += "\n" + ringLine(d, r, rs)
	}
	return s
}

// ringLine says where one ring of a staged rollout stands: "ring 2 (50%)
// waiting, opens at T: 20 clients, 0 done, 0 failed".
func ringLine(d display, r rollout.Rollout, rs rollout.RingState) string {
	s := fmt.Sprintf("ring %d (%s) %s", rs.Ring, rs.Spec, rs.State)
	switch rs.State {
	case rollout.RingWaiting:
		s += ", opens at " + d.time(rs.OpensAt)
	case rollout.RingOpen:
		s += " since " + d.time(rs.OpensAt)
	}
	s += fmt.Sprintf(": %s, %d done, %d failed", plural(rs.Clients, "client"), rs.Done, rs.Failed)
	if rs.Ring == 1 && r.Plan.HaltAt != nil {
		s += fmt.Sprintf(" (halts above %s%% failed of at least %d finished)", strconv.FormatFloat(*r.Plan.HaltAt, 'f', -1, 64), r.Plan.HaltMinOrDefault())
	}
	return s
}

// publisherText names who published an event: its publisher name, and the
// key that signed it, if any: "ci (signed by UDYL25OOTWVR...6BHT)".
func publisherText(name, signer string) string {
	if signer == "" {
		return name
	}
	return name + " (signed by " + events.ShortKey(signer) + ")"
}

// maxOutputCell bounds the output shown in a table cell.
const maxOutputCell = 60

// lastLine is the last non-empty line of a command's output, shortened to
// fit a table cell.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\r\n\t "), "\n")
	l := strings.TrimSpace(lines[len(lines)-1])
	if r := []rune(l); len(r) > maxOutputCell {
		l = "..." + string(r[len(r)-maxOutputCell+3:])
	}
	return l
}

// stateOrder is the order of the summary line: outcomes, then work under
// way, then the reasons for silence.
var stateOrder = []rollout.ClientState{
	rollout.ClientState(events.StateSucceeded), rollout.ClientState(events.StateNotApplicable),
	rollout.ClientState(events.StateFailed), rollout.ClientState(events.StateTimedOut),
	rollout.ClientState(events.StateCancelled), rollout.ClientState(events.StateExpired),
	rollout.ClientState(events.StateRejected), rollout.ClientState(events.StateStarted),
	rollout.ClientPending, rollout.ClientHalted, rollout.ClientLocked, rollout.ClientQueued, rollout.ClientNotReceived, rollout.ClientOffline,
}

// summaryLine counts the clients per state: "5 clients: 1 succeeded, 1
// failed, ... (3 done, 1 failed)". Clients marked * reported without being
// targeted.
func summaryLine(r rollout.Rollout) string {
	line := plural(len(r.Clients), "client")
	if counts := countsText(r); counts != "" {
		line += ": " + counts
	}
	line += fmt.Sprintf(" (%d done, %d failed)", r.Done, r.Failed)
	for _, c := range r.Clients {
		if !c.Expected {
			line += "; * reported without being targeted"
			break
		}
	}
	return line
}

// countsText lists the number of clients per state: "1 succeeded, 1 failed".
func countsText(r rollout.Rollout) string {
	var parts []string
	seen := map[rollout.ClientState]bool{}
	for _, s := range stateOrder {
		seen[s] = true
		if n := r.Counts[s]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, stateLabel(string(s))))
		}
	}
	var others []string
	for s, n := range r.Counts {
		if !seen[s] && n > 0 {
			others = append(others, fmt.Sprintf("%d %s", n, stateLabel(string(s))))
		}
	}
	sort.Strings(others)
	return strings.Join(append(parts, others...), ", ")
}

// plural is "1 client", "2 clients".
func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// watchStatus follows a rollout until the job is over on every client it
// targets, or ctx ends: on a terminal it redraws the table at every change;
// otherwise it prints one line per client change (or one JSON document per
// change with -o json). When the job is over it exits as pcm publish --wait
// does: 0, or 1 when it failed on a client.
func watchStatus(ctx context.Context, w io.Writer, d display, js jetstream.JetStream, jobID, output string) error {
	redraw := isTerminal(w) && !structured(output)
	watcher, err := rollout.Watch(ctx, js, jobID)
	if err != nil {
		return err
	}
	defer watcher.Stop()
	var prev *rollout.Rollout
	for r := range watcher.Updates() {
		switch {
		case output == "json":
			b, err := json.Marshal(r)
			if err == nil {
				fmt.Fprintln(w, string(b))
			}
		case output == "yaml":
			fmt.Fprintln(w, "---")
			_ = writeDocument(w, output, r)
		case redraw:
			fmt.Fprint(w, "\x1b[H\x1b[2J")
			_ = renderRollout(w, d, r, output)
		case prev == nil:
			_ = renderRollout(w, d, r, output)
		default:
			for _, line := range changeLines(d, *prev, r) {
				fmt.Fprintln(w, line)
			}
			if r.Over() {
				fmt.Fprintln(w, summaryLine(r))
			}
		}
		if r.Over() {
			if r.Failed > 0 {
				return &exitError{code: exitFailed, err: errors.New(failedOn(d, r))}
			}
			return nil
		}
		if r.Verdict(rollout.NoFailureLimit) == rollout.VerdictHalted {
			return &exitError{code: exitFailed, err: haltedErr(r)} // as pcm publish --wait
		}
		prev = &r
	}
	if err := watcher.Err(); err != nil || ctx.Err() != nil {
		return err // nil when interrupted
	}
	return fmt.Errorf("the rollout of job %s stopped being followed", jobID)
}

// changeLines returns one line per client whose state or detail changed
// between two rollouts, each ending with the running counts.
func changeLines(d display, prev, cur rollout.Rollout) []string {
	before := map[string]rollout.ClientRollout{}
	for _, c := range prev.Clients {
		before[c.Client] = c
	}
	var out []string
	for _, c := range cur.Clients {
		if p, ok := before[c.Client]; ok && p.State == c.State && p.Detail == c.Detail {
			continue
		}
		out = append(out, changeLine(d, cur, c))
	}
	return out
}

// changeLine is one plain, CI-friendly line about one client: "T client
// failed, exit 3: reason [2/5 done, 1 failed]".
func changeLine(d display, r rollout.Rollout, c rollout.ClientRollout) string {
	return fmt.Sprintf("%s %s %s [%d/%d done, %d failed]", d.time(r.At), c.Client,
		d.paint(string(c.State), clientSummary(d, c)), r.Done, len(r.Clients), r.Failed)
}
