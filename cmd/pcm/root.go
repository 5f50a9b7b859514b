package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.uber.org/zap"
)

// globals are the flags every command has.
type globals struct {
	url      string
	logLevel string
	logFile  string
	config   string
	log      *zap.Logger
	sec      clientSecurity

	refusedMu sync.Mutex
	refused   error // the first operation the broker refused these credentials
	// stop ends the command's context: a short-lived command stops waiting
	// for what the broker refused (an object store's acks, say).
	stop context.CancelCauseFunc
}

// envPrefix starts the environment variable of every flag: --state-dir is
// PCM_STATE_DIR.
const envPrefix = "PCM_"

func newRoot() *cobra.Command {
	root, _ := newCLI()
	return root
}

// newCLI returns the root command and the globals its commands share.
func newCLI() (*cobra.Command, *globals) {
	g := &globals{}
	root := &cobra.Command{
		Use:   "pcm",
		Short: "Package Command Manager: deliver commands to fleets of machines and prove what ran where",
		Long: `pcm delivers jobs (command lines, optionally of a package) to workstations and servers over
NATS JetStream. Publishers and CI publish jobs; an agent on every client runs them at the right
time and reports a status for each; the whole history can be replayed for audit.

Every flag can also be set by an environment variable: PCM_ followed by the flag's name in
capitals with dashes as underscores (--url is PCM_URL, --state-dir is PCM_STATE_DIR). A flag
that means something else in each command (--output, --client, --group, --name, --force,
--version, --out, --all, --channel, --percent, --release-key, --rollback) takes the command's name too: PCM_AUDIT_OUTPUT, PCM_PUBLISH_CLIENT,
PCM_PACKAGE_PUSH_VERSION. A flag given on the command line wins over its variable, and both win
over --config, a YAML file of settings (what pcm agent install and pcm broker install write).`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			parent := cmd.Context()
			if parent == nil {
				parent = context.Background()
			}
			ctx, stop := context.WithCancelCause(parent)
			cmd.SetContext(ctx)
			g.stop = stop
			if err := applyEnv(cmd); err != nil {
				return err
			}
			if err := applyConfigFile(cmd, g.config); err != nil {
				return err
			}
			log, err := newLogger(g.logLevel, g.logFile)
			if err != nil {
				return err
			}
			g.log = log
			return nil
		},
	}
	root.PersistentFlags().StringVar(&g.url, "url", "nats://127.0.0.1:4222", "NATS URL(s) of the pcm broker, comma-separated for a cluster")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.PersistentFlags().StringVar(&g.logFile, "log-file", "", "append logs (JSON lines) to this file instead of stderr (a Windows service has no stderr)")
	root.PersistentFlags().StringVar(&g.config, "config", "", "YAML file of settings: flag names as keys (url, creds, client-id, ...), a map per command (agent:, desktop:) for its own; flags and environment variables win")
	g.sec.register(root)
	root.AddCommand(
		newPublishCmd(g), newCancelCmd(g), newEnrollCmd(g),
		newAgentCmd(g), newDesktopCmd(g), newVersionCmd(),
		newStatusCmd(g), newAuditCmd(g), newAgentsCmd(g), newPackageCmd(g), newKeysCmd(),
		newCredsCmd(g), newRevokeCmd(g), newControllerCmd(g), newHaltCmd(g), newResumeCmd(g), newReleaseCmd(g), newConsoleCmd(g),
	)
	root.AddCommand(newWindowCmd(g))
	root.AddCommand(brokerCommands(g)...)
	annotateEnv(root)
	return root, g
}

// scopedFlags are the flags that mean something else in each command that
// has them (an audit's --client filters, a publish's --client targets; the
// outputs differ; PCM_VERSION is also docker-compose.yml's image tag; an
// agent's --channel is the one it follows, a release's the one it is
// published on): their
// variable names the command, so that one set for a command never changes
// another.
var scopedFlags = map[string]bool{"output": true, "client": true, "group": true, "name": true, "force": true, "version": true, "out": true, "all": true,
	"channel": true, "percent": true, "release-key": true, "rollback": true, "site": true}

// envName is the environment variable of flag in cmd: PCM_STATE_DIR for
// --state-dir, PCM_AUDIT_OUTPUT for pcm audit's --output.
func envName(cmd *cobra.Command, flag string) string {
	name := flag
	if scopedFlags[flag] {
		name = strings.Join(append(strings.Fields(cmd.CommandPath())[1:], flag), "_")
	}
	return envPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// applyEnv sets every flag of cmd not given on the command line from its
// environment variable, if set.
func applyEnv(cmd *cobra.Command) error {
	var errs []string
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Changed || f.Name == "help" {
			return
		}
		name := envName(cmd, f.Name)
		v, ok := os.LookupEnv(name)
		if !ok {
			return
		}
		if err := cmd.Flags().Set(f.Name, v); err != nil {
			errs = append(errs, fmt.Sprintf("%s=%q: %v", name, v, err))
		}
	})
	if len(errs) > 0 {
		return fmt.Errorf("bad environment: %s", strings.Join(errs, "; "))
	}
	return nil
}

// annotateEnv appends each flag's environment variable to its help text.
func annotateEnv(cmd *cobra.Command) {
	note := func(f *pflag.Flag) {
		if f.Name != "help" && !strings.Contains(f.Usage, "[$"+envPrefix) {
			f.Usage += " [$" + envName(cmd, f.Name) + "]"
		}
	}
	cmd.LocalFlags().VisitAll(note)
	cmd.PersistentFlags().VisitAll(note)
	for _, c := range cmd.Commands() {
		annotateEnv(c)
	}
}

// exactArgs accepts exactly n arguments, and otherwise says what the
// command takes: "pcm status takes 1 argument, got 0: usage: pcm status JOB
// [flags]".
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) == n {
			return nil
		}
		return fmt.Errorf("%s takes %s, got %d: usage: %s", cmd.CommandPath(), plural(n, "argument"), len(args), cmd.UseLine())
	}
}
