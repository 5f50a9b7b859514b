//go:build !nobroker

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/pcm-project/pcm/broker"
	"github.com/pcm-project/pcm/broker/auth"
)

// registerSecurity adds the authentication and TLS flags of pcm broker.
// (--tls-ca, --tls-cert and --tls-key shadow the client flags of the same
// name: here they are the broker's.)
func (f *brokerFlags) registerSecurity(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&f.auth, "auth", false, "require credentials: create (first start) or load the operator and pcm account in --auth-dir")
	cmd.Flags().StringVar(&f.authDir, "auth-dir", "", "directory of the operator, the accounts and the issuer (default DATA/auth); cluster members share a copy of the JWTs")
	cmd.Flags().StringVar(&f.tls.CertFile, "tls-cert", "", "the broker's certificate (PEM): turns TLS on for clients and cluster routes")
	cmd.Flags().StringVar(&f.tls.KeyFile, "tls-key", "", "key of --tls-cert (PEM)")
	cmd.Flags().StringVar(&f.tls.CAFile, "tls-ca", "", "CA (PEM) that cluster members' and clients' certificates are verified with")
	cmd.Flags().BoolVar(&f.tls.VerifyClients, "tls-verify-clients", false, "require a client certificate signed by --tls-ca")
}

// authDirOrDefault is --auth-dir, or DATA/auth.
func (f *brokerFlags) authDirOrDefault() string {
	if f.authDir != "" {
		return f.authDir
	}
	return filepath.Join(f.data, "auth")
}

// setupAuth loads (or, on a single node, creates) the authority when
// --auth is set; created tells whether it was just created.
func (f *brokerFlags) setupAuth(clustered bool) (*auth.Authority, bool, error) {
	if !f.auth {
		return nil, false, nil
	}
	return auth.Open(f.authDirOrDefault(), clustered)
}

// siteTrust is what an authenticated site broker (--site --auth) runs
// with: the hub's operator and accounts, copied to --auth-dir (no secret,
// nothing created), and the file of its in-process admin, after checking
// that --hub-creds are the leaf credentials of this very site and that
// the admin is in-process only and of the same authority.
func (f *brokerFlags) siteTrust() (auth.Trust, string, error) {
	dir := f.authDirOrDefault()
	trust, err := auth.LoadTrust(dir)
	if errors.Is(err, auth.ErrNoAuthority) {
		// Not auth.ErrNoAuthority's own advice (create one with pcm broker
		// --auth): a site must trust the hub's.
		return auth.Trust{}, "", fmt.Errorf("%w: --site with --auth trusts the hub's operator, and %s holds none of its JWTs: copy %s of the hub's --auth-dir there (or point --auth-dir at a copy; they hold no secret)",
			broker.ErrSiteAuth, dir, strings.Join(auth.PublicFiles, ", "))
	}
	if err != nil {
		return auth.Trust{}, "", fmt.Errorf("%w: --site with --auth trusts the hub's operator: copy %s of the hub's --auth-dir to %s (--auth-dir; they hold no secret): %w",
			broker.ErrSiteAuth, strings.Join(auth.PublicFiles, ", "), dir, err)
	}
	leaf, err := auth.CredsUser(f.hubCreds)
	if err != nil {
		return auth.Trust{}, "", fmt.Errorf("%w: --hub-creds: %w", broker.ErrSiteAuth, err)
	}
	if role, _ := auth.RoleOf(leaf); role != auth.RoleSite {
		return auth.Trust{}, "", fmt.Errorf("%w: --hub-creds %s holds the credentials of %q, not a site's: make them at the hub with pcm creds site %s --out FILE --issuer ISSUER",
			broker.ErrSiteAuth, f.hubCreds, leaf.Name, f.site)
	}
	if want := (auth.User{Role: auth.RoleSite, Name: f.site}).UserName(); leaf.Name != want {
		return auth.Trust{}, "", fmt.Errorf("%w: --hub-creds %s are the credentials of %s, not of --site %s: give the site its own (pcm creds site %s) or its own name",
			broker.ErrSiteAuth, f.hubCreds, strings.TrimPrefix(leaf.Name, string(auth.RoleSite)+"-"), f.site, f.site)
	}
	path := f.siteAdminCreds
	if path == "" {
		path = siteAdminCreds(f.hubCreds)
	}
	admin, err := auth.CredsUser(path)
	if err != nil {
		return auth.Trust{}, "", fmt.Errorf("%w: --site-admin-creds: %w (pcm creds site %s writes it next to the site's credentials)", broker.ErrSiteAuth, err, f.site)
	}
	role, _ := auth.RoleOf(admin)
	types := admin.AllowedConnectionTypes
	switch {
	case role != auth.RoleAdmin:
		return auth.Trust{}, "", fmt.Errorf("%w: --site-admin-creds %s holds the credentials of %q, not an admin's: use the file pcm creds site %s writes next to the site's credentials",
			broker.ErrSiteAuth, path, admin.Name, f.site)
	case len(types) != 1 || !types.Contains(jwt.ConnectionTypeInProcess):
		return auth.Trust{}, "", fmt.Errorf("%w: --site-admin-creds %s may connect over the network: a site broker runs its services as an admin that connects only in process, which a thief could not use elsewhere; use the file pcm creds site %s writes",
			broker.ErrSiteAuth, path, f.site)
	case admin.IssuerAccount != trust.Account():
		return auth.Trust{}, "", fmt.Errorf("%w: --site-admin-creds %s are of another authority than the operator in %s", broker.ErrSiteAuth, path, dir)
	}
	return trust, path, nil
}

