package events_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/pcm-project/pcm/events"
)

func newUser(t *testing.T) (nkeys.KeyPair, string) {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return kp, pub
}

// signedOffer returns a valid offer event signed by kp.
func signedOffer(t *testing.T, kp nkeys.KeyPair) event.Event {
	t.Helper()
	ev, err := events.NewJobOffered("ci", validJob())
	if err != nil {
		t.Fatal(err)
	}
	if err := events.Sign(&ev, kp); err != nil {
		t.Fatal(err)
	}
	return ev
}

// structured encodes ev as pcm publishes it and decodes it again.
func structured(t *testing.T, ev event.Event) (event.Event, []byte) {
	t.Helper()
	msg, err := events.NewMsg("pcm.jobs.group.lab", ev, "")
	if err != nil {
		t.Fatal(err)
	}
	got, err := events.Decode(msg.Header, msg.Data)
	if err != nil {
		t.Fatalf("decoding a signed structured event: %v", err)
	}
	return got, msg.Data
}

// rewrite splits a structured body into its members (the data kept as raw
// bytes), lets edit change them, and decodes the result as an event.
func rewrite(t *testing.T, body []byte, edit func(m map[string]json.RawMessage)) event.Event {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := events.Decode(nats.Header{}, b)
	if err != nil {
		t.Fatalf("rewritten event does not decode: %v", err)
	}
	return ev
}

