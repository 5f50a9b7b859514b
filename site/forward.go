package site

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/pcm-project/pcm/broker/auth"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/internal/backoff"
)

// ForwardConsumer is the durable consumer of the site's PCM_STATUS and
// KV_PCM_AGENTS through which a Forwarder keeps its position.
const ForwardConsumer = "pcm-site-forward"

// DefaultDropAfter is how long the hub must go on refusing a client's
// message while it answers the site before the forwarder drops it, when
// nothing the forwarder knows says the client has left the site: longer
// than a leader election of the hub's PCM_STATUS (seen up to 10 s on a
// stock cluster), during which nobody takes the message either. Once one
// message of a client was dropped, the next ones of that client are
// dropped at the first refusal, until one of its messages is taken again.
const DefaultDropAfter = 2 * time.Minute

// forwardAckWait bounds how long one forward may hold a message before
// the site's stream offers it again (the same one: a forwarder passes one
// message at a time).
const forwardAckWait = time.Minute

// Forwarder copies what the site's agents store (their statuses and their
// inventory) to the hub across an authenticated link, through the site's
// account at the hub, whose imports take them only for the clients
// enrolled at the site (docs/sites.md): each status in the site's order,
// with its Nats-Msg-Id, so the hub stores it once, each inventory value
// likewise. It keeps its position with a durable consumer of each stream
// (ForwardConsumer), acks a message only once the hub's stream has
// acknowledged it, and retries while the link is down. A message of a
// client the hub no longer takes from the site (its account at the hub
// does not import the client: it was enrolled back at the hub or at
// another site) is dropped, terminated at the site and logged, so that it
// does not hold back the other clients' messages: the forwarder tells it
// from a cut by asking the hub (the state of its PCM_JOBS) while nobody
// takes the message (ErrRefused). Make one with NewForwarder; Run does
// the work.
type Forwarder struct {
	// DropAfter is how long the hub must refuse a message before it is
	// dropped (DefaultDropAfter when zero). Set it before Run.
	DropAfter time.Duration

	local     jetstream.JetStream
	hub       jetstream.JetStream
	site      string
	log       *zap.Logger
	forwarded atomic.Int64
	dropped   atomic.Int64
	// departed are the clients a message of which was dropped, and none
	// taken since: their next messages are dropped at the first refusal.
	departedMu sync.Mutex
	departed   map[string]bool
}

// NewForwarder returns a Forwarder of the site named site, whose
// JetStream is local (a connection of the site broker that reaches the
// hub across its leaf connection); hub is the hub's JetStream over the
// same connection (jetstream.NewWithDomain with the hub's domain), which
// the forwarder asks whether the link is up when the hub refuses a
// message.
func NewForwarder(local, hub jetstream.JetStream, site string, log *zap.Logger) *Forwarder {
	if log == nil {
		log = zap.NewNop()
	}
	return &Forwarder{local: local, hub: hub, site: site, log: log, departed: map[string]bool{}}
}

// Forwarded counts the messages the hub has acknowledged.
func (f *Forwarder) Forwarded() int64 { return f.forwarded.Load() }

// Dropped counts the messages dropped because the hub refused them
// (ErrRefused): those of clients no longer enrolled at the site.
func (f *Forwarder) Dropped() int64 { return f.dropped.Load() }

// Run forwards until ctx ends; it then returns nil.
func (f *Forwarder) Run(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.loop(ctx, "KV_"+events.BucketAgents, func(subject string) (string, bool) {
			c, ok := strings.CutPrefix(subject, "$KV."+events.BucketAgents+".")
			return auth.SiteAgentsPrefix + c, ok
		})
	}()
	f.loop(ctx, events.StreamStatus, func(subject string) (string, bool) {
		rest, ok := strings.CutPrefix(subject, "pcm.status.")
		return auth.SiteStatusPrefix + rest, ok
	})
	<-done
	return nil
}

// loop forwards stream's messages, renamed by name, until ctx ends.
func (f *Forwarder) loop(ctx context.Context, stream string, name func(string) (string, bool)) {
	b := backoff.Backoff{Max: 5 * time.Second}
	for ctx.Err() == nil {
		err := f.follow(ctx, stream, name)
		if ctx.Err() != nil {
			return
		}
		f.log.Debug("forwarding again", zap.String("stream", stream), zap.Error(err))
		if backoff.Sleep(ctx, b.Next()) != nil {
			return
		}
	}
}

// follow forwards stream's messages one at a time, until an error.
func (f *Forwarder) follow(ctx context.Context, stream string, name func(string) (string, bool)) error {
	cons, err := f.local.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{
		Durable: ForwardConsumer, AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 1, AckWait: forwardAckWait,
		MaxDeliver: -1, Description: "pcm: the site's copy to the hub, in order",
	})
	if err != nil {
		return err
	}
	for ctx.Err() == nil {
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return err
		}
		for m := range batch.Messages() {
			if err := f.forward(ctx, stream, m, name); err != nil {
				return err
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return err
		}
	}
	return ctx.Err()
}

