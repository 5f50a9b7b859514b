package integration_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/agent"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/internal/streamread"
	"github.com/pcm-project/pcm/rollout"
	"github.com/pcm-project/pcm/testenv"
)

// asOS makes an in-process agent report another operating system.
func asOS(goos string) agentOpts { return func(c *agent.Config) { c.OS = goos } }

// putAgentInfo writes an agent inventory into PCM_AGENTS, as an agent's
// heartbeat would.
func putAgentInfo(t testing.TB, js jetstream.JetStream, info events.AgentInfo) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, events.BucketAgents)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(info)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, info.ClientID, b); err != nil {
		t.Fatal(err)
	}
}

// parseRollout decodes the output of pcm status -o json.
func parseRollout(t testing.TB, out string) rollout.Rollout {
	t.Helper()
	var r rollout.Rollout
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("pcm status -o json printed something else than a rollout: %v\n%s", err, out)
	}
	return r
}

// clientOf finds a client in a rollout.
func clientOf(t testing.TB, r rollout.Rollout, client string) rollout.ClientRollout {
	t.Helper()
	for _, c := range r.Clients {
		if c.Client == client {
			return c
		}
	}
	t.Fatalf("client %s missing from the rollout of %s: %+v", client, r.JobID, r.Clients)
	return rollout.ClientRollout{}
}

// waitRollout polls the rollout of job until cond holds.
func waitRollout(t testing.TB, js jetstream.JetStream, job, what string, timeout time.Duration, cond func(rollout.Rollout) bool) rollout.Rollout {
	t.Helper()
	var r rollout.Rollout
	testenv.CheckFor(t, timeout, 20*time.Millisecond, func() (err error) {
		if r, err = rollout.Read(context.Background(), js, job); err != nil {
			return err
		}
		if !cond(r) {
			return fmt.Errorf("waiting for %s: rollout %+v", what, r.Clients)
		}
		return nil
	})
	return r
}

// statesOf maps each client of a rollout to its state.
func statesOf(r rollout.Rollout) map[string]rollout.ClientState {
	m := map[string]rollout.ClientState{}
	for _, c := range r.Clients {
		m[c.Client] = c.State
	}
	return m
}

// storedEvent is an event read straight from a stream, for comparing with
// pcm audit's output.
type storedEvent struct {
	stream  string
	seq     uint64
	stored  time.Time
	subject string // NATS subject
	data    []byte
	id, typ string
	job     string // the event's subject attribute
	client  string // a status's client
	state   events.State
}

// readStored reads every message of stream with its metadata, through an
// ordered consumer, asking again (for up to 30 s) while the broker does
// not answer (a cluster electing a leader).
func readStored(t testing.TB, js jetstream.JetStream, stream string) []storedEvent {
	t.Helper()
	var out []storedEvent
	var bad error
	testenv.CheckFor(t, 30*time.Second, 200*time.Millisecond, func() (err error) {
		out, err = tryReadStored(js, stream)
		if errors.Is(err, errNotAnEvent) {
			bad = err // asking again cannot mend it
			return nil
		}
		return err
	})
	if bad != nil {
		t.Fatalf("reading %s: %v", stream, bad)
	}
	return out
}

// errNotAnEvent: a stored message is not a pcm CloudEvent.
var errNotAnEvent = errors.New("stored message is not an event")

func tryReadStored(js jetstream.JetStream, stream string) ([]storedEvent, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, err
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return nil, err
	}
	var out []storedEvent
	for n := info.NumPending; n > 0; {
		batch, err := cons.Fetch(int(min(n, 500)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, err
		}
		for msg := range batch.Messages() {
			n--
			meta, err := msg.Metadata()
			if err != nil {
				return nil, err
			}
			ev, err := events.Decode(msg.Headers(), msg.Data())
			if err != nil {
				return nil, fmt.Errorf("%w: %w", errNotAnEvent, err)
			}
			se := storedEvent{stream: stream, seq: meta.Sequence.Stream, stored: meta.Timestamp, subject: msg.Subject(),
				data: append([]byte(nil), msg.Data()...), id: ev.ID(), typ: ev.Type(), job: ev.Subject()}
			if ev.Type() == events.TypeJobStatus {
				st, err := events.ParseJobStatus(ev)
				if err != nil {
					return nil, fmt.Errorf("%w: %w", errNotAnEvent, err)
				}
				se.client, se.state = st.ClientID, st.State
			}
			out = append(out, se)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return nil, err
		}
	}
	return out, nil
}