// TestSignVerify is the table of signed, unsigned, altered and wrongly
// signed events against a list of trusted keys.
func TestSignVerify(t *testing.T) {
	kpA, pubA := newUser(t)
	kpB, pubB := newUser(t)
	kpX, pubX := newUser(t) // never trusted
	acct, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	pubAcct, _ := acct.PublicKey()
	trusted := []string{pubA, pubB, pubAcct}

	_, bodyA := structured(t, signedOffer(t, kpA))
	cases := []struct {
		name    string
		ev      func() event.Event
		trusted []string
		want    error  // nil: verifies
		signer  string // expected signer when it verifies
	}{
		{"signed by the first trusted key", func() event.Event { return signedOffer(t, kpA) }, trusted, nil, pubA},
		{"signed by the second trusted key", func() event.Event { return signedOffer(t, kpB) }, trusted, nil, pubB},
		{"signed by a trusted account key", func() event.Event { return signedOffer(t, acct) }, trusted, nil, pubAcct},
		{"signed, sent and decoded", func() event.Event { ev, _ := structured(t, signedOffer(t, kpA)); return ev }, trusted, nil, pubA},
		{"unsigned", func() event.Event {
			ev, err := events.NewJobOffered("ci", validJob())
			if err != nil {
				t.Fatal(err)
			}
			return ev
		}, trusted, events.ErrUnsigned, ""},
		{"unsigned with a key only", func() event.Event {
			return rewrite(t, bodyA, func(m map[string]json.RawMessage) { delete(m, "pcmsig") })
		}, trusted, events.ErrUnsigned, ""},
		{"signed by an unknown key", func() event.Event { return signedOffer(t, kpX) }, trusted, events.ErrUntrustedKey, ""},
		{"no trusted key at all", func() event.Event { return signedOffer(t, kpA) }, nil, events.ErrUntrustedKey, ""},
		{"tampered data byte", func() event.Event {
			b := bytes.Replace(bodyA, []byte("/bin/true"), []byte("/bin/truf"), 1)
			ev, err := events.Decode(nats.Header{}, b)
			if err != nil {
				t.Fatal(err)
			}
			return ev
		}, trusted, events.ErrBadSignature, ""},
		{"re-encoded untouched", func() event.Event {
			return rewrite(t, bodyA, func(map[string]json.RawMessage) {})
		}, trusted, nil, pubA},
		{"data re-spaced and re-ordered by a relay", func() event.Event {
			// Same JSON value, other bytes: the data's value is signed.
			return rewrite(t, bodyA, func(m map[string]json.RawMessage) {
				var d map[string]any
				_ = json.Unmarshal(m["data"], &d)
				b, _ := json.MarshalIndent(d, "", "    ")
				m["data"] = b
			})
		}, trusted, nil, pubA},
		{"data carried as data_base64", func() event.Event {
			return rewrite(t, bodyA, func(m map[string]json.RawMessage) {
				m["data_base64"] = str(base64.StdEncoding.EncodeToString(m["data"]))
				delete(m, "data")
			})
		}, trusted, nil, pubA},
		{"time re-written with other digits and another offset", func() event.Event {
			return rewrite(t, bodyA, func(m map[string]json.RawMessage) {
				var ts time.Time
				_ = json.Unmarshal(m["time"], &ts)
				m["time"] = str(ts.In(time.FixedZone("", 2*3600)).Format("2006-01-02T15:04:05.000000000-07:00"))
			})
		}, trusted, nil, pubA},
		{"charset added to the datacontenttype", func() event.Event {
			return rewrite(t, bodyA, func(m map[string]json.RawMessage) { m["datacontenttype"] = str("application/json; charset=utf-8") })
		}, trusted, nil, pubA},
		{"tampered data value", func() event.Event {
			return rewrite(t, bodyA, func(m map[string]json.RawMessage) {
				var d map[string]any
				_ = json.Unmarshal(m["data"], &d)
				d["max_attempts"] = 2
				m["data"], _ = json.Marshal(d)
			})
		}, trusted, events.ErrBadSignature, ""},
		{"tampered time, by a millisecond", func() event.Event {
			return rewrite(t, bodyA, func(m map[string]json.RawMessage) {
				var ts time.Time
				_ = json.Unmarshal(m["time"], &ts)
				m["time"] = str(ts.Add(time.Millisecond).Format(time.RFC3339Nano))
			})
		}, trusted, events.ErrBadSignature, ""},
		{"signed in the legacy form (pcm.signature.v1)", func() event.Event {
			ev := signedOffer(t, kpA)
			input, err := events.SigningInputV1(ev, pubA)
			if err != nil {
				t.Fatal(err)
			}
			sig, err := kpA.Sign(input)
			if err != nil {
				t.Fatal(err)
			}
			ev.SetExtension(events.ExtensionSignature, base64.RawURLEncoding.EncodeToString(sig))
			return ev
		}, trusted, nil, pubA},
		{"tampered subject", func() event.Event {
			return rewrite(t, bodyA, func(m map[string]json.RawMessage) { m["subject"] = str("01OTHER") })
		}, trusted, events.ErrBadSignature, ""},
		{"tampered source", func() event.Event {
			return rewrite(t, bodyA, func(m map[string]json.RawMessage) { m["source"] = str("/pcm/publisher/mallory") })
		}, trusted, events.ErrBadSignature, ""},
		{"tampered time", func() event.Event {
			return rewrite(t, bodyA, func(m map[string]json.RawMessage) { m["time"] = str(time.Now().UTC().Format(time.RFC3339Nano)) })
		}, trusted, events.ErrBadSignature, ""},
		{"tampered type", func() event.Event {
			return rewrite(t, bodyA, func(m map[string]json.RawMessage) { m["type"] = str(events.TypeJobCancelled) })
		}, trusted, events.ErrBadSignature, ""},
		{"signer swapped for another trusted key", func() event.Event {
			return rewrite(t, bodyA, func(m map[string]json.RawMessage) { m["pcmkey"] = str(pubB) })
		}, trusted, events.ErrBadSignature, ""},
		{"signer swapped for an untrusted key", func() event.Event {
			return rewrite(t, bodyA, func(m map[string]json.RawMessage) { m["pcmkey"] = str(pubX) })
		}, trusted, events.ErrUntrustedKey, ""},
		{"signature of another event", func() event.Event {
			_, other := structured(t, signedOffer(t, kpA)) // another time
			var o map[string]json.RawMessage
			_ = json.Unmarshal(other, &o)
			return rewrite(t, bodyA, func(m map[string]json.RawMessage) { m["pcmsig"] = o["pcmsig"] })
		}, trusted, events.ErrBadSignature, ""},
		{"signature not base64url", func() event.Event {
			return rewrite(t, bodyA, func(m map[string]json.RawMessage) { m["pcmsig"] = str("not/base64+") })
		}, trusted, events.ErrBadSignature, ""},
		{"signature without its key", func() event.Event {
			return rewrite(t, bodyA, func(m map[string]json.RawMessage) { delete(m, "pcmkey") })
		}, trusted, events.ErrBadSignature, ""},
		{"signature not a string", func() event.Event {
			return rewrite(t, bodyA, func(m map[string]json.RawMessage) { m["pcmsig"] = json.RawMessage("42") })
		}, trusted, events.ErrBadSignature, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			signer, err := events.Verify(c.ev(), c.trusted)
			if c.want == nil {
				if err != nil {
					t.Fatalf("want verified, got %v", err)
				}
				if signer != c.signer {
					t.Fatalf("signer %s, want %s", signer, c.signer)
				}
				return
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("want %v, got %v", c.want, err)
			}
		})
	}
}

// str is the JSON of s.
func str(s string) json.RawMessage {
	b, _ := json.Marshal(s)
	return b
}

