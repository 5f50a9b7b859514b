package events

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/binding/format"
	"github.com/cloudevents/sdk-go/v2/binding/spec"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
)

// ContentTypeCloudEvents is the Content-Type of a structured-mode message.
const ContentTypeCloudEvents = "application/cloudevents+json"

// Header names used on the wire.
const (
	HeaderContentType = "Content-Type"
	// HeaderMsgID is JetStream's de-duplication header.
	HeaderMsgID = "Nats-Msg-Id"
	// binaryPrefix starts the header of each attribute in binary mode.
	binaryPrefix = "ce-"
	// maxBodySize bounds a message body before it is parsed at all.
	maxBodySize = 2 * MaxDataSize
)

// binarySpecs knows the ce- prefixed attribute names of binary mode.
var binarySpecs = spec.WithPrefix(binaryPrefix)

// NewMsg encodes ev as a NATS message on subject in the CloudEvents NATS
// binding's structured content mode: the body is the JSON event and the
// Content-Type header says so. msgID, when not empty, is set as Nats-Msg-Id so
// JetStream stores a retried publish once.
func NewMsg(subject string, ev event.Event, msgID string) (*nats.Msg, error) {
	body, err := json.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("%w: encoding event %s: %v", ErrMalformed, ev.ID(), err)
	}
	msg := nats.NewMsg(subject)
	msg.Data = body
	msg.Header.Set(HeaderContentType, ContentTypeCloudEvents)
	if msgID != "" {
		msg.Header.Set(HeaderMsgID, msgID)
	}
	return msg, nil
}

