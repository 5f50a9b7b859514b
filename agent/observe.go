package agent

import "time"

// Observer hears timings of the service face, for metrics (package
// metrics's LockTimes is one). Its methods are called from the service's
// goroutines and must not block.
type Observer interface {
	// LockWaited: the service waited d for the client's lock before a job.
	LockWaited(d time.Duration)
	// LockHeld: the service held the lock d for a job.
	LockHeld(d time.Duration)
}

// lockTaken records that the lock was taken after waiting d.
func (s *Service) lockTaken(d time.Duration) {
	s.heldSince.Store(time.Now().UnixNano())
	if o := s.cfg.Observer; o != nil {
		o.LockWaited(d)
	}
}

// lockReleased records that the lock taken last is released.
func (s *Service) lockReleased() {
	since := s.heldSince.Swap(0)
	if o := s.cfg.Observer; o != nil && since != 0 {
		o.LockHeld(time.Since(time.Unix(0, since)))
	}
}
