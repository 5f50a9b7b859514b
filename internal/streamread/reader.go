// Package streamread reads a JetStream stream through batched direct gets
// instead of consumers, completely or with an error, and follows it with
// core subscriptions to its subjects.
//
// A batch is one request to <API prefix>DIRECT.GET.<stream> with a JSON
// body {"seq": N, "batch": B, "max_bytes": M, "next_by_subj": "<filter>"}
// (or "start_time" instead of "seq"); the last message of a filter is
// asked for in the subject form, <API prefix>DIRECT.GET.<stream>.<filter>.
// The broker answers on a private inbox of the connection, with one
// message per stored message, then a status message 204 "EOB" whose
// Nats-Num-Pending says how many matching messages remain; a 404 when
// nothing is left. The stream must allow direct gets (AllowDirect, as pcm
// provisions PCM_JOBS and PCM_STATUS).
//
// Every replica of a stream answers direct gets, each from its own store,
// and a replica may lag behind the others: a read is checked, not trusted.
// A read of the whole stream knows from STREAM.INFO which sequences it
// must deliver (first and last sequence, deleted messages); a filtered
// read knows the last message of each filter (a last-by-subject get). Each
// answer is matched to its request by reply subject, whichever replica
// sends it and in whatever order answers to several requests interleave;
// each message of a batch names the one sent before it (the server's
// Nats-Last-Sequence), so a message lost on the way is seen; sequences,
// subjects and times are taken from what the server set, never from a
// header the stored message carried. A part that no replica answers whole
// is asked again (with backoff, for Options.RetryFor) and then ends the
// read with an *IncompleteError naming the range not delivered.
//
// A user that reads this way needs no right on the stream's consumers: it
// can neither create, update nor pull from any of them (an agent's durable
// consumer included); it needs a publish right on
// <API prefix>DIRECT.GET.<stream> and, for a filtered read,
// <API prefix>DIRECT.GET.<stream>.<filter>; for a read of the whole stream,
// <API prefix>STREAM.INFO.<stream>; a subscription to its inbox and, to
// follow, subscriptions to the subjects it follows.
//
// It never creates a consumer, never writes to a stream, never loads a
// stream whole (a Reader holds a few batches per filter: the one being
// read and those asked for ahead) and does not poll: a Follower reads when
// a subscription hears of a new message, and otherwise once per resync
// period.
package streamread

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/internal/backoff"
)

// Defaults of Options.
const (
	// DefaultBatch is how many messages one direct get asks for.
	DefaultBatch = 500
	// DefaultMaxBytes bounds the bytes (subjects, headers and bodies) the
	// broker sends for one batch; it always sends at least one message.
	DefaultMaxBytes = 1 << 20
	// DefaultTimeout bounds the wait for each answer of the broker.
	DefaultTimeout = 5 * time.Second
	// DefaultRetryFor is how long a read keeps asking again for a part
	// that no answer has covered before it gives up with ErrIncomplete.
	DefaultRetryFor = 30 * time.Second
	// maxBatch keeps a batch within reason.
	maxBatch = 10_000
	// aheadDepth is how many batch requests a read of the whole stream
	// keeps outstanding: the broker prepares the next batches while the
	// caller works through this one.
	aheadDepth = 3
	// unansweredTries is how many requests in a row a Reader sends
	// without any answer, before any answer ever came, before it reports
	// ErrNoAnswer (a user not allowed to send them gets no answer at all).
	unansweredTries = 3
)

// Msg is one stored message.
type Msg struct {
	// Stream is the stream it was read from.
	Stream string
	// Subject is the subject it was stored on.
	Subject string
	// Seq is its stream sequence.
	Seq uint64
	// Time is when the broker stored it.
	Time time.Time
	// Header holds the headers it was stored with (nil when none),
	// whatever their names: only the headers the direct get added are
	// removed.
	Header nats.Header
	// Data is its body.
	Data []byte
}

