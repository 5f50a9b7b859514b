package events_test

import (
	"errors"
	"reflect"
	"slices"
	"testing"

	"github.com/pcm-project/pcm/events"
)

func TestSubjects(t *testing.T) {
	for _, tc := range []struct {
		target events.Target
		want   string
	}{
		{events.Target{Kind: events.TargetClient, Name: "ws-1"}, "pcm.jobs.client.ws-1"},
		{events.Target{Kind: events.TargetGroup, Name: "lab"}, "pcm.jobs.group.lab"},
		{events.Target{Kind: events.TargetAll}, "pcm.jobs.all"},
	} {
		if got := events.JobSubject(tc.target); got != tc.want {
			t.Errorf("JobSubject(%v) = %q, want %q", tc.target, got, tc.want)
		}
		back, ok := events.TargetOfSubject(tc.want)
		if !ok || back != tc.target {
			t.Errorf("TargetOfSubject(%q) = %v, %v", tc.want, back, ok)
		}
	}
	if got := events.StatusSubject("ws-1", "j1"); got != "pcm.status.ws-1.j1" {
		t.Errorf("StatusSubject = %q", got)
	}
	if got := events.ConsumerName("ws-1"); got != "agent-ws-1" {
		t.Errorf("ConsumerName = %q", got)
	}
	want := []string{"pcm.jobs.client.ws-1", "pcm.jobs.group.lab", "pcm.jobs.group.ops", "pcm.jobs.all"}
	if got := events.ConsumerFilters("ws-1", []string{"lab", "ops", "lab"}); !reflect.DeepEqual(got, want) {
		t.Errorf("ConsumerFilters = %v, want %v", got, want)
	}
	if _, ok := events.TargetOfSubject("pcm.status.a.b"); ok {
		t.Error("a status subject is not a job subject")
	}
	if got := events.CancelSubject("j1"); got != "pcm.jobs.cancel.j1" {
		t.Errorf("CancelSubject = %q", got)
	}
	if _, ok := events.TargetOfSubject(events.CancelSubject("j1")); ok {
		t.Error("a cancellation subject is not a target's subject")
	}
	if got := events.JobsStreamSubjects(); !slices.Contains(got, "pcm.jobs.cancel.*") {
		t.Errorf("PCM_JOBS subjects %v do not keep the cancellations", got)
	}
	if err := events.ValidID("client id", "a.b"); !errors.Is(err, events.ErrInvalidID) {
		t.Errorf("ValidID: %v", err)
	}
}