// TestSignedEventDecodes checks that a signed event keeps its signature
// through the structured and the binary modes, that the structured body
// round-trips byte for byte, and that the Parse functions still accept it.
func TestSignedEventDecodes(t *testing.T) {
	kp, pub := newUser(t)
	trusted := []string{pub}
	ev := signedOffer(t, kp)

	got, body := structured(t, ev)
	if _, err := events.Verify(got, trusted); err != nil {
		t.Fatalf("structured: %v", err)
	}
	again, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, body) {
		t.Fatalf("structured event does not round-trip byte for byte:\n%s\n%s", body, again)
	}
	if _, err := events.ParseJobOffered(got); err != nil {
		t.Fatalf("a signed offer does not parse: %v", err)
	}
	if out := events.StructuredJSON(nats.Header{}, body); !bytes.Equal(out, body) {
		t.Fatal("StructuredJSON changed a signed body")
	}

	// Binary mode: every attribute, the extensions included, as ce- headers.
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	h := nats.Header{}
	for _, k := range []string{"specversion", "id", "source", "type", "subject", "time", "pcmsig", "pcmkey"} {
		var s string
		if err := json.Unmarshal(m[k], &s); err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		h.Set("ce-"+k, s)
	}
	h.Set("Content-Type", events.ContentTypeJSON)
	bin, err := events.Decode(h, m["data"])
	if err != nil {
		t.Fatal(err)
	}
	if signer, err := events.Verify(bin, trusted); err != nil || signer != pub {
		t.Fatalf("binary: signer %q, %v", signer, err)
	}
	// A binary event converted to structured JSON still verifies.
	js := events.StructuredJSON(h, m["data"])
	conv, err := events.Decode(nats.Header{}, js)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.Verify(conv, trusted); err != nil {
		t.Fatalf("binary converted to structured: %v", err)
	}
	// Binary with one data byte changed does not.
	tampered := bytes.Replace(m["data"], []byte("/bin/true"), []byte("/bin/trUe"), 1)
	bad, err := events.Decode(h, tampered)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.Verify(bad, trusted); !errors.Is(err, events.ErrBadSignature) {
		t.Fatalf("binary tampered: want ErrBadSignature, got %v", err)
	}
	// Nor without its signature header.
	h.Del("ce-pcmsig")
	unsigned, err := events.Decode(h, m["data"])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.Verify(unsigned, trusted); !errors.Is(err, events.ErrUnsigned) {
		t.Fatalf("binary unsigned: want ErrUnsigned, got %v", err)
	}
}

// TestSignCancellation signs a cancellation: it verifies, and re-signing
// with another key replaces the signature.
func TestSignCancellation(t *testing.T) {
	kpA, pubA := newUser(t)
	kpB, pubB := newUser(t)
	ev, err := events.NewJobCancelled("ci", events.JobCancelled{JobID: "01JOB", Reason: "wrong version",
		Targets: []events.Target{{Kind: events.TargetAll}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := events.Sign(&ev, kpA); err != nil {
		t.Fatal(err)
	}
	got, _ := structured(t, ev)
	if signer, err := events.Verify(got, []string{pubA}); err != nil || signer != pubA {
		t.Fatalf("signer %q, %v", signer, err)
	}
	if err := events.Sign(&ev, kpB); err != nil {
		t.Fatal(err)
	}
	if _, err := events.Verify(ev, []string{pubA}); !errors.Is(err, events.ErrUntrustedKey) {
		t.Fatalf("re-signed by B, trusting A: want ErrUntrustedKey, got %v", err)
	}
	if signer, err := events.Verify(ev, []string{pubA, pubB}); err != nil || signer != pubB {
		t.Fatalf("re-signed by B: signer %q, %v", signer, err)
	}
}

// TestSignRefusesKeys: only user and account key pairs holding their seed
// sign.
func TestSignRefusesKeys(t *testing.T) {
	server, err := nkeys.CreateServer()
	if err != nil {
		t.Fatal(err)
	}
	_, pub := newUser(t)
	publicOnly, err := nkeys.FromPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	for name, kp := range map[string]nkeys.KeyPair{"nil": nil, "server key": server, "public key only": publicOnly} {
		t.Run(name, func(t *testing.T) {
			ev, err := events.NewJobOffered("ci", validJob())
			if err != nil {
				t.Fatal(err)
			}
			if err := events.Sign(&ev, kp); !errors.Is(err, events.ErrInvalidKey) {
				t.Fatalf("want ErrInvalidKey, got %v", err)
			}
		})
	}
	if err := events.Sign(nil, server); !errors.Is(err, events.ErrMalformed) {
		t.Fatalf("nil event: want ErrMalformed, got %v", err)
	}
}

func TestValidateTrustedKeys(t *testing.T) {
	_, user := newUser(t)
	acct, _ := nkeys.CreateAccount()
	pubAcct, _ := acct.PublicKey()
	server, _ := nkeys.CreateServer()
	pubServer, _ := server.PublicKey()
	seed, _ := acct.Seed()
	cases := []struct {
		name string
		keys []string
		want error
	}{
		{"none", nil, nil},
		{"user and account", []string{user, pubAcct}, nil},
		{"server key", []string{user, pubServer}, events.ErrInvalidKey},
		{"a seed", []string{string(seed)}, events.ErrInvalidKey},
		{"bad checksum", []string{flipLast(user)}, events.ErrInvalidKey},
		{"empty", []string{""}, events.ErrInvalidKey},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := events.ValidateTrustedKeys(c.keys)
			if (c.want == nil && err != nil) || (c.want != nil && !errors.Is(err, c.want)) {
				t.Fatalf("want %v, got %v", c.want, err)
			}
			if err != nil && strings.Contains(err.Error(), string(seed)[:8]) {
				t.Fatalf("the error repeats a seed: %v", err)
			}
		})
	}
}

// flipLast changes the last character of a key.
func flipLast(k string) string {
	if k[len(k)-1] == 'A' {
		return k[:len(k)-1] + "B"
	}
	return k[:len(k)-1] + "A"
}
