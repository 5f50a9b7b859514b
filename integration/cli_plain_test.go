package integration_test

import (
	"encoding/json"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/pcm-project/pcm/broker/auth"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/testenv"
)

// readmeJobFile is the job file example of README.md.
func readmeJobFile(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "A job file for `pcm publish -f`")
	if i < 0 {
		t.Fatal("README.md has no job file example")
	}
	s = s[i:]
	start := strings.Index(s, "```yaml\n")
	end := strings.Index(s[start+8:], "```")
	if start < 0 || end < 0 {
		t.Fatal("README.md's job file example is not in a yaml block")
	}
	return s[start+8 : start+8+end]
}

// TestCLISpeaksPlainly runs the built pcm as a new user would and checks
// the exact line it ends with and its exit code: the README's job file
// publishes, a job file's error names its field, a target matching no
// enrolled client is refused unless --force (and --wait names it at once),
// contradictory flags are refused, status shows the output and the
// publisher, --watch exits with --wait's codes, a busy agent's next job is
// queued behind the running one, cancelled is not failed, cancelling a job
// that is over says so and exits 1, desktop run prints the output, a busy
// port names the address, -o speaks one vocabulary (table, wide, json,
// yaml) with a variable per command, and argument errors say the usage.
func TestCLISpeaksPlainly(t *testing.T) {
	env := testenv.StartBroker(t)
	enroll(t, env.JS, "plain1", "lab")
	startAgent(t, env.URL, "plain1", t.TempDir()).waitReady(t)
	procEnv := processEnv(t, env.URL, auth.User{Role: auth.RoleAdmin, Name: "admin"})
	pcm := func(args ...string) (string, string, int) {
		t.Helper()
		return runPCM(t, procEnv, append([]string{args[0], "--url", env.URL}, args[1:]...)...)
	}
	dir := t.TempDir()
	write := func(name, content string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// fails asserts exit code 1, nothing on stdout and want as the last
	// line of stderr.
	fails := func(t *testing.T, want string, args ...string) {
		t.Helper()
		out, errOut, code := pcm(args...)
		if code != 1 || out != "" || lastLine(errOut) != want {
			t.Fatalf("pcm %s: exit %d, stdout %q, last line %q\nwant exit 1 and %q", strings.Join(args, " "), code, out, lastLine(errOut), want)
		}
	}
	publish := func(t *testing.T, args ...string) string {
		t.Helper()
		out, errOut, code := pcm(append([]string{"publish"}, args...)...)
		id := strings.TrimSpace(out)
		if code != 0 || !jobIDLine.MatchString(id) {
			t.Fatalf("pcm publish %s: exit %d, stdout %q, stderr %q", strings.Join(args, " "), code, out, errOut)
		}
		return id
	}
	who := "" // the publisher's name: the system user's on an open broker
	if testenv.SecurityOf(env.URL) == nil {
		u, err := user.Current()
		if err != nil {
			t.Fatal(err)
		}
		who = u.Username
	}

	t.Run("the README's job file publishes", func(t *testing.T) {
		f := write("readme.yaml", readmeJobFile(t))
		id := publish(t, "-f", f)
		// Its platforms are windows/*: a linux agent says not_applicable.
		if got := finals(waitFinal(t, env.JS, "plain1", id, 15*time.Second))[0].State; got != events.StateNotApplicable && !strings.HasPrefix(runtime.GOOS+"/"+runtime.GOARCH, "windows/") {
			t.Fatalf("the README's job ended %s on this platform, want not_applicable", got)
		}
	})

	t.Run("a job file's error names the file and its field", func(t *testing.T) {
		f := write("string.yaml", "all: true\ncommand: \"echo hi\"\n")
		fails(t, "pcm: job file "+f+": command: got a string, want an object (name, argv, shell, background, automated, platforms, timeout, success_exit_codes, may_reboot)", "publish", "-f", f)
		f = write("unknown.yaml", "all: true\ncommand:\n  argv: [\"true\"]\n  timeout: 1m\n  bogus: 1\n")
		fails(t, "pcm: job file "+f+`: command: unknown field "bogus": command has the fields name, argv, shell, background, automated, platforms, timeout, success_exit_codes, may_reboot (see README.md)`, "publish", "-f", f)
		f = write("unknown-top.yaml", "all: true\nbogus: 1\ncommand:\n  argv: [\"true\"]\n  timeout: 1m\n")
		fails(t, "pcm: job file "+f+`: unknown field "bogus": a job file has the fields job_id, name, package, clients, groups, all, offer_after, mandatory_after, expire_after, optional, max_attempts, command, rollout, detect, requires (see README.md)`, "publish", "-f", f)
		f = write("time.yaml", "all: true\nexpire_after: tomorrow\ncommand:\n  argv: [\"true\"]\n  timeout: 1m\n")
		fails(t, "pcm: expire_after (job file "+f+`): invalid time: "tomorrow": give RFC 3339 (2026-11-21T10:00:00Z) or a duration from now (+2h, +7d, +1d12h, -24h)`, "publish", "-f", f)
	})

	t.Run("a target matching no enrolled client is refused", func(t *testing.T) {
		fails(t, "pcm: target matches no enrolled client: group labb has no enrolled client (groups with clients: lab): check the names, or publish anyway with --force (the job then waits for clients enrolled later)",
			"publish", "--group", "labb", "--", "true")
		fails(t, "pcm: target matches no enrolled client: client nosuch is not enrolled: check the names, or publish anyway with --force (the job then waits for clients enrolled later)",
			"publish", "--client", "nosuch", "--wait", "--", "true")
		// With --force it publishes, and --wait names the missing client at
		// once (its progress goes to stderr), not at its timeout.
		p := startPCM(t, dir, procEnv, "publish", "--url", env.URL, "--client", "nosuch", "--client", "plain1", "--force", "--wait", "--wait-timeout", "60s", "--", "true")
		line := regexp.MustCompile(`(?m)^not enrolled, so they cannot receive the job until pcm enroll: nosuch$`)
		testenv.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
			if b, _ := os.ReadFile(p.logf); !line.Match(b) {
				return &shownError{string(b)}
			}
			return nil
		})
	})

	t.Run("contradictory flags are refused", func(t *testing.T) {
		fails(t, "pcm: --background and --interactive contradict each other: a background job runs in the service and is never shown to the user; give one",
			"publish", "--all", "--background", "--interactive", "--", "true")
		fails(t, "pcm: --optional and --background contradict each other: an optional job runs only when a user picks it at the desktop, which never shows a background job; give one",
			"publish", "--all", "--background", "--optional", "--", "true")
	})

	t.Run("status shows the output and the publisher, and --watch exits", func(t *testing.T) {
		id := publish(t, "--client", "plain1", "--", "echo", "tail-marker")
		out, errOut, code := pcm("status", id, "--watch")
		if code != 0 || lastLine(out) != "1 client: 1 succeeded (1 done, 0 failed)" {
			t.Fatalf("pcm status --watch of a job that succeeds: exit %d, last line %q, stderr %q", code, lastLine(out), errOut)
		}
		head := regexp.MustCompile(`^job ` + id + ` by (\S+) at \S+ to client:plain1, expires \S+$`)
		m := head.FindStringSubmatch(strings.SplitN(out, "\n", 2)[0])
		if m == nil || (who != "" && m[1] != who) {
			t.Fatalf("pcm status's first line %q, want it to match %s by %s", strings.SplitN(out, "\n", 2)[0], head, who)
		}
		out, _, _ = pcm("status", id, "-o", "wide")
		if row := regexp.MustCompile(`(?m)^plain1 +succeeded +0 +service .* tail-marker +-$`); !row.MatchString(out) {
			t.Fatalf("pcm status -o wide shows no output tail:\n%s", out)
		}
		if out, _, _ = pcm("status", id, "-o", "json"); !strings.Contains(out, `"output_tail": "tail-marker\n"`) {
			t.Fatalf("pcm status -o json has no output tail:\n%s", out)
		}
		if out, _, _ = pcm("audit", "--job", id); who != "" && !regexp.MustCompile(`(?m)^\S+ +offered +`+id+` +\S+ +- +`+regexp.QuoteMeta(who)+`$`).MatchString(out) {
			t.Fatalf("pcm audit does not name the publisher %s:\n%s", who, out)
		}
		// Cancelling a job that is over says so.
		fails(t, "pcm: job "+id+" is already over on every client it targets (1 succeeded): nothing to cancel", "cancel", id)

		// Nor is an expired job cancelled.
		expired := publish(t, "--client", "ghost", "--force", "--expire-after", "+1s", "--", "true")
		out, _, _ = pcm("status", expired, "-o", "json")
		var st struct {
			ExpireAfter time.Time `json:"expire_after"`
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("pcm status -o json: %v\n%s", err, out)
		}
		testenv.WaitFor(t, 10*time.Second, "the job to expire", func() bool { return time.Now().After(st.ExpireAfter) })
		fails(t, "pcm: job "+expired+" expired at "+st.ExpireAfter.Local().Format(time.RFC3339)+": nothing runs it any more, nothing to cancel", "cancel", expired)

		id = publish(t, "--client", "plain1", "--", "sh", "-c", "exit 3")
		out, errOut, code = pcm("status", id, "--watch")
		if code != 1 || lastLine(errOut) != "pcm: job "+id+" failed on 1 of 1 client: plain1 (failed, exit 3: exit code 3 is not a success code)" {
			t.Fatalf("pcm status --watch of a job that fails: exit %d, stdout %q, last line %q", code, out, lastLine(errOut))
		}
	})

	t.Run("cancelled is not failed", func(t *testing.T) {
		id := publish(t, "--client", "plain1", "--offer-after", "+1h", "--", "true")
		if out, errOut, code := pcm("cancel", id); code != 0 || out != "cancelled "+id+"\n" {
			t.Fatalf("pcm cancel of a pending job: exit %d, stdout %q, stderr %q", code, out, errOut)
		}
		testenv.CheckFor(t, 15*time.Second, 100*time.Millisecond, func() error {
			out, _, _ := pcm("status", id)
			if lastLine(out) != "1 client: 1 cancelled (1 done, 0 failed)" {
				return &shownError{out}
			}
			return nil
		})
	})

	t.Run("an online agent busy with a job shows the next one queued behind it", func(t *testing.T) {
		release := filepath.Join(dir, "release")
		busy := publish(t, "--client", "plain1", "--", "sh", "-c", "while [ ! -f "+release+" ]; do sleep 0.05; done")
		next := publish(t, "--client", "plain1", "--", "true")
		testenv.CheckFor(t, 15*time.Second, 100*time.Millisecond, func() error {
			out, _, _ := pcm("status", next)
			if !regexp.MustCompile(`(?m)^plain1 +queued +- +- +- +queued behind job ` + busy + `$`).MatchString(out) {
				return &shownError{out}
			}
			return nil
		})
		touch(t, release)
		waitFinal(t, env.JS, "plain1", next, 15*time.Second)
	})

	t.Run("desktop run prints the output", func(t *testing.T) {
		id := publish(t, "--client", "plain1", "--optional", "--", "echo", "desk-marker")
		deskEnv := processEnv(t, env.URL, auth.User{Role: auth.RoleDesktop, Name: "plain1"})
		// Its list shows times as the other commands do.
		out, errOut, code := runPCM(t, deskEnv, "desktop", "list", "--url", env.URL, "--client-id", "plain1", "--allow-unsigned",
			"--state-dir", filepath.Join(dir, "desk"), "--utc")
		row := regexp.MustCompile(`(?m)^` + id + ` +- +echo desk-marker +optional +- +\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`)
		if code != 0 || !strings.HasPrefix(out, "JOB ") || !row.MatchString(out) {
			t.Fatalf("pcm desktop list: exit %d, stdout %q, want a row matching %s\nstderr: %s", code, out, row, errOut)
		}
		// Why the jobs over here are left out is for --log-level debug.
		if strings.Contains(errOut, "not offering job") || strings.Contains(errOut, "jobs listed") {
			t.Fatalf("pcm desktop list logs what it leaves out at the default level:\n%s", errOut)
		}
		out, errOut, code = runPCM(t, deskEnv, "desktop", "run", "--url", env.URL, "--client-id", "plain1", "--allow-unsigned",
			"--state-dir", filepath.Join(dir, "desk"), id)
		if want := "job " + id + " succeeded (exit code 0)\noutput (its last 4 KiB):\n  desk-marker\n"; code != 0 || out != want {
			t.Fatalf("pcm desktop run: exit %d, stdout %q, want %q\nstderr: %s", code, out, want, errOut)
		}
	})

	t.Run("a broker on a busy port says which address", func(t *testing.T) {
		addr := strings.TrimPrefix(env.URL, "nats://")
		data := filepath.Join(dir, "busy")
		// A broker of its own: none of the test broker's TLS or credentials
		// (set in the environment under PCM_TEST_SECURE=1).
		_, errOut, code := runPCM(t, []string{"PCM_TLS_CA=", "PCM_TLS_CERT=", "PCM_TLS_KEY=", "PCM_CREDS=", "PCM_ISSUER="}, "broker", "--listen", addr, "--data", data)
		want := regexp.MustCompile(`^pcm: broker failed to start: nats-server: Error listening on port: ` + regexp.QuoteMeta(addr) + `, .*address already in use.* \(check that the client address ` +
			regexp.QuoteMeta(addr) + ` is free and that the store dir ` + regexp.QuoteMeta(data) + ` is writable\)$`)
		if code != 1 || !want.MatchString(lastLine(errOut)) {
			t.Fatalf("pcm broker on a busy port: exit %d, last line %q, want %s", code, lastLine(errOut), want)
		}
		for _, internal := range []string{"Config.", "stacktrace", "caller", ".go:"} {
			if strings.Contains(errOut, internal) {
				t.Fatalf("pcm broker shows %q:\n%s", internal, errOut)
			}
		}
	})

	t.Run("one output vocabulary, each command its own variable", func(t *testing.T) {
		out, errOut, code := pcm("publish", "--client", "plain1", "-o", "yaml", "--", "true")
		var job struct {
			JobID string `json:"job_id"`
		}
		if err := yaml.Unmarshal([]byte(out), &job); code != 0 || err != nil || !jobIDLine.MatchString(job.JobID) {
			t.Fatalf("pcm publish -o yaml: exit %d, %v, stdout %q, stderr %q", code, err, out, errOut)
		}
		id := job.JobID
		waitFinal(t, env.JS, "plain1", id, 15*time.Second)
		for _, args := range [][]string{{"status", id}, {"agents"}, {"agents", "show", "plain1"}, {"package", "list"}} {
			for _, o := range []string{"table", "json", "yaml"} {
				out, errOut, code := pcm(append(args, "-o", o)...)
				var doc any
				if code != 0 || (o != "table" && yaml.Unmarshal([]byte(out), &doc) != nil) {
					t.Fatalf("pcm %s -o %s: exit %d, stdout %q, stderr %q", strings.Join(args, " "), o, code, out, errOut)
				}
			}
		}
		if _, errOut, code := pcm("audit", "--job", id, "-o", "table"); code != 0 {
			t.Fatalf("pcm audit -o table: exit %d: %s", code, errOut)
		}
		fails(t, `pcm: -o "text": use table, wide, json or yaml`, "status", id, "-o", "text")
		// A variable set for one command does not reach another.
		out, errOut, code = runPCM(t, append(procEnv, "PCM_STATUS_OUTPUT=wide", "PCM_OUTPUT=wide"), "audit", "--url", env.URL, "--job", id)
		if code != 0 || !strings.HasPrefix(out, "TIME ") {
			t.Fatalf("pcm audit with PCM_STATUS_OUTPUT=wide: exit %d, stdout %q, stderr %q", code, out, errOut)
		}
		out, errOut, code = runPCM(t, append(procEnv, "PCM_STATUS_OUTPUT=wide"), "status", "--url", env.URL, id)
		if code != 0 || !regexp.MustCompile(`(?m)^CLIENT +STATE .* OUTPUT +DETAIL$`).MatchString(out) {
			t.Fatalf("pcm status with PCM_STATUS_OUTPUT=wide: exit %d, stdout %q, stderr %q", code, out, errOut)
		}
	})

	t.Run("argument errors say the usage, a missing job is said once", func(t *testing.T) {
		fails(t, "pcm: pcm status takes 1 argument, got 0: usage: pcm status JOB [flags]", "status")
		fails(t, "pcm: job not found: no offer of job NOSUCHJOB in PCM_JOBS (mistyped, not for this client, or older than the stream's retention)", "status", "NOSUCHJOB")
	})
}