// Options say what a Reader reads.
type Options struct {
	// Filters are the subjects to read, wildcards allowed; empty reads
	// the whole stream (which needs STREAM.INFO on it). Each filter is
	// read with its own batches and the results merged by sequence; a
	// message matching several filters is returned once.
	Filters []string
	// StartSeq is the first sequence to read; zero starts at the
	// beginning, or at StartTime.
	StartSeq uint64
	// StartTime, when StartSeq is zero, starts at the first message
	// stored at or after it.
	StartTime time.Time
	// Batch is how many messages one request asks for (per filter);
	// default DefaultBatch.
	Batch int
	// MaxBytes bounds the bytes of one batch; default DefaultMaxBytes.
	MaxBytes int
	// Timeout bounds the wait for each answer of the broker; default
	// DefaultTimeout. A request not answered in time is sent again.
	Timeout time.Duration
	// RetryFor is how long a read asks again for a part no answer covered
	// (a lagging replica, a lost answer) before it returns ErrIncomplete;
	// default DefaultRetryFor. The context bounds the whole read.
	RetryFor time.Duration
}

// setDefaults fills the zero fields.
func (o *Options) setDefaults() {
	if o.Batch == 0 {
		o.Batch = DefaultBatch
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.RetryFor == 0 {
		o.RetryFor = DefaultRetryFor
	}
}

// Validate checks the options (after defaults).
func (o Options) Validate() error {
	if o.Batch < 0 || o.Batch > maxBatch {
		return fmt.Errorf("%w: batch %d: use 1 to %d, or 0 for %d", ErrInvalidOptions, o.Batch, maxBatch, DefaultBatch)
	}
	if o.MaxBytes < 0 {
		return fmt.Errorf("%w: max bytes %d is negative: use 0 for %d", ErrInvalidOptions, o.MaxBytes, DefaultMaxBytes)
	}
	if o.Timeout < 0 {
		return fmt.Errorf("%w: timeout %s is negative: use 0 for %s", ErrInvalidOptions, o.Timeout, DefaultTimeout)
	}
	if o.RetryFor < 0 {
		return fmt.Errorf("%w: retry-for %s is negative: use 0 for %s", ErrInvalidOptions, o.RetryFor, DefaultRetryFor)
	}
	for _, f := range o.Filters {
		if err := validSubject(f); err != nil {
			return err
		}
	}
	return nil
}

// validSubject checks a filter subject: non-empty tokens, no white space,
// '>' only as the last token.
func validSubject(s string) error {
	if s == "" || strings.ContainsAny(s, " \t\r\n") {
		return fmt.Errorf("%w: subject %q: use dot-separated tokens without spaces", ErrInvalidOptions, s)
	}
	toks := strings.Split(s, ".")
	for i, t := range toks {
		if t == "" || (t == ">" && i != len(toks)-1) || (len(t) > 1 && strings.ContainsAny(t, "*>")) {
			return fmt.Errorf("%w: subject %q: empty token or misplaced wildcard", ErrInvalidOptions, s)
		}
	}
	return nil
}

// validStream checks a stream name.
func validStream(s string) error {
	if s == "" || strings.ContainsAny(s, ".*> \t\r\n") {
		return fmt.Errorf("%w: stream name %q", ErrInvalidOptions, s)
	}
	return nil
}

// Reader reads a stream in order, batch by batch, in rounds: a round
// returns every message on the filters stored when it began, merged by
// sequence, then ErrCaughtUp; the next call to Next begins a new round from
// where the last one stopped. A Reader is not safe for concurrent use.
// Close it.
type Reader struct {
	js      jetstream.JetStream
	nc      *nats.Conn
	stream  string
	api     string // <prefix>DIRECT.GET.<stream>
	opts    Options
	in      inbox
	cursors []*cursor
	str     jetstream.Stream // for STREAM.INFO (whole-stream reads)
	direct  bool             // the stream allows direct gets, per STREAM.INFO

	answered   bool // some request was answered: a later silence is not a refusal
	unanswered int  // requests in a row without an answer, before the first answer

	inRound bool
	horizon uint64 // the round delivers no sequence beyond it
}

// cursor is the read position, the current batch and the requests sent
// ahead of one filter ("" for the whole stream).
type cursor struct {
	filter string
	next   uint64 // the first sequence not covered yet; 0 until a first message when starting by time
	target uint64 // this round: the last message it must deliver (0: none)
	// deleted are the sequences of this round's range that STREAM.INFO
	// lists as deleted (whole stream only).
	deleted []uint64
	planned uint64 // whole stream: where the next chunk asked for ahead starts
	done    bool   // this round: nothing more to read
	buf     []Msg
	head    int
	ahead   []*chunk // requests sent, oldest first

	stuck time.Time // when it last stopped progressing, zero while it does
	bo    backoff.Backoff
}

// chunk is a batch request sent for a cursor: from start (0: from the start
// time) and, for the whole stream, up to hi (inclusive), and what its
// answers showed so far.
type chunk struct {
	req   *request
	start uint64
	hi    uint64 // ^uint64(0) for a filter
	prev  uint64 // the last sequence answered (the chain)
	// passed: an answer went past hi (or, for the whole stream, past the
	// round's horizon): the chunk's range is covered.
	passed bool
}

func (c *cursor) peek() *Msg {
	if c.head < len(c.buf) {
		return &c.buf[c.head]
	}
	return nil
}

func (c *cursor) pop() {
	c.buf[c.head] = Msg{}
	c.head++
	if c.head == len(c.buf) {
		c.buf, c.head = c.buf[:0], 0
	}
}

// isDeleted says whether STREAM.INFO listed seq as deleted.
func (c *cursor) isDeleted(seq uint64) bool {
	_, ok := slices.BinarySearch(c.deleted, seq)
	return ok
}

// existing counts the sequences in [lo, hi] not listed as deleted.
func (c *cursor) existing(lo, hi uint64) uint64 {
	if hi < lo {
		return 0
	}
	a, _ := slices.BinarySearch(c.deleted, lo)
	b, _ := slices.BinarySearch(c.deleted, hi+1)
	return hi - lo + 1 - uint64(b-a)
}

// NewReader returns a Reader of stream through js's connection and API
// prefix. It does no I/O.
func NewReader(js jetstream.JetStream, stream string, opts Options) (*Reader, error) {
	opts.setDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if err := validStream(stream); err != nil {
		return nil, err
	}
	r := &Reader{js: js, nc: js.Conn(), stream: stream, api: apiPrefix(js.Options()) + "DIRECT.GET." + stream, opts: opts}
	start := opts.StartSeq
	if start == 0 && opts.StartTime.IsZero() {
		start = 1
	}
	filters := dedupe(opts.Filters)
	if len(filters) == 0 {
		filters = []string{""}
	}
	for _, f := range filters {
		r.cursors = append(r.cursors, &cursor{filter: f, next: start,
			bo: backoff.Backoff{Initial: 50 * time.Millisecond, Max: 2 * time.Second}})
	}
	return r, nil
}

// dedupe drops repeated filters, keeping the order.
func dedupe(fs []string) []string {
	var out []string
	for _, f := range fs {
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out
}

// apiPrefix is the JetStream API prefix of js's options ($JS.API. by
// default, $JS.<domain>.API. with a domain).
func apiPrefix(o jetstream.JetStreamOptions) string {
	switch {
	case o.APIPrefix != "":
		return strings.TrimSuffix(o.APIPrefix, ".") + "."
	case o.Domain != "":
		return "$JS." + o.Domain + ".API."
	default:
		return "$JS.API."
	}
}

// Close releases the Reader's inbox subscription.
func (r *Reader) Close() error {
	for _, c := range r.cursors {
		c.ahead = nil
	}
	return r.in.close()
}

// whole says whether r reads the whole stream.
func (r *Reader) whole() bool { return r.cursors[0].filter == "" }

// Next returns the next message in stream order, or ErrCaughtUp at the end
// of a round. After another error it may be called again: it resumes where
// it stopped, without skipping or repeating a message.
func (r *Reader) Next(ctx context.Context) (Msg, error) {
	if err := ctx.Err(); err != nil {
		return Msg{}, err
	}
	if !r.inRound {
		if err := r.beginRound(ctx); err != nil {
			return Msg{}, err
		}
		r.inRound = true
	}
	var best *cursor
	for _, c := range r.cursors {
		for c.peek() == nil && !c.done {
			if err := r.fill(ctx, c); err != nil {
				c.stuck = time.Time{}
				return Msg{}, err
			}
		}
		if m := c.peek(); m != nil && m.Seq <= r.horizon && (best == nil || m.Seq < best.peek().Seq) {
			best = c
		}
	}
	if best == nil {
		r.inRound = false
		return Msg{}, ErrCaughtUp
	}
	m := *best.peek()
	best.pop()
	for _, c := range r.cursors {
		if h := c.peek(); c != best && h != nil && h.Seq == m.Seq {
			c.pop()
		}
	}
	return m, nil
}

// Scan calls fn, in stream order, for every message of stream on
// opts.Filters from opts' start up to the last message stored when it is
// called (one round of a Reader). It returns nil only when it delivered
// every such message; an *IncompleteError (ErrIncomplete) names the range
// it could not. An error from fn stops the scan and is returned as is.
func Scan(ctx context.Context, js jetstream.JetStream, stream string, opts Options, fn func(Msg) error) error {
	r, err := NewReader(js, stream, opts)
	if err != nil {
		return err
	}
	defer func() { _ = r.Close() }()
	return Round(ctx, r, fn)
}

// Round calls fn with each message of one round of src (until its Next
// says ErrCaughtUp), in src's order. An error of src, or of fn, ends the
// round and is returned as is.
func Round(ctx context.Context, src Source, fn func(Msg) error) error {
	for {
		m, err := src.Next(ctx)
		if errors.Is(err, ErrCaughtUp) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := fn(m); err != nil {
			return err
		}
	}
}

// beginRound fixes what the round must deliver: for the whole stream, from
// STREAM.INFO; for filters, from the last message of each.
func (r *Reader) beginRound(ctx context.Context) error {
	r.horizon = 0
	for _, c := range r.cursors {
		c.done, c.target, c.stuck = false, 0, time.Time{}
		c.bo.Reset()
	}
	if r.whole() {
		return r.beginWhole(ctx, r.cursors[0])
	}
	// A request sent ahead before the lasts were read may not hold what
	// was stored since: ask anew.
	for _, c := range r.cursors {
		r.dropAhead(c)
	}
	for _, c := range r.cursors {
		if err := r.aimAt(ctx, c); err != nil {
			return err
		}
		r.horizon = max(r.horizon, c.target)
	}
	// The round delivers every message up to the horizon, the last of all
	// filters: a filter whose last was read before another's may have
	// received messages below the horizon since. Reading its last again
	// now covers every one of them (a sequence below the horizon was
	// stored before the horizon was read), so that none of them comes a
	// round late, after a higher sequence of another filter.
	if len(r.cursors) > 1 {
		for _, c := range r.cursors {
			if c.target < r.horizon {
				if err := r.aimAt(ctx, c); err != nil {
					return err
				}
			}
		}
	}
	for _, c := range r.cursors {
		c.done = c.next > r.horizon && c.next != 0
	}
	return nil
}

// aimAt sets c's target: the last message stored on its filter.
func (r *Reader) aimAt(ctx context.Context, c *cursor) error {
	last, err := r.lastOf(ctx, c.filter)
	if err != nil {
		return err
	}
	if last.Seq != 0 && (c.next != 0 || !last.Time.Before(r.opts.StartTime)) {
		c.target = max(c.target, last.Seq)
	}
	return nil
}

// beginWhole reads the stream's state for a round of the whole stream.
func (r *Reader) beginWhole(ctx context.Context, c *cursor) error {
	st, err := r.state(ctx)
	if err != nil {
		return err
	}
	if !r.direct {
		return fmt.Errorf("%w: %s does not allow direct gets: provision it with AllowDirect (pcm broker provision)", ErrNoStream, r.stream)
	}
	r.dropAhead(c) // a new round plans its chunks anew
	c.deleted = c.deleted[:0]
	if st.Msgs == 0 || (c.next == 0 && st.LastTime.Before(r.opts.StartTime)) {
		c.done = true
		return nil
	}
	if c.next != 0 && c.next < st.FirstSeq {
		c.next = st.FirstSeq // what was before is no longer stored
	}
	from := max(c.next, st.FirstSeq)
	for _, d := range st.Deleted {
		if d >= from && d <= st.LastSeq {
			c.deleted = append(c.deleted, d)
		}
	}
	slices.Sort(c.deleted)
	r.horizon = st.LastSeq
	c.target = r.lastExisting(c, from, st.LastSeq)
	c.done = c.target == 0 || (c.next != 0 && c.next > c.target)
	c.planned = c.next
	return nil
}

// lastExisting is the last sequence in [from, hi] not listed as deleted, 0
// when none.
func (r *Reader) lastExisting(c *cursor, from, hi uint64) uint64 {
	for s := hi; s >= from && s > 0; s-- {
		if !c.isDeleted(s) {
			return s
		}
	}
	return 0
}

// state is the stream's STREAM.INFO state with its deleted sequences,
// asked again while the stream has no leader (an election).
func (r *Reader) state(ctx context.Context) (jetstream.StreamState, error) {
	var st jetstream.StreamState
	rctx, cancel := context.WithTimeout(ctx, r.opts.RetryFor)
	defer cancel()
	err := backoff.Retry(rctx, backoff.Policy{
		Backoff:        backoff.Backoff{Initial: 100 * time.Millisecond, Max: 2 * time.Second},
		AttemptTimeout: r.opts.Timeout,
		Retryable: func(err error) bool {
			return !errors.Is(err, jetstream.ErrStreamNotFound) && !errors.Is(err, nats.ErrConnectionClosed) &&
				!notAnswered(err) && ctx.Err() == nil
		},
	}, func(actx context.Context) error {
		if r.str == nil {
			s, err := r.js.Stream(actx, r.stream)
			if err != nil {
				return err
			}
			r.str = s
		}
		info, err := r.str.Info(actx, jetstream.WithDeletedDetails(true))
		if err != nil {
			return err
		}
		st, r.direct = info.State, info.Config.AllowDirect
		return nil
	})
	if ctx.Err() != nil {
		return st, ctx.Err()
	}
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return st, fmt.Errorf("%w: %w: %s: provision it (pcm broker provision)", ErrNoStream, jetstream.ErrStreamNotFound, r.stream)
	}
	if notAnswered(err) || errors.Is(err, context.DeadlineExceeded) {
		return st, fmt.Errorf("%w: nobody answers the state of %s (STREAM.INFO): these credentials may not read the whole stream (docs/security.md), or the stream has no leader: %w", ErrNoAnswer, r.stream, err)
	}
	if err != nil {
		return st, fmt.Errorf("reading the state of %s (STREAM.INFO): %w", r.stream, err)
	}
	return st, nil
}

// notAnswered says whether a JetStream API request found nobody to answer
// it: in an account that does not import it (a client of an authenticated
// broker), or one without JetStream.
func notAnswered(err error) bool {
	return errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrJetStreamNotEnabled) ||
		errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount)
}

