// Package streamread reads a JetStream stream through batched direct gets
// instead of consumers, and follows it with core subscriptions to its
// subjects.
//
// A batch is one request to $JS.API.DIRECT.GET.<stream> with a JSON body
// {"seq": N, "batch": B, "max_bytes": M, "next_by_subj": "<filter>"} (or
// "start_time" instead of "seq"): the broker answers, on a private inbox
// of the connection (nc.NewInbox, so a custom inbox prefix is respected),
// with one message per stored message, headers Nats-Stream, Nats-Subject,
// Nats-Sequence, Nats-Time-Stamp, Nats-Num-Pending and Nats-Last-Sequence
// added, then a status message 204 "EOB" whose Nats-Num-Pending says how
// many matching messages remain; a 404 when nothing is left. The stream
// must allow direct gets (AllowDirect, as pcm provisions PCM_JOBS and
// PCM_STATUS).
//
// A user that reads this way needs no right on the stream's consumers: it
// can neither create, update nor pull from any of them (an agent's durable
// consumer included); it needs a publish right on
// $JS.API.DIRECT.GET.<stream>, a subscription to its inbox and, to
// follow, subscriptions to the subjects it follows.
//
// It never creates a consumer, never writes to a stream, never loads a
// stream whole (a Reader holds a few batches per filter: the one being
// read and those asked for ahead) and does not poll: Follow reads when a
// subscription hears of a new message, and otherwise once per resync
// period (see Follow for the ordering and the gaps).
package streamread

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
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
	// maxBatch keeps a batch within what one subscription buffers.
	maxBatch = 10_000
)

// The headers a direct get adds to a stored message, and the status
// headers nats.go sets on a status message.
const (
	hdrStream     = "Nats-Stream"
	hdrSubject    = "Nats-Subject"
	hdrSequence   = "Nats-Sequence"
	hdrTimeStamp  = "Nats-Time-Stamp"
	hdrNumPending = "Nats-Num-Pending"
	hdrLastSeq    = "Nats-Last-Sequence"
	hdrStatus     = "Status"
	hdrDescr      = "Description"
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
	// Header holds the headers it was stored with (nil when none): the
	// headers a direct get adds are removed.
	Header nats.Header
	// Data is its body.
	Data []byte
}

