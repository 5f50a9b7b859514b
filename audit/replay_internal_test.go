package audit

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/internal/streamread"
)

func TestFilterValidate(t *testing.T) {
	now := time.Now()
	cases := []struct {
		name string
		f    Filter
		want error
	}{
		{"zero", Filter{}, nil},
		{"everything", Filter{Since: now.Add(-time.Hour), Until: now, JobID: "j1", Client: "ws-1", Types: []string{"status", events.TypeJobOffered}, Follow: true}, nil},
		{"bad job", Filter{JobID: "a.b"}, ErrInvalidFilter},
		{"bad client", Filter{Client: "a b"}, ErrInvalidFilter},
		{"unknown type", Filter{Types: []string{"exploded"}}, ErrInvalidFilter},
		{"until before since", Filter{Since: now, Until: now.Add(-time.Second)}, ErrInvalidFilter},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.f.Validate()
			if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("Validate() = %v, want %v", err, c.want)
			}
		})
	}
	for name, want := range map[string]string{"offered": events.TypeJobOffered, "cancelled": events.TypeJobCancelled,
		"status": events.TypeJobStatus, events.TypeJobStatus: events.TypeJobStatus} {
		if got, err := EventType(name); err != nil || got != want {
			t.Errorf("EventType(%q) = %q, %v", name, got, err)
		}
		if ShortType(want) == want {
			t.Errorf("ShortType(%q) did not shorten it", want)
		}
	}
}

// TestMergeOrder feeds two followed sources and checks that merge
// delivers their events by stored time, offers first at equal times, and
// that a caught-up source does not hold the other back.
func TestMergeOrder(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	msg := func(seq uint64, at int) *streamread.Msg {
		return &streamread.Msg{Seq: seq, Time: t0.Add(time.Duration(at) * time.Second)}
	}
	newSource := func(stream string, updates chan *streamread.Msg) *source {
		return &source{stream: stream, keep: func(Event) bool { return true },
			updates: updates, stopErr: func() error { return nil }}
	}
	jobsC, statusC := make(chan *streamread.Msg, 16), make(chan *streamread.Msg, 16)
	for i, at := range []int{1, 3, 3, 7} {
		jobsC <- msg(uint64(i+1), at)
	}
	close(jobsC) // the jobs follower stops
	for i, at := range []int{2, 3, 4} {
		statusC <- msg(uint64(i+1), at)
	}
	// The status source is caught up after its third event: it is
	// following, so the merge must not wait for it to end.
	statusC <- nil
	var got []string
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := merge(ctx, []*source{newSource(events.StreamJobs, jobsC), newSource(events.StreamStatus, statusC)}, func(e Event) error {
		got = append(got, e.Stream[4:5]+string(rune('0'+e.Seq)))
		if len(got) == 7 {
			return errStop
		}
		return nil
	})
	if !errors.Is(err, errStop) {
		t.Fatalf("merge: %v", err)
	}
	want := []string{"J1", "S1", "J2", "J3", "S2", "S3", "J4"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("merged %v, want %v", got, want)
	}
}

var errStop = errors.New("stop")
