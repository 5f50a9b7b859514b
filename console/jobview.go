package console

import (
	"sort"
	"strings"
	"time"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/rollout"
)

// maxTail bounds the output tail sent for each client.
const maxTail = 4096

// JobView is one job's page: the rollout (its job id, name, publisher,
// signer, times, plan and rings as package rollout says them) with the
// clients, counts and notes as the console shows them, which replace the
// rollout's own in JSON.
type JobView struct {
	rollout.Rollout
	Targets   []string        `json:"targets"`
	Command   string          `json:"command"`
	Cancelled string          `json:"cancelled,omitempty"`
	Halted    string          `json:"halted,omitempty"`
	Verdict   rollout.Verdict `json:"verdict"`
	Counts    map[string]int  `json:"counts"`
	Total     int             `json:"total"`
	Clients   []ClientRow     `json:"clients"`
	// Finished are the times (Unix milliseconds) and states of the clients
	// whose job ended, in time order: the chart of the rollout over time.
	Finished []Point `json:"finished"`
	At       int64   `json:"at"`
}

// ClientRow is one client of a job.
type ClientRow struct {
	Client     string `json:"client"`
	State      string `json:"state"`
	Raw        string `json:"raw_state"`
	Why        string `json:"why,omitempty"`
	Ring       int    `json:"ring,omitempty"`
	Time       string `json:"time,omitempty"`
	ExitCode   *int   `json:"exit_code,omitempty"`
	Host       string `json:"host,omitempty"`
	Attempt    int    `json:"attempt,omitempty"`
	OutputTail string `json:"output_tail,omitempty"`
}

// Point is one client's end of the job on the chart.
type Point struct {
	T     int64  `json:"t"`
	State string `json:"state"`
}

// rfc3339 formats times in the views: UTC, to the second.
func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// viewOf renders a rollout for the job page.
func viewOf(r rollout.Rollout) JobView {
	v := JobView{Rollout: r, Verdict: r.Verdict(0), Counts: map[string]int{}, Total: len(r.Clients), At: r.At.UnixMilli()}
	v.Rollout.Clients = nil // the view's Clients replace them
	for _, t := range r.Targets {
		v.Targets = append(v.Targets, t.String())
	}
	if c := r.Cancelled; c != nil {
		v.Cancelled = "cancelled"
		if c.Reason != "" {
			v.Cancelled += ": " + c.Reason
		}
	}
	if h := r.Halted; h != nil {
		v.Halted = "halted"
		if r.HaltedBy != "" {
			v.Halted += " by " + r.HaltedBy
		}
		if h.Reason != "" {
			v.Halted += ": " + h.Reason
		}
	}
	v.Clients = make([]ClientRow, 0, len(r.Clients))
	for _, c := range r.Clients {
		st := clientState(c.State)
		v.Counts[st]++
		row := ClientRow{Client: c.Client, State: st, Raw: string(c.State), Why: c.Explain(rfc3339), Ring: c.Ring,
			ExitCode: c.ExitCode, Host: c.Host, Attempt: c.Attempt, OutputTail: tail(c.OutputTail)}
		if c.Time != nil {
			row.Time = rfc3339(*c.Time)
			if c.Done {
				v.Finished = append(v.Finished, Point{T: c.Time.UnixMilli(), State: st})
			}
		}
		v.Clients = append(v.Clients, row)
	}
	sort.Slice(v.Finished, func(i, j int) bool { return v.Finished[i].T < v.Finished[j].T })
	return v
}

// commandText is a command line as one line of text.
func commandText(c events.CommandLine) string { return strings.Join(c.Argv, " ") }

// tail keeps the end of an output.
func tail(s string) string {
	if len(s) > maxTail {
		return s[len(s)-maxTail:]
	}
	return s
}
