package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pcm-project/pcm/publisher"
)

func newEnrollCmd(g *globals) *cobra.Command {
	var groups []string
	var ackWait time.Duration
	cmd := &cobra.Command{
		Use:   "enroll CLIENT",
		Short: "Enroll a client: create or update its durable consumer with its groups",
		Long: `Creates or updates the client's durable consumer agent-CLIENT on PCM_JOBS, filtered to its own
subject, its groups' subjects and pcm.jobs.all. Group membership is the operator's decision: the
client's agent receives the live jobs of every group it is enrolled in, including jobs published
before it joined. Enrolling again with other groups updates the filters.`,
		Example: "  pcm enroll ws-042 --group lab --group windows",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			nc, js, err := connect(g.url, "pcm enroll")
			if err != nil {
				return err
			}
			defer nc.Close()
			if _, err := publisher.Enroll(cmd.Context(), js, args[0], groups, publisher.EnrollOptions{AckWait: ackWait}); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "enrolled %s (groups: %s)\n", args[0], strings.Join(groups, ","))
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&groups, "group", nil, "group of the client (repeatable or comma-separated)")
	cmd.Flags().DurationVar(&ackWait, "ack-wait", publisher.DefaultAckWait, "redeliver an offer the agent has not acked after this long")
	return cmd
}
