package agent

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pcm-project/pcm/events"
)

// The desktop session's presence: a desktop session says, every
// sessionBeat, that a user is logged in (events.SessionSubject); the
// service holds a job for the user's deferral and countdown only while it
// hears one. With no session, nobody is there to defer a job or to be
// warned: the service runs it at its time.

const (
	// sessionBeat is how often a desktop session says it is open.
	sessionBeat = 10 * time.Second
	// sessionLost is how long after the last word of a session the service
	// counts it gone.
	sessionLost = 3 * sessionBeat
)

// sayPresent says, every sessionBeat until ctx ends, that the user's
// session is open.
func (d *Desktop) sayPresent(ctx context.Context) {
	t := time.NewTicker(sessionBeat)
	defer t.Stop()
	for {
		_ = d.nc.Publish(events.SessionSubject(d.cfg.ClientID), []byte(d.user))
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// hearSessions records when the service last heard a desktop session of
// its client.
func (s *Service) hearSessions() (*nats.Subscription, error) {
	return s.nc.Subscribe(events.SessionSubject(s.cfg.ClientID), func(*nats.Msg) {
		s.sessionHeard.Store(time.Now().UnixNano())
	})
}

// sessionOpen reports whether a desktop session of the client is open: one
// was heard within sessionLost, or the service started less than
// sessionLost ago and cannot tell yet, or it cannot hear them (it assumes
// one: the user keeps the countdown).
func (s *Service) sessionOpen() bool {
	if s.sessionDeaf.Load() || time.Since(s.started) < sessionLost {
		return true
	}
	heard := s.sessionHeard.Load()
	return heard != 0 && time.Since(time.Unix(0, heard)) < sessionLost
}
