package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/pcm-project/pcm/publisher"
	"github.com/pcm-project/pcm/rollout"
)

// nothingToCancel refuses to cancel a job that is over on every client it
// targets, or expired: exit 1, saying so.
func nothingToCancel(d display, r rollout.Rollout, now time.Time) error {
	switch {
	case r.Over():
		return &exitError{code: exitFailed, err: fmt.Errorf("job %s is already over on every client it targets (%s): nothing to cancel", r.JobID, countsText(r))}
	case !now.Before(r.ExpireAfter):
		return &exitError{code: exitFailed, err: fmt.Errorf("job %s expired at %s: nothing runs it any more, nothing to cancel", r.JobID, d.time(r.ExpireAfter))}
	}
	return nil
}

func newCancelCmd(g *globals) *cobra.Command {
	var reason, publisherName, signingKey string
	cmd := &cobra.Command{
		Use:   "cancel JOB",
		Short: "Cancel a job on every client that has not started it",
		Long: `Stores a cancellation of JOB on the job's own cancellation subject (pcm.jobs.cancel.JOB), which
every agent reads before it runs the job, then on the targets it was offered to. Clients that
have not started it report it cancelled and never run it, also when they are offline now, are
enrolled later or hold the offer for its mandatory time; clients that ran it keep their status.
A job that is already over on every client it targets, or expired, is not cancelled: pcm cancel
says so and exits 1.`,
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
			p, err := publisher.New(js, publisher.Config{Name: orDefault(publisherName, g.identity()), Signer: signer})
			if err != nil {
				return err
			}
			id := args[0]
			// Where the job stands first: a job over everywhere, or
			// expired, has nothing left to cancel.
			r, readErr := rollout.Read(cmd.Context(), js, id)
			if errors.Is(readErr, rollout.ErrJobNotFound) || errors.Is(readErr, rollout.ErrInvalidJobID) {
				return readErr
			}
			if readErr == nil {
				if err := nothingToCancel(newDisplay(cmd.OutOrStdout(), false), r, time.Now()); err != nil {
					return err
				}
			}
			if err := p.Cancel(cmd.Context(), id, reason); err != nil {
				return err
			}
			line := "cancelled " + id
			if readErr == nil && r.Done > 0 {
				line += fmt.Sprintf(" (already over on %d of %s, which keep their statuses)", r.Done, plural(len(r.Clients), "client"))
			}
			fmt.Fprintln(cmd.OutOrStdout(), line)
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the audit record")
	cmd.Flags().StringVar(&publisherName, "publisher", "", publisherUsage)
	cmd.Flags().StringVar(&signingKey, "signing-key", "", signingKeyUsage)
	return cmd
}
