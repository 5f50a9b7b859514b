package broker_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/broker"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/testenv"
)

// allStreams are the streams Provision creates, the buckets' included.
var allStreams = []string{events.StreamJobs, events.StreamStatus, "KV_" + events.BucketAgents, "KV_" + events.BucketLocks, "OBJ_" + events.BucketPackages, "KV_" + events.BucketWindows, "KV_" + events.BucketReleases}

// streamConfigs reads the configuration of every pcm stream.
func streamConfigs(ctx context.Context, t *testing.T, js jetstream.JetStream) map[string]jetstream.StreamConfig {
	t.Helper()
	out := map[string]jetstream.StreamConfig{}
	for _, name := range allStreams {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		out[name] = s.CachedInfo().Config
	}
	return out
}

// bucketConfigs reads the status configuration of both KV buckets.
func bucketConfigs(ctx context.Context, t *testing.T, js jetstream.JetStream) map[string]jetstream.KeyValueConfig {
	t.Helper()
	out := map[string]jetstream.KeyValueConfig{}
	for _, name := range []string{events.BucketAgents, events.BucketLocks, events.BucketWindows} {
		kv, err := js.KeyValue(ctx, name)
		if err != nil {
			t.Fatalf("bucket %s: %v", name, err)
		}
		st, err := kv.Status(ctx)
		if err != nil {
			t.Fatalf("bucket %s status: %v", name, err)
		}
		out[name] = st.Config()
	}
	return out
}

