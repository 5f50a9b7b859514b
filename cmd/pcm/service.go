package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/pcm-project/pcm/internal/osservice"
)

// serviceFace is a long-running pcm command that pcm FACE install
// registers with the platform's service manager: the agent or the broker.
type serviceFace struct {
	// face is the command: agent, broker.
	face string
	// spec describes the service; Exec and Args are filled in.
	spec osservice.Spec
	// desktop, when set, also registers pcm desktop in each user's session.
	desktop bool
	// register adds the face's own flags to install, so that they can be
	// written to its configuration file.
	register func(*cobra.Command)
	// check validates the settings install is about to write (the flags of
	// install after the configuration file and the command line).
	check func(*cobra.Command) error
	// defaults are settings written to a new configuration file when not
	// given (the broker's store at a fixed place rather than ./pcm-data).
	defaults func() map[string]string
}

// stopTimeout is how long the agent and the broker may take to stop: the
// agent kills a running job's process tree and journals its interruption.
const stopTimeout = 60 * time.Second

// serviceCommands are pcm FACE install, uninstall, start, stop and status.
func serviceCommands(g *globals, sf serviceFace) []*cobra.Command {
	name := sf.spec.Name
	install := &cobra.Command{
		Use:   "install [flags]",
		Short: fmt.Sprintf("Register pcm %s as a service of this machine (systemd, launchd, Windows) and start it", sf.face),
		Long: fmt.Sprintf(`Registers the service %s with the platform's service manager: a systemd unit on Linux, a
launchd daemon on macOS, a service of the Service Control Manager on Windows. It starts at boot,
restarts when it exits, and has %s to stop (a running job is killed and its interruption
journaled). The service runs this binary with --config FILE (default %s). When FILE does not
exist, install writes it from the flags given here (the flags of pcm %s); when it exists, install
uses it as it is. Needs root (an administrator on Windows).`, name, stopTimeout, defaultConfigPath(sf.face), sf.face),
		Args:        cobra.NoArgs,
		Annotations: map[string]string{annotConfigMayBeMissing: "yes"},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return installService(cmd.Context(), cmd, g, sf)
		},
	}
	if sf.register != nil {
		sf.register(install)
	}
	var noStart bool
	install.Flags().BoolVar(&noStart, "no-start", false, "register the service without starting it")
	if sf.desktop {
		install.Flags().Bool("no-desktop", false, "do not start pcm desktop in each user's session")
	}

	simple := func(verb, short string, do func(context.Context, osservice.Manager, string) error) *cobra.Command {
		return &cobra.Command{
			Use: verb, Short: short, Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				m, err := osservice.New()
				if err != nil {
					return err
				}
				if err := do(cmd.Context(), m, name); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %s %s\n", verb, name, "done")
				return nil
			},
		}
	}
	uninstall := simple("uninstall", fmt.Sprintf("Stop pcm %s's service and remove its registration (its configuration and state stay)", sf.face),
		func(ctx context.Context, m osservice.Manager, name string) error {
			err := m.Uninstall(ctx, name)
			if sf.desktop {
				if derr := m.UninstallDesktop(ctx, desktopService); derr != nil && !errors.Is(derr, osservice.ErrNotInstalled) {
					err = errors.Join(err, derr)
				}
			}
			return err
		})
	start := simple("start", fmt.Sprintf("Start pcm %s's service", sf.face), func(ctx context.Context, m osservice.Manager, name string) error {
		return m.Start(ctx, name)
	})
	stop := simple("stop", fmt.Sprintf("Stop pcm %s's service (a running job is killed and its interruption journaled)", sf.face),
		func(ctx context.Context, m osservice.Manager, name string) error { return m.Stop(ctx, name) })

	var output string
	status := &cobra.Command{
		Use: "status", Short: fmt.Sprintf("Show pcm %s's service as the service manager sees it", sf.face), Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output, "table", "json"); err != nil {
				return err
			}
			m, err := osservice.New()
			if err != nil {
				return err
			}
			st, err := m.Status(cmd.Context(), name)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if output == "json" {
				return json.NewEncoder(w).Encode(st)
			}
			t := newTable(w)
			row(t, "SERVICE", "MANAGER", "STATE", "PID", "AT BOOT", "COMMAND")
			pid := "-"
			if st.PID > 0 {
				pid = strconv.Itoa(st.PID)
			}
			row(t, st.Name, st.Manager, string(st.State), pid, strconv.FormatBool(st.Enabled), dash(st.Command))
			return t.Flush()
		},
	}
	status.Flags().StringVarP(&output, "output", "o", "table", "output: table or json")
	return []*cobra.Command{install, uninstall, start, stop, status}
}

// desktopService is the name under which the desktop face starts in each
// user's session.
const desktopService = "pcm-desktop"

// installService writes the configuration file when absent, checks it,
// registers the service (and the desktop face), and starts it.
func installService(ctx context.Context, cmd *cobra.Command, g *globals, sf serviceFace) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding this binary: %w", err)
	}
	if exe, err = filepath.EvalSymlinks(exe); err != nil {
		return fmt.Errorf("finding this binary: %w", err)
	}
	path := g.config
	if path == "" {
		path = defaultConfigPath(sf.face)
	}
	if path, err = filepath.Abs(path); err != nil {
		return err
	}
	m, err := osservice.New()
	if err != nil {
		return err
	}
	if err := sf.check(cmd); err != nil {
		return err
	}
	spec := sf.spec
	spec.Exec, spec.Args = exe, []string{sf.face, "--config", path}
	if spec.StopTimeout == 0 {
		spec.StopTimeout = stopTimeout
	}
	if err := spec.Validate(); err != nil {
		return err
	}
	wrote := false
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		extra := map[string]string{}
		if sf.defaults != nil {
			extra = sf.defaults()
		}
		if runtime.GOOS == "windows" {
			extra["log-file"] = filepath.Join(programData(), "pcm", sf.face+".log")
		}
		if err := writeConfigFile(cmd, path, map[string]bool{"no-start": true, "no-desktop": true}, extra); err != nil {
			return err
		}
		wrote = true
	} else if g.config == "" {
		return fmt.Errorf("%w: %s exists: pass --config %s to install with it, or remove it to have install write it from the flags", errConfigFile, path, path)
	}
	out := cmd.OutOrStdout()
	if wrote {
		fmt.Fprintf(out, "wrote %s\n", path)
	}
	if err := m.Install(ctx, spec); err != nil {
		return err
	}
	fmt.Fprintf(out, "installed %s (%s): %s\n", spec.Name, m.Name(), osservice.WindowsCommandLine(spec.Exec, spec.Args))
	if sf.desktop {
		if skip, _ := cmd.Flags().GetBool("no-desktop"); !skip {
			d := osservice.Spec{Name: desktopService, DisplayName: "pcm desktop", Description: "pcm desktop: the jobs this client's user may run",
				Exec: exe, Args: []string{"desktop", "--config", path}}
			if err := m.InstallDesktop(ctx, d); err != nil {
				return err
			}
			fmt.Fprintf(out, "installed %s: starts in each user's session at logon\n", desktopService)
		}
	}
	if noStart, _ := cmd.Flags().GetBool("no-start"); noStart {
		return nil
	}
	if err := m.Start(ctx, spec.Name); err != nil {
		return err
	}
	fmt.Fprintf(out, "started %s\n", spec.Name)
	return nil
}
