package pkgcache_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/agent/pkgcache"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/testenv"
)

// randomBytes returns n reproducible pseudo-random bytes.
func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}))
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// put stores data as package name@version the way the publisher does
// (object NAME@VERSION, pcm metadata) and returns the reference a job pins.
func put(t testing.TB, js jetstream.JetStream, name, version string, data []byte, meta map[string]string) events.PackageRef {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	obs, err := js.ObjectStore(ctx, events.BucketPackages)
	if err != nil {
		t.Fatal(err)
	}
	if meta == nil {
		meta = map[string]string{"pcm-format": "file", "pcm-file": name + ".bin", "pcm-mode": "0755"}
	}
	if _, err := obs.Put(ctx, jetstream.ObjectMeta{Name: events.PackageObjectName(name, version), Metadata: meta}, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	return events.PackageRef{Name: name, Version: version, SHA256: sum(data), Size: int64(len(data))}
}

func openCache(t testing.TB, dir string, cfg pkgcache.Config) *pkgcache.Cache {
	t.Helper()
	cfg.Dir = dir
	c, err := pkgcache.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// dirFiles lists the names in dir.
func dirFiles(t testing.TB, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, de := range des {
		out = append(out, de.Name())
	}
	return out
}

// dirBytes sums the sizes of the files in dir.
func dirBytes(t testing.TB, dir string) int64 {
	t.Helper()
	var n int64
	for _, name := range dirFiles(t, dir) {
		if strings.HasSuffix(name, ".json") {
			continue
		}
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		n += fi.Size()
	}
	return n
}

// noLeftovers fails when dir holds a temporary download.
func noLeftovers(t testing.TB, dir string) {
	t.Helper()
	for _, name := range dirFiles(t, dir) {
		if strings.HasPrefix(name, "tmp-") {
			t.Fatalf("cache directory holds a partial download %s", name)
		}
	}
}

func TestFetchDownloadsOnceThenHits(t *testing.T) {
	tb := testenv.StartBroker(t)
	ctx := t.Context()
	data := randomBytes(1, 3<<20+12345)
	ref := put(t, tb.JS, "app", "1.0", data, nil)
	dir := t.TempDir()
	c := openCache(t, dir, pkgcache.Config{})

	e, err := c.Fetch(ctx, tb.JS, ref)
	if err != nil {
		t.Fatalf("first fetch: %v", err)
	}
	if !e.Downloaded || e.SHA256 != ref.SHA256 || e.Size != ref.Size || e.Format != events.PackageFormatFile || e.File != "app.bin" || e.Mode != 0o755 {
		t.Fatalf("entry after the first fetch: %+v", e)
	}
	got, err := os.ReadFile(e.Path)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("cached content differs from the package (err %v)", err)
	}
	again, err := c.Fetch(ctx, tb.JS, ref)
	if err != nil || again.Downloaded {
		t.Fatalf("second fetch: downloaded %v, err %v; want a cache hit", again.Downloaded, err)
	}
	if s := c.Stats(); s.Downloads != 1 || s.Hits != 1 || s.DownloadedBytes != ref.Size || s.Entries != 1 || s.Bytes != ref.Size {
		t.Fatalf("stats %+v, want one download of %d bytes and one hit", s, ref.Size)
	}

	// Concurrent fetches of new content download it once.
	ref2 := put(t, tb.JS, "app", "2.0", randomBytes(2, 1<<20), nil)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			_, err := c.Fetch(ctx, tb.JS, ref2)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent fetch: %v", err)
		}
	}
	if s := c.Stats(); s.Downloads != 2 || s.Hits != 8 {
		t.Fatalf("after 8 concurrent fetches of one package: %+v, want 2 downloads in all and 8 hits", s)
	}

	// The same content under another name shares the cached copy, with
	// its own file name.
	alias := put(t, tb.JS, "alias", "1", data, map[string]string{"pcm-format": "file", "pcm-file": "other.bin", "pcm-mode": "0644"})
	e3, err := c.Fetch(ctx, tb.JS, alias)
	if err != nil || e3.Downloaded || e3.Path != e.Path || e3.File != "other.bin" || e3.Mode != 0o644 || e3.Name != "alias" {
		t.Fatalf("fetch of the same content as alias@1: %+v, %v; want a hit named other.bin, mode 0644", e3, err)
	}

	// The cache survives a restart of the agent: reopened, it still has
	// the content, and a fetch needs no broker.
	c2 := openCache(t, dir, pkgcache.Config{})
	if !c2.Has(ref.SHA256) || !c2.Has(ref2.SHA256) {
		t.Fatal("reopened cache lost its content")
	}
	tb.Stop()
	if e, err := c2.Fetch(ctx, tb.JS, ref); err != nil || e.Downloaded {
		t.Fatalf("fetch from a reopened cache with the broker down: downloaded %v, err %v", e.Downloaded, err)
	}
	noLeftovers(t, dir)
}

