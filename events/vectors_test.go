package events_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/pcm-project/pcm/events"
)

var updateVectors = flag.Bool("update-vectors", false, "rewrite testdata/signature-vectors.json")

// vectorsFile holds the signature test vectors of docs/protocol.md, which
// the example in another language (examples/node) checks too.
const vectorsFile = "testdata/signature-vectors.json"

// vectorSeed is the throwaway signing key of the test vectors. Never trust
// its public key.
const vectorSeed = "SUABVGJ74ZIMINUNIKTMZT4IJCCGH7IVPZPJIGXOKBBBZDD26YLNNCFUYI"

// SignatureVectors is the file of test vectors: a key, and messages as
// carried on NATS with the signing input a verifier computes from each and
// whether the signature verifies.
type SignatureVectors struct {
	Comment   string   `json:"comment"`
	Seed      string   `json:"seed"`
	PublicKey string   `json:"public_key"`
	Vectors   []Vector `json:"vectors"`
}

// Vector is one message: its headers and body as carried, the signing
// input of the event it carries, and whether its signature verifies.
type Vector struct {
	Name         string            `json:"name"`
	Headers      map[string]string `json:"headers"`
	Body         string            `json:"body"`
	SigningInput string            `json:"signing_input"`
	Verifies     bool              `json:"verifies"`
}

// vectorEvent is the offer the vectors sign, with fixed attributes.
func vectorEvent(t *testing.T, kp nkeys.KeyPair) event.Event {
	t.Helper()
	offer := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	mandatory := offer.Add(2 * time.Hour)
	job := events.JobOffered{
		JobID: "01JVECT0R5AMP1E0FFER000001", Name: "Install editor 1.2 « ünïcode » <&>",
		Command: events.CommandLine{Argv: []string{"msiexec", "/i", "editor.msi", "/qn"}, Background: true, Automated: true,
			Platforms: []string{"windows/*"}, Timeout: events.Duration(30 * time.Minute), SuccessExitCodes: []int64{0, 3010}},
		Targets:    []events.Target{{Kind: events.TargetGroup, Name: "lab"}, {Kind: events.TargetClient, Name: "ws-042"}},
		OfferAfter: offer, MandatoryAfter: &mandatory, ExpireAfter: offer.Add(7 * 24 * time.Hour), MaxAttempts: 3,
	}
	ev, err := events.NewJobOffered("ci", job)
	if err != nil {
		t.Fatal(err)
	}
	ev.SetTime(time.Date(2026, 11, 21, 9, 59, 58, 500_000_000, time.UTC))
	if err := events.Sign(&ev, kp); err != nil {
		t.Fatal(err)
	}
	return ev
}

// editJSON re-writes a structured body's members.
func editJSON(t *testing.T, body []byte, edit func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// buildVectors makes the vectors from the fixed key and event.
func buildVectors(t *testing.T) SignatureVectors {
	t.Helper()
	kp, err := nkeys.FromSeed([]byte(vectorSeed))
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	ev := vectorEvent(t, kp)
	msg, err := events.NewMsg("pcm.jobs.group.lab", ev, "offer.01JVECT0R5AMP1E0FFER000001.group:lab")
	if err != nil {
		t.Fatal(err)
	}
	structured := msg.Data
	var m map[string]any
	_ = json.Unmarshal(structured, &m)
	data, _ := json.Marshal(m["data"])
	binary := map[string]string{"Content-Type": "application/json; charset=utf-8"}
	for _, k := range []string{"specversion", "id", "source", "type", "subject", "pcmkey", "pcmsig"} {
		binary["ce-"+k] = m[k].(string)
	}
	binary["ce-time"] = "2026-11-21T09:59:58.5Z"
	ct := map[string]string{"Content-Type": events.ContentTypeCloudEvents}
	vs := SignatureVectors{
		Comment: "pcm signature test vectors (docs/protocol.md): each message's headers and body as carried on NATS, " +
			"the signing input a verifier computes from the event it carries, and whether the ed25519 signature in pcmsig verifies " +
			"with public_key. The seed is a throwaway test key: never trust its public key.",
		Seed: vectorSeed, PublicKey: pub,
		Vectors: []Vector{
			{Name: "an offer as pcm publishes it (structured mode)", Headers: ct, Body: string(structured), Verifies: true},
			{Name: "the same offer re-serialised by a relay: time with fewer digits, data re-spaced and re-ordered, a charset added",
				Headers: ct, Body: string(editJSON(t, structured, func(m map[string]any) {
					m["time"] = "2026-11-21T09:59:58.5Z"
					m["datacontenttype"] = "application/json; charset=utf-8"
				})), Verifies: true},
			{Name: "the same offer in binary mode", Headers: binary, Body: string(data), Verifies: true},
			{Name: "the time moved by one millisecond", Headers: ct, Body: string(editJSON(t, structured, func(m map[string]any) {
				m["time"] = "2026-11-21T09:59:58.501Z"
			})), Verifies: false},
			{Name: "an argument changed", Headers: ct, Body: string(editJSON(t, structured, func(m map[string]any) {
				m["data"].(map[string]any)["command"].(map[string]any)["argv"].([]any)[1] = "/x"
			})), Verifies: false},
		},
	}
	for i := range vs.Vectors {
		v := &vs.Vectors[i]
		h := nats.Header{}
		for k, val := range v.Headers {
			h.Set(k, val)
		}
		got, err := events.Decode(h, []byte(v.Body))
		if err != nil {
			t.Fatalf("vector %q does not decode: %v", v.Name, err)
		}
		input, err := events.SigningInput(got, pub)
		if err != nil {
			t.Fatal(err)
		}
		v.SigningInput = string(input)
	}
	return vs
}

// TestSignatureVectors checks the vectors file against what pcm computes,
// and that each vector verifies or not as it says. With -update-vectors it
// rewrites the file.
func TestSignatureVectors(t *testing.T) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(buildVectors(t)); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	if *updateVectors {
		if err := os.WriteFile(vectorsFile, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(vectorsFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, b) {
		t.Fatalf("%s is out of date: run go test ./events -run TestSignatureVectors -update-vectors", vectorsFile)
	}
	var file SignatureVectors
	if err := json.Unmarshal(got, &file); err != nil {
		t.Fatal(err)
	}
	for _, v := range file.Vectors {
		h := nats.Header{}
		for k, val := range v.Headers {
			h.Set(k, val)
		}
		ev, err := events.Decode(h, []byte(v.Body))
		if err != nil {
			t.Fatal(err)
		}
		signer, err := events.Verify(ev, []string{file.PublicKey})
		switch {
		case v.Verifies && (err != nil || signer != file.PublicKey):
			t.Errorf("vector %q: want verified, got %v", v.Name, err)
		case !v.Verifies && !errors.Is(err, events.ErrBadSignature):
			t.Errorf("vector %q: want ErrBadSignature, got %v", v.Name, err)
		}
		if v.Verifies {
			if _, err := events.ParseJobOffered(ev); err != nil {
				t.Errorf("vector %q does not parse: %v", v.Name, err)
			}
		}
	}
}
