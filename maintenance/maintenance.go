// Package maintenance keeps the fleet's maintenance windows in the
// PCM_WINDOWS bucket: an operator sets, lists and removes the windows of a
// client, of a group, or of every client (pcm window set|list|rm), and
// reads the windows that apply to one client (its own, its groups' and
// every client's). Jobs that require a window (in_window) start only
// inside one, and the restarts they ask for wait for one.
//
// Writing needs an admin's credentials (the bucket is in the pcm account,
// which no other principal writes); publishers and auditors read it. An
// agent reads only its own client's windows, through the client view
// (internal/clientview), never through this package. It never logs.
package maintenance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/internal/backoff"
	"github.com/pcm-project/pcm/internal/kvread"
)

// Sentinel errors.
var (
	// ErrNotFound: the target has no windows set.
	ErrNotFound = errors.New("no maintenance windows set")
	// ErrNotProvisioned: the PCM_WINDOWS bucket does not exist (run pcm
	// broker provision).
	ErrNotProvisioned = errors.New("maintenance windows bucket not provisioned")
	// ErrNotAllowed: the credentials may not write maintenance windows (an
	// admin's may).
	ErrNotAllowed = errors.New("not allowed to write maintenance windows")
)

// defaultTimeout bounds a call whose ctx has no deadline.
const defaultTimeout = 10 * time.Second

// Entry is the windows of one target.
type Entry struct {
	Target events.Target `json:"target"`
	events.WindowSet
}

// Store reads and writes PCM_WINDOWS.
type Store struct {
	js  jetstream.JetStream
	now func() time.Time
}

// New returns the store reached through js.
func New(js jetstream.JetStream) *Store { return &Store{js: js, now: time.Now} }

// Check refuses windows that would hold no job: none at all, one that does
// not validate (events.ErrWindow: bad days, date, times or zone, or a start
// equal to its end), and one-off windows whose date has passed.
func Check(ws []events.Window, now time.Time) error {
	if len(ws) == 0 {
		return fmt.Errorf("%w: no window given: give at least one (Mon-Fri 22:00-04:00 Europe/Berlin), or remove them with pcm window rm", events.ErrWindow)
	}
	for _, w := range ws {
		if err := w.Validate(); err != nil {
			return err
		}
		if _, ok := (events.Windows{w}).Next(now, 0); !ok {
			return fmt.Errorf("%w: window %q never opens again: its date has passed; give a date to come", events.ErrWindow, w)
		}
	}
	return nil
}

// Set replaces the windows of target t (a client, a group, or every
// client) with ws, recording who set them. It checks them first (Check)
// and writes nothing when one is refused.
func (s *Store) Set(ctx context.Context, t events.Target, ws []events.Window, by string) (Entry, error) {
	if err := t.Validate(); err != nil {
		return Entry{}, err
	}
	now := s.now().UTC()
	if err := Check(ws, now); err != nil {
		return Entry{}, err
	}
	e := Entry{Target: t, WindowSet: events.WindowSet{Windows: ws, UpdatedBy: by, UpdatedAt: now}}
	b, err := json.Marshal(e.WindowSet)
	if err != nil {
		return Entry{}, err
	}
	ctx, cancel := backoff.WithDefaultTimeout(ctx, defaultTimeout)
	defer cancel()
	kv, err := s.bucket(ctx)
	if err != nil {
		return Entry{}, err
	}
	if _, err := kv.Put(ctx, events.WindowKey(t), b); err != nil {
		return Entry{}, writeErr(err)
	}
	return e, nil
}

// Remove deletes the windows of target t (ErrNotFound when it has none).
func (s *Store) Remove(ctx context.Context, t events.Target) error {
	if err := t.Validate(); err != nil {
		return err
	}
	ctx, cancel := backoff.WithDefaultTimeout(ctx, defaultTimeout)
	defer cancel()
	kv, err := s.bucket(ctx)
	if err != nil {
		return err
	}
	if _, err := kv.Get(ctx, events.WindowKey(t)); errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("%w for %s", ErrNotFound, t)
	} else if err != nil {
		return err
	}
	if err := kv.Delete(ctx, events.WindowKey(t)); err != nil {
		return writeErr(err)
	}
	return nil
}

// List returns the windows of every target that has some, by key. A value
// that does not read as windows is returned with no windows and its
// UpdatedBy naming the problem, so that an operator sees it.
func (s *Store) List(ctx context.Context) ([]Entry, error) {
	ctx, cancel := backoff.WithDefaultTimeout(ctx, defaultTimeout)
	defer cancel()
	var out []Entry
	err := kvread.Snapshot(ctx, s.js, events.BucketWindows, func(e kvread.Entry) {
		t, ok := events.WindowTarget(e.Key)
		if !ok {
			return
		}
		ws, err := events.ParseWindowSet(e.Value)
		if err != nil {
			ws = events.WindowSet{UpdatedBy: "unreadable: " + err.Error()}
		}
		out = append(out, Entry{Target: t, WindowSet: ws})
	})
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("%w: run pcm broker provision", ErrNotProvisioned)
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", events.BucketWindows, err)
	}
	sort.Slice(out, func(i, j int) bool { return events.WindowKey(out[i].Target) < events.WindowKey(out[j].Target) })
	return out, nil
}

// Of returns the windows that apply to client in groups, from entries (as
// List returns them): its own, its groups' and every client's.
func Of(entries []Entry, client string, groups []string) events.Windows {
	keys := map[string]bool{}
	for _, k := range events.WindowKeysOf(client, groups) {
		keys[k] = true
	}
	var out events.Windows
	for _, e := range entries {
		if keys[events.WindowKey(e.Target)] {
			out = append(out, e.Windows...)
		}
	}
	return out
}

// bucket binds PCM_WINDOWS.
func (s *Store) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	kv, err := s.js.KeyValue(ctx, events.BucketWindows)
	switch {
	case errors.Is(err, jetstream.ErrBucketNotFound):
		return nil, fmt.Errorf("%w: run pcm broker provision", ErrNotProvisioned)
	case err != nil:
		return nil, fmt.Errorf("reaching %s: %w", events.BucketWindows, err)
	}
	return kv, nil
}

// writeErr says why a write of PCM_WINDOWS failed: credentials without
// the right find no stream to answer.
func writeErr(err error) error {
	if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: no answer from %s: writing maintenance windows needs an admin's credentials (pcm creds admin NAME) (%w)", ErrNotAllowed, events.BucketWindows, err)
	}
	return fmt.Errorf("writing %s: %w", events.BucketWindows, err)
}