// lastOf is the last message stored on filter (zero Msg when none), asked
// for with a direct get naming filter in its body (the form every reader
// of the stream may send), again while no answer comes in time.
func (r *Reader) lastOf(ctx context.Context, filter string) (Msg, error) {
	subject := r.api + " (last of " + filter + ")"
	var b backoff.Backoff
	start := time.Now()
	for {
		req, err := r.in.send(r.nc, r.api, lastBySubject(filter))
		if err != nil {
			return Msg{}, fmt.Errorf("reading %s: %w", r.stream, err)
		}
		answers, err := r.in.take(ctx, req, r.opts.Timeout)
		r.in.forget(req)
		if err == nil {
			r.noteAnswer()
			msg := answers[0]
			if !isStatus(msg) {
				s, err := parseStored(r.stream, msg, false)
				if err != nil {
					return Msg{}, fmt.Errorf("%w: %s answered %v", ErrRefused, subject, err)
				}
				return s.Msg, nil
			}
			switch code, _ := statusOf(msg); code {
			case "404":
				return Msg{}, nil
			case "503":
				err = errNoResponders
			default:
				return Msg{}, r.statusErr(subject, msg)
			}
		}
		if ctx.Err() != nil {
			return Msg{}, ctx.Err()
		}
		if ferr := r.refused(err, subject); ferr != nil {
			return Msg{}, ferr
		}
		if time.Since(start) >= r.opts.RetryFor {
			if errors.Is(err, errNoResponders) {
				return Msg{}, fmt.Errorf("%w: nobody answered %s for %s", ErrNoAnswer, subject, r.opts.RetryFor)
			}
			return Msg{}, fmt.Errorf("%w: %s did not answer within %s, asked again for %s", ErrNoAnswer, subject, r.opts.Timeout, r.opts.RetryFor)
		}
		if err := b.Wait(ctx); err != nil {
			return Msg{}, err
		}
	}
}

