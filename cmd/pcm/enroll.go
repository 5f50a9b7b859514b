package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pcm-project/pcm/broker/auth"
	"github.com/pcm-project/pcm/fleet"
)

func newEnrollCmd(g *globals) *cobra.Command {
	var groups, keys []string
	var ackWait time.Duration
	var issuer, outDir, keysFile, siteName, siteURL string
	var controllers []string
	var noCreds bool
	cmd := &cobra.Command{
		Use:   "enroll CLIENT",
		Short: "Enroll a client: its consumer with its groups, and on an authenticated broker its account and credentials",
		Long: `Creates or updates the client's durable consumer agent-CLIENT on PCM_JOBS, filtered to its own
subject, its groups' subjects and pcm.jobs.all. Group membership is the operator's decision: the
client's agent receives the live jobs of every group it is enrolled in, including jobs published
before it joined. Enrolling again with other groups updates the filters.

On a broker started with --auth, give the authority's issuer file (--issuer): enroll then makes
or updates the client's own NATS account on every broker (it reaches only its own consumer,
statuses, lock and inventory: docs/security.md) and writes, mode 0600 in --out-dir,
CLIENT-agent.creds for the service and CLIENT-desktop.creds for the desktop face, and the
trusted publisher keys given with --trusted-keys as CLIENT-trusted.keys, which the agent reads
next to its credentials so that it verifies jobs from the first one. Without --creds it connects
as a short-lived admin minted from the issuer file.

With --site NAME the client belongs to the branch site NAME (docs/sites.md): its consumer is made
in the site's PCM_JOBS through the hub (the site must be connected), the hub records its site and
groups in PCM_SITES so that pcm status and pcm agents list it, and its consumer at the hub, if
any, is removed. Its agent then runs against the site's broker. Enrolling without --site moves it
back to the hub. On an authenticated hub give --issuer and --site-url, the site broker's URL:
the consumer and the client's account are made there (the site trusts the hub's operator), the
hub records the client's site and signs the site's account at the hub again so that the site
forwards this client's statuses and inventory, and the credentials are written as above.`,
		Example: `  pcm enroll ws-042 --group lab --group windows
  pcm enroll ws-042 --group lab --issuer ./pcm-data/auth/issuer.json --out-dir ./creds \
    --trusted-keys "$(pcm keys public signing.nk)"`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			client := args[0]
			trusted, err := trustedKeys(keys, controllers, keysFile)
			if err != nil {
				return err
			}
			s, err := g.connectAdmin("pcm enroll", issuer)
			if err != nil {
				return err
			}
			defer s.Close()
			out := cmd.OutOrStdout()
			copts := fleet.ConsumerOptions{AckWait: ackWait}
			accts := s.accts // where the client's account lives
			switch {
			case siteName != "" && s.accts != nil:
				if siteURL == "" {
					return fmt.Errorf("%w: --site %s on an authenticated hub needs --site-url nats://HOST:PORT: the site's broker, where the client's consumer and account are made", fleet.ErrSiteAuth, siteName)
				}
				site, err := g.adminSessionAt(siteURL, "pcm enroll (site)", s.accts.Issuer(), false)
				if err != nil {
					return err
				}
				defer site.Close()
				if err := enrollAtAuthSite(cmd, s, site, siteName, client, groups, copts); err != nil {
					return err
				}
				accts = site.accts
			case siteName != "" && g.sec.creds != "":
				return requireIssuer("enroll a client at a site of an authenticated hub")
			case siteName != "":
				return enrollAtSite(cmd, s, siteName, client, groups, copts)
			default:
				enrolled, err := fleet.Enroll(cmd.Context(), s.js, s.accts, client, groups, copts)
				if err != nil {
					return err
				}
				if err := leaveSite(cmd, s, client); err != nil {
					return err
				}
				fmt.Fprintf(out, "enrolled %s (groups: %s)\n", client, orNone(strings.Join(enrolled, ",")))
			}
			if accts == nil || noCreds {
				return nil
			}
			for _, role := range []auth.Role{auth.RoleAgent, auth.RoleDesktop} {
				path := filepath.Join(outDir, client+"-"+string(role)+".creds")
				creds, err := accts.Issue(cmd.Context(), auth.User{Role: role, Name: client})
				if err != nil {
					return err
				}
				if err := auth.WriteCreds(path, creds); err != nil {
					return err
				}
				fmt.Fprintf(out, "wrote the %s credentials of %s to %s (mode 0600): install it on the client, readable by the %s only\n",
					role, client, path, map[auth.Role]string{auth.RoleAgent: "service account", auth.RoleDesktop: "client's users"}[role])
			}
			return writeTrustedKeys(out, cmd.ErrOrStderr(), outDir, client, trusted)
		},
	}
	cmd.Flags().StringSliceVar(&groups, "group", nil, "group of the client (repeatable or comma-separated)")
	cmd.Flags().StringVar(&siteName, "site", "", "enroll the client at the branch site NAME (its consumer in the site's PCM_JOBS; the site must be connected): its agent runs against the site's broker (docs/sites.md)")
	cmd.Flags().StringVar(&siteURL, "site-url", "", "with --site on an authenticated hub: the site broker's client URL, where the client's consumer and account are made (as an admin minted from --issuer)")
	cmd.Flags().DurationVar(&ackWait, "ack-wait", fleet.DefaultAckWait, "redeliver an offer the agent has not acked after this long")
	registerIssuer(cmd, &issuer)
	cmd.Flags().StringVar(&outDir, "out-dir", ".", "with --issuer: directory to write CLIENT-agent.creds, CLIENT-desktop.creds and CLIENT-trusted.keys to")
	cmd.Flags().BoolVar(&noCreds, "no-creds", false, "with --issuer: update the client's groups and account only, write no credentials")
	cmd.Flags().StringSliceVar(&keys, "trusted-keys", nil, "public keys of the publishers the client trusts (pcm keys public), written to CLIENT-trusted.keys")
	cmd.Flags().StringVar(&keysFile, "trusted-keys-file", "", "file of trusted public keys, one per line, added to --trusted-keys")
	cmd.Flags().StringSliceVar(&controllers, "controller-keys", nil, "public keys of the rollout controllers (pcm broker --controller-key), written to CLIENT-trusted.keys as controller lines: the client obeys their halts")
	return cmd
}

