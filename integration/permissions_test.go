package integration_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
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
	"github.com/pcm-project/pcm/agent/lock"
	"github.com/pcm-project/pcm/broker/auth"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/integration/testenv"
	"github.com/pcm-project/pcm/internal/streamread"
	"github.com/pcm-project/pcm/publisher"
)

// roleConn is a connection as one pcm user that records the permission
// violations the broker reports to it.
type roleConn struct {
	user auth.User
	nc   *nats.Conn
	js   jetstream.JetStream

	mu         sync.Mutex
	violations []string
}

// dialAs connects to env as u, with fresh credentials of u.
func dialAs(t testing.TB, env *testenv.Broker, u auth.User) *roleConn {
	t.Helper()
	r := &roleConn{user: u}
	opts := append(r.options(t, env, "perm test "+u.UserName()), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	nc, err := nats.Connect(env.URL, opts...)
	if err != nil {
		t.Fatalf("connecting as %s: %v", u.UserName(), err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	r.nc, r.js = nc, js
	return r
}

// options are the connection options of u that record violations into r.
func (r *roleConn) options(t testing.TB, env *testenv.Broker, name string) []nats.Option {
	t.Helper()
	return append(testenv.ClientOptions(t, env.URL, r.user),
		nats.Name(name),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrPermissionViolation) {
				r.mu.Lock()
				r.violations = append(r.violations, err.Error())
				r.mu.Unlock()
			}
		}))
}

// refusedBy reports whether the broker refused something matching re.
func (r *roleConn) refusedBy(re *regexp.Regexp) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, v := range r.violations {
		if re.MatchString(v) {
			return true
		}
	}
	return false
}

// allViolations returns what the broker refused so far.
func (r *roleConn) allViolations() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.violations...)
}

// pubTo matches the refusal of a publish (or request) to subject.
func pubTo(subject string) *regexp.Regexp {
	return regexp.MustCompile(`(?i)publish to "` + regexp.QuoteMeta(subject) + `"`)
}

// pubToRE matches the refusal of a publish to a subject matching pattern.
func pubToRE(pattern string) *regexp.Regexp {
	return regexp.MustCompile(`(?i)publish to "` + pattern + `"`)
}

// subTo matches the refusal of a subscription to subject.
func subTo(subject string) *regexp.Regexp {
	return regexp.MustCompile(`(?i)subscription to "` + regexp.QuoteMeta(subject) + `"`)
}

// forbidden is an act a role must not be able to do.
type forbidden struct {
	name string
	// refusal is the broker's permission violation the act must cause.
	refusal *regexp.Regexp
	do      func(ctx context.Context, r *roleConn) error
	// gap, when set, says why the role can do this today (a known gap,
	// documented in docs/security.md): the test then checks the act is
	// NOT refused, so that closing the gap shows here.
	gap string
}

// checkForbidden runs each act as r, in parallel, and checks the broker
// refused it (or, for a known gap, did not).
func checkForbidden(t *testing.T, r *roleConn, acts []forbidden) {
	t.Helper()
	for _, a := range acts {
		t.Run(a.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- a.do(ctx, r) }()
			var err error
			finished := false
			refused := false
			for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
				if refused = r.refusedBy(a.refusal); refused {
					break
				}
				if !finished {
					select {
					case err = <-done:
						finished = true
						if err == nil && a.gap != "" {
							// Allowed, as the gap says: give a late
							// refusal a moment to show, then conclude.
							time.Sleep(100 * time.Millisecond)
							refused = r.refusedBy(a.refusal)
							deadline = time.Now()
						}
					default:
					}
				}
			}
			cancel()
			switch {
			case a.gap != "" && refused:
				t.Errorf("known gap closed: %s is now refused (%s): update docs/security.md and this table", a.name, a.refusal)
			case a.gap != "":
				t.Logf("KNOWN GAP (docs/security.md): %s %s: %s", r.user.UserName(), a.name, a.gap)
			case !refused:
				t.Errorf("%s could %s: the broker reported no violation matching %s (act returned %v; violations: %q)",
					r.user.UserName(), a.name, a.refusal, err, r.allViolations())
			}
		})
	}
}

// request sends a raw JetStream API (or any) request.
func request(subject, body string) func(ctx context.Context, r *roleConn) error {
	return func(ctx context.Context, r *roleConn) error {
		_, err := r.nc.RequestWithContext(ctx, subject, []byte(body))
		return err
	}
}

// publishTo publishes through JetStream (waiting for a PubAck).
func publishTo(subject string) func(ctx context.Context, r *roleConn) error {
	return func(ctx context.Context, r *roleConn) error {
		_, err := r.js.Publish(ctx, subject, []byte(`{"forged":true}`))
		return err
	}
}

// subscribe subscribes with core NATS and waits for the broker's answer.
func subscribe(subject string) func(ctx context.Context, r *roleConn) error {
	return func(ctx context.Context, r *roleConn) error {
		sub, err := r.nc.SubscribeSync(subject)
		if err != nil {
			return err
		}
		defer sub.Unsubscribe()
		return r.nc.FlushWithContext(ctx)
	}
}

// kvDo binds a bucket and does something with it.
func kvDo(bucket string, fn func(ctx context.Context, kv jetstream.KeyValue) error) func(ctx context.Context, r *roleConn) error {
	return func(ctx context.Context, r *roleConn) error {
		kv, err := r.js.KeyValue(ctx, bucket)
		if err != nil {
			return err
		}
		return fn(ctx, kv)
	}
}

// permFixture is a broker with two enrolled clients, c1 (group g1) and c2
// (group g2), and an offer delivered to c2 but not acked, whose ack subject
// is kept.
type permFixture struct {
	env      *testenv.Broker
	pub      *publisher.Publisher
	c2Job    string // a job for c2, delivered once to agent-c2 and pending
	c2Ack    string // the ack subject of that delivery
	c2Status string // a status subject of c2
	// c2Enrolled are agent-c2's filters as enrolled, comma-separated.
	c2Enrolled string
}

