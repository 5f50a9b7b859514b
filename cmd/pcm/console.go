package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/pcm-project/pcm/console"
	"github.com/pcm-project/pcm/internal/httpserve"
	"github.com/pcm-project/pcm/publisher"
)

// defaultConsoleAddr is where pcm console serves by default: loopback.
const defaultConsoleAddr = "127.0.0.1:8180"

// consoleFlags configure a web console (pcm console, pcm broker --console).
type consoleFlags struct {
	users, cert, key string
}

func (f *consoleFlags) register(fs *pflag.FlagSet, prefix string) {
	fs.StringVar(&f.users, prefix+"users", "", "file of the console's users, one \"ROLE NAME TOKEN\" a line (role viewer or operator; the token, 16 characters or more, is also the basic-auth password); required to listen beyond loopback")
	fs.StringVar(&f.cert, prefix+"https-cert", "", "certificate (PEM) the console serves HTTPS with; with its key")
	fs.StringVar(&f.key, prefix+"https-key", "", "private key (PEM) of the console's HTTPS certificate")
}

// check refuses, before anything starts, a console that serve would
// refuse: an unreadable users file, or no users beyond loopback.
func (f *consoleFlags) check(addr string) error {
	var users *console.Users
	if f.users != "" {
		var err error
		if users, err = console.ParseUsers(f.users); err != nil {
			return err
		}
	}
	return console.CheckListen(addr, users, httpserve.Loopback(addr))
}

// serve runs a console on js at addr until ctx ends. pub, when set, lets
// operators act with its credentials.
func (f *consoleFlags) serve(ctx context.Context, w io.Writer, addr string, js jetstream.JetStream, pub *publisher.Publisher, log *zap.Logger) error {
	var users *console.Users
	if f.users != "" {
		var err error
		if users, err = console.ParseUsers(f.users); err != nil {
			return err
		}
	}
	if err := console.CheckListen(addr, users, httpserve.Loopback(addr)); err != nil {
		return err
	}
	c, err := console.New(console.Config{JS: js, Publisher: pub, Users: users, Logger: log})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- c.Run(ctx) }()
	scheme := "http"
	if f.cert != "" {
		scheme = "https"
	}
	serveErr := make(chan error, 1)
	go func() {
		serveErr <- httpserve.Serve(ctx, httpserve.Config{Addr: addr, CertFile: f.cert, KeyFile: f.key, OnListen: func(a string) {
			mode := "read-only"
			if pub != nil {
				mode = "operators may cancel, halt and resume"
			}
			fmt.Fprintf(w, "pcm console: %s://%s/ (%s)\n", scheme, a, mode)
		}}, c.Handler())
	}()
	select {
	case err := <-serveErr:
		return err
	case err := <-runErr:
		if err != nil {
			log.Error("the console stopped following the broker", zap.Error(err))
			return fmt.Errorf("console: %w", err)
		}
		return <-serveErr
	}
}

func newConsoleCmd(g *globals) *cobra.Command {
	var f consoleFlags
	var addr, publisherName, signingKey string
	var actions bool
	cmd := &cobra.Command{
		Use:   "console",
		Short: "Serve the web console: jobs and their live rollouts, the fleet, the audit history",
		Long: `Serves a web console at --addr (default 127.0.0.1:8180; open it in a browser) that reads the
broker with --creds (an auditor's suffice): the jobs, newest first, with live progress; a job's
rollout over time, each client's state and why, its output and, with --actions, buttons to
cancel, halt and resume it; the fleet and each client's pending jobs and history; the audit
history, each event as stored, downloadable as JSON lines. Pages update live by server-sent
events; the console follows the broker once whatever the number of viewers.

--actions needs a publisher's credentials (an admin's to halt and resume on a secured broker).
Users: --users FILE names them (viewers read, operators also act); log in with basic auth (name
and token), a bearer token, or by opening /login?token=TOKEN once. Without --users the console
serves only loopback and everyone is an operator. --https-cert and --https-key serve HTTPS.
/metrics (Prometheus), /healthz and /readyz are served too; the last two need no login.`,
		Example: `  pcm console --creds auditor.creds
  pcm console --creds publisher.creds --actions --users console-users --addr :8180 --https-cert c.pem --https-key k.pem`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := g.checkRole("pcm console"); err != nil {
				return err
			}
			if err := f.check(addr); err != nil {
				return err
			}
			opts, err := g.sec.options()
			if err != nil {
				return err
			}
			log := g.log.Named("console")
			opts = append(opts, nats.MaxReconnects(-1), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
				log.Warn("asynchronous error from the broker", zap.Error(err))
			}))
			nc, js, err := connect(g.url, "pcm console", opts...)
			if err != nil {
				return err
			}
			defer nc.Close()
			var pub *publisher.Publisher
			if actions {
				signer, err := signerFrom(signingKey)
				if err != nil {
					return err
				}
				if pub, err = publisher.New(js, publisher.Config{Name: orDefault(publisherName, g.identity()), Signer: signer}); err != nil {
					return err
				}
			} else if publisherName != "" || signingKey != "" {
				return errors.New("pcm console: --publisher and --signing-key are for --actions")
			}
			return f.serve(cmd.Context(), cmd.OutOrStdout(), addr, js, pub, log)
		},
	}
	cmd.Flags().StringVar(&addr, "addr", defaultConsoleAddr, "host:port the console serves on")
	cmd.Flags().BoolVar(&actions, "actions", false, "let operators cancel, halt and resume jobs with the console's credentials (a publisher's)")
	cmd.Flags().StringVar(&publisherName, "publisher", "", publisherUsage)
	cmd.Flags().StringVar(&signingKey, "signing-key", "", signingKeyUsage)
	f.register(cmd.Flags(), "")
	return cmd
}