func TestFetchRefusals(t *testing.T) {
	tb := testenv.StartBroker(t)
	ctx := t.Context()
	data := randomBytes(3, 200_000)
	ref := put(t, tb.JS, "tool", "1", data, nil)
	weird := put(t, tb.JS, "weird", "1", data, map[string]string{"pcm-format": "zip"})

	cases := []struct {
		name    string
		ref     events.PackageRef
		max     int64
		wantErr error
	}{
		{"missing object", events.PackageRef{Name: "nope", Version: "1", SHA256: ref.SHA256}, 0, pkgcache.ErrMissing},
		{"other digest pinned", events.PackageRef{Name: "tool", Version: "1", SHA256: sum([]byte("other"))}, 0, pkgcache.ErrDigestMismatch},
		{"other size pinned", events.PackageRef{Name: "tool", Version: "1", SHA256: ref.SHA256, Size: 10}, 0, pkgcache.ErrDigestMismatch},
		{"larger than the cache", ref, 1000, pkgcache.ErrTooLarge},
		{"unknown format", weird, 0, pkgcache.ErrFormat},
		{"bad sha256", events.PackageRef{Name: "tool", Version: "1", SHA256: "ABC"}, 0, events.ErrInvalidPackage},
		{"no version", events.PackageRef{Name: "tool", SHA256: ref.SHA256}, 0, events.ErrInvalidPackage},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			c := openCache(t, dir, pkgcache.Config{MaxBytes: tc.max})
			_, err := c.Fetch(ctx, tb.JS, tc.ref)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Fetch = %v, want %v", err, tc.wantErr)
			}
			if !pkgcache.Permanent(err) {
				t.Fatalf("%v is not classified permanent", err)
			}
			if files := dirFiles(t, dir); len(files) != 0 {
				t.Fatalf("a refused fetch left %v in the cache", files)
			}
		})
	}

	t.Run("no object store", func(t *testing.T) {
		bare := testenv.StartBroker(t, testenv.WithoutProvision())
		c := openCache(t, t.TempDir(), pkgcache.Config{})
		if _, err := c.Fetch(ctx, bare.JS, ref); !errors.Is(err, pkgcache.ErrMissing) {
			t.Fatalf("Fetch without PCM_PACKAGES = %v, want %v", err, pkgcache.ErrMissing)
		}
	})
}

// chunkMsgs returns the stream sequences of an object's chunks, in order.
func chunkMsgs(t testing.TB, js jetstream.JetStream, name string) (jetstream.Stream, string, []uint64) {
	t.Helper()
	ctx := context.Background()
	obs, err := js.ObjectStore(ctx, events.BucketPackages)
	if err != nil {
		t.Fatal(err)
	}
	info, err := obs.GetInfo(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, "OBJ_"+events.BucketPackages)
	if err != nil {
		t.Fatal(err)
	}
	subj := "$O." + events.BucketPackages + ".C." + info.NUID
	var seqs []uint64
	for seq := uint64(1); ; {
		m, err := stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subj))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, m.Sequence)
		seq = m.Sequence + 1
	}
	return stream, subj, seqs
}