func newPermFixture(t *testing.T, opts ...testenv.Option) *permFixture {
	t.Helper()
	env := testenv.StartBroker(t, append([]testenv.Option{testenv.WithAuth()}, opts...)...)
	f := &permFixture{env: env, pub: newPublisher(t, env.JS)}
	enroll(t, env.JS, "c1", "g1")
	enroll(t, env.JS, "c2", "g2")
	ctx := context.Background()
	j := job([]string{"true"}, toClient("c2"))
	later := time.Now().Add(time.Hour).UTC()
	j.MandatoryAfter = &later
	f.c2Job = publish(t, f.pub, j)
	cons, err := env.JS.Consumer(ctx, events.StreamJobs, events.ConsumerName("c2"))
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for msg := range batch.Messages() {
		f.c2Ack = msg.Reply()
	}
	f.c2Enrolled = strings.Join(cons.CachedInfo().Config.FilterSubjects, ",")
	if f.c2Ack == "" {
		t.Fatalf("no offer delivered to agent-c2: %v", batch.Error())
	}
	// A status and an inventory entry and a lock of c2, to be read.
	f.c2Status = events.StatusSubject("c2", f.c2Job)
	if _, err := env.JS.Publish(ctx, f.c2Status, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{events.BucketAgents, events.BucketLocks} {
		kv, err := env.JS.KeyValue(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Put(ctx, "c2", []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// c2Pending checks that c2's offer is still unacked (nobody else acked it).
func (f *permFixture) c2Pending(t *testing.T) {
	t.Helper()
	a, _, err := consumerBacklog(f.env.JS, "c2")
	if err != nil || a != 1 {
		t.Fatalf("agent-c2 has %d unacked offers (err %v), want 1: someone acked c2's offer", a, err)
	}
}

// c2Filters checks that agent-c2 still has the filters it was enrolled
// with (nobody re-filtered it).
func (f *permFixture) c2Filters(t *testing.T) {
	t.Helper()
	cons, err := f.env.JS.Consumer(context.Background(), events.StreamJobs, events.ConsumerName("c2"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cons.CachedInfo().Config.FilterSubjects, ","); got != f.c2Enrolled {
		t.Fatalf("agent-c2 filters %s, want %s: someone re-filtered it", got, f.c2Enrolled)
	}
}

// optionalJob is an automated job on target that nobody must run now.
func optionalJob(target events.Target) events.JobOffered {
	j := job([]string{"true"}, target)
	j.MandatoryAfter = nil
	return j
}

// commonForbidden are the acts no role but admin (and, for some, the
// publisher) may do: stream management, purges, other clients' keys and
// statuses, inbox snooping.
func commonForbidden(f *permFixture) []forbidden {
	return []forbidden{
		{name: "create a stream", refusal: pubTo("$JS.API.STREAM.CREATE.EVIL"), do: func(ctx context.Context, r *roleConn) error {
			_, err := r.js.CreateStream(ctx, jetstream.StreamConfig{Name: "EVIL", Subjects: []string{"evil.>"}})
			return err
		}},
		{name: "delete the jobs stream", refusal: pubTo("$JS.API.STREAM.DELETE.PCM_JOBS"), do: func(ctx context.Context, r *roleConn) error {
			return r.js.DeleteStream(ctx, events.StreamJobs)
		}},
		{name: "update the status stream", refusal: pubTo("$JS.API.STREAM.UPDATE.PCM_STATUS"),
			do: request("$JS.API.STREAM.UPDATE.PCM_STATUS", `{"name":"PCM_STATUS","subjects":["pcm.status.*.*"],"max_age":1000000000}`)},
		{name: "purge the jobs stream", refusal: pubTo("$JS.API.STREAM.PURGE.PCM_JOBS"), do: request("$JS.API.STREAM.PURGE.PCM_JOBS", `{}`)},
		{name: "purge the status stream", refusal: pubTo("$JS.API.STREAM.PURGE.PCM_STATUS"), do: request("$JS.API.STREAM.PURGE.PCM_STATUS", `{}`)},
		{name: "purge the locks bucket", refusal: pubTo("$JS.API.STREAM.PURGE.KV_PCM_LOCKS"), do: request("$JS.API.STREAM.PURGE.KV_PCM_LOCKS", `{}`)},
		{name: "delete a status", refusal: pubTo("$JS.API.STREAM.MSG.DELETE.PCM_STATUS"), do: request("$JS.API.STREAM.MSG.DELETE.PCM_STATUS", `{"seq":1}`)},
		{name: "delete another client's consumer", refusal: pubTo("$JS.API.CONSUMER.DELETE.PCM_JOBS.agent-c2"), do: func(ctx context.Context, r *roleConn) error {
			return r.js.DeleteConsumer(ctx, events.StreamJobs, "agent-c2")
		}},
		{name: "ack another client's offer", refusal: pubTo(f.c2Ack), do: func(ctx context.Context, r *roleConn) error {
			_, err := r.nc.RequestWithContext(ctx, f.c2Ack, []byte("+ACK"))
			return err
		}},
		{name: "terminate another client's offer", refusal: pubTo(f.c2Ack), do: func(ctx context.Context, r *roleConn) error {
			return r.nc.Publish(f.c2Ack, []byte("+TERM"))
		}},
		{name: "write another client's lock", refusal: pubTo("$KV.PCM_LOCKS.c2"), do: kvDo(events.BucketLocks, func(ctx context.Context, kv jetstream.KeyValue) error {
			_, err := kv.Put(ctx, "c2", []byte(`{"holder":"service"}`))
			return err
		})},
		{name: "delete another client's lock", refusal: pubTo("$KV.PCM_LOCKS.c2"), do: kvDo(events.BucketLocks, func(ctx context.Context, kv jetstream.KeyValue) error {
			return kv.Delete(ctx, "c2")
		})},
		{name: "write another client's inventory", refusal: pubTo("$KV.PCM_AGENTS.c2"), do: publishTo("$KV.PCM_AGENTS.c2")},
		{name: "snoop on every inbox", refusal: subTo("_INBOX.>"), do: subscribe("_INBOX.>")},
		{name: "snoop on another client's inbox", refusal: subTo("_INBOX_agent-c2.>"), do: subscribe("_INBOX_agent-c2.>")},
		{name: "create a stream through the account", refusal: pubTo("$JS.API.STREAM.CREATE.KV_EVIL"), do: request("$JS.API.STREAM.CREATE.KV_EVIL", `{"name":"KV_EVIL","subjects":["$KV.EVIL.>"]}`)},
	}
}

// clientForbidden are the acts an agent or a desktop of c1 may not do on
// top of commonForbidden.
func clientForbidden(f *permFixture) []forbidden {
	return []forbidden{
		{name: "publish another client's status", refusal: pubTo("pcm.status.c2.forged"), do: publishTo("pcm.status.c2.forged")},
		{name: "publish a job to itself", refusal: pubTo("pcm.jobs.client.c1"), do: publishTo("pcm.jobs.client.c1")},
		{name: "publish a job to every client", refusal: pubTo("pcm.jobs.all"), do: publishTo("pcm.jobs.all")},
		{name: "cancel a job of its group", refusal: pubTo("pcm.jobs.group.g1"), do: publishTo("pcm.jobs.group.g1")},
		{name: "read another client's lock", refusal: pubTo("$JS.API.DIRECT.GET.KV_PCM_LOCKS.$KV.PCM_LOCKS.c2"), do: kvDo(events.BucketLocks, func(ctx context.Context, kv jetstream.KeyValue) error {
			_, err := kv.Get(ctx, "c2")
			return err
		})},
		{name: "watch another client's lock", refusal: pubToRE(`\$JS\.API\.CONSUMER\.CREATE\.KV_PCM_LOCKS\.[^".]+\.\$KV\.PCM_LOCKS\.c2`), do: kvDo(events.BucketLocks, func(ctx context.Context, kv jetstream.KeyValue) error {
			w, err := kv.Watch(ctx, "c2")
			if err == nil {
				_ = w.Stop()
			}
			return err
		})},
		{name: "watch every lock", refusal: pubToRE(`\$JS\.API\.CONSUMER\.CREATE\.KV_PCM_LOCKS\.[^".]+\.\$KV\.PCM_LOCKS\.>`), do: kvDo(events.BucketLocks, func(ctx context.Context, kv jetstream.KeyValue) error {
			w, err := kv.WatchAll(ctx)
			if err == nil {
				_ = w.Stop()
			}
			return err
		})},
		{name: "read another client's inventory", refusal: pubTo("$JS.API.DIRECT.GET.KV_PCM_AGENTS.$KV.PCM_AGENTS.c2"),
			do: request("$JS.API.DIRECT.GET.KV_PCM_AGENTS.$KV.PCM_AGENTS.c2", ``)},
		{name: "read another client's status", refusal: pubTo("$JS.API.DIRECT.GET.PCM_STATUS." + f.c2Status), do: request("$JS.API.DIRECT.GET.PCM_STATUS."+f.c2Status, ``)},
		{name: "read any status by sequence", refusal: pubTo("$JS.API.DIRECT.GET.PCM_STATUS"), do: request("$JS.API.DIRECT.GET.PCM_STATUS", `{"seq":1}`)},
		{name: "read any job by sequence", refusal: pubTo("$JS.API.DIRECT.GET.PCM_JOBS"), do: request("$JS.API.DIRECT.GET.PCM_JOBS", `{"seq":1}`)},
		{name: "listen to another client's statuses", refusal: subTo("pcm.status.c2.*"), do: subscribe("pcm.status.c2.*")},
		{name: "listen to the jobs subjects", refusal: subTo("pcm.jobs.>"), do: subscribe("pcm.jobs.>")},
		{name: "list the enrolled clients", refusal: pubTo("$JS.API.CONSUMER.LIST.PCM_JOBS"), do: request("$JS.API.CONSUMER.LIST.PCM_JOBS", `{}`)},
		{name: "list the streams", refusal: pubTo("$JS.API.STREAM.LIST"), do: request("$JS.API.STREAM.LIST", `{}`)},
		{name: "push a package", refusal: pubToRE(`\$O\.PCM_PACKAGES\.[CM]\..*`), do: func(ctx context.Context, r *roleConn) error {
			obs, err := r.js.ObjectStore(ctx, events.BucketPackages)
			if err != nil {
				return err
			}
			_, err = obs.PutBytes(ctx, "evil@1", []byte("evil"))
			return err
		}},
		{name: "purge the packages", refusal: pubTo("$JS.API.STREAM.PURGE.OBJ_PCM_PACKAGES"), do: request("$JS.API.STREAM.PURGE.OBJ_PCM_PACKAGES", `{}`)},
	}
}

// TestPermAgent: an agent's credentials do what the service face needs (a
// real agent runs a whole job, waiting on a lock held by the desktop) and
// nothing else.
func TestPermAgent(t *testing.T) {
	for _, v2 := range []bool{false, true} {
		name := "ack format v1"
		var opts []testenv.Option
		if v2 {
			name = "ack format v2"
			opts = append(opts, testenv.WithFeatureFlags(map[string]bool{"js_ack_fc_v2": true}))
		}
		t.Run(name, func(t *testing.T) {
			f := newPermFixture(t, opts...)
			if got := strings.HasPrefix(f.c2Ack, "$JS.ACK._."); got != v2 {
				t.Fatalf("ack subject %q: v2 format %v, want %v", f.c2Ack, got, v2)
			}
			r := dialAs(t, f.env, auth.User{Role: auth.RoleAgent, Name: "c1"})
			t.Run("allowed: a whole job, waiting on the lock", func(t *testing.T) { agentRunsAJob(t, f) })
			t.Run("forbidden", func(t *testing.T) {
				acts := append(commonForbidden(f), clientForbidden(f)...)
				acts = append(acts,
					forbidden{name: "fetch another client's offers", refusal: pubTo("$JS.API.CONSUMER.MSG.NEXT.PCM_JOBS.agent-c2"),
						do: request("$JS.API.CONSUMER.MSG.NEXT.PCM_JOBS.agent-c2", `{"batch":1,"expires":500000000}`)},
					forbidden{name: "read another client's consumer", refusal: pubTo("$JS.API.CONSUMER.INFO.PCM_JOBS.agent-c2"), do: func(ctx context.Context, r *roleConn) error {
						_, err := r.js.Consumer(ctx, events.StreamJobs, "agent-c2")
						return err
					}},
					forbidden{name: "enroll itself in another group", refusal: pubTo("$JS.API.CONSUMER.CREATE.PCM_JOBS.agent-c1"), do: func(ctx context.Context, r *roleConn) error {
						_, err := publisher.Enroll(ctx, r.js, "c1", []string{"g1", "g2"}, publisher.EnrollOptions{})
						return err
					}},
					forbidden{name: "create a consumer on the jobs stream", refusal: pubTo("$JS.API.CONSUMER.CREATE.PCM_JOBS.evil.pcm.jobs.>"), do: func(ctx context.Context, r *roleConn) error {
						_, err := r.js.CreateOrUpdateConsumer(ctx, events.StreamJobs, jetstream.ConsumerConfig{Durable: "evil", FilterSubject: "pcm.jobs.>"})
						return err
					}},
					forbidden{name: "create a consumer with several filters", refusal: pubTo("$JS.API.CONSUMER.CREATE.PCM_JOBS.evil"), do: func(ctx context.Context, r *roleConn) error {
						_, err := r.js.CreateOrUpdateConsumer(ctx, events.StreamJobs, jetstream.ConsumerConfig{Durable: "evil", FilterSubjects: []string{"pcm.jobs.client.c2", "pcm.jobs.all"}})
						return err
					}},
					forbidden{name: "delete its own consumer", refusal: pubTo("$JS.API.CONSUMER.DELETE.PCM_JOBS.agent-c1"), do: func(ctx context.Context, r *roleConn) error {
						return r.js.DeleteConsumer(ctx, events.StreamJobs, "agent-c1")
					}},
					forbidden{name: "read the jobs stream directly", refusal: pubToRE(`\$JS\.API\.CONSUMER\.CREATE\.PCM_JOBS\..*`), do: func(ctx context.Context, r *roleConn) error {
						_, err := r.js.OrderedConsumer(ctx, events.StreamJobs, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"pcm.jobs.client.c2"}})
						if err != nil {
							return err
						}
						return nil
					}},
					forbidden{name: "read the status stream directly", refusal: pubToRE(`\$JS\.API\.CONSUMER\.CREATE\.PCM_STATUS\..*`), do: func(ctx context.Context, r *roleConn) error {
						c, err := r.js.OrderedConsumer(ctx, events.StreamStatus, jetstream.OrderedConsumerConfig{})
						if err != nil {
							return err
						}
						_, err = c.Fetch(1, jetstream.FetchMaxWait(time.Second))
						return err
					}},
				)
				checkForbidden(t, r, acts)
			})
			f.c2Pending(t)
		})
	}
}

// agentRunsAJob runs a real in-process agent of c1 with agent credentials:
// it binds, waits on the lock held by c1's desktop (a KV watch of its key),
// runs a job, reports started and succeeded, acks the offer, writes its
// inventory, and the broker refuses none of it.
func agentRunsAJob(t *testing.T, f *permFixture) {
	env := f.env
	ctx := context.Background()
	r := &roleConn{user: auth.User{Role: auth.RoleAgent, Name: "c1"}}
	nc, err := nats.Connect(env.URL, append(agent.ConnectOptions("perm agent c1"), r.options(t, env, "perm agent c1")...)...)
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.DebugLevel)
	dir := t.TempDir()
	svc, err := agent.New(nc, agent.Config{ClientID: "c1", StateDir: dir, Heartbeat: time.Second, Lease: 2 * time.Second, Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	// The desktop of c1 holds the lock (with desktop credentials).
	desk := dialAs(t, env, auth.User{Role: auth.RoleDesktop, Name: "c1"})
	dkv, err := desk.js.KeyValue(ctx, events.BucketLocks)
	if err != nil {
		t.Fatal(err)
	}
	dl, err := lock.New(desk.js, dkv, lock.Config{Client: "c1", Lease: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	held, err := dl.TryAcquire(ctx, lock.Info{Holder: lock.HolderDesktop, JobID: "desktop-job"})
	if err != nil {
		t.Fatalf("the desktop cannot take its own lock: %v", err)
	}

	actx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.Run(actx) }()
	defer func() {
		cancel()
		<-done
		nc.Close()
	}()
	select {
	case <-svc.Ready():
	case err := <-done:
		t.Fatalf("agent stopped: %v", err)
	case <-time.After(15 * time.Second):
		t.Fatal("agent not ready")
	}
	marker := filepath.Join(dir, "marker")
	id := publish(t, f.pub, job(appendTo(marker), toClient("c1")))
	testenv.WaitFor(t, 10*time.Second, "the agent to wait for the desktop's lock", func() bool {
		return logs.FilterMessageSnippet("the lock is held by the other face").Len() > 0
	})
	if markerLines(t, marker) != 0 {
		t.Fatal("the agent ran while the desktop held the lock")
	}
	if err := held.Release(ctx); err != nil {
		t.Fatalf("the desktop cannot release its own lock: %v", err)
	}
	sts := waitFinal(t, env.JS, "c1", id, 15*time.Second)
	waitAcked(t, env.JS, "c1", 10*time.Second)
	if fin := finals(sts); len(fin) != 1 || fin[0].State != events.StateSucceeded || markerLines(t, marker) != 1 {
		t.Fatalf("want one succeeded run, got %+v (ran %d times)", sts, markerLines(t, marker))
	}
	akv, err := env.JS.KeyValue(ctx, events.BucketAgents)
	if err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 5*time.Second, "c1's inventory", func() bool {
		_, err := akv.Get(ctx, "c1")
		return err == nil
	})
	if v := append(r.allViolations(), desk.allViolations()...); len(v) > 0 {
		t.Fatalf("the broker refused the agent or desktop something it needs: %q", v)
	}
}

// TestPermDesktop: a desktop's credentials list and run its client's jobs
// (taking the lock, reporting statuses) and follow its client's new offers
// in a session, with no right on any consumer of PCM_JOBS but reading its
// client's, and do nothing else, but for the known gaps of
// docs/security.md.
func TestPermDesktop(t *testing.T) {
	f := newPermFixture(t)
	ctx := context.Background()
	t.Run("allowed: list, run, and a session", func(t *testing.T) {
		r := &roleConn{user: auth.User{Role: auth.RoleDesktop, Name: "c1", Groups: []string{"g1"}}}
		nc, err := nats.Connect(f.env.URL, append(agent.ConnectOptions("perm desktop c1"), r.options(t, f.env, "perm desktop c1")...)...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		var mu sync.Mutex
		var said []string
		d, err := agent.NewDesktop(nc, agent.DesktopConfig{Config: agent.Config{ClientID: "c1", StateDir: t.TempDir(), Lease: 2 * time.Second},
			Notify: func(line string) { mu.Lock(); said = append(said, line); mu.Unlock() }})
		if err != nil {
			t.Fatal(err)
		}
		told := func(id string) bool {
			mu.Lock()
			defer mu.Unlock()
			for _, l := range said {
				if strings.Contains(l, id) {
					return true
				}
			}
			return false
		}
		j := job([]string{"true"}, toGroup("g1"))
		j.MandatoryAfter = nil
		id := publish(t, f.pub, j)
		list, err := d.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 1 || list[0].JobID != id {
			t.Fatalf("desktop lists %+v, want job %s", list, id)
		}
		st, err := d.Run(ctx, id)
		if err != nil || st.State != events.StateSucceeded {
			t.Fatalf("desktop run: %+v, %v", st, err)
		}
		// A session: the stored offers, then new ones on each of its
		// subjects (its own, its group's, every client's), heard at once.
		stored := publish(t, f.pub, optionalJob(toClient("c1")))
		sctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- d.Session(sctx) }()
		testenv.WaitFor(t, 5*time.Second, "the session to announce the stored offer", func() bool { return told(stored) })
		for _, target := range []events.Target{toClient("c1"), toGroup("g1"), {Kind: events.TargetAll}} {
			id := publish(t, f.pub, optionalJob(target))
			testenv.WaitFor(t, 2*time.Second, "the session to announce a new offer to "+events.JobSubject(target), func() bool { return told(id) })
		}
		other := publish(t, f.pub, optionalJob(toClient("c2")))
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("session: %v", err)
		}
		if told(other) {
			t.Fatal("the session announced another client's offer")
		}
		if v := r.allViolations(); len(v) > 0 {
			t.Fatalf("the broker refused the desktop something it needs: %q", v)
		}
	})
	r := dialAs(t, f.env, auth.User{Role: auth.RoleDesktop, Name: "c1", Groups: []string{"g1"}})
	t.Run("forbidden", func(t *testing.T) {
		acts := append(commonForbidden(f), clientForbidden(f)...)
		for i := range acts {
			if acts[i].name == "read any job by sequence" {
				acts[i].gap = "it reads its client's offers with batched direct gets, a request whose subject names no filter: it can read any offer by sequence (not change anything)"
			}
		}
		acts = append(acts,
			forbidden{name: "write its client's inventory", refusal: pubTo("$KV.PCM_AGENTS.c1"), do: publishTo("$KV.PCM_AGENTS.c1")},
			forbidden{name: "ack its service's offers", refusal: pubToRE(`\$JS\.ACK\..*agent-c1.*`), do: func(ctx context.Context, r *roleConn) error {
				return r.nc.Publish("$JS.ACK.PCM_JOBS.agent-c1.1.1.1.1.0", []byte("+ACK"))
			}},
			forbidden{name: "read another client's consumer", refusal: pubTo("$JS.API.CONSUMER.INFO.PCM_JOBS.agent-c2"), do: func(ctx context.Context, r *roleConn) error {
				_, err := r.js.Consumer(ctx, events.StreamJobs, "agent-c2")
				return err
			}},
			forbidden{name: "fetch its service's offers", refusal: pubTo("$JS.API.CONSUMER.MSG.NEXT.PCM_JOBS.agent-c1"),
				do: request("$JS.API.CONSUMER.MSG.NEXT.PCM_JOBS.agent-c1", `{"batch":1,"no_wait":true}`)},
			forbidden{name: "fetch another client's offers", refusal: pubTo("$JS.API.CONSUMER.MSG.NEXT.PCM_JOBS.agent-c2"),
				do: request("$JS.API.CONSUMER.MSG.NEXT.PCM_JOBS.agent-c2", `{"batch":1,"no_wait":true}`)},
			forbidden{name: "re-filter another client's consumer", refusal: pubTo("$JS.API.CONSUMER.CREATE.PCM_JOBS.agent-c2"), do: func(ctx context.Context, r *roleConn) error {
				_, err := r.js.CreateOrUpdateConsumer(ctx, events.StreamJobs, jetstream.ConsumerConfig{Durable: "agent-c2",
					FilterSubjects: []string{"pcm.jobs.client.c1", "pcm.jobs.all"}, AckPolicy: jetstream.AckExplicitPolicy})
				return err
			}},
			forbidden{name: "re-filter another client's consumer to one subject", refusal: pubTo("$JS.API.CONSUMER.CREATE.PCM_JOBS.agent-c2.pcm.jobs.client.c1"),
				do: func(ctx context.Context, r *roleConn) error {
					_, err := r.js.UpdateConsumer(ctx, events.StreamJobs, jetstream.ConsumerConfig{Durable: "agent-c2",
						FilterSubject: "pcm.jobs.client.c1", AckPolicy: jetstream.AckExplicitPolicy})
					return err
				}},
			forbidden{name: "re-filter its service's consumer", refusal: pubTo("$JS.API.CONSUMER.CREATE.PCM_JOBS.agent-c1"), do: func(ctx context.Context, r *roleConn) error {
				_, err := r.js.CreateOrUpdateConsumer(ctx, events.StreamJobs, jetstream.ConsumerConfig{Durable: "agent-c1",
					FilterSubjects: []string{"pcm.jobs.client.c2", "pcm.jobs.all"}, AckPolicy: jetstream.AckExplicitPolicy})
				return err
			}},
			forbidden{name: "create a consumer filtered to another client", refusal: pubTo("$JS.API.CONSUMER.CREATE.PCM_JOBS.evil"), do: func(ctx context.Context, r *roleConn) error {
				_, err := r.js.CreateOrUpdateConsumer(ctx, events.StreamJobs, jetstream.ConsumerConfig{Name: "evil", FilterSubjects: []string{"pcm.jobs.client.c2", "pcm.jobs.all"}, InactiveThreshold: time.Second})
				return err
			}},
			forbidden{name: "create a consumer with one filter", refusal: pubTo("$JS.API.CONSUMER.CREATE.PCM_JOBS.evil1.pcm.jobs.>"), do: func(ctx context.Context, r *roleConn) error {
				_, err := r.js.CreateOrUpdateConsumer(ctx, events.StreamJobs, jetstream.ConsumerConfig{Name: "evil1", FilterSubject: "pcm.jobs.>"})
				return err
			}},
			forbidden{name: "read its offers through an ordered consumer", refusal: pubToRE(`\$JS\.API\.CONSUMER\.CREATE\.PCM_JOBS\..*`), do: func(ctx context.Context, r *roleConn) error {
				c, err := r.js.OrderedConsumer(ctx, events.StreamJobs, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"pcm.jobs.client.c1", "pcm.jobs.all"}})
				if err != nil {
					return err
				}
				_, err = c.Fetch(1, jetstream.FetchMaxWait(time.Second))
				return err
			}},
			forbidden{name: "read the jobs stream's info", refusal: pubTo("$JS.API.STREAM.INFO.PCM_JOBS"), do: func(ctx context.Context, r *roleConn) error {
				_, err := r.js.Stream(ctx, events.StreamJobs)
				return err
			}},
			forbidden{name: "listen to another client's offers", refusal: subTo("pcm.jobs.client.c2"), do: subscribe("pcm.jobs.client.c2")},
			forbidden{name: "listen to another group's offers", refusal: subTo("pcm.jobs.group.g2"), do: subscribe("pcm.jobs.group.g2")},
			forbidden{name: "listen to its own statuses", refusal: subTo("pcm.status.c1.*"), do: subscribe("pcm.status.c1.*")},
		)
		checkForbidden(t, r, acts)
	})
	f.c2Pending(t)
	f.c2Filters(t)
}

// TestPermPublisher: a publisher's credentials publish and cancel jobs,
// enroll clients, push packages and read statuses and the inventory, and
// cannot forge statuses, touch locks or inventory, or manage streams.
func TestPermPublisher(t *testing.T) {
	f := newPermFixture(t)
	ctx := context.Background()
	r := dialAs(t, f.env, auth.User{Role: auth.RolePublisher, Name: "ci"})
	t.Run("allowed", func(t *testing.T) {
		p, err := publisher.New(r.js, publisher.Config{Name: "ci"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := publisher.Enroll(ctx, r.js, "c3", []string{"g1"}, publisher.EnrollOptions{AckWait: testAckWait}); err != nil {
			t.Fatalf("enroll: %v", err)
		}
		if _, err := publisher.ListEnrollments(ctx, r.js); err != nil {
			t.Fatalf("list enrollments: %v", err)
		}
		published, err := p.Publish(ctx, job([]string{"true"}, toClient("c3")))
		if err != nil {
			t.Fatalf("publish: %v", err)
		}
		id := published.JobID
		if _, err := publisher.FindOffer(ctx, r.js, id); err != nil {
			t.Fatalf("find offer: %v", err)
		}
		if err := p.Cancel(ctx, id, "test"); err != nil {
			t.Fatalf("cancel: %v", err)
		}
		if _, err := publisher.ReadRollout(ctx, r.js, f.c2Job); err != nil {
			t.Fatalf("rollout: %v", err)
		}
		if _, err := publisher.Inventory(ctx, r.js, time.Now()); err != nil {
			t.Fatalf("inventory: %v", err)
		}
		if _, err := publisher.ReadLocks(ctx, r.js); err != nil {
			t.Fatalf("locks: %v", err)
		}
		n := 0
		if err := publisher.Replay(ctx, r.js, publisher.AuditFilter{}, func(publisher.AuditEvent) error { n++; return nil }); err != nil || n == 0 {
			t.Fatalf("audit replay: %d events, %v", n, err)
		}
		pkg := filepath.Join(t.TempDir(), "tool.sh")
		if err := os.WriteFile(pkg, []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		pk := publisher.NewPackages(r.js)
		if _, err := pk.Push(ctx, pkg, publisher.PushOptions{Name: "tool", Version: "1"}); err != nil {
			t.Fatalf("package push: %v", err)
		}
		if _, err := pk.List(ctx); err != nil {
			t.Fatalf("package list: %v", err)
		}
		if err := pk.Remove(ctx, "tool@1"); err != nil {
			t.Fatalf("package rm: %v", err)
		}
		if err := publisher.Unenroll(ctx, r.js, "c3"); err != nil {
			t.Fatalf("unenroll: %v", err)
		}
		if v := r.allViolations(); len(v) > 0 {
			t.Fatalf("the broker refused the publisher something it needs: %q", v)
		}
	})
	t.Run("forbidden", func(t *testing.T) {
		acts := append(commonForbidden(f),
			forbidden{name: "forge a status", refusal: pubTo("pcm.status.c2.forged"), do: publishTo("pcm.status.c2.forged")},
			forbidden{name: "take a client's lock", refusal: pubTo("$KV.PCM_LOCKS.c1"), do: publishTo("$KV.PCM_LOCKS.c1")},
			forbidden{name: "write a client's inventory", refusal: pubTo("$KV.PCM_AGENTS.c1"), do: publishTo("$KV.PCM_AGENTS.c1")},
			forbidden{name: "fetch another client's offers", refusal: pubTo("$JS.API.CONSUMER.MSG.NEXT.PCM_JOBS.agent-c2"),
				do: request("$JS.API.CONSUMER.MSG.NEXT.PCM_JOBS.agent-c2", `{"batch":1,"no_wait":true}`)},
			forbidden{name: "update another client's consumer", refusal: pubTo("$JS.API.CONSUMER.CREATE.PCM_JOBS.agent-c2"), do: func(ctx context.Context, r *roleConn) error {
				// An update to the same configuration: allowed, harmless.
				cons, err := r.js.Consumer(ctx, events.StreamJobs, "agent-c2")
				if err != nil {
					return err
				}
				_, err = r.js.UpdateConsumer(ctx, events.StreamJobs, cons.CachedInfo().Config)
				return err
			}, gap: "a publisher manages every consumer of PCM_JOBS (enroll): it may re-filter any of them; it may publish jobs to any client anyway"},
		)
		// A publisher deletes consumers (unenroll): drop that act.
		out := acts[:0]
		for _, a := range acts {
			if a.name != "delete another client's consumer" {
				out = append(out, a)
			}
		}
		checkForbidden(t, r, out)
	})
	f.c2Pending(t)
	f.c2Filters(t)
}

// TestPermAuditor: an auditor's credentials read both streams (direct
// gets), the inventory and the locks, follow the history as it is stored,
// and change nothing: it creates, updates and pulls from no consumer of
// either stream.
func TestPermAuditor(t *testing.T) {
	f := newPermFixture(t)
	ctx := context.Background()
	r := dialAs(t, f.env, auth.User{Role: auth.RoleAuditor, Name: "audit"})
	t.Run("allowed", func(t *testing.T) {
		n := 0
		if err := publisher.Replay(ctx, r.js, publisher.AuditFilter{}, func(publisher.AuditEvent) error { n++; return nil }); err != nil || n == 0 {
			t.Fatalf("audit replay: %d events, %v", n, err)
		}
		n = 0
		if err := publisher.Replay(ctx, r.js, publisher.AuditFilter{Client: "c2"}, func(publisher.AuditEvent) error { n++; return nil }); err != nil || n == 0 {
			t.Fatalf("audit replay of c2: %d events, %v", n, err)
		}
		if _, err := publisher.ReadRollout(ctx, r.js, f.c2Job); err != nil {
			t.Fatalf("rollout: %v", err)
		}
		if _, err := publisher.Inventory(ctx, r.js, time.Now()); err != nil {
			t.Fatalf("inventory: %v", err)
		}
		if _, err := publisher.ShowAgent(ctx, r.js, "c2", 5, time.Now()); err != nil {
			t.Fatalf("show agent: %v", err)
		}
		if _, err := publisher.ReadLocks(ctx, r.js); err != nil {
			t.Fatalf("locks: %v", err)
		}
		if _, err := publisher.FindOffer(ctx, r.js, f.c2Job); err != nil {
			t.Fatalf("find offer: %v", err)
		}
		// Following: a new offer and a new status show at once.
		fctx, cancel := context.WithCancel(ctx)
		seen := make(chan publisher.AuditEvent, 64)
		done := make(chan error, 1)
		go func() {
			done <- publisher.Replay(fctx, r.js, publisher.AuditFilter{Follow: true}, func(e publisher.AuditEvent) error {
				seen <- e
				return nil
			})
		}()
		id := publish(t, f.pub, optionalJob(toClient("c1")))
		status := events.StatusSubject("c1", id)
		if _, err := f.env.JS.Publish(ctx, status, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		for want := map[string]bool{events.JobSubject(toClient("c1")) + " " + id: true, status: true}; len(want) > 0; {
			select {
			case e := <-seen:
				key := e.Subject
				if ev, err := e.Decode(); err == nil && e.Stream == events.StreamJobs {
					key += " " + ev.Subject()
				}
				delete(want, key)
			case <-time.After(2 * time.Second):
				t.Fatalf("audit --follow did not show %v within 2s", want)
			}
		}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("following replay: %v", err)
		}
		if v := r.allViolations(); len(v) > 0 {
			t.Fatalf("the broker refused the auditor something it needs: %q", v)
		}
	})
	t.Run("forbidden", func(t *testing.T) {
		acts := append(commonForbidden(f),
			forbidden{name: "publish a job", refusal: pubTo("pcm.jobs.all"), do: publishTo("pcm.jobs.all")},
			forbidden{name: "forge a status", refusal: pubTo("pcm.status.c2.forged"), do: publishTo("pcm.status.c2.forged")},
			forbidden{name: "take a client's lock", refusal: pubTo("$KV.PCM_LOCKS.c1"), do: publishTo("$KV.PCM_LOCKS.c1")},
			forbidden{name: "write a client's inventory", refusal: pubTo("$KV.PCM_AGENTS.c1"), do: publishTo("$KV.PCM_AGENTS.c1")},
			forbidden{name: "push a package", refusal: pubToRE(`\$O\.PCM_PACKAGES\..*`), do: publishTo("$O.PCM_PACKAGES.M.evil")},
			forbidden{name: "enroll a client", refusal: pubTo("$JS.API.CONSUMER.CREATE.PCM_JOBS.agent-c9"), do: func(ctx context.Context, r *roleConn) error {
				_, err := publisher.Enroll(ctx, r.js, "c9", []string{"g1"}, publisher.EnrollOptions{})
				return err
			}},
			forbidden{name: "re-filter another client's consumer", refusal: pubTo("$JS.API.CONSUMER.CREATE.PCM_JOBS.agent-c2"), do: func(ctx context.Context, r *roleConn) error {
				_, err := r.js.CreateOrUpdateConsumer(ctx, events.StreamJobs, jetstream.ConsumerConfig{Durable: "agent-c2",
					FilterSubjects: []string{"pcm.jobs.client.c1", "pcm.jobs.all"}, AckPolicy: jetstream.AckExplicitPolicy})
				return err
			}},
			forbidden{name: "fetch another client's offers", refusal: pubTo("$JS.API.CONSUMER.MSG.NEXT.PCM_JOBS.agent-c2"),
				do: request("$JS.API.CONSUMER.MSG.NEXT.PCM_JOBS.agent-c2", `{"batch":1,"no_wait":true}`)},
			forbidden{name: "create a consumer on the jobs stream", refusal: pubToRE(`\$JS\.API\.CONSUMER\.CREATE\.PCM_JOBS\..*`), do: func(ctx context.Context, r *roleConn) error {
				c, err := r.js.OrderedConsumer(ctx, events.StreamJobs, jetstream.OrderedConsumerConfig{})
				if err != nil {
					return err
				}
				_, err = c.Fetch(1, jetstream.FetchMaxWait(time.Second))
				return err
			}},
			forbidden{name: "create a consumer on the status stream", refusal: pubToRE(`\$JS\.API\.CONSUMER\.CREATE\.PCM_STATUS\..*`), do: func(ctx context.Context, r *roleConn) error {
				c, err := r.js.OrderedConsumer(ctx, events.StreamStatus, jetstream.OrderedConsumerConfig{})
				if err != nil {
					return err
				}
				_, err = c.Fetch(1, jetstream.FetchMaxWait(time.Second))
				return err
			}},
		)
		checkForbidden(t, r, acts)
	})
	f.c2Pending(t)
	f.c2Filters(t)
}

// TestPermStrangers: without credentials, with credentials of another
// authority, or with a tampered JWT, nobody connects.
func TestPermStrangers(t *testing.T) {
	env := testenv.StartBroker(t, testenv.WithAuth())
	other := testenv.StartBroker(t, testenv.WithAuth())
	otherCreds := other.Sec.Creds(t, auth.User{Role: auth.RoleAdmin, Name: "admin"})
	good := env.Sec.Creds(t, auth.User{Role: auth.RoleAgent, Name: "c1"})
	b, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	// Widen the agent's permissions in its JWT payload: the signature no
	// longer matches.
	tampered := filepath.Join(t.TempDir(), "tampered.creds")
	if err := os.WriteFile(tampered, tamper(t, b), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		opts []nats.Option
	}{
		{"no credentials", nil},
		{"credentials of another authority", []nats.Option{nats.UserCredentials(otherCreds)}},
		{"a tampered JWT", []nats.Option{nats.UserCredentials(tampered)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// With TLS (the secure test mode), trust the CA: only the
			// credentials may differ.
			opts := append(env.Sec.Options(t, ""), tc.opts...)
			nc, err := nats.Connect(env.URL, append(opts, nats.Timeout(2*time.Second), nats.NoReconnect())...)
			if err == nil {
				nc.Close()
				t.Fatal("connected")
			}
			if !errors.Is(err, nats.ErrAuthorization) && !strings.Contains(strings.ToLower(err.Error()), "authorization") {
				t.Fatalf("refused for another reason: %v", err)
			}
		})
	}
}

// tamper rewrites the payload of the user JWT in a creds file so that its
// permissions allow everything, keeping the original signature.
func tamper(t *testing.T, creds []byte) []byte {
	t.Helper()
	s := string(creds)
	start := strings.Index(s, "-----\n") + len("-----\n")
	end := start + strings.Index(s[start:], "\n")
	parts := strings.Split(s[start:end], ".")
	if len(parts) != 3 {
		t.Fatalf("creds JWT has %d parts", len(parts))
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	nc := claims["nats"].(map[string]any)
	nc["pub"] = map[string]any{"allow": []string{">"}}
	nc["sub"] = map[string]any{"allow": []string{">"}}
	payload, _ = json.Marshal(claims)
	parts[1] = base64.RawURLEncoding.EncodeToString(payload)
	return []byte(s[:start] + strings.Join(parts, ".") + s[end:])
}

// waitFinalAsAuditor is waitFinal for a connection with auditor
// credentials: it reads the statuses with direct gets, as the auditor's
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
