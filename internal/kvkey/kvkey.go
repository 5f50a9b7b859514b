// Package kvkey reads and writes one key of a JetStream KV bucket without
// binding the bucket. In pcm's trust model a client reaches only its own
// keys: the key's subject ($KV.<bucket>.<key>) and the direct get of that
// subject, not the bucket's stream (no stream info, no watcher, no
// consumer). Writes are publishes acked by the bucket's stream, with the
// KV protocol's headers (an expected last revision, a per-key TTL, a
// delete operation); reads are direct gets of the key's last message.
//
// It never binds or changes a bucket, never creates a consumer and never
// logs.
package kvkey

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/internal/streamread"
)

// Sentinel errors.
var (
	// ErrNotFound: the key has no value (never written, deleted, purged or
	// expired).
	ErrNotFound = errors.New("key not found")
	// ErrConflict: a create found the key holding a value, or an update or
	// a delete found it at another revision than expected.
	ErrConflict = errors.New("key changed: wrong last revision")
	// ErrTTLDisabled: the bucket refuses per-key TTLs (it was not
	// provisioned with a limit marker TTL).
	ErrTTLDisabled = errors.New("bucket does not allow per-key TTLs")
)

// The KV protocol's headers.
const (
	hdrOperation   = "KV-Operation"
	hdrMarker      = "Nats-Marker-Reason"
	hdrTTL         = "Nats-TTL"
	opDelete       = "DEL"
	opPurge        = "PURGE"
	errCodeWrongLS = jetstream.JSErrCodeStreamWrongLastSequence
	errCodeTTLOff  = jetstream.ErrorCode(10166)
)

// Key is one key of a bucket.
type Key struct {
	js      jetstream.JetStream
	bucket  string
	key     string
	stream  string
	subject string
}

// New returns the key named key of bucket, reached through js. It does no
// I/O.
func New(js jetstream.JetStream, bucket, key string) *Key {
	return &Key{js: js, bucket: bucket, key: key, stream: "KV_" + bucket, subject: "$KV." + bucket + "." + key}
}

// Subject is the subject the key is written on: subscribe to it to hear of
// its writes (a hint: read the key before acting on one).
func (k *Key) Subject() string { return k.subject }

// String names the key and its bucket.
func (k *Key) String() string { return fmt.Sprintf("key %q of bucket %s", k.key, k.bucket) }

// Entry is the key's value.
type Entry struct {
	// Value is what was written.
	Value []byte
	// Revision is the stream sequence of the write.
	Revision uint64
	// Created is when the broker stored it.
	Created time.Time
	// TTL is the key's time to live when it was written with one (the
	// value expires Created+TTL unless written again), zero otherwise.
	TTL time.Duration
}

// Get reads the key's current value; ErrNotFound when it has none.
func (k *Key) Get(ctx context.Context) (Entry, error) {
	e, deleted, err := k.last(ctx)
	if err != nil {
		return Entry{}, err
	}
	if deleted {
		return Entry{}, fmt.Errorf("%w: %s", ErrNotFound, k)
	}
	return e, nil
}

// last reads the key's last message, a delete marker included (deleted is
// then true and the entry carries the marker's revision).
func (k *Key) last(ctx context.Context) (e Entry, deleted bool, err error) {
	m, found, err := streamread.Last(ctx, k.js, k.stream, k.subject)
	if err != nil {
		return Entry{}, false, fmt.Errorf("reading %s: %w", k, err)
	}
	if !found {
		return Entry{}, true, nil
	}
	e = Entry{Value: m.Data, Revision: m.Seq, Created: m.Time}
	if m.Header != nil {
		switch {
		case m.Header.Get(hdrOperation) == opDelete, m.Header.Get(hdrOperation) == opPurge, m.Header.Get(hdrMarker) != "":
			return Entry{Revision: m.Seq, Created: m.Time}, true, nil
		}
		if ttl := m.Header.Get(hdrTTL); ttl != "" {
			e.TTL = parseTTL(ttl)
		}
	}
	return e, false, nil
}

// parseTTL reads a Nats-TTL header: a Go duration or a number of seconds.
func parseTTL(s string) time.Duration {
	if d, err := time.ParseDuration(s); err == nil {
		return d
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Duration(n) * time.Second
	}
	return 0
}

// Put writes value whatever the key holds, and returns its revision.
func (k *Key) Put(ctx context.Context, value []byte) (uint64, error) {
	return k.publish(ctx, "writing", value, nil)
}

// Create writes value if the key has none (never written, deleted, purged
// or expired), with a TTL when ttl is positive, and returns its revision;
// ErrConflict when the key holds a value.
func (k *Key) Create(ctx context.Context, value []byte, ttl time.Duration) (uint64, error) {
	rev, err := k.publish(ctx, "creating", value, opts(0, true, ttl))
	if !errors.Is(err, ErrConflict) {
		return rev, err
	}
	e, deleted, rerr := k.last(ctx)
	switch {
	case rerr != nil:
		return 0, fmt.Errorf("%w; %w", err, rerr)
	case !deleted || e.Revision == 0:
		return 0, err
	}
	// A delete marker is the key's last message: create over it.
	return k.publish(ctx, "creating", value, opts(e.Revision, true, ttl))
}

// Update writes value if the key is at revision rev, with a TTL when ttl
// is positive (a KV update of nats.go would drop it), and returns the new
// revision; ErrConflict when the key moved on.
func (k *Key) Update(ctx context.Context, value []byte, rev uint64, ttl time.Duration) (uint64, error) {
	return k.publish(ctx, "updating", value, opts(rev, true, ttl))
}

// Delete deletes the key's value if the key is at revision rev (any
// revision when rev is 0); ErrConflict when it moved on.
func (k *Key) Delete(ctx context.Context, rev uint64) error {
	m := nats.NewMsg(k.subject)
	m.Header.Set(hdrOperation, opDelete)
	_, err := k.publishMsg(ctx, "deleting", m, opts(rev, rev != 0, 0))
	return err
}

// opts are the publish options of an expected revision and a TTL.
func opts(rev uint64, expect bool, ttl time.Duration) []jetstream.PublishOpt {
	var o []jetstream.PublishOpt
	if expect {
		o = append(o, jetstream.WithExpectLastSequencePerSubject(rev))
	}
	if ttl > 0 {
		o = append(o, jetstream.WithMsgTTL(ttl))
	}
	return o
}

func (k *Key) publish(ctx context.Context, doing string, value []byte, o []jetstream.PublishOpt) (uint64, error) {
	m := nats.NewMsg(k.subject)
	m.Data = value
	return k.publishMsg(ctx, doing, m, o)
}

// publishMsg publishes m and maps the broker's refusals to the sentinels.
func (k *Key) publishMsg(ctx context.Context, doing string, m *nats.Msg, o []jetstream.PublishOpt) (uint64, error) {
	pa, err := k.js.PublishMsg(ctx, m, o...)
	if err == nil {
		return pa.Sequence, nil
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case errCodeWrongLS, jetstream.JSErrCodeStreamWrongLastSequenceConstant:
			return 0, fmt.Errorf("%w: %s %s: %w", ErrConflict, doing, k, err)
		case errCodeTTLOff:
			return 0, fmt.Errorf("%w: %s %s: %w: provision the bucket with a limit marker TTL (broker.Provision does)", ErrTTLDisabled, doing, k, err)
		}
	}
	return 0, fmt.Errorf("%s %s: %w", doing, k, err)
}
