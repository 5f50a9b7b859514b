package events_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/pcm-project/pcm/events"
)

// typeOfExample reads the event type from an example's file name:
// <type>.<anything>.json, where the type has three dots of its own.
func typeOfExample(name string) string {
	parts := strings.SplitN(name, ".", 5)
	return strings.Join(parts[:4], ".")
}

// TestSchemaExamples checks every valid example against its schema and the
// full parser, and that every invalid example fails its schema.
func TestSchemaExamples(t *testing.T) {
	for _, kind := range []string{"valid", "invalid"} {
		files, err := filepath.Glob(filepath.Join("testdata", "schema", kind, "*.json"))
		if err != nil || len(files) == 0 {
			t.Fatalf("no %s examples: %v", kind, err)
		}
		for _, f := range files {
			name := filepath.Base(f)
			t.Run(kind+"/"+name, func(t *testing.T) {
				data, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				typ := typeOfExample(name)
				err = events.ValidateSchema(typ, data)
				if kind == "invalid" {
					if !errors.Is(err, events.ErrSchema) {
						t.Fatalf("want ErrSchema, got %v", err)
					}
					return
				}
				if err != nil {
					t.Fatalf("valid example fails its schema: %v", err)
				}
				if err := parseExample(typ, data); err != nil {
					t.Fatalf("valid example fails the parser: %v", err)
				}
			})
		}
	}
}

// parseExample wraps data in an event with consistent attributes and parses it.
func parseExample(typ string, data []byte) error {
	var probe struct {
		JobID    string `json:"job_id"`
		ClientID string `json:"client_id"`
		State    string `json:"state"`
		Attempt  int    `json:"attempt"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return err
	}
	ev := event.New()
	ev.SetType(typ)
	ev.SetSubject(probe.JobID)
	ev.SetSource(events.PublisherSource("ci"))
	ev.SetID(probe.JobID)
	if typ == events.TypeJobStatus {
		ev.SetSource(events.AgentSource(probe.ClientID))
		ev.SetID(events.StatusID(probe.JobID, probe.ClientID, events.State(probe.State), probe.Attempt))
	}
	if err := ev.SetData(events.ContentTypeJSON, json.RawMessage(data)); err != nil {
		return err
	}
	var err error
	switch typ {
	case events.TypeJobOffered:
		_, err = events.ParseJobOffered(ev)
	case events.TypeJobCancelled:
		_, err = events.ParseJobCancelled(ev)
	case events.TypeJobStatus:
		_, err = events.ParseJobStatus(ev)
	case events.TypeJobHalted:
		_, err = events.ParseJobHalted(ev)
	case events.TypeJobResumed:
		_, err = events.ParseJobResumed(ev)
	}
	return err
}

func TestSchemaOfUnknownType(t *testing.T) {
	if err := events.ValidateSchema("pcm.job.nope.v1", []byte(`{}`)); !errors.Is(err, events.ErrUnknownType) {
		t.Fatalf("want ErrUnknownType, got %v", err)
	}
	if err := events.ValidateSchema(events.TypeJobOffered, []byte(`{`)); !errors.Is(err, events.ErrMalformed) {
		t.Fatalf("want ErrMalformed, got %v", err)
	}
}
