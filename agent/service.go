package agent

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/pcm-project/pcm/agent/journal"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/internal/backoff"
	"github.com/pcm-project/pcm/internal/kvkey"
)

// Service is the unattended face of an agent (pcm agent).
type Service struct {
	face
	cfg Config

	journal *journal.Journal
	// openJournal is the journal while Run has it open, for Outbox.
	openJournal atomic.Pointer[journal.Journal]
	// heldSince is when the service took the lock it holds (Unix nanos;
	// 0 when it holds none), for Config.Observer.
	heldSince atomic.Int64
	agents    *kvkey.Key // its inventory
	ackWait   time.Duration

	flushMu sync.Mutex
	acksMu  sync.Mutex
	acks    map[string]int // deliveries to ack at the next flush, by ack subject, with their failed tries
	kick    chan struct{}  // wakes the reporter
	beat    chan struct{}  // wakes the heartbeat
	// restartKick wakes the restart loop
	restartKick chan struct{}
	ready       chan struct{}
	current     atomic.Value // string: the job running now
	started     time.Time
	// sessionHeard is when a desktop session was last heard (Unix ns).
	sessionHeard atomic.Int64
	sessionDeaf  atomic.Bool // it cannot hear them: it assumes one is open

	settling sync.WaitGroup // desktop runs being settled (settleDesktopRun)

	curMu    sync.Mutex  // guards curTimer and curShown
	curTimer *time.Timer // shows the running job in the inventory after currentGrace
	curShown bool        // the inventory was asked to show the running job

	pkgMu   sync.Mutex
	pkgWait map[string]time.Time // jobs whose package store was unreachable, since when

	pending      atomic.Pointer[Update]            // a verified release waiting for the agent to be idle
	refused      atomic.Pointer[events.UpdateInfo] // the last release refused in this run
	updateKick   chan struct{}                     // wakes the consume loop for a pending update
	ready4update *Update                           // the update Run stopped for
	waiting      waiters                           // held offers waiting for a job they require
	started1     atomic.Pointer[startedAck]        // the PubAck of the last started status
}

// New returns a Service that talks to the broker over nc (see
// ConnectOptions for how to dial it).
func New(nc *nats.Conn, cfg Config) (*Service, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("%w: jetstream: %w", ErrInvalidConfig, err)
	}
	s := &Service{
		face: newFace(nc, js, cfg, events.RunnerService, cfg.Logger.Named("service")),
		cfg:  cfg,
		acks: map[string]int{}, kick: make(chan struct{}, 1), updateKick: make(chan struct{}, 1), beat: make(chan struct{}, 1), ready: make(chan struct{}),
		restartKick: make(chan struct{}, 1),
	}
	s.current.Store("")
	return s, nil
}

// Ready is closed once the service is bound to its consumer and handling
// offers.
func (s *Service) Ready() <-chan struct{} { return s.ready }

// JournalPath is where the service keeps its journal.
func JournalPath(stateDir string) string { return filepath.Join(stateDir, "journal.db") }

