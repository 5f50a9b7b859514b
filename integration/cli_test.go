package integration_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/events"
)

var (
	brokerReadyLine = regexp.MustCompile(`^pcm broker ready: (nats://\S+)$`)
	upLine          = regexp.MustCompile(`^pcm is up: broker (nats://\S+) `)
	jobIDLine       = regexp.MustCompile(`^[0-9A-Z]{26}$`)
)

func touch(t testing.TB, path string) {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

func dial(t testing.TB, url string, opts ...nats.Option) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// TestBrokerBinary runs pcm broker, waits for its URL line (within 5 s of
// launch), asks JetStream for the provisioned streams, stops it with
// SIGTERM and starts it again on the same data dir.
func TestBrokerBinary(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	start := time.Now()
	b := startPCM(t, dir, nil, "broker", "--data", data, "--listen", "127.0.0.1:-1")
	url := b.stdout.waitLine(t, brokerReadyLine, 5*time.Second)[1]
	js := dial(t, url)
	ctx := t.Context()
	for _, s := range []string{events.StreamJobs, events.StreamStatus} {
		if _, err := js.Stream(ctx, s); err != nil {
			t.Fatalf("stream %s: %v", s, err)
		}
	}
	t.Logf("pcm broker answered JetStream %s after launch", time.Since(start).Round(time.Millisecond))
	if _, err := js.Publish(ctx, "pcm.jobs.all", []byte("kept")); err != nil {
		t.Fatal(err)
	}
	if err := b.stopGracefully(t, 10*time.Second); err != nil {
		t.Fatalf("pcm broker exited with %v on SIGTERM", err)
	}
	b2 := startPCM(t, dir, nil, "broker", "--data", data, "--listen", "127.0.0.1:-1")
	url = b2.stdout.waitLine(t, brokerReadyLine, 5*time.Second)[1]
	js = dial(t, url)
	s, err := js.Stream(ctx, events.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	if n := s.CachedInfo().State.Msgs; n != 1 {
		t.Fatalf("after a restart PCM_JOBS holds %d messages, want 1", n)
	}
}

// TestUpThenPublish is the README's first run: pcm up prints its hint last,
// then pcm publish --all -- echo hello prints a job id, and the agent
// reports succeeded with the output hello, which pcm status -o wide shows.
func TestUpThenPublish(t *testing.T) {
	dir := t.TempDir()
	up := startPCM(t, dir, nil, "up", "--data", filepath.Join(dir, "data"), "--listen", "127.0.0.1:-1", "--client-id", "upbox")
	url := up.stdout.waitLine(t, upLine, 10*time.Second)[1]
	// Its hint comes last, after the broker's and the agent's logs.
	up.stdout.waitLine(t, regexp.MustCompile(`^try, in another terminal:$`), time.Second)
	up.stdout.waitLine(t, regexp.MustCompile(`^  pcm publish --url `+regexp.QuoteMeta(url)+` --all -- echo hello$`), time.Second)
	if b, _ := os.ReadFile(up.logf); !strings.Contains(string(b), "agent ready") {
		t.Fatalf("pcm up printed its hint before its agent was ready; its log:\n%s", b)
	}
	out, errOut, code := runPCM(t, nil, "publish", "--url", url, "--all", "--", "echo", "hello")
	if code != 0 {
		t.Fatalf("pcm publish exited %d: %s", code, errOut)
	}
	id := strings.TrimSpace(out)
	if !jobIDLine.MatchString(id) {
		t.Fatalf("pcm publish printed %q, want a job id", out)
	}
	js := dial(t, url)
	sts := waitFinal(t, js, "upbox", id, 15*time.Second)
	fin := finals(sts)
	if fin[0].State != events.StateSucceeded || !strings.Contains(fin[0].OutputTail, "hello") {
		t.Fatalf("want succeeded with hello, got %+v", fin[0])
	}
	out, errOut, code = runPCM(t, nil, "status", "--url", url, id, "-o", "wide")
	if code != 0 || !regexp.MustCompile(`(?m)^upbox +succeeded +0 +service .* hello +-$`).MatchString(out) {
		t.Fatalf("pcm status -o wide: exit %d, %s%s", code, out, errOut)
	}
}

// TestPublishRefusesBadFlags checks that a bad flag publishes nothing and
// says what is wrong.
func TestPublishRefusesBadFlags(t *testing.T) {
	dir := t.TempDir()
	up := startPCM(t, dir, nil, "broker", "--data", filepath.Join(dir, "data"), "--listen", "127.0.0.1:-1")
	url := up.stdout.waitLine(t, brokerReadyLine, 5*time.Second)[1]
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no target", []string{"--", "true"}, "no target"},
		{"no command", []string{"--all"}, "no command"},
		{"bad client id", []string{"--client", "a.b", "--", "true"}, "invalid id"},
		{"expire before offer", []string{"--all", "--offer-after", "+2h", "--expire-after", "+1h", "--", "true"}, "invalid time window"},
		{"bad time", []string{"--all", "--expire-after", "tomorrow", "--", "true"}, "--expire-after"},
		{"beyond retention", []string{"--all", "--expire-after", "+9000h", "--", "true"}, "retention"},
		{"bad platform", []string{"--all", "--platform", "linux", "--", "true"}, "invalid platform"},
		{"huge timeout", []string{"--all", "--timeout", "48h", "--", "true"}, "invalid timeout"},
		{"optional and mandatory", []string{"--all", "--optional", "--mandatory-after", "+1h", "--", "true"}, "contradict"},
		{"rings not increasing", []string{"--all", "--rings", "10,5,100", "--soak", "1h", "--", "true"}, "rollout.rings[1] is 5%, not more than the ring before it"},
		{"ring over 100", []string{"--all", "--rings", "10,150", "--soak", "1h", "--", "true"}, "rollout.rings[1] is 150%: a ring is at most 100%"},
		{"soak 0 with rings", []string{"--all", "--rings", "10,100", "--", "true"}, "rollout.soak is 0 with 2 rings"},
		{"threshold over 100", []string{"--all", "--rings", "100", "--halt-at", "120%", "--", "true"}, "rollout.halt_at is 120%"},
		{"threshold negative", []string{"--all", "--rings", "100", "--halt-at", "-1", "--", "true"}, "rollout.halt_at is -1%"},
		{"threshold without rings", []string{"--all", "--halt-at", "5%", "--", "true"}, "--halt-at stages a rollout: give its rings with --rings"},
		{"requires itself", []string{"--all", "--job-id", "self", "--requires", "self", "--", "true"}, "requires[0] is the job itself"},
		{"empty detect", []string{"--all", "--detect", " ", "--", "true"}, "--detect is empty"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, errOut, code := runPCM(t, nil, append([]string{"publish", "--url", url}, tc.args...)...)
			if code == 0 || !strings.Contains(errOut, tc.want) {
				t.Fatalf("exit %d, stderr %q: want an error mentioning %q", code, errOut, tc.want)
			}
		})
	}
	js := dial(t, url)
	s, err := js.Stream(t.Context(), events.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	if n := s.CachedInfo().State.Msgs; n != 0 {
		t.Fatalf("refused publishes stored %d messages", n)
	}
	// A cycle of two: the second job is refused, naming the cycle. (No
	// client is enrolled on this broker: --force publishes to none.)
	if _, errOut, code := runPCM(t, nil, "publish", "--url", url, "--all", "--force", "--job-id", "cyc-a", "--requires", "cyc-b", "--", "true"); code != 0 {
		t.Fatalf("publishing a job requiring one not published yet: exit %d, %s", code, errOut)
	}
	_, errOut, code := runPCM(t, nil, "publish", "--url", url, "--all", "--force", "--job-id", "cyc-b", "--requires", "cyc-a", "--", "true")
	if code == 0 || !strings.Contains(errOut, "requires") || !strings.Contains(errOut, "cyc-b -> cyc-a -> cyc-b") {
		t.Fatalf("a cycle of two: exit %d, stderr %q: want it refused, naming the cycle", code, errOut)
	}
}