func TestProvisionIsIdempotent(t *testing.T) {
	tb := testenv.StartBroker(t, testenv.WithoutProvision())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	if err := broker.Provision(ctx, tb.JS, broker.ProvisionOptions{}); err != nil {
		t.Fatalf("first Provision: %v", err)
	}
	streams1, buckets1 := streamConfigs(ctx, t, tb.JS), bucketConfigs(ctx, t, tb.JS)
	if err := broker.Provision(ctx, tb.JS, broker.ProvisionOptions{}); err != nil {
		t.Fatalf("second Provision: %v", err)
	}
	streams2, buckets2 := streamConfigs(ctx, t, tb.JS), bucketConfigs(ctx, t, tb.JS)
	for _, name := range allStreams {
		if !reflect.DeepEqual(streams1[name], streams2[name]) {
			t.Errorf("stream %s changed on the second Provision:\n first: %+v\nsecond: %+v", name, streams1[name], streams2[name])
		}
	}
	if !reflect.DeepEqual(buckets1, buckets2) {
		t.Errorf("buckets changed on the second Provision:\n first: %+v\nsecond: %+v", buckets1, buckets2)
	}

	// The settings asked for are the ones in force.
	jobs, status := streams1[events.StreamJobs], streams1[events.StreamStatus]
	checks := []struct {
		what      string
		got, want any
	}{
		{"PCM_JOBS subjects", jobs.Subjects, events.JobsStreamSubjects()},
		{"PCM_JOBS retention", jobs.Retention, jetstream.LimitsPolicy},
		{"PCM_JOBS storage", jobs.Storage, jetstream.FileStorage},
		{"PCM_JOBS replicas", jobs.Replicas, 1},
		{"PCM_JOBS max age", jobs.MaxAge, broker.DefaultJobsMaxAge},
		{"PCM_JOBS duplicates", jobs.Duplicates, broker.DefaultDuplicateWindow},
		{"PCM_JOBS max consumers", jobs.MaxConsumers, broker.DefaultMaxConsumers},
		{"PCM_JOBS max msg size", jobs.MaxMsgSize, int32(broker.DefaultMaxMsgSize)},
		{"PCM_JOBS allow direct", jobs.AllowDirect, true},
		{"PCM_STATUS subjects", status.Subjects, events.StatusStreamSubjects()},
		{"PCM_STATUS retention", status.Retention, jetstream.LimitsPolicy},
		{"PCM_STATUS storage", status.Storage, jetstream.FileStorage},
		{"PCM_STATUS max age", status.MaxAge, time.Duration(0)},
		{"PCM_STATUS duplicates", status.Duplicates, broker.DefaultDuplicateWindow},
		{"PCM_STATUS max consumers", status.MaxConsumers, broker.DefaultMaxConsumers},
		{"PCM_STATUS allow direct", status.AllowDirect, true},
		{"PCM_AGENTS history", buckets1[events.BucketAgents].History, uint8(1)},
		{"PCM_AGENTS storage", buckets1[events.BucketAgents].Storage, jetstream.FileStorage},
		{"PCM_AGENTS stream max consumers", streams1["KV_"+events.BucketAgents].MaxConsumers, broker.DefaultMaxConsumers},
		{"PCM_LOCKS history", buckets1[events.BucketLocks].History, uint8(1)},
		{"PCM_LOCKS storage", buckets1[events.BucketLocks].Storage, jetstream.FileStorage},
		{"PCM_LOCKS limit marker TTL", buckets1[events.BucketLocks].LimitMarkerTTL, broker.DefaultLockMarkerTTL},
		{"PCM_LOCKS allow msg TTL", streams1["KV_"+events.BucketLocks].AllowMsgTTL, true},
		{"PCM_LOCKS stream max consumers", streams1["KV_"+events.BucketLocks].MaxConsumers, broker.DefaultMaxConsumers},
		{"PCM_WINDOWS history", buckets1[events.BucketWindows].History, uint8(5)},
		{"PCM_WINDOWS stream max consumers", streams1["KV_"+events.BucketWindows].MaxConsumers, broker.DefaultMaxConsumers},
		{"PCM_PACKAGES storage", streams1["OBJ_"+events.BucketPackages].Storage, jetstream.FileStorage},
		{"PCM_PACKAGES replicas", streams1["OBJ_"+events.BucketPackages].Replicas, 1},
		{"PCM_PACKAGES max bytes", streams1["OBJ_"+events.BucketPackages].MaxBytes, int64(-1)},
		{"PCM_PACKAGES discard", streams1["OBJ_"+events.BucketPackages].Discard, jetstream.DiscardNew},
		{"PCM_PACKAGES stream max consumers", streams1["OBJ_"+events.BucketPackages].MaxConsumers, broker.DefaultMaxConsumers},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}

	// Provisioning with other options updates the resources in place.
	opts := broker.ProvisionOptions{JobsMaxAge: 30 * 24 * time.Hour, StatusMaxAge: 400 * 24 * time.Hour, DuplicateWindow: time.Hour, MaxConsumers: 5000, LockMarkerTTL: 2 * time.Minute,
		PackagesMaxBytes: 10 << 30}
	if err := broker.Provision(ctx, tb.JS, opts); err != nil {
		t.Fatalf("Provision with new options: %v", err)
	}
	streams3, buckets3 := streamConfigs(ctx, t, tb.JS), bucketConfigs(ctx, t, tb.JS)
	if got := streams3[events.StreamJobs]; got.MaxAge != opts.JobsMaxAge || got.Duplicates != opts.DuplicateWindow || got.MaxConsumers != opts.MaxConsumers {
		t.Errorf("PCM_JOBS after update: max age %s, duplicates %s, max consumers %d; want %s, %s, %d",
			got.MaxAge, got.Duplicates, got.MaxConsumers, opts.JobsMaxAge, opts.DuplicateWindow, opts.MaxConsumers)
	}
	if got := streams3[events.StreamStatus].MaxAge; got != opts.StatusMaxAge {
		t.Errorf("PCM_STATUS max age after update = %s, want %s", got, opts.StatusMaxAge)
	}
	if got := buckets3[events.BucketLocks].LimitMarkerTTL; got != opts.LockMarkerTTL {
		t.Errorf("PCM_LOCKS limit marker TTL after update = %s, want %s", got, opts.LockMarkerTTL)
	}
	if got := streams3["KV_"+events.BucketLocks].MaxConsumers; got != opts.MaxConsumers {
		t.Errorf("KV_PCM_LOCKS max consumers after update = %d, want %d", got, opts.MaxConsumers)
	}
	if got := streams3["OBJ_"+events.BucketPackages]; got.MaxBytes != opts.PackagesMaxBytes || got.MaxConsumers != opts.MaxConsumers {
		t.Errorf("OBJ_PCM_PACKAGES after update: max bytes %d, max consumers %d; want %d, %d", got.MaxBytes, got.MaxConsumers, opts.PackagesMaxBytes, opts.MaxConsumers)
	}
	// The update kept the bucket usable as an object store.
	obs, err := tb.JS.ObjectStore(ctx, events.BucketPackages)
	if err != nil {
		t.Fatalf("PCM_PACKAGES after update: %v", err)
	}
	if _, err := obs.PutString(ctx, "probe@1", "content"); err != nil {
		t.Fatalf("put into PCM_PACKAGES: %v", err)
	}
	if got, err := obs.GetString(ctx, "probe@1"); err != nil || got != "content" {
		t.Fatalf("get from PCM_PACKAGES = %q, %v", got, err)
	}
}

