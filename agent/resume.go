package agent

import (
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/pcm-project/pcm/agent/journal"
	"github.com/pcm-project/pcm/events"
)

// doneRetention is how long done records stay in the journal: longer than
// any job can be redelivered (the jobs stream keeps offers 366 days).
const doneRetention = 400 * 24 * time.Hour

// resume settles what an earlier life of the agent left in the journal: an
// attempt that was started and never finished (the agent died mid-run)
// counts as failed, with its status queued in the outbox. Whether another
// attempt follows is decided when the offer comes back, within max_attempts.
func (s *Service) resume() error {
	var interrupted []journal.Record
	err := s.journal.Records(func(r journal.Record) error {
		if r.Phase == journal.PhaseStarted {
			interrupted = append(interrupted, r)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrJournal, err)
	}
	for _, r := range interrupted {
		st := s.newStatus(r.JobID, events.StateFailed, r.Attempt, 0)
		st.Reason = "agent restarted during the run"
		out, err := s.outgoing(st, false)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrJournal, err)
		}
		r.Phase = journal.PhaseFinished
		r.FinalState = string(events.StateFailed)
		if _, err := s.journal.Put(r, out...); err != nil {
			return fmt.Errorf("%w: %w", ErrJournal, err)
		}
		s.log.Warn("a job was interrupted by an agent restart; its attempt counts as failed",
			zap.String("job", r.JobID), zap.Int("attempt", r.Attempt))
	}
	if n, err := s.journal.PruneDone(time.Now().Add(-doneRetention)); err == nil && n > 0 {
		s.log.Info("pruned old journal records", zap.Int("records", n))
	}
	return nil
}
