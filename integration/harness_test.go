package integration_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pcm-project/pcm/agent"
	"github.com/pcm-project/pcm/broker/auth"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/fleet"
	"github.com/pcm-project/pcm/publisher"
	"github.com/pcm-project/pcm/testenv"
)

// pcmBinary is the pcm binary built once for the tests that run processes.
var pcmBinary string

func TestMain(m *testing.M) {
	waitBoundDefaults()
	dir, err := os.MkdirTemp("", "pcm-bin-")
	if err != nil {
		panic(err)
	}
	pcmBinary = filepath.Join(dir, "pcm")
	out, err := exec.Command("go", "build", "-o", pcmBinary, "../cmd/pcm").CombinedOutput()
	if err != nil {
		os.Stderr.Write(out)
		panic("building pcm: " + err.Error())
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// waitBoundDefaults sets what suits a suite that waits more than it
// computes, when the command line does not say otherwise: its tests that
// wait long on timers, processes and elections (those that call
// t.Parallel) wait side by side, four at a time rather than GOMAXPROCS.
// Tests that compute (builds, many agents) stay sequential: CI runs the
// secure suite beside this one, and a starved broker failed them. (The
// timeout cannot be set here: go test passes its own -test.timeout, 10
// minutes unless -timeout says otherwise, and kills the binary a minute
// after; the README's test command gives -timeout 30m.)
func waitBoundDefaults() {
	flag.Parse()
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !set["test.parallel"] {
		if err := flag.Set("test.parallel", "4"); err != nil {
			panic(fmt.Sprintf("setting -test.parallel: %v", err))
		}
	}
}

// testAckWait is the consumers' ack wait in tests, short so that an offer
// left unacked by a killed agent comes back quickly.
const testAckWait = 2 * time.Second

// enroll enrolls client with groups and the test ack wait.
func enroll(t testing.TB, js jetstream.JetStream, client string, groups ...string) {
	t.Helper()
	testenv.EnrollClient(t, js, client, groups, fleet.ConsumerOptions{AckWait: testAckWait})
}

// runningAgent is an in-process service face.
type runningAgent struct {
	svc      *agent.Service
	cancel   context.CancelFunc
	done     chan error
	logs     *observer.ObservedLogs // for warned, and to read when a test fails
	nc       *nats.Conn
	stopOnce sync.Once
}

// agentOpts tweaks the config of startAgent.
type agentOpts func(*agent.Config)

// startAgent runs a service for client on the broker at url, with its own
// connection and the given state dir, and waits until it is ready.
func startAgent(t testing.TB, url, client, stateDir string, opts ...agentOpts) *runningAgent {
	t.Helper()
	// With a secure broker (PCM_TEST_SECURE=1), the agent runs with its own
	// agent credentials, as in production.
	return startAgentWith(t, url, client, stateDir, testenv.ClientOptions(t, url, auth.User{Role: auth.RoleAgent, Name: client}), opts...)
}

// startAgentWith is startAgent connecting with creds (the agent's own
// credentials, TLS) rather than the test environment's.
func startAgentWith(t testing.TB, url, client, stateDir string, creds []nats.Option, opts ...agentOpts) *runningAgent {
	t.Helper()
	nc, err := nats.Connect(url, append(agent.ConnectOptions("test agent "+client), creds...)...)
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.DebugLevel)
	cfg := agent.Config{ClientID: client, StateDir: stateDir, Heartbeat: time.Second, Lease: 2 * time.Second,
		Logger: zap.New(core)}
	for _, o := range opts {
		o(&cfg)
	}
	svc, err := agent.New(nc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ra := &runningAgent{svc: svc, cancel: cancel, done: make(chan error, 1), logs: logs, nc: nc}
	go func() { ra.done <- svc.Run(ctx) }()
	t.Cleanup(ra.stop)
	return ra
}

// enrolledAgent enrolls client on env and starts its agent in a fresh state
// dir, waiting until it is ready; it returns the agent and the dir.
func enrolledAgent(t testing.TB, env *testenv.Broker, client string, opts ...agentOpts) (*runningAgent, string) {
	t.Helper()
	dir := t.TempDir()
	enroll(t, env.JS, client)
	a := startAgent(t, env.URL, client, dir, opts...)
	a.waitReady(t)
	return a, dir
}

// waitReady waits for the agent to bind to its consumer.
func (a *runningAgent) waitReady(t testing.TB) {
	t.Helper()
	select {
	case <-a.svc.Ready():
	case err := <-a.done:
		t.Fatalf("agent stopped before it was ready: %v", err)
	case <-time.After(15 * time.Second):
		t.Fatal("agent not ready after 15s")
	}
}

// stop cancels the agent and waits for Run to return; stopping it again
// does nothing.
func (a *runningAgent) stop() {
	a.stopOnce.Do(func() {
		a.cancel()
		select {
		case <-a.done:
		case <-time.After(15 * time.Second):
		}
		a.nc.Close()
	})
}

// warned reports whether the agent logged a warning containing text. The
// one warning tests look for is the agent's to its operator at start (it
// runs unsigned jobs): that line is the behaviour under test. Everything
// else is asserted on counters (waitStats), statuses and the broker's state.
func (a *runningAgent) warned(text string) bool {
	return a.logs.FilterLevelExact(zapcore.WarnLevel).FilterMessageSnippet(text).Len() > 0
}

// waitStats waits until the agent's counters satisfy cond (what names it).
func (a *runningAgent) waitStats(t testing.TB, timeout time.Duration, what string, cond func(agent.Stats) bool) {
	t.Helper()
	testenv.CheckFor(t, timeout, 10*time.Millisecond, func() error {
		if s := a.svc.Stats(); !cond(s) {
			return fmt.Errorf("waiting for %s: the agent counts %+v", what, s)
		}
		return nil
	})
}

// waitPulling waits until client's consumer has a pull request waiting: its
// agent is bound and idle, waiting for offers (a process's "agent ready"
// said without reading its log).
func waitPulling(t testing.TB, js jetstream.JetStream, client string) {
	t.Helper()
	waitPullingFor(t, js, client, 15*time.Second)
}

// waitPullingFor is waitPulling with its own timeout (a Windows agent
// under Wine takes longer to start on a loaded machine).
func waitPullingFor(t testing.TB, js jetstream.JetStream, client string, timeout time.Duration) {
	t.Helper()
	testenv.CheckFor(t, timeout, 20*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		cons, err := js.Consumer(ctx, events.StreamJobs, events.ConsumerName(client))
		if err != nil {
			return err
		}
		info, err := cons.Info(ctx)
		if err != nil {
			return err
		}
		if info.NumWaiting == 0 {
			return fmt.Errorf("no pull request of %s's agent is waiting", client)
		}
		return nil
	})
}

// readStatuses returns every status stored for job on client, in order.
// Transient errors (a cluster member restarting) are retried for 15 s.
func readStatuses(t testing.TB, js jetstream.JetStream, client, job string) []events.JobStatus {
	t.Helper()
	var out []events.JobStatus
	testenv.CheckFor(t, 15*time.Second, 200*time.Millisecond, func() (err error) {
		if out, err = tryReadStatuses(js, client, job); err != nil {
			return fmt.Errorf("reading the statuses of %s on %s: %w", job, client, err)
		}
		return nil
	})
	return out
}

func tryReadStatuses(js jetstream.JetStream, client, job string) ([]events.JobStatus, error) {
	return tryReadStatusesOn(js, events.StatusSubject(client, job))
}

// readAllStatuses reads the whole of PCM_STATUS in one pass, by client
// and job: what checking every pair of a big rollout needs, without a
// consumer per pair.
func readAllStatuses(t testing.TB, js jetstream.JetStream) map[[2]string][]events.JobStatus {
	t.Helper()
	var all []events.JobStatus
	testenv.CheckFor(t, 30*time.Second, 200*time.Millisecond, func() (err error) {
		if all, err = tryReadStatusesOn(js, events.StatusSubject("*", "*")); err != nil {
			return fmt.Errorf("reading PCM_STATUS: %w", err)
		}
		return nil
	})
	out := map[[2]string][]events.JobStatus{}
	for _, st := range all {
		k := [2]string{st.ClientID, st.JobID}
		out[k] = append(out[k], st)
	}
	return out
}

// tryReadStatusesOn reads the statuses stored on subject (a filter).
func tryReadStatusesOn(js jetstream.JetStream, subject string) ([]events.JobStatus, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, events.StreamStatus, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subject},
	})
	if err != nil {
		return nil, err
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return nil, err
	}
	var out []events.JobStatus
	for n := info.NumPending; n > 0; {
		batch, err := cons.Fetch(int(n), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, err
		}
		got := 0
		for msg := range batch.Messages() {
			n--
			got++
			ev, err := events.Decode(msg.Headers(), msg.Data())
			if err != nil {
				return nil, fmt.Errorf("stored status does not decode: %w", err)
			}
			st, err := events.ParseJobStatus(ev)
			if err != nil {
				return nil, fmt.Errorf("stored status does not parse: %w", err)
			}
			out = append(out, st)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return nil, err
		}
		if got == 0 {
			return nil, fmt.Errorf("%d statuses announced but none delivered", n)
		}
	}
	return out, nil
}

