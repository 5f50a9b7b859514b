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
)

// brokerFlags configure an embedded broker (pcm broker, pcm up).
type brokerFlags struct {
	data, listen, monitor, serverName string
	clusterName, clusterListen        string
	routes                            []string
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
	}
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
--controller-key; one controller leads at a time in a cluster.`,
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
	bf.registerSecurity(cmd)
}

// runBroker runs the embedded broker until ctx ends.
func runBroker(ctx context.Context, cmd *cobra.Command, g *globals, bf *brokerFlags, pf *provisionFlags, cf controllerFlags, noProvision bool) error {
	clustered := bf.clusterName != ""
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
	g.log.Info("broker running", zap.String("url", b.ClientURL()), zap.String("data", bf.data))
	<-ctx.Done()
	g.log.Info("shutting down the broker")
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
