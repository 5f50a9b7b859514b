package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/pcm-project/pcm/agent/lock"
	"github.com/pcm-project/pcm/controller"
	"github.com/pcm-project/pcm/internal/clientview"
)

func newControllerCmd(g *globals) *cobra.Command {
	var issuer string
	var cf controllerFlags
	cmd := &cobra.Command{
		Use:   "controller",
		Short: "Run pcm's services next to a NATS cluster that pcm broker does not run",
		Long: `pcm broker runs, besides the broker, the services of the pcm account that clients rely on.
Next to a stock NATS server or cluster (provisioned with pcm broker provision), run pcm controller
instead, with an admin's credentials (--creds, or --issuer to mint one): it serves the client
view, through which each desktop lists its own client's offers and statuses and nothing else
(docs/security.md), and runs the rollout controller, which halts a staged rollout (pcm publish
--rings ... --halt-at) as soon as its failure rate passes its threshold, signing its halts with
--controller-key. Several may run (one per member, say): one answers each view request, and one
at a time leads the rollouts (the others take over within --controller-lease when it stops). It
runs until SIGINT or SIGTERM.`,
		Example: `  pcm controller --url nats://n1:4222,nats://n2:4222,nats://n3:4222 --creds admin.creds --tls-ca ca.pem \
    --controller-key controller.nk`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := g.adminSession("pcm controller", issuer, true)
			if err != nil {
				return err
			}
			defer s.Close()
			v, err := clientview.Serve(s.js, g.log.Named("view"))
			if err != nil {
				return err
			}
			defer v.Stop()
			stop, err := cf.start(cmd.Context(), cmd.OutOrStdout(), s.js, g.log)
			if err != nil {
				return err
			}
			defer stop()
			fmt.Fprintf(cmd.OutOrStdout(), "pcm controller serving the client view at %s\n", s.nc.ConnectedUrl())
			g.log.Info("controller running", zap.String("url", s.nc.ConnectedUrl()))
			<-cmd.Context().Done()
			return nil
		},
	}
	registerIssuer(cmd, &issuer)
	cf.register(cmd.Flags())
	return cmd
}

// controllerFlags configure the rollout controller that pcm broker, pcm up
// and pcm controller run.
type controllerFlags struct {
	key   string
	lease time.Duration
	off   bool
}

func (f *controllerFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.key, "controller-key", "", "file holding the seed the rollout controller signs its halts with (pcm keys new); give its public key to clients (pcm enroll --controller-keys)")
	fs.DurationVar(&f.lease, "controller-lease", lock.DefaultLease, "lease of the rollout controller's leadership: another controller takes over within it when this one stops")
	fs.BoolVar(&f.off, "no-controller", false, "run no rollout controller here (staged rollouts then halt only by pcm halt)")
}

// start runs the rollout controller on js (an admin's connection) until
// the returned stop, unless --no-controller; it says on w which key signs
// its halts.
func (f *controllerFlags) start(ctx context.Context, w io.Writer, js jetstream.JetStream, log *zap.Logger) (stop func(), err error) {
	if f.off {
		return func() {}, nil
	}
	signer, err := signerFrom(f.key)
	if err != nil {
		return nil, fmt.Errorf("--controller-key: %w", err)
	}
	c, err := controller.New(js, controller.Config{Name: defaultClientID(), Signer: signer, Lease: f.lease, Logger: log.Named("controller")})
	if err != nil {
		return nil, err
	}
	if key := c.Signer(); key != "" {
		fmt.Fprintf(w, "rollout controller: halts signed by %s\n", key)
	} else {
		fmt.Fprintln(w, "rollout controller: halts unsigned (no --controller-key): only agents that run unsigned jobs obey them")
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := c.Run(ctx); err != nil {
			log.Error("the rollout controller stopped", zap.Error(err))
		}
	}()
	return func() { cancel(); <-done }, nil
}