func TestProvisionedConfigsMatchExports(t *testing.T) {
	tb := testenv.StartBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := streamConfigs(ctx, t, tb.JS)
	for _, want := range []jetstream.StreamConfig{broker.JobsStreamConfig(broker.ProvisionOptions{}), broker.StatusStreamConfig(broker.ProvisionOptions{})} {
		have := got[want.Name]
		// The server fills in fields the config leaves zero: compare what
		// the exported config sets.
		if have.Description != want.Description || !reflect.DeepEqual(have.Subjects, want.Subjects) ||
			have.MaxAge != want.MaxAge || have.Duplicates != want.Duplicates || have.MaxConsumers != want.MaxConsumers ||
			have.MaxMsgSize != want.MaxMsgSize || have.AllowDirect != want.AllowDirect || have.Replicas != want.Replicas {
			t.Errorf("stream %s is %+v, want %+v", want.Name, have, want)
		}
	}
}

// TestStatusStreamIsTheAuditRecord: no message of PCM_STATUS can be deleted
// and the stream cannot be purged, even by an admin, and the protection
// cannot be turned off; a stream provisioned before it gets it.
func TestStatusStreamIsTheAuditRecord(t *testing.T) {
	tb := testenv.StartBroker(t, testenv.WithoutProvision())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	old := broker.StatusStreamConfig(broker.ProvisionOptions{})
	old.DenyDelete, old.DenyPurge = false, false // as an older pcm created it
	if _, err := tb.JS.CreateStream(ctx, old); err != nil {
		t.Fatal(err)
	}
	if err := broker.Provision(ctx, tb.JS, broker.ProvisionOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := tb.JS.Publish(ctx, events.StatusSubject("c1", "J1"), []byte("status")); err != nil {
		t.Fatal(err)
	}
	s, err := tb.JS.Stream(ctx, events.StreamStatus)
	if err != nil {
		t.Fatal(err)
	}
	if c := s.CachedInfo().Config; !c.DenyDelete || !c.DenyPurge {
		t.Fatalf("PCM_STATUS after provisioning: deny delete %v, deny purge %v", c.DenyDelete, c.DenyPurge)
	}
	if err := s.Purge(ctx); err == nil {
		t.Fatal("PCM_STATUS was purged")
	}
	if err := s.DeleteMsg(ctx, 1); err == nil {
		t.Fatal("a message of PCM_STATUS was deleted")
	}
	unprotect := s.CachedInfo().Config
	unprotect.DenyDelete, unprotect.DenyPurge = false, false
	if _, err := tb.JS.UpdateStream(ctx, unprotect); err == nil {
		t.Fatal("the protection of PCM_STATUS was turned off")
	}
	if info, err := s.Info(ctx); err != nil || info.State.Msgs != 1 {
		t.Fatalf("PCM_STATUS holds %+v, %v: want its one status", info.State, err)
	}
}

func TestLocksBucketPerKeyTTL(t *testing.T) {
	tb := testenv.StartBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	kv, err := tb.JS.KeyValue(ctx, events.BucketLocks)
	if err != nil {
		t.Fatal(err)
	}
	w, err := kv.Watch(ctx, "client-1", jetstream.UpdatesOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if _, err := kv.Create(ctx, "client-1", []byte("service"), jetstream.KeyTTL(time.Second)); err != nil {
		t.Fatalf("create with a per-key TTL: %v", err)
	}
	// The watcher sees the put, then the marker the expiry leaves.
	var ops []jetstream.KeyValueOp
	for len(ops) < 2 {
		select {
		case e := <-w.Updates():
			if e != nil {
				ops = append(ops, e.Operation())
			}
		case <-ctx.Done():
			t.Fatalf("watcher saw %v, want a put then the expiry marker", ops)
		}
	}
	if ops[0] != jetstream.KeyValuePut || (ops[1] != jetstream.KeyValuePurge && ops[1] != jetstream.KeyValueDelete) {
		t.Fatalf("watcher saw %v, want a put then a purge or delete marker", ops)
	}
	if _, err := kv.Get(ctx, "client-1"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("Get after expiry = %v, want %v", err, jetstream.ErrKeyNotFound)
	}
}

func TestProvisionErrors(t *testing.T) {
	tb := testenv.StartBroker(t, testenv.WithoutProvision())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	for _, bad := range []struct {
		name string
		opts broker.ProvisionOptions
	}{
		{"negative max consumers", broker.ProvisionOptions{MaxConsumers: -1}},
		{"negative packages max bytes", broker.ProvisionOptions{PackagesMaxBytes: -1}},
	} {
		if err := broker.Provision(ctx, tb.JS, bad.opts); !errors.Is(err, broker.ErrInvalidProvisionOptions) {
			t.Fatalf("Provision(%s) = %v, want %v", bad.name, err, broker.ErrInvalidProvisionOptions)
		}
	}
	if _, err := tb.JS.Stream(ctx, events.StreamJobs); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("invalid options created %s (err %v)", events.StreamJobs, err)
	}

	// A stream that already captures a pcm subject makes PCM_JOBS fail.
	if _, err := tb.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "SQUATTER", Subjects: []string{events.SubjectJobsAll}}); err != nil {
		t.Fatal(err)
	}
	err := broker.Provision(ctx, tb.JS, broker.ProvisionOptions{})
	if !errors.Is(err, broker.ErrProvision) {
		t.Fatalf("Provision with overlapping subjects = %v, want %v", err, broker.ErrProvision)
	}
	if !strings.Contains(err.Error(), events.StreamJobs) {
		t.Errorf("error %q does not name %s", err, events.StreamJobs)
	}
}

