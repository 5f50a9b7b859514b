package notify_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
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

// slowNotifier holds its first notification until release is closed, and
// records how many it shows at once.
type slowNotifier struct {
	started, release chan struct{}
	mu               sync.Mutex
	shown            []string
	now, most        int
}

func (s *slowNotifier) Notify(_ context.Context, n notify.Notification) error {
	s.mu.Lock()
	s.now++
	s.most = max(s.most, s.now)
	first := len(s.shown) == 0
	s.shown = append(s.shown, n.JobID)
	s.mu.Unlock()
	if first {
		close(s.started)
		<-s.release
	}
	s.mu.Lock()
	s.now--
	s.mu.Unlock()
	return nil
}

// TestForwardQueueIsBounded: while a notification takes its time, the
// notices coming wait in a queue of 8, the oldest dropped beyond; they are
// shown one at a time, in order.
func TestForwardQueueIsBounded(t *testing.T) {
	s := &slowNotifier{started: make(chan struct{}), release: make(chan struct{})}
	fwd := notify.Forward(s, nil)
	fwd(agent.Notice{Kind: agent.NoticeFinished, JobID: "j0"})
	select {
	case <-s.started:
	case <-time.After(10 * time.Second):
		t.Fatal("the first notification was not shown")
	}
	for i := 1; i <= 20; i++ {
		fwd(agent.Notice{Kind: agent.NoticeFinished, JobID: fmt.Sprintf("j%d", i)})
	}
	close(s.release)
	want := []string{"j0", "j13", "j14", "j15", "j16", "j17", "j18", "j19", "j20"}
	testenv.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		s.mu.Lock()
		defer s.mu.Unlock()
		if !slices.Equal(s.shown, want) {
			return fmt.Errorf("shown %v, want %v", s.shown, want)
		}
		return nil
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.most != 1 {
		t.Fatalf("%d notifications shown at once, want 1", s.most)
	}
}
