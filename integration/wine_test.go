//go:build linux

package integration_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pcm-project/pcm/agent/runner"
	"github.com/pcm-project/pcm/broker/auth"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/testenv"
)

// wineInstall says how to get what the Windows test needs; .ci/run does it.
const wineInstall = "apt-get install wine64 gcc-mingw-w64-x86-64-win32 (.ci/run installs them)"

// wineRequiredEnv set to "require" (as .ci/run does) makes a missing Wine a
// failure of the Windows test instead of a skip.
const wineRequiredEnv = "PCM_TEST_WINE"

// wineStart bounds how long pcm.exe takes to start under Wine and reach
// the broker: seconds on an idle machine, much more on a loaded one.
const wineStart = time.Minute

// skipWithoutWine skips the test, or fails it where Wine is required.
func skipWithoutWine(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv(wineRequiredEnv) == "require" {
		t.Fatalf(format+" and %s=require", append(args, wineRequiredEnv)...)
	}
	t.Skipf(format, args...)
}

// winePrefix is a Wine prefix with pcm.exe built into it and the stand-in
// bcryptprimitives.dll (testdata/wine/processprng.c) in its system32.
type winePrefix struct {
	wine, wineserver string
	dir              string // WINEPREFIX
	exe              string // pcm.exe, as Windows sees it
	env              []string
}

// newWinePrefix makes a prefix in a temporary directory, or skips the test
// with the reason when Wine or mingw is not installed. Every Wine process
// of the prefix is killed at cleanup.
func newWinePrefix(t *testing.T) *winePrefix {
	t.Helper()
	w := &winePrefix{}
	for _, c := range []struct {
		dst  *string
		name string
	}{{&w.wine, "wine64"}, {&w.wineserver, "wineserver"}} {
		if p, err := exec.LookPath(c.name); err == nil {
			*c.dst = p
		} else if p := "/usr/lib/wine/" + c.name; fileExists(p) {
			*c.dst = p
		} else {
			skipWithoutWine(t, "Windows test skipped: %s not found (%s)", c.name, wineInstall)
		}
	}
	gcc, err := exec.LookPath("x86_64-w64-mingw32-gcc")
	if err != nil {
		skipWithoutWine(t, "Windows test skipped: x86_64-w64-mingw32-gcc not found, needed for the stand-in bcryptprimitives.dll (%s)", wineInstall)
	}
	dir, err := os.MkdirTemp("", "pcm-wine-")
	if err != nil {
		t.Fatal(err)
	}
	w.dir = dir
	// The test's own PCM_* variables (a secure broker's admin credentials)
	// are Linux paths: the Windows agent gets its settings as flags.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PCM_") {
			w.env = append(w.env, kv)
		}
	}
	w.env = append(w.env, "WINEPREFIX="+dir, "WINEDEBUG=-all",
		"WINEDLLOVERRIDES=bcryptprimitives=n,b;mscoree,mshtml=", "DISPLAY=", "WAYLAND_DISPLAY=")
	t.Cleanup(func() {
		kill := exec.Command(w.wineserver, "-k")
		kill.Env = w.env
		_ = kill.Run()
		_ = os.RemoveAll(dir)
	})
	start := time.Now()
	if out, err := w.command("wineboot", "--init").CombinedOutput(); err != nil {
		t.Fatalf("wineboot --init: %v\n%s", err, out)
	}
	sys32 := filepath.Join(dir, "drive_c", "windows", "system32")
	if out, err := exec.Command(gcc, "-O2", "-shared", "-o", filepath.Join(sys32, "bcryptprimitives.dll"),
		filepath.Join("testdata", "wine", "processprng.c"), "-ladvapi32").CombinedOutput(); err != nil {
		t.Fatalf("building the stand-in bcryptprimitives.dll: %v\n%s", err, out)
	}
	bin := filepath.Join(dir, "drive_c", "pcm", "pcm.exe")
	build := exec.Command("go", "build", "-o", bin, "../cmd/pcm")
	build.Env = append(os.Environ(), "GOOS=windows", "GOARCH=amd64", "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building pcm.exe: %v\n%s", err, out)
	}
	w.exe = `C:\pcm\pcm.exe`
	if out, err := w.command(w.exe, "version").CombinedOutput(); err != nil {
		t.Fatalf("pcm.exe version under Wine: %v\n%s", err, out)
	}
	t.Logf("Wine prefix ready in %s (wineboot, the stand-in DLL, pcm.exe)", time.Since(start).Round(time.Millisecond))
	return w
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// command is a Windows program run by Wine in the prefix.
func (w *winePrefix) command(program string, args ...string) *exec.Cmd {
	cmd := exec.Command(w.wine, append([]string{program}, args...)...)
	cmd.Env = w.env
	return cmd
}

