//go:build !nobroker

package main

import (
	"fmt"
	"path/filepath"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/pcm-project/pcm/agent"
	"github.com/pcm-project/pcm/agent/lock"
	"github.com/pcm-project/pcm/broker"
)

func newUpCmd(g *globals) *cobra.Command {
	var bf brokerFlags
	var af agentFlags
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Start pcm on this machine: an embedded broker and a local agent in one process",
		Long: `The quickest way to try pcm: starts the embedded broker (open, on loopback only), provisions
it, enrolls this machine as a client and runs its agent. Stop it with Ctrl-C; a restart on the
same --data keeps everything.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			af.resolve()
			if af.stateDir == "" {
				af.stateDir = filepath.Join(bf.data, "agent-"+af.clientID)
			}
			cfg, err := af.config(g.log, "") // an open broker: no key, unsigned jobs run
			if err != nil {
				return err
			}
			if !broker.IsLoopback(bf.listen) {
				return fmt.Errorf("--listen %s: pcm up runs an open broker (no authentication) and listens on loopback only: use 127.0.0.1:PORT, or run pcm broker --auth for a broker other machines reach", bf.listen)
			}
			b, err := broker.New(bf.config(g.log))
			if err != nil {
				return err
			}
			if err := b.Start(ctx); err != nil {
				return err
			}
			defer b.Shutdown()
			stop, err := startServices(ctx, cmd.OutOrStdout(), b, nil, &broker.ProvisionOptions{}, controllerFlags{lease: lock.DefaultLease}, g.log)
			if err != nil {
				return err
			}
			defer stop()
			nc, err := nats.Connect(b.ClientURL(), agent.ConnectOptions("pcm agent "+af.clientID)...)
			if err != nil {
				return err
			}
			defer nc.Close()
			af.enroll = true
			out := cmd.OutOrStdout()
			// Said once the agent is ready, after the broker's and the
			// agent's start-up logs: the last thing on the screen.
			return runAgent(ctx, g.log, nc, af, cfg, func() {
				fmt.Fprintf(out, "pcm is up: broker %s (open, no authentication: loopback only), agent %s\n", b.ClientURL(), af.clientID)
				fmt.Fprintf(out, "try, in another terminal:\n  pcm publish --url %s --all -- echo hello\n", b.ClientURL())
			})
		},
	}
	bf.register(cmd)
	af.register(cmd)
	return cmd
}
