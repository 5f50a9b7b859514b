//go:build linux

package integration_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/pcm-project/pcm/broker/auth"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/packages"
	"github.com/pcm-project/pcm/testenv"
)

// buildPCMVersion builds pcm reporting version (-X main.version) at path.
func buildPCMVersion(t *testing.T, path, version string) {
	t.Helper()
	out, err := exec.Command("go", "build", "-ldflags", "-X main.version="+version, "-o", path, "../cmd/pcm").CombinedOutput()
	if err != nil {
		t.Fatalf("building pcm %s: %v\n%s", version, err, out)
	}
}

// newReleaseKey writes a new release key's seed in dir and returns its
// path and public key.
func newReleaseKey(t *testing.T, dir, name string) (seedFile, public string) {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	public, _ = kp.PublicKey()
	seedFile = filepath.Join(dir, name+".nk")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	return seedFile, public
}

// agentInfo reads client's inventory (nil when there is none yet).
func agentInfo(js jetstream.JetStream, client string) (*events.AgentInfo, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, events.BucketAgents)
	if err != nil {
		return nil, err
	}
	e, err := kv.Get(ctx, client)
	if err != nil {
		return nil, err
	}
	info, ok := events.ParseAgentInfo(client, e.Value())
	if !ok {
		return nil, fmt.Errorf("inventory of %s unreadable: %s", client, e.Value())
	}
	return &info, nil
}

// waitInventory waits until client's inventory satisfies cond.
func waitInventory(t *testing.T, js jetstream.JetStream, client string, timeout time.Duration, cond func(events.AgentInfo) error) events.AgentInfo {
	t.Helper()
	var last events.AgentInfo
	testenv.CheckFor(t, timeout, 100*time.Millisecond, func() error {
		info, err := agentInfo(js, client)
		if err != nil {
			return err
		}
		last = *info
		return cond(*info)
	})
	return last
}