// errNoResponders: a request had no responder (a 503 status).
var errNoResponders = errors.New("no responders")

// noteAnswer records that an answer came.
func (r *Reader) noteAnswer() { r.answered, r.unanswered = true, 0 }

// refused says whether a failed request is the end before any answer ever
// came: nobody serves the stream's direct gets (no stream), or requests in
// a row went unanswered (no right to send them). It returns the error to
// return, or nil to try again.
func (r *Reader) refused(err error, subject string) error {
	if r.answered {
		return nil
	}
	switch {
	case errors.Is(err, errNoResponders):
		return fmt.Errorf("%w: %w: nobody answers %s: provision the stream (pcm broker provision) with AllowDirect",
			ErrNoStream, jetstream.ErrStreamNotFound, subject)
	case errors.Is(err, errNoAnswerYet):
		r.unanswered++
		if r.unanswered >= unansweredTries {
			return fmt.Errorf("%w: %s did not answer within %s, %d times: check the connection, and that the user may publish to it",
				ErrNoAnswer, subject, r.opts.Timeout, r.unanswered)
		}
	}
	return nil
}

// statusErr describes an error status answer.
func (r *Reader) statusErr(subject string, msg *nats.Msg) error {
	code, descr := statusOf(msg)
	return fmt.Errorf("%w: %s answered %s %s", ErrRefused, subject, code, descr)
}

