package lock

// StopRenewing stops the lease's renewals without releasing it, as if its
// holder had died.
func StopRenewing(s *Lease) { s.stopRenewing() }

// Attempts counts the create attempts the locker made.
func Attempts(l *Locker) int64 { return l.attempts.Load() }
