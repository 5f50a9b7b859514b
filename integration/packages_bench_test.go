package integration_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/agent/pkgcache"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/packages"
	"github.com/pcm-project/pcm/testenv"
)

// pkgBenchSizeEnv overrides the package size of BenchmarkPackageTransfer,
// in MiB (default 200).
const pkgBenchSizeEnv = "PCM_BENCH_PACKAGE_MIB"

// BenchmarkPackageTransfer pushes and fetches one package with pcm's code
// (packages.Store.Push of a file; pkgcache.Fetch into an empty cache,
// which hashes, fsyncs and verifies) and with a bare nats.go object store
// (ObjectStore.Put of the same file; ObjectStore.Get copied to a file, as
// GetFile does, without fsync), against one embedded broker, in the same
// run, alternating which goes first. It reports the MiB/s of each and
// pcm's ratio to bare:
//
//	go test -run '^$' -bench BenchmarkPackageTransfer -benchtime 3x ./integration/
func BenchmarkPackageTransfer(b *testing.B) {
	size := int64(200 << 20)
	if v, err := strconv.Atoi(os.Getenv(pkgBenchSizeEnv)); err == nil && v > 0 {
		size = int64(v) << 20
	}
	env := testenv.StartBroker(b)
	ctx := context.Background()
	dir := b.TempDir()
	src := filepath.Join(dir, "package.bin")
	pkgRandomFile(b, src, size, 7)
	pk := packages.NewStore(env.JS)
	obs, err := env.JS.ObjectStore(ctx, events.BucketPackages)
	if err != nil {
		b.Fatal(err)
	}

	var push, put, fetch, get time.Duration
	pcmPush := func() {
		start := time.Now()
		if _, err := pk.Push(ctx, src, packages.PushOptions{Name: "bench", Version: "pcm", Force: true}); err != nil {
			b.Fatal(err)
		}
		push += time.Since(start)
	}
	barePut := func() {
		f, err := os.Open(src)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		start := time.Now()
		if _, err := obs.Put(ctx, jetstream.ObjectMeta{Name: "bench@bare"}, f); err != nil {
			b.Fatal(err)
		}
		put += time.Since(start)
	}
	pcmFetch := func(i int) {
		ref, err := pk.Resolve(ctx, "bench@pcm")
		if err != nil {
			b.Fatal(err)
		}
		cacheDir := filepath.Join(dir, "cache-"+strconv.Itoa(i))
		c, err := pkgcache.Open(pkgcache.Config{Dir: cacheDir, MaxBytes: 2 * size})
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if e, err := c.Fetch(ctx, env.JS, ref); err != nil || !e.Downloaded {
			b.Fatalf("fetch: downloaded %v, %v", e.Downloaded, err)
		}
		fetch += time.Since(start)
		_ = os.RemoveAll(cacheDir)
	}
	bareGet := func(i int) {
		out := filepath.Join(dir, "get-"+strconv.Itoa(i))
		f, err := os.Create(out)
		if err != nil {
			b.Fatal(err)
		}
		gctx, cancel := context.WithTimeout(ctx, 10*time.Minute) // Get without a deadline gives up after 5 s
		defer cancel()
		start := time.Now()
		res, err := obs.Get(gctx, "bench@bare")
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(f, res)
		if err != nil || n != size {
			b.Fatalf("get: %d bytes, %v", n, err)
		}
		_ = res.Close()
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
		get += time.Since(start)
		_ = os.Remove(out)
	}

	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%2 == 0 {
			pcmPush()
			barePut()
			pcmFetch(i)
			bareGet(i)
		} else {
			barePut()
			pcmPush()
			bareGet(i)
			pcmFetch(i)
		}
	}
	b.StopTimer()
	mibps := func(d time.Duration) float64 {
		return float64(size) * float64(b.N) / (1 << 20) / d.Seconds()
	}
	b.ReportMetric(mibps(push), "push_MiB/s")
	b.ReportMetric(mibps(put), "bare_put_MiB/s")
	b.ReportMetric(mibps(push)/mibps(put), "push/put")
	b.ReportMetric(mibps(fetch), "fetch_MiB/s")
	b.ReportMetric(mibps(get), "bare_get_MiB/s")
	b.ReportMetric(mibps(fetch)/mibps(get), "fetch/get")
	b.ReportMetric(float64(size>>20), "package_MiB")
}
