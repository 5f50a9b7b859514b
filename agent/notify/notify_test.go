package notify_test

import (
	"testing"
	"time"

	"github.com/pcm-project/pcm/agent"
	"github.com/pcm-project/pcm/agent/notify"
	"github.com/pcm-project/pcm/testenv"
)

// TestForwardShowsWhatMatters forwards a notice of each kind to the fake:
// the mandatory, countdown, busy, finished, failed and restart notices
// become notifications, in order; an optional offer does not.
func TestForwardShowsWhatMatters(t *testing.T) {
	var r notify.Recorder
	fwd := notify.Forward(&r, nil)
	kinds := []agent.NoticeKind{agent.NoticeOffered, agent.NoticeMandatory, agent.NoticeCountdown, agent.NoticeBusy,
		agent.NoticeFinished, agent.NoticeFailed, agent.NoticeRestart}
	for _, k := range kinds {
		fwd(agent.Notice{Kind: k, JobID: "j1", Text: string(k) + " text"})
		if k == agent.NoticeOffered {
			continue
		}
		testenv.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
			shown := r.Shown()
			if len(shown) == 0 || shown[len(shown)-1].Kind != k {
				return errNot(k)
			}
			return nil
		})
	}
	shown := r.Shown()
	if len(shown) != len(kinds)-1 {
		t.Fatalf("%d notifications, want %d: %+v", len(shown), len(kinds)-1, shown)
	}
	for _, n := range shown {
		if n.Kind == agent.NoticeOffered || n.Title == "" || n.Body != string(n.Kind)+" text" || n.JobID != "j1" {
			t.Errorf("notification %+v", n)
		}
	}
}

type errNot agent.NoticeKind

func (e errNot) Error() string { return "no notification of kind " + string(e) + " yet" }
