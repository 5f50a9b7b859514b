package events

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nkeys"
)

// The CloudEvents extension attributes of a signed event. Both are strings;
// in binary mode they travel as the ce-pcmsig and ce-pcmkey headers, in
// structured mode as top-level members of the JSON event.
const (
	// ExtensionSignature holds the ed25519 signature of the event's signing
	// input (see Sign), base64url without padding.
	ExtensionSignature = "pcmsig"
	// ExtensionSigner holds the signer's public key: an nkeys user ("U...")
	// or account ("A...") public key.
	ExtensionSigner = "pcmkey"
)

// The domains that start the signing inputs, so that a pcm signature can
// never be mistaken for a signature over anything else (an nkeys nonce, a
// JWT) made with the same key, and so that the form can evolve.
const (
	// signingDomain starts the signing input Sign writes (see Sign).
	signingDomain = "pcm.signature.v2"
	// legacySigningDomain started the signing input of earlier releases
	// (see signingInputV1); Verify still accepts it.
	legacySigningDomain = "pcm.signature.v1"
)

// TimeLayout is how the signing input writes a time: the instant in UTC to
// the millisecond, always three digits ("2026-11-21T10:00:00.500Z", as
// JavaScript's Date.prototype.toISOString writes it). pcm's own events
// carry times to the millisecond (written "…:00.5Z" by the CloudEvents Go
// SDK), so every language's clock type keeps them.
const TimeLayout = "2006-01-02T15:04:05.000Z"

// CanonicalTime writes t as the signing input does: in UTC, truncated (not
// rounded) to the millisecond, in TimeLayout; "" for the zero time.
func CanonicalTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Truncate(time.Millisecond).Format(TimeLayout)
}

// Sign signs ev with kp, an nkeys user or account key pair holding its seed
// (nkeys.CreateUser, or a seed file read by publisher.ReadSigningKey): it sets
// the pcmkey attribute to kp's public key and pcmsig to the ed25519
// signature of the event's signing input. A signature already present is
// replaced. Sign the event last: any later change of an attribute or of the
// data's value makes Verify fail.
//
// The signing input is the canonical JSON (RFC 8785, see CanonicalJSON) of
// the array
//
//	["pcm.signature.v2", specversion, id, source, type, subject, time,
//	 dataschema, pcmkey, data]
//
// where time is the instant in UTC to the millisecond (CanonicalTime), an
// absent attribute is "", and data is the event's data as a JSON value. It
// survives re-serialisation: a relay that writes the time with more or
// fewer digits, re-spaces or re-orders the data, converts between
// structured and binary mode or adds a charset to the datacontenttype does
// not change it. The datacontenttype is not signed (pcm reads JSON data
// only), nor are the NATS subject, the headers and other extension
// attributes: an agent checks that the subject is one of the signed
// targets, and pcm reads no other extension. docs/protocol.md has test
// vectors.
func Sign(ev *event.Event, kp nkeys.KeyPair) error {
	if ev == nil || ev.Context == nil {
		return fmt.Errorf("%w: no event to sign", ErrMalformed)
	}
	key, err := signerKey(kp)
	if err != nil {
		return err
	}
	if err := ev.Context.SetExtension(ExtensionSignature, nil); err != nil {
		return fmt.Errorf("%w: clearing %s: %v", ErrMalformed, ExtensionSignature, err)
	}
	if err := ev.Context.SetExtension(ExtensionSigner, key); err != nil {
		return fmt.Errorf("%w: setting %s: %v", ErrMalformed, ExtensionSigner, err)
	}
	input, err := signingInput(*ev, key)
	if err != nil {
		return fmt.Errorf("signing event %s: %w", ev.ID(), err)
	}
	sig, err := kp.Sign(input)
	if err != nil {
		return fmt.Errorf("%w: signing event %s with %s: %v (a signing key must hold its seed)", ErrInvalidKey, ev.ID(), key, err)
	}
	if err := ev.Context.SetExtension(ExtensionSignature, base64.RawURLEncoding.EncodeToString(sig)); err != nil {
		return fmt.Errorf("%w: setting %s: %v", ErrMalformed, ExtensionSignature, err)
	}
	return nil
}

