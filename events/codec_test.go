package events_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/pcm-project/pcm/events"
)

func offerEvent(t *testing.T) ([]byte, events.JobOffered) {
	t.Helper()
	j := validJob()
	ev, err := events.NewJobOffered("ci", j)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := events.NewMsg(events.JobSubject(j.Targets[0]), ev, j.JobID)
	if err != nil {
		t.Fatal(err)
	}
	if got := msg.Header.Get("Content-Type"); got != events.ContentTypeCloudEvents {
		t.Fatalf("Content-Type %q", got)
	}
	if got := msg.Header.Get("Nats-Msg-Id"); got != j.JobID {
		t.Fatalf("Nats-Msg-Id %q", got)
	}
	return msg.Data, j
}

func TestDecodeStructured(t *testing.T) {
	body, j := offerEvent(t)
	h := nats.Header{}
	h.Set("Content-Type", events.ContentTypeCloudEvents)
	ev, err := events.Decode(h, body)
	if err != nil {
		t.Fatal(err)
	}
	got, err := events.ParseJobOffered(ev)
	if err != nil {
		t.Fatal(err)
	}
	if got.JobID != j.JobID || got.Command.Argv[0] != j.Command.Argv[0] || !got.MandatoryAfter.Equal(*j.MandatoryAfter) {
		t.Fatalf("decoded %+v", got)
	}
	// No Content-Type at all: still structured.
	if _, err := events.Decode(nats.Header{}, body); err != nil {
		t.Fatalf("structured without Content-Type: %v", err)
	}
	// StructuredJSON of a structured message is the body itself.
	if out := events.StructuredJSON(h, body); string(out) != string(body) {
		t.Fatal("StructuredJSON changed the body")
	}
}

func binaryHeader(t *testing.T, body []byte) (nats.Header, []byte) {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	h := nats.Header{}
	for _, k := range []string{"specversion", "id", "source", "type", "subject", "time"} {
		var s string
		_ = json.Unmarshal(m[k], &s)
		h.Set("ce-"+k, s)
	}
	h.Set("Content-Type", "application/json")
	return h, m["data"]
}

func TestDecodeBinary(t *testing.T) {
	body, j := offerEvent(t)
	h, data := binaryHeader(t, body)
	ev, err := events.Decode(h, data)
	if err != nil {
		t.Fatal(err)
	}
	got, err := events.ParseJobOffered(ev)
	if err != nil {
		t.Fatal(err)
	}
	if got.JobID != j.JobID || ev.Source() != "/pcm/publisher/ci" {
		t.Fatalf("decoded %+v from %s", got, ev.Source())
	}
	// Upper-case header names are read too (NATS keeps header case).
	up := nats.Header{}
	for k, v := range h {
		up[strings.ToUpper(k)] = v
	}
	if _, err := events.Decode(up, data); err != nil {
		t.Fatalf("upper-case binary headers: %v", err)
	}
	// A binary message converts to the structured JSON form.
	js := events.StructuredJSON(h, data)
	if _, err := events.Decode(nats.Header{}, js); err != nil {
		t.Fatalf("re-encoded binary event does not decode: %v", err)
	}
}

func TestDecodeRefuses(t *testing.T) {
	body, _ := offerEvent(t)
	bh, data := binaryHeader(t, body)
	structured := func() nats.Header {
		h := nats.Header{}
		h.Set("Content-Type", events.ContentTypeCloudEvents)
		return h
	}
	withHeader := func(h nats.Header, k, v string) nats.Header {
		c := nats.Header{}
		for kk, vv := range h {
			c[kk] = append([]string(nil), vv...)
		}
		if v == "" {
			c.Del(k)
		} else {
			c.Set(k, v)
		}
		return c
	}
	replace := func(old, new string) []byte { return []byte(strings.Replace(string(body), old, new, 1)) }
	cases := []struct {
		name   string
		header nats.Header
		body   []byte
		want   error
	}{
		{"not JSON", structured(), []byte("hello"), events.ErrMalformed},
		{"truncated JSON", structured(), body[:len(body)/2], events.ErrMalformed},
		{"empty body", structured(), nil, events.ErrMalformed},
		{"wrong specversion", structured(), replace(`"specversion":"1.0"`, `"specversion":"0.2"`), events.ErrMalformed},
		{"missing id", structured(), replace(`"id":"01JOB",`, ``), events.ErrMissingAttribute},
		{"unknown type", structured(), replace(`pcm.job.offered.v1`, `pcm.job.exploded.v1`), events.ErrUnknownType},
		{"oversized body", structured(), []byte(`{"x":"` + strings.Repeat("x", 200<<10) + `"}`), events.ErrTooLarge},
		{"other content type", withHeader(structured(), "Content-Type", "text/plain"), body, events.ErrMalformed},
		{"binary headers contradict structured content type", withHeader(bh, "Content-Type", events.ContentTypeCloudEvents), body, events.ErrMalformed},
		{"structured body contradicted by ce-type header", withHeader(structured(), "ce-type", "pcm.job.status.v1"), body, events.ErrMalformed},
		{"binary without ce-id", withHeader(bh, "ce-id", ""), data, events.ErrMissingAttribute},
		{"binary bad specversion", withHeader(bh, "ce-specversion", "9.9"), data, events.ErrMissingAttribute},
		{"binary non-JSON data type", withHeader(bh, "Content-Type", "text/plain"), data, events.ErrMissingAttribute},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := events.Decode(tc.header, tc.body)
			if !errors.Is(err, tc.want) {
				t.Fatalf("want %v, got %v", tc.want, err)
			}
		})
	}
}