// enrollAtSite enrolls client at the branch site siteName through the
// hub: its consumer is made in the site's PCM_JOBS, the hub records its
// site, and its consumer at the hub, if any, is removed (a client belongs
// to one place at a time).
func enrollAtSite(cmd *cobra.Command, s *adminSession, siteName, client string, groups []string, opts fleet.ConsumerOptions) error {
	enrolled, err := fleet.EnrollAtSite(cmd.Context(), s.js, siteName, client, groups, opts)
	if err != nil {
		return err
	}
	return leftHub(cmd, s, siteName, client, enrolled)
}

// enrollAtAuthSite is enrollAtSite on an authenticated hub (hub), through
// an admin's connection to the site's broker (site):
// fleet.EnrollAtAuthSite.
func enrollAtAuthSite(cmd *cobra.Command, hub, site *adminSession, siteName, client string, groups []string, opts fleet.ConsumerOptions) error {
	enrolled, err := fleet.EnrollAtAuthSite(cmd.Context(), hub.js, hub.accts, site.js, site.accts, siteName, client, groups, opts)
	if err != nil {
		return err
	}
	return leftHub(cmd, hub, siteName, client, enrolled)
}

// leftHub removes the consumer at the hub of client, now enrolled at
// siteName in groups enrolled, if it had one, and says so.
func leftHub(cmd *cobra.Command, s *adminSession, siteName, client string, enrolled []string) error {
	if _, ok, err := fleet.EnrollmentOf(cmd.Context(), s.js, client); err == nil && ok {
		if err := fleet.Unenroll(cmd.Context(), s.js, client); err != nil {
			return err
		}
	}
	fmt.Fprintf(cmd.OutOrStdout(), "enrolled %s at site %s (groups: %s): point its agent at the site's broker\n", client, siteName, orNone(strings.Join(enrolled, ",")))
	return nil
}

// leaveSite forgets the site client was enrolled at, if any; on an
// authenticated hub the site's account at the hub is first signed again
// without it, so that the site no longer forwards its statuses
// (fleet.LeaveAuthSite).
func leaveSite(cmd *cobra.Command, s *adminSession, client string) error {
	if s.accts == nil {
		return fleet.LeaveSite(cmd.Context(), s.js, client)
	}
	_, err := fleet.LeaveAuthSite(cmd.Context(), s.js, s.accts, client)
	return err
}

// orNone is s, or "none" when s is empty.
func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// trustedKeysName is the file of a client's trusted publisher keys, next
// to its credentials.
func trustedKeysName(client string) string { return client + "-trusted.keys" }

// writeTrustedKeys writes keys to DIR/CLIENT-trusted.keys (public, 0644):
// the publisher keys one per line, the controller keys as "controller KEY"
// lines; or says on warn that the client will refuse every job without
// them.
func writeTrustedKeys(out, warn io.Writer, dir, client string, keys keySet) error {
	if len(keys.publishers) == 0 {
		fmt.Fprintf(warn, "no --trusted-keys: the agent of %s refuses every job until it is given the publishers' keys (--trusted-keys) or started with --allow-unsigned\n", client)
		return nil
	}
	path := filepath.Join(dir, trustedKeysName(client))
	body := "# publisher keys client " + client + " trusts (pcm enroll); one per line\n" + strings.Join(keys.publishers, "\n") + "\n"
	if len(keys.controllers) > 0 {
		body += "# rollout controller keys: halts only\n" + controllerLine + " " + strings.Join(keys.controllers, "\n"+controllerLine+" ") + "\n"
	}
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		return fmt.Errorf("writing the trusted keys of %s: %w", client, err)
	}
	fmt.Fprintf(out, "wrote the %d trusted publisher key(s) and %d controller key(s) of %s to %s: install it next to the credentials\n",
		len(keys.publishers), len(keys.controllers), client, path)
	return nil
}
