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
	"github.com/pcm-project/pcm/integration/testenv"
	"github.com/pcm-project/pcm/internal/streamread"
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
	_, desk := env.ConnectAs(t, auth.User{Role: auth.RoleDesktop, Name: "c1"})
	quick := streamread.Options{Timeout: 300 * time.Millisecond}
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

// TestScanAsDesktop: a desktop reads PCM_JOBS with direct gets, through
// its private inbox, with no right on any consumer.
func TestScanAsDesktop(t *testing.T) {
	env := testenv.StartBroker(t, testenv.WithAuth())
	if _, err := env.JS.Publish(context.Background(), "pcm.jobs.client.c1", []byte("offer")); err != nil {
		t.Fatal(err)
	}
	_, desk := env.ConnectAs(t, auth.User{Role: auth.RoleDesktop, Name: "c1"})
	n := 0
	err := streamread.Scan(context.Background(), desk, "PCM_JOBS", streamread.Options{Filters: []string{"pcm.jobs.client.c1", "pcm.jobs.all"}},
		func(m streamread.Msg) error {
			n++
			return nil
		})
	if err != nil || n != 1 {
		t.Fatalf("desktop scan: %d messages, %v", n, err)
	}
}
