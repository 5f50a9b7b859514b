package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/pcm-project/pcm/agent"
	"github.com/pcm-project/pcm/agent/pkgcache"
	"github.com/pcm-project/pcm/fleet"
	"github.com/pcm-project/pcm/internal/osservice"
)

// faultEnv names the test-only variable that crashes the agent (SIGKILL of
// itself) at a fault point: after-start, after-finish or after-publish.
const faultEnv = "PCM_TEST_FAULT_POINT"

// agentFlags configure the service face.
type agentFlags struct {
	clientID, stateDir string
	groups             []string
	enroll             bool
	heartbeat, lease   time.Duration
	ackWait            time.Duration
	cacheSize          byteSize
	trust              trustFlags
	channel            string
	releaseKeys        []string
	updateHealth       time.Duration
	times              agentTimeFlags
	metrics            string
}

func (f *agentFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.clientID, "client-id", "", "this client's id (default: the host name, sanitized)")
	cmd.Flags().StringSliceVar(&f.groups, "groups", nil, "groups of this client, comma-separated (used with --enroll, and reported in the inventory)")
	cmd.Flags().StringVar(&f.stateDir, "state-dir", "", "directory of the journal, job directories and logs (default: per user and client)")
	cmd.Flags().StringVar(&f.metrics, "metrics", "", metricsUsage)
	cmd.Flags().DurationVar(&f.heartbeat, "heartbeat", agent.DefaultHeartbeat, "how often the inventory in PCM_AGENTS is refreshed")
	cmd.Flags().DurationVar(&f.lease, "lease", agent.DefaultLease, "lease of the service-versus-desktop lock")
	cmd.Flags().DurationVar(&f.ackWait, "ack-wait", fleet.DefaultAckWait, "with --enroll: redeliver an unacked offer after this long")
	f.cacheSize = pkgcache.DefaultMaxBytes
	cmd.Flags().Var(&f.cacheSize, "cache-size", "size limit of the package cache in the state dir (2GiB, 500MiB, ...); least recently used packages are evicted first, never one of a pending job")
	f.trust.register(cmd.Flags())
	cmd.Flags().StringVar(&f.channel, "channel", "", "release channel to follow (pcm release push --channel): the agent installs each newer release signed by --release-keys once no job runs (default: none, no self-update)")
	cmd.Flags().StringSliceVar(&f.releaseKeys, "release-keys", nil, "public keys whose signed agent releases this client installs, comma-separated (pcm keys public RELEASE-KEY); required with --channel")
	cmd.Flags().DurationVar(&f.updateHealth, "update-health-timeout", DefaultUpdateHealthTimeout, "after a self-update, how long the new version has to connect, check its journal and report its version before the previous binary is restored")
	f.times.register(cmd.Flags())
}

