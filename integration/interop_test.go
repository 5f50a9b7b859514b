package integration_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pcm-project/pcm/broker/auth"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/publisher"
	"github.com/pcm-project/pcm/testenv"
)

// interopEnv, set to 1, makes the interop tests fail instead of skip when
// Node.js or the example's packages are missing (.ci/run sets it after
// npm ci in examples/node).
const interopEnv = "PCM_TEST_INTEROP"

// nodeExample is the JavaScript publisher and reader of examples/node.
const nodeExample = "../examples/node"

// needNode skips (or, with PCM_TEST_INTEROP=1, fails) the test when node or
// the example's packages are missing.
func needNode(t *testing.T) {
	t.Helper()
	why := ""
	if _, err := exec.LookPath("node"); err != nil {
		why = "node is not installed"
	} else if _, err := os.Stat(filepath.Join(nodeExample, "node_modules")); err != nil {
		why = "the example's packages are not installed (cd examples/node && npm ci)"
	}
	if why == "" {
		return
	}
	if os.Getenv(interopEnv) == "1" {
		t.Fatalf("%s=1 but %s", interopEnv, why)
	}
	t.Skipf("%s; set %s=1 to make this a failure", why, interopEnv)
}

// runNode runs a script of the example and returns its stdout, stderr and
// exit code.
func runNode(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", args...)
	cmd.Dir = nodeExample
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("node %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// TestNodeSignatureVectors: the example in JavaScript computes the signing
// input of every test vector as pcm does, and verifies (or refuses) each
// signature as the vectors say (events.TestSignatureVectors checks them in
// Go).
func TestNodeSignatureVectors(t *testing.T) {
	needNode(t)
	out, errOut, code := runNode(t, "vectors.mjs", "../../events/testdata/signature-vectors.json")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || lines[len(lines)-1] != "5 passed, 0 failed" {
		t.Fatalf("node vectors.mjs: exit %d\n%s%s", code, out, errOut)
	}
}

// nodeStatus is a status as publish.mjs prints it.
type nodeStatus struct {
	ID         string `json:"id"`
	Source     string `json:"source"`
	State      string `json:"state"`
	ExitCode   *int   `json:"exit_code"`
	OutputTail string `json:"output_tail"`
}

// TestNodeInterop: offers built with the CloudEvents JavaScript SDK, signed
// in JavaScript and published with nats.js, in structured mode (to a client
// and a group: two copies, one Nats-Msg-Id each) and in binary mode (no
// datacontenttype in the event, application/json; charset=utf-8 on the
// wire), run on a real pcm agent that requires signed jobs; the example
// reads the statuses back from PCM_STATUS. An unsigned offer is rejected.
// On a secure broker the example connects with a publisher's credentials
// and the CA.
func TestNodeInterop(t *testing.T) {
	needNode(t)
	env := testenv.StartBroker(t)
	dir := t.TempDir()
	seed := filepath.Join(dir, "node.nk")
	pub, err := publisher.NewSigningKey(seed)
	if err != nil {
		t.Fatal(err)
	}
	enroll(t, env.JS, "js1", "jsgroup")
	startPCM(t, dir, nil, "agent", "--url", env.URL, "--client-id", "js1", "--state-dir", filepath.Join(dir, "state"), "--trusted-keys", pub)
	waitPulling(t, env.JS, "js1")

	conn := []string{"--url", env.URL}
	if s := env.Sec; s != nil {
		u := auth.User{Role: auth.RolePublisher, Name: "node"}
		conn = append(conn, "--creds", s.Creds(t, u), "--user", u.UserName(), "--publisher", "node")
		if s.Certs != nil {
			conn = append(conn, "--ca", s.Certs.CAFile)
		}
	}
	publishFromNode := func(t *testing.T, want string, args ...string) (string, []nodeStatus) {
		t.Helper()
		out, errOut, code := runNode(t, append(append([]string{"publish.mjs"}, conn...), args...)...)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) < 2 {
			t.Fatalf("node publish.mjs %v: exit %d, printed no status:\n%s%s", args, code, out, errOut)
		}
		id := lines[0]
		if events.ValidID("job id", id) != nil {
			t.Fatalf("node publish.mjs printed %q first, want a job id", id)
		}
		var sts []nodeStatus
		for _, l := range lines[1:] {
			var st nodeStatus
			if err := json.Unmarshal([]byte(l), &st); err != nil {
				t.Fatalf("status line %q: %v", l, err)
			}
			sts = append(sts, st)
		}
		last := sts[len(sts)-1]
		if last.State != want || (want == "succeeded") != (code == 0) {
			t.Fatalf("node publish.mjs %v: exit %d, statuses %+v; want %s\n%s", args, code, sts, want, errOut)
		}
		if last.Source != events.AgentSource("js1") {
			t.Fatalf("status source %q", last.Source)
		}
		return id, sts
	}

	t.Run("structured, to a client and a group", func(t *testing.T) {
		id, sts := publishFromNode(t, "succeeded", "--mode", "structured", "--seed-file", seed,
			"--target", "client:js1", "--target", "group:jsgroup", "--wait", "js1", "--", "echo", "hello from structured")
		if len(sts) != 2 || sts[0].State != "started" || !strings.Contains(sts[1].OutputTail, "hello from structured") {
			t.Fatalf("statuses %+v: want started, then succeeded with the output", sts)
		}
		// Both copies are stored: one Nats-Msg-Id per target.
		var copies []string
		for _, e := range readStored(t, env.JS, events.StreamJobs) {
			if e.id == id {
				copies = append(copies, e.subject)
			}
		}
		if strings.Join(copies, " ") != "pcm.jobs.client.js1 pcm.jobs.group.jsgroup" {
			t.Fatalf("PCM_JOBS holds the offer on %q, want the client's and the group's subject", copies)
		}
		waitAcked(t, env.JS, "js1", 10*time.Second)
		if fin := finals(readStatuses(t, env.JS, "js1", id)); len(fin) != 1 {
			t.Fatalf("the job ran %d times, want once for both copies", len(fin))
		}
	})
	t.Run("binary, to a group", func(t *testing.T) {
		_, sts := publishFromNode(t, "succeeded", "--mode", "binary", "--seed-file", seed,
			"--target", "group:jsgroup", "--wait", "js1", "--", "echo", "hello from binary")
		if !strings.Contains(sts[len(sts)-1].OutputTail, "hello from binary") {
			t.Fatalf("statuses %+v: want the output", sts)
		}
	})
	t.Run("unsigned is rejected", func(t *testing.T) {
		id, _ := publishFromNode(t, "rejected", "--target", "client:js1", "--wait", "js1", "--", "echo", "never")
		st := finals(readStatuses(t, env.JS, "js1", id))[0]
		if !strings.Contains(st.Reason, "unsigned event") {
			t.Fatalf("rejected with reason %q, want it to say the event is unsigned", st.Reason)
		}
	})
}
