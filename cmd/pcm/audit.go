package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/publisher"
)

// auditFlags are pcm audit's flags.
type auditFlags struct {
	since, until, job, client, output string
	types                             []string
	follow, utc                       bool
}

func newAuditCmd(g *globals) *cobra.Command {
	var f auditFlags
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Replay the history of offers, cancellations and statuses, in the order they were stored",
		Long: `Replays PCM_JOBS (job offered and job cancelled events) and PCM_STATUS (statuses) merged in the
order the broker stored them. It streams: memory stays flat whatever the size of the history.

Filters: --since and --until bound the time an event was stored (RFC 3339, or relative to now
such as -24h); --job keeps one job's events; --client keeps one client's statuses and the offers
and cancellations its consumer takes (its own subject, its enrolled groups' and pcm.jobs.all);
--type keeps offered, cancelled or status events (repeatable).

-o table shows time, type, job, client (or target), state and who (publisher, or runner/user).
-o json writes one CloudEvent per line in the CloudEvents JSON format, byte for byte the stored
event, so any CloudEvents SDK reads it. --follow keeps streaming events as they are stored.`,
		Example: `  pcm audit --since -24h
  pcm audit --job 01JD3S1M9ZQ6V3W5X7Y9A1B2C3 -o json
  pcm audit --client ws-042 --type status --follow`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			filter, err := f.filter(time.Now())
			if err != nil {
				return err
			}
			nc, js, err := g.connect("pcm audit")
			if err != nil {
				return err
			}
			defer nc.Close()
			err = runAudit(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), newDisplay(cmd.OutOrStdout(), f.utc), f.output, filter,
				func(ctx context.Context, fn func(publisher.AuditEvent) error) error {
					return publisher.Replay(ctx, js, filter, fn)
				})
			if errors.Is(err, context.Canceled) && f.follow {
				return nil
			}
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.since, "since", "", "only events stored at or after this time (RFC 3339 or relative: -24h)")
	fl.StringVar(&f.until, "until", "", "only events stored at or before this time (RFC 3339 or relative: -1h)")
	fl.StringVar(&f.job, "job", "", "only the events of this job")
	fl.StringVar(&f.client, "client", "", "only the events of this client")
	fl.StringSliceVar(&f.types, "type", nil, "only events of these types: offered, cancelled, status (repeatable)")
	fl.StringVarP(&f.output, "output", "o", "table", "output: table or json (CloudEvents JSON, one event per line)")
	fl.BoolVarP(&f.follow, "follow", "f", false, "keep streaming events as they are stored")
	addUTCFlag(cmd, &f.utc)
	return cmd
}

// filter checks the flags and builds the replay filter.
func (f auditFlags) filter(now time.Time) (publisher.AuditFilter, error) {
	if err := checkOutput(f.output, "table", "json"); err != nil {
		return publisher.AuditFilter{}, err
	}
	af := publisher.AuditFilter{JobID: f.job, Client: f.client, Follow: f.follow}
	for flag, dst := range map[string]*time.Time{"since": &af.Since, "until": &af.Until} {
		v := f.since
		if flag == "until" {
			v = f.until
		}
		if v == "" {
			continue
		}
		t, err := publisher.ParseWhen(v, now)
		if err != nil {
			return af, fmt.Errorf("--%s: %w", flag, err)
		}
		*dst = t
	}
	for _, t := range f.types {
		full, err := publisher.EventType(t)
		if err != nil {
			return af, fmt.Errorf("--type: %w", err)
		}
		af.Types = append(af.Types, full)
	}
	return af, af.Validate()
}

// auditFlushEvery is how often a following replay flushes its output.
const auditFlushEvery = 100 * time.Millisecond