// TestFetchTamperedChunks alters the stored chunks of an object behind the
// object store's back (its recorded digest still matches the job's pin):
// the bytes themselves are verified, and nothing altered is kept.
func TestFetchTamperedChunks(t *testing.T) {
	tb := testenv.StartBroker(t)
	ctx := t.Context()
	cases := []struct {
		name    string
		wantErr error
		tamper  func(t *testing.T, stream jetstream.Stream, subj string, seqs []uint64)
	}{
		{"a chunk rewritten", pkgcache.ErrDigestMismatch, func(t *testing.T, stream jetstream.Stream, subj string, seqs []uint64) {
			m, err := stream.GetMsg(ctx, seqs[0])
			if err != nil {
				t.Fatal(err)
			}
			altered := bytes.Clone(m.Data)
			altered[0] ^= 0xff
			// Delete the first chunk and store the altered one last.
			if err := stream.DeleteMsg(ctx, seqs[0]); err != nil {
				t.Fatal(err)
			}
			if _, err := tb.JS.Publish(ctx, subj, altered); err != nil {
				t.Fatal(err)
			}
		}},
		{"the last chunk removed", pkgcache.ErrDigestMismatch, func(t *testing.T, stream jetstream.Stream, _ string, seqs []uint64) {
			if err := stream.DeleteMsg(ctx, seqs[len(seqs)-1]); err != nil {
				t.Fatal(err)
			}
		}},
		// Bytes past the recorded size are never read: what is used is
		// exactly the pinned content.
		{"a chunk appended", nil, func(t *testing.T, _ jetstream.Stream, subj string, _ []uint64) {
			if _, err := tb.JS.Publish(ctx, subj, []byte("more")); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			version := fmt.Sprint(i)
			ref := put(t, tb.JS, "tampered", version, randomBytes(uint64(10+i), 600_000), nil)
			stream, subj, seqs := chunkMsgs(t, tb.JS, events.PackageObjectName("tampered", version))
			if len(seqs) < 3 {
				t.Fatalf("want several chunks, got %d", len(seqs))
			}
			tc.tamper(t, stream, subj, seqs)
			dir := t.TempDir()
			c := openCache(t, dir, pkgcache.Config{StallTimeout: 5 * time.Second})
			e, err := c.Fetch(ctx, tb.JS, ref)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("Fetch = %v", err)
				}
				if got, _ := os.ReadFile(e.Path); sum(got) != ref.SHA256 {
					t.Fatal("cached content is not the pinned content")
				}
				return
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Fetch of altered content = %v, want %v", err, tc.wantErr)
			}
			if files := dirFiles(t, dir); len(files) != 0 {
				t.Fatalf("altered content left %v in the cache", files)
			}
		})
	}
}

