package integration_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/agent"
	"github.com/pcm-project/pcm/agent/pkgcache"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/packages"
	"github.com/pcm-project/pcm/testenv"
)

// pkgLargeEnv opts into the 200 MiB variant of TestPackageFleet (the
// default is 20 MiB, to keep the suite fast on a small machine).
const pkgLargeEnv = "PCM_TEST_LARGE"

// pkgRandomFile writes size reproducible pseudo-random bytes to path and
// returns their sha256.
func pkgRandomFile(t testing.TB, path string, size int64, seed uint64) string {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	r := rand.New(rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 'p', 'c', 'm'}))
	buf := make([]byte, 1<<20)
	for left := size; left > 0; {
		n := min(int64(len(buf)), left)
		for i := int64(0); i < n; i += 8 {
			v := r.Uint64()
			for j := int64(0); j < 8 && i+j < n; j++ {
				buf[i+j] = byte(v >> (8 * j))
			}
		}
		if _, err := io.MultiWriter(f, h).Write(buf[:n]); err != nil {
			t.Fatal(err)
		}
		left -= n
	}
	return hex.EncodeToString(h.Sum(nil))
}

// pkgEndsSHA returns the sha256 of the first and of the last MiB of path.
func pkgEndsSHA(t testing.TB, path string) (head, tail string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := min(len(b), 1<<20)
	h, tl := sha256.Sum256(b[:n]), sha256.Sum256(b[len(b)-n:])
	return hex.EncodeToString(h[:]), hex.EncodeToString(tl[:])
}

// pkgPush pushes path with the built pcm binary and returns the package
// as pcm package list -o json reports it.
func pkgPush(t testing.TB, url, path, name, version string, extra ...string) packages.Info {
	t.Helper()
	args := append([]string{"package", "push", "--url", url, path, "--name", name, "--version", version, "--pushed-by", "ci"}, extra...)
	out, errOut, code := runPCM(t, nil, args...)
	if code != 0 || !strings.Contains(out, "pushed "+name+"@"+version) {
		t.Fatalf("pcm package push: exit %d, stdout %q, stderr %s", code, out, errOut)
	}
	out, errOut, code = runPCM(t, nil, "package", "list", "--url", url, "-o", "json")
	if code != 0 {
		t.Fatalf("pcm package list: exit %d: %s", code, errOut)
	}
	var list []packages.Info
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("pcm package list -o json: %v\n%s", err, out)
	}
	for _, p := range list {
		if p.Name == name && p.Version == version {
			return p
		}
	}
	t.Fatalf("pcm package list does not show %s@%s: %s", name, version, out)
	return packages.Info{}
}

// withCacheSize sets the agent's package cache limit.
func withCacheSize(n int64) agentOpts { return func(c *agent.Config) { c.CacheSize = n } }

// lockPuts watches PCM_LOCKS and records when each client's lock was taken.
type lockPuts struct {
	mu    sync.Mutex
	times map[string][]time.Time
}

