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

// EntryOf reads an entry out of a stored message of bucket.
func EntryOf(bucket string, m streamread.Msg) Entry {
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
		e := EntryOf(bucket, m)
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

// Follow follows every key of bucket: its Updates send each stored entry
// (deletes included; read it with EntryOf), then nil once every entry
// stored when it began was sent (as nats.go's KeyWatcher.Updates does),
// then every new entry as it is stored. It hears of new entries on the
// bucket's subjects and reads them with direct gets (streamread.Follow).
func Follow(ctx context.Context, js jetstream.JetStream, bucket string) (*streamread.Follower, error) {
	f, err := streamread.Follow(ctx, js, streamOf(bucket), streamread.FollowOptions{
		Options: streamread.Options{Filters: []string{subjectsOf(bucket)}},
	})
	if err != nil {
		return nil, fmt.Errorf("following bucket %s: %w", bucket, err)
	}
	return f, nil
}