// storedHistory reads both streams merged as pcm audit orders them: by
// stored time, offers before statuses at equal times, then by sequence.
func storedHistory(t testing.TB, js jetstream.JetStream) []storedEvent {
	t.Helper()
	all := append(readStored(t, js, events.StreamJobs), readStored(t, js, events.StreamStatus)...)
	sort.SliceStable(all, func(i, j int) bool {
		a, b := all[i], all[j]
		if !a.stored.Equal(b.stored) {
			return a.stored.Before(b.stored)
		}
		if a.stream != b.stream {
			return a.stream == events.StreamJobs
		}
		return a.seq < b.seq
	})
	return all
}

// keep returns the events that match pred.
func keep(evs []storedEvent, pred func(storedEvent) bool) []storedEvent {
	var out []storedEvent
	for _, e := range evs {
		if pred(e) {
			out = append(out, e)
		}
	}
	return out
}

// auditLines runs pcm audit with args and returns its output lines.
func auditLines(t testing.TB, url string, args ...string) []string {
	t.Helper()
	out, errOut, code := runPCM(t, nil, append([]string{"audit", "--url", url}, args...)...)
	if code != 0 {
		t.Fatalf("pcm audit %v exited %d: %s", args, code, errOut)
	}
	out = strings.TrimSuffix(out, "\n")
	if out == "" {
		return nil
	}
	return strings.Split(out, "\n")
}

// publishRaw stores a message and returns its PubAck, for tests that
// store events directly.
func publishRaw(t testing.TB, js jetstream.JetStream, msg *nats.Msg) *jetstream.PubAck {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ack, err := js.PublishMsg(ctx, msg)
	if err != nil {
		t.Fatal(err)
	}
	return ack
}

// jsonUnmarshal decodes a command's JSON output.
func jsonUnmarshal(out string, v any) error { return json.Unmarshal([]byte(out), v) }

// tools do (an auditor may create no consumer on PCM_STATUS).
func waitFinalAsAuditor(t testing.TB, js jetstream.JetStream, client, job string, timeout time.Duration) []events.JobStatus {
	t.Helper()
	var sts []events.JobStatus
	testenv.WaitFor(t, timeout, "a final status of "+job+" on "+client, func() bool {
		sts = sts[:0]
		err := streamread.Scan(context.Background(), js, events.StreamStatus, streamread.Options{Filters: []string{events.StatusSubject(client, job)}},
			func(m streamread.Msg) error {
				ev, err := events.Decode(m.Header, m.Data)
				if err != nil {
					return err
				}
				st, err := events.ParseJobStatus(ev)
				if err != nil {
					return err
				}
				sts = append(sts, st)
				return nil
			})
		if err != nil {
			t.Logf("reading the statuses of %s on %s as an auditor: %v", job, client, err)
			return false
		}
		return len(finals(sts)) > 0
	})
	return sts
}

// checkAuditWhole checks that a full pcm audit -o json through url prints
// exactly the events the streams hold, in stored order, byte for byte (the
// streams read through an admin connection, by consumers), and that pcm
// audit --verify finds the replay whole. It returns how many events.
func checkAuditWhole(t testing.TB, url string, js jetstream.JetStream) int {
	t.Helper()
	hist := storedHistory(t, js)
	lines := auditLines(t, url, "-o", "json")
	if len(lines) != len(hist) {
		t.Fatalf("pcm audit printed %d events, the streams hold %d", len(lines), len(hist))
	}
	for i, line := range lines {
		if line != string(hist[i].data) {
			t.Fatalf("pcm audit line %d is not %s sequence %d byte for byte:\n got %s\nwant %s", i, hist[i].stream, hist[i].seq, line, hist[i].data)
		}
	}
	if out, errOut, code := runPCM(t, nil, "audit", "--url", url, "--verify"); code != 0 {
		t.Fatalf("pcm audit --verify: exit %d\n%s%s", code, out, errOut)
	}
	return len(hist)
}