// forward publishes m to the hub under its forwarded name, retrying until
// the hub's stream acknowledges it, then acks it at the site.
func (f *Forwarder) forward(ctx context.Context, stream string, m jetstream.Msg, name func(string) (string, bool)) error {
	md, err := m.Metadata()
	if err != nil {
		return err
	}
	subject, ok := name(m.Subject())
	if !ok {
		return m.Term()
	}
	out := &nats.Msg{Subject: subject, Data: m.Data(), Header: nats.Header{}}
	for k, v := range m.Headers() {
		if strings.HasPrefix(k, "Nats-") && k != jetstream.MsgIDHeader {
			continue
		}
		out.Header[k] = v
	}
	if out.Header.Get(jetstream.MsgIDHeader) == "" {
		out.Header.Set(jetstream.MsgIDHeader, "site-"+f.site+"-"+stream+"-"+strconv.FormatUint(md.Sequence.Stream, 10))
	}
	client := clientOf(m.Subject())
	dropAfter := f.DropAfter
	if dropAfter <= 0 {
		dropAfter = DefaultDropAfter
	}
	var refusedSince time.Time
	err = backoff.Retry(ctx, backoff.Policy{
		Backoff:        backoff.Backoff{Max: 2 * time.Second},
		AttemptTimeout: 5 * time.Second,
		OnRetry: func(err error, _ time.Duration) {
			f.log.Debug("the hub does not take the message yet", zap.String("subject", m.Subject()), zap.Error(err))
		},
	}, func(actx context.Context) error {
		_, err := f.local.PublishMsg(actx, out)
		if !f.refused(ctx, err) {
			refusedSince = time.Time{}
			return err
		}
		if refusedSince.IsZero() {
			refusedSince = time.Now()
		}
		if f.isDeparted(client) || time.Since(refusedSince) >= dropAfter {
			return backoff.Permanent(fmt.Errorf("%w: %s: %w", ErrRefused, subject, err))
		}
		return err
	})
	f.setDeparted(client, errors.Is(err, ErrRefused))
	if errors.Is(err, ErrRefused) {
		f.dropped.Add(1)
		f.log.Warn("dropped a message of a client the site no longer holds: the hub refuses it (the site's account at the hub does not import the client: it was enrolled at the hub or at another site)",
			zap.String("stream", stream), zap.Uint64("seq", md.Sequence.Stream), zap.String("subject", m.Subject()), zap.Error(err))
		return m.Term()
	}
	if err != nil {
		return fmt.Errorf("%w: forwarding %s #%d to the hub: %w", ErrLink, stream, md.Sequence.Stream, err)
	}
	f.forwarded.Add(1)
	return m.DoubleAck(ctx)
}

// clientOf is the client of a status subject (pcm.status.<client>.<job>)
// or an inventory key's subject ($KV.PCM_AGENTS.<client>).
func clientOf(subject string) string {
	if tokens := strings.Split(subject, "."); len(tokens) > 2 {
		return tokens[2]
	}
	return ""
}

func (f *Forwarder) isDeparted(client string) bool {
	f.departedMu.Lock()
	defer f.departedMu.Unlock()
	return f.departed[client]
}

// setDeparted records whether client's last message was dropped as
// refused (false: it was taken, or failed otherwise).
func (f *Forwarder) setDeparted(client string, dropped bool) {
	f.departedMu.Lock()
	defer f.departedMu.Unlock()
	if dropped {
		f.departed[client] = true
	} else {
		delete(f.departed, client)
	}
}

// hubProbeTimeout bounds how long refused waits for the hub's answer.
const hubProbeTimeout = 2 * time.Second

// refused reports whether err, a publish's, is the hub's refusal: nobody
// takes the message (no responders, or no answer when the site still
// believes the hub takes the name) while the hub answers across the same
// link; during a cut, nobody takes it either, and the hub does not answer.
// ctx is the forward's, not the expired attempt's.
func (f *Forwarder) refused(ctx context.Context, err error) bool {
	if !errors.Is(err, jetstream.ErrNoStreamResponse) && !errors.Is(err, nats.ErrNoResponders) &&
		!errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrTimeout) {
		return false
	}
	f.log.Debug("the hub does not take the message: asking whether it answers", zap.Error(err))
	ctx, cancel := context.WithTimeout(ctx, hubProbeTimeout)
	defer cancel()
	_, err = f.hub.Stream(ctx, events.StreamJobs)
	return err == nil
}
