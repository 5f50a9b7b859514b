package events_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/pcm-project/pcm/events"
)

// plan returns a rollout plan of percentage rings with a soak time.
func plan(soak time.Duration, percents ...float64) *events.RolloutPlan {
	p := &events.RolloutPlan{Soak: events.Duration(soak)}
	for _, pc := range percents {
		p.Rings = append(p.Rings, events.Ring{Percent: pc})
	}
	return p
}

// clientIDs are n client ids shaped like a fleet's host names.
func clientIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("ws-%05d", i)
	}
	return ids
}

// TestRingAssignmentStable: a client's ring depends only on the job and
// client ids and the plan: the same on every call, different across jobs.
func TestRingAssignmentStable(t *testing.T) {
	p := plan(time.Hour, 1, 10, 50, 100)
	if a, b := events.RingPosition("J1", "ws-1"), events.RingPosition("J1", "ws-1"); a != b {
		t.Fatalf("RingPosition changed between calls: %v, %v", a, b)
	}
	// A pinned value: the hash is part of the contract (every client and
	// pcm status compute it alike, whatever their version).
	pos := events.RingPosition("01JD3S1M9ZQ6V3W5X7Y9A1B2C3", "ws-042")
	if want := 71.0817; math.Abs(pos-want) > 0.0001 {
		t.Errorf("RingPosition(01JD3S..., ws-042) = %.4f, want %.4f: the ring hash changed, so clients would change rings", pos, want)
	}
	if got := p.RingOf("01JD3S1M9ZQ6V3W5X7Y9A1B2C3", "ws-042", []string{"lab"}); got != 4 {
		t.Errorf("ws-042 (position %.2f) is in ring %d of 1,10,50,100, want 4", pos, got)
	}
	moved := 0
	for _, c := range clientIDs(1000) {
		if p.RingOf("J1", c, nil) != p.RingOf("J2", c, nil) {
			moved++
		}
	}
	if moved < 300 {
		t.Errorf("only %d of 1000 clients are in another ring for another job: the rings must depend on the job", moved)
	}
}

// TestRingAssignmentUniform: over 10,000 client ids each ring holds its
// share of the targets within 2 points.
func TestRingAssignmentUniform(t *testing.T) {
	p := plan(time.Hour, 1, 10, 50, 100)
	shares := []float64{1, 9, 40, 50}
	for _, job := range []string{"01JD3S1M9ZQ6V3W5X7Y9A1B2C3", "install-editor-1.2", "J"} {
		counts := make([]int, len(p.Rings)+1)
		ids := clientIDs(10000)
		for _, c := range ids {
			counts[p.RingOf(job, c, nil)]++
		}
		if counts[0] != 0 {
			t.Fatalf("job %s: %d clients in no ring", job, counts[0])
		}
		for i, want := range shares {
			got := float64(counts[i+1]) * 100 / float64(len(ids))
			if math.Abs(got-want) > 2 {
				t.Errorf("job %s: ring %d holds %.2f%% of the clients, want %.0f%% ±2", job, i+1, got, want)
			}
		}
	}
}

// TestRingAssignmentMonotone: a client in ring k stays in ring k when the
// rings after it change (split, merged, moved), and one of a group ring
// is there whatever its hash.
func TestRingAssignmentMonotone(t *testing.T) {
	base := plan(time.Hour, 5, 20, 100)
	variants := []*events.RolloutPlan{
		plan(time.Hour, 5, 20, 60, 100),
		plan(time.Hour, 5, 20, 30, 40, 100),
		plan(time.Hour, 5, 20, 21, 100),
		plan(time.Minute, 5, 20, 99, 100),
	}
	for _, c := range clientIDs(10000) {
		k := base.RingOf("J1", c, nil)
		if k > 2 {
			continue // its ring is among those that change
		}
		for _, v := range variants {
			if got := v.RingOf("J1", c, nil); got != k {
				t.Fatalf("client %s is in ring %d of %v but in ring %d of %v", c, k, base.Rings, got, v.Rings)
			}
		}
	}
	withGroups := &events.RolloutPlan{Soak: events.Duration(time.Hour),
		Rings: []events.Ring{{Groups: []string{"pilot", "it"}}, {Percent: 50}, {Percent: 100}}}
	if got := withGroups.RingOf("J1", "ws-1", []string{"lab", "it"}); got != 1 {
		t.Errorf("a client of group it is in ring %d, want 1", got)
	}
	for _, c := range clientIDs(200) {
		if got := withGroups.RingOf("J1", c, []string{"lab"}); got < 2 {
			t.Fatalf("client %s of no group ring is in ring %d", c, got)
		}
	}
}