// Run opens the journal, resumes what a previous run left (an attempt
// interrupted, a restart the machine came back from), waits for the
// broker, and handles offers until ctx is cancelled, or until it restarts
// the machine for a job that asked for it (Config.Restart). It returns nil
// then, and an error when it cannot work at all (journal unusable, client
// not enrolled).
func (s *Service) Run(ctx context.Context) error {
	s.started = time.Now()
	j, err := journal.Open(JournalPath(s.cfg.StateDir), journal.Options{NoSync: s.cfg.NoSync})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrJournal, err)
	}
	s.journal = j
	s.openJournal.Store(j)
	defer j.Close()
	defer s.openJournal.Store(nil)
	if err := s.resume(); err != nil {
		return err
	}
	if err := s.returnFromRestart(); err != nil {
		return err
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	cons, err := s.bind(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	// runCtx ends the loops below when consume returns for an update.
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	var wg sync.WaitGroup
	wg.Go(func() { s.reportLoop(runCtx) })
	wg.Go(func() { s.heartbeatLoop(runCtx) })
	wg.Go(func() {
		if errors.Is(s.restartLoop(runCtx), errRestarting) {
			s.log.Warn("the machine restarts: the agent stops")
			stop()
		}
	})
	if s.cfg.Channel != "" {
		wg.Go(func() { s.watchReleases(runCtx) })
	}
	sub, err := s.watchDesktopStatuses()
	if err != nil {
		s.log.Warn("cannot watch the desktop's statuses; jobs it runs are acked when they come back", zap.Error(err))
	}
	sessions, err := s.hearSessions()
	if err != nil {
		s.log.Warn("cannot hear the desktop sessions; deferrals and countdowns hold as if one were open", zap.Error(err))
		s.sessionDeaf.Store(true)
	}
	s.warnUnsigned()
	s.log.Info("agent ready", zap.String("platform", s.cfg.Platform()), zap.Strings("groups", s.cfg.Groups),
		zap.String("consumer", events.ConsumerName(s.cfg.ClientID)), zap.Duration("ack_wait", s.ackWait))
	close(s.ready)
	s.consume(ctx, cons)
	if sub != nil {
		_ = sub.Unsubscribe()
	}
	if sessions != nil {
		_ = sessions.Unsubscribe()
	}
	stopRun()
	wg.Wait()
	s.settling.Wait() // before the journal closes
	if u := s.ready4update; u != nil && ctx.Err() == nil {
		fctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
		_ = s.flush(fctx) // what is left waits in the journal for the next version
		cancel()
		return fmt.Errorf("%w: %s -> %s", ErrUpdateReady, u.From, u.Release.Version)
	}
	s.markStopped()
	return nil
}

// bind waits for the broker and looks up the client's consumer and the
// buckets. It retries what the broker's absence explains, never an error
// of the configuration (the client not enrolled, an unusable lock
// configuration).
func (s *Service) bind(ctx context.Context) (jetstream.Consumer, error) {
	var cons jetstream.Consumer
	err := backoff.Retry(ctx, backoff.Policy{
		Backoff: retryDelays,
		Retryable: func(err error) bool {
			return !errors.Is(err, ErrNotEnrolled) && !errors.Is(err, ErrInvalidConfig) && !errors.Is(err, ErrAlreadyRunning)
		},
		OnRetry: func(err error, d time.Duration) {
			if !s.nc.IsConnected() {
				err = fmt.Errorf("no broker answers at %s (is it running? check --url)", strings.Join(s.nc.Servers(), ", "))
			}
			s.log.Warn("waiting for the broker", zap.Error(err), zap.Duration("retry_in", d.Round(time.Millisecond)))
		},
	}, func(ctx context.Context) (err error) {
		cons, err = s.bindOnce(ctx)
		return err
	})
	return cons, err
}

func (s *Service) bindOnce(ctx context.Context) (jetstream.Consumer, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	name := events.ConsumerName(s.cfg.ClientID)
	cons, err := s.js.Consumer(ctx, events.StreamJobs, name)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("%w: %s has no consumer %s on %s: run pcm enroll %s --group ... (or start the agent with --enroll)",
			ErrNotEnrolled, s.cfg.ClientID, name, events.StreamJobs, s.cfg.ClientID)
	}
	if err != nil {
		return nil, err
	}
	s.agents = kvkey.New(s.js, events.BucketAgents, s.cfg.ClientID)
	if err := s.checkAlone(ctx); err != nil {
		return nil, err
	}
	if err := s.bindLock(); err != nil {
		return nil, err
	}
	s.ackWait = cons.CachedInfo().Config.AckWait
	s.groups = events.GroupsOfConsumer(cons.CachedInfo().Config.Metadata)
	return cons, nil
}