// killUnder kills every process whose executable lies under dir: the
// agent re-executes itself and its watchdog outlives the process the test
// started.
func killUnder(dir string) {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err == nil && strings.HasPrefix(exe, dir+string(filepath.Separator)) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// binaryVersion runs path version and returns the version it reports.
func binaryVersion(t *testing.T, path string) string {
	t.Helper()
	out, err := exec.Command(path, "version").Output()
	if err != nil {
		t.Fatalf("%s version: %v", path, err)
	}
	f := strings.Fields(string(out))
	if len(f) < 2 {
		t.Fatalf("%s version: %q", path, out)
	}
	return f[1]
}

// TestAgentSelfUpdate runs a real agent process (not under a service
// manager) built as v1.0.0 on channel stable, and releases to it: refused
// ones (signed by an untrusted key, a wrong sha256, an older version), a
// good one (v1.1.0) arriving while a job runs (the job finishes first and
// does not run again after the restart), and one whose binary exits at
// start (v1.2.0: rolled back to v1.1.0, the failure reported).
func TestAgentSelfUpdate(t *testing.T) {
	if runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64" {
		t.Skip("release platforms are linux/amd64 and linux/arm64 here")
	}
	env := testenv.StartBroker(t)
	dir := t.TempDir()
	t.Cleanup(func() { killUnder(dir) })
	platform := "linux/" + runtime.GOARCH
	builds := filepath.Join(dir, "builds")
	v1, v11 := filepath.Join(builds, "pcm-v1.0.0"), filepath.Join(builds, "pcm-linux-"+runtime.GOARCH)
	buildPCMVersion(t, v1, "v1.0.0")
	buildPCMVersion(t, v11, "v1.1.0")
	key, pub := newReleaseKey(t, dir, "release")
	otherKey, _ := newReleaseKey(t, dir, "other")

	const client = "upd1"
	enroll(t, env.JS, client)
	bin := filepath.Join(dir, "bin", "pcm")
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", v1, bin).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	stateDir := filepath.Join(dir, "state")
	// On a secure broker (PCM_TEST_SECURE=1) the agent connects with its
	// client's agent credentials and pcm release with a publisher's: the
	// grants of PCM_RELEASES are those of production.
	agentArgs := []string{"agent", "--url", env.URL, "--client-id", client, "--state-dir", stateDir,
		"--heartbeat", "1s", "--lease", "2s", "--channel", "stable", "--release-keys", pub, "--update-health-timeout", "15s"}
	var releaseArgs []string
	if s := testenv.SecurityOf(env.URL); s != nil {
		agentArgs = append(agentArgs, "--creds", s.Creds(t, auth.User{Role: auth.RoleAgent, Name: client}))
		releaseArgs = append(releaseArgs, "--creds", s.Creds(t, auth.User{Role: auth.RolePublisher, Name: "ci"}))
	}
	agentCmd := exec.Command(bin, agentArgs...)
	agentCmd.Env = os.Environ()
	startCmd(t, dir, "pcm-agent", agentCmd)
	waitInventory(t, env.JS, client, 30*time.Second, func(i events.AgentInfo) error {
		if i.Version != "v1.0.0" || i.Channel != "stable" {
			return fmt.Errorf("inventory says version %s channel %q, want v1.0.0 on stable", i.Version, i.Channel)
		}
		return nil
	})
	waitPulling(t, env.JS, client)
	release := func(args ...string) {
		t.Helper()
		stdout, stderr, code := runPCM(t, nil, append(append([]string{"release", "--url", env.URL}, releaseArgs...), args...)...)
		if code != 0 {
			t.Fatalf("pcm release %v: exit %d\n%s%s", args, code, stdout, stderr)
		}
	}
	refused := func(version, reason string) {
		t.Helper()
		defer func() {
			if i, err := agentInfo(env.JS, client); err == nil && i.Update != nil {
				t.Logf("refused %s: %s", version, i.Update.Reason)
			}
		}()
		waitInventory(t, env.JS, client, 30*time.Second, func(i events.AgentInfo) error {
			u := i.Update
			if u == nil || u.Version != version || u.State != events.UpdateRefused || !strings.Contains(u.Reason, reason) {
				return fmt.Errorf("inventory's update %+v: want %s refused with %q", u, version, reason)
			}
			if i.Version != "v1.0.0" {
				return fmt.Errorf("agent runs %s after a refused release", i.Version)
			}
			return nil
		})
	}

	t.Run("a release signed by an untrusted key is refused", func(t *testing.T) {
		release("push", "--version", "v1.1.0", "--channel", "stable", "--release-key", otherKey, v11)
		refused("v1.1.0", "not a trusted key")
	})
	t.Run("a release whose binary has another sha256 is refused", func(t *testing.T) {
		// A manifest signed by the trusted key whose sha256 is not the
		// stored binary's (a tampered package store, a stale manifest).
		info, err := packages.NewStore(env.JS).Info(context.Background(), events.PackageObjectName(events.ReleasePackageName("linux", runtime.GOARCH), "v1.1.0"))
		if err != nil {
			t.Fatal(err)
		}
		ref := info.Ref()
		ref.SHA256 = strings.Repeat("0", 64)
		putRelease(t, env.JS, key, events.Release{Version: "v1.1.1", Channel: "stable", Platforms: map[string]events.PackageRef{platform: ref}})
		refused("v1.1.1", "sha256")
	})
	t.Run("an older release is refused", func(t *testing.T) {
		release("push", "--version", "v0.9.0", "--channel", "stable", "--release-key", key, platform+"="+v1)
		refused("v0.9.0", "older than the running v1.0.0")
	})

	t.Run("a job running when the release arrives finishes first and is not rerun", func(t *testing.T) {
		p := newPublisher(t, env.JS)
		marker := filepath.Join(dir, "ran.txt")
		id := publish(t, p, job([]string{"sh", "-c", "echo ran >> " + marker + "; sleep 3"}, toClient(client)))
		testenv.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
			if markerLines(t, marker) == 0 {
				return fmt.Errorf("job %s has not started", id)
			}
			return nil
		})
		release("push", "--version", "v1.1.0", "--channel", "stable", "--release-key", key, "--force", v11)
		info := waitInventory(t, env.JS, client, time.Minute, func(i events.AgentInfo) error {
			if i.Version != "v1.1.0" {
				return fmt.Errorf("agent runs %s, want v1.1.0", i.Version)
			}
			if i.Update == nil || i.Update.State != events.UpdateApplied {
				return fmt.Errorf("inventory's update %+v: want applied", i.Update)
			}
			return nil
		})
		fin := finals(waitFinal(t, env.JS, client, id, time.Minute))
		if len(fin) != 1 || fin[0].State != events.StateSucceeded || fin[0].AgentVersion != "v1.0.0" {
			t.Fatalf("final statuses %+v: want one succeeded, reported by v1.0.0 before the update", fin)
		}
		if fin[0].FinishedAt == nil || fin[0].FinishedAt.After(info.StartedAt) {
			t.Fatalf("the job ended at %v, not before the new version started at %s", fin[0].FinishedAt, info.StartedAt)
		}
		waitAcked(t, env.JS, client, 30*time.Second)
		if n := markerLines(t, marker); n != 1 {
			t.Fatalf("the job ran %d times, want once", n)
		}
		if v := binaryVersion(t, bin); v != "v1.1.0" {
			t.Fatalf("%s reports %s after the update, want v1.1.0", bin, v)
		}
		if v := binaryVersion(t, bin+".previous"); v != "v1.0.0" {
			t.Fatalf("the previous binary reports %s, want v1.0.0", v)
		}
		// pcm release list shows the versions and the channel running one;
		// pcm agents shows the client's version and channel.
		stdout, _, code := runPCM(t, nil, append([]string{"release", "list", "--url", env.URL}, releaseArgs...)...)
		if code != 0 || !regexp.MustCompile(`(?m)^v1\.1\.0\s+stable\s+`+regexp.QuoteMeta(platform)).MatchString(stdout) || !strings.Contains(stdout, "v0.9.0") {
			t.Fatalf("pcm release list (exit %d):\n%s", code, stdout)
		}
		stdout, _, code = runPCM(t, nil, append([]string{"agents", "--url", env.URL}, releaseArgs...)...)
		if code != 0 || !regexp.MustCompile(`(?m)^`+client+`\s.*\sv1\.1\.0\s+stable\s`).MatchString(stdout) {
			t.Fatalf("pcm agents (exit %d):\n%s", code, stdout)
		}
	})

	t.Run("a release whose binary exits at start is rolled back and reported", func(t *testing.T) {
		broken := filepath.Join(builds, "broken")
		if err := os.WriteFile(broken, []byte("#!/bin/sh\necho 'broken release' >&2\nexit 3\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		release("push", "--version", "v1.2.0", "--channel", "stable", "--release-key", key, platform+"="+broken)
		rolled := waitInventory(t, env.JS, client, time.Minute, func(i events.AgentInfo) error {
			u := i.Update
			if i.Version != "v1.1.0" || u == nil || u.Version != "v1.2.0" || u.State != events.UpdateFailed || !strings.Contains(u.Reason, "exited") {
				return fmt.Errorf("agent runs %s, last update %+v: want v1.1.0 after a failed update to v1.2.0", i.Version, u)
			}
			return nil
		})
		t.Logf("update failed: %s", rolled.Update.Reason)
		if v := binaryVersion(t, bin); v != "v1.1.0" {
			t.Fatalf("%s reports %s after the rollback, want v1.1.0", bin, v)
		}
		stdout, _, code := runPCM(t, nil, append([]string{"release", "status", "v1.2.0", "--url", env.URL}, releaseArgs...)...)
		if code != 0 || !strings.Contains(stdout, "0 of 1 clients run it, 1 failed to update") || !strings.Contains(stdout, client+" failed: version v1.2.0 exited") {
			t.Fatalf("pcm release status v1.2.0 (exit %d):\n%s", code, stdout)
		}
		// The rolled-back agent still runs jobs (below, after the next case).
	})

	t.Run("a release that never reports healthy is rolled back at the deadline", func(t *testing.T) {
		// It starts and runs on, but never connects: the watchdog stops it
		// when --update-health-timeout (15s here) has passed.
		hangs := filepath.Join(builds, "hangs")
		if err := os.WriteFile(hangs, []byte("#!/bin/sh\nexec sleep 600\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		release("push", "--version", "v1.3.0", "--channel", "stable", "--release-key", key, platform+"="+hangs)
		rolled := waitInventory(t, env.JS, client, time.Minute, func(i events.AgentInfo) error {
			u := i.Update
			if i.Version != "v1.1.0" || u == nil || u.Version != "v1.3.0" || u.State != events.UpdateFailed || !strings.Contains(u.Reason, "did not report healthy") {
				return fmt.Errorf("agent runs %s, last update %+v: want v1.1.0 after a failed update to v1.3.0", i.Version, u)
			}
			return nil
		})
		t.Logf("update failed after %s: %s", time.Since(start).Round(time.Millisecond), rolled.Update.Reason)
		if v := binaryVersion(t, bin); v != "v1.1.0" {
			t.Fatalf("%s reports %s after the rollback, want v1.1.0", bin, v)
		}

		p := newPublisher(t, env.JS)
		id := publish(t, p, job([]string{"true"}, toClient(client)))
		if fin := finals(waitFinal(t, env.JS, client, id, time.Minute)); fin[0].State != events.StateSucceeded || fin[0].AgentVersion != "v1.1.0" {
			t.Fatalf("after the rollback: %+v", fin)
		}
	})
}

// putRelease signs r with the seed in keyFile and makes it the release of
// its channel, as pcm release push would, whatever it holds.
func putRelease(t *testing.T, js jetstream.JetStream, keyFile string, r events.Release) {
	t.Helper()
	seed, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := nkeys.FromSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	r.PublishedAt = time.Now().UTC()
	ev, err := events.NewRelease("test", r)
	if err != nil {
		t.Fatal(err)
	}
	if err := events.Sign(&ev, kp); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, events.BucketReleases)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, events.ReleaseChannelKey(r.Channel), b); err != nil {
		t.Fatal(err)
	}
}
