package main

import (
	"slices"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// TestJobFileTimeRules: a job file's time rules (deferrals with a relative
// deadline, grace after offline, in_window, the command's restart exit
// codes) reach the job.
func TestJobFileTimeRules(t *testing.T) {
	now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	b := []byte(`job_id: J1
clients: [c1]
offer_after: "+1m"
mandatory_after: "+1h"
expire_after: "+168h"
deferrals: {max: 3, each: 4h, deadline: "+72h"}
grace_after_offline: 30m
in_window: true
command:
  argv: [msiexec, /i, app.msi]
  timeout: 1h
  may_reboot: true
  restart_exit_codes: [3010, 1641]
`)
	var jf jobFile
	if err := yaml.UnmarshalStrict(b, &jf); err != nil {
		t.Fatal(err)
	}
	j, err := jf.toJob(now, func(flag string) string { return "--" + flag })
	if err != nil {
		t.Fatal(err)
	}
	d := j.Deferrals
	if d == nil || d.Max != 3 || time.Duration(d.Each) != 4*time.Hour || d.Deadline == nil || !d.Deadline.Equal(now.Add(72*time.Hour)) {
		t.Fatalf("deferrals %+v, want 3 of 4h until %s", d, now.Add(72*time.Hour))
	}
	if time.Duration(j.GraceAfterOffline) != 30*time.Minute || !j.InWindow || !j.Command.MayReboot ||
		!slices.Equal(j.Command.RestartExitCodes, []int64{3010, 1641}) {
		t.Fatalf("job %+v: want a grace after offline of 30m, in_window, restart codes 3010 and 1641", j)
	}
	if err := j.Validate(); err != nil {
		t.Fatalf("the job file's job does not validate: %v", err)
	}
}
