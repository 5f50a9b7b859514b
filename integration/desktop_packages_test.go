package integration_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/packages"
	"github.com/pcm-project/pcm/testenv"
)

// TestDesktopRunsPackagedJobs: the desktop fetches and verifies a job's
// package before it runs the command in the package's files; a package that
// is gone fails the job with the reason and runs nothing.
func TestDesktopRunsPackagedJobs(t *testing.T) {
	env := testenv.StartBroker(t)
	p := newPublisher(t, env.JS)
	enroll(t, env.JS, "deskpkg")
	dir := t.TempDir()
	file := filepath.Join(dir, "setup.sh")
	if err := os.WriteFile(file, []byte("echo installed from the package\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	pkgs := packages.NewStore(env.JS)
	if _, err := pkgs.Push(ctx, file, packages.PushOptions{Name: "tool", Version: "1"}); err != nil {
		t.Fatal(err)
	}
	optional := func(version string, argv ...string) events.JobOffered {
		j := job(argv, toClient("deskpkg"))
		j.MandatoryAfter = nil
		j.Package = &events.PackageRef{Name: "tool", Version: version}
		return j
	}
	d := newTestDesktop(t, env.URL, "deskpkg", nil)

	ok := publish(t, p, optional("1", "sh", "setup.sh"))
	st, err := d.Run(ctx, ok)
	if err != nil || st.State != events.StateSucceeded || !strings.Contains(st.OutputTail, "installed from the package") {
		t.Fatalf("desktop run of a packaged job: %+v, %v", st, err)
	}

	// Version 2 was never fetched here; it is removed after the job pinned it.
	if err := os.WriteFile(file, []byte("echo version 2\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := pkgs.Push(ctx, file, packages.PushOptions{Name: "tool", Version: "2"}); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(dir, "marker")
	gone := publish(t, p, optional("2", "sh", "-c", "echo ran >> "+marker))
	if err := pkgs.Remove(ctx, "tool@2"); err != nil {
		t.Fatal(err)
	}
	st, err = d.Run(ctx, gone)
	if err == nil || st.State != events.StateFailed || st.Reason == "" {
		t.Fatalf("desktop run with the package removed: %+v, %v", st, err)
	}
	if fin := finals(readStatuses(t, env.JS, "deskpkg", gone)); len(fin) != 1 || fin[0].State != events.StateFailed {
		t.Fatalf("stored finals %+v", fin)
	}
	if markerLines(t, marker) != 0 {
		t.Fatal("the command ran without its package")
	}
}
