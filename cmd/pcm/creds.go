package main

import (
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/pcm-project/pcm/broker/auth"
)

// accountKeyUsage documents --account-key.
const accountKeyUsage = "the pcm account's signing key file (account-key.creds in the auth dir of pcm broker --auth): it mints credentials"

func newCredsCmd(g *globals) *cobra.Command {
	var out, accountKey string
	var groups []string
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "creds ROLE NAME --out FILE",
		Short: "Issue credentials for a publisher, an auditor or an admin (or an agent or desktop)",
		Long: `Mints a NATS user of the pcm account with the permissions of ROLE and writes its credentials
(user JWT and nkey seed) to FILE, mode 0600. The broker accepts them at once, without a restart.
Roles: publisher (publish and cancel jobs, enroll clients, push packages, read statuses and the
inventory), auditor (read both streams and the inventory, change nothing), admin (everything:
provisioning), agent and desktop (one client: NAME is the client id; pcm enroll issues these).
See docs/security.md for the exact permissions. Whoever holds --account-key can mint any of them:
keep it with the operators.`,
		Example: `  pcm creds publisher ci --out ci.creds --account-key ./pcm-data/auth/account-key.creds
  pcm creds auditor audit --out audit.creds --account-key ./pcm-data/auth/account-key.creds`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			role, err := auth.ParseRole(args[0])
			if err != nil {
				return err
			}
			if out == "" {
				return fmt.Errorf("--out FILE is required: where to write the credentials")
			}
			path, err := issueCreds(accountKey, auth.User{Role: role, Name: args[1], Groups: groups, TTL: ttl}, out)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s credentials for %s to %s (mode 0600)\n", role, args[1], path)
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "file to write the credentials to (mode 0600)")
	cmd.Flags().StringVar(&accountKey, "account-key", "", accountKeyUsage)
	cmd.Flags().StringSliceVar(&groups, "group", nil, "for a desktop: its client's groups")
	cmd.Flags().DurationVar(&ttl, "ttl", 0, "expire the credentials after this long (0: never)")
	return cmd
}

// issueCreds mints u with the account key file and writes its credentials
// to path; it returns the path written.
func issueCreds(accountKey string, u auth.User, path string) (string, error) {
	if accountKey == "" {
		return "", fmt.Errorf("--account-key FILE (or PCM_ACCOUNT_KEY) is required to issue credentials: it is %s in the auth dir of pcm broker --auth", auth.AccountKeyFile)
	}
	iss, err := auth.LoadIssuer(accountKey)
	if err != nil {
		return "", err
	}
	creds, err := iss.Issue(u)
	if err != nil {
		return "", err
	}
	if err := auth.WriteCreds(path, creds); err != nil {
		return "", err
	}
	return path, nil
}

// issueClientCreds writes the agent and desktop credentials of client into
// dir, as CLIENT-agent.creds and CLIENT-desktop.creds, and says so on w.
func issueClientCreds(w io.Writer, accountKey, dir, client string, groups []string) error {
	for _, role := range []auth.Role{auth.RoleAgent, auth.RoleDesktop} {
		path := filepath.Join(dir, client+"-"+string(role)+".creds")
		if _, err := issueCreds(accountKey, auth.User{Role: role, Name: client, Groups: groups}, path); err != nil {
			return err
		}
		fmt.Fprintf(w, "wrote the %s credentials of %s to %s (mode 0600): install it on the client, readable by the %s only\n",
			role, client, path, map[auth.Role]string{auth.RoleAgent: "service account", auth.RoleDesktop: "client's users"}[role])
	}
	return nil
}
