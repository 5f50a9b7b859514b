package agent

import (
	"context"
	"fmt"

	"go.uber.org/zap"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/internal/clientview"
	"github.com/pcm-project/pcm/internal/kvread"
	"github.com/pcm-project/pcm/internal/streamread"
)

// windows reads this client's maintenance windows (its own, its groups'
// and every client's, as PCM_WINDOWS holds them now) through the client
// view, which reads them on the client's behalf: a client reaches no other
// key of the bucket. A value that is not a valid set of windows is
// skipped (pcm window set refuses to write one).
func (f *face) windows(ctx context.Context) (events.Windows, error) {
	sets := map[string]events.WindowSet{}
	err := clientview.Scan(ctx, f.nc, f.cfg.ClientID, clientview.Windows, func(m streamread.Msg) error {
		e := kvread.EntryOf(events.BucketWindows, m)
		if e.Deleted {
			delete(sets, e.Key)
			return nil
		}
		ws, err := events.ParseWindowSet(e.Value)
		if err != nil {
			f.log.Warn("ignoring maintenance windows that do not read", zap.String("key", e.Key), zap.Error(err))
			delete(sets, e.Key)
			return nil
		}
		sets[e.Key] = ws
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the maintenance windows of %s: %w", f.cfg.ClientID, err)
	}
	var out events.Windows
	for _, ws := range sets {
		out = append(out, ws.Windows...)
	}
	return out, nil
}