// run runs a Windows program to completion, failing the test when it does
// not exit 0 (unless ok allows), and returns what it printed.
func (w *winePrefix) run(t *testing.T, program string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := w.command(program, args...)
	cmd = exec.CommandContext(ctx, cmd.Path, cmd.Args[1:]...)
	cmd.Env = w.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("wine %s %s: %v\n%s", program, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// winPath is a Linux path as Windows programs under Wine see it (Z: is /).
func winPath(p string) string { return `Z:` + strings.ReplaceAll(p, "/", `\`) }

// agentArgs are the flags of a Windows agent for client on the broker at
// url, with its credentials and the CA on a secure broker.
func wineAgentArgs(t *testing.T, url, client, stateDir string) []string {
	t.Helper()
	args := []string{"--url", url, "--client-id", client, "--state-dir", winPath(stateDir), "--lease", "2s", "--heartbeat", "1s"}
	if s := testenv.SecurityOf(url); s != nil {
		args = append(args, "--allow-unsigned")
		if creds := s.Creds(t, auth.User{Role: auth.RoleAgent, Name: client}); creds != "" {
			args = append(args, "--creds", winPath(creds))
		}
		if s.Certs != nil {
			args = append(args, "--tls-ca", winPath(s.Certs.CAFile))
		}
	}
	return args
}

// TestWindowsUnderWine runs the Windows build of pcm as a Windows user
// would, under Wine against the test's Linux broker: non-ASCII output in
// the OEM code page and in UTF-16, a timeout killing a whole process tree,
// the agent killed mid-job and restarted (no rerun), and the agent as a
// Windows service (pcm agent install, net start, net stop with a job
// running, sc query).
func TestWindowsUnderWine(t *testing.T) {
	t.Parallel() // Wine starts slowly: beside the others
	w := newWinePrefix(t)
	env := testenv.StartBroker(t)
	p := newPublisher(t, env.JS)
	dir := t.TempDir()

	const client = "wine1"
	enroll(t, env.JS, client)
	startAgentExe := func() *proc {
		cmd := w.command(w.exe, append([]string{"agent"}, wineAgentArgs(t, env.URL, client, filepath.Join(dir, client))...)...)
		return startCmd(t, dir, "pcm.exe-agent", cmd)
	}
	agentProc := startAgentExe()
	waitPullingFor(t, env.JS, client, wineStart)

	t.Run("output in the OEM code page and in UTF-16 is decoded", func(t *testing.T) {
		for _, tc := range []struct {
			argv   []string
			want   string
			encode string
		}{
			{[]string{"cmd", "/c", "echo héllo-wörld"}, "héllo-wörld\r\n", "cp"},
			{[]string{"cmd", "/u", "/c", "echo héllo-wörld-€-日本"}, "héllo-wörld-€-日本", runner.EncodingUTF16LE},
		} {
			id := publish(t, p, job(tc.argv, toClient(client)))
			fin := finals(waitFinal(t, env.JS, client, id, time.Minute))
			t.Logf("%v: %q (%s)", tc.argv, fin[0].OutputTail, fin[0].OutputEncoding)
			if fin[0].State != events.StateSucceeded || !strings.Contains(fin[0].OutputTail, tc.want) || !strings.HasPrefix(fin[0].OutputEncoding, tc.encode) {
				t.Errorf("%v: %+v: want succeeded with %q decoded from %s", tc.argv, fin[0], tc.want, tc.encode)
			}
		}
	})

	t.Run("a timeout kills the whole process tree", func(t *testing.T) {
		late := filepath.Join(dir, "late.txt")
		// The background cmd outlives its parent unless the job object
		// takes it too; it would write late.txt after about 4 s.
		j := job([]string{`start /b cmd /c "ping -n 5 127.0.0.1 >nul & echo late>` + winPath(late) + `" & ping -n 60 127.0.0.1 >nul`}, toClient(client))
		j.Command.Shell = true
		j.Command.Timeout = events.Duration(2 * time.Second)
		id := publish(t, p, j)
		fin := finals(waitFinal(t, env.JS, client, id, time.Minute))
		if fin[0].State != events.StateTimedOut {
			t.Fatalf("statuses %+v: want timed_out", fin)
		}
		// Every process of the tree is gone: no ping.exe of this prefix is
		// left (it would have run for a minute).
		testenv.CheckFor(t, 10*time.Second, 200*time.Millisecond, func() error {
			if pids := winePrefixProcesses(w.dir, "ping.exe"); len(pids) > 0 {
				return fmt.Errorf("ping.exe still running after the timeout: pids %v", pids)
			}
			return nil
		})
		if fileExists(late) {
			t.Fatal("the background child of the timed-out job ran on")
		}
	})

	t.Run("an agent killed mid-job does not rerun it", func(t *testing.T) {
		marker := filepath.Join(dir, "ran.txt")
		j := job([]string{`echo ran>>` + winPath(marker) + ` & ping -n 8 127.0.0.1 >nul`}, toClient(client))
		j.Command.Shell = true
		id := publish(t, p, j)
		testenv.CheckFor(t, time.Minute, 200*time.Millisecond, func() error {
			if sts := readStatuses(t, env.JS, client, id); len(sts) == 0 {
				return fmt.Errorf("no started status of %s yet", id)
			}
			return nil
		})
		_ = agentProc.cmd.Process.Kill()
		agentProc.waitExit(t, 30*time.Second)
		agentProc = startAgentExe()
		fin := finals(waitFinal(t, env.JS, client, id, time.Minute))
		waitAcked(t, env.JS, client, 30*time.Second)
		if len(fin) != 1 || fin[0].State != events.StateFailed || !strings.Contains(fin[0].Reason, "restarted during the run") {
			t.Fatalf("final statuses %+v: want one failed status saying the agent restarted during the run", fin)
		}
		if n := markerLines(t, marker); n != 1 {
			t.Fatalf("the job ran %d times, want once", n)
		}
	})
	_ = agentProc.cmd.Process.Kill()
	agentProc.waitExit(t, 30*time.Second)

	t.Run("the agent as a Windows service", func(t *testing.T) {
		const svcClient = "wine2"
		enroll(t, env.JS, svcClient)
		config := filepath.Join(dir, "svc", "agent.yaml")
		out := w.run(t, w.exe, append([]string{"agent", "install", "--no-start", "--no-desktop", "--config", winPath(config)},
			wineAgentArgs(t, env.URL, svcClient, filepath.Join(dir, svcClient))...)...)
		if !strings.Contains(out, "installed pcm-agent (scm)") || !fileExists(config) {
			t.Fatalf("pcm agent install: %s", out)
		}
		logFile := filepath.Join(w.dir, "drive_c", "ProgramData", "pcm", "agent.log")
		t.Cleanup(func() {
			if t.Failed() {
				b, _ := os.ReadFile(logFile)
				t.Logf("service log %s:\n%s", logFile, tail(string(b), 4000))
			}
		})
		if st := w.run(t, "sc", "query", "pcm-agent"); !strings.Contains(st, "STOPPED") {
			t.Fatalf("sc query after install: %s", st)
		}
		w.run(t, "net", "start", "pcm-agent")
		if st := w.run(t, "sc", "query", "pcm-agent"); !strings.Contains(st, "RUNNING") {
			t.Fatalf("sc query after net start: %s", st)
		}
		if st := w.run(t, w.exe, "agent", "status"); !strings.Contains(st, "running") {
			t.Fatalf("pcm agent status: %s", st)
		}
		waitPullingFor(t, env.JS, svcClient, wineStart)
		j := job([]string{"ping", "-n", "60", "127.0.0.1"}, toClient(svcClient))
		id := publish(t, p, j)
		testenv.CheckFor(t, time.Minute, 200*time.Millisecond, func() error {
			if sts := readStatuses(t, env.JS, svcClient, id); len(sts) == 0 {
				return fmt.Errorf("no started status of %s yet", id)
			}
			return nil
		})
		stopped := time.Now()
		w.run(t, "net", "stop", "pcm-agent")
		if st := w.run(t, "sc", "query", "pcm-agent"); !strings.Contains(st, "STOPPED") {
			t.Fatalf("sc query after net stop: %s", st)
		}
		t.Logf("net stop with a job running took %s", time.Since(stopped).Round(time.Millisecond))
		if pids := winePrefixProcesses(w.dir, "ping.exe"); len(pids) > 0 {
			t.Fatalf("the running job's process outlived the service: pids %v", pids)
		}
		// The interruption was journaled: the next start reports it, and
		// the job is not run again.
		w.run(t, "net", "start", "pcm-agent")
		fin := finals(waitFinal(t, env.JS, svcClient, id, time.Minute))
		if len(fin) != 1 || fin[0].State != events.StateFailed || !strings.Contains(fin[0].Reason, "restarted during the run") {
			t.Fatalf("final statuses %+v: want one failed status saying the agent restarted during the run", fin)
		}
		w.run(t, w.exe, "agent", "uninstall")
		if st, err := w.command("sc", "query", "pcm-agent").CombinedOutput(); err == nil && strings.Contains(string(st), "RUNNING") {
			t.Fatalf("sc query after uninstall: %s", st)
		}
	})
}

// winePrefixProcesses lists the pids of the processes of the Wine prefix
// whose command line names program.
func winePrefixProcesses(prefix, program string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.Contains(strings.ToLower(string(cmdline)), program) {
			continue
		}
		environ, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err == nil && strings.Contains(string(environ), "WINEPREFIX="+prefix+"\x00") {
			pids = append(pids, pid)
		}
	}
	return pids
}