// shownError is what pcm has shown so far while a test waits for something else.
type shownError struct{ out string }

func (e *shownError) Error() string { return "pcm has shown so far:\n" + e.out }

// TestAgentWithoutBrokerNamesItsURL: an agent that finds no broker says
// where it looks, at the default level without stack traces or source
// locations.
func TestAgentWithoutBrokerNamesItsURL(t *testing.T) {
	testenv.SameInBothModes(t)
	dir := t.TempDir()
	port := testenv.FreePorts(t, 1)[0]
	url := "nats://127.0.0.1:" + strconv.Itoa(port)
	p := startPCM(t, dir, nil, "agent", "--url", url, "--client-id", "lonely", "--state-dir", filepath.Join(dir, "state"))
	testenv.CheckFor(t, 15*time.Second, 100*time.Millisecond, func() error {
		b, _ := os.ReadFile(p.logf)
		if !strings.Contains(string(b), "no broker answers at "+url+" (is it running? check --url)") {
			return &shownError{string(b)}
		}
		return nil
	})
	b, _ := os.ReadFile(p.logf)
	for _, internal := range []string{"stacktrace", "caller", ".go:", "goroutine ", `"url":""`, "context deadline exceeded"} {
		if strings.Contains(string(b), internal) {
			t.Fatalf("the agent's log shows %q at the default level:\n%s", internal, b)
		}
	}
}
