package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pcm-project/pcm/broker/auth"
	"github.com/pcm-project/pcm/fleet"
)

func newCredsCmd(g *globals) *cobra.Command {
	var out, issuer string
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "creds ROLE NAME --out FILE --issuer ISSUER",
		Short: "Issue credentials for a publisher, an auditor, a branch site or an admin (or an enrolled client's agent or desktop)",
		Long: `Mints a NATS user with the permissions of ROLE and writes its credentials (user JWT and nkey
seed) to FILE, mode 0600. A publisher or an auditor gets an account of its own, made (or brought
up to date) on every broker first; an admin is a user of the pcm account itself; agent and
desktop credentials belong to an enrolled client's account (NAME is the client id; pcm enroll
issues these). The brokers accept the credentials at once, without a restart.
For a site, it also writes NAME's in-process admin next to FILE (FILE without .creds, then
-admin.creds): an admin of the pcm account that connects only inside a broker's own process, which
the site's broker runs its services as (pcm broker --site NAME --auth --hub-creds FILE); and it
keeps the clients already enrolled at the site in the site's account.
Roles: publisher (publish and cancel jobs, push packages, read statuses and the inventory),
auditor (read both streams and the inventory, change nothing), site (the leaf connection of
branch site NAME's broker: reads the hub's PCM_JOBS and package store and forwards the statuses and
inventory of the clients enrolled at the site, connects only as a leaf node; docs/sites.md), admin (everything: provisioning, enrollment, revocation), agent and desktop
(one client). See docs/security.md for what each
account reaches. Whoever holds the issuer file can mint any of them: keep it with the operators.`,
		Example: `  pcm creds publisher ci --out ci.creds --issuer ./pcm-data/auth/issuer.json
  pcm creds auditor audit --out audit.creds --issuer ./pcm-data/auth/issuer.json
  pcm creds site branch1 --out branch1-site.creds --issuer ./pcm-data/auth/issuer.json`,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			role, err := auth.ParseRole(args[0])
			if err != nil {
				return err
			}
			if out == "" {
				return fmt.Errorf("--out FILE is required: where to write the credentials")
			}
			if issuer == "" {
				return requireIssuer("issue credentials")
			}
			u := auth.User{Role: role, Name: args[1], TTL: ttl}
			if err := u.Validate(); err != nil {
				return err
			}
			s, err := g.connectAdmin("pcm creds", issuer)
			if err != nil {
				return err
			}
			defer s.Close()
			if role == auth.RoleSite {
				// Its account first, with the clients enrolled at it and
				// the hub's domain: Issue then keeps it as it is.
				if err := fleet.EnsureSiteAccount(cmd.Context(), s.js, s.accts, u.Name); err != nil {
					return err
				}
			}
			creds, err := s.accts.Issue(cmd.Context(), u)
			if err != nil {
				return err
			}
			if err := auth.WriteCreds(out, creds); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s credentials for %s to %s (mode 0600)\n", role, args[1], out)
			if role == auth.RoleSite {
				return writeSiteAdmin(cmd, s, args[1], out)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "file to write the credentials to (mode 0600)")
	registerIssuer(cmd, &issuer)
	cmd.Flags().DurationVar(&ttl, "ttl", 0, "expire the credentials after this long (0: never)")
	return cmd
}

// siteAdminCreds is where pcm creds site writes the site broker's
// in-process admin, next to the site's leaf credentials hubCreds, and
// where pcm broker --site looks for it by default.
func siteAdminCreds(hubCreds string) string {
	return strings.TrimSuffix(hubCreds, ".creds") + "-admin.creds"
}

// writeSiteAdmin writes the in-process admin of site next to its leaf
// credentials (siteAdminCreds).
func writeSiteAdmin(cmd *cobra.Command, s *adminSession, site, out string) error {
	creds, err := s.accts.Issue(cmd.Context(), auth.User{Role: auth.RoleAdmin, Name: "site-" + site, InProcess: true})
	if err != nil {
		return err
	}
	path := siteAdminCreds(out)
	if err := auth.WriteCreds(path, creds); err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "wrote the in-process admin of site %s's broker to %s (mode 0600): copy both files to the site broker, with %s\n",
		site, path, strings.Join(auth.PublicFiles, ", "))
	return nil
}
