package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/pcm-project/pcm/audit"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/internal/backoff"
	"github.com/pcm-project/pcm/publisher"
)

// auditFlags are pcm audit's flags.
type auditFlags struct {
	since, until, job, client, output string
	types                             []string
	follow, utc, verify               bool
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
event, so any CloudEvents SDK reads it. --follow keeps streaming events as they are stored; when
the connection is lost it reconnects and resumes after the last event it printed.

A replay is complete or fails: it checks what it reads against the streams' state (whichever
replica of a cluster answers) and exits 1, naming the stream and the sequences it could not
read, rather than print a history with events missing.

--verify reads both streams whole and prints, per stream, how many events it holds and how many
were read, its first and last sequence, the gaps in its sequences (purged or deleted), and the
events that do not decode; it exits 0 only when both were read whole and every event decodes.`,
		Example: `  pcm audit --since -24h
  pcm audit --job 01JD3S1M9ZQ6V3W5X7Y9A1B2C3 -o json
  pcm audit --client ws-042 --type status --follow
  pcm audit --verify`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.verify {
				if err := f.verifyAlone(cmd); err != nil {
					return err
				}
				nc, js, err := g.connect("pcm audit")
				if err != nil {
					return err
				}
				defer nc.Close()
				return runVerify(cmd.Context(), cmd.OutOrStdout(), f.output, js)
			}
			filter, err := f.filter(time.Now())
			if err != nil {
				return err
			}
			// Refused credentials are said before the table's header.
			if err := g.checkRole("pcm audit"); err != nil {
				return err
			}
			conn := func() (func(), jetstream.JetStream, error) {
				nc, js, err := g.connect("pcm audit")
				if err != nil {
					return nil, nil, err
				}
				return nc.Close, js, nil
			}
			err = runAudit(cmd.Context(), cmd.OutOrStdout(), newDisplay(cmd.OutOrStdout(), f.utc), f.output, filter,
				resumingReplay(cmd.ErrOrStderr(), filter, conn))
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
	fl.BoolVarP(&f.follow, "follow", "f", false, "keep streaming events as they are stored (reconnecting, resuming after the last one printed)")
	fl.BoolVar(&f.verify, "verify", false, "read both streams whole and report counts, first and last sequence, gaps and undecodable events; exit 1 unless whole")
	addUTCFlag(cmd, &f.utc)
	return cmd
}

// verifyAlone refuses the flags --verify does not take.
func (f auditFlags) verifyAlone(cmd *cobra.Command) error {
	for _, name := range []string{"since", "until", "job", "client", "type", "follow"} {
		if cmd.Flags().Changed(name) {
			return fmt.Errorf("--verify reads the whole history: it takes no --%s", name)
		}
	}
	return checkOutput(f.output, "table", "json")
}

// resumeWait bounds the wait between the reconnections of a following
// replay.
var resumeWait = backoff.Backoff{Initial: 500 * time.Millisecond, Max: 10 * time.Second}

// resumingReplay is the replay of f through connections conn opens. Without
// f.Follow it is one replay. With it, a replay that stops on an error (the
// connection closed, a read that failed before catching up) is started
// again on a new connection, resuming each stream after the last event
// delivered, until ctx ends; each error is reported to errw.
func resumingReplay(errw io.Writer, f audit.Filter, conn func() (func(), jetstream.JetStream, error)) func(context.Context, func(audit.Event) error) error {
	return func(ctx context.Context, fn func(audit.Event) error) error {
		last := map[string]uint64{}
		var fnErr error
		each := func(ev audit.Event) error {
			if err := fn(ev); err != nil {
				fnErr = err
				return err
			}
			last[ev.Stream] = ev.Seq
			return nil
		}
		wait := resumeWait
		for {
			closeConn, js, err := conn()
			if err == nil {
				if len(last) > 0 {
					f.Resume = maps.Clone(last)
				}
				err = audit.Replay(ctx, js, f, each)
				closeConn()
			}
			switch {
			case !f.Follow, err == nil, fnErr != nil, ctx.Err() != nil, errors.Is(err, audit.ErrInvalidFilter):
				return err
			}
			fmt.Fprintf(errw, "pcm: %v; reconnecting to resume %s\n", err, resumeText(last))
			if werr := wait.Wait(ctx); werr != nil {
				return werr
			}
		}
	}
}

// resumeText says where a resumed replay starts.
func resumeText(last map[string]uint64) string {
	if len(last) == 0 {
		return "from the start"
	}
	var parts []string
	for _, s := range []string{events.StreamJobs, events.StreamStatus} {
		if seq, ok := last[s]; ok {
			parts = append(parts, fmt.Sprintf("%s after sequence %d", s, seq))
		}
	}
	return strings.Join(parts, ", ")
}

// runVerify prints VerifyHistory's report as a table or JSON, and fails
// unless both streams were read whole and every event decodes.
func runVerify(ctx context.Context, w io.Writer, output string, js jetstream.JetStream) error {
	report, err := audit.Verify(ctx, js)
	if err != nil {
		return err
	}
	if output == "json" {
		b, err := json.MarshalIndent(map[string]any{"streams": report}, "", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "%s\n", b)
	} else {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "STREAM\tHELD\tREAD\tFIRST\tLAST\tGAPS\tUNDECODABLE")
		for _, v := range report {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\t%s\n", v.Stream, v.Messages, v.Read, v.First, v.Last, gapsText(v), undecodableText(v))
		}
		_ = tw.Flush()
	}
	var bad []string
	for _, v := range report {
		switch {
		case v.Err != "":
			bad = append(bad, fmt.Sprintf("%s not read whole: %s", v.Stream, v.Err))
		case v.Undecodable > 0:
			bad = append(bad, fmt.Sprintf("%s holds %d events that do not decode", v.Stream, v.Undecodable))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("the replay is not whole: %s", strings.Join(bad, "; "))
	}
	if output == "table" {
		fmt.Fprintln(w, "whole: every event the streams hold was read, once, in order, and decodes")
	}
	return nil
}

// gapsText lists a stream's gaps: purged and deleted ranges.
func gapsText(v audit.StreamVerification) string {
	var parts []string
	if v.Purged != nil {
		parts = append(parts, v.Purged.String()+" purged or expired")
	}
	for i, d := range v.Deleted {
		if i == 5 {
			parts = append(parts, fmt.Sprintf("and %d more deleted ranges", len(v.Deleted)-5))
			break
		}
		parts = append(parts, d.String()+" deleted")
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// undecodableText counts the undecodable events and names the first.
func undecodableText(v audit.StreamVerification) string {
	if v.Undecodable == 0 {
		return "0"
	}
	seqs := make([]string, len(v.UndecodableSeqs))
	for i, s := range v.UndecodableSeqs {
		seqs[i] = fmt.Sprint(s)
	}
	return fmt.Sprintf("%d (sequences %s)", v.Undecodable, strings.Join(seqs, ", "))
}

// filter checks the flags and builds the replay filter.
func (f auditFlags) filter(now time.Time) (audit.Filter, error) {
	if err := checkOutput(f.output, "table", "json"); err != nil {
		return audit.Filter{}, err
	}
	af := audit.Filter{JobID: f.job, Client: f.client, Follow: f.follow}
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
		full, err := audit.EventType(t)
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
func runAudit(ctx context.Context, w io.Writer, d display, output string, f audit.Filter,
	replay func(context.Context, func(audit.Event) error) error) error {
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
	err := replay(ctx, func(ev audit.Event) error {
		mu.Lock()
		defer mu.Unlock()
		n++
		if output == "json" {
			return writeAuditJSON(bw, ev)
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

// writeAuditJSON writes one stored message as one line of CloudEvents
// JSON, valid or not, never skipping one: the stored body itself for a
// structured-mode message on one line (the form pcm publishes), compacted
// when it spans lines; a binary-mode message rendered from its headers and
// body (audit.Event.JSON). A body that is not JSON text and spans lines is
// written as one JSON string.
func writeAuditJSON(w *bufio.Writer, ev audit.Event) error {
	b := ev.JSON()
	if bytes.ContainsAny(b, "\r\n") {
		var c bytes.Buffer
		if err := json.Compact(&c, b); err == nil {
			b = c.Bytes()
		} else {
			b, _ = json.Marshal(string(b))
		}
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
func writeAuditRow(w io.Writer, d display, ev audit.Event) {
	when := d.time(ev.Stored)
	ce, err := ev.Decode()
	if err != nil {
		fmt.Fprintf(w, auditRowFormat, when, "invalid", "-", "-", "-", fmt.Sprintf("%s seq %d on %s: %v", ev.Stream, ev.Seq, ev.Subject, err))
		return
	}
	typ, job, client, state, who := audit.ShortType(ce.Type()), ce.Subject(), "-", "-", "-"
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
		signer, _ := ce.Extensions()[events.ExtensionSigner].(string)
		who = publisherText(events.PublisherOf(ce), signer)
	}
	// Pad the state before painting it: the colour codes are invisible.
	stateCell := fmt.Sprintf("%-14s", stateLabel(state))
	if state != "-" {
		stateCell = d.paint(state, stateCell)
	}
	fmt.Fprintf(w, "%-25s  %-9s  %-26s  %-20s  %s  %s\n", when, typ, job, client, stateCell, who)
}