// A pull request waits fetchWait for an offer, and while it waits the broker
// confirms every fetchHeartbeat that it still holds it. Both are long so
// that an idle agent costs next to nothing beyond its inventory heartbeat:
// per fetchWait one pull request, its timeout and two idle heartbeats (with
// nats.go's defaults for a 30 s fetch it was a pull, a timeout and five
// heartbeats every 30 s). A pull request the broker lost is renewed at once
// when the connection comes back, and otherwise noticed within two missed
// heartbeats. In a cluster (the connected server names one) the broker
// may lose a pull request without a reconnection: one sent while its
// consumer had no leader, or held by a member that stopped, goes
// unanswered, and the agent hears of it only when heartbeats stop. There
// it is confirmed every clusterFetchHeartbeat, so that a job waits at most
// about 20 s after a failover instead of two minutes (TestClusterFailover
// saw 110 s); at 20,000 idle agents that is some 2,000 small messages a
// second over the cluster.
const (
	fetchWait             = 2 * time.Minute
	fetchHeartbeat        = 55 * time.Second
	clusterFetchHeartbeat = 10 * time.Second
)

// fetchHeartbeatOf is the pull request heartbeat for a connection to a
// server of cluster (the name in its INFO, "" for a single server).
func fetchHeartbeatOf(cluster string) time.Duration {
	if cluster != "" {
		return clusterFetchHeartbeat
	}
	return fetchHeartbeat
}

// consume fetches one offer at a time and handles it, until ctx ends.
func (s *Service) consume(ctx context.Context, cons jetstream.Consumer) {
	reconnected := s.nc.StatusChanged(nats.CONNECTED)
	defer s.nc.RemoveStatusListener(reconnected)
	b := retryDelays
	for ctx.Err() == nil {
		if s.takeUpdate(ctx) {
			return // no job runs: Run returns ErrUpdateReady
		}
		fctx, cancel := context.WithTimeout(ctx, fetchWait)
		go func() { // a reconnection renews the pull request; a staged update ends it
			select {
			case <-reconnected:
				cancel()
			case <-s.updateKick:
				cancel()
			case <-fctx.Done():
			}
		}()
		batch, err := cons.Fetch(1, jetstream.FetchContext(fctx), jetstream.FetchHeartbeat(fetchHeartbeatOf(s.nc.ConnectedClusterName())))
		if err == nil {
			for msg := range batch.Messages() {
				s.handle(ctx, msg)
			}
			err = batch.Error()
		}
		renewed := fctx.Err() == context.Canceled
		cancel()
		switch {
		case err == nil, errors.Is(err, context.DeadlineExceeded), errors.Is(err, jetstream.ErrNoMessages), ctx.Err() != nil,
			renewed && errors.Is(err, context.Canceled):
			b.Reset()
		default:
			d := b.Next()
			s.counts.fetchRetries.Add(1)
			s.log.Debug("fetch failed, retrying", zap.Error(err), zap.Duration("retry_in", d))
			sleep(ctx, d)
		}
	}
}

// sleep waits d or until ctx ends; it reports whether d elapsed.
func sleep(ctx context.Context, d time.Duration) bool { return backoff.Sleep(ctx, d) == nil }

// currentGrace is how long a job runs before the inventory is rewritten to
// show it: a job that ends sooner (most do) costs no inventory write at
// all, where it used to cost two (its start and its end).
const currentGrace = time.Second

// setCurrent records the job running now ("" when none). The inventory
// shows it once it has run for currentGrace (or at the next heartbeat), and
// is rewritten when it ends only if it showed it.
func (s *Service) setCurrent(job string) {
	s.curMu.Lock()
	defer s.curMu.Unlock()
	s.current.Store(job)
	if s.curTimer != nil {
		s.curTimer.Stop()
		s.curTimer = nil
	}
	if job == "" {
		if s.curShown {
			s.curShown = false
			s.kickHeartbeat()
		}
		return
	}
	s.curTimer = time.AfterFunc(currentGrace, func() {
		s.curMu.Lock()
		defer s.curMu.Unlock()
		if s.current.Load() == job && !s.curShown {
			s.curShown = true
			s.kickHeartbeat()
		}
	})
}

// kickHeartbeat asks the heartbeat loop to write the inventory now.
func (s *Service) kickHeartbeat() {
	select {
	case s.beat <- struct{}{}:
	default:
	}
}

func (s *Service) fault(p FaultPoint) {
	if s.cfg.Fault != nil {
		s.cfg.Fault(p)
	}
}