// Options say what a Reader reads.
type Options struct {
	// Filters are the subjects to read, wildcards allowed; empty reads
	// the whole stream. Each filter is read with its own batches and the
	// results merged by sequence; a message matching several filters is
	// returned once.
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
	// DefaultTimeout. The context bounds the whole read.
	Timeout time.Duration
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
// returns every message on the filters stored when it began (the stream's
// last sequence then is its horizon), merged by sequence, then
// ErrCaughtUp; the next call to Next begins a new round from where the last
// one stopped. A Reader is not safe for concurrent use. Close it.
type Reader struct {
	nc      *nats.Conn
	stream  string
	api     string // $JS.API.DIRECT.GET.<stream>
	opts    Options
	cursors []*cursor
	meta    inbox // for the horizon

	inRound bool
	horizon uint64
}

// cursor is the read position, the current batch and the request sent
// ahead for the next one of one filter.
type cursor struct {
	filter string // "" for the whole stream
	next   uint64 // the next sequence to ask for; 0 until a first message when starting by time
	buf    []Msg
	head   int
	eof    bool // nothing stored after next when last asked, in this round
	in     inbox
	ahead  []sent // requests sent and not read yet, oldest first
}

// sent is a batch request sent.
type sent struct {
	reply string // where its answers come
	start uint64 // the sequence it starts at (0: by time)
}

// inbox is a subscription to a private inbox of the connection, answers
// to each request coming to a subject of their own under it.
type inbox struct {
	sub    *nats.Subscription
	prefix string
	token  uint64
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
	r := &Reader{nc: js.Conn(), stream: stream, api: apiPrefix(js.Options()) + "DIRECT.GET." + stream, opts: opts}
	start := opts.StartSeq
	if start == 0 && opts.StartTime.IsZero() {
		start = 1
	}
	filters := dedupe(opts.Filters)
	if len(filters) == 0 {
		filters = []string{""}
	}
	for _, f := range filters {
		r.cursors = append(r.cursors, &cursor{filter: f, next: start})
	}
	return r, nil
}

// dedupe drops repeated filters, keeping the order.
func dedupe(fs []string) []string {
	var out []string
	for _, f := range fs {
		dup := false
		for _, o := range out {
			dup = dup || o == f
		}
		if !dup {
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

// Close releases the Reader's inbox subscriptions.
func (r *Reader) Close() error {
	err := r.meta.close()
	for _, c := range r.cursors {
		c.ahead = nil
		if cerr := c.in.close(); err == nil {
			err = cerr
		}
	}
	return err
}

// Next returns the next message in stream order, or ErrCaughtUp at the end
// of a round. After another error it may be called again: it resumes where
// it stopped, without skipping or repeating a message.
func (r *Reader) Next(ctx context.Context) (Msg, error) {
	if err := ctx.Err(); err != nil {
		return Msg{}, err
	}
	if !r.inRound {
		h, err := r.lastSeq(ctx)
		if err != nil {
			return Msg{}, err
		}
		r.horizon, r.inRound = h, true
		for _, c := range r.cursors {
			c.eof = false
		}
	}
	var best *cursor
	for _, c := range r.cursors {
		for c.peek() == nil && !c.eof && (c.next == 0 || c.next <= r.horizon) {
			if err := r.fetch(ctx, c); err != nil {
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
// called (one round of a Reader). An error from fn stops the scan and is
// returned as is.
func Scan(ctx context.Context, js jetstream.JetStream, stream string, opts Options, fn func(Msg) error) error {
	r, err := NewReader(js, stream, opts)
	if err != nil {
		return err
	}
	defer func() { _ = r.Close() }()
	for {
		m, err := r.Next(ctx)
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

// getRequest is nats-server's JSApiMsgGetRequest, the fields used here.
type getRequest struct {
	Seq       uint64     `json:"seq,omitempty"`
	LastFor   string     `json:"last_by_subj,omitempty"`
	NextFor   string     `json:"next_by_subj,omitempty"`
	Batch     int        `json:"batch,omitempty"`
	MaxBytes  int        `json:"max_bytes,omitempty"`
	StartTime *time.Time `json:"start_time,omitempty"`
}

// send publishes a direct get to api whose answers come to a fresh reply
// subject under the inbox, and returns that subject.
func (in *inbox) send(nc *nats.Conn, api string, req getRequest) (string, error) {
	if in.sub == nil {
		prefix := nc.NewInbox()
		sub, err := nc.SubscribeSync(prefix + ".*")
		if err != nil {
			return "", fmt.Errorf("subscribing to the inbox: %w", err)
		}
		// Generous limits: two batches (and late answers to abandoned
		// requests) must fit.
		if err := sub.SetPendingLimits(4*maxBatch, 256<<20); err != nil {
			_ = sub.Unsubscribe()
			return "", err
		}
		in.sub, in.prefix = sub, prefix
	}
	body, err := json.Marshal(req)
	if err != nil {
		return "", err
	}
	in.token++
	reply := in.prefix + "." + strconv.FormatUint(in.token, 10)
	if err := nc.PublishMsg(&nats.Msg{Subject: api, Reply: reply, Data: body}); err != nil {
		return "", err
	}
	return reply, nil
}

// answer waits for the next answer to reply, skipping late answers to
// abandoned requests.
func (in *inbox) answer(ctx context.Context, reply string) (*nats.Msg, error) {
	for {
		msg, err := in.sub.NextMsgWithContext(ctx)
		switch {
		case err != nil:
			return nil, err
		case msg.Subject == reply:
			return msg, nil
		}
	}
}

// close unsubscribes.
func (in *inbox) close() error {
	if in.sub == nil {
		return nil
	}
	err := in.sub.Unsubscribe()
	in.sub = nil
	if errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrBadSubscription) {
		return nil
	}
	return err
}

// request sends a direct get through in.
func (r *Reader) request(in *inbox, req getRequest) (string, error) {
	reply, err := in.send(r.nc, r.api, req)
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", r.stream, err)
	}
	return reply, nil
}

// waitErr turns a failed wait into the error to return: the caller's
// context error, or ErrNoAnswer when only the answer's time ran out.
func (r *Reader) waitErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %s did not answer within %s: check the connection, and that the user may publish to it",
			ErrNoAnswer, r.api, r.opts.Timeout)
	}
	if errors.Is(err, nats.ErrNoResponders) {
		return fmt.Errorf("%w: %w: nobody answers %s: provision the stream (pcm broker provision) with AllowDirect",
			ErrNoStream, jetstream.ErrStreamNotFound, r.api)
	}
	return fmt.Errorf("reading %s: %w", r.stream, err)
}

// statusErr describes an error status answer.
func (r *Reader) statusErr(msg *nats.Msg) error {
	return fmt.Errorf("%w: %s answered %s %s", ErrRefused, r.api, msg.Header.Get(hdrStatus), msg.Header.Get(hdrDescr))
}

// lastSeq reads the stream's last sequence (the sequence of its last
// message): the horizon of a round. An empty stream (or one whose last
// message is gone) gives no bound.
func (r *Reader) lastSeq(ctx context.Context) (uint64, error) {
	reply, err := r.request(&r.meta, getRequest{LastFor: ">"})
	if err != nil {
		return 0, err
	}
	wctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	msg, err := r.meta.answer(wctx, reply)
	if err != nil {
		return 0, r.waitErr(ctx, err)
	}
	if v := msg.Header.Get(hdrSequence); v != "" {
		seq, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%w: %s answered sequence %q", ErrRefused, r.api, v)
		}
		return seq, nil
	}
	if msg.Header.Get(hdrStatus) == "404" {
		return ^uint64(0), nil
	}
	return 0, r.statusErr(msg)
}

// aheadDepth is how many batch requests a cursor of the whole stream keeps
// outstanding: the broker prepares the next batches while the caller works
// through this one.
const aheadDepth = 3

// fetch reads one batch of c into its buffer: the oldest one asked for
// ahead, or a new one.
//
// To keep the broker busy, a cursor asks for batches ahead: a filtered one
// asks for its next batch as soon as a batch ends (it cannot know where
// the next one starts before); a cursor of the whole stream also asks, up
// to aheadDepth batches, at predicted starts (the previous start plus the
// batch size, which is exact as long as no message in between was deleted
// and no batch was cut short by max bytes). A batch that ends before the
// next one's start (a short batch) makes the cursor drop the requests
// ahead (their answers are skipped) and ask again from where it is; one
// that ends after it (deleted messages in its range) makes the next
// batch's first messages repeats, which are skipped by sequence.
func (r *Reader) fetch(ctx context.Context, c *cursor) error {
	if len(c.ahead) == 0 {
		if err := r.ask(c, c.next); err != nil {
			return err
		}
	}
	if c.filter == "" && c.next > 0 {
		for last := c.ahead[len(c.ahead)-1].start; len(c.ahead) < aheadDepth && last+uint64(r.opts.Batch) <= r.horizon; {
			last += uint64(r.opts.Batch)
			if err := r.ask(c, last); err != nil {
				return err
			}
		}
	}
	cur := c.ahead[0]
	c.ahead = c.ahead[1:]
	wctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	for {
		msg, err := c.in.answer(wctx, cur.reply)
		if err != nil {
			c.ahead = nil
			return r.waitErr(ctx, err)
		}
		if msg.Header.Get(hdrSequence) == "" {
			switch msg.Header.Get(hdrStatus) {
			case "204": // end of the batch
				c.eof = msg.Header.Get(hdrNumPending) == "0"
				if c.eof || (len(c.ahead) > 0 && c.next < c.ahead[0].start) {
					c.ahead = nil
				}
				if !c.eof && len(c.ahead) == 0 && c.next <= r.horizon {
					return r.ask(c, c.next)
				}
				return nil
			case "404": // nothing stored from where it started
				c.eof, c.ahead = true, nil
				return nil
			default:
				c.ahead = nil
				return r.statusErr(msg)
			}
		}
		m, err := r.msgOf(msg)
		if err != nil {
			c.ahead = nil
			return err
		}
		if m.Seq < c.next {
			continue // a repeat: a batch asked for ahead overlapped this one
		}
		c.buf = append(c.buf, m)
		c.next = m.Seq + 1
	}
}

// ask sends a request for a batch of c from start (0: from the start time)
// and queues it.
func (r *Reader) ask(c *cursor, start uint64) error {
	req := getRequest{NextFor: c.filter, Batch: r.opts.Batch, MaxBytes: r.opts.MaxBytes}
	if start > 0 {
		req.Seq = start
	} else {
		t := r.opts.StartTime.UTC()
		req.StartTime = &t
	}
	reply, err := r.request(&c.in, req)
	if err != nil {
		return err
	}
	c.ahead = append(c.ahead, sent{reply: reply, start: start})
	return nil
}

// msgOf reads a stored message out of a direct get answer.
func (r *Reader) msgOf(msg *nats.Msg) (Msg, error) {
	h := msg.Header
	seq, err := strconv.ParseUint(h.Get(hdrSequence), 10, 64)
	if err != nil {
		return Msg{}, fmt.Errorf("%w: %s answered sequence %q", ErrRefused, r.api, h.Get(hdrSequence))
	}
	ts, err := time.Parse(time.RFC3339Nano, h.Get(hdrTimeStamp))
	if err != nil {
		return Msg{}, fmt.Errorf("%w: %s answered time stamp %q", ErrRefused, r.api, h.Get(hdrTimeStamp))
	}
	m := Msg{Stream: r.stream, Subject: h.Get(hdrSubject), Seq: seq, Time: ts, Data: msg.Data}
	for _, k := range []string{hdrStream, hdrSubject, hdrSequence, hdrTimeStamp, hdrNumPending, hdrLastSeq} {
		delete(h, k)
	}
	if len(h) > 0 {
		m.Header = h
	}
	return m, nil
}
