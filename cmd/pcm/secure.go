package main

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/pcm-project/pcm/broker/auth"
	"github.com/pcm-project/pcm/events"
)

// clientSecurity are the global flags that authenticate a client to the
// broker and check the broker's certificate.
type clientSecurity struct {
	creds, tlsCA, tlsCert, tlsKey string
}

// register adds --creds, --tls-ca, --tls-cert and --tls-key as persistent
// flags of root.
func (c *clientSecurity) register(root *cobra.Command) {
	root.PersistentFlags().StringVar(&c.creds, "creds", "", "credentials file of this user (from pcm enroll or pcm creds); required by a broker started with --auth")
	root.PersistentFlags().StringVar(&c.tlsCA, "tls-ca", "", "PEM file of the CA that signed the broker's certificate (turns TLS on)")
	root.PersistentFlags().StringVar(&c.tlsCert, "tls-cert", "", "client certificate (PEM), for brokers that verify their clients")
	root.PersistentFlags().StringVar(&c.tlsKey, "tls-key", "", "key of --tls-cert (PEM)")
}

// config is the auth.ClientConfig of the flags.
func (c *clientSecurity) config() auth.ClientConfig {
	return auth.ClientConfig{CredsFile: c.creds, CAFile: c.tlsCA, CertFile: c.tlsCert, KeyFile: c.tlsKey}
}

// options are the nats.Options of the flags (none when no flag is set).
func (c *clientSecurity) options() ([]nats.Option, error) {
	opts, err := c.config().Options()
	if err != nil {
		return nil, fmt.Errorf("%w (check --creds, --tls-ca, --tls-cert, --tls-key or PCM_CREDS, PCM_TLS_CA, ...)", err)
	}
	return opts, nil
}

// connect dials the broker for a short-lived command (publish, status, ...)
// with the user's credentials and TLS settings: it fails fast with a clear
// error when no broker answers or the broker refuses the user, and before
// dialling when the credentials are a client's (checkRole).
func (g *globals) connect(name string) (*nats.Conn, jetstream.JetStream, error) {
	if err := g.checkRole(name); err != nil {
		return nil, nil, err
	}
	return g.connectWith(name)
}

// checkRole refuses the credentials of a client (an agent's or a
// desktop's), whose account reaches none of what the short-lived commands
// use.
func (g *globals) checkRole(name string) error {
	if g.sec.creds != "" {
		if uc, err := auth.CredsUser(g.sec.creds); err == nil {
			if r, ok := auth.RoleOf(uc); ok && r.Kind() == auth.KindClient {
				return fmt.Errorf("%s: %s holds the credentials of the %s of client %s, whose account reaches only its own client: give a publisher's (pcm creds publisher NAME), an auditor's (pcm creds auditor NAME) or an admin's",
					name, g.sec.creds, r, strings.TrimPrefix(uc.Name, string(r)+"-"))
			}
		}
	}
	return nil
}

// identity names the user in what it publishes (the source of its events,
// who pushed a package): the name of its --creds user (ci for publisher
// ci), else the operating system's user name.
func (g *globals) identity() string {
	if g.sec.creds != "" {
		if uc, err := auth.CredsUser(g.sec.creds); err == nil {
			if r, ok := auth.RoleOf(uc); ok {
				if name := strings.TrimPrefix(uc.Name, string(r)+"-"); events.ValidID("publisher name", name) == nil {
					return name
				}
			}
		}
	}
	return defaultPublisherName()
}

// connectWith is connect with extra options after the user's (credentials
// minted in memory, say).
func (g *globals) connectWith(name string, extra ...nats.Option) (*nats.Conn, jetstream.JetStream, error) {
	return g.connectAt(g.url, name, extra...)
}

