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

// Forward returns a function for agent.DesktopConfig.OnNotice that shows
// each notice worth a notification (Of) through n, in the background and
// in order; a failure is logged once at warn level (then at debug).
func Forward(n Notifier, log *zap.Logger) func(agent.Notice) {
	if log == nil {
		log = zap.NewNop()
	}
	var mu sync.Mutex // in order, one at a time
	var warned bool
	return func(notice agent.Notice) {
		note, ok := Of(notice)
		if !ok {
			return
		}
		go func() {
			mu.Lock()
			defer mu.Unlock()
			ctx, cancel := context.WithTimeout(context.Background(), showFor)
			defer cancel()
			if err := n.Notify(ctx, note); err != nil {
				level := zap.DebugLevel
				if !warned {
					warned, level = true, zap.WarnLevel
				}
				log.Log(level, "cannot show a notification", zap.Error(err))
			}
		}()
	}
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
