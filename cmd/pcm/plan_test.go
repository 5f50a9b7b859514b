package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pcm-project/pcm/events"
)

// TestPublishPlan: the plan's flags and job-file fields make the job's
// plan (the README's example job file among them); a flag replaces the
// file's field.
func TestPublishPlan(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "job.yaml")
	yaml := `all: true
command:
  argv: ["./install.sh"]
requires: [base-1]
rollout:
  rings: ["group:pilot", 1, "10%", {percent: 50}, 100]
  soak: 2h
  halt_at: 5
  halt_min: 20
detect:
  argv: ["test", "-x", "/opt/app/bin/app"]
  timeout: 1m
`
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	build := func(args ...string) (events.JobOffered, error) {
		t.Helper()
		var f publishFlags
		cmd := publishCmd(&globals{}, &f)
		if err := cmd.ParseFlags(args); err != nil {
			t.Fatal(err)
		}
		return f.build(cmd, cmd.Flags().Args(), time.Now())
	}
	job, err := build("-f", file)
	if err != nil {
		t.Fatal(err)
	}
	r := job.Rollout
	if r == nil || len(r.Rings) != 5 || r.Rings[0].Groups[0] != "pilot" || r.Rings[1].Percent != 1 || r.Rings[2].Percent != 10 ||
		r.Rings[3].Percent != 50 || r.Rings[4].Percent != 100 || time.Duration(r.Soak) != 2*time.Hour || r.HaltAt == nil || *r.HaltAt != 5 || r.HaltMin != 20 {
		t.Fatalf("rollout from the job file: %+v", r)
	}
	if d := job.Detect; d == nil || strings.Join(d.Argv, " ") != "test -x /opt/app/bin/app" || time.Duration(d.Timeout) != time.Minute {
		t.Fatalf("detect from the job file: %+v", d)
	}
	if len(job.Requires) != 1 || job.Requires[0] != "base-1" {
		t.Fatalf("requires from the job file: %v", job.Requires)
	}
	job, err = build("-f", file, "--rings", "10,100", "--halt-at", "2.5%", "--requires", "a", "--requires", "b", "--detect", "test -e /x")
	if err != nil {
		t.Fatal(err)
	}
	if r := job.Rollout; len(r.Rings) != 2 || time.Duration(r.Soak) != 2*time.Hour || *r.HaltAt != 2.5 || r.HaltMin != 20 {
		t.Fatalf("rollout with flags over the file: %+v", r)
	}
	if d := job.Detect; !d.Shell || strings.Join(d.Argv, " ") != "test -e /x" {
		t.Fatalf("--detect: %+v", d)
	}
	if strings.Join(job.Requires, " ") != "a b" {
		t.Fatalf("--requires: %v", job.Requires)
	}
}
