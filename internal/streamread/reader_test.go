package streamread_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/broker/auth"
	"github.com/pcm-project/pcm/internal/streamread"
	"github.com/pcm-project/pcm/testenv"
)

// testStream is the stream the tests read: sr.<kind>.<n>, direct gets
// allowed.
const testStream = "SR_TEST"

// newStream creates testStream on env (with direct gets unless noDirect).
func newStream(t *testing.T, js jetstream.JetStream, noDirect bool) {
	t.Helper()
	cfg := streamConfig()
	cfg.AllowDirect = !noDirect
	if _, err := js.CreateStream(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
}

// streamConfig is testStream's configuration.
func streamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{Name: testStream, Subjects: []string{"sr.>"}, Storage: jetstream.FileStorage, AllowDirect: true}
}

// put stores a message on subject with a header and returns its sequence.
func put(t *testing.T, js jetstream.JetStream, subject, body string) uint64 {
	t.Helper()
	msg := nats.NewMsg(subject)
	msg.Data = []byte(body)
	msg.Header.Set("X-Test", "kept")
	ack, err := js.PublishMsg(context.Background(), msg)
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

// scanAll returns "seq:subject:body" of every message Scan gives.
func scanAll(t *testing.T, js jetstream.JetStream, o streamread.Options) []string {
	t.Helper()
	var got []string
	err := streamread.Scan(context.Background(), js, testStream, o, func(m streamread.Msg) error {
		got = append(got, fmt.Sprintf("%d:%s:%s", m.Seq, m.Subject, m.Data))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestScan(t *testing.T) {
	env := testenv.StartBroker(t)
	js := env.JS
	newStream(t, js, false)
	before := time.Now()
	type stored struct{ line, subject string }
	var msgs []stored
	var all []string
	subjects := []string{"sr.a.1", "sr.b.1", "sr.c.1", "sr.a.2", "sr.b.2"}
	for i := range 23 {
		subj := subjects[i%len(subjects)]
		body := fmt.Sprintf("m%d", i)
		line := fmt.Sprintf("%d:%s:%s", put(t, js, subj, body), subj, body)
		msgs = append(msgs, stored{line, subj})
		all = append(all, line)
	}
	pick := func(keep func(subject string) bool) []string {
		var out []string
		for _, m := range msgs {
			if keep(m.subject) {
				out = append(out, m.line)
			}
		}
		return out
	}
	for _, tc := range []struct {
		name string
		opts streamread.Options
		keep func(string) bool
	}{
		{"whole stream", streamread.Options{}, func(string) bool { return true }},
		{"whole stream in batches of 2", streamread.Options{Batch: 2}, func(string) bool { return true }},
		{"tiny max bytes", streamread.Options{MaxBytes: 1}, func(string) bool { return true }},
		{"one filter", streamread.Options{Filters: []string{"sr.a.*"}}, func(s string) bool { return s[:5] == "sr.a." }},
		{"several filters merged by sequence", streamread.Options{Filters: []string{"sr.c.1", "sr.a.*"}, Batch: 2},
			func(s string) bool { return s[:5] == "sr.a." || s == "sr.c.1" }},
		{"overlapping filters deliver once", streamread.Options{Filters: []string{"sr.>", "sr.b.*", "sr.b.*"}, Batch: 3},
			func(string) bool { return true }},
		{"filter without a message", streamread.Options{Filters: []string{"sr.none"}}, func(string) bool { return false }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, want := scanAll(t, js, tc.opts), pick(tc.keep); !equal(got, want) {
				t.Fatalf("scan gave\n%q\nwant\n%q", got, want)
			}
		})
	}
	t.Run("start sequence", func(t *testing.T) {
		if got := scanAll(t, js, streamread.Options{StartSeq: 20}); !equal(got, all[19:]) {
			t.Fatalf("from 20: %q, want %q", got, all[19:])
		}
	})
	t.Run("start time", func(t *testing.T) {
		if got := scanAll(t, js, streamread.Options{StartTime: before.Add(-time.Second)}); !equal(got, all) {
			t.Fatalf("from before: %q", got)
		}
		if got := scanAll(t, js, streamread.Options{StartTime: time.Now().Add(time.Hour)}); len(got) != 0 {
			t.Fatalf("from the future: %q", got)
		}
	})
	t.Run("message as stored", func(t *testing.T) {
		var first streamread.Msg
		err := streamread.Scan(context.Background(), js, testStream, streamread.Options{}, func(m streamread.Msg) error {
			first = m
			return errors.New("stop")
		})
		if err == nil || err.Error() != "stop" {
			t.Fatalf("fn's error not returned as is: %v", err)
		}
		if first.Stream != testStream || first.Seq != 1 || first.Subject != "sr.a.1" || string(first.Data) != "m0" {
			t.Fatalf("first message %+v", first)
		}
		if first.Header.Get("X-Test") != "kept" || first.Header.Get("Nats-Sequence") != "" || first.Header.Get("Nats-Stream") != "" {
			t.Fatalf("headers %v: want the stored ones only", first.Header)
		}
		if first.Time.Before(before.Add(-time.Second)) || first.Time.After(time.Now()) {
			t.Fatalf("stored time %s", first.Time)
		}
	})
	// Last: it changes the stream.
	t.Run("deleted messages", func(t *testing.T) {
		str, err := js.Stream(context.Background(), testStream)
		if err != nil {
			t.Fatal(err)
		}
		for _, seq := range []uint64{3, 4, 9, 17} {
			if err := str.DeleteMsg(context.Background(), seq); err != nil {
				t.Fatal(err)
			}
		}
		var left []string
		for i, line := range all {
			if i+1 != 3 && i+1 != 4 && i+1 != 9 && i+1 != 17 {
				left = append(left, line)
			}
		}
		for _, o := range []streamread.Options{{Batch: 2}, {Batch: 3}, {Batch: 5, MaxBytes: 40}, {}} {
			if got := scanAll(t, js, o); !equal(got, left) {
				t.Fatalf("%+v: scan gave\n%q\nwant\n%q", o, got, left)
			}
		}
	})
}

// TestReaderRounds: a round stops at the last message stored when it
// began; the next round reads on from there, without a gap or a repeat.
func TestReaderRounds(t *testing.T) {
	env := testenv.StartBroker(t)
	js := env.JS
	newStream(t, js, false)
	ctx := context.Background()
	for i := range 5 {
		put(t, js, fmt.Sprintf("sr.x.%d", i%2), "old")
	}
	r, err := streamread.NewReader(js, testStream, streamread.Options{Filters: []string{"sr.x.0", "sr.x.1"}, Batch: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var seqs []uint64
	for {
		m, err := r.Next(ctx)
		if errors.Is(err, streamread.ErrCaughtUp) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(seqs) == 0 {
			// Stored during the round: not in it.
			put(t, js, "sr.x.0", "new")
			put(t, js, "sr.x.1", "new")
		}
		seqs = append(seqs, m.Seq)
	}
	if fmt.Sprint(seqs) != "[1 2 3 4 5]" {
		t.Fatalf("first round %v", seqs)
	}
	seqs = nil
	for {
		m, err := r.Next(ctx)
		if errors.Is(err, streamread.ErrCaughtUp) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, m.Seq)
	}
	if fmt.Sprint(seqs) != "[6 7]" {
		t.Fatalf("second round %v", seqs)
	}
	if _, err := r.Next(ctx); !errors.Is(err, streamread.ErrCaughtUp) {
		t.Fatalf("third round: %v", err)
	}
}

func TestScanErrors(t *testing.T) {
	env := testenv.StartBroker(t, testenv.WithAuth())
	newStream(t, env.JS, true)
	// Something to read: a desktop may read PCM_STATUS's state, not its
	// messages.
	if _, err := env.JS.Publish(context.Background(), "pcm.status.c2.j1", []byte("x")); err != nil {
		t.Fatal(err)
	}
	_, desk := env.ConnectAs(t, auth.User{Role: auth.RoleDesktop, Name: "c1"})
	quick := streamread.Options{Timeout: 300 * time.Millisecond, RetryFor: time.Second}
	for _, tc := range []struct {
		name   string
		js     jetstream.JetStream
		stream string
		opts   streamread.Options
		want   []error
	}{
		{"no such stream", env.JS, "NOPE", streamread.Options{}, []error{streamread.ErrNoStream, jetstream.ErrStreamNotFound}},
		{"no direct gets", env.JS, testStream, streamread.Options{}, []error{streamread.ErrNoStream}},
		{"not allowed to read", desk, "PCM_STATUS", quick, []error{streamread.ErrNoAnswer}},
		{"bad stream name", env.JS, "A.B", streamread.Options{}, []error{streamread.ErrInvalidOptions}},
		{"bad filter", env.JS, "PCM_JOBS", streamread.Options{Filters: []string{"pcm..x"}}, []error{streamread.ErrInvalidOptions}},
		{"misplaced wildcard", env.JS, "PCM_JOBS", streamread.Options{Filters: []string{"pcm.>.x"}}, []error{streamread.ErrInvalidOptions}},
		{"negative batch", env.JS, "PCM_JOBS", streamread.Options{Batch: -1}, []error{streamread.ErrInvalidOptions}},
		{"huge batch", env.JS, "PCM_JOBS", streamread.Options{Batch: 1 << 20}, []error{streamread.ErrInvalidOptions}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := streamread.Scan(context.Background(), tc.js, tc.stream, tc.opts, func(streamread.Msg) error { return nil })
			for _, w := range tc.want {
				if !errors.Is(err, w) {
					t.Fatalf("got %v, want %v", err, w)
				}
			}
		})
	}
	t.Run("context ended", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := streamread.Scan(ctx, env.JS, "PCM_JOBS", streamread.Options{}, func(streamread.Msg) error { return nil })
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v", err)
		}
	})
}

// TestScanAsAuditor: an auditor reads PCM_JOBS with direct gets, through
// its private inbox, with no right on any consumer. A desktop may not (its
// account does not import PCM_JOBS's batched direct gets: it reads its
// client's offers through the client view): its scan fails, it does not
// end empty.
func TestScanAsAuditor(t *testing.T) {
	env := testenv.StartBroker(t, testenv.WithAuth())
	if _, err := env.JS.Publish(context.Background(), "pcm.jobs.client.c1", []byte("offer")); err != nil {
		t.Fatal(err)
	}
	opts := streamread.Options{Filters: []string{"pcm.jobs.client.c1", "pcm.jobs.all"}}
	_, auditor := env.ConnectAs(t, auth.User{Role: auth.RoleAuditor, Name: "audit"})
	n := 0
	err := streamread.Scan(context.Background(), auditor, "PCM_JOBS", opts, func(m streamread.Msg) error {
		n++
		return nil
	})
	if err != nil || n != 1 {
		t.Fatalf("auditor scan: %d messages, %v", n, err)
	}
	_, desk := env.ConnectAs(t, auth.User{Role: auth.RoleDesktop, Name: "c1"})
	opts.Timeout, opts.RetryFor = 300*time.Millisecond, time.Second
	n = 0
	err = streamread.Scan(context.Background(), desk, "PCM_JOBS", opts, func(m streamread.Msg) error {
		n++
		return nil
	})
	if n != 0 || !(errors.Is(err, streamread.ErrNoAnswer) || errors.Is(err, streamread.ErrNoStream)) {
		t.Fatalf("desktop scan: %d messages, %v; want none and %v or %v", n, err, streamread.ErrNoAnswer, streamread.ErrNoStream)
	}
}

// forgedHeaders are headers a writer of a stream can store with a message,
// named like those the broker adds to a direct get's answer or like a
// status: nothing the reader takes from an answer may come from them.
func forgedHeaders(i int) nats.Header {
	h := nats.Header{}
	h.Set("Nats-Sequence", "99999999")
	h.Set("Nats-Stream", "ELSEWHERE")
	h.Set("Nats-Subject", "forged.subject")
	h.Set("Nats-Time-Stamp", "2001-01-01T00:00:00Z")
	h.Set("Nats-Num-Pending", "0")
	h.Set("Nats-Last-Sequence", "99999998")
	switch i % 3 {
	case 0:
		h.Set("Status", "503") // with an empty body: "no responders" to nats.go's NextMsg
	case 1:
		h.Set("Status", "404")
		h.Set("Description", "No Messages")
	}
	h.Set("X-Test", "kept")
	return h
}

// TestScanForgedHeaders: messages stored with headers named like the ones
// a direct get adds (and like a status) are read with the sequence,
// subject, time and stream the broker set, every one of them, in stream
// order, keeping every header they were stored with.
func TestScanForgedHeaders(t *testing.T) {
	env := testenv.StartBroker(t)
	js := env.JS
	newStream(t, js, false)
	var want []string
	for i := range 30 {
		subj := fmt.Sprintf("sr.%c.1", "ab"[i%2])
		msg := nats.NewMsg(subj)
		msg.Header = forgedHeaders(i)
		if i%3 != 0 {
			msg.Data = []byte(fmt.Sprintf("m%d", i))
		}
		ack, err := js.PublishMsg(context.Background(), msg)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, fmt.Sprintf("%d:%s:%s", ack.Sequence, subj, msg.Data))
	}
	before := time.Now().Add(-time.Minute)
	for _, tc := range []struct {
		name string
		opts streamread.Options
		keep func(i int) bool
	}{
		{"whole stream", streamread.Options{}, func(int) bool { return true }},
		{"whole stream, batches of 4", streamread.Options{Batch: 4}, func(int) bool { return true }},
		{"whole stream from a time", streamread.Options{Batch: 4, StartTime: before}, func(int) bool { return true }},
		{"one filter", streamread.Options{Filters: []string{"sr.a.*"}, Batch: 3}, func(i int) bool { return i%2 == 0 }},
		{"two filters", streamread.Options{Filters: []string{"sr.a.*", "sr.b.1"}, Batch: 2}, func(int) bool { return true }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got, exp []string
			for i, w := range want {
				if tc.keep(i) {
					exp = append(exp, w)
				}
			}
			err := streamread.Scan(context.Background(), js, testStream, tc.opts, func(m streamread.Msg) error {
				got = append(got, fmt.Sprintf("%d:%s:%s", m.Seq, m.Subject, m.Data))
				if m.Stream != testStream || m.Time.Before(before) {
					t.Errorf("sequence %d: stream %q, time %s: want the broker's", m.Seq, m.Stream, m.Time)
				}
				if m.Header.Get("X-Test") != "kept" || m.Header.Get("Nats-Sequence") != "99999999" ||
					m.Header.Get("Nats-Time-Stamp") != "2001-01-01T00:00:00Z" || len(m.Header.Values("Nats-Sequence")) != 1 ||
					len(m.Header.Values("Nats-Last-Sequence")) != 1 {
					t.Errorf("sequence %d: headers %v: want those it was stored with, and only those", m.Seq, m.Header)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if !equal(got, exp) {
				t.Fatalf("read\n%q\nwant\n%q", got, exp)
			}
		})
	}
}

// TestScanNeverSkipsWhatTheStreamHolds: when the only answers come from a
// mirror serving the stream's direct gets (MirrorDirect) that holds part
// of it, a read of the whole stream ends with ErrIncomplete naming the
// range it could not deliver, instead of returning what the mirror has.
func TestScanNeverSkipsWhatTheStreamHolds(t *testing.T) {
	env := testenv.StartBroker(t)
	js := env.JS
	ctx := context.Background()
	newStream(t, js, false)
	for i := range 20 {
		put(t, js, fmt.Sprintf("sr.%c.1", "ab"[i%2]), fmt.Sprint(i))
	}
	// The mirror holds the messages on sr.a.* only.
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "SR_MIRROR", Storage: jetstream.FileStorage, MirrorDirect: true,
		Mirror: &jetstream.StreamSource{Name: testStream, FilterSubject: "sr.a.*"}}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, "the mirror", func() bool {
		s, err := js.Stream(ctx, "SR_MIRROR")
		return err == nil && s.CachedInfo().State.Msgs == 10
	})
	r, err := streamread.NewReader(js, testStream, streamread.Options{Batch: 2, Timeout: time.Second, RetryFor: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	first, err := r.Next(ctx) // the round's state read, with direct gets allowed
	if err != nil || first.Seq != 1 {
		t.Fatalf("first message %d, %v", first.Seq, err)
	}
	// From now on only the mirror answers direct gets of the stream.
	cfg := streamConfig()
	cfg.AllowDirect = false
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for {
		m, err := r.Next(ctx)
		if err != nil {
			var inc *streamread.IncompleteError
			if !errors.Is(err, streamread.ErrIncomplete) || !errors.As(err, &inc) {
				t.Fatalf("after %v: got %v, want ErrIncomplete", seqs, err)
			}
			// The requests sent ahead before the update may have been
			// answered by the stream itself: the range starts after them.
			if inc.Stream != testStream || inc.From < 2 || inc.From > 19 || inc.To != 20 {
				t.Fatalf("incomplete range %d-%d of %s (%v), want from 2 (or after what was answered) to 20", inc.From, inc.To, inc.Stream, err)
			}
			for i, s := range seqs {
				if s != uint64(i+2) {
					t.Fatalf("delivered %v before the error: a gap", seqs)
				}
			}
			if len(seqs) != int(inc.From)-2 {
				t.Fatalf("delivered %v, then an error from %d: a gap", seqs, inc.From)
			}
			t.Logf("delivered %v, then: %v", seqs, err)
			return
		}
		seqs = append(seqs, m.Seq)
	}
}
