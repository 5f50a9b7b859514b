package integration_test

import (
	"bytes"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding/format"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/testenv"
)

// TestAudit runs 3 jobs on 3 agents and a cancellation, then checks that
// pcm audit -o json prints every stored event, byte for byte, in stored
// order, each a valid CloudEvent for the SDK; that each filter returns
// exactly the matching events; the table; and that --follow prints a new
// event within a second.
func TestAudit(t *testing.T) {
	env := testenv.StartBroker(t)
	dir := t.TempDir()
	p := newPublisher(t, env.JS)
	clients := []string{"a1", "a2", "a3"}
	for _, c := range clients {
		enroll(t, env.JS, c, "trio")
		startAgent(t, env.URL, c, filepath.Join(dir, c)).waitReady(t)
	}
	j1 := publish(t, p, job([]string{"true"}, toGroup("trio")))
	j2 := publish(t, p, job([]string{"false"}, toClient("a1")))
	j3 := publish(t, p, job([]string{"true"}, toClient("a2"), toClient("a3")))
	for _, c := range clients {
		waitFinal(t, env.JS, c, j1, 10*time.Second)
	}
	waitFinal(t, env.JS, "a1", j2, 10*time.Second)
	waitFinal(t, env.JS, "a2", j3, 10*time.Second)
	waitFinal(t, env.JS, "a3", j3, 10*time.Second)
	if err := p.Cancel(t.Context(), j2, "audit test"); err != nil {
		t.Fatal(err)
	}
	for _, c := range clients {
		waitAcked(t, env.JS, c, 10*time.Second)
	}
	hist := storedHistory(t, env.JS)
	// 4 offer copies + 2 cancellation copies (the job's cancellation
	// subject, then its target); 2 statuses per run, 6 runs.
	if len(hist) != 18 {
		t.Fatalf("the streams hold %d events, want 18", len(hist))
	}

	// check compares pcm audit's JSON lines with the expected events.
	check := func(t *testing.T, want []storedEvent, args ...string) {
		t.Helper()
		lines := auditLines(t, env.URL, append([]string{"-o", "json"}, args...)...)
		if len(lines) != len(want) {
			t.Fatalf("pcm audit %v printed %d events, want %d:\n%s", args, len(lines), len(want), strings.Join(lines, "\n"))
		}
		for i, line := range lines {
			if !bytes.Equal([]byte(line), want[i].data) {
				t.Fatalf("pcm audit %v line %d is not the stored event %s seq %d byte for byte:\n got %s\nwant %s",
					args, i, want[i].stream, want[i].seq, line, want[i].data)
			}
		}
	}

	t.Run("every event, valid for the CloudEvents SDK, in stored order", func(t *testing.T) {
		lines := auditLines(t, env.URL, "-o", "json")
		if len(lines) != len(hist) {
			t.Fatalf("%d lines, want %d", len(lines), len(hist))
		}
		for i, line := range lines {
			var ev event.Event
			if err := ev.UnmarshalJSON([]byte(line)); err != nil {
				t.Fatalf("line %d is not a CloudEvent: %v\n%s", i, err, line)
			}
			if err := ev.Validate(); err != nil {
				t.Fatalf("line %d is not a valid CloudEvent: %v", i, err)
			}
			var viaFormat event.Event
			if err := format.JSON.Unmarshal([]byte(line), &viaFormat); err != nil || viaFormat.ID() != ev.ID() {
				t.Fatalf("line %d: format.JSON reads %q, %v", i, viaFormat.ID(), err)
			}
			if ev.ID() != hist[i].id || ev.Type() != hist[i].typ {
				t.Fatalf("line %d is %s %s, want %s %s (stored order)", i, ev.Type(), ev.ID(), hist[i].typ, hist[i].id)
			}
			if i > 0 && hist[i].stored.Before(hist[i-1].stored) {
				t.Fatalf("events out of stored order at line %d", i)
			}
		}
		check(t, hist)
	})

	t.Run("filters", func(t *testing.T) {
		a1Subjects := map[string]bool{"pcm.jobs.client.a1": true, "pcm.jobs.group.trio": true, "pcm.jobs.all": true}
		since, until := hist[4].stored, hist[12].stored
		cases := []struct {
			name string
			args []string
			pred func(storedEvent) bool
		}{
			{"job", []string{"--job", j1}, func(e storedEvent) bool { return e.job == j1 }},
			{"job with a cancellation", []string{"--job", j2}, func(e storedEvent) bool { return e.job == j2 }},
			{"client", []string{"--client", "a1"}, func(e storedEvent) bool {
				return e.client == "a1" || (e.stream == events.StreamJobs && a1Subjects[e.subject])
			}},
			{"client and job", []string{"--client", "a2", "--job", j3}, func(e storedEvent) bool {
				return e.job == j3 && (e.client == "a2" || e.subject == "pcm.jobs.client.a2")
			}},
			{"type status", []string{"--type", "status"}, func(e storedEvent) bool { return e.typ == events.TypeJobStatus }},
			{"types offered and cancelled", []string{"--type", "offered", "--type", events.TypeJobCancelled}, func(e storedEvent) bool {
				return e.typ != events.TypeJobStatus
			}},
			{"type cancelled", []string{"--type", "cancelled"}, func(e storedEvent) bool { return e.typ == events.TypeJobCancelled }},
			{"since and until", []string{"--since", since.Format(time.RFC3339Nano), "--until", until.Format(time.RFC3339Nano)}, func(e storedEvent) bool {
				return !e.stored.Before(since) && !e.stored.After(until)
			}},
			{"until in the past", []string{"--until", "-1h"}, func(storedEvent) bool { return false }},
			{"since in the future", []string{"--since", "+1h"}, func(storedEvent) bool { return false }},
			{"relative since", []string{"--since", "-1h", "--client", "a3"}, func(e storedEvent) bool {
				return e.client == "a3" || e.subject == "pcm.jobs.client.a3" || e.subject == "pcm.jobs.group.trio"
			}},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				want := keep(hist, tc.pred)
				check(t, want, tc.args...)
			})
		}
	})

	t.Run("refused filters", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"--type", "exploded"}, "invalid filter"},
			{[]string{"--since", "yesterday"}, "--since"},
			{[]string{"--since", "+1h", "--until", "-1h"}, "before since"},
			{[]string{"--job", "a.b"}, "invalid id"},
			{[]string{"-o", "yaml"}, "-o"},
		} {
			if _, errOut, code := runPCM(t, nil, append([]string{"audit", "--url", env.URL}, tc.args...)...); code == 0 || !strings.Contains(errOut, tc.want) {
				t.Errorf("pcm audit %v: exit %d, stderr %q; want an error mentioning %q", tc.args, code, errOut, tc.want)
			}
		}
	})

	t.Run("table", func(t *testing.T) {
		lines := auditLines(t, env.URL, "--job", j2, "--utc")
		want := []*regexp.Regexp{
			regexp.MustCompile(`^TIME\s+TYPE\s+JOB\s+CLIENT\s+STATE\s+WHO$`),
			regexp.MustCompile(`^\S+Z\s+offered\s+` + j2 + `\s+client:a1\s+-\s+test$`),
			regexp.MustCompile(`^\S+Z\s+status\s+` + j2 + `\s+a1\s+started\s+service/\S+$`),
			regexp.MustCompile(`^\S+Z\s+status\s+` + j2 + `\s+a1\s+failed\s+service/\S+$`),
			regexp.MustCompile(`^\S+Z\s+cancelled\s+` + j2 + `\s+-\s+-\s+test$`),
			regexp.MustCompile(`^\S+Z\s+cancelled\s+` + j2 + `\s+client:a1\s+-\s+test$`),
		}
		if len(lines) != len(want) {
			t.Fatalf("table:\n%s", strings.Join(lines, "\n"))
		}
		for i, re := range want {
			if !re.MatchString(lines[i]) {
				t.Fatalf("table line %d %q does not match %s", i, lines[i], re)
			}
		}
	})

	t.Run("follow prints a new event within a second", func(t *testing.T) {
		f := startPCM(t, dir, nil, "audit", "--url", env.URL, "--follow", "-o", "json")
		last := hist[len(hist)-1]
		f.stdout.waitLine(t, regexp.MustCompile(regexp.QuoteMeta(string(last.data))), 10*time.Second)
		j5 := publish(t, p, job([]string{"true"}, toClient("a3")))
		published := time.Now()
		f.stdout.waitLine(t, regexp.MustCompile(`"id":"`+j5+`".*"type":"`+events.TypeJobOffered+`"|"type":"`+events.TypeJobOffered+`".*"id":"`+j5+`"`), time.Second)
		t.Logf("--follow printed the offer %s after it was stored", time.Since(published).Round(time.Millisecond))
		f.stdout.waitLine(t, regexp.MustCompile(`"id":"`+j5+`.a3.succeeded.1"`), 10*time.Second)
	})
}