// TestFetchSurvivesBrokerRestart stops the broker in the middle of a
// download and starts it again: the download resumes and the content is
// verified; a download cancelled half-way leaves nothing that counts.
func TestFetchSurvivesBrokerRestart(t *testing.T) {
	tb := testenv.StartBroker(t)
	data := randomBytes(20, 24<<20)
	ref := put(t, tb.JS, "big", "1", data, nil)
	nc, js := tb.Connect(t)

	half := make(chan struct{})
	var once sync.Once
	resume := make(chan struct{})
	dir := t.TempDir()
	c := openCache(t, dir, pkgcache.Config{StallTimeout: 2 * time.Second, Retries: 10,
		Progress: func(_ pkgcache.Entry, received, total int64) {
			if received >= total/4 {
				once.Do(func() {
					close(half)
					<-resume // hold the download while the broker goes away
				})
			}
		}})
	done := make(chan error, 1)
	go func() {
		_, err := c.Fetch(context.Background(), js, ref)
		done <- err
	}()
	<-half
	tb.Stop()
	testenv.WaitFor(t, 10*time.Second, "the download's connection to notice the broker is gone", func() bool {
		return nc.Status() != nats.CONNECTED
	})
	close(resume)
	// Let the download hit the outage before the broker returns: it has
	// at most pullBytes buffered.
	testenv.WaitFor(t, 20*time.Second, "the download to stall or resume", func() bool {
		return c.Stats().Resumes > 0 || len(done) > 0
	})
	tb.Restart(t)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("fetch across a broker restart: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("fetch did not finish after the broker came back")
	}
	got, err := os.ReadFile(filepath.Join(dir, ref.SHA256))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("content after a resumed download differs (err %v)", err)
	}
	s := c.Stats()
	t.Logf("stats after a resumed download: %+v", s)
	if s.Downloads != 1 || s.Resumes == 0 {
		t.Fatalf("stats %+v: want one download that resumed", s)
	}
	noLeftovers(t, dir)

	// A download cancelled half-way leaves nothing; the next one starts
	// over and succeeds.
	dir2 := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	c2 := openCache(t, dir2, pkgcache.Config{Progress: func(_ pkgcache.Entry, received, total int64) {
		if received >= total/2 {
			cancel()
		}
	}})
	if _, err := c2.Fetch(ctx, js, ref); !errors.Is(err, pkgcache.ErrDownload) || pkgcache.Permanent(err) {
		t.Fatalf("cancelled fetch = %v, want a transient %v", err, pkgcache.ErrDownload)
	}
	if files := dirFiles(t, dir2); len(files) != 0 {
		t.Fatalf("a cancelled download left %v", files)
	}
	c3 := openCache(t, dir2, pkgcache.Config{})
	if e, err := c3.Fetch(context.Background(), js, ref); err != nil || !e.Downloaded {
		t.Fatalf("fetch after a cancelled one: downloaded %v, err %v", e.Downloaded, err)
	}
}

// TestEviction fills a 10 MiB cache with 4 MiB packages: the least
// recently used unpinned content goes first, pinned content never, and the
// cache never holds more than its limit.
func TestEviction(t *testing.T) {
	tb := testenv.StartBroker(t)
	ctx := t.Context()
	const mib = 1 << 20
	refs := map[string]events.PackageRef{}
	for i, v := range []string{"a", "b", "c", "d"} {
		refs[v] = put(t, tb.JS, "pkg", v, randomBytes(uint64(30+i), 4*mib), nil)
	}
	dir := t.TempDir()
	c := openCache(t, dir, pkgcache.Config{MaxBytes: 10 * mib})
	fetch := func(v string) error {
		_, err := c.Fetch(ctx, tb.JS, refs[v])
		if got := dirBytes(t, dir); got > 10*mib {
			t.Fatalf("cache holds %d bytes, over its limit of %d", got, 10*mib)
		}
		return err
	}
	must := func(v string) {
		t.Helper()
		if err := fetch(v); err != nil {
			t.Fatalf("fetch %s: %v", v, err)
		}
	}
	has := func(want ...string) {
		t.Helper()
		for _, v := range []string{"a", "b", "c", "d"} {
			wanted := strings.Contains(strings.Join(want, ","), v)
			if c.Has(refs[v].SHA256) != wanted {
				t.Fatalf("cache has %s = %v, want %v (stats %+v)", v, !wanted, wanted, c.Stats())
			}
		}
	}

	c.Pin(refs["a"].SHA256) // a pending job's package, fetched first
	must("a")
	must("b")
	must("c") // 12 MiB > 10: b (least recently used, unpinned) goes, not a
	has("a", "c")
	if s := c.Stats(); s.Evictions != 1 || s.Bytes != 8*mib {
		t.Fatalf("stats %+v: want one eviction and 8 MiB held", s)
	}

	c.Pin(refs["c"].SHA256)
	if err := fetch("d"); !errors.Is(err, pkgcache.ErrCacheFull) || pkgcache.Permanent(err) {
		t.Fatalf("fetch with the cache full of pinned content = %v, want a transient %v", err, pkgcache.ErrCacheFull)
	}
	has("a", "c")
	noLeftovers(t, dir)

	c.Unpin(refs["c"].SHA256)
	must("d") // c is unpinned now: it goes, a stays
	has("a", "d")

	// A use refreshes the order: with a unpinned and used last, d goes.
	c.Unpin(refs["a"].SHA256)
	must("a")
	must("b")
	has("a", "b")

	// Reopened with a lower limit, the cache evicts down to it, oldest first.
	c2 := openCache(t, dir, pkgcache.Config{MaxBytes: 5 * mib})
	if !c2.Has(refs["b"].SHA256) || c2.Has(refs["a"].SHA256) || dirBytes(t, dir) > 5*mib {
		t.Fatalf("reopened under 5 MiB: has a %v, b %v, %d bytes on disk; want b only", c2.Has(refs["a"].SHA256), c2.Has(refs["b"].SHA256), dirBytes(t, dir))
	}
}