func watchLockPuts(t testing.TB, js jetstream.JetStream) *lockPuts {
	t.Helper()
	kv, err := js.KeyValue(t.Context(), events.BucketLocks)
	if err != nil {
		t.Fatal(err)
	}
	w, err := kv.WatchAll(t.Context(), jetstream.UpdatesOnly())
	if err != nil {
		t.Fatal(err)
	}
	lp := &lockPuts{times: map[string][]time.Time{}}
	go func() {
		for e := range w.Updates() {
			if e != nil && e.Operation() == jetstream.KeyValuePut && e.Revision() > 0 {
				lp.mu.Lock()
				lp.times[e.Key()] = append(lp.times[e.Key()], e.Created())
				lp.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { _ = w.Stop() })
	return lp
}

// first returns the first time client's lock was taken at or after since.
func (lp *lockPuts) first(client string, since time.Time) (time.Time, bool) {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	for _, at := range lp.times[client] {
		if !at.Before(since) {
			return at, true
		}
	}
	return time.Time{}, false
}

// TestPackageFleet: a package pushed once with pcm package push and used by
// jobs on five agents is downloaded once per agent, verified, unpacked into
// each job's directory where the command sees it, without the lock held
// during the download; a second job for the same package downloads nothing.
// The package is 20 MiB, or 200 MiB with PCM_TEST_LARGE=1.
func TestPackageFleet(t *testing.T) {
	size := int64(20 << 20)
	if os.Getenv(pkgLargeEnv) == "1" {
		size = 200 << 20
	}
	env := testenv.StartBroker(t)
	p := newPublisher(t, env.JS)
	dir := t.TempDir()
	payload := filepath.Join(dir, "payload.bin")
	sha := pkgRandomFile(t, payload, size, 1)

	start := time.Now()
	info := pkgPush(t, env.URL, payload, "payload", "1")
	t.Logf("pcm package push of %d MiB took %s", size>>20, time.Since(start).Round(time.Millisecond))
	if !info.Complete || info.SHA256 != sha || info.Size != size || info.File != "payload.bin" || info.PushedBy != "ci" {
		t.Fatalf("pushed package %+v, want %d bytes with sha256 %s", info, size, sha)
	}

	clients := []string{"pk1", "pk2", "pk3", "pk4", "pk5"}
	agents := map[string]*runningAgent{}
	for _, c := range clients {
		enroll(t, env.JS, c, "pkgfleet")
		agents[c] = startAgent(t, env.URL, c, filepath.Join(dir, c))
	}
	for _, c := range clients {
		agents[c].waitReady(t)
	}
	locks := watchLockPuts(t, env.JS)

	// The command proves it sees the package in its directory: its size,
	// the sha256 of its first and last MiB (the agent verified the whole),
	// and where it runs.
	headSHA, tailSHA := pkgEndsSHA(t, payload)
	check := []string{"sh", "-c", `test "$(wc -c < payload.bin)" -eq ` + strconv.FormatInt(size, 10) +
		` && head -c 1048576 payload.bin | sha256sum && tail -c 1048576 payload.bin | sha256sum && pwd`}
	runJob := func(round int) time.Duration {
		t.Helper()
		j := job(check, toGroup("pkgfleet"))
		j.Package = &events.PackageRef{Name: "payload", Version: "1"}
		published := time.Now()
		id := publish(t, p, j)
		for _, c := range clients {
			sts := waitFinal(t, env.JS, c, id, 120*time.Second)
			fin := finals(sts)[0]
			if fin.State != events.StateSucceeded || !strings.Contains(fin.OutputTail, headSHA+"  -\n"+tailSHA+"  -\n") {
				t.Fatalf("round %d, %s: %s (%s), output %q; want succeeded with the sha256 of the package's ends", round, c, fin.State, fin.Reason, fin.OutputTail)
			}
			if want := filepath.Join(dir, c, "jobs", id, "work"); !strings.Contains(fin.OutputTail, want) {
				t.Fatalf("round %d, %s: ran in %q, want the job's directory %s", round, c, fin.OutputTail, want)
			}
			waitAcked(t, env.JS, c, 10*time.Second)
			t.Logf("round %d, %s: command started %s after the publish", round, c, fin.StartedAt.Sub(published).Round(time.Millisecond))
		}
		return time.Since(published)
	}

	took := runJob(1)
	t.Logf("first job on 5 agents (5 downloads of %d MiB): %s", size>>20, took.Round(time.Millisecond))
	for _, c := range clients {
		s := agents[c].svc.PackageCacheStats()
		if s.Downloads != 1 || s.DownloadedBytes != size || s.Hits != 0 || s.Entries != 1 {
			t.Fatalf("%s after the first job: %+v; want one download of %d bytes", c, s, size)
		}
		cached, err := os.ReadFile(filepath.Join(agent.PackageCacheDir(filepath.Join(dir, c)), sha+".json"))
		var rec pkgcache.Entry
		if err != nil || json.Unmarshal(cached, &rec) != nil || rec.Name != "payload" {
			t.Fatalf("%s: the cache holds no record of the package: %v", c, err)
		}
		// The lock was taken only once the package was downloaded.
		locked, ok := locks.first(c, rec.FetchedAt.Add(-time.Hour))
		if !ok || locked.Before(rec.FetchedAt) {
			t.Fatalf("%s: package downloaded at %s, lock taken at %s (seen %v): the lock must be taken after the download",
				c, rec.FetchedAt.Format(time.RFC3339Nano), locked.Format(time.RFC3339Nano), ok)
		}
	}

	took = runJob(2)
	t.Logf("second job on 5 agents (no download): %s", took.Round(time.Millisecond))
	for _, c := range clients {
		s := agents[c].svc.PackageCacheStats()
		if s.Downloads != 1 || s.DownloadedBytes != size || s.Hits != 1 {
			t.Fatalf("%s after the second job: %+v; want still one download and one cache hit", c, s)
		}
	}
}

// TestPackageDirectory: a directory pushed as a package is unpacked with its
// tree, executable bits and symlinks, and each attempt starts afresh.
func TestPackageDirectory(t *testing.T) {
	env := testenv.StartBroker(t)
	p := newPublisher(t, env.JS)
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	for path, body := range map[string]string{
		"bin/install.sh": "#!/bin/sh\nset -e\ncat ../conf/app.conf\ntest ! -e leftover\ntouch leftover\necho attempt $PCM_ATTEMPT\nexit 1\n",
		"conf/app.conf":  "setting=42\n",
	} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(tree, path)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(tree, path), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("bin/install.sh", filepath.Join(tree, "install")); err != nil {
		t.Fatal(err)
	}
	info := pkgPush(t, env.URL, tree, "tree", "1.0")
	if info.Format != events.PackageFormatTarGz {
		t.Fatalf("a directory was pushed as %q", info.Format)
	}
	enroll(t, env.JS, "pkdir")
	startAgent(t, env.URL, "pkdir", filepath.Join(dir, "state")).waitReady(t)

	// The script fails if an earlier attempt's file is still there, and
	// fails anyway: two attempts, each in a fresh copy of the package.
	j := job([]string{"sh", "-c", "cd bin && ../install"}, toClient("pkdir"))
	j.Package = &events.PackageRef{Name: "tree", Version: "1.0"}
	j.MaxAttempts = 2
	id := publish(t, p, j)
	testenv.WaitFor(t, 30*time.Second, "two failed attempts", func() bool {
		return len(finals(readStatuses(t, env.JS, "pkdir", id))) == 2
	})
	for _, fin := range finals(readStatuses(t, env.JS, "pkdir", id)) {
		want := fmt.Sprintf("setting=42\nattempt %d\n", fin.Attempt)
		if fin.State != events.StateFailed || fin.ExitCode == nil || *fin.ExitCode != 1 || fin.OutputTail != want {
			t.Fatalf("attempt %d: %s, exit %v, output %q; want failed with exit 1 and output %q", fin.Attempt, fin.State, fin.ExitCode, fin.OutputTail, want)
		}
	}
	waitAcked(t, env.JS, "pkdir", 10*time.Second)
}

// TestPackageAlteredOrMissing: a package whose stored bytes are altered (or
// which is removed) after the job was published is refused by the agent:
// the job ends failed with the reason, the command never runs, the offer
// is acked.
func TestPackageAlteredOrMissing(t *testing.T) {
	env := testenv.StartBroker(t)
	p := newPublisher(t, env.JS)
	pk := packages.NewStore(env.JS)
	obs, err := env.JS.ObjectStore(t.Context(), events.BucketPackages)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()

	cases := []struct {
		name   string
		after  func(t *testing.T, spec string) // what happens to the package once the job is published
		reason string
	}{
		{"content replaced behind pcm's back", func(t *testing.T, spec string) {
			if _, err := obs.PutString(t.Context(), spec, "#!/bin/sh\necho evil\n"); err != nil {
				t.Fatal(err)
			}
		}, "digest mismatch"},
		{"stored chunks altered in place", func(t *testing.T, spec string) {
			oi, err := obs.GetInfo(t.Context(), spec)
			if err != nil {
				t.Fatal(err)
			}
			stream, err := env.JS.Stream(t.Context(), "OBJ_"+events.BucketPackages)
			if err != nil {
				t.Fatal(err)
			}
			subj := "$O." + events.BucketPackages + ".C." + oi.NUID
			m, err := stream.GetMsg(t.Context(), 1, jetstream.WithGetMsgSubject(subj))
			if err != nil {
				t.Fatal(err)
			}
			altered := bytes.Replace(m.Data, []byte("exit 0"), []byte("exit 7"), 1)
			if err := stream.DeleteMsg(t.Context(), m.Sequence); err != nil {
				t.Fatal(err)
			}
			if _, err := env.JS.Publish(t.Context(), subj, altered); err != nil {
				t.Fatal(err)
			}
		}, "digest mismatch"},
		{"package removed", func(t *testing.T, spec string) {
			if err := pk.Remove(t.Context(), spec); err != nil {
				t.Fatal(err)
			}
		}, "missing"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			client := fmt.Sprintf("pkbad%d", i)
			marker := filepath.Join(dir, client+"-ran")
			script := filepath.Join(dir, client+".sh")
			if err := os.WriteFile(script, []byte("#!/bin/sh\necho ran >> "+marker+"\nexit 0\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			version := strconv.Itoa(i)
			if _, err := pk.Push(t.Context(), script, packages.PushOptions{Name: "victim", Version: version}); err != nil {
				t.Fatal(err)
			}
			enroll(t, env.JS, client)
			j := job([]string{"./" + client + ".sh"}, toClient(client))
			j.Package = &events.PackageRef{Name: "victim", Version: version}
			id := publish(t, p, j)
			tc.after(t, "victim@"+version)

			a := startAgent(t, env.URL, client, filepath.Join(dir, client))
			a.waitReady(t)
			sts := waitFinal(t, env.JS, client, id, 20*time.Second)
			waitAcked(t, env.JS, client, 10*time.Second)
			if len(sts) != 1 || sts[0].State != events.StateFailed || !strings.Contains(sts[0].Reason, tc.reason) || !strings.Contains(sts[0].Reason, "victim@"+version) {
				t.Fatalf("statuses %+v: want one failed status whose reason names the package and says %q", sts, tc.reason)
			}
			t.Logf("reason: %s", sts[0].Reason)
			if n := markerLines(t, marker); n != 0 {
				t.Fatalf("the command ran %d times", n)
			}
			if _, err := os.Stat(filepath.Join(dir, client, "jobs", id, "work")); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("the refused package left a work directory (%v)", err)
			}
			if s := a.svc.PackageCacheStats(); s.Entries != 0 {
				t.Fatalf("the refused package is in the cache: %+v", s)
			}
		})
	}
}

// TestPackagePublishMissing: pcm publish refuses a job naming a package that
// does not exist, with a clear error, and sends nothing.
func TestPackagePublishMissing(t *testing.T) {
	env := testenv.StartBroker(t)
	dir := t.TempDir()
	jobFile := filepath.Join(dir, "job.yaml")
	if err := os.WriteFile(jobFile, []byte("clients: [c1]\npackage: missing@1\ncommand:\n  argv: [./setup.sh]\n  automated: true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"publish", "--url", env.URL, "--client", "c1", "--package", "missing@1", "--", "./setup.sh"},
		{"publish", "--url", env.URL, "-f", jobFile},
	} {
		out, errOut, code := runPCM(t, nil, args...)
		if code == 0 || out != "" {
			t.Fatalf("pcm %s: exit %d, stdout %q; want a refusal", strings.Join(args, " "), code, out)
		}
		for _, want := range []string{"package not found", "missing@1", "pcm package push"} {
			if !strings.Contains(errOut, want) {
				t.Fatalf("pcm %s: stderr %q does not say %q", strings.Join(args, " "), errOut, want)
			}
		}
	}
	// A malformed spec is refused before connecting.
	if _, errOut, code := runPCM(t, nil, "publish", "--url", "nats://127.0.0.1:1", "--client", "c1", "--package", "nover", "--", "true"); code == 0 || !strings.Contains(errOut, "NAME@VERSION") {
		t.Fatalf("--package nover: exit %d, stderr %q", code, errOut)
	}
	s, err := env.JS.Stream(t.Context(), events.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	if n := s.CachedInfo().State.Msgs; n != 0 {
		t.Fatalf("PCM_JOBS holds %d offers after refused publishes", n)
	}
}

// TestPackageCacheEviction: an agent with a 10 MiB cache runs jobs for
// three 4 MiB packages: the cache stays under its limit, the least recently
// used package goes first, the package of the running job stays; a
// package larger than the whole cache fails its job with the reason.
func TestPackageCacheEviction(t *testing.T) {
	const mib = 1 << 20
	env := testenv.StartBroker(t)
	p := newPublisher(t, env.JS)
	dir := t.TempDir()
	shas := map[string]string{}
	for i, v := range []string{"a", "b", "c", "big"} {
		size := int64(4 * mib)
		if v == "big" {
			size = 12 * mib
		}
		path := filepath.Join(dir, "blob-"+v)
		shas[v] = pkgRandomFile(t, path, size, uint64(10+i))
		if _, err := packages.NewStore(env.JS).Push(t.Context(), path, packages.PushOptions{Name: "blob", Version: v}); err != nil {
			t.Fatal(err)
		}
	}
	enroll(t, env.JS, "pkevict")
	state := filepath.Join(dir, "state")
	a := startAgent(t, env.URL, "pkevict", state, withCacheSize(10*mib))
	a.waitReady(t)
	cacheDir := agent.PackageCacheDir(state)
	cacheBytes := func() int64 {
		var n int64
		des, _ := os.ReadDir(cacheDir)
		for _, de := range des {
			if fi, err := de.Info(); err == nil && !strings.HasSuffix(de.Name(), ".json") {
				n += fi.Size()
			}
		}
		return n
	}
	// Each job checks that its own package is in the cache while it runs.
	run := func(v string) events.JobStatus {
		t.Helper()
		j := job([]string{"sh", "-c", "test -f " + filepath.Join(cacheDir, shas[v]) + " && test -f blob-" + v}, toClient("pkevict"))
		j.Package = &events.PackageRef{Name: "blob", Version: v}
		id := publish(t, p, j)
		fin := finals(waitFinal(t, env.JS, "pkevict", id, 30*time.Second))[0]
		if got := cacheBytes(); got > 10*mib {
			t.Fatalf("after the job for %s the cache holds %d bytes, over its 10 MiB limit", v, got)
		}
		return fin
	}
	has := func(v string) bool {
		_, err := os.Stat(filepath.Join(cacheDir, shas[v]))
		return err == nil
	}
	for _, v := range []string{"a", "b", "a", "c"} { // a used again: b is the least recently used
		if fin := run(v); fin.State != events.StateSucceeded {
			t.Fatalf("job for %s: %s (%s)", v, fin.State, fin.Reason)
		}
	}
	if !has("a") || has("b") || !has("c") {
		t.Fatalf("cache has a %v, b %v, c %v; want a and c (b least recently used)", has("a"), has("b"), has("c"))
	}
	if s := a.svc.PackageCacheStats(); s.Evictions != 1 || s.Downloads != 3 || s.Hits != 1 {
		t.Fatalf("stats %+v: want 3 downloads, 1 hit, 1 eviction", s)
	}
	fin := run("big")
	if fin.State != events.StateFailed || !strings.Contains(fin.Reason, "larger than the cache") || !strings.Contains(fin.Reason, "--cache-size") {
		t.Fatalf("job for a 12 MiB package with a 10 MiB cache: %s (%s); want failed, naming --cache-size", fin.State, fin.Reason)
	}
}

// TestPackageJobDirUnprepared: a job whose directory cannot be prepared
// (here a file stands where the directory must be; under Wine it was a
// removal the file system refused) ends with one failed status whose
// reason names the path and the error, and is acked: no retry loop, even
// with attempts left.
func TestPackageJobDirUnprepared(t *testing.T) {
	env := testenv.StartBroker(t)
	p := newPublisher(t, env.JS)
	pk := packages.NewStore(env.JS)
	dir := t.TempDir()
	const client = "pkdir"
	marker := filepath.Join(dir, "ran")
	script := filepath.Join(dir, "job.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho ran >> "+marker+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := pk.Push(t.Context(), script, packages.PushOptions{Name: "tool", Version: "1"}); err != nil {
		t.Fatal(err)
	}
	enroll(t, env.JS, client)
	j := job([]string{"./job.sh"}, toClient(client))
	j.Package = &events.PackageRef{Name: "tool", Version: "1"}
	j.MaxAttempts = 2
	id := publish(t, p, j)
	state := filepath.Join(dir, client)
	blocker := filepath.Join(state, "jobs", id)
	if err := os.MkdirAll(filepath.Dir(blocker), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(blocker, []byte("in the way\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	a := startAgent(t, env.URL, client, state)
	a.waitReady(t)
	sts := waitFinal(t, env.JS, client, id, 20*time.Second)
	waitAcked(t, env.JS, client, 10*time.Second)
	if len(sts) != 1 || sts[0].State != events.StateFailed || !strings.Contains(sts[0].Reason, blocker) ||
		!strings.Contains(sts[0].Reason, pkgcache.ErrUnpack.Error()) {
		t.Fatalf("statuses %+v: want one failed status whose reason names %s", sts, blocker)
	}
	t.Logf("reason: %s", sts[0].Reason)
	if n := markerLines(t, marker); n != 0 {
		t.Fatalf("the command ran %d times", n)
	}
}
