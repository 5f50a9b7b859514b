//go:build !windows && !darwin

package notify

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/pcm-project/pcm/testenv"
	"github.com/pcm-project/pcm/testenv/desktopbus"
)

// TestFailedNotifyKeepsOthersClicks: a click heard on a notification
// before its Notify call is answered opens the page once it is, even when
// another call in flight fails meanwhile.
func TestFailedNotifyKeepsOthersClicks(t *testing.T) {
	daemon := desktopbus.Start(t)
	srv := desktopbus.StartServer(t, daemon)
	opened := make(chan struct{}, 4)
	n := Native(Config{Bus: daemon.Address, PageURL: "http://127.0.0.1:1/?token=secret", Open: func(context.Context, string) error {
		opened <- struct{}{}
		return nil
	}})
	t.Cleanup(func() { n.Close() })
	b := n.(*bus)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := n.Notify(ctx, Notification{Title: "Connected"}); err != nil {
		t.Fatal(err)
	}

	held, release := make(chan struct{}), make(chan struct{})
	srv.OnNotify(func(nd desktopbus.Notified) error {
		switch nd.Summary {
		case "Clicked early": // the user is faster than the answer
			if err := srv.Click(nd.ID, "default"); err != nil {
				return err
			}
			close(held)
			<-release
		case "Refused":
			return errors.New("refused")
		}
		return nil
	})
	clicked := make(chan error, 1)
	go func() { clicked <- n.Notify(ctx, Notification{Title: "Clicked early"}) }()
	select {
	case <-held:
	case <-ctx.Done():
		t.Fatal("the server did not get the notification")
	}
	testenv.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		b.mu.Lock()
		defer b.mu.Unlock()
		if len(b.early) != 1 {
			return fmt.Errorf("%d clicks heard early, want 1", len(b.early))
		}
		return nil
	})
	if err := n.Notify(ctx, Notification{Title: "Refused"}); err == nil {
		t.Fatal("a refused notification: no error")
	}
	close(release)
	if err := <-clicked; err != nil {
		t.Fatal(err)
	}
	select {
	case <-opened:
	case <-ctx.Done():
		t.Fatal("the click heard early did not open the page")
	}
}
