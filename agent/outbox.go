package agent

// Outbox is the number of statuses and acks in the journal waiting for the
// broker (the journal's outbox), and false when Run has no journal open.
func (s *Service) Outbox() (int, bool) {
	j := s.openJournal.Load()
	if j == nil {
		return 0, false
	}
	st, err := j.Stats()
	if err != nil {
		return 0, false
	}
	return st.Outbox, true
}