func TestRingOpensAt(t *testing.T) {
	p := plan(2*time.Hour, 1, 10, 100)
	for ring, want := range map[int]time.Time{1: t0, 2: t0.Add(2 * time.Hour), 3: t0.Add(4 * time.Hour)} {
		if got := p.OpensAt(t0, ring); !got.Equal(want) {
			t.Errorf("ring %d opens at %s, want %s", ring, got, want)
		}
	}
}

// TestPlanValidation: every malformed plan is refused with ErrInvalidPlan
// (or ErrInvalidRequires, or a command line's sentinel for detect) and a
// message naming the field.
func TestPlanValidation(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*events.JobOffered)
		want   error  // nil: valid
		field  string // must appear in the message
	}{
		{"rings ok", func(j *events.JobOffered) { j.Rollout = plan(time.Hour, 1, 10, 50, 100) }, nil, ""},
		{"one ring without soak ok", func(j *events.JobOffered) { j.Rollout = plan(0, 100) }, nil, ""},
		{"group ring first ok", func(j *events.JobOffered) {
			j.Rollout = &events.RolloutPlan{Soak: events.Duration(time.Hour), Rings: []events.Ring{{Groups: []string{"pilot"}}, {Percent: 100}}}
		}, nil, ""},
		{"halt threshold ok", func(j *events.JobOffered) {
			j.Rollout = plan(time.Hour, 10, 100)
			j.Rollout.HaltAt = ptr(5.0)
			j.Rollout.HaltMin = 20
		}, nil, ""},
		{"halt at 0 ok", func(j *events.JobOffered) { j.Rollout = plan(time.Hour, 10, 100); j.Rollout.HaltAt = ptr(0.0) }, nil, ""},
		{"no rings", func(j *events.JobOffered) { j.Rollout = plan(time.Hour) }, events.ErrInvalidPlan, "rollout.rings"},
		{"percentages not increasing", func(j *events.JobOffered) { j.Rollout = plan(time.Hour, 10, 5, 100) }, events.ErrInvalidPlan, "rollout.rings[1]"},
		{"percentage repeated", func(j *events.JobOffered) { j.Rollout = plan(time.Hour, 10, 10, 100) }, events.ErrInvalidPlan, "rollout.rings[1]"},
		{"over 100", func(j *events.JobOffered) { j.Rollout = plan(time.Hour, 10, 120) }, events.ErrInvalidPlan, "rollout.rings[1]"},
		{"zero", func(j *events.JobOffered) { j.Rollout = plan(time.Hour, 0, 100) }, events.ErrInvalidPlan, "rollout.rings[0]"},
		{"negative", func(j *events.JobOffered) { j.Rollout = plan(time.Hour, -5, 100) }, events.ErrInvalidPlan, "rollout.rings[0]"},
		{"not ending at 100", func(j *events.JobOffered) { j.Rollout = plan(time.Hour, 10, 50) }, events.ErrInvalidPlan, "last ring"},
		{"too many rings", func(j *events.JobOffered) { j.Rollout = plan(time.Minute, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 100) }, events.ErrInvalidPlan, "rollout.rings"},
		{"soak 0 with several rings", func(j *events.JobOffered) { j.Rollout = plan(0, 10, 100) }, events.ErrInvalidPlan, "rollout.soak"},
		{"negative soak", func(j *events.JobOffered) { j.Rollout = plan(-time.Hour, 10, 100) }, events.ErrInvalidPlan, "rollout.soak"},
		{"last ring after expiry", func(j *events.JobOffered) { j.Rollout = plan(24*time.Hour, 10, 100) }, events.ErrInvalidPlan, "rollout.soak"},
		{"group ring after a percentage", func(j *events.JobOffered) {
			j.Rollout = &events.RolloutPlan{Soak: events.Duration(time.Hour), Rings: []events.Ring{{Percent: 10}, {Groups: []string{"pilot"}}, {Percent: 100}}}
		}, events.ErrInvalidPlan, "rollout.rings[1]"},
		{"ring with both", func(j *events.JobOffered) {
			j.Rollout = &events.RolloutPlan{Rings: []events.Ring{{Percent: 100, Groups: []string{"pilot"}}}}
		}, events.ErrInvalidPlan, "rollout.rings[0]"},
		{"bad group", func(j *events.JobOffered) {
			j.Rollout = &events.RolloutPlan{Soak: events.Duration(time.Hour), Rings: []events.Ring{{Groups: []string{"a.b"}}, {Percent: 100}}}
		}, events.ErrInvalidPlan, "rollout.rings[0] group"},
		{"threshold 100", func(j *events.JobOffered) { j.Rollout = plan(time.Hour, 10, 100); j.Rollout.HaltAt = ptr(100.0) }, events.ErrInvalidPlan, "rollout.halt_at"},
		{"threshold negative", func(j *events.JobOffered) { j.Rollout = plan(time.Hour, 10, 100); j.Rollout.HaltAt = ptr(-1.0) }, events.ErrInvalidPlan, "rollout.halt_at"},
		{"threshold NaN", func(j *events.JobOffered) { j.Rollout = plan(time.Hour, 10, 100); j.Rollout.HaltAt = ptr(math.NaN()) }, events.ErrInvalidPlan, "rollout.halt_at"},
		{"halt min without threshold", func(j *events.JobOffered) { j.Rollout = plan(time.Hour, 10, 100); j.Rollout.HaltMin = 5 }, events.ErrInvalidPlan, "rollout.halt_min"},
		{"halt min negative", func(j *events.JobOffered) {
			j.Rollout = plan(time.Hour, 10, 100)
			j.Rollout.HaltAt = ptr(5.0)
			j.Rollout.HaltMin = -1
		}, events.ErrInvalidPlan, "rollout.halt_min"},
		{"detect ok", func(j *events.JobOffered) { j.Detect = &events.DetectCommand{Argv: []string{"test", "-f", "/x"}} }, nil, ""},
		{"detect empty", func(j *events.JobOffered) { j.Detect = &events.DetectCommand{} }, events.ErrEmptyArgv, "detect argv"},
		{"detect NUL", func(j *events.JobOffered) { j.Detect = &events.DetectCommand{Argv: []string{"a\x00"}} }, events.ErrInvalidArgv, "detect argv[0]"},
		{"detect timeout over 24h", func(j *events.JobOffered) {
			j.Detect = &events.DetectCommand{Argv: []string{"true"}, Timeout: events.Duration(25 * time.Hour)}
		}, events.ErrTimeout, "detect timeout"},
		{"requires ok", func(j *events.JobOffered) { j.Requires = []string{"J0", "J00"} }, nil, ""},
		{"requires itself", func(j *events.JobOffered) { j.Requires = []string{j.JobID} }, events.ErrInvalidRequires, "requires[0]"},
		{"requires twice", func(j *events.JobOffered) { j.Requires = []string{"J0", "J0"} }, events.ErrInvalidRequires, "requires"},
		{"requires bad id", func(j *events.JobOffered) { j.Requires = []string{"a.b"} }, events.ErrInvalidRequires, "requires[0]"},
		{"requires too many", func(j *events.JobOffered) {
			for i := range events.MaxRequires + 1 {
				j.Requires = append(j.Requires, fmt.Sprintf("J%d", i))
			}
		}, events.ErrInvalidRequires, "requires"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := validJob()
			tc.mutate(&j)
			err := j.Validate()
			if tc.want == nil {
				if err != nil {
					t.Fatalf("valid plan refused: %v", err)
				}
				if _, err := events.NewJobOffered("ci", j); err != nil {
					t.Fatalf("valid plan refused by its schema: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("want %v, got %v", tc.want, err)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Errorf("the message does not name %q: %v", tc.field, err)
			}
		})
	}
}

// TestRingForms: a job file may write a ring as a number, a string or an
// object; the wire form is the object.
func TestRingForms(t *testing.T) {
	var p events.RolloutPlan
	if err := json.Unmarshal([]byte(`{"rings":["group:pilot+it", 10, "50%", {"percent": 100}],"soak":"1h"}`), &p); err != nil {
		t.Fatal(err)
	}
	want := []events.Ring{{Groups: []string{"pilot", "it"}}, {Percent: 10}, {Percent: 50}, {Percent: 100}}
	if fmt.Sprint(p.Rings) != fmt.Sprint(want) {
		t.Fatalf("rings %v, want %v", p.Rings, want)
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(b); got != `{"rings":[{"groups":["pilot","it"]},{"percent":10},{"percent":50},{"percent":100}],"soak":"1h0m0s"}` {
		t.Errorf("wire form %s", got)
	}
	for _, bad := range []string{`{"rings":["ten"]}`, `{"rings":[true]}`} {
		if err := json.Unmarshal([]byte(bad), &p); !errors.Is(err, events.ErrInvalidPlan) {
			t.Errorf("%s: want ErrInvalidPlan, got %v", bad, err)
		}
	}
}