// TestParseRefusesMismatches covers the cross-checks between attributes and
// data that only the parse step can see.
func TestParseRefusesMismatches(t *testing.T) {
	j := validJob()
	ev, _ := events.NewJobOffered("ci", j)

	wrongSubject := ev.Clone()
	wrongSubject.SetSubject("other")
	if _, err := events.ParseJobOffered(wrongSubject); !errors.Is(err, events.ErrMissingAttribute) {
		t.Fatalf("subject mismatch: %v", err)
	}
	wrongID := ev.Clone()
	wrongID.SetID("other")
	if _, err := events.ParseJobOffered(wrongID); !errors.Is(err, events.ErrMissingAttribute) {
		t.Fatalf("id mismatch: %v", err)
	}
	wrongSource := ev.Clone()
	wrongSource.SetSource("/somewhere/else")
	if _, err := events.ParseJobOffered(wrongSource); !errors.Is(err, events.ErrMissingAttribute) {
		t.Fatalf("source: %v", err)
	}
	if _, err := events.ParseJobStatus(ev); !errors.Is(err, events.ErrUnexpectedType) {
		t.Fatalf("offer parsed as status: %v", err)
	}
	unknownField := ev.Clone()
	_ = unknownField.SetData(events.ContentTypeJSON, json.RawMessage(strings.Replace(string(ev.Data()), `{`, `{"evil":1,`, 1)))
	if _, err := events.ParseJobOffered(unknownField); !errors.Is(err, events.ErrSchema) {
		t.Fatalf("unknown field: %v", err)
	}
	wrongTypes := ev.Clone()
	_ = wrongTypes.SetData(events.ContentTypeJSON, json.RawMessage(`{"job_id":7}`))
	if _, err := events.ParseJobOffered(wrongTypes); !errors.Is(err, events.ErrSchema) {
		t.Fatalf("wrong field types: %v", err)
	}
	notObject := ev.Clone()
	_ = notObject.SetData(events.ContentTypeJSON, json.RawMessage(`[1,2]`))
	if _, err := events.ParseJobOffered(notObject); !errors.Is(err, events.ErrSchema) {
		t.Fatalf("data not an object: %v", err)
	}
	if got := events.JobIDOf(notObject); got != "01JOB" {
		t.Fatalf("JobIDOf reads the subject: %q", got)
	}

	s := events.JobStatus{JobID: "j1", ClientID: "ws-1", State: events.StateFailed, Attempt: 2, Runner: events.RunnerService}
	sev, _ := events.NewJobStatus(s)
	impersonated := sev.Clone()
	impersonated.SetSource(events.AgentSource("ws-2"))
	if _, err := events.ParseJobStatus(impersonated); !errors.Is(err, events.ErrMissingAttribute) {
		t.Fatalf("status with another client's source: %v", err)
	}
}

// TestContentTypesTheSpecAllows: what the CloudEvents JSON format reads as
// JSON data is accepted, in structured and in binary mode (no
// datacontenttype at all, media-type parameters such as charset=utf-8); any
// other media type, or another charset, is refused naming the rule.
func TestContentTypesTheSpecAllows(t *testing.T) {
	body, _ := offerEvent(t)
	bh, data := binaryHeader(t, body)
	var envelope map[string]json.RawMessage
	if err := json.Unmarshal(body, &envelope); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ct   string // "" leaves the attribute out
		want string // "" accepted, else a part of the error
	}{
		{"", ""},
		{"application/json", ""},
		{"application/json; charset=utf-8", ""},
		{"application/json;charset=\"utf-8\"", ""},
		{"text/plain", `datacontenttype "text/plain": pcm data is JSON: give application/json (parameters such as charset=utf-8 allowed) or leave the attribute out`},
		{"application/xml", `datacontenttype "application/xml": pcm data is JSON`},
		{"application/json; charset=iso-8859-1", `datacontenttype "application/json; charset=iso-8859-1": JSON text is UTF-8: give charset=utf-8 or no charset`},
		{"application/json;;", `pcm data is JSON`},
	} {
		t.Run("structured "+tc.ct, func(t *testing.T) {
			env := map[string]json.RawMessage{}
			for k, v := range envelope {
				env[k] = v
			}
			delete(env, "datacontenttype")
			if tc.ct != "" {
				env["datacontenttype"] = str(tc.ct)
			}
			b, _ := json.Marshal(env)
			ev, err := events.Decode(nats.Header{}, b)
			checkContentType(t, tc.want, err)
			if err == nil {
				if _, err := events.ParseJobOffered(ev); err != nil {
					t.Fatalf("decoded but does not parse: %v", err)
				}
			}
		})
		t.Run("binary "+tc.ct, func(t *testing.T) {
			h := nats.Header{}
			for k, v := range bh {
				h[k] = v
			}
			h.Del("Content-Type")
			if tc.ct != "" {
				h.Set("Content-Type", tc.ct)
			}
			ev, err := events.Decode(h, data)
			checkContentType(t, tc.want, err)
			if err == nil {
				if _, err := events.ParseJobOffered(ev); err != nil {
					t.Fatalf("decoded but does not parse: %v", err)
				}
			}
		})
	}
}

func checkContentType(t *testing.T, want string, err error) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("refused: %v", err)
	case want != "" && (err == nil || !errors.Is(err, events.ErrMissingAttribute) || !strings.Contains(err.Error(), want)):
		t.Fatalf("got %v, want ErrMissingAttribute saying %q", err, want)
	}
}