// getRequest is nats-server's JSApiMsgGetRequest, the fields used here.
type getRequest struct {
	Seq       uint64     `json:"seq,omitempty"`
	NextFor   string     `json:"next_by_subj,omitempty"`
	Batch     int        `json:"batch,omitempty"`
	MaxBytes  int        `json:"max_bytes,omitempty"`
	StartTime *time.Time `json:"start_time,omitempty"`
}

// ask sends a batch request of c from start (0: from the start time) up
// to hi, and queues it.
func (r *Reader) ask(c *cursor, start, hi uint64) error {
	batch := r.opts.Batch
	if c.filter == "" && start > 0 {
		batch = int(min(uint64(batch), max(c.existing(start, hi), 1)))
	}
	req := getRequest{NextFor: c.filter, Batch: batch, MaxBytes: r.opts.MaxBytes}
	if start > 0 {
		req.Seq = start
	} else {
		t := r.opts.StartTime.UTC()
		req.StartTime = &t
	}
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	sent, err := r.in.send(r.nc, r.api, body)
	if err != nil {
		return fmt.Errorf("reading %s: %w", r.stream, err)
	}
	c.ahead = append(c.ahead, &chunk{req: sent, start: start, hi: hi})
	return nil
}

// plan sends the requests c should have outstanding: for the whole
// stream, chunks of Batch existing sequences up to the round's target,
// aheadDepth of them; for a filter (whose next batch starts where the last
// one ends), one.
func (r *Reader) plan(c *cursor) error {
	if c.filter != "" || c.next == 0 {
		if len(c.ahead) == 0 && !c.done {
			return r.ask(c, c.next, ^uint64(0))
		}
		return nil
	}
	if len(c.ahead) == 0 {
		c.planned = max(c.planned, c.next)
	}
	for len(c.ahead) < aheadDepth && c.planned <= c.target {
		lo := c.planned
		hi := lo
		// The chunk holds Batch existing sequences (fewer at the end).
		for n := uint64(0); hi <= c.target; hi++ {
			if !c.isDeleted(hi) {
				n++
				if n == uint64(r.opts.Batch) {
					break
				}
			}
		}
		hi = min(hi, c.target)
		if err := r.ask(c, lo, hi); err != nil {
			return err
		}
		c.planned = hi + 1
	}
	return nil
}