func newAgentCmd(g *globals) *cobra.Command {
	var f agentFlags
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the agent's service face: receive this client's jobs, run them, report statuses",
		Long: `Runs unattended with the rights it was started with. It consumes this client's durable
consumer, runs mandatory automated jobs at their time (background ones included), reports a
status for each, and keeps its inventory in PCM_AGENTS. It reconnects forever; final statuses
produced while the broker is away wait in its journal.

The client must be enrolled (pcm enroll CLIENT --group G). On an open broker, --enroll lets the
agent enroll itself with --groups.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f.resolve()
			if f.enroll && g.sec.creds != "" {
				return fmt.Errorf("--enroll: an agent with credentials (a broker started with --auth) cannot enroll itself: an operator runs pcm enroll %s --group ... --issuer ISSUER.json", f.clientID)
			}
			// The configuration is checked before the broker is reached:
			// a bad value fails at once, never in a retry loop.
			cfg, err := f.config(g.log, g.sec.creds)
			if err != nil {
				return err
			}
			nc, err := g.dial(agent.ConnectOptions("pcm agent " + f.clientID))
			if err != nil {
				return err
			}
			defer nc.Close()
			return osservice.Run(cmd.Context(), "pcm-agent", stopTimeout, func(ctx context.Context) error {
				return runAgent(ctx, g.log, nc, f, cfg, nil)
			})
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&f.enroll, "enroll", false, "enroll this client itself with --groups (open brokers only)")
	var inst agentFlags
	cmd.AddCommand(serviceCommands(g, serviceFace{
		face: "agent",
		spec: osservice.Spec{Name: "pcm-agent", DisplayName: "pcm agent",
			Description: "pcm agent: receives this client's jobs, runs them unattended, reports their statuses"},
		desktop:  true,
		register: inst.register,
		check: func(*cobra.Command) error {
			inst.resolve()
			_, err := inst.config(g.log, g.sec.creds)
			return err
		},
	})...)
	return cmd
}

// config is the service face's configuration from the flags, checked
// (agent.Config.Validate); creds is the --creds given, next to which the
// client's trusted keys may be.
func (f *agentFlags) config(log *zap.Logger, creds string) (agent.Config, error) {
	keys, err := f.trust.resolve(creds, f.clientID)
	if err != nil {
		return agent.Config{}, err
	}
	if f.stateDir == "" {
		f.stateDir = defaultStateDir(f.clientID)
	}
	cfg := agent.Config{
		ClientID: f.clientID, Groups: f.groups, StateDir: f.stateDir, Version: version,
		Heartbeat: f.heartbeat, Lease: f.lease, CacheSize: int64(f.cacheSize), Fault: faultFromEnv(log), Logger: log,
		TrustedKeys: keys.publishers, ControllerKeys: keys.controllers, Channel: f.channel, ReleaseKeys: f.releaseKeys,
	}
	if err := f.times.apply(&cfg, log); err != nil {
		return cfg, err
	}
	return cfg, cfg.Validate()
}

// runAgent runs the service face of cfg on nc until ctx ends, enrolling
// the client first when f asks; ready, when not nil, is called once the
// agent is ready.
func runAgent(ctx context.Context, log *zap.Logger, nc *nats.Conn, f agentFlags, cfg agent.Config, ready func()) error {
	if os.Getenv(updateWatchEnv) == "1" {
		return watchUpdate(ctx, log.Named("update"), nc, cfg)
	}
	if f.enroll {
		if err := enrollSelf(ctx, nc, f); err != nil {
			return err
		}
	}
	var am *agentMetrics
	if f.metrics != "" {
		var err error
		if am, err = newAgentMetrics(); err != nil {
			return err
		}
		cfg.Observer = am.lock
	}
	svc, err := agent.New(nc, cfg)
	if err != nil {
		return err
	}
	if am != nil {
		if err := am.serve(ctx, log, f.metrics, nc, svc); err != nil {
			return err
		}
	}
	log.Info("starting agent", zap.String("client", cfg.ClientID), zap.String("version", cfg.Version),
		zap.String("state_dir", cfg.StateDir), zap.String("url", strings.Join(nc.Servers(), ",")))
	if ready != nil {
		go func() {
			select {
			case <-svc.Ready():
				ready()
			case <-ctx.Done():
			}
		}()
	}
	err = svc.Run(ctx)
	if errors.Is(err, agent.ErrUpdateReady) {
		return applyUpdate(ctx, log.Named("update"), nc, cfg, svc.PendingUpdate(), f.updateHealth)
	}
	return err
}

// enrollSelf creates the client's consumer, waiting for the broker first.
func enrollSelf(ctx context.Context, nc *nats.Conn, f agentFlags) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	return fleet.EnrollSelf(ctx, js, f.clientID, f.groups, fleet.ConsumerOptions{AckWait: f.ackWait})
}

// faultFromEnv returns the test-only fault hook: when PCM_TEST_FAULT_POINT
// names a point, the agent kills itself (SIGKILL, no clean-up) there.
func faultFromEnv(log *zap.Logger) func(agent.FaultPoint) {
	point := os.Getenv(faultEnv)
	if point == "" {
		return nil
	}
	log.Warn("test fault injection armed: the agent kills itself at this point", zap.String("point", point))
	return func(p agent.FaultPoint) {
		if string(p) != point {
			return
		}
		log.Warn("fault point reached: killing myself", zap.String("point", point))
		_ = log.Sync()
		if proc, err := os.FindProcess(os.Getpid()); err == nil {
			_ = proc.Kill()
		}
		select {} // the kill is on its way
	}
}

// resolve fills the defaults that depend on the machine.
func (f *agentFlags) resolve() {
	if f.clientID == "" {
		f.clientID = defaultClientID()
	}
}

func defaultClientID() string {
	h, _ := os.Hostname()
	if id := sanitizeID(strings.Split(h, ".")[0]); id != "" {
		return id
	}
	return "client"
}

// defaultStateDir is per client: /var/lib/pcm/<client> for root on Unix,
// %ProgramData%\pcm\<client> on Windows, ~/.local/state/pcm/<client> else.
func defaultStateDir(client string) string {
	switch {
	case runtime.GOOS == "windows" && os.Getenv("ProgramData") != "":
		return filepath.Join(os.Getenv("ProgramData"), "pcm", client)
	case runtime.GOOS != "windows" && os.Geteuid() == 0:
		return filepath.Join("/var/lib/pcm", client)
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "pcm", client)
	}
	return filepath.Join(home, ".local", "state", "pcm", client)
}