// TestAuditPrintsEveryStoredMessage: pcm audit -o json prints one line per
// stored message, structured or binary, valid or not, never skipping one:
// structured bodies byte for byte, binary messages rendered from their
// headers and body (a valid one decodes to the stored event; an invalid one
// shows its attributes as stored); the table shows both invalid ones as
// invalid rows.
func TestAuditPrintsEveryStoredMessage(t *testing.T) {
	env := testenv.StartBroker(t)
	structured := func(body string) *nats.Msg {
		m := nats.NewMsg("pcm.jobs.all")
		m.Header.Set("Content-Type", events.ContentTypeCloudEvents)
		m.Data = []byte(body)
		return m
	}
	binary := func(typ string) *nats.Msg {
		m := nats.NewMsg("pcm.jobs.all")
		for k, v := range map[string]string{"ce-specversion": "1.0", "ce-id": "BIN1", "ce-source": "/pcm/publisher/js",
			"ce-type": typ, "ce-subject": "BIN1", "ce-time": "2026-01-02T03:04:05.500Z"} {
			m.Header.Set(k, v)
		}
		m.Header.Set("Content-Type", "application/json; charset=utf-8")
		m.Data = []byte(`{"job_id":"BIN1","targets":[{"kind":"all"}]}`)
		return m
	}
	msgs := []*nats.Msg{
		structured(`{"specversion":"1.0","id":"S1","source":"/pcm/publisher/x","type":"pcm.job.cancelled.v1","subject":"S1","data":{"job_id":"S1","targets":[{"kind":"all"}]}}`),
		binary(events.TypeJobCancelled),
		structured(`not an event`),
		binary("pcm.job.exploded.v1"),
	}
	for _, m := range msgs {
		publishRaw(t, env.JS, m)
	}
	lines := auditLines(t, env.URL, "-o", "json")
	want := []string{
		string(msgs[0].Data),
		`{"specversion":"1.0","id":"BIN1","source":"/pcm/publisher/js","type":"pcm.job.cancelled.v1","subject":"BIN1","time":"2026-01-02T03:04:05.500Z","datacontenttype":"application/json; charset=utf-8","data":{"job_id":"BIN1","targets":[{"kind":"all"}]}}`,
		`not an event`,
		`{"specversion":"1.0","id":"BIN1","source":"/pcm/publisher/js","type":"pcm.job.exploded.v1","subject":"BIN1","time":"2026-01-02T03:04:05.500Z","datacontenttype":"application/json; charset=utf-8","data":{"job_id":"BIN1","targets":[{"kind":"all"}]}}`,
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("pcm audit -o json printed\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	if _, err := events.Decode(nats.Header{}, []byte(lines[1])); err != nil {
		t.Fatalf("the rendered binary event does not decode: %v", err)
	}
	table := auditLines(t, env.URL, "--utc")
	if len(table) != 5 {
		t.Fatalf("the table has %d lines, want a header and 4 rows:\n%s", len(table), strings.Join(table, "\n"))
	}
	for i, re := range []*regexp.Regexp{
		regexp.MustCompile(`^\S+Z\s+cancelled\s+S1\s+all\s+-\s+x$`),
		regexp.MustCompile(`^\S+Z\s+cancelled\s+BIN1\s+all\s+-\s+js$`),
		regexp.MustCompile(`^\S+Z\s+invalid\s+-\s+-\s+-\s+PCM_JOBS seq 3 on pcm.jobs.all: malformed event: `),
		regexp.MustCompile(`^\S+Z\s+invalid\s+-\s+-\s+-\s+PCM_JOBS seq 4 on pcm.jobs.all: unknown event type: "pcm.job.exploded.v1"`),
	} {
		if !re.MatchString(table[i+1]) {
			t.Fatalf("table row %d %q does not match %s", i+1, table[i+1], re)
		}
	}
}