// fill reads answers of c's oldest request until c has a message to
// deliver, or nothing more to read this round.
func (r *Reader) fill(ctx context.Context, c *cursor) error {
	if err := r.plan(c); err != nil {
		return err
	}
	if len(c.ahead) == 0 {
		c.done = true
		return nil
	}
	ch := c.ahead[0]
	answers, err := r.in.take(ctx, ch.req, r.opts.Timeout)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return r.failed(ctx, c, err)
	}
	r.noteAnswer()
	for _, msg := range answers {
		if isStatus(msg) {
			return r.ended(ctx, c, ch, msg)
		}
		s, err := parseStored(r.stream, msg, true)
		if err != nil {
			return r.failed(ctx, c, fmt.Errorf("%w: %s answered %v", ErrRefused, r.api, err))
		}
		if s.prev != ch.prev || s.Seq <= ch.prev || s.Seq < ch.start {
			// A message of the batch went missing on the way (or the
			// answer is not what was asked): ask again from here.
			return r.failed(ctx, c, fmt.Errorf("an answer of %s went from sequence %d to %d, skipping the one it sent in between: a message was lost on the way", r.api, s.prev, s.Seq))
		}
		ch.prev = s.Seq
		if c.next == 0 {
			// Started by time: the first message fixes where it starts.
			c.next, c.planned = s.Seq, s.Seq
		}
		if c.filter == "" && c.next != 0 && s.Seq > c.next && c.existing(c.next, min(s.Seq-1, ch.hi, c.target)) > 0 {
			// The answer passed over sequences STREAM.INFO says exist:
			// deleted since, or the answer is wrong (a replica or a
			// mirror serving direct gets that lacks them). Ask again
			// once the stream's state is read anew.
			return r.skipped(ctx, c, ch, s.Seq)
		}
		// For a filter, a sequence between c.next and this one that the
		// answer passed over is not in the store of that replica, which
		// holds every message up to this one (a lagging replica holds
		// a prefix of the stream): it was deleted, or is on another
		// subject.
		if s.Seq > ch.hi || (c.filter == "" && s.Seq > r.horizon) {
			ch.passed = true
			continue
		}
		if s.Seq < c.next {
			continue
		}
		c.next = s.Seq + 1
		c.progressed()
		if c.filter == "" && c.isDeleted(s.Seq) {
			continue // deleted, on a replica that has not applied it yet
		}
		c.buf = append(c.buf, s.Msg)
	}
	return nil
}

