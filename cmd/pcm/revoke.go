package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/pcm-project/pcm/broker/auth"
)

func newRevokeCmd(g *globals) *cobra.Command {
	var issuer string
	cmd := &cobra.Command{
		Use:   "revoke",
		Short: "Revoke credentials: a client's (a stolen laptop) or a publisher's or auditor's (a leaked CI secret)",
		Long: `Revokes every credential of a principal issued until now. Every broker (each member of a
cluster) refuses them from the next connection on and closes the connections that use them,
within seconds. Nothing else is lost: a revoked client keeps its consumer and its pending
offers, and a new enrollment (pcm enroll CLIENT ... --issuer) issues credentials that work; a
publisher or an auditor gets new ones with pcm creds.`,
	}
	revoke := func(kind auth.Kind, name string) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, _ []string) error {
			if issuer == "" {
				return requireIssuer("revoke credentials")
			}
			p := auth.Principal{Kind: kind, Name: name}
			if err := p.Validate(); err != nil {
				return err
			}
			s, err := g.connectAdmin("pcm revoke", issuer)
			if err != nil {
				return err
			}
			defer s.Close()
			at, err := s.accts.Revoke(cmd.Context(), p)
			if err != nil {
				return err
			}
			next := "issue new ones with pcm creds " + string(kind) + " " + name
			if kind == auth.KindClient {
				next = "its consumer and pending offers are kept; enroll it again (pcm enroll " + name + " --group ... --issuer ...) to issue new ones"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked every credential of %s %s issued until %s; %s\n", kind, name, at.UTC().Format(time.RFC3339), next)
			return nil
		}
	}
	client := &cobra.Command{
		Use:   "client NAME --issuer ISSUER",
		Short: "Revoke the credentials of a client: its agent's and its desktops'",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return revoke(auth.KindClient, args[0])(cmd, args)
		},
	}
	user := &cobra.Command{
		Use:   "user ROLE NAME --issuer ISSUER",
		Short: "Revoke the credentials of a publisher or an auditor",
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			role, err := auth.ParseRole(args[0])
			if err != nil {
				return err
			}
			switch role {
			case auth.RoleAgent, auth.RoleDesktop:
				return fmt.Errorf("an agent's or a desktop's credentials are revoked with their client's: pcm revoke client %s", args[1])
			case auth.RoleAdmin:
				return fmt.Errorf("admins are users of the pcm account itself: issue admin credentials with --ttl, and replace the authority (pcm broker init-auth) if one leaks")
			}
			return revoke(role.Kind(), args[1])(cmd, args)
		},
	}
	for _, c := range []*cobra.Command{client, user} {
		registerIssuer(c, &issuer)
	}
	cmd.AddCommand(client, user)
	return cmd
}