// TestProvisionAddsSubjectsToAnExistingStream: a PCM_JOBS provisioned
// before the per-job cancellation subjects existed gains them on the next
// provisioning, keeping what it holds, and again is a no-op.
func TestProvisionAddsSubjectsToAnExistingStream(t *testing.T) {
	tb := testenv.StartBroker(t, testenv.WithoutProvision())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	old := broker.JobsStreamConfig(broker.ProvisionOptions{})
	old.Subjects = []string{events.SubjectJobsClients, events.SubjectJobsGroups, events.SubjectJobsAll}
	if _, err := tb.JS.CreateStream(ctx, old); err != nil {
		t.Fatal(err)
	}
	if _, err := tb.JS.Publish(ctx, events.SubjectJobsAll, []byte("kept")); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := broker.Provision(ctx, tb.JS, broker.ProvisionOptions{}); err != nil {
			t.Fatalf("Provision over an older PCM_JOBS: %v", err)
		}
		s, err := tb.JS.Stream(ctx, events.StreamJobs)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.CachedInfo().Config.Subjects; !reflect.DeepEqual(got, events.JobsStreamSubjects()) {
			t.Fatalf("PCM_JOBS subjects %v, want %v", got, events.JobsStreamSubjects())
		}
		if n := s.CachedInfo().State.Msgs; n != 1 {
			t.Fatalf("PCM_JOBS holds %d messages after provisioning, want the 1 it had", n)
		}
	}
	if _, err := tb.JS.Publish(ctx, events.CancelSubject("j1"), []byte("cancel")); err != nil {
		t.Fatalf("publishing on %s: %v", events.CancelSubject("j1"), err)
	}
}

// TestProvisionAddsLiveRePublish: streams and buckets provisioned before
// they republished what they store (events.LiveSubject) get the republish
// when provisioned again, their messages kept, and then republish each
// message they store.
func TestProvisionAddsLiveRePublish(t *testing.T) {
	tb := testenv.StartBroker(t, testenv.WithoutProvision())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	o := broker.ProvisionOptions{}
	for _, cfg := range []jetstream.StreamConfig{broker.JobsStreamConfig(o), broker.StatusStreamConfig(o)} {
		cfg.RePublish = nil
		if _, err := tb.JS.CreateStream(ctx, cfg); err != nil {
			t.Fatal(err)
		}
	}
	for _, cfg := range []jetstream.KeyValueConfig{broker.AgentsBucketConfig(o), broker.LocksBucketConfig(o)} {
		cfg.RePublish = nil
		if _, err := tb.JS.CreateKeyValue(ctx, cfg); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tb.JS.Publish(ctx, events.StatusSubject("c1", "j1"), []byte("kept")); err != nil {
		t.Fatal(err)
	}
	if err := broker.Provision(ctx, tb.JS, o); err != nil {
		t.Fatalf("Provision over streams without republish: %v", err)
	}
	for _, name := range []string{events.StreamJobs, events.StreamStatus, "KV_" + events.BucketAgents, "KV_" + events.BucketLocks} {
		s, err := tb.JS.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		rp := s.CachedInfo().Config.RePublish
		if rp == nil || !strings.HasPrefix(rp.Destination, "pcm.live.") || rp.Destination != events.LiveSubject(rp.Source) {
			t.Errorf("%s republishes %+v, want its subjects on their live subjects", name, rp)
		}
	}
	if s, err := tb.JS.Stream(ctx, events.StreamStatus); err != nil || s.CachedInfo().State.Msgs != 1 {
		t.Fatalf("PCM_STATUS after provisioning: %v, want the 1 message it had", err)
	}
	sub, err := tb.NC.SubscribeSync("pcm.live.>")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tb.JS.Publish(ctx, events.StatusSubject("c1", "j2"), []byte("new")); err != nil {
		t.Fatal(err)
	}
	m, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("no republish of a new status: %v", err)
	}
	if want := events.LiveSubject(events.StatusSubject("c1", "j2")); m.Subject != want || string(m.Data) != "new" {
		t.Fatalf("republished %s %q, want %s %q", m.Subject, m.Data, want, "new")
	}
}