// connectAt is connectWith to the broker at url rather than --url.
func (g *globals) connectAt(url, name string, extra ...nats.Option) (*nats.Conn, jetstream.JetStream, error) {
	opts, err := g.sec.options()
	if err != nil {
		return nil, nil, err
	}
	opts = append(opts, extra...)
	refused := func(nc *nats.Conn, sub *nats.Subscription, err error) {
		if g.asyncError(nc, sub, err) {
			// A short-lived command cannot do without what was refused:
			// fail now rather than when the request times out.
			go nc.Close()
			if g.stop != nil {
				g.stop(err)
			}
		}
	}
	return connect(url, name, append(opts, nats.ErrorHandler(refused))...)
}

// asyncError records what the broker refused (without it, a request the
// user's credentials do not allow just times out, or fails as the
// connection closes) and reports whether it was a refusal that matters;
// the command then ends with explainRefusal's line.
func (g *globals) asyncError(_ *nats.Conn, _ *nats.Subscription, err error) bool {
	if !errors.Is(err, nats.ErrPermissionViolation) {
		g.log.Debug("asynchronous error from the broker", zap.Error(err))
		return false
	}
	if strings.Contains(err.Error(), "$JS.API.CONSUMER.DELETE.") {
		// nats.go deleting a finished ordered consumer, which a desktop or
		// an auditor may not do: the broker drops it after a while.
		g.log.Debug("the broker refused to delete a consumer; it expires by itself", zap.Error(err))
		return false
	}
	g.log.Debug("the broker refused an operation", zap.Error(err))
	g.refusedMu.Lock()
	if g.refused == nil {
		g.refused = err
	}
	g.refusedMu.Unlock()
	return true
}

// violation reads what a permissions violation refused: "publish to
// pcm.jobs.all".
var violation = regexp.MustCompile(`Permissions Violation for (Publish|Subscription) to "([^"]+)"`)

// explainRefusal replaces err, the error a command ended with, by one line
// saying what the broker refused and whose credentials do not allow it,
// when the broker refused something; the exit code is kept.
func (g *globals) explainRefusal(err error) error {
	g.refusedMu.Lock()
	refused := g.refused
	g.refusedMu.Unlock()
	if refused == nil {
		return err
	}
	what := "an operation"
	if m := violation.FindStringSubmatch(refused.Error()); m != nil {
		verb := "publish to"
		if m[1] == "Subscription" {
			verb = "subscribe to"
		}
		what = verb + " " + m[2]
	}
	who := "the credentials given (none: --creds)"
	if g.sec.creds != "" {
		who = "the credentials in " + g.sec.creds
		if uc, cerr := auth.CredsUser(g.sec.creds); cerr == nil {
			if r, ok := auth.RoleOf(uc); ok {
				who += fmt.Sprintf(" (%s %s)", r, strings.TrimPrefix(uc.Name, string(r)+"-"))
			}
		}
	}
	explained := fmt.Errorf("the broker refused to %s: %s do not allow it (docs/security.md lists what each role may do)", what, who)
	var ee *exitError
	if errors.As(err, &ee) {
		return &exitError{code: ee.code, err: explained}
	}
	return explained
}

// dial connects a long-running face (agent, desktop) with base options and
// the user's credentials and TLS settings.
func (g *globals) dial(base []nats.Option) (*nats.Conn, error) {
	opts, err := g.sec.options()
	if err != nil {
		return nil, err
	}
	logOnly := func(nc *nats.Conn, sub *nats.Subscription, err error) { g.asyncError(nc, sub, err) }
	nc, err := nats.Connect(g.url, append(append(base, opts...), nats.ErrorHandler(logOnly))...)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w%s", g.url, err, authHint(err))
	}
	return nc, nil
}

// authHint explains an authorization failure.
func authHint(err error) string {
	if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrAuthRevoked) {
		return " (the broker requires credentials: give --creds FILE or PCM_CREDS, from pcm enroll or pcm creds)"
	}
	return ""
}

// dialTimeout is how long a short-lived command waits for the broker.
const dialTimeout = 5 * time.Second