// skipped handles an answer for the whole stream that passed from c.next
// over to seq although STREAM.INFO lists messages in between: the state is
// read again (they may have been deleted since) and the rest asked for
// again, after a backoff.
func (r *Reader) skipped(ctx context.Context, c *cursor, ch *chunk, seq uint64) error {
	r.in.forget(ch.req)
	c.ahead = c.ahead[1:]
	cause := fmt.Errorf("an answer of %s went from sequence %d to %d, but the stream's state lists messages in between", r.api, max(c.next, 1)-1, seq)
	if err := r.retryWait(ctx, c, cause); err != nil {
		return err
	}
	if err := r.refreshTarget(ctx, c); err != nil {
		return err
	}
	if c.target == 0 || c.next > c.target {
		c.done = true
		r.dropAhead(c)
		return nil
	}
	return r.askFront(c, ch)
}

// progressed notes that c moved on.
func (c *cursor) progressed() {
	c.stuck = time.Time{}
	c.bo.Reset()
}

// ended handles the status that ends ch's answers.
func (r *Reader) ended(ctx context.Context, c *cursor, ch *chunk, msg *nats.Msg) error {
	code, _ := statusOf(msg)
	var pending uint64
	switch code {
	case "204":
		last, err := uintValue(msg.Header, hdrLastSeq)
		if err != nil || last != ch.prev {
			return r.failed(ctx, c, fmt.Errorf("the end of an answer of %s names sequence %d as its last, but %d was: a message was lost on the way", r.api, last, ch.prev))
		}
		if pending, err = uintValue(msg.Header, hdrNumPending); err != nil {
			return r.failed(ctx, c, fmt.Errorf("%w: %s answered %v", ErrRefused, r.api, err))
		}
	case "404":
	case "503":
		return r.failed(ctx, c, errNoResponders)
	default:
		return r.statusErr(r.api, msg)
	}
	r.in.forget(ch.req)
	c.ahead = c.ahead[1:]
	if ch.passed && ch.hi != ^uint64(0) && c.next <= ch.hi {
		// The answer went past the chunk's end, over sequences the
		// stream's state lists as deleted (others were checked above).
		c.next = ch.hi + 1
		c.progressed()
	}
	if c.filter == "" {
		switch {
		case c.next == 0:
			// By time, and nothing at or after the start time on that
			// replica, although the stream holds some: it lags.
			return r.short(ctx, c, ch, 0)
		case ch.start == 0:
			// The first batch by time: chunks follow from where it ended.
			c.planned = c.next
		case c.next <= ch.hi && c.existing(c.next, min(ch.hi, c.target)) > 0:
			return r.short(ctx, c, ch, pending)
		default:
			c.next = max(c.next, ch.hi+1)
		}
		c.done = c.next > c.target
		return nil
	}
	switch {
	case pending > 0 && c.next != 0 && c.next > r.horizon:
		c.done = true // the rest is for the next round
		return nil
	case pending > 0:
		return r.ask(c, c.next, ^uint64(0))
	case c.target == 0 || (c.next != 0 && c.next > c.target):
		c.done = true
		return nil
	default:
		return r.short(ctx, c, ch, 0)
	}
}

