package broker

import (
	"fmt"
	"strings"
	"sync"

	"github.com/nats-io/nats-server/v2/server"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// serverLogger adapts a *zap.Logger to nats-server's server.Logger. Its
// Fatalf never exits the process: it logs at error level and records the
// message, which Start turns into an ErrStart error (nats-server reports a
// port already in use, for one, through Fatalf).
type serverLogger struct {
	log *zap.SugaredLogger

	mu    sync.Mutex
	fatal []string
	// fatalCh is signalled (without blocking) on each Fatalf.
	fatalCh chan struct{}
}

var _ server.Logger = (*serverLogger)(nil)

// newServerLogger wraps l, which may be nil (no-op).
func newServerLogger(l *zap.Logger) *serverLogger {
	if l == nil {
		l = zap.NewNop()
	}
	return &serverLogger{
		log:     l.WithOptions(zap.AddCallerSkip(4)).Sugar(),
		fatalCh: make(chan struct{}, 1),
	}
}

// debugEnabled reports whether the wrapped logger wants debug messages.
func (l *serverLogger) debugEnabled() bool {
	return l.log.Desugar().Core().Enabled(zapcore.DebugLevel)
}

// fatalError returns the fatal messages recorded so far, or nil.
func (l *serverLogger) fatalError() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.fatal) == 0 {
		return nil
	}
	msg := l.fatal[0]
	for _, m := range l.fatal[1:] {
		msg += "; " + m
	}
	return fmt.Errorf("nats-server: %s", msg)
}

// Noticef logs at info level.
func (l *serverLogger) Noticef(format string, v ...any) { l.log.Infof(format, v...) }

// Warnf logs at warn level.
func (l *serverLogger) Warnf(format string, v ...any) { l.log.Warnf(format, v...) }

// Fatalf logs at error level and records the message; it never exits.
func (l *serverLogger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.log.Errorf("fatal: %s", msg)
	l.mu.Lock()
	l.fatal = append(l.fatal, msg)
	l.mu.Unlock()
	select {
	case l.fatalCh <- struct{}{}:
	default:
	}
}

// Errorf logs at error level, but for permission violations: a client
// refused something its credentials do not allow is the authorization
// working, logged at warn level; and nats.go deleting a finished ordered
// consumer its user may not delete (desktops, auditors) at debug level.
func (l *serverLogger) Errorf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	switch {
	case !strings.Contains(msg, " Violation - "):
		l.log.Error(msg)
	case strings.Contains(msg, `Subject "$JS.API.CONSUMER.DELETE.`):
		l.log.Debug(msg)
	default:
		l.log.Warn(msg)
	}
}

// Debugf logs at debug level.
func (l *serverLogger) Debugf(format string, v ...any) { l.log.Debugf(format, v...) }

// Tracef logs at debug level (tracing is never switched on by the broker).
func (l *serverLogger) Tracef(format string, v ...any) { l.log.Debugf(format, v...) }
