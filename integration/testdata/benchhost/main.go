// Command benchhost hosts part of a simulated fleet for the fan-out
// benchmark of package integration (bench_test.go): either real pcm agents
// (agent.New and Run, each with its own connection and journal, jobs run by
// the in-process no-op runner) or bare nats.go consumers that do the
// benchmark's baseline pattern by hand (fetch, publish a status and wait for
// its PubAck, double-ack). The benchmark builds and runs it; it is never
// installed and never used by pcm itself.
//
// It prints "ready N" on stdout once its N clients are bound to their
// consumers, then serves until its stdin is closed (or SIGTERM), stops every
// client and prints "stopped". On stdin it also takes "cpuprofile PATH" and
// "stopprofile" to profile a measured window.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/agent"
	"github.com/pcm-project/pcm/agent/runner"
	"github.com/pcm-project/pcm/broker/auth"
	"github.com/pcm-project/pcm/events"
)

func main() {
	var (
		mode     = flag.String("mode", "pcm", "pcm (real agents), bare (the nats.go baseline), idle (connections that subscribe as an agent does and wait; with -parallel 1 the ready line says what the last tenth of the connections took) or relay (a server without JetStream joined to the broker's leaf node URL -url, listening on -listen, for clients beyond one process's open-file limit)")
		url      = flag.String("url", "", "broker URL (relay mode: the broker's leaf node URL)")
		listen   = flag.String("listen", "127.0.0.1:-1", "relay mode: the client listener, host:port (-1: any free port)")
		prefix   = flag.String("prefix", "c", "client id prefix; clients are PREFIX-000000 ...")
		from     = flag.Int("from", 0, "first client number")
		to       = flag.Int("to", 1, "one past the last client number")
		state    = flag.String("state", "", "directory of the agents' state dirs (pcm mode)")
		noSync   = flag.Bool("nosync", false, "pcm mode: journals without fsync (to measure its share)")
		noEcho   = flag.Bool("noecho", false, "pcm mode: connect with nats.NoEcho (the agent does not receive its own statuses)")
		parallel = flag.Int("parallel", 32, "clients started at once")
		issuer   = flag.String("issuer", "", "pcm mode on an authenticated broker: the issuer file that mints each agent's credentials (its client's account must exist)")
	)
	flag.Parse()
	var iss *auth.Issuer
	if *issuer != "" {
		var err error
		if iss, err = auth.LoadIssuer(*issuer); err != nil {
			fail("%v", err)
		}
	}
	if err := raiseNoFile(); err != nil {
		fail("raising RLIMIT_NOFILE: %v", err)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()
	go func() { // stdin: commands, EOF stops the host
		s := bufio.NewScanner(os.Stdin)
		var prof *os.File
		for s.Scan() {
			cmd, arg, _ := strings.Cut(strings.TrimSpace(s.Text()), " ")
			switch cmd {
			case "cpuprofile":
				f, err := os.Create(arg)
				if err == nil {
					err = pprof.StartCPUProfile(f)
				}
				if err != nil {
					fmt.Fprintln(os.Stderr, "benchhost: cpuprofile:", err)
					continue
				}
				prof = f
			case "stopprofile":
				if prof != nil {
					pprof.StopCPUProfile()
					prof.Close()
					prof = nil
				}
				fmt.Println("profiled")
			}
		}
		cancel()
	}()

	if *mode == "relay" {
		if err := runRelay(ctx, *url, *listen); err != nil {
			fail("%v", err)
		}
		fmt.Println("stopped")
		return
	}

	ids := make([]string, 0, *to-*from)
	for i := *from; i < *to; i++ {
		ids = append(ids, ClientID(*prefix, i))
	}
	var (
		wg   sync.WaitGroup
		sem  = make(chan struct{}, *parallel)
		mu   sync.Mutex
		errs []error
		conn []*nats.Conn
		took []time.Duration // idle mode: each client's connection and subscriptions
	)
	failed := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
		cancel()
	}
	var ready sync.WaitGroup
	for _, id := range ids {
		sem <- struct{}{}
		if ctx.Err() != nil {
			break
		}
		ready.Add(1)
		wg.Go(func() {
			var once sync.Once
			isReady := func() { once.Do(func() { ready.Done(); <-sem }) }
			defer isReady()
			var nc *nats.Conn
			var err error
			began := time.Now()
			if *mode != "bare" {
				opts := agent.ConnectOptions("bench agent " + id)
				if *mode == "idle" { // a connection that loads an account waits for the broker's lock
					opts = append(opts, nats.Timeout(time.Minute))
				}
				if *noEcho {
					opts = append(opts, nats.NoEcho())
				}
				if iss != nil {
					o, cerr := iss.Option(auth.User{Role: auth.RoleAgent, Name: id})
					if cerr != nil {
						failed(fmt.Errorf("%s: %w", id, cerr))
						return
					}
					opts = append(opts, o)
				}
				nc, err = nats.Connect(*url, opts...)
			} else {
				nc, err = nats.Connect(*url, nats.Name("bench bare "+id), nats.MaxReconnects(-1), nats.Timeout(time.Minute))
			}
			if err != nil {
				failed(fmt.Errorf("%s: connect: %w", id, err))
				return
			}
			mu.Lock()
			conn = append(conn, nc)
			mu.Unlock()
			switch *mode {
			case "pcm":
				err = runAgent(ctx, nc, id, filepath.Join(*state, id), *noSync, isReady)
			case "idle":
				err = runIdle(ctx, nc, id, func() {
					mu.Lock()
					took = append(took, time.Since(began))
					mu.Unlock()
					isReady()
				})
			default:
				err = runBare(ctx, nc, id, isReady)
			}
			if err != nil && ctx.Err() == nil {
				failed(fmt.Errorf("%s: %w", id, err))
			}
		})
	}
	ready.Wait()
	if ctx.Err() == nil {
		if *mode == "idle" && len(took) > 0 {
			tail := took[len(took)-max(len(took)/10, 1):]
			var sum time.Duration
			for _, d := range tail {
				sum += d
			}
			fmt.Printf("ready %d tail-us=%d max-us=%d\n", len(ids), (sum / time.Duration(len(tail))).Microseconds(), slices.Max(took).Microseconds())
		} else {
			fmt.Printf("ready %d\n", len(ids))
		}
	}
	<-ctx.Done()
	wg.Wait()
	for _, nc := range conn {
		nc.Close()
	}
	if len(errs) > 0 {
		fail("%d clients failed, first: %v", len(errs), errs[0])
	}
	fmt.Println("stopped")
}

