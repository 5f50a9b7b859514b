package console

import (
	"context"
	"encoding/json"
	"maps"
	"sync"
	"time"

	"github.com/pcm-project/pcm/audit"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/fleet"
	"github.com/pcm-project/pcm/metrics"
)

// viewer is one open event stream: it holds the latest message not sent
// yet, so a slow browser skips intermediate states instead of holding the
// others back.
type viewer struct {
	ch chan []byte
}

func newViewer() *viewer { return &viewer{ch: make(chan []byte, 1)} }

// offer replaces what v has not taken yet with msg.
func (v *viewer) offer(msg []byte) {
	for {
		select {
		case v.ch <- msg:
			return
		default:
		}
		select {
		case <-v.ch:
		default:
		}
	}
}

// fanout is a set of viewers sharing one feed.
type fanout struct {
	mu      sync.Mutex
	viewers map[*viewer]struct{}
	last    []byte
}

func newFanout() *fanout { return &fanout{viewers: map[*viewer]struct{}{}} }

// join adds a viewer and gives it the last message, if any; it returns the
// number of viewers.
func (f *fanout) join(v *viewer) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.viewers[v] = struct{}{}
	if f.last != nil {
		v.offer(f.last)
	}
	return len(f.viewers)
}

// leave removes a viewer and returns how many are left.
func (f *fanout) leave(v *viewer) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.viewers, v)
	return len(f.viewers)
}

// send gives msg to every viewer.
func (f *fanout) send(msg []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.last = msg
	for v := range f.viewers {
		v.offer(msg)
	}
}

// sseMessage is one server-sent event.
func sseMessage(event string, data []byte) []byte {
	b := make([]byte, 0, len(data)+len(event)+16)
	b = append(b, "event: "...)
	b = append(b, event...)
	b = append(b, "\ndata: "...)
	b = append(b, data...)
	return append(b, "\n\n"...)
}

// hub is the console's one follow of the streams: the jobs index, the
// event counters, and the fan-out of the jobs list.
type hub struct {
	mu       sync.Mutex
	index    *jobIndex
	events   *metrics.Events
	rollouts *metrics.Rollouts
	dirty    bool
	seen     uint64            // events read
	last     map[string]uint64 // the last sequence read of each stream
	caught   bool
	err      error

	list *fanout
	max  int // the most jobs the live list sends
}

// observe applies one stored event to the index and the counters.
func (h *hub) observe(e audit.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seen++
	h.dirty = true
	if h.last == nil {
		h.last = map[string]uint64{}
	}
	h.last[e.Stream] = e.Seq
	if h.events != nil {
		h.events.Observe(e)
	}
	ev, err := e.Decode()
	if err != nil {
		return
	}
	switch ev.Type() {
	case events.TypeJobOffered:
		if job, err := events.ParseJobOffered(ev); err == nil {
			h.index.offered(job, events.MakerOf(ev), e.Subject, e.Seq, ev.Time())
		}
	case events.TypeJobCancelled:
		if c, err := events.ParseJobCancelled(ev); err == nil {
			h.index.mark(c.JobID, func(j *jobEntry) { j.cancelled = true })
		}
	case events.TypeJobHalted:
		if hl, err := events.ParseJobHalted(ev); err == nil {
			h.index.mark(hl.JobID, func(j *jobEntry) { j.halted = true })
		}
	case events.TypeJobResumed:
		if r, err := events.ParseJobResumed(ev); err == nil {
			h.index.mark(r.JobID, func(j *jobEntry) { j.halted = false })
		}
	case events.TypeJobStatus:
		if st, err := events.ParseJobStatus(ev); err == nil && events.StatusSubject(st.ClientID, st.JobID) == e.Subject {
			h.index.status(st)
		}
	}
}

// follow replays the streams and follows them until ctx ends. After the
// console's connection reconnects it starts the replay again where it
// was (audit.Filter.Resume): a follow that a broker restart left waiting
// does not hold the pages back.
func (h *hub) follow(ctx context.Context, c *Console) error {
	nc := c.cfg.JS.Conn()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		rctx, cancel := context.WithCancel(ctx)
		f := audit.Filter{Follow: true, Resync: c.cfg.Resync, Resume: h.resume()}
		done := make(chan error, 1)
		go func() {
			done <- audit.Replay(rctx, c.cfg.JS, f, func(e audit.Event) error {
				h.observe(e)
				return nil
			})
		}()
		var reconnects uint64
		if nc != nil {
			reconnects = nc.Stats().Reconnects
		}
	wait:
		for {
			select {
			case err := <-done:
				cancel()
				return err
			case <-tick.C:
				if nc != nil && nc.Stats().Reconnects != reconnects {
					break wait
				}
			}
		}
		cancel()
		if err := <-done; ctx.Err() != nil {
			return err
		}
	}
}

// resume is where a new replay starts: after the last event read of each
// stream.
func (h *hub) resume() map[string]uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.last) == 0 {
		return nil
	}
	return maps.Clone(h.last)
}

// refresh re-reads the enrollments (who each job expects, who received
// it) and the agents' heartbeats (who is offline) every interval.
func (h *hub) refresh(ctx context.Context, c *Console) {
	t := time.NewTicker(c.cfg.Refresh)
	defer t.Stop()
	for {
		en, err := fleet.ListEnrollments(ctx, c.cfg.JS)
		var agents map[string]events.AgentInfo
		if err == nil {
			agents, err = fleet.ReadAgents(ctx, c.cfg.JS)
		}
		if err == nil {
			h.mu.Lock()
			h.index.setFleet(en, agents)
			h.dirty = true
			h.mu.Unlock()
		} else if ctx.Err() == nil {
			c.log.Warn("reading the fleet", errField(err))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// broadcast sends the jobs list to its viewers when it changed, at most
// once per interval, and sets the rollout gauges of the live jobs.
func (h *hub) broadcast(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		h.mu.Lock()
		if !h.dirty {
			h.mu.Unlock()
			continue
		}
		h.dirty = false
		list := h.index.list(time.Now(), 0)
		if h.rollouts != nil {
			for _, j := range list {
				if j.Live {
					h.rollouts.Set(j.ID, j.Counts)
				} else {
					h.rollouts.Drop(j.ID)
				}
			}
		}
		h.mu.Unlock()
		if len(list) > h.max {
			list = list[:h.max]
		}
		b, err := json.Marshal(list)
		if err != nil {
			continue
		}
		h.list.send(sseMessage("jobs", b))
	}
}

// jobs is the current jobs list, at most max jobs (0: all).
func (h *hub) jobs(max int) []JobSummary {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.index.list(time.Now(), max)
}
