package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/oklog/ulid/v2"
)

// The CloudEvents types pcm exchanges.
const (
	TypeJobOffered   = "pcm.job.offered.v1"
	TypeJobCancelled = "pcm.job.cancelled.v1"
	TypeJobStatus    = "pcm.job.status.v1"
)

// Types lists the event types pcm knows (the halt and the resume of a
// staged rollout are in halt.go).
var Types = []string{TypeJobOffered, TypeJobCancelled, TypeJobStatus, TypeJobHalted, TypeJobResumed}

// ContentTypeJSON is the datacontenttype pcm writes on every event. Readers
// also accept what the CloudEvents JSON format allows for JSON data (see
// CheckContentType).
const ContentTypeJSON = "application/json"

const (
	publisherSourcePrefix = "/pcm/publisher/"
	agentSourcePrefix     = "/pcm/agent/"
)

// PublisherSource is the source attribute of events made by publisher name.
func PublisherSource(name string) string { return publisherSourcePrefix + name }

// AgentSource is the source attribute of statuses made by client's agent.
func AgentSource(client string) string { return agentSourcePrefix + client }

// NewJobOffered validates job and returns its pcm.job.offered.v1 event, made
// by publisher (a name that is a valid id).
func NewJobOffered(publisher string, job JobOffered) (event.Event, error) {
	if err := ValidID("publisher name", publisher); err != nil {
		return event.Event{}, err
	}
	if err := job.Validate(); err != nil {
		return event.Event{}, err
	}
	return newEvent(TypeJobOffered, job.JobID, PublisherSource(publisher), job.JobID, job)
}

// NewJobCancelled validates c and returns its pcm.job.cancelled.v1 event, with
// a new unique id.
func NewJobCancelled(publisher string, c JobCancelled) (event.Event, error) {
	if err := ValidID("publisher name", publisher); err != nil {
		return event.Event{}, err
	}
	if err := c.Validate(); err != nil {
		return event.Event{}, err
	}
	return newEvent(TypeJobCancelled, ulid.Make().String(), PublisherSource(publisher), c.JobID, c)
}

// NewJobStatus validates s and returns its pcm.job.status.v1 event, with the
// id <job>.<client>.<state>.<attempt>.
func NewJobStatus(s JobStatus) (event.Event, error) {
	if err := s.Validate(); err != nil {
		return event.Event{}, err
	}
	return newEvent(TypeJobStatus, s.ID(), AgentSource(s.ClientID), s.JobID, s)
}

func newEvent(typ, id, source, subject string, data any) (event.Event, error) {
	body, err := json.Marshal(data)
	if err != nil {
		return event.Event{}, fmt.Errorf("%w: encoding %s data: %v", ErrMalformed, typ, err)
	}
	if len(body) > MaxDataSize {
		return event.Event{}, fmt.Errorf("%w: %s data is %d bytes: the limit is %d (64 KiB); shorten the command line or move content into a package",
			ErrTooLarge, typ, len(body), MaxDataSize)
	}
	ev := event.New()
	ev.SetID(id)
	ev.SetSource(source)
	ev.SetType(typ)
	ev.SetSubject(subject)
	// To the millisecond: every language's clock type keeps it (see
	// TimeLayout), so a relay that re-serialises the event keeps its time.
	ev.SetTime(time.Now().UTC().Truncate(time.Millisecond))
	if err := ev.SetData(ContentTypeJSON, json.RawMessage(body)); err != nil {
		return event.Event{}, fmt.Errorf("%w: setting %s data: %v", ErrMalformed, typ, err)
	}
	return ev, nil
}

// ParseJobOffered checks that ev is a valid pcm.job.offered.v1 event and
// returns its data.
func ParseJobOffered(ev event.Event) (JobOffered, error) {
	var job JobOffered
	if err := parse(ev, TypeJobOffered, &job); err != nil {
		return JobOffered{}, err
	}
	if err := job.Validate(); err != nil {
		return job, err
	}
	if ev.ID() != job.JobID {
		return job, fmt.Errorf("%w: id %q differs from data.job_id %q: an offer's id is its job id", ErrMissingAttribute, ev.ID(), job.JobID)
	}
	return job, checkPublisherSource(ev)
}

// ParseJobCancelled checks that ev is a valid pcm.job.cancelled.v1 event and
// returns its data.
func ParseJobCancelled(ev event.Event) (JobCancelled, error) {
	var c JobCancelled
	if err := parse(ev, TypeJobCancelled, &c); err != nil {
		return JobCancelled{}, err
	}
	if err := c.Validate(); err != nil {
		return c, err
	}
	return c, checkPublisherSource(ev)
}

// ParseJobStatus checks that ev is a valid pcm.job.status.v1 event and returns
// its data.
func ParseJobStatus(ev event.Event) (JobStatus, error) {
	var s JobStatus
	if err := parse(ev, TypeJobStatus, &s); err != nil {
		return JobStatus{}, err
	}
	if err := s.Validate(); err != nil {
		return s, err
	}
	if want := AgentSource(s.ClientID); ev.Source() != want {
		return s, fmt.Errorf("%w: source %q: a status of client %s has source %q", ErrMissingAttribute, ev.Source(), s.ClientID, want)
	}
	if want := s.ID(); ev.ID() != want {
		return s, fmt.Errorf("%w: id %q: a status's id is <job>.<client>.<state>.<attempt>, here %q", ErrMissingAttribute, ev.ID(), want)
	}
	return s, nil
}