// finals keeps the final statuses.
func finals(sts []events.JobStatus) []events.JobStatus {
	var out []events.JobStatus
	for _, s := range sts {
		if s.State.Final() {
			out = append(out, s)
		}
	}
	return out
}

// waitFinal waits until job has a final status on client that ends it and
// returns every status stored.
func waitFinal(t testing.TB, js jetstream.JetStream, client, job string, timeout time.Duration) []events.JobStatus {
	t.Helper()
	var sts []events.JobStatus
	testenv.WaitFor(t, timeout, "a final status of "+job+" on "+client, func() bool {
		sts = readStatuses(t, js, client, job)
		return len(finals(sts)) > 0
	})
	return sts
}

// ackPending returns the consumer's unacked and undelivered counts.
func ackPending(t testing.TB, js jetstream.JetStream, client string) (ackPending int, pending uint64) {
	t.Helper()
	a, p, err := consumerBacklog(js, client)
	if err != nil {
		t.Fatal(err)
	}
	return a, p
}

// consumerBacklog is ackPending without failing the test (for waits across
// broker or cluster restarts).
func consumerBacklog(js jetstream.JetStream, client string) (ackPending int, pending uint64, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cons, err := js.Consumer(ctx, events.StreamJobs, events.ConsumerName(client))
	if err != nil {
		return 0, 0, err
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return 0, 0, err
	}
	return info.NumAckPending, info.NumPending, nil
}