// Verify checks that ev is signed (ErrUnsigned), by one of the trusted
// public keys (ErrUntrustedKey), and that the signature matches the event's
// content (ErrBadSignature); it returns the signer's public key (with
// ErrUntrustedKey or ErrBadSignature, the key the event claims, when it has
// one). With no trusted key, every signed event is untrusted. Verify checks
// the signature only: the Parse functions check the rest.
func Verify(ev event.Event, trusted []string) (signer string, err error) {
	sig, hasSig, sigOK := stringExtension(ev, ExtensionSignature)
	key, hasKey, keyOK := stringExtension(ev, ExtensionSigner)
	switch {
	case !hasSig:
		return "", fmt.Errorf("%w: event %s (%s) carries no %s attribute: only signed jobs are accepted here; publish with --signing-key (PCM_SIGNING_KEY) of a trusted key",
			ErrUnsigned, ev.ID(), ev.Type(), ExtensionSignature)
	case !sigOK || !keyOK:
		return "", fmt.Errorf("%w: event %s: the %s and %s attributes must be strings", ErrBadSignature, ev.ID(), ExtensionSignature, ExtensionSigner)
	case !hasKey:
		return "", fmt.Errorf("%w: event %s has a %s but no %s (the signer's public key)", ErrBadSignature, ev.ID(), ExtensionSignature, ExtensionSigner)
	}
	if !slices.Contains(trusted, key) {
		claimed := key
		if !isSigningPublicKey(key) {
			claimed = fmt.Sprintf("%q (not a public key)", shortKey(key))
		}
		return key, fmt.Errorf("%w: event %s is signed by %s, which is not a trusted key (trusted: %s): sign with a trusted key, or trust this one (--trusted-keys) if it is yours",
			ErrUntrustedKey, ev.ID(), claimed, describeKeys(trusted))
	}
	pub, err := nkeys.FromPublicKey(key)
	if err != nil || !isSigningPublicKey(key) {
		return key, fmt.Errorf("%w: event %s: trusted key %s is not an nkeys user or account public key", ErrBadSignature, ev.ID(), shortKey(key))
	}
	raw, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		return key, fmt.Errorf("%w: event %s: %s is not base64url without padding: %v", ErrBadSignature, ev.ID(), ExtensionSignature, err)
	}
	input, err := signingInput(ev, key)
	if err != nil {
		return key, fmt.Errorf("%w: event %s: %w", ErrBadSignature, ev.ID(), err)
	}
	if pub.Verify(input, raw) == nil {
		return key, nil
	}
	if legacy, err := signingInputV1(ev, key); err == nil && pub.Verify(legacy, raw) == nil {
		return key, nil
	}
	return key, fmt.Errorf("%w: event %s: the signature of %s does not match the event's content: it was altered after signing",
		ErrBadSignature, ev.ID(), shortKey(key))
}

// ValidateTrustedKeys checks that each key is an nkeys user or account
// public key (ErrInvalidKey otherwise).
func ValidateTrustedKeys(keys []string) error {
	for i, k := range keys {
		switch {
		case isSigningPublicKey(k):
		case strings.HasPrefix(k, "S"):
			// Never repeat a seed, not even in part.
			return fmt.Errorf("%w: trusted key %d looks like a seed, a secret: give its public key instead (pcm keys public FILE), and keep the seed with the publisher", ErrInvalidKey, i+1)
		default:
			return fmt.Errorf("%w: trusted key %d (%q) is not an nkeys user or account public key (56 characters starting with U or A, as printed by pcm keys new)", ErrInvalidKey, i+1, shortKey(k))
		}
	}
	return nil
}

// SignerOf returns kp's public key when kp can sign pcm events: an nkeys
// user or account key pair (ErrInvalidKey otherwise).
func SignerOf(kp nkeys.KeyPair) (string, error) { return signerKey(kp) }

