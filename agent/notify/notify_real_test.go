//go:build notifyreal

package notify_test

import (
	"context"
	"testing"
	"time"

	"github.com/pcm-project/pcm/agent/notify"
)

// TestNativeNotification shows one real notification on this platform
// (go test -tags notifyreal ./agent/notify, at a desktop).
func TestNativeNotification(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	n := notify.Native(notify.Config{})
	defer n.Close()
	err := n.Notify(ctx, notify.Notification{Title: "pcm test", Body: "A real notification from pcm's tests: \"quotes\", 'apostrophes' & ünïcode."})
	if err != nil {
		t.Fatal(err)
	}
}
