package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/pcm-project/pcm/agent"
)

// desktopFlags configure the desktop face.
type desktopFlags struct {
	clientID, stateDir string
	lease, grace       time.Duration
	busyNotice         bool
	page, notify       bool
	trust              trustFlags
	// onNotice, set before the session starts, gets each notice with its
	// kind (the page, native notifications).
	onNotice func(agent.Notice)
	// log is the desktop's logger (desktopLogger), once open made it.
	log *zap.Logger
}

func (f *desktopFlags) register(cmd *cobra.Command) {
	pf := cmd.PersistentFlags()
	pf.StringVar(&f.clientID, "client-id", "", "this client's id (default: the host name, sanitized)")
	pf.StringVar(&f.stateDir, "state-dir", "", "directory of the user's job directories and logs (default: per user and client)")
	pf.DurationVar(&f.lease, "lease", agent.DefaultLease, "lease of the service-versus-desktop lock")
	pf.BoolVar(&f.busyNotice, "busy-notice", true, "tell the user when a background installation holds the client (--busy-notice=false: silent; the desktop still waits for the lock)")
	f.trust.register(pf)
}

// open checks the configuration, connects and builds the desktop face;
// lines for the user go to stdout.
func (f *desktopFlags) open(cmd *cobra.Command, g *globals) (*agent.Desktop, *nats.Conn, error) {
	if f.clientID == "" {
		f.clientID = defaultClientID()
	}
	keys, err := f.trust.resolve(g.sec.creds, f.clientID)
	if err != nil {
		return nil, nil, err
	}
	stateDir := f.stateDir
	if stateDir == "" {
		stateDir = defaultDesktopStateDir(f.clientID)
	}
	f.stateDir = stateDir
	log, err := desktopLogger(cmd, g, stateDir)
	if err != nil {
		return nil, nil, err
	}
	f.log = log
	out := cmd.OutOrStdout()
	cfg := agent.DesktopConfig{
		Config: agent.Config{ClientID: f.clientID, StateDir: stateDir, Version: version, Lease: f.lease, Logger: log,
			TrustedKeys: keys.publishers, ControllerKeys: keys.controllers, Grace: f.grace},
		NoBusyNotice: !f.busyNotice,
		Notify:       func(line string) { fmt.Fprintln(out, line) },
		OnNotice: func(n agent.Notice) {
			if f.onNotice != nil {
				f.onNotice(n)
			}
		},
	}
	c, err := clockFromEnv(log)
	if err != nil {
		return nil, nil, err
	}
	cfg.Clock = c
	// Checked before the broker is reached: a bad value fails at once.
	if err := cfg.Validate(); err != nil {
		return nil, nil, err
	}
	nc, err := g.dial(agent.ConnectOptions("pcm desktop " + f.clientID))
	if err != nil {
		return nil, nil, err
	}
	d, err := agent.NewDesktop(nc, cfg)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return d, nc, nil
}

