//go:build !nobroker

package main

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/pcm-project/pcm/broker"
	"github.com/pcm-project/pcm/internal/osservice"
	"github.com/pcm-project/pcm/site"
)

// brokerFlags configure an embedded broker (pcm broker, pcm up).
type brokerFlags struct {
	data, listen, monitor, serverName string
	clusterName, clusterListen        string
	routes                            []string
	// sites: a hub's leaf listener and domain, a site's name and hub.
	leafListen, domain, site, hub, hubDomain string
	hubReconnect                             time.Duration
	// an authenticated site's leaf credentials and in-process admin.
	hubCreds, siteAdminCreds string
	dropRefusedAfter         time.Duration
	// security: pcm broker only (pcm up stays open, on loopback).
	auth    bool
	authDir string
	tls     broker.TLSConfig
	// http are pcm broker's HTTP endpoints (broker_http.go).
	http *brokerHTTPFlags
}

func (f *brokerFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.data, "data", "./pcm-data", "directory of the broker's JetStream store")
	cmd.Flags().StringVar(&f.listen, "listen", broker.DefaultListen, "host:port clients connect to")
	cmd.Flags().StringVar(&f.monitor, "monitor", "", "host:port of the HTTP monitoring endpoint (off when empty)")
	cmd.Flags().StringVar(&f.serverName, "server-name", "", "server name, unique in a cluster (default pcm-<hostname>)")
}

func (f *brokerFlags) config(log *zap.Logger) broker.Config {
	return broker.Config{
		StoreDir: f.data, Listen: f.listen, MonitorListen: f.monitor, ServerName: f.serverName,
		Cluster: broker.ClusterConfig{Name: f.clusterName, Listen: f.clusterListen, Routes: f.routes},
		Logger:  log.Named("nats"),
		Domain:  f.jsDomain(), LeafListen: f.leafListen, Hub: f.hubLink(),
	}
}

// registerSites adds the flags of a hub's sites and of a site (pcm broker
// only).
func (f *brokerFlags) registerSites(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.leafListen, "leaf-listen", "", "host:port where branch site brokers connect (a hub; off when empty; docs/sites.md)")
	cmd.Flags().StringVar(&f.domain, "domain", "", "JetStream domain of this hub (default "+site.DefaultHubDomain+" with --leaf-listen)")
	cmd.Flags().StringVar(&f.site, "site", "", "run as the branch site NAME of the hub --hub: a leaf node with its own JetStream domain NAME (docs/sites.md)")
	cmd.Flags().StringVar(&f.hub, "hub", "", "with --site: the hub's leaf address, nats-leaf://host:port (its --leaf-listen; several members comma-separated)")
	cmd.Flags().StringVar(&f.hubDomain, "hub-domain", site.DefaultHubDomain, "with --site: the hub's JetStream domain (its --domain)")
	cmd.Flags().DurationVar(&f.hubReconnect, "hub-reconnect", broker.DefaultHubReconnect, "with --site: how soon the site dials the hub again after the link drops")
	cmd.Flags().StringVar(&f.hubCreds, "hub-creds", "", "with --site and --auth: the site's leaf credentials, made at the hub with pcm creds site NAME")
	cmd.Flags().DurationVar(&f.dropRefusedAfter, "drop-refused-after", site.DefaultDropAfter, "with --site and --auth: how long the hub may refuse a client's status or inventory while it answers the site before the site stops forwarding it (the client was enrolled elsewhere; it stays in the site's own streams)")
	cmd.Flags().StringVar(&f.siteAdminCreds, "site-admin-creds", "", "with --site and --auth: the site broker's in-process admin, which runs its services (default: --hub-creds without .creds, then -admin.creds, as pcm creds site writes it)")
}

// jsDomain is the broker's JetStream domain: a site's name, or a hub's
// --domain (DefaultHubDomain when it accepts sites).
func (f *brokerFlags) jsDomain() string {
	switch {
	case f.site != "":
		return f.site
	case f.domain == "" && f.leafListen != "":
		return site.DefaultHubDomain
	}
	return f.domain
}

// hubLink is a site's link to its hub; nil for a hub or a lone broker.
func (f *brokerFlags) hubLink() *broker.HubLink {
	if f.site == "" {
		return nil
	}
	return &broker.HubLink{URL: f.hub, Reconnect: f.hubReconnect, Credentials: f.hubCreds}
}

