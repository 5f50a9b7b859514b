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
// warned: the service runs it at its time. The beat is in the time of the
// time rules (Config.Clock), since it decides one: a faster test clock
// makes a session come and go faster, down to minSessionBeat of real time.

const (
	// sessionBeat is how often a desktop session says it is open.
	sessionBeat = 10 * time.Second
	// minSessionBeat is the shortest real beat, whatever the clock: a
	// loaded machine must not lose a session between two beats.
	minSessionBeat = 250 * time.Millisecond
	// sessionLostBeats is how many beats after the last word of a session
	// the service counts it gone.
	sessionLostBeats = 3
)

// sessionBeatOf is the real time between a session's beats on clock c.
func sessionBeatOf(c Clock) time.Duration { return max(c.Real(sessionBeat), minSessionBeat) }

// sayPresent says, every sessionBeat until ctx ends, that the user's
// session is open.
func (d *Desktop) sayPresent(ctx context.Context) {
	t := time.NewTicker(sessionBeatOf(d.cfg.Clock))
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
// was heard within sessionLostBeats beats, or the service started less
// than that ago and cannot tell yet, or it cannot hear them (it assumes
// one: the user keeps the countdown).
func (s *Service) sessionOpen() bool {
	lost := sessionLostBeats * sessionBeatOf(s.cfg.Clock)
	if s.sessionDeaf.Load() || time.Since(s.started) < lost {
		return true
	}
	heard := s.sessionHeard.Load()
	return heard != 0 && time.Since(time.Unix(0, heard)) < lost
}