func newDesktopCmd(g *globals) *cobra.Command {
	var f desktopFlags
	cmd := &cobra.Command{
		Use:   "desktop",
		Short: "Run the agent's desktop face in the user's session",
		Long: `The desktop face runs as the logged-in user. Without a subcommand it stays running for the
session: it shows the jobs offered to this client as they arrive and runs each mandatory job that
needs the user (published with --interactive) at its mandatory time, after counting down --grace
so the user can save their work; the service runs the automated ones. Before each line it checks
that the job is still pending here: it says nothing of a job the service ran, that was cancelled
or that expired. It never shows or runs background (service-only) jobs. When the service holds
the client it says which job it runs and waits; it never gives up because of the lock.

The session serves the Self Service page on loopback, for this user only (pcm desktop open opens
it; docs/desktop-api.md describes its API): the jobs the user may install, the required ones with
their countdown and a Defer button, what ran here, and a banner while a background installation
holds the computer. It shows native notifications too (--notify); a click on one opens the page
(on macOS only with terminal-notifier installed). Logs go to desktop.log in the state dir, and to
stderr only with --log-level or --log-file, or on errors.

A job published with --deferrals is counted down too, whichever face runs it: each notice says
how many deferrals are left and the deadline, and pcm desktop defer JOB puts it off. The service
holds such a job for its countdown and its deferrals only while a desktop session is open (this
command without a subcommand): with nobody logged in, it runs the job at its time. A job this
client first sees after its mandatory time (it was off) with --grace-after-offline is announced
and run only after that grace. When a job asks for a restart, the session counts the restart
down, with a final warning.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, nc, err := f.open(cmd, g)
			if err != nil {
				return err
			}
			defer nc.Close()
			return runSession(cmd, &f, d)
		},
	}
	f.register(cmd)
	cmd.Flags().DurationVar(&f.grace, "grace", agent.DefaultGrace, "countdown before a mandatory job that needs the user, or that the user may defer, runs (give the service the same)")
	cmd.Flags().BoolVar(&f.page, "page", true, "serve the Self Service page on loopback for this user (pcm desktop open opens it)")
	cmd.Flags().BoolVar(&f.notify, "notify", true, "show native notifications: a mandatory job coming, the busy notice, a job finished or failed, a restart coming; a click on one opens the page")
	cmd.AddCommand(newDesktopListCmd(g, &f), newDesktopRunCmd(g, &f), newDesktopDeferCmd(g, &f), newDesktopOpenCmd(&f))
	return cmd
}

func newDesktopListCmd(g *globals, f *desktopFlags) *cobra.Command {
	var output string
	var utc bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the jobs this client's user may run now",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output, "table", "json", "yaml"); err != nil {
				return err
			}
			d, nc, err := f.open(cmd, g)
			if err != nil {
				return err
			}
			defer nc.Close()
			jobs, err := d.List(cmd.Context())
			if err != nil {
				return err
			}
			if structured(output) {
				if jobs == nil {
					return writeDocument(cmd.OutOrStdout(), output, []any{})
				}
				return writeDocument(cmd.OutOrStdout(), output, jobs)
			}
			out := cmd.OutOrStdout()
			disp := newDisplay(out, utc)
			t := newTable(out)
			row(t, "JOB", "NAME", "COMMAND", "MANDATORY AT", "DEFERRALS", "EXPIRES")
			for _, j := range jobs {
				mandatory := "optional"
				if j.MandatoryAfter != nil {
					mandatory = disp.time(*j.MandatoryAfter)
				}
				row(t, j.JobID, dash(j.Name), strings.Join(j.Command.Argv, " "), mandatory, deferralsLeft(disp, j), disp.time(j.ExpireAfter))
			}
			return t.Flush()
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output: table, json or yaml")
	addUTCFlag(cmd, &utc)
	return cmd
}

func newDesktopRunCmd(g *globals, f *desktopFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "run JOB",
		Short: "Run a job now, as the current user (waits while a background installation runs)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, nc, err := f.open(cmd, g)
			if err != nil {
				return err
			}
			defer nc.Close()
			st, err := d.Run(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "job %s %s", args[0], st.State)
			if st.ExitCode != nil {
				fmt.Fprintf(out, " (exit code %d)", *st.ExitCode)
			}
			fmt.Fprintln(out)
			if tail := strings.TrimRight(st.OutputTail, "\r\n"); tail != "" {
				fmt.Fprintln(out, "output (its last 4 KiB):")
				for _, l := range strings.Split(tail, "\n") {
					fmt.Fprintln(out, "  "+l)
				}
			}
			if st.State != "succeeded" {
				return &exitError{code: 1, err: fmt.Errorf("job %s %s: %s", args[0], st.State, st.Reason)}
			}
			return nil
		},
	}
}

// defaultDesktopStateDir is per user: under the user's state directory.
func defaultDesktopStateDir(client string) string {
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "pcm-desktop", client)
	}
	return filepath.Join(home, ".local", "state", "pcm", client+"-desktop")
}

// deferralsLeft is the DEFERRALS cell of pcm desktop list: how many are
// left, and the deadline; "-" for a job the user may not defer.
func deferralsLeft(disp display, j agent.Listed) string {
	if j.DeferralsLeft == nil {
		return "-"
	}
	s := fmt.Sprintf("%d of %d left", *j.DeferralsLeft, j.Deferrals.Max)
	if d := j.Deferrals.Deadline; d != nil {
		s += ", deadline " + disp.time(*d)
	}
	return s
}

func newDesktopDeferCmd(g *globals, f *desktopFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "defer JOB",
		Short: "Put a mandatory job off, as the job allows (how many times, how long, until its deadline)",
		Long: `Records that the user defers the job: it then runs neither at the desktop nor by the service
before the deferral ends, and then after the grace countdown again. The deferral is a status of
the job on this client (pcm audit shows who deferred it, and how many deferrals are left). It is
refused, saying why, for a job that allows none, has none left, is past its deadline, is not
mandatory yet, is running or is over.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, nc, err := f.open(cmd, g)
			if err != nil {
				return err
			}
			defer nc.Close()
			st, err := d.Defer(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "job %s deferred until %s (%d of %d deferrals left)\n", args[0],
				st.DeferredUntil.Local().Format(time.DateTime), st.DeferralsLeft(), st.DeferralsMax)
			return nil
		},
	}
}
