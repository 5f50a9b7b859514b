package agent

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/pcm-project/pcm/agent/lock"
	"github.com/pcm-project/pcm/agent/pkgcache"
	"github.com/pcm-project/pcm/agent/runner"
	"github.com/pcm-project/pcm/events"
)

// publishTimeout bounds one status publish waiting for its PubAck.
const publishTimeout = 5 * time.Second

// pid is this process's id.
var pid = os.Getpid()

// face is what the two faces of an agent share: who reports, the broker
// handles, the lock, and how a job becomes a process and a status.
type face struct {
	cfg    Config
	kind   events.Runner
	user   string
	log    *zap.Logger
	nc     *nats.Conn
	js     jetstream.JetStream
	locker *lock.Locker
	pkgs   *packages
	counts *counters
	// groups are the client's groups as its enrollment says (its
	// consumer's metadata), read when the face binds: its ring of a
	// staged rollout may depend on them.
	groups []string
	// own tells the statuses this face stored to those listening in the
	// same process (its connection has no echo: it never hears them).
	own *listeners
}

// packages is a face's package cache, opened on first use.
type packages struct {
	mu    sync.Mutex
	cache *pkgcache.Cache
}

func newFace(nc *nats.Conn, js jetstream.JetStream, cfg Config, kind events.Runner, log *zap.Logger) face {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	return face{cfg: cfg, kind: kind, user: name, nc: nc, js: js, log: log.With(zap.String("client", cfg.ClientID)), pkgs: &packages{}, counts: &counters{}, own: &listeners{}}
}

// PackageCacheDir is where an agent keeps its package cache.
func PackageCacheDir(stateDir string) string { return filepath.Join(stateDir, "packages") }

// packageCache opens the package cache on first use.
func (f *face) packageCache() (*pkgcache.Cache, error) {
	f.pkgs.mu.Lock()
	defer f.pkgs.mu.Unlock()
	if f.pkgs.cache == nil {
		c, err := pkgcache.Open(pkgcache.Config{
			Dir: PackageCacheDir(f.cfg.StateDir), MaxBytes: f.cfg.CacheSize, Logger: f.log.Named("packages"),
		})
		if err != nil {
			return nil, err
		}
		f.pkgs.cache = c
	}
	return f.pkgs.cache, nil
}

// PackageCacheStats reports the face's package cache: fetches served from
// it, downloads, resumptions, evictions, and what it holds. It is zero
// until the first job with a package.
func (f *face) PackageCacheStats() pkgcache.Stats {
	f.pkgs.mu.Lock()
	c := f.pkgs.cache
	f.pkgs.mu.Unlock()
	if c == nil {
		return pkgcache.Stats{}
	}
	return c.Stats()
}

// fetchPackage pins ref and fetches its content into the cache, verified
// against the pinned sha256. It takes no lock: call it before taking the
// client's lock, never while holding it. release unpins the content; call
// it once the job no longer needs it (after its last attempt).
func (f *face) fetchPackage(ctx context.Context, ref events.PackageRef) (e pkgcache.Entry, release func(), err error) {
	c, err := f.packageCache()
	if err != nil {
		return e, nil, fmt.Errorf("%w: opening the package cache: %w", pkgcache.ErrDownload, err)
	}
	c.Pin(ref.SHA256)
	e, err = c.Fetch(ctx, f.js, ref)
	if err != nil {
		c.Unpin(ref.SHA256)
		return e, nil, err
	}
	var once sync.Once
	return e, func() { once.Do(func() { c.Unpin(ref.SHA256) }) }, nil
}

// preparePackage makes job's directory hold its package, for a face that
// runs one attempt: it fetches and verifies the package and unpacks it
// into the job's directory. Call it before taking the lock (a download is
// never done under the lock). release unpins the package once the attempt
// is over; for a job without a package it does nothing. A permanent
// failure (pkgcache.Permanent) means the job must fail without running.
func (f *face) preparePackage(ctx context.Context, job events.JobOffered) (release func(), err error) {
	if job.Package == nil {
		return func() {}, nil
	}
	e, release, err := f.fetchPackage(ctx, *job.Package)
	if err != nil {
		return nil, err
	}
	if err := f.unpackPackage(ctx, e, f.runSpec(job, 1).Dir); err != nil {
		release()
		return nil, err
	}
	return release, nil
}

// unpackPackage empties dir and unpacks e into it, so that every attempt
// starts from the package as published. On error dir is removed.
func (f *face) unpackPackage(ctx context.Context, e pkgcache.Entry, dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("%w: emptying %s: %w", pkgcache.ErrUnpack, dir, err)
	}
	if err := pkgcache.Unpack(ctx, e, dir); err != nil {
		_ = os.RemoveAll(dir)
		return err
	}
	return nil
}

