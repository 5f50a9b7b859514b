package integration_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/testenv"
)

// TestEventRoundTripThroughJetStream stores one event of each type in its
// real stream and reads it back: every attribute survives, the data byte for
// byte, and the stored body is the structured event exactly as sent.
func TestEventRoundTripThroughJetStream(t *testing.T) {
	env := testenv.StartBroker(t)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	m := now.Add(time.Hour)
	offer, err := events.NewJobOffered("ci", events.JobOffered{
		JobID: "rt-1", Name: "round trip",
		Command: events.CommandLine{Name: "install", Argv: []string{"msiexec", "/i", "a b.msi", "ünïcode"}, Background: true, Automated: true,
			Platforms: []string{"windows/*"}, Timeout: events.Duration(90 * time.Second), SuccessExitCodes: []int64{0, 3010}, MayReboot: true},
		Targets:    []events.Target{{Kind: events.TargetGroup, Name: "lab"}},
		OfferAfter: now, MandatoryAfter: &m, ExpireAfter: now.Add(48 * time.Hour), MaxAttempts: 3,
	})
	if err != nil {
		t.Fatal(err)
	}
	offer.SetExtension("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	cancelled, err := events.NewJobCancelled("ci", events.JobCancelled{JobID: "rt-1", Reason: "superseded", Targets: []events.Target{{Kind: events.TargetGroup, Name: "lab"}}})
	if err != nil {
		t.Fatal(err)
	}
	code := 3010
	status, err := events.NewJobStatus(events.JobStatus{JobID: "rt-1", ClientID: "ws-1", Host: "ws-1.corp", State: events.StateSucceeded,
		Attempt: 1, MaxAttempts: 3, ExitCode: &code, PID: 42, StartedAt: &now, FinishedAt: &m, Runner: events.RunnerService,
		User: "SYSTEM", OutputTail: "done\n", AgentVersion: "1.0", Platform: "windows/amd64", LockRevision: 7})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, stream, subject string
		ev                    event.Event
	}{
		{"offered", events.StreamJobs, "pcm.jobs.group.lab", offer},
		{"cancelled", events.StreamJobs, "pcm.jobs.group.lab", cancelled},
		{"status", events.StreamStatus, events.StatusSubject("ws-1", "rt-1"), status},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg, err := events.NewMsg(tc.subject, tc.ev, tc.ev.ID())
			if err != nil {
				t.Fatal(err)
			}
			ack, err := env.JS.PublishMsg(ctx, msg)
			if err != nil {
				t.Fatal(err)
			}
			s, err := env.JS.Stream(ctx, tc.stream)
			if err != nil {
				t.Fatal(err)
			}
			stored, err := s.GetMsg(ctx, ack.Sequence)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(stored.Data, msg.Data) {
				t.Fatalf("stored body differs from the sent one:\n%s\n%s", stored.Data, msg.Data)
			}
			if got := stored.Header.Get(events.HeaderContentType); got != events.ContentTypeCloudEvents {
				t.Fatalf("Content-Type %q", got)
			}
			back, err := events.Decode(stored.Header, stored.Data)
			if err != nil {
				t.Fatal(err)
			}
			if back.ID() != tc.ev.ID() || back.Source() != tc.ev.Source() || back.Type() != tc.ev.Type() ||
				back.Subject() != tc.ev.Subject() || !back.Time().Equal(tc.ev.Time()) ||
				back.SpecVersion() != tc.ev.SpecVersion() || back.DataContentType() != tc.ev.DataContentType() {
				t.Fatalf("attributes changed:\nsent %s\ngot  %s", tc.ev.String(), back.String())
			}
			if len(back.Extensions()) != len(tc.ev.Extensions()) {
				t.Fatalf("extensions changed: sent %v, got %v", tc.ev.Extensions(), back.Extensions())
			}
			for k, v := range tc.ev.Extensions() {
				if back.Extensions()[k] != v {
					t.Fatalf("extension %s: sent %v, got %v", k, v, back.Extensions()[k])
				}
			}
			if !bytes.Equal(back.Data(), tc.ev.Data()) {
				t.Fatalf("data changed:\nsent %s\ngot  %s", tc.ev.Data(), back.Data())
			}
			switch tc.name {
			case "offered":
				if _, err := events.ParseJobOffered(back); err != nil {
					t.Fatal(err)
				}
			case "cancelled":
				if _, err := events.ParseJobCancelled(back); err != nil {
					t.Fatal(err)
				}
			default:
				if _, err := events.ParseJobStatus(back); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}