// checkSite refuses --site without --hub (or the reverse), a site's
// credentials without --site and --auth (or --site --auth without them),
// and a site in a cluster.
func (f *brokerFlags) checkSite(clustered bool) error {
	switch {
	case f.site == "" && f.hub != "":
		return fmt.Errorf("--hub needs --site NAME: the name of this branch site")
	case f.site == "" && (f.hubCreds != "" || f.siteAdminCreds != ""):
		return fmt.Errorf("--hub-creds and --site-admin-creds are a branch site's: they need --site NAME --hub URL --auth")
	case f.site == "":
		return nil
	case f.hub == "":
		return fmt.Errorf("--site needs --hub nats-leaf://HOST:PORT: the hub's --leaf-listen address")
	case f.auth && f.hubCreds == "":
		return fmt.Errorf("%w: --site with --auth needs --hub-creds FILE: the site's leaf credentials, made at the hub with pcm creds site %s --out FILE --issuer ISSUER", broker.ErrSiteAuth, f.site)
	case !f.auth && (f.hubCreds != "" || f.siteAdminCreds != ""):
		return fmt.Errorf("%w: --hub-creds and --site-admin-creds need --auth: an authenticated hub's site trusts the hub's operator too", broker.ErrSiteAuth)
	case clustered:
		return fmt.Errorf("--site runs a single-node site broker: drop the --cluster-* flags")
	case f.leafListen != "":
		return fmt.Errorf("--leaf-listen is for a hub: a site (--site) does not accept sites of its own")
	}
	return (site.Config{Name: f.site, HubDomain: f.hubDomain}).Validate()
}

// provisionFlags tune the streams and buckets.
type provisionFlags struct {
	replicas     int
	jobsMaxAge   time.Duration
	statusMaxAge time.Duration
	maxConsumers int
	packagesMax  int64
}

func (f *provisionFlags) register(cmd *cobra.Command) {
	cmd.Flags().IntVar(&f.replicas, "replicas", 1, "replicas of every stream and bucket (3 on a 3-node cluster)")
	cmd.Flags().DurationVar(&f.jobsMaxAge, "jobs-max-age", broker.DefaultJobsMaxAge, "how long PCM_JOBS keeps offers; no job may expire later")
	cmd.Flags().DurationVar(&f.statusMaxAge, "status-max-age", 0, "how long PCM_STATUS keeps statuses (0: for ever, the audit record)")
	cmd.Flags().IntVar(&f.maxConsumers, "max-consumers", broker.DefaultMaxConsumers, "most clients (consumers) PCM_JOBS accepts")
	cmd.Flags().Int64Var(&f.packagesMax, "packages-max-bytes", 0, "cap on the package store PCM_PACKAGES, in bytes (0: limited only by the broker's storage)")
}

func (f *provisionFlags) options() broker.ProvisionOptions {
	return broker.ProvisionOptions{Replicas: f.replicas, JobsMaxAge: f.jobsMaxAge, StatusMaxAge: f.statusMaxAge, MaxConsumers: f.maxConsumers, PackagesMaxBytes: f.packagesMax}
}