// short handles an answer that ended before covering what it had to:
// pending > 0 means the batch was cut (max bytes, or deleted messages the
// replica still holds), and the rest is asked for at once; otherwise the
// replica holds less than the stream does (it lags), and the rest is asked
// again after a backoff, after checking that it still exists.
func (r *Reader) short(ctx context.Context, c *cursor, ch *chunk, pending uint64) error {
	if pending > 0 {
		return r.askFront(c, ch)
	}
	cause := fmt.Errorf("a replica answered that nothing follows sequence %d, but the stream holds messages up to %d", max(c.next, 1)-1, c.target)
	if err := r.retryWait(ctx, c, cause); err != nil {
		return err
	}
	if err := r.refreshTarget(ctx, c); err != nil {
		return err
	}
	if c.target == 0 || (c.next != 0 && c.next > c.target) {
		c.done = true
		r.dropAhead(c)
		return nil
	}
	return r.askFront(c, ch)
}

// askFront asks again for what is left of ch, ahead of the requests
// already queued.
func (r *Reader) askFront(c *cursor, ch *chunk) error {
	rest := c.ahead
	c.ahead = nil
	hi := ch.hi
	if c.next == 0 {
		hi = ^uint64(0)
	}
	if err := r.ask(c, c.next, hi); err != nil {
		c.ahead = rest
		return err
	}
	c.ahead = append(c.ahead, rest...)
	return nil
}

// dropAhead forgets c's outstanding requests; the next plan starts from
// c.next.
func (r *Reader) dropAhead(c *cursor) {
	for _, ch := range c.ahead {
		r.in.forget(ch.req)
	}
	c.ahead = nil
	c.planned = c.next
}

// failed handles a request that got no usable answer: it is dropped and
// asked again (after a backoff) from where c is, until RetryFor passes.
func (r *Reader) failed(ctx context.Context, c *cursor, cause error) error {
	if errors.Is(cause, ErrRefused) {
		r.dropAhead(c)
		return cause
	}
	ch := c.ahead[0]
	r.in.forget(ch.req)
	c.ahead = c.ahead[1:]
	if err := r.refused(cause, r.api); err != nil {
		r.dropAhead(c)
		return err
	}
	switch {
	case errors.Is(cause, errNoAnswerYet):
		cause = fmt.Errorf("%w: %s did not answer within %s", ErrNoAnswer, r.api, r.opts.Timeout)
	case errors.Is(cause, errNoResponders):
		cause = fmt.Errorf("nobody answered %s (no replica serving direct gets)", r.api)
	}
	if err := r.retryWait(ctx, c, cause); err != nil {
		return err
	}
	return r.askFront(c, ch)
}

// retryWait waits before asking again, or returns the *IncompleteError
// once c has not progressed for RetryFor (its requests are then dropped:
// a later Next asks again from where it stopped).
func (r *Reader) retryWait(ctx context.Context, c *cursor, cause error) error {
	if c.stuck.IsZero() {
		c.stuck = time.Now()
	}
	if time.Since(c.stuck) >= r.opts.RetryFor {
		to := max(c.target, c.next, 1)
		if c.filter == "" {
			to = max(r.horizon, c.next, 1)
		}
		r.dropAhead(c)
		return &IncompleteError{Stream: r.stream, Filter: c.filter, From: max(c.next, 1), To: to, Err: cause}
	}
	return c.bo.Wait(ctx)
}

// refreshTarget reads again what c must reach (a message it was to
// deliver may have been deleted since the round began).
func (r *Reader) refreshTarget(ctx context.Context, c *cursor) error {
	if c.filter != "" {
		last, err := r.lastOf(ctx, c.filter)
		if err != nil {
			return err
		}
		if last.Seq < c.target {
			c.target = last.Seq
		}
		return nil
	}
	st, err := r.state(ctx)
	if err != nil {
		return err
	}
	if c.next != 0 && c.next < st.FirstSeq {
		c.next = st.FirstSeq // removed meanwhile (age, limits)
	}
	from := max(c.next, st.FirstSeq)
	for _, d := range st.Deleted {
		if d >= from && d <= r.horizon && !c.isDeleted(d) {
			c.deleted = append(c.deleted, d)
		}
	}
	slices.Sort(c.deleted)
	c.target = r.lastExisting(c, from, min(c.target, st.LastSeq))
	return nil
}
