package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"sigs.k8s.io/yaml"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/fleet"
	"github.com/pcm-project/pcm/rollout"
)

// display is how an operator command renders: colours (only on a terminal
// and never with NO_COLOR) and the time zone (local unless --utc).
type display struct {
	color bool
	utc   bool
}

// newDisplay decides the rendering of output written to w.
func newDisplay(w io.Writer, utc bool) display {
	return display{color: isTerminal(w) && os.Getenv("NO_COLOR") == "", utc: utc}
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// time renders t as RFC 3339 in the local zone, or in UTC with --utc.
func (d display) time(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	if d.utc {
		return t.UTC().Format(time.RFC3339)
	}
	return t.Local().Format(time.RFC3339)
}

// ANSI colours. Every coloured cell of a column carries the same number of
// invisible bytes (a 5-byte colour, a 4-byte reset), so tabwriter, which
// counts them as width, keeps the columns aligned.
const (
	ansiReset   = "\x1b[0m"
	ansiDefault = "\x1b[39m"
	ansiRed     = "\x1b[31m"
	ansiGreen   = "\x1b[32m"
	ansiYellow  = "\x1b[33m"
	ansiBlue    = "\x1b[34m"
	ansiGrey    = "\x1b[90m"
)

// stateColor is the colour of a client state or a liveness.
func stateColor(state string) string {
	switch state {
	case string(events.StateSucceeded), string(fleet.Online):
		return ansiGreen
	case string(events.StateFailed), string(events.StateTimedOut), string(events.StateRejected):
		return ansiRed
	case string(events.StateStarted), string(rollout.ClientPending), string(rollout.ClientQueued):
		return ansiBlue
	case string(rollout.ClientLocked), string(rollout.ClientNotReceived), string(events.StateExpired),
		string(events.StateCancelled), string(fleet.Stale):
		return ansiYellow
	case string(rollout.ClientOffline), string(events.StateNotApplicable), string(fleet.NeverSeen), string(fleet.SiteUnreachable):
		return ansiGrey
	}
	return ansiDefault
}

// paint colours text by state when colours are on.
func (d display) paint(state, text string) string {
	if !d.color {
		return text
	}
	return stateColor(state) + text + ansiReset
}

// stateLabel is how a state reads in a table: not_received as "not received".
func stateLabel(s string) string { return strings.ReplaceAll(s, "_", " ") }

// newTable returns a tabwriter for an aligned table; cells are separated by
// tabs and the caller flushes it.
func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
}

// row writes one tab-separated row.
func row(w io.Writer, cells ...string) {
	fmt.Fprintln(w, strings.Join(cells, "\t"))
}

// dash renders an empty cell.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// checkOutput refuses an -o value not in allowed.
func checkOutput(output string, allowed ...string) error {
	for _, a := range allowed {
		if output == a {
			return nil
		}
	}
	list := allowed[len(allowed)-1]
	if n := len(allowed); n > 1 {
		list = strings.Join(allowed[:n-1], ", ") + " or " + list
	}
	return fmt.Errorf("-o %q: use %s", output, list)
}

// structured reports whether output is a document format (json or yaml)
// rather than one for people (table, wide).
func structured(output string) bool { return output == "json" || output == "yaml" }

// writeDocument writes v as indented JSON, or as YAML (the same document,
// field names and all) for -o yaml.
func writeDocument(w io.Writer, output string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if output == "yaml" {
		if b, err = yaml.JSONToYAML(b); err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// addUTCFlag registers --utc on cmd.
func addUTCFlag(cmd *cobra.Command, utc *bool) {
	cmd.Flags().BoolVar(utc, "utc", false, "show times in UTC instead of the local time zone")
}
