package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/pcm-project/pcm/internal/clientview"
)

func newControllerCmd(g *globals) *cobra.Command {
	var issuer string
	cmd := &cobra.Command{
		Use:   "controller",
		Short: "Run pcm's services next to a NATS cluster that pcm broker does not run",
		Long: `pcm broker runs, besides the broker, the services of the pcm account that clients rely on.
Next to a stock NATS server or cluster (provisioned with pcm broker provision), run pcm controller
instead, with an admin's credentials (--creds, or --issuer to mint one): it serves the client
view, through which each desktop lists its own client's offers and statuses and nothing else
(docs/security.md). Several may run (one per member, say): one answers each request. It runs
until SIGINT or SIGTERM.`,
		Example: `  pcm controller --url nats://n1:4222,nats://n2:4222,nats://n3:4222 --creds admin.creds --tls-ca ca.pem`,
		Args:    cobra.NoArgs,
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
			fmt.Fprintf(cmd.OutOrStdout(), "pcm controller serving the client view at %s\n", s.nc.ConnectedUrl())
			g.log.Info("controller running", zap.String("url", s.nc.ConnectedUrl()))
			<-cmd.Context().Done()
			return nil
		},
	}
	registerIssuer(cmd, &issuer)
	return cmd
}