// waitAcked waits until client's consumer has nothing pending or unacked.
func waitAcked(t testing.TB, js jetstream.JetStream, client string, timeout time.Duration) {
	t.Helper()
	testenv.WaitFor(t, timeout, "every offer of "+client+" acked", func() bool {
		a, p, err := consumerBacklog(js, client)
		return err == nil && a == 0 && p == 0
	})
}

// newPublisher returns a publisher named "test".
func newPublisher(t testing.TB, js jetstream.JetStream) *publisher.Publisher {
	t.Helper()
	p, err := publisher.New(js, publisher.Config{Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// job returns a mandatory-now automated job running argv on targets.
func job(argv []string, targets ...events.Target) events.JobOffered {
	now := time.Now().UTC()
	return events.JobOffered{
		Command:        events.CommandLine{Argv: argv, Automated: true, Timeout: events.Duration(time.Minute)},
		Targets:        targets,
		MandatoryAfter: &now,
		OfferAfter:     now,
	}
}

func toClient(c string) events.Target { return events.Target{Kind: events.TargetClient, Name: c} }
func toGroup(g string) events.Target  { return events.Target{Kind: events.TargetGroup, Name: g} }

// publish publishes j and returns its id.
func publish(t testing.TB, p *publisher.Publisher, j events.JobOffered) string {
	t.Helper()
	published, err := p.Publish(context.Background(), j)
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	return published.JobID
}

// markerLines counts the lines of a marker file (0 when absent).
func markerLines(t testing.TB, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}

// appendTo is a command that appends a line to path.
func appendTo(path string) []string {
	return []string{"sh", "-c", "echo ran >> " + path}
}