// runAudit writes the replay to w as table rows or JSON lines. Output is
// buffered; when following it is flushed every auditFlushEvery, so an
// event shows within that of being stored.
func runAudit(ctx context.Context, w, errw io.Writer, d display, output string, f publisher.AuditFilter,
	replay func(context.Context, func(publisher.AuditEvent) error) error) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	var mu sync.Mutex
	if f.Follow {
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			t := time.NewTicker(auditFlushEvery)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					mu.Lock()
					_ = bw.Flush()
					mu.Unlock()
				}
			}
		}()
	}
	if output == "table" {
		mu.Lock()
		writeAuditHeader(bw)
		mu.Unlock()
	}
	n := 0
	err := replay(ctx, func(ev publisher.AuditEvent) error {
		mu.Lock()
		defer mu.Unlock()
		n++
		if output == "json" {
			return writeAuditJSON(bw, errw, ev)
		}
		writeAuditRow(bw, d, ev)
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	if ferr := bw.Flush(); ferr != nil && err == nil {
		err = ferr
	}
	return err
}

// writeAuditJSON writes one event as one line of CloudEvents JSON: the
// stored body itself when it is a structured-mode event on one line (the
// form pcm publishes), else the event compacted or re-encoded.
func writeAuditJSON(w *bufio.Writer, errw io.Writer, ev publisher.AuditEvent) error {
	b, err := ev.JSON()
	if err != nil {
		fmt.Fprintf(errw, "pcm: skipping %s sequence %d on %s: %v\n", ev.Stream, ev.Seq, ev.Subject, err)
		return nil
	}
	if bytes.ContainsAny(b, "\r\n") {
		var c bytes.Buffer
		if err := json.Compact(&c, b); err != nil {
			fmt.Fprintf(errw, "pcm: skipping %s sequence %d on %s: not JSON: %v\n", ev.Stream, ev.Seq, ev.Subject, err)
			return nil
		}
		b = c.Bytes()
	}
	if _, err := w.Write(b); err != nil {
		return err
	}
	return w.WriteByte('\n')
}

// The audit table streams, so it cannot measure its columns first as
// text/tabwriter does (and buffering the whole history to do so would defeat
// the flat memory): each column has a fixed width wide enough for its usual
// content, and longer cells push the rest of their row.
const auditRowFormat = "%-25s  %-9s  %-26s  %-20s  %-14s  %s\n"

func writeAuditHeader(w io.Writer) {
	fmt.Fprintf(w, auditRowFormat, "TIME", "TYPE", "JOB", "CLIENT", "STATE", "WHO")
}

// writeAuditRow writes one event as a table row: the stored time, the type,
// the job, the client (or the target of an offer), the state of a status,
// and who made it.
func writeAuditRow(w io.Writer, d display, ev publisher.AuditEvent) {
	when := d.time(ev.Stored)
	ce, err := ev.Decode()
	if err != nil {
		fmt.Fprintf(w, auditRowFormat, when, "invalid", "-", "-", "-", fmt.Sprintf("%s seq %d on %s: %v", ev.Stream, ev.Seq, ev.Subject, err))
		return
	}
	typ, job, client, state, who := publisher.ShortType(ce.Type()), ce.Subject(), "-", "-", "-"
	switch ce.Type() {
	case events.TypeJobStatus:
		st, err := events.ParseJobStatus(ce)
		if err != nil {
			state = "invalid"
			who = err.Error()
			break
		}
		client, state = st.ClientID, string(st.State)
		who = string(st.Runner)
		if st.User != "" {
			who += "/" + st.User
		}
	default:
		if t, ok := events.TargetOfSubject(ev.Subject); ok {
			client = t.String()
		}
		who = events.PublisherOf(ce)
	}
	// Pad the state before painting it: the colour codes are invisible.
	stateCell := fmt.Sprintf("%-14s", stateLabel(state))
	if state != "-" {
		stateCell = d.paint(state, stateCell)
	}
	fmt.Fprintf(w, "%-25s  %-9s  %-26s  %-20s  %s  %s\n", when, typ, job, client, stateCell, who)
}