// sayAuth tells the operator how the broker authenticates.
func (f *brokerFlags) sayAuth(w io.Writer, log *zap.Logger, a *auth.Authority, created bool) {
	if a == nil {
		where := "on loopback only"
		if !broker.IsLoopback(f.listen) {
			where = "ON " + f.listen + ": ANYONE WHO REACHES IT CONTROLS EVERY AGENT; use --auth"
			log.Warn("the broker is open (no authentication) and listens beyond loopback: anyone who reaches it can run commands on every agent; start it with --auth",
				zap.String("listen", f.listen))
		}
		fmt.Fprintf(w, "open broker, no authentication (%s)\n", where)
		return
	}
	if created {
		fmt.Fprintf(w, "created the operator and the pcm account in %s\n", a.Dir())
	}
	issuer := filepath.Join(a.Dir(), auth.IssuerFile)
	fmt.Fprintf(w, "authentication on: admin credentials %s, issuer %s (keep both secret)\n",
		filepath.Join(a.Dir(), auth.AdminCredsFile), issuer)
	fmt.Fprintf(w, "enroll clients with: pcm enroll CLIENT --group G --issuer %s; other credentials: pcm creds ROLE NAME --issuer %s --out FILE\n",
		issuer, issuer)
}

// startServices runs the broker's own services (broker.StartServices)
// over an in-process admin connection: the provisioning, when popts is
// set, and the client view; then the rollout controller as cf says; and on
// an authenticated hub the answers to its admins' site probes
// (broker.ServeSiteProbes). An
// authenticated broker without the issuer file (a cluster member) cannot
// mint that admin: it provisions nothing (an error when asked to), serves
// no client view and runs no controller, and says so.
func startServices(ctx context.Context, w io.Writer, b *broker.Broker, a *auth.Authority, popts *broker.ProvisionOptions, cf controllerFlags, log *zap.Logger) (stop func(), err error) {
	var iss *auth.Issuer
	if a != nil {
		if iss, err = a.Issuer(); err != nil {
			if popts != nil {
				return nil, fmt.Errorf("provisioning needs admin rights: %w (or start with --no-provision and run pcm broker provision --creds ADMIN.creds)", err)
			}
			fmt.Fprintf(w, "no issuer in %s: this member serves no client view and runs no rollout controller; run pcm controller with admin credentials next to the cluster, or desktops cannot list their jobs and staged rollouts do not halt by themselves\n", a.Dir())
			return func() {}, nil
		}
	}
	nc, err := b.ConnectAdmin(iss, "pcm broker services")
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err == nil {
		var svc *broker.Services
		if svc, err = broker.StartServices(ctx, js, broker.ServicesConfig{Provision: popts, Logger: log.Named("view")}); err == nil {
			var stopCtl func()
			if stopCtl, err = cf.start(ctx, w, js, log); err == nil {
				if iss == nil || b.LeafURL() == "" {
					return func() { stopCtl(); svc.Stop(); nc.Close() }, nil
				}
				// An authenticated hub tells its admins whether a site's
				// link is up (fleet.SiteReachable).
				var probes *nats.Subscription
				if probes, err = b.ServeSiteProbes(nc, iss); err == nil {
					return func() { _ = probes.Unsubscribe(); stopCtl(); svc.Stop(); nc.Close() }, nil
				}
				stopCtl()
			}
			svc.Stop()
		}
	}
	nc.Close()
	return nil, err
}

func newInitAuthCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "init-auth --auth-dir DIR",
		Short: "Create the operator, the system and pcm accounts, the issuer and admin credentials in DIR",
		Long: `Creates, once, the authority of a deployment: an operator, the system account and the pcm
account (with JetStream and the exports every client's, publisher's and auditor's account
imports) signed by it, the issuer file (issuer.json: the signing keys that make accounts and
credentials) and a first admin's credentials (admin.creds), secrets mode 0600. pcm broker --auth
does this by itself on a single node; for a cluster, run it once and copy operator.jwt,
account.jwt and system.jwt to every member's --auth-dir (members need no secret). It refuses a
DIR that already holds one.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return fmt.Errorf("--auth-dir DIR is required")
			}
			if _, err := os.Stat(filepath.Join(dir, auth.OperatorJWTFile)); err == nil {
				return fmt.Errorf("%w: %s already holds an authority: use it, or choose another directory", auth.ErrBadAuthority, dir)
			}
			a, _, err := auth.Setup(dir)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "created the operator and the pcm account %s in %s\nadmin credentials: %s\nissuer: %s\n",
				a.Account(), dir, filepath.Join(dir, auth.AdminCredsFile), filepath.Join(dir, auth.IssuerFile))
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "auth-dir", "", "directory to create the authority in (created 0700)")
	return cmd
}

// natsConfig renders the authentication part of a nats-server
// configuration for trust: the operator, the system account, a full
// resolver in resolverDir, and the system and pcm accounts preloaded.
func natsConfig(t auth.Trust, resolverDir string) (string, error) {
	sc, err := t.System()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, `# pcm: the authentication part of a nats-server configuration (operator mode),
# made by pcm broker nats-config from pcm's authority. Include it in the
# configuration of every member of the cluster: include "auth.conf".
# It holds no secret. After pcm broker --auth or pcm broker init-auth change
# the JWTs (an upgrade of pcm), make it again and restart the members one
# at a time.

# The operator every account is signed by.
operator: %q

# The system account: the resolver's updates and lookups, which pcm's admins
# reach through the pcm account's imports.
system_account: %s

# A full resolver: each member keeps every account JWT in dir; pcm enroll,
# pcm creds and pcm revoke push them (a claims update through any member
# reaches every member); a member that was down copies what it missed
# within interval.
resolver: {
  type: full
  dir: %q
  allow_delete: false
  interval: "1m"
  timeout: "5s"
}

# The system account and the pcm account (the one that holds the streams).
resolver_preload: {
  %s: %q
  %s: %q
}
`, t.OperatorJWT, sc.Subject, resolverDir, sc.Subject, t.SystemJWT, t.Account(), t.AccountJWT)
	return b.String(), nil
}

func newNatsConfigCmd() *cobra.Command {
	var dir, resolverDir string
	cmd := &cobra.Command{
		Use:   "nats-config --auth-dir DIR",
		Short: "Print the authentication part of a stock nats-server configuration for pcm's authority",
		Long: `Prints what a stock nats-server cluster needs to trust pcm's authority (made by pcm broker
init-auth or pcm broker --auth in DIR): the operator, the system account, a full account resolver
keeping every account JWT in --resolver-dir, and the system and pcm accounts preloaded. Save it as
auth.conf next to each member's configuration and include it (docs/stock-cluster.md). It holds
no secret.`,
		Example: `  pcm broker nats-config --auth-dir ./pcm-auth > auth.conf`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return fmt.Errorf("--auth-dir DIR is required: the directory pcm broker init-auth created")
			}
			t, err := auth.LoadTrust(dir)
			if err != nil {
				return err
			}
			conf, err := natsConfig(t, resolverDir)
			if err != nil {
				return err
			}
			_, err = fmt.Fprint(cmd.OutOrStdout(), conf)
			return err
		},
	}
	cmd.Flags().StringVar(&dir, "auth-dir", "", "directory of the authority (pcm broker init-auth)")
	cmd.Flags().StringVar(&resolverDir, "resolver-dir", "/var/lib/nats/accounts", "directory each member keeps the account JWTs in")
	return cmd
}