// ClientID is the id of client number i.
func ClientID(prefix string, i int) string { return fmt.Sprintf("%s-%06d", prefix, i) }

// runIdle subscribes as an agent does (its statuses, its lock key),
// flushes, says it is ready and waits until ctx ends.
func runIdle(ctx context.Context, nc *nats.Conn, id string, ready func()) error {
	for _, s := range []string{"pcm.status." + id + ".*", "$KV.PCM_LOCKS." + id} {
		if _, err := nc.Subscribe(s, func(*nats.Msg) {}); err != nil {
			return err
		}
	}
	if err := nc.FlushTimeout(time.Minute); err != nil {
		return fmt.Errorf("%w (the last error of the connection: %v)", err, nc.LastError())
	}
	ready()
	<-ctx.Done()
	return nil
}

// runAgent runs a real service face with the no-op runner until ctx ends.
func runAgent(ctx context.Context, nc *nats.Conn, id, dir string, noSync bool, ready func()) error {
	svc, err := agent.New(nc, agent.Config{ClientID: id, StateDir: dir, Runner: runner.NewNoop(), NoSync: noSync, Version: "bench"})
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	select {
	case <-svc.Ready():
		ready()
	case err := <-done:
		return fmt.Errorf("agent stopped before it was ready: %w", err)
	}
	return <-done
}

// runBare is the baseline: one durable consumer, fetched one message at a
// time like the agent does; for each offer it publishes a status of a
// realistic size with a Nats-Msg-Id, waits for the PubAck, then
// double-acks the offer.
func runBare(ctx context.Context, nc *nats.Conn, id string, ready func()) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	cons, err := js.Consumer(cctx, events.StreamJobs, events.ConsumerName(id))
	cancel()
	if err != nil {
		return err
	}
	body, err := statusBody(id)
	if err != nil {
		return err
	}
	ready()
	for ctx.Err() == nil {
		fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		batch, err := cons.Fetch(1, jetstream.FetchContext(fctx))
		if err == nil {
			for msg := range batch.Messages() {
				if err := bareHandle(ctx, js, msg, id, body); err != nil && ctx.Err() == nil {
					fmt.Fprintf(os.Stderr, "%s benchhost: %s: %v\n", time.Now().Format("15:04:05.000"), id, err)
				}
			}
		}
		if err == nil {
			err = batch.Error()
		}
		cancel()
		if err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, jetstream.ErrNoMessages) && ctx.Err() == nil {
			fmt.Fprintf(os.Stderr, "%s benchhost: %s: fetch: %v\n", time.Now().Format("15:04:05.000"), id, err)
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

func bareHandle(ctx context.Context, js jetstream.JetStream, msg jetstream.Msg, id string, body []byte) error {
	meta, err := msg.Metadata()
	if err != nil {
		return err
	}
	job := "r" + strconv.FormatUint(meta.Sequence.Stream, 10)
	st := nats.NewMsg(events.StatusSubject(id, job))
	st.Data = body
	st.Header.Set(events.HeaderContentType, events.ContentTypeCloudEvents)
	st.Header.Set(events.HeaderMsgID, job+"."+id+".succeeded.1")
	// Like the agent, retry a status publish that got no PubAck in time
	// (the same Nats-Msg-Id stores it once) rather than leave the offer to
	// its redelivery; the same for the ack.
	for {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := js.PublishMsg(pctx, st)
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "%s benchhost: %s: status not acknowledged, retrying: %v\n", time.Now().Format("15:04:05.000"), id, err)
	}
	for {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := msg.DoubleAck(actx)
		cancel()
		if err == nil || ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgAlreadyAckd) {
			return err
		}
		fmt.Fprintf(os.Stderr, "%s benchhost: %s: ack not confirmed, retrying: %v\n", time.Now().Format("15:04:05.000"), id, err)
	}
}

// statusBody is a real encoded final status, the size an agent sends.
func statusBody(id string) ([]byte, error) {
	now := time.Now().UTC()
	code := 0
	ev, err := events.NewJobStatus(events.JobStatus{
		JobID: "01BENCHBENCHBENCHBENCHBENC", ClientID: id, Host: id, State: events.StateSucceeded,
		Attempt: 1, MaxAttempts: 1, Runner: events.RunnerService, User: "root", ExitCode: &code,
		StartedAt: &now, FinishedAt: &now, AgentVersion: "bench", Platform: "linux/amd64", LockRevision: 1,
	})
	if err != nil {
		return nil, err
	}
	msg, err := events.NewMsg("pcm.status.x.y", ev, "")
	if err != nil {
		return nil, err
	}
	return msg.Data, nil
}

// raiseNoFile raises the soft open-file limit to the hard one.
func raiseNoFile() error {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return err
	}
	l.Cur = l.Max
	return syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "benchhost: "+format+"\n", args...)
	os.Exit(1)
}