func newBrokerCmd(g *globals) *cobra.Command {
	var bf brokerFlags
	var pf provisionFlags
	var noProvision bool
	var cf controllerFlags
	cmd := &cobra.Command{
		Use:   "broker",
		Short: "Run the embedded NATS JetStream broker, provisioned for pcm",
		Long: `Runs an embedded nats-server with JetStream, creates or updates pcm's streams and buckets,
prints the URL clients use, and runs until SIGINT or SIGTERM. A restart on the same --data keeps
every job, status and bucket. With --cluster-* flags it runs as one member of a JetStream cluster;
provision such a cluster once it has formed, with pcm broker provision --replicas 3.

Without --auth the broker is open: anyone who reaches --listen may do anything, so keep it on
loopback. With --auth it trusts only the accounts of its operator: on first start it creates the
operator, the system and pcm accounts and the issuer file in --auth-dir (default DATA/auth) and
writes admin credentials there (admin.creds). pcm enroll, pcm creds and pcm revoke then make each
client's, publisher's and auditor's own account, their credentials and their revocations with the
issuer file (issuer.json); the broker keeps the accounts in DATA/accounts and accepts them without
a restart.
--tls-cert and --tls-key turn TLS on for clients and cluster routes; --tls-ca is the CA routes
(and client certificates) are verified with. See docs/security.md.

It also runs the rollout controller, which halts a staged rollout (pcm publish --rings ...
--halt-at) as soon as its failure rate passes its threshold, signing its halts with
--controller-key; one controller leads at a time in a cluster.

Branch sites (docs/sites.md): with --leaf-listen the broker is a hub that accepts site brokers
(NATS leaf nodes) under its JetStream domain (--domain, default hub). With --site NAME --hub
nats-leaf://HUB:PORT it runs as the branch broker of site NAME: a leaf node of the hub with its own
JetStream domain NAME, which copies the hub's job events (and the packages they use, once per site)
and keeps its agents' statuses, locks and inventory while the link is down; the hub's PCM_STATUS
and PCM_AGENTS source the site's. Enroll its clients at the hub with pcm enroll --site NAME and
point their agents at the site broker.
With --auth on both: the site trusts the hub's operator (copy operator.jwt, account.jwt and
system.jwt of the hub's --auth-dir to the site's; it creates no authority), links with the site's
own credentials (--hub-creds, made at the hub with pcm creds site NAME), runs its services as the
in-process admin pcm creds site writes next to them (--site-admin-creds), reads the hub's jobs and
packages with direct gets and forwards its statuses and inventory, changing no stream of the hub's;
enroll its clients with pcm enroll --site NAME --site-url SITE-URL --issuer ISSUER.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return osservice.Run(cmd.Context(), brokerService, stopTimeout, func(ctx context.Context) error {
				return runBroker(ctx, cmd, g, &bf, &pf, cf, noProvision)
			})
		},
	}
	registerBroker(cmd, &bf, &pf, &noProvision)
	cf.register(cmd.Flags())
	bf.http = registerBrokerHTTP(cmd)
	var inst brokerFlags
	var instP provisionFlags
	var instNoProvision bool
	var instC controllerFlags
	cmd.AddCommand(newProvisionCmd(g), newInitAuthCmd(), newNatsConfigCmd())
	cmd.AddCommand(serviceCommands(g, serviceFace{
		face: "broker",
		spec: osservice.Spec{Name: brokerService, DisplayName: "pcm broker",
			Description: "pcm broker: the embedded NATS JetStream server of pcm", FileLimit: brokerFileLimit},
		register: func(c *cobra.Command) {
			registerBroker(c, &inst, &instP, &instNoProvision)
			instC.register(c.Flags())
		},
		check:    func(*cobra.Command) error { return nil },
		defaults: func() map[string]string { return map[string]string{"data": defaultBrokerData()} },
	})...)
	return cmd
}

// brokerService is the broker's service name.
const brokerService = "pcm-broker"

// brokerFileLimit is the broker service's open-file limit: one descriptor
// per connected agent, and a fleet may reach --max-consumers (see
// BENCHMARKS.md).
const brokerFileLimit = 1 << 20

// defaultBrokerData is the store of a broker installed as a service:
// /var/lib/pcm/broker, %ProgramData%\pcm\broker on Windows.
func defaultBrokerData() string {
	if runtime.GOOS == "windows" {
		return filepath.Join(programData(), "pcm", "broker")
	}
	return "/var/lib/pcm/broker"
}

// registerBroker adds pcm broker's flags to cmd (pcm broker, pcm broker
// install).
func registerBroker(cmd *cobra.Command, bf *brokerFlags, pf *provisionFlags, noProvision *bool) {
	bf.register(cmd)
	pf.register(cmd)
	cmd.Flags().StringVar(&bf.clusterName, "cluster-name", "", "JetStream cluster name (makes this broker a cluster member)")
	cmd.Flags().StringVar(&bf.clusterListen, "cluster-listen", "", "host:port other members connect to")
	cmd.Flags().StringSliceVar(&bf.routes, "routes", nil, "nats-route://host:port of the other members, comma-separated")
	cmd.Flags().BoolVar(noProvision, "no-provision", false, "do not create or update pcm's streams and buckets at start")
	bf.registerSites(cmd)
	bf.registerSecurity(cmd)
}

// runBroker runs the embedded broker until ctx ends.
func runBroker(ctx context.Context, cmd *cobra.Command, g *globals, bf *brokerFlags, pf *provisionFlags, cf controllerFlags, noProvision bool) error {
	clustered := bf.clusterName != ""
	if err := bf.checkSite(clustered); err != nil {
		return err
	}
	if bf.site != "" {
		return runSite(ctx, cmd, g, bf, pf)
	}
	cfg := bf.config(g.log)
	authority, created, err := bf.setupAuth(clustered)
	if err != nil {
		return err
	}
	if authority != nil {
		tr := authority.Trust()
		cfg.Auth = &tr
	}
	cfg.TLS = bf.tls
	b, err := broker.New(cfg)
	if err != nil {
		return err
	}
	if err := b.Start(ctx); err != nil {
		return err
	}
	defer b.Shutdown()
	var popts *broker.ProvisionOptions
	if !noProvision && !clustered {
		o := pf.options()
		popts = &o
	}
	stop, err := startServices(ctx, cmd.OutOrStdout(), b, authority, popts, cf, g.log)
	if err != nil {
		return err
	}
	defer stop()
	stopHTTP, err := bf.http.start(ctx, cmd, g, b, authority)
	if err != nil {
		return err
	}
	defer stopHTTP()
	fmt.Fprintf(cmd.OutOrStdout(), "pcm broker ready: %s\n", b.ClientURL())
	bf.sayAuth(cmd.OutOrStdout(), g.log, authority, created)
	if clustered {
		fmt.Fprintf(cmd.OutOrStdout(), "cluster member %s of %s; once the cluster has formed run: pcm broker provision --url %s --replicas 3\n",
			bf.serverName, bf.clusterName, b.ClientURL())
	}
	if u := b.LeafURL(); u != "" {
		fmt.Fprintf(cmd.OutOrStdout(), "hub of JetStream domain %s: sites connect to %s\n", cfg.Domain, u)
	}
	g.log.Info("broker running", zap.String("url", b.ClientURL()), zap.String("data", bf.data))
	<-ctx.Done()
	g.log.Info("shutting down the broker")
	return nil
}

// runSite runs a branch site's broker until ctx ends: a leaf node of the
// hub with the site's own JetStream domain, provisioned as a site, serving
// the client view, linked to the hub and caching its jobs' packages
// (package site). An open site's PCM_JOBS_HUB sources the hub's PCM_JOBS
// and the hub's streams source the site's; an authenticated one (--auth)
// trusts the hub's operator, links with the site's own credentials
// (--hub-creds), runs its services as its in-process admin
// (--site-admin-creds), reads the hub with direct gets and forwards its
// statuses and inventory.
func runSite(ctx context.Context, cmd *cobra.Command, g *globals, bf *brokerFlags, pf *provisionFlags) error {
	cfg := bf.config(g.log)
	cfg.TLS = bf.tls
	var adminCreds string
	if bf.auth {
		trust, admin, err := bf.siteTrust()
		if err != nil {
			return err
		}
		cfg.Auth, adminCreds = &trust, admin
	}
	b, err := broker.New(cfg)
	if err == nil {
		err = b.Start(ctx)
	}
	if err != nil {
		return err
	}
	defer b.Shutdown()
	var nc *nats.Conn
	if bf.auth {
		nc, err = b.ConnectAdminCreds(adminCreds, "pcm site services")
	} else {
		nc, err = b.ConnectAdmin(nil, "pcm site services")
	}
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	popts := pf.options()
	if !bf.auth {
		popts.HubDomain = bf.hubDomain // PCM_JOBS_HUB sources the hub's PCM_JOBS
	}
	svc, err := broker.StartServices(ctx, js, broker.ServicesConfig{Provision: &popts, Logger: g.log.Named("view")})
	if err != nil {
		return err
	}
	defer svc.Stop()
	if _, err := site.Run(ctx, js, site.Config{Name: bf.site, HubDomain: bf.hubDomain, Authenticated: bf.auth, DropAfter: bf.dropRefusedAfter, Logger: g.log.Named("site")}); err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "pcm broker ready: %s\n", b.ClientURL())
	fmt.Fprintf(out, "site %s of the hub %s (domain %s): point this site's agents at %s\n", bf.site, bf.hub, bf.hubDomain, b.ClientURL())
	if bf.auth {
		fmt.Fprintf(out, "authentication on: the hub's operator from %s, the link as %s, the services as %s; enroll this site's clients at the hub with pcm enroll CLIENT --site %s --site-url %s --issuer ISSUER\n",
			bf.authDirOrDefault(), bf.hubCreds, adminCreds, bf.site, b.ClientURL())
	}
	g.log.Info("site broker running", zap.String("url", b.ClientURL()), zap.String("site", bf.site), zap.String("hub", bf.hub), zap.Bool("auth", bf.auth))
	<-ctx.Done()
	g.log.Info("shutting down the site broker")
	return nil
}

func newProvisionCmd(g *globals) *cobra.Command {
	var pf provisionFlags
	cmd := &cobra.Command{
		Use:   "provision",
		Short: "Create or update pcm's streams and buckets on a running NATS (external or embedded)",
		Long: `Creates or updates, idempotently, the streams PCM_JOBS and PCM_STATUS, the key-value buckets
PCM_AGENTS, PCM_LOCKS and PCM_CONTROLLER and the object store PCM_PACKAGES on the NATS server or cluster at
--url. Use it for deployments that run their own nats-server (docs/stock-cluster.md).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			nopts, err := g.sec.options()
			if err != nil {
				return err
			}
			if err := provisionAt(cmd.Context(), g.url, pf.options(), nopts...); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "provisioned %s (replicas %d)\n", g.url, max(pf.replicas, 1))
			return nil
		},
	}
	pf.register(cmd)
	return cmd
}

// provisionAt connects to url (with nopts: credentials, TLS, or an
// in-process connection) and provisions it.
func provisionAt(ctx context.Context, url string, opts broker.ProvisionOptions, nopts ...nats.Option) error {
	nc, err := nats.Connect(url, append([]nats.Option{nats.Name("pcm provision"), nats.Timeout(5 * time.Second)}, nopts...)...)
	if err != nil {
		return fmt.Errorf("cannot reach NATS at %s: %w%s", url, err, authHint(err))
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := broker.Provision(ctx, js, opts); err != nil {
		return fmt.Errorf("provisioning %s: %w", strings.TrimSpace(url), err)
	}
	return nil
}
