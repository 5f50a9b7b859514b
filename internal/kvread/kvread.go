// Package kvread reads every key of a JetStream KV bucket through batched
// direct gets and core subscriptions (package streamread), without binding
// the bucket or creating a consumer: what a publisher or an auditor may do
// in pcm's trust model, where only admins create consumers.
//
// It never writes and never logs.
package kvread

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/internal/streamread"
)

// Entry is one key's value as stored.
type Entry struct {
	// Key is the key.
	Key string
	// Value is its value; nil when Deleted.
	Value []byte
	// Deleted is true for a delete, a purge or an expiry of the key.
	Deleted bool
	// Revision is the stream sequence of the write.
	Revision uint64
	// Created is when the broker stored it.
	Created time.Time
}

// stream and subjects of a bucket.
func streamOf(bucket string) string   { return "KV_" + bucket }
func subjectsOf(bucket string) string { return "$KV." + bucket + ".>" }

// entryOf reads an entry out of a stored message of bucket.
func entryOf(bucket string, m streamread.Msg) Entry {
	e := Entry{Key: strings.TrimPrefix(m.Subject, "$KV."+bucket+"."), Value: m.Data, Revision: m.Seq, Created: m.Time}
	if m.Header != nil {
		op := m.Header.Get("KV-Operation")
		if op == "DEL" || op == "PURGE" || m.Header.Get("Nats-Marker-Reason") != "" {
			e.Deleted, e.Value = true, nil
		}
	}
	return e
}

// Snapshot calls each for every live key of bucket (deleted keys are
// skipped), in the order they were last written.
func Snapshot(ctx context.Context, js jetstream.JetStream, bucket string, each func(Entry)) error {
	live := map[string]Entry{}
	var order []string
	err := streamread.Scan(ctx, js, streamOf(bucket), streamread.Options{Filters: []string{subjectsOf(bucket)}}, func(m streamread.Msg) error {
		e := entryOf(bucket, m)
		if _, ok := live[e.Key]; !ok {
			order = append(order, e.Key)
		}
		live[e.Key] = e
		return nil
	})
	if err != nil {
		return fmt.Errorf("reading bucket %s: %w", bucket, err)
	}
	for _, k := range order {
		if e := live[k]; !e.Deleted {
			each(e)
		}
	}
	return nil
}

// Watch follows every key of bucket: it sends each stored entry (deletes
// included), then nil once it has sent every entry stored when it began
// (as nats.go's KeyWatcher.Updates does), then every new entry as it is
// stored, until ctx ends; then it closes the channel. A read error after
// the first round is retried; one before is sent as the channel's last
// value through errc.
func Watch(ctx context.Context, js jetstream.JetStream, bucket string) (<-chan *Entry, <-chan error) {
	out := make(chan *Entry, 256)
	errc := make(chan error, 1)
	send := func(e *Entry) error {
		select {
		case out <- e:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	go func() {
		defer close(out)
		caught := false
		err := streamread.Follow(ctx, js, streamOf(bucket), streamread.FollowOptions{
			Options: streamread.Options{Filters: []string{subjectsOf(bucket)}},
			CaughtUp: func() error {
				if caught {
					return nil
				}
				caught = true
				return send(nil)
			},
		}, func(m streamread.Msg) error {
			e := entryOf(bucket, m)
			return send(&e)
		})
		if ctx.Err() == nil && err != nil {
			errc <- fmt.Errorf("following bucket %s: %w", bucket, err)
		}
	}()
	return out, errc
}
