// Package notify shows the desktop's notices to its user as native
// notifications, and opens the session's Self Service page when the user
// clicks one: the freedesktop notification service over the D-Bus session
// bus on Linux and the BSDs, Notification Center (terminal-notifier, or
// osascript, whose notifications cannot open anything) on macOS, a toast
// (PowerShell) on Windows. Forward picks the notices worth one: a
// mandatory job coming with its countdown, the busy notice (which the
// desktop's --busy-notice=false silences), a job finished or failed, a
// restart coming. Recorder is the fake for tests. It never decides
// anything about a job.
package notify

import (
	"context"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/pcm-project/pcm/agent"
)

// Notification is one native notification.
type Notification struct {
	Title string `json:"title"`
	Body  string `json:"body"`
	// Urgent asks the platform to keep it on screen (a job about to run,
	// a restart).
	Urgent bool `json:"urgent,omitempty"`
	// Kind is the notice it shows.
	Kind agent.NoticeKind `json:"kind"`
	// JobID is the job it is about.
	JobID string `json:"job_id,omitempty"`
}

// Notifier shows notifications.
type Notifier interface {
	Notify(ctx context.Context, n Notification) error
}

// Of is the notification of a notice, and whether it is worth one.
func Of(n agent.Notice) (Notification, bool) {
	out := Notification{Body: n.Text, Kind: n.Kind, JobID: n.JobID}
	switch n.Kind {
	case agent.NoticeMandatory, agent.NoticeCountdown:
		out.Title, out.Urgent = "Installation required", true
	case agent.NoticeBusy:
		out.Title = "Installing in the background"
	case agent.NoticeFinished:
		out.Title = "Installed"
	case agent.NoticeFailed:
		out.Title, out.Urgent = "Installation failed", true
	case agent.NoticeRestart:
		out.Title, out.Urgent = "Restart coming", true
	default:
		return Notification{}, false
	}
	return out, true
}

// showFor bounds one notification command.
const showFor = 15 * time.Second

// queuedNotices bounds the notifications waiting to be shown: when the
// platform is slow (a bus that hangs), the oldest are dropped, as the
// newest say best where the jobs are now.
const queuedNotices = 8

// Forward returns a function for agent.DesktopConfig.OnNotice that shows
// each notice worth a notification (Of) through n, in the background and
// in order, one at a time, on one goroutine that runs while some wait.
// At most queuedNotices wait: beyond, the oldest is dropped. A failure,
// and notifications dropped, are logged once at warn level (then at
// debug).
func Forward(n Notifier, log *zap.Logger) func(agent.Notice) {
	if log == nil {
		log = zap.NewNop()
	}
	f := &forwarder{n: n, log: log}
	return func(notice agent.Notice) {
		if note, ok := Of(notice); ok {
			f.add(note)
		}
	}
}

// forwarder is Forward's queue and its worker.
type forwarder struct {
	n   Notifier
	log *zap.Logger

	mu         sync.Mutex
	queue      []Notification // waiting, oldest first
	running    bool           // a worker (run) is showing them
	warned     bool           // a failure was logged at warn level
	dropWarned bool           // a drop was logged at warn level
	dropped    int            // notifications dropped so far
}

// add queues note, dropping the oldest waiting beyond queuedNotices, and
// starts the worker if none runs.
func (f *forwarder) add(note Notification) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.queue) == queuedNotices {
		f.dropped++
		f.logOnce(&f.dropWarned, "notifications are shown too slowly: the oldest waiting is dropped",
			zap.String("title", f.queue[0].Title), zap.String("job_id", f.queue[0].JobID), zap.Int("dropped", f.dropped))
		f.queue = slices.Delete(f.queue, 0, 1)
	}
	f.queue = append(f.queue, note)
	if !f.running {
		f.running = true
		go f.run()
	}
}

// run shows the notifications queued, in order, and returns once none
// waits.
func (f *forwarder) run() {
	for {
		f.mu.Lock()
		if len(f.queue) == 0 {
			f.running = false
			f.mu.Unlock()
			return
		}
		note := f.queue[0]
		f.queue = slices.Delete(f.queue, 0, 1)
		f.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), showFor)
		err := f.n.Notify(ctx, note)
		cancel()
		if err != nil {
			f.mu.Lock()
			f.logOnce(&f.warned, "cannot show a notification", zap.Error(err))
			f.mu.Unlock()
		}
	}
}

// logOnce logs msg at warn level the first time (*warned false), then at
// debug. f.mu is held.
func (f *forwarder) logOnce(warned *bool, msg string, fields ...zap.Field) {
	level := zap.DebugLevel
	if !*warned {
		*warned, level = true, zap.WarnLevel
	}
	f.log.Log(level, msg, fields...)
}

// Recorder is a Notifier that keeps what it is asked to show: the fake
// for tests.
type Recorder struct {
	mu    sync.Mutex
	shown []Notification
}

// Notify keeps n.
func (r *Recorder) Notify(_ context.Context, n Notification) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.shown = append(r.shown, n)
	return nil
}

// Shown returns what it was asked to show, in order.
func (r *Recorder) Shown() []Notification {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Notification(nil), r.shown...)
}