// Decode reads a CloudEvent from a NATS message's header and body, in
// structured mode (the body is the JSON event) or in binary mode (ce-*
// headers carry the attributes, the body is the data). It checks the
// attributes pcm requires (ValidateAttributes) but not the data: the Parse
// functions do that. Every failure wraps ErrMalformed, ErrTooLarge,
// ErrMissingAttribute or ErrUnknownType.
func Decode(header nats.Header, body []byte) (event.Event, error) {
	if len(body) > maxBodySize {
		return event.Event{}, fmt.Errorf("%w: message body is %d bytes: the limit is %d", ErrTooLarge, len(body), maxBodySize)
	}
	m, err := newNATSMessage(header, body)
	if err != nil {
		return event.Event{}, err
	}
	ev, err := binding.ToEvent(context.Background(), m)
	if err != nil {
		return event.Event{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if m.encoding == binding.EncodingStructured {
		if err := m.checkHeadersAgree(ev); err != nil {
			return event.Event{}, err
		}
	}
	if err := ValidateAttributes(*ev); err != nil {
		return event.Event{}, err
	}
	return *ev, nil
}

// StructuredJSON returns the JSON form of the event a message carries,
// whether or not it is a valid pcm event: the body itself, byte for byte,
// for a structured-mode message; for a binary-mode one, the JSON object its
// headers and body make (renderBinary), attribute values as stored. An
// audit prints both alike, the invalid ones included.
func StructuredJSON(header nats.Header, body []byte) []byte {
	if isBinary(header) {
		return renderBinary(header, body)
	}
	return body
}

// attributeName matches the names CloudEvents allows for attributes.
var attributeName = regexp.MustCompile(`^[a-z0-9]{1,20}$`)

// renderBinary writes a binary-mode message as a CloudEvent in the JSON
// format, without validating it: each ce- header becomes the attribute of
// its name (lower case, the prefix dropped; specversion, id, source, type,
// subject and time first, the others sorted), Content-Type the
// datacontenttype, and the body the data when it is JSON text with a JSON
// content type (CheckContentType), else data_base64. Header values are
// written as stored: a time is not re-formatted.
func renderBinary(header nats.Header, body []byte) []byte {
	attrs := map[string]string{}
	for k, vs := range header {
		lk := strings.ToLower(k)
		name, ok := strings.CutPrefix(lk, binaryPrefix)
		if !ok || len(vs) == 0 || !attributeName.MatchString(name) || name == "data" {
			continue
		}
		attrs[name] = vs[0]
	}
	ct := HeaderValue(header, HeaderContentType)
	if _, ok := attrs["datacontenttype"]; !ok && ct != "" {
		attrs["datacontenttype"] = ct
	}
	order := []string{"specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema"}
	var rest []string
	for name := range attrs {
		if !slices.Contains(order, name) {
			rest = append(rest, name)
		}
	}
	sort.Strings(rest)
	var b bytes.Buffer
	b.WriteByte('{')
	sep := ""
	member := func(name string, value []byte) {
		b.WriteString(sep)
		sep = ","
		quoted, _ := json.Marshal(name)
		b.Write(quoted)
		b.WriteByte(':')
		b.Write(value)
	}
	for _, name := range append(order, rest...) {
		if v, ok := attrs[name]; ok {
			quoted, _ := json.Marshal(v)
			member(name, quoted)
		}
	}
	switch {
	case len(body) == 0:
	case CheckContentType(attrs["datacontenttype"]) == nil && utf8.Valid(body) && json.Valid(body):
		var c bytes.Buffer
		_ = json.Compact(&c, body)
		member("data", c.Bytes())
	default:
		quoted, _ := json.Marshal(base64.StdEncoding.EncodeToString(body))
		member("data_base64", quoted)
	}
	b.WriteByte('}')
	return b.Bytes()
}

// natsMessage adapts a NATS message to the SDK's binding.MessageReader.
type natsMessage struct {
	header   nats.Header
	body     []byte
	encoding binding.Encoding
	version  spec.Version
}

func isBinary(header nats.Header) bool {
	return HeaderValue(header, binaryPrefix+"specversion") != ""
}

func newNATSMessage(header nats.Header, body []byte) (*natsMessage, error) {
	m := &natsMessage{header: header, body: body}
	ct := HeaderValue(header, HeaderContentType)
	if isBinary(header) {
		if strings.HasPrefix(ct, ContentTypeCloudEvents) {
			return nil, fmt.Errorf("%w: ce-specversion header (binary mode) contradicts Content-Type %s (structured mode)", ErrMalformed, ct)
		}
		m.encoding = binding.EncodingBinary
		m.version = binarySpecs.Version(HeaderValue(header, binaryPrefix+"specversion"))
		if m.version == nil {
			return nil, fmt.Errorf("%w: ce-specversion %q: pcm speaks CloudEvents 1.0", ErrMissingAttribute, HeaderValue(header, binaryPrefix+"specversion"))
		}
		return m, nil
	}
	if ct != "" && !strings.HasPrefix(ct, ContentTypeCloudEvents) {
		return nil, fmt.Errorf("%w: Content-Type %q without ce- headers: send %s (structured mode) or ce- headers (binary mode)", ErrMalformed, ct, ContentTypeCloudEvents)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, fmt.Errorf("%w: empty message body: a structured-mode message carries the JSON event", ErrMalformed)
	}
	if !utf8.Valid(body) {
		return nil, fmt.Errorf("%w: the message body is not UTF-8: JSON text is UTF-8", ErrMalformed)
	}
	// The SDK reads the data by its datacontenttype: refuse one that is
	// not JSON by pcm's rule before the SDK fails on it in its own words.
	var probe struct {
		ContentType *string `json:"datacontenttype"`
	}
	if json.Unmarshal(body, &probe) == nil && probe.ContentType != nil {
		if err := CheckContentType(*probe.ContentType); err != nil {
			return nil, err
		}
	}
	m.encoding = binding.EncodingStructured
	return m, nil
}

// HeaderValue reads a header case-insensitively (NATS headers keep case).
func HeaderValue(header nats.Header, name string) string {
	if v := header.Get(name); v != "" {
		return v
	}
	for k, vs := range header {
		if strings.EqualFold(k, name) && len(vs) > 0 {
			return vs[0]
		}
	}
	return ""
}

// checkHeadersAgree refuses a structured message whose ce- headers say
// something else than its body.
func (m *natsMessage) checkHeadersAgree(ev *event.Event) error {
	v1 := binarySpecs.Version(event.CloudEventsVersionV1)
	for k, vs := range m.header {
		lk := strings.ToLower(k)
		if !strings.HasPrefix(lk, binaryPrefix) || len(vs) == 0 {
			continue
		}
		var got any
		if attr := v1.Attribute(lk); attr != nil {
			got = attr.Get(ev.Context)
		} else {
			got = ev.Extensions()[strings.TrimPrefix(lk, binaryPrefix)]
		}
		if got == nil || fmt.Sprint(got) != vs[0] {
			return fmt.Errorf("%w: header %s=%q contradicts the event body (%v)", ErrMalformed, k, vs[0], got)
		}
	}
	return nil
}

func (m *natsMessage) ReadEncoding() binding.Encoding { return m.encoding }

func (m *natsMessage) ReadStructured(ctx context.Context, w binding.StructuredWriter) error {
	if m.encoding != binding.EncodingStructured {
		return binding.ErrNotStructured
	}
	return w.SetStructuredEvent(ctx, format.JSON, bytes.NewReader(m.body))
}

func (m *natsMessage) ReadBinary(_ context.Context, w binding.BinaryWriter) error {
	if m.encoding != binding.EncodingBinary {
		return binding.ErrNotBinary
	}
	for k, vs := range m.header {
		lk := strings.ToLower(k)
		if len(vs) == 0 {
			continue
		}
		switch {
		case lk == strings.ToLower(HeaderContentType):
			if err := w.SetAttribute(m.version.AttributeFromKind(spec.DataContentType), vs[0]); err != nil {
				return err
			}
		case strings.HasPrefix(lk, binaryPrefix):
			if attr := m.version.Attribute(lk); attr != nil {
				if err := w.SetAttribute(attr, vs[0]); err != nil {
					return err
				}
			} else if err := w.SetExtension(strings.TrimPrefix(lk, binaryPrefix), vs[0]); err != nil {
				return err
			}
		}
	}
	if len(m.body) > 0 {
		return w.SetData(io.NopCloser(bytes.NewReader(m.body)))
	}
	return nil
}

func (m *natsMessage) Finish(error) error { return nil }

// GetAttribute implements binding.MessageMetadataReader for binary mode.
func (m *natsMessage) GetAttribute(k spec.Kind) (spec.Attribute, any) {
	if m.version == nil {
		return nil, nil
	}
	attr := m.version.AttributeFromKind(k)
	if attr == nil {
		return nil, nil
	}
	if k == spec.DataContentType {
		return attr, nilIfEmpty(HeaderValue(m.header, HeaderContentType))
	}
	return attr, nilIfEmpty(HeaderValue(m.header, attr.PrefixedName()))
}

// GetExtension implements binding.MessageMetadataReader for binary mode.
func (m *natsMessage) GetExtension(name string) any {
	return nilIfEmpty(HeaderValue(m.header, binaryPrefix+name))
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}