// bindLock makes the face's locker (the client's key of PCM_LOCKS,
// reached without binding the bucket).
func (f *face) bindLock() error {
	var err error
	if f.locker, err = lock.New(f.js, f.cfg.lockConfig()); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}

// now is the time of the time rules (Config.Clock).
func (f *face) now() time.Time { return f.cfg.Clock.Now() }

// lockInfo is the lock value this face writes while it runs jobID.
func (f *face) lockInfo(jobID string) events.LockInfo {
	return events.LockInfo{Holder: events.Runner(f.kind), PID: pid, User: f.user, Host: f.cfg.Host, JobID: jobID, Since: time.Now().UTC()}
}

// newStatus starts a status reported by this face.
func (f *face) newStatus(jobID string, state events.State, attempt, maxAttempts int) events.JobStatus {
	return events.JobStatus{
		JobID: jobID, ClientID: f.cfg.ClientID, Host: f.cfg.Host, State: state,
		Attempt: max(attempt, 1), MaxAttempts: maxAttempts, Runner: f.kind, User: f.user,
		AgentVersion: f.cfg.Version, Platform: f.cfg.Platform(),
	}
}

// publishStatus publishes a status now and waits for its PubAck.
func (f *face) publishStatus(ctx context.Context, st events.JobStatus) error {
	msg, err := statusMsg(st)
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	_, err = f.js.PublishMsg(pctx, msg)
	return err
}

// publishFinal publishes a final status unless its attempt already has
// one on the broker (errSuperseded; see storeFinal).
func (f *face) publishFinal(ctx context.Context, st events.JobStatus) error {
	msg, err := statusMsg(st)
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	_, _, err = storeFinal(pctx, f.js, msg, st)
	return err
}

// runSpec is how attempt of job runs: in its own directory under the state
// dir (where its package, if any, is unpacked), its output appended to the
// job's log.
func (f *face) runSpec(job events.JobOffered, attempt int) runner.Spec {
	dir := filepath.Join(f.cfg.StateDir, "jobs", job.JobID)
	return runner.Spec{
		JobID: job.JobID, ClientID: f.cfg.ClientID, Attempt: attempt,
		Argv: job.Command.Argv, Shell: job.Command.Shell,
		Dir: filepath.Join(dir, "work"), LogPath: filepath.Join(dir, "output.log"),
		Timeout: time.Duration(job.Command.Timeout),
	}
}

// finalStatus is the status that ends an attempt that ran. One whose exit
// code asks for a restart says when the machine restarts at the earliest.
func (f *face) finalStatus(job events.JobOffered, attempt int, res runner.Result, runErr error, revision uint64) events.JobStatus {
	state, reason := outcome(job, res, runErr, f.cfg.OS)
	st := f.newStatus(job.JobID, state, attempt, job.Attempts())
	st.Reason = reason
	if runErr == nil && !res.TimedOut && job.Command.RestartRequired(res.ExitCode, f.cfg.OS) {
		at := f.restartAt()
		st.RestartRequired, st.RestartAt = true, &at
	}
	st.PID = res.PID
	st.OutputTail, st.OutputEncoding = res.OutputTail, res.OutputEncoding
	st.LockRevision = revision
	if runErr == nil {
		code := res.ExitCode
		st.ExitCode = &code
	}
	if !res.StartedAt.IsZero() {
		a, b := res.StartedAt.UTC(), res.FinishedAt.UTC()
		st.StartedAt, st.FinishedAt = &a, &b
	}
	return st
}

// outcome maps a run's result on a client running goos to a final state
// and a reason. An exit code that asks for a restart is a success.
func outcome(job events.JobOffered, res runner.Result, err error, goos string) (events.State, string) {
	switch {
	case err != nil:
		return events.StateFailed, "could not run the command: " + err.Error()
	case res.TimedOut:
		return events.StateTimedOut, fmt.Sprintf("killed after its timeout of %s", job.Command.Timeout)
	case job.Command.RestartRequired(res.ExitCode, goos):
		return events.StateSucceeded, fmt.Sprintf("exit code %d: the machine must restart to finish", res.ExitCode)
	case job.Command.Succeeded(res.ExitCode):
		return events.StateSucceeded, ""
	case res.ExitCode < 0:
		return events.StateFailed, "killed by a signal"
	default:
		return events.StateFailed, fmt.Sprintf("exit code %d is not a success code", res.ExitCode)
	}
}
