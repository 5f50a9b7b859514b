package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/pcm-project/pcm/agent/lock"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/internal/atomicfile"
	"github.com/pcm-project/pcm/internal/kvkey"
)

// UpdateJobID is the job id the service writes in its lock while it
// replaces its binary: the desktop shows it as the lock's holder.
const UpdateJobID = "pcm-agent-update"

// Update is a verified release ready to be installed: Run returned
// ErrUpdateReady, no job runs, and the service still holds the client's
// lock so that the desktop starts none while the binary is swapped.
type Update struct {
	// Release is the verified manifest.
	Release events.Release
	// From is the version running now.
	From string
	// Binary is the downloaded binary of this platform, sha256-verified,
	// in the package cache: copy it, never move it.
	Binary string
	lease  *lock.Lease
}

// ReleaseLock gives the client's lock back; call it just before the new
// binary starts.
func (u *Update) ReleaseLock() {
	if u.lease == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = u.lease.Release(ctx)
	u.lease = nil
}

// UpdateRecord is what the state directory remembers of the last
// self-update (UpdateRecordPath): written by whoever swaps the binary,
// completed by whoever judges the new version's health, shown in the
// inventory (events.AgentInfo.Update) by every version that reads it.
type UpdateRecord struct {
	// From and To are the versions.
	From string `json:"from"`
	To   string `json:"to"`
	// State is "trial" while the new version has to prove healthy, then
	// events.UpdateApplied or events.UpdateFailed.
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`
	// Executable is the path swapped; Previous the previous binary kept.
	Executable string `json:"executable"`
	Previous   string `json:"previous"`
	// PID is the new version's process, where it is known in advance (it
	// re-executes itself in place, on Unix): the watchdog sees it exit.
	// Zero on Windows.
	PID int `json:"pid,omitempty"`
	// Service is set when a Windows service swapped itself: its recovery
	// actions start the binary again.
	Service bool      `json:"service,omitempty"`
	At      time.Time `json:"at"`
	// Deadline is when the new version must have reported healthy.
	Deadline time.Time `json:"deadline"`
}

// UpdateTrial is the State of an UpdateRecord while the new version has
// not proved healthy yet.
const UpdateTrial = "trial"

// UpdateRecordPath is where the state directory keeps the UpdateRecord.
func UpdateRecordPath(stateDir string) string { return filepath.Join(stateDir, "update.json") }

// ReadUpdateRecord reads the record of stateDir; ok is false when there is
// none (or it cannot be read).
func ReadUpdateRecord(stateDir string) (rec UpdateRecord, ok bool) {
	b, err := os.ReadFile(UpdateRecordPath(stateDir))
	if err != nil || json.Unmarshal(b, &rec) != nil {
		return UpdateRecord{}, false
	}
	return rec, true
}

// WriteUpdateRecord replaces the record of stateDir atomically.
func WriteUpdateRecord(stateDir string, rec UpdateRecord) error {
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(UpdateRecordPath(stateDir), b, 0o600)
}

// updateInfo is the inventory's view of the last update: a refusal heard
// in this run, else the record of the state directory.
func (s *Service) updateInfo() *events.UpdateInfo {
	if v := s.refused.Load(); v != nil {
		return v
	}
	rec, ok := ReadUpdateRecord(s.cfg.StateDir)
	if !ok {
		return nil
	}
	return &events.UpdateInfo{Version: rec.To, From: rec.From, State: rec.State, Reason: rec.Reason, At: rec.At}
}

// watchReleases follows the channel's key of PCM_RELEASES until ctx
// ends, and stages each release this agent should install. It reads the
// key at start, then each time it hears the key written (a subscription to
// events.ReleaseHintSubject: no polling, and no consumer, which a client's
// account may not create), and again after a reconnection.
func (s *Service) watchReleases(ctx context.Context) {
	log := s.log.With(zap.String("channel", s.cfg.Channel))
	key := kvkey.New(s.js, events.BucketReleases, events.ReleaseChannelKey(s.cfg.Channel))
	heard := make(chan struct{}, 1)
	hint := func() {
		select {
		case heard <- struct{}{}:
		default:
		}
	}
	sub, err := s.nc.Subscribe(events.ReleaseHintSubject(s.cfg.Channel), func(*nats.Msg) { hint() })
	if err != nil {
		log.Warn("cannot hear the release channel; it is read at start and after each reconnection only", zap.Error(err))
	} else {
		defer func() { _ = sub.Unsubscribe() }()
	}
	reconnected := s.nc.StatusChanged(nats.CONNECTED)
	defer s.nc.RemoveStatusListener(reconnected)
	var last uint64 // the revision considered last
	b := retryDelays
	// A write is heard once stored (the bucket republishes it), but a
	// read may reach a replica that has not applied it yet: a read that
	// finds nothing new after a hint is tried again a few times.
	const rechecks = 5
	recheck := 0
	wait := false // the first read is at once
	for {
		if wait {
			select {
			case <-ctx.Done():
				return
			case <-heard:
				recheck = rechecks
			case <-reconnected:
			}
		}
		wait = true
		rctx, cancel := context.WithTimeout(ctx, publishTimeout)
		e, err := key.Get(rctx)
		cancel()
		var delay time.Duration
		switch {
		case errors.Is(err, kvkey.ErrNotFound), err == nil && e.Revision == last:
			b.Reset()
			if recheck > 0 {
				recheck--
				delay = 200 * time.Millisecond
			}
		case err != nil:
			if ctx.Err() != nil {
				return
			}
			delay = b.Next()
			log.Warn("cannot read the release channel; retrying", zap.Error(err), zap.Duration("retry_in", delay))
		default:
			b.Reset()
			recheck = 0
			last = e.Revision
			s.considerRelease(ctx, log, e.Value)
		}
		if delay > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			case <-heard:
				recheck = rechecks
			}
			wait = false
		}
	}
}

// considerRelease checks a manifest heard on the channel and, when this
// agent should run it, downloads and verifies its binary and stages it for
// the consume loop, which installs it once no job runs.
func (s *Service) considerRelease(ctx context.Context, log *zap.Logger, value []byte) {
	r, err := s.checkRelease(value)
	if errors.Is(err, errNothingToDo) {
		return
	}
	if err == nil {
		ref := r.Platforms[s.cfg.Platform()]
		// The binary stays pinned in the cache (no job's package evicts it)
		// until the swap copies it: this process ends there.
		entry, _, ferr := s.fetchPackage(ctx, ref)
		if ferr != nil {
			err = fmt.Errorf("downloading %s: %w", events.PackageObjectName(ref.Name, ref.Version), ferr)
		} else {
			log.Info("release downloaded and verified; installing it once no job runs", zap.String("version", r.Version),
				zap.String("sha256", ref.SHA256))
			s.pending.Store(&Update{Release: r, From: s.cfg.Version, Binary: entry.Path})
			s.refused.Store(nil)
			select {
			case s.updateKick <- struct{}{}:
			default:
			}
			return
		}
	}
	if ctx.Err() != nil {
		return
	}
	log.Warn("release refused", zap.Error(err))
	s.counts.releasesRefused.Add(1)
	version := r.Version
	if version == "" {
		version = "?"
	}
	s.refused.Store(&events.UpdateInfo{Version: version, From: s.cfg.Version, State: events.UpdateRefused, Reason: err.Error(), At: time.Now().UTC()})
	s.kickHeartbeat()
}

// errNothingToDo: the release is the running version, or one whose update
// failed here before.
var errNothingToDo = errors.New("nothing to do")

// checkRelease verifies a manifest: signed by a trusted release key, for
// this channel, with a binary for this platform, newer than the running
// version (older only when marked rollback), and not a version that failed
// here before.
func (s *Service) checkRelease(value []byte) (events.Release, error) {
	ev, r, err := events.ParseRelease(value)
	if err != nil {
		return r, err
	}
	if _, err := events.Verify(ev, s.cfg.ReleaseKeys); err != nil {
		return r, fmt.Errorf("release %s: %w (trust its key with --release-keys)", r.Version, err)
	}
	if r.Channel != s.cfg.Channel {
		return r, fmt.Errorf("release %s is signed for channel %s, heard on %s", r.Version, r.Channel, s.cfg.Channel)
	}
	if !r.InRelease(s.cfg.ClientID) {
		return r, errNothingToDo // offered to another part of the fleet for now
	}
	if _, ok := r.Platforms[s.cfg.Platform()]; !ok {
		return r, fmt.Errorf("release %s has no binary for %s", r.Version, s.cfg.Platform())
	}
	switch c := events.CompareReleaseVersions(r.Version, s.cfg.Version); {
	case c == 0:
		return r, errNothingToDo
	case c < 0 && !r.Rollback:
		return r, fmt.Errorf("release %s is older than the running %s and not marked rollback: no downgrade", r.Version, s.cfg.Version)
	}
	if rec, ok := ReadUpdateRecord(s.cfg.StateDir); ok && rec.To == r.Version && rec.State == events.UpdateFailed {
		return r, errNothingToDo // it failed here; a newer release (or a promotion) is needed
	}
	return r, nil
}

// takeUpdate, called by the consume loop between offers, takes the
// client's lock for a staged update. It reports whether Run must return
// ErrUpdateReady.
func (s *Service) takeUpdate(ctx context.Context) bool {
	u := s.pending.Load()
	if u == nil {
		return false
	}
	lease, err := s.locker.Acquire(ctx, s.lockInfo(UpdateJobID), func(h events.LockInfo) {
		s.log.Info("update waits: the desktop runs a job", zap.String("holder_job", h.JobID))
	})
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("update waits: cannot take the lock", zap.Error(err))
			sleep(ctx, retryLater)
		}
		return false
	}
	u.lease = lease
	s.ready4update = u
	return true
}

// PendingUpdate is the update Run stopped for (after ErrUpdateReady).
func (s *Service) PendingUpdate() *Update { return s.ready4update }
