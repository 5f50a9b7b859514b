package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/pcm-project/pcm/publisher"
)

func newCancelCmd(g *globals) *cobra.Command {
	var reason, publisherName, signingKey string
	cmd := &cobra.Command{
		Use:   "cancel JOB",
		Short: "Cancel a job on every client that has not started it",
		Long: `Stores a cancellation of JOB on the job's own cancellation subject (pcm.jobs.cancel.JOB), which
every agent reads before it runs the job, then on the targets it was offered to. Clients that
have not started it report it cancelled and never run it, also when they are offline now, are
enrolled later or hold the offer for its mandatory time; clients that ran it keep their status.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			signer, err := signerFrom(signingKey)
			if err != nil {
				return err
			}
			nc, js, err := g.connect("pcm cancel")
			if err != nil {
				return err
			}
			defer nc.Close()
			p, err := publisher.New(js, publisher.Config{Name: orDefault(publisherName, defaultPublisherName()), Signer: signer})
			if err != nil {
				return err
			}
			if err := p.Cancel(cmd.Context(), args[0], reason); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "cancelled %s\n", args[0])
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the audit record")
	cmd.Flags().StringVar(&publisherName, "publisher", "", "publisher name recorded in the events' source (default: the user name)")
	cmd.Flags().StringVar(&signingKey, "signing-key", "", signingKeyUsage)
	return cmd
}
