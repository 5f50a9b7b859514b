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
	var accountKey, outDir string
	cmd := &cobra.Command{
		Use:   "enroll CLIENT",
		Short: "Enroll a client: create or update its durable consumer with its groups",
		Long: `Creates or updates the client's durable consumer agent-CLIENT on PCM_JOBS, filtered to its own
subject, its groups' subjects and pcm.jobs.all. Group membership is the operator's decision: the
client's agent receives the live jobs of every group it is enrolled in, including jobs published
before it joined. Enrolling again with other groups updates the filters.

On a broker started with --auth, enroll runs with publisher or admin credentials (--creds), and
with --account-key it also issues the client's credentials: CLIENT-agent.creds for the service
and CLIENT-desktop.creds for the desktop face, written mode 0600 in --out-dir. The agent can then
fetch only from its own consumer and report only its own statuses (docs/security.md).`,
		Example: `  pcm enroll ws-042 --group lab --group windows
  pcm enroll ws-042 --group lab --creds admin.creds --account-key ./pcm-data/auth/account-key.creds --out-dir ./creds`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			nc, js, err := g.connect("pcm enroll")
			if err != nil {
				return err
			}
			defer nc.Close()
			if _, err := publisher.Enroll(cmd.Context(), js, args[0], groups, publisher.EnrollOptions{AckWait: ackWait}); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "enrolled %s (groups: %s)\n", args[0], strings.Join(groups, ","))
			if accountKey != "" {
				return issueClientCreds(cmd.OutOrStdout(), accountKey, outDir, args[0], groups)
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&groups, "group", nil, "group of the client (repeatable or comma-separated)")
	cmd.Flags().DurationVar(&ackWait, "ack-wait", publisher.DefaultAckWait, "redeliver an offer the agent has not acked after this long")
	cmd.Flags().StringVar(&accountKey, "account-key", "", accountKeyUsage+"; with it, enroll writes the client's agent and desktop credentials")
	cmd.Flags().StringVar(&outDir, "out-dir", ".", "with --account-key: directory to write CLIENT-agent.creds and CLIENT-desktop.creds to")
	return cmd
}
