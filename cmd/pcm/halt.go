package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/publisher"
)

// haltFlags are the flags of pcm halt and pcm resume.
type haltFlags struct {
	issuer, reason, publisherName, signingKey string
}

func (f *haltFlags) register(cmd *cobra.Command) {
	registerIssuer(cmd, &f.issuer)
	cmd.Flags().StringVar(&f.reason, "reason", "", "why, for the audit record and pcm status")
	cmd.Flags().StringVar(&f.publisherName, "publisher", "", publisherUsage)
	cmd.Flags().StringVar(&f.signingKey, "signing-key", "", "file holding the seed that signs the event (pcm keys new): agents with trusted keys obey only a halt signed by a publisher's or a controller's key, a resume only by a publisher's")
}

// publisher connects as an admin (only the pcm account stores on a halt
// subject) and returns the publisher that stores the halt or resume (what)
// for the command name.
func (f *haltFlags) publisher(cmd *cobra.Command, g *globals, name, what string) (*publisher.Publisher, func(), error) {
	signer, err := signerFrom(f.signingKey)
	if err != nil {
		return nil, nil, err
	}
	if signer == nil {
		fmt.Fprintf(cmd.ErrOrStderr(), "%s: no --signing-key: agents with trusted keys ignore an unsigned %s\n", name, what)
	}
	s, err := g.adminSession(name, f.issuer, false)
	if err != nil {
		return nil, nil, err
	}
	p, err := publisher.New(s.js, publisher.Config{Name: orDefault(f.publisherName, g.identity()), Signer: signer})
	if err != nil {
		s.Close()
		return nil, nil, err
	}
	return p, s.Close, nil
}

func newHaltCmd(g *globals) *cobra.Command {
	var f haltFlags
	cmd := &cobra.Command{
		Use:   "halt JOB",
		Short: "Halt a staged rollout: no client starts the job until it is resumed",
		Long: `Stores a halt of JOB's staged rollout (a job published with --rings) on its halt subject
(pcm.jobs.halt.JOB), which every agent reads before it runs the job: no client starts it, in any
ring, until pcm resume, also clients offline now or enrolled later; attempts already running
finish. pcm status says halted. The rollout controller halts by itself when the job's failure
rate passes --halt-at. Only the pcm account stores a halt: connect as an admin (--creds
admin.creds, or --issuer). A halt of a halted job stores nothing.`,
		Example: `  pcm halt 01JD3S1M9ZQ6V3W5X7Y9A1B2C3 --reason "reports of crashes at start" --signing-key ops.nk --issuer issuer.json`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, closeFn, err := f.publisher(cmd, g, "pcm halt", "halt")
			if err != nil {
				return err
			}
			defer closeFn()
			did, err := p.Halt(cmd.Context(), events.JobHalted{JobID: args[0], Reason: f.reason})
			if err != nil {
				return err
			}
			if did {
				fmt.Fprintf(cmd.OutOrStdout(), "halted %s\n", args[0])
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "%s is halted already\n", args[0])
			}
			return nil
		},
	}
	f.register(cmd)
	return cmd
}

func newResumeCmd(g *globals) *cobra.Command {
	var f haltFlags
	cmd := &cobra.Command{
		Use:   "resume JOB",
		Short: "Resume a halted staged rollout: its rings open at their times again",
		Long: `Stores a resume of JOB's staged rollout on its halt subject, and copies on its targets so that
agents holding the offer decide again at once: the rings already open run the job, the next ones
open at their times. Only a publisher's key resumes (a controller's key never does): sign it with
--signing-key for agents with trusted keys. Connect as an admin (--creds admin.creds, or --issuer).
The rollout controller counts only the statuses stored after the resume. A resume of a job that
is not halted stores nothing.`,
		Example: `  pcm resume 01JD3S1M9ZQ6V3W5X7Y9A1B2C3 --reason "fixed in package 1.2.1" --signing-key ops.nk --issuer issuer.json`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, closeFn, err := f.publisher(cmd, g, "pcm resume", "resume")
			if err != nil {
				return err
			}
			defer closeFn()
			did, err := p.Resume(cmd.Context(), args[0], f.reason)
			if err != nil {
				return err
			}
			if did {
				fmt.Fprintf(cmd.OutOrStdout(), "resumed %s\n", args[0])
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "%s is not halted\n", args[0])
			}
			return nil
		},
	}
	f.register(cmd)
	return cmd
}
