package integration_test

import (
	"bufio"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"github.com/pcm-project/pcm/agent"
	"github.com/pcm-project/pcm/agent/journal"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/testenv"
)

// damagedJournal writes a damaged journal at path.
type damagedJournal struct {
	name   string
	damage func(t *testing.T, path string)
	want   error // the journal sentinel wrapped besides agent.ErrJournal
}

// writeJournal creates a real journal at path holding one done job.
func writeJournal(t *testing.T, path string) {
	t.Helper()
	j, err := journal.Open(path, journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.Put(journal.Record{JobID: "earlier-job", Phase: journal.PhaseDone, Attempt: 1, FinalState: "succeeded"}); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
}

func damagedJournals() []damagedJournal {
	write := func(b []byte) func(*testing.T, string) {
		return func(t *testing.T, path string) {
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	garbage := make([]byte, 64<<10)
	_, _ = rand.Read(garbage)
	return []damagedJournal{
		{"random bytes", write(garbage), journal.ErrCorrupt},
		{"a short text file", write([]byte("this is not a journal\n")), journal.ErrCorrupt},
		{"zeroed pages", write(make([]byte, 32<<10)), journal.ErrCorrupt},
		{"a truncated journal", func(t *testing.T, path string) {
			writeJournal(t, path)
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(path, fi.Size()/2); err != nil {
				t.Fatal(err)
			}
		}, journal.ErrCorrupt},
		{"a garbled record", func(t *testing.T, path string) {
			writeJournal(t, path)
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			err = db.Update(func(tx *bolt.Tx) error {
				return tx.Bucket([]byte("records")).Put([]byte("earlier-job"), []byte("\x00garbage{"))
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
		}, journal.ErrCorrupt},
		{"another program's bbolt file", func(t *testing.T, path string) {
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			err = db.Update(func(tx *bolt.Tx) error {
				b, err := tx.CreateBucket([]byte("settings"))
				if err != nil {
					return err
				}
				return b.Put([]byte("theme"), []byte("dark"))
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
		}, journal.ErrCorrupt},
		{"a directory where the file should be", func(t *testing.T, path string) {
			if err := os.Mkdir(path, 0o700); err != nil {
				t.Fatal(err)
			}
		}, journal.ErrWrite},
	}
}

// TestJournalUnusableStopsTheAgent puts a damaged or unreadable journal at
// the agent's journal path with a job waiting for the client: Service.Run
// returns at once an error wrapping agent.ErrJournal and the journal's
// sentinel, naming the file; the file is left as it was; nothing runs and
// the offer stays in the consumer, undelivered and unacked. pcm agent exits
// non-zero saying the same.
func TestJournalUnusableStopsTheAgent(t *testing.T) {
	env := testenv.StartBroker(t)
	p := newPublisher(t, env.JS)
	for i, tc := range damagedJournals() {
		t.Run(tc.name, func(t *testing.T) {
			client := "damaged-" + string(rune('a'+i))
			dir := t.TempDir()
			state := filepath.Join(dir, "state")
			if err := os.MkdirAll(state, 0o700); err != nil {
				t.Fatal(err)
			}
			path := agent.JournalPath(state)
			tc.damage(t, path)
			before := snapshot(t, path)
			enroll(t, env.JS, client)
			marker := filepath.Join(dir, "marker")
			id := publish(t, p, job(appendTo(marker), toClient(client)))

			start := time.Now()
			a := startAgent(t, env.URL, client, state)
			var err error
			select {
			case err = <-a.done:
				a.done <- err // for the cleanup's stop
			case <-a.svc.Ready():
				t.Fatal("the agent became ready on an unusable journal")
			case <-time.After(10 * time.Second):
				t.Fatal("Run did not return within 10s on an unusable journal")
			}
			if took := time.Since(start); took > 3*time.Second {
				t.Errorf("Run took %s to refuse the journal: want at once", took)
			}
			if !errors.Is(err, agent.ErrJournal) || !errors.Is(err, tc.want) {
				t.Fatalf("Run returned %v: want %v wrapping %v", err, agent.ErrJournal, tc.want)
			}
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("the error does not name the file %s: %v", path, err)
			}
			t.Logf("Run: %v", err)
			if after := snapshot(t, path); after != before {
				t.Fatalf("the journal was changed (%s, now %s): it must be left for the operator", before, after)
			}
			if markerLines(t, marker) != 0 {
				t.Fatal("a job ran with an unusable journal")
			}
			if sts := readStatuses(t, env.JS, client, id); len(sts) != 0 {
				t.Fatalf("statuses reported with an unusable journal: %+v", sts)
			}
			if acks, pending := ackPending(t, env.JS, client); acks != 0 || pending != 1 {
				t.Fatalf("consumer: %d unacked, %d pending; want the offer still pending, never delivered", acks, pending)
			}
			if i != 0 {
				return
			}
			// The binary says the same and exits non-zero.
			_, stderr, code := runPCM(t, nil, "agent", "--url", env.URL, "--client-id", client, "--state-dir", state)
			if code == 0 || !strings.Contains(stderr, path) || !strings.Contains(stderr, agent.ErrJournal.Error()) {
				t.Fatalf("pcm agent exited %d with stderr %q: want a failure naming %s", code, stderr, path)
			}
			if acks, pending := ackPending(t, env.JS, client); acks != 0 || pending != 1 || markerLines(t, marker) != 0 {
				t.Fatalf("pcm agent touched the offer: %d unacked, %d pending", acks, pending)
			}
		})
	}
}

// snapshot describes a file or directory enough to tell whether it changed.
func snapshot(t *testing.T, path string) string {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.IsDir() {
		return "directory"
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().String() + " " + string(b)
}

// agentProcess is a pcm agent process whose stderr (its JSON log) is read
// through a pipe: a pipe, unlike a log file, is not subject to the file size
// limit the disk-full test puts on the process.
type agentProcess struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	lines  []string
	exited chan struct{}
}

func startAgentProcess(t *testing.T, args ...string) *agentProcess {
	t.Helper()
	cmd := exec.Command(pcmBinary, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ap := &agentProcess{cmd: cmd, exited: make(chan struct{})}
	go func() {
		s := bufio.NewScanner(stderr)
		s.Buffer(make([]byte, 64<<10), 1<<20)
		for s.Scan() {
			ap.mu.Lock()
			ap.lines = append(ap.lines, s.Text())
			ap.mu.Unlock()
		}
		_ = cmd.Wait()
		close(ap.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-ap.exited
		if t.Failed() {
			t.Logf("log of pcm %s:\n%s", strings.Join(args, " "), tail(ap.log(), 6000))
		}
	})
	return ap
}

// log is everything the process logged so far.
func (ap *agentProcess) log() string {
	ap.mu.Lock()
	defer ap.mu.Unlock()
	return strings.Join(ap.lines, "\n")
}

// line returns the first log line holding every one of parts, or "".
func (ap *agentProcess) line(parts ...string) string {
	ap.mu.Lock()
	defer ap.mu.Unlock()
next:
	for _, l := range ap.lines {
		for _, p := range parts {
			if !strings.Contains(l, p) {
				continue next
			}
		}
		return l
	}
	return ""
}

// waitLine waits for a log line holding every one of parts.
func (ap *agentProcess) waitLine(t *testing.T, timeout time.Duration, parts ...string) string {
	t.Helper()
	var l string
	testenv.WaitFor(t, timeout, "a log line with "+strings.Join(parts, " and "), func() bool {
		l = ap.line(parts...)
		return l != ""
	})
	return l
}

// TestJournalWriteFailureRefusesTheJob makes the journal's writes fail while
// a real pcm agent runs, as on a full disk: the agent refuses to start the
// job (no run, no status, logged "refusing to start"), leaves the offer
// unacked, and when the disk has room again the offer comes back and the job
// runs once.
//
// The failure is a file size limit (RLIMIT_FSIZE, set with prlimit on the
// running agent, soft limit only) of one page (4 KiB): every bbolt commit
// writes its data pages at page 2 or beyond (offset >= 8 KiB), so every
// journal write then fails with EFBIG, deterministically, whatever pages the
// free list reuses. A full tmpfs would fail only the writes that reach
// never-written pages of the sparse file, which depends on bbolt's free list
// (and mounting needs privileges CI seldom has). The limit is put on after
// the agent opened and verified its journal (log "agent ready"), and the
// agent's log goes to a pipe, which the limit does not touch. Go ignores the
// SIGXFSZ that comes with EFBIG.
func TestJournalWriteFailureRefusesTheJob(t *testing.T) {
	t.Parallel() // it waits 30 s for the agent's nak delay: beside the others
	env := testenv.StartBroker(t)
	p := newPublisher(t, env.JS)
	const client = "diskfull"
	enroll(t, env.JS, client)
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	ap := startAgentProcess(t, "agent", "--url", env.URL, "--client-id", client, "--state-dir", state, "--lease", "2s")
	ap.waitLine(t, 15*time.Second, `"agent ready"`)

	path := agent.JournalPath(state)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	const limit = 4096
	if fi.Size() < 2*limit {
		t.Fatalf("the journal is %d bytes: the test needs its data pages beyond %d bytes", fi.Size(), limit)
	}
	pid := ap.cmd.Process.Pid
	var orig unix.Rlimit
	if err := unix.Prlimit(pid, unix.RLIMIT_FSIZE, nil, &orig); err != nil {
		t.Skipf("cannot read the agent's file size limit (prlimit: %v): this test needs Linux prlimit", err)
	}
	full := unix.Rlimit{Cur: limit, Max: orig.Max}
	if err := unix.Prlimit(pid, unix.RLIMIT_FSIZE, &full, nil); err != nil {
		t.Skipf("cannot limit the agent's file size (prlimit: %v)", err)
	}

	marker := filepath.Join(dir, "marker")
	id := publish(t, p, job(appendTo(marker), toClient(client)))
	refusal := ap.waitLine(t, 15*time.Second, "refusing to start", id)
	t.Logf("agent log: %s", refusal)
	if !strings.Contains(refusal, "file too large") {
		t.Fatalf("the refusal does not carry the write error: %s", refusal)
	}
	if l := ap.line("running job", id); l != "" {
		t.Fatalf("the job started although its start could not be journaled: %s", l)
	}
	if markerLines(t, marker) != 0 {
		t.Fatal("the job ran although its start could not be journaled")
	}
	if sts := readStatuses(t, env.JS, client, id); len(sts) != 0 {
		t.Fatalf("statuses of a job that did not start: %+v", sts)
	}
	if acks, pending := ackPending(t, env.JS, client); acks != 1 || pending != 0 {
		t.Fatalf("consumer: %d unacked, %d pending; want the offer delivered and unacked", acks, pending)
	}

	if testing.Short() {
		t.Log("-short: not waiting for the refused offer to come back (the agent's nak delay is 30s)")
		return
	}
	// Room on the disk again: the offer comes back after the agent's nak
	// delay and the job runs, once.
	if err := unix.Prlimit(pid, unix.RLIMIT_FSIZE, &orig, nil); err != nil {
		t.Fatal(err)
	}
	sts := waitFinal(t, env.JS, client, id, 60*time.Second)
	if fin := finals(sts); len(fin) != 1 || fin[0].State != events.StateSucceeded || fin[0].Attempt != 1 {
		t.Fatalf("after the disk has room: want one succeeded first attempt, got %+v", sts)
	}
	waitAcked(t, env.JS, client, 10*time.Second)
	if n := markerLines(t, marker); n != 1 {
		t.Fatalf("the job ran %d times", n)
	}

	// The failed writes left the journal sound: it opens and records the job done.
	_ = ap.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-ap.exited:
	case <-time.After(15 * time.Second):
		t.Fatal("pcm agent did not stop on SIGTERM")
	}
	j, err := journal.Open(path, journal.Options{})
	if err != nil {
		t.Fatalf("the journal does not open after the failed writes: %v", err)
	}
	defer j.Close()
	rec, ok, err := j.Get(id)
	if err != nil || !ok || rec.Phase != journal.PhaseDone || rec.Attempt != 1 {
		t.Fatalf("journal record of the job: %+v, found %v, %v", rec, ok, err)
	}
}
