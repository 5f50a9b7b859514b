package integration_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pcm-project/pcm/audit"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/testenv"
)

// forgeHeaders adds to msg the headers a direct get's answer carries, with
// made-up values: what any principal allowed to write one message into a
// pcm stream (a publisher, an agent on its own status subject) can store.
func forgeHeaders(msg *nats.Msg, i int) {
	msg.Header.Set("Nats-Sequence", "99999999")
	msg.Header.Set("Nats-Stream", "ELSEWHERE")
	msg.Header.Set("Nats-Subject", "pcm.forged")
	msg.Header.Set("Nats-Time-Stamp", "2001-01-01T00:00:00Z")
	msg.Header.Set("Nats-Num-Pending", "0")
	msg.Header.Set("Nats-Last-Sequence", fmt.Sprint(99999990+i))
}

// historyWithForgeries runs jobs on two agents, then stores, in both
// streams, copies of stored events carrying forged headers.
func historyWithForgeries(t *testing.T, env *testenv.Broker) {
	t.Helper()
	p := newPublisher(t, env.JS)
	dir := t.TempDir()
	for _, c := range []string{"f1", "f2"} {
		enroll(t, env.JS, c)
		startAgent(t, env.URL, c, filepath.Join(dir, c)).waitReady(t)
	}
	var jobs []string
	for range 3 {
		jobs = append(jobs, publish(t, p, job([]string{"true"}, toClient("f1"), toClient("f2"))))
	}
	for _, j := range jobs {
		waitFinal(t, env.JS, "f1", j, 10*time.Second)
		waitFinal(t, env.JS, "f2", j, 10*time.Second)
	}
	waitAcked(t, env.JS, "f1", 10*time.Second)
	waitAcked(t, env.JS, "f2", 10*time.Second)
	for i, e := range storedHistory(t, env.JS) {
		if i%2 == 1 {
			continue
		}
		msg := nats.NewMsg(e.subject)
		msg.Data = e.data
		msg.Header.Set(events.HeaderMsgID, fmt.Sprintf("forged-%d", i))
		forgeHeaders(msg, i)
		publishRaw(t, env.JS, msg)
	}
}

// TestAuditForgedHeaders: events stored with headers named like those a
// direct get adds (Nats-Sequence, Nats-Stream, Nats-Subject,
// Nats-Time-Stamp, Nats-Num-Pending, Nats-Last-Sequence), in both streams,
// are replayed like any other: pcm audit prints every stored event, in
// stored order, byte for byte, and the replay gives each the sequence the
// server set.
func TestAuditForgedHeaders(t *testing.T) {
	env := testenv.StartBroker(t)
	historyWithForgeries(t, env)
	hist := storedHistory(t, env.JS)
	lines := auditLines(t, env.URL, "-o", "json")
	if len(lines) != len(hist) {
		t.Fatalf("pcm audit printed %d events, the streams hold %d", len(lines), len(hist))
	}
	for i, line := range lines {
		if line != string(hist[i].data) {
			t.Fatalf("line %d is not %s sequence %d byte for byte:\n got %s\nwant %s", i, hist[i].stream, hist[i].seq, line, hist[i].data)
		}
	}
	i := 0
	err := audit.Replay(context.Background(), env.JS, audit.Filter{}, func(ev audit.Event) error {
		if w := hist[i]; ev.Stream != w.stream || ev.Seq != w.seq || ev.Subject != w.subject || !ev.Stored.Equal(w.stored) {
			return fmt.Errorf("event %d: %s seq %d on %s at %s, want %s seq %d on %s at %s (the server's)", i,
				ev.Stream, ev.Seq, ev.Subject, ev.Stored, w.stream, w.seq, w.subject, w.stored)
		}
		i++
		return nil
	})
	if err != nil || i != len(hist) {
		t.Fatalf("replayed %d of %d: %v", i, len(hist), err)
	}
	t.Logf("%d events replayed in order with the server's sequences, half of them stored with forged headers", len(hist))
}

// TestAuditVerify: pcm audit --verify reports, per stream, what it holds and
// what was read, the first and last sequence, the gaps and the events that
// do not decode; it exits 0 only for a whole history that decodes.
func TestAuditVerify(t *testing.T) {
	env := testenv.StartBroker(t)
	historyWithForgeries(t, env)
	count := func(stream string) uint64 {
		s, err := env.JS.Stream(context.Background(), stream)
		if err != nil {
			t.Fatal(err)
		}
		return s.CachedInfo().State.Msgs
	}
	jobs, statuses := count(events.StreamJobs), count(events.StreamStatus)

	out, errOut, code := runPCM(t, nil, "audit", "--url", env.URL, "--verify")
	if code != 0 || !strings.Contains(out, "whole: every event the streams hold was read") {
		t.Fatalf("pcm audit --verify on a whole history: exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{
		fmt.Sprintf("PCM_JOBS    %-4d  %-4d  1      %-4d  none  0", jobs, jobs, jobs),
		fmt.Sprintf("PCM_STATUS  %-4d  %-4d  1      %-4d  none  0", statuses, statuses, statuses),
	} {
		if !strings.Contains(strings.ReplaceAll(out, "\t", " "), strings.TrimRight(want, " ")) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}

	// A message that is no event, and a deleted one.
	junk := publishRaw(t, env.JS, &nats.Msg{Subject: events.StatusSubject("f1", "junk"), Data: []byte("not an event")})
	s, err := env.JS.Stream(context.Background(), events.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMsg(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	var report struct {
		Streams []audit.StreamVerification `json:"streams"`
	}
	out, errOut, code = runPCM(t, nil, "audit", "--url", env.URL, "--verify", "-o", "json")
	if code == 0 || !strings.Contains(errOut, "PCM_STATUS holds 1 events that do not decode") {
		t.Fatalf("exit %d, stderr %q: want a failure naming the undecodable event", code, errOut)
	}
	if err := jsonUnmarshal(out, &report); err != nil || len(report.Streams) != 2 {
		t.Fatalf("report %q: %v", out, err)
	}
	j, st := report.Streams[0], report.Streams[1]
	if !j.Complete || j.Messages != jobs-1 || j.Read != jobs-1 || len(j.Deleted) != 1 || j.Deleted[0] != (audit.SeqRange{From: 2, To: 2}) {
		t.Errorf("PCM_JOBS: %+v, want %d held and read, sequence 2 deleted", j, jobs-1)
	}
	if !st.Complete || st.Read != statuses+1 || st.Undecodable != 1 || st.UndecodableSeqs[0] != junk.Sequence || st.Last != junk.Sequence {
		t.Errorf("PCM_STATUS: %+v, want %d read, sequence %d undecodable", st, statuses+1, junk.Sequence)
	}

	t.Run("refuses filters", func(t *testing.T) {
		if _, errOut, code := runPCM(t, nil, "audit", "--url", env.URL, "--verify", "--job", "x"); code == 0 || !strings.Contains(errOut, "takes no --job") {
			t.Fatalf("exit %d, stderr %q", code, errOut)
		}
	})
}
