package console

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/pcm-project/pcm/rollout"
)

// jobFeed is the one rollout watch of a job that every viewer of its page
// shares.
type jobFeed struct {
	*fanout
	stop context.CancelFunc
	done chan struct{}
}

// feeds are the job feeds open, by job id.
type feeds struct {
	mu   sync.Mutex
	jobs map[string]*jobFeed
}

// join adds v to the viewers of job, starting the job's watch for its
// first viewer; leave must follow. The returned channel is closed when the
// watch ends (the broker failed it): the viewer's stream ends, and the
// browser's reconnection starts a new watch.
func (c *Console) join(ctx context.Context, job string, v *viewer) (<-chan struct{}, error) {
	c.feeds.mu.Lock()
	defer c.feeds.mu.Unlock()
	if f := c.feeds.jobs[job]; f != nil {
		f.join(v)
		c.viewersGauge(1)
		return f.done, nil
	}
	wctx, cancel := context.WithCancel(c.runCtx)
	w, err := rollout.WatchWith(wctx, c.cfg.JS, job, rollout.WatchOptions{Resync: c.cfg.Resync})
	if err != nil {
		cancel()
		return nil, err
	}
	f := &jobFeed{fanout: newFanout(), stop: cancel, done: make(chan struct{})}
	c.feeds.jobs[job] = f
	f.join(v)
	c.viewersGauge(1)
	go func() {
		defer close(f.done)
		defer cancel()
		c.pump(wctx, job, w, f)
		// A watch that ended by itself is forgotten: the next viewer
		// starts another.
		c.feeds.mu.Lock()
		if c.feeds.jobs[job] == f {
			delete(c.feeds.jobs, job)
		}
		c.feeds.mu.Unlock()
	}()
	return f.done, nil
}

// leave removes v from job's viewers, stopping the watch with the last.
func (c *Console) leave(job string, v *viewer) {
	c.feeds.mu.Lock()
	defer c.feeds.mu.Unlock()
	c.viewersGauge(-1)
	f := c.feeds.jobs[job]
	if f == nil {
		return
	}
	if f.leave(v) == 0 {
		delete(c.feeds.jobs, job)
		f.stop()
	}
}

// pump renders the watch's rollouts for the viewers, at most one per
// c.cfg.Throttle: the rollout of 1,000 clients is rendered once for every
// viewer, and a burst of statuses once. After the console's connection
// reconnects it starts the watch again (a broker restart may have left it
// waiting).
func (c *Console) pump(ctx context.Context, job string, w *rollout.Watcher, f *jobFeed) {
	defer func() { w.Stop() }()
	var (
		latest  *rollout.Rollout
		timer   *time.Timer
		timerC  <-chan time.Time
		lastRun time.Time
	)
	nc := c.cfg.JS.Conn()
	var reconnects uint64
	if nc != nil {
		reconnects = nc.Stats().Reconnects
	}
	check := time.NewTicker(time.Second)
	defer check.Stop()
	render := func() {
		v := viewOf(*latest)
		c.hub.mu.Lock()
		if e := c.hub.index.jobs[job]; e != nil {
			v.Command = commandText(e.offer.Command)
		}
		c.hub.mu.Unlock()
		b, err := json.Marshal(v)
		if err != nil {
			return
		}
		c.rendered.Inc()
		f.send(sseMessage("job", b))
		lastRun = time.Now()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case r, ok := <-w.Updates():
			if !ok {
				if err := w.Err(); err != nil {
					b, _ := json.Marshal(map[string]string{"error": err.Error()})
					f.send(sseMessage("failure", b))
				}
				return
			}
			latest = &r
			if timerC == nil {
				wait := c.cfg.Throttle - time.Since(lastRun)
				if wait < 0 {
					wait = 0
				}
				timer = time.NewTimer(wait)
				timerC = timer.C
			}
		case <-timerC:
			timerC = nil
			render()
		case <-check.C:
			if nc == nil || nc.Stats().Reconnects == reconnects {
				continue
			}
			reconnects = nc.Stats().Reconnects
			fresh, err := rollout.WatchWith(ctx, c.cfg.JS, job, rollout.WatchOptions{Resync: c.cfg.Resync})
			if err != nil {
				if ctx.Err() == nil {
					c.log.Warn("following a job again after a reconnection", errField(err))
					// The next check tries again.
					reconnects--
				}
				continue
			}
			w.Stop()
			w = fresh
		}
	}
}