// JobIDOf returns the job id an event is about, as far as it can be read
// (the subject attribute, else data.job_id), or "" when none is a valid id.
// An agent uses it to report a rejected offer.
func JobIDOf(ev event.Event) string {
	if ValidID("job id", ev.Subject()) == nil {
		return ev.Subject()
	}
	var probe struct {
		JobID string `json:"job_id"`
	}
	if json.Unmarshal(ev.Data(), &probe) == nil && ValidID("job id", probe.JobID) == nil {
		return probe.JobID
	}
	return ""
}

// ValidateAttributes checks the CloudEvents attributes pcm requires of an
// event of any of its types: specversion 1.0, id, source, a known type, the
// subject (the job id), a JSON datacontenttype (CheckContentType), the data
// size, and that the data is JSON.
func ValidateAttributes(ev event.Event) error {
	if ev.SpecVersion() != event.CloudEventsVersionV1 {
		return fmt.Errorf("%w: specversion %q: pcm speaks CloudEvents 1.0", ErrMissingAttribute, ev.SpecVersion())
	}
	if err := CheckContentType(ev.DataContentType()); err != nil {
		return err
	}
	if err := ev.Validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrMissingAttribute, err)
	}
	if !knownType(ev.Type()) {
		return fmt.Errorf("%w: %q: pcm knows %s", ErrUnknownType, ev.Type(), strings.Join(Types, ", "))
	}
	if err := ValidID("subject (job id)", ev.Subject()); err != nil {
		return fmt.Errorf("%w: %v", ErrMissingAttribute, err)
	}
	if n := len(ev.Data()); n > MaxDataSize {
		return fmt.Errorf("%w: data is %d bytes: the limit is %d (64 KiB)", ErrTooLarge, n, MaxDataSize)
	}
	if len(ev.Data()) == 0 {
		return fmt.Errorf("%w: data is empty: a %s event carries a JSON object", ErrMissingAttribute, ev.Type())
	}
	if !utf8.Valid(ev.Data()) || !json.Valid(ev.Data()) {
		return fmt.Errorf("%w: data is not UTF-8 JSON although its datacontenttype is %s: send the data as a JSON object", ErrMalformed, ContentTypeJSON)
	}
	return nil
}

// CheckContentType checks a datacontenttype the way the CloudEvents JSON
// format reads it: absent means application/json, and media-type
// parameters are allowed (application/json; charset=utf-8), but a charset
// other than UTF-8 is not. Any other media type wraps ErrMissingAttribute,
// naming the rule.
func CheckContentType(ct string) error {
	if ct == "" {
		return nil
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != ContentTypeJSON {
		return fmt.Errorf("%w: datacontenttype %q: pcm data is JSON: give %s (parameters such as charset=utf-8 allowed) or leave the attribute out",
			ErrMissingAttribute, ct, ContentTypeJSON)
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return fmt.Errorf("%w: datacontenttype %q: JSON text is UTF-8: give charset=utf-8 or no charset", ErrMissingAttribute, ct)
	}
	return nil
}

func knownType(t string) bool {
	for _, k := range Types {
		if t == k {
			return true
		}
	}
	return false
}

// parse checks the attributes, the type, the schema, and decodes the data
// strictly (unknown fields refused) into v.
func parse(ev event.Event, typ string, v any) error {
	if err := ValidateAttributes(ev); err != nil {
		return err
	}
	if ev.Type() != typ {
		return fmt.Errorf("%w: got a %s event where a %s was expected", ErrUnexpectedType, ev.Type(), typ)
	}
	if err := ValidateSchema(typ, ev.Data()); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(ev.Data()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %s data: %v", ErrMalformed, typ, err)
	}
	if subject := jobIDField(v); subject != ev.Subject() {
		return fmt.Errorf("%w: subject %q differs from data.job_id %q: the subject is the job id", ErrMissingAttribute, ev.Subject(), subject)
	}
	return nil
}

func jobIDField(v any) string {
	switch d := v.(type) {
	case *JobOffered:
		return d.JobID
	case *JobCancelled:
		return d.JobID
	case *JobStatus:
		return d.JobID
	case *JobHalted:
		return d.JobID
	case *JobResumed:
		return d.JobID
	}
	return ""
}

func checkPublisherSource(ev event.Event) error {
	name, ok := strings.CutPrefix(ev.Source(), publisherSourcePrefix)
	if !ok || ValidID("publisher name", name) != nil {
		return fmt.Errorf("%w: source %q: a publisher's events have source /pcm/publisher/<name>", ErrMissingAttribute, ev.Source())
	}
	return nil
}

// PublisherOf returns the publisher name of an offer or cancellation's source.
func PublisherOf(ev event.Event) string {
	name, _ := strings.CutPrefix(ev.Source(), publisherSourcePrefix)
	return name
}