func signerKey(kp nkeys.KeyPair) (string, error) {
	if kp == nil {
		return "", fmt.Errorf("%w: no key pair", ErrInvalidKey)
	}
	key, err := kp.PublicKey()
	if err != nil {
		return "", fmt.Errorf("%w: reading the public key: %v", ErrInvalidKey, err)
	}
	if !isSigningPublicKey(key) {
		return "", fmt.Errorf("%w: %s is not a user or account key: create one with pcm keys new", ErrInvalidKey, shortKey(key))
	}
	return key, nil
}

func isSigningPublicKey(k string) bool {
	return nkeys.IsValidPublicUserKey(k) || nkeys.IsValidPublicAccountKey(k)
}

// ShortKey abbreviates a public key for messages and tables
// ("UDYL25OOTWVR...6BHT"); the full key is in the event.
func ShortKey(k string) string { return shortKey(k) }

// shortKey abbreviates a public key for messages; the full key is in the
// event.
func shortKey(k string) string {
	if len(k) > 16 {
		return k[:12] + "..." + k[len(k)-4:]
	}
	return k
}

// stringExtension reads an extension: has says it is present, ok that it
// is a string.
func stringExtension(ev event.Event, name string) (v string, has, ok bool) {
	raw, has := ev.Extensions()[name]
	if !has {
		return "", false, false
	}
	v, ok = raw.(string)
	return v, true, ok
}

// signingInput is the byte string Sign signs (see Sign).
func signingInput(ev event.Event, key string) ([]byte, error) {
	data := ev.Data()
	if len(data) == 0 {
		data = []byte(`""`) // no data: an empty string, never confused with an object
	}
	if !utf8.Valid(data) || !json.Valid(data) {
		return nil, fmt.Errorf("%w: the data is not JSON text, which is what is signed", ErrMalformed)
	}
	fields := []string{signingDomain, ev.SpecVersion(), ev.ID(), ev.Source(), ev.Type(), ev.Subject(),
		CanonicalTime(ev.Time()), ev.DataSchema(), key}
	var b bytes.Buffer
	b.WriteByte('[')
	for i, f := range fields {
		if !utf8.ValidString(f) {
			return nil, fmt.Errorf("%w: attribute %d of the signing input is not UTF-8", ErrMalformed, i)
		}
		enc, _ := json.Marshal(f)
		b.Write(enc)
		b.WriteByte(',')
	}
	b.Write(data)
	b.WriteByte(']')
	return CanonicalJSON(b.Bytes())
}

// signingInputV1 is the signing input of earlier releases, which Verify
// still accepts for the events they signed: the compact JSON array of
// strings ["pcm.signature.v1", specversion, id, source, type, subject, time,
// datacontenttype, dataschema, pcmkey, base64(data)], time in
// time.RFC3339Nano in UTC, the data bytes exactly as carried. A relay that
// re-serialises the event breaks it.
func signingInputV1(ev event.Event, key string) ([]byte, error) {
	t := ""
	if ts := ev.Time(); !ts.IsZero() {
		t = ts.UTC().Format(time.RFC3339Nano)
	}
	fields := []string{
		legacySigningDomain, ev.SpecVersion(), ev.ID(), ev.Source(), ev.Type(), ev.Subject(), t,
		ev.DataContentType(), ev.DataSchema(), key,
		base64.StdEncoding.EncodeToString(ev.Data()),
	}
	for i, f := range fields {
		if !utf8.ValidString(f) {
			return nil, fmt.Errorf("%w: event %s: attribute %d of the signing input is not UTF-8", ErrMalformed, ev.ID(), i)
		}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(fields); err != nil {
		return nil, fmt.Errorf("%w: event %s: encoding the signing input: %v", ErrMalformed, ev.ID(), err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// SigningInput is the byte string Sign signs for ev with the public key
// key (see Sign): what another language's signer must reproduce, and what
// the test vectors of docs/protocol.md show.
func SigningInput(ev event.Event, key string) ([]byte, error) { return signingInput(ev, key) }

// describeKeys lists keys abbreviated, for messages.
func describeKeys(keys []string) string {
	if len(keys) == 0 {
		return "none"
	}
	s := make([]string, len(keys))
	for i, k := range keys {
		s[i] = shortKey(k)
	}
	return strings.Join(s, ", ")
}