// TestOpenCleansLeftovers: what a crash in the middle of a download or a
// commit leaves is removed; complete entries stay; damaged ones are
// downloaded again.
func TestOpenCleansLeftovers(t *testing.T) {
	tb := testenv.StartBroker(t)
	ctx := t.Context()
	data := randomBytes(40, 300_000)
	ref := put(t, tb.JS, "keep", "1", data, nil)
	dir := t.TempDir()
	c := openCache(t, dir, pkgcache.Config{})
	if _, err := c.Fetch(ctx, tb.JS, ref); err != nil {
		t.Fatal(err)
	}
	orphanSHA := sum([]byte("orphan"))
	for name, content := range map[string]string{
		"tmp-0123456789abcdef-42": "half a download",
		orphanSHA + ".json":       `{"sha256":"` + orphanSHA + `"}`,
		sum([]byte("nometa")):     "content without a record",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c2 := openCache(t, dir, pkgcache.Config{})
	if files := dirFiles(t, dir); len(files) != 2 || !c2.Has(ref.SHA256) {
		t.Fatalf("after reopening: %v, want only %s and its record", files, ref.SHA256)
	}

	// Damage the cached copy: the next fetch notices and downloads again.
	if err := os.WriteFile(filepath.Join(dir, ref.SHA256), bytes.Repeat([]byte{0}, len(data)), 0o600); err != nil {
		t.Fatal(err)
	}
	e, err := c2.Fetch(ctx, tb.JS, ref)
	if err != nil || !e.Downloaded {
		t.Fatalf("fetch of damaged cached content: downloaded %v, err %v; want a new download", e.Downloaded, err)
	}
	if got, _ := os.ReadFile(e.Path); !bytes.Equal(got, data) {
		t.Fatal("content after the new download differs")
	}
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name    string
		cfg     pkgcache.Config
		wantErr error
	}{
		{"defaults", pkgcache.Config{Dir: "x"}, nil},
		{"no dir", pkgcache.Config{}, pkgcache.ErrInvalidConfig},
		{"negative size", pkgcache.Config{Dir: "x", MaxBytes: -1}, pkgcache.ErrInvalidConfig},
		{"negative stall", pkgcache.Config{Dir: "x", StallTimeout: -time.Second}, pkgcache.ErrInvalidConfig},
		{"negative retries", pkgcache.Config{Dir: "x", Retries: -1}, pkgcache.ErrInvalidConfig},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.cfg.Validate(); !errors.Is(err, tc.wantErr) {
				t.Fatalf("Validate = %v, want %v", err, tc.wantErr)
			}
		})
	}
}
