package streamread

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// inbox is one subscription to a private inbox of the connection
// (nc.NewInbox, so a custom inbox prefix is respected) through which every
// request of a Reader is answered, each request on a reply subject of its
// own under it. Answers are sorted to their request by reply subject as
// they arrive, whichever replica sends them and however the answers to
// several outstanding requests interleave; answers to a request no longer
// waited for (abandoned after a timeout, or after the Reader moved on) are
// dropped.
//
// It is an asynchronous subscription rather than a synchronous one because
// nats.go's NextMsg turns any empty message whose first Status header is
// 503 into ErrNoResponders, and a stored message can carry such a header:
// here, only what the server sets decides what an answer is.
type inbox struct {
	nc     *nats.Conn
	sub    *nats.Subscription
	prefix string
	token  uint64

	mu   sync.Mutex
	live map[string]*request
}

// request is one direct get sent and the raw answers received so far.
type request struct {
	reply  string
	sent   time.Time
	notify chan struct{} // a token when answers arrive

	// guarded by inbox.mu
	answers []*nats.Msg
	last    time.Time // when the last answer arrived
}

// open subscribes on first use.
func (in *inbox) open(nc *nats.Conn) error {
	if in.sub != nil {
		return nil
	}
	in.nc = nc
	in.live = map[string]*request{}
	prefix := nc.NewInbox()
	sub, err := nc.Subscribe(prefix+".*", in.deliver)
	if err != nil {
		return fmt.Errorf("subscribing to the inbox: %w", err)
	}
	// The callback only files each answer: a read holds a few batches.
	if err := sub.SetPendingLimits(-1, 512<<20); err != nil {
		_ = sub.Unsubscribe()
		return err
	}
	in.sub, in.prefix = sub, prefix
	return nil
}

// deliver files an answer with its request.
func (in *inbox) deliver(msg *nats.Msg) {
	in.mu.Lock()
	r := in.live[msg.Subject]
	if r == nil {
		in.mu.Unlock()
		return
	}
	r.answers = append(r.answers, msg)
	r.last = time.Now()
	in.mu.Unlock()
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

// send publishes a request to subject with body and returns it, live.
func (in *inbox) send(nc *nats.Conn, subject string, body []byte) (*request, error) {
	if err := in.open(nc); err != nil {
		return nil, err
	}
	in.token++
	r := &request{reply: in.prefix + "." + strconv.FormatUint(in.token, 10), notify: make(chan struct{}, 1), sent: time.Now()}
	in.mu.Lock()
	in.live[r.reply] = r
	in.mu.Unlock()
	if err := nc.PublishMsg(&nats.Msg{Subject: subject, Reply: r.reply, Data: body}); err != nil {
		in.forget(r)
		return nil, err
	}
	return r, nil
}

// forget stops filing answers for r.
func (in *inbox) forget(r *request) {
	if r == nil {
		return
	}
	in.mu.Lock()
	delete(in.live, r.reply)
	in.mu.Unlock()
}

// take returns the answers of r received since the last take, waiting
// until there is at least one, until timeout has passed since r was sent or
// last answered (errNoAnswerYet), or until ctx ends.
func (in *inbox) take(ctx context.Context, r *request, timeout time.Duration) ([]*nats.Msg, error) {
	for {
		in.mu.Lock()
		got := r.answers
		r.answers = nil
		since := r.sent
		if r.last.After(since) {
			since = r.last
		}
		in.mu.Unlock()
		if len(got) > 0 {
			return got, nil
		}
		wait := time.Until(since.Add(timeout))
		if wait <= 0 {
			return nil, errNoAnswerYet
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-r.notify:
		case <-t.C:
		}
		t.Stop()
	}
}

// errNoAnswerYet: a request's answers stopped coming for a timeout.
var errNoAnswerYet = errors.New("no answer")

// close unsubscribes.
func (in *inbox) close() error {
	if in.sub == nil {
		return nil
	}
	err := in.sub.Unsubscribe()
	in.sub = nil
	in.mu.Lock()
	in.live = map[string]*request{}
	in.mu.Unlock()
	if errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrBadSubscription) {
		return nil
	}
	return err
}
