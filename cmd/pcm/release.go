package main

import (
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/fleet"
	"github.com/pcm-project/pcm/releases"
)

func newReleaseCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "release",
		Short: "Publish agent releases that agents install themselves: push, promote, list, status",
		Long: `An agent release is one pcm binary per os/arch, stored as packages in PCM_PACKAGES, and a
manifest (version, channel, sha256 per platform) signed by a release key, stored in PCM_RELEASES.
An agent started with --channel C --release-keys KEY watches channel C: when a newer release
signed by KEY appears, it downloads its platform's binary, verifies the sha256, waits until no
job runs (holding the client's lock so that the desktop starts none), keeps its previous binary,
swaps in the new one and restarts. If the new version does not connect, check its journal and
report its version within --update-health-timeout, or exits, the previous binary is restored
and the agent's inventory says why the update failed (pcm release status V).

Release keys are nkeys made by pcm keys new, like job-signing keys, but trusted separately
(--release-keys, not --trusted-keys): a release replaces the agent on every client of a channel.`,
	}
	cmd.AddCommand(newReleasePushCmd(g), newReleasePromoteCmd(g), newReleaseListCmd(g), newReleaseStatusCmd(g))
	return cmd
}

func newReleasePushCmd(g *globals) *cobra.Command {
	var opts releases.PushOptions
	var key string
	cmd := &cobra.Command{
		Use:   "push --version V --channel C --release-key FILE [OS/ARCH=]BINARY...",
		Short: "Push agent binaries as release V and publish it on a channel",
		Long: `Stores each BINARY as package pcm-OS-ARCH@V and a manifest of version V signed with the
release key under PCM_RELEASES, then makes V the release of the channel: agents on it install it
at once (once idle). A BINARY's platform is given as OS/ARCH=BINARY, or read from a name such as
pcm-linux-amd64 or pcm-windows-amd64.exe. A version is never replaced unless --force is given.`,
		Example: `  GOOS=linux GOARCH=amd64 go build -ldflags "-X main.version=v1.5.0" -o pcm-linux-amd64 ./cmd/pcm
  GOOS=windows GOARCH=amd64 go build -ldflags "-X main.version=v1.5.0" -o pcm-windows-amd64.exe ./cmd/pcm
  pcm release push --version v1.5.0 --channel beta --release-key release.nk pcm-linux-amd64 pcm-windows-amd64.exe`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			kp, err := signerFrom(key)
			if err != nil {
				return fmt.Errorf("--release-key: %w", err)
			}
			if kp == nil {
				return fmt.Errorf("--release-key is required: agents install only signed releases (pcm keys new release.nk)")
			}
			opts.Key = kp
			opts.Binaries = map[string]string{}
			for _, a := range args {
				platform, path, err := releaseBinaryArg(a)
				if err != nil {
					return err
				}
				if _, dup := opts.Binaries[platform]; dup {
					return fmt.Errorf("two binaries for %s", platform)
				}
				opts.Binaries[platform] = path
			}
			opts.Publisher = defaultPublisherName()
			nc, js, err := g.connect("pcm release push")
			if err != nil {
				return err
			}
			defer nc.Close()
			r, err := releases.NewStore(js).Push(cmd.Context(), opts)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "pushed release %s on channel %s%s: %s\n", r.Version, r.Channel, percentNote(r), platformsOf(r))
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Version, "version", "", "release version, MAJOR.MINOR.PATCH[-PRERELEASE] (what the binaries report: -ldflags \"-X main.version=V\")")
	fl.StringVar(&opts.Channel, "channel", "stable", "channel to publish the release on")
	fl.StringVar(&key, "release-key", "", "file holding the seed of the release key (pcm keys new); agents trust its public key with --release-keys")
	fl.BoolVar(&opts.Rollback, "rollback", false, "let agents running a newer version install this one (to bring a channel back)")
	fl.IntVar(&opts.Percent, "percent", 0, "offer the release to this percentage of the channel's clients only (1-99, by a stable hash of version and client id; 0: all); promote with a higher one to widen it")
	fl.BoolVar(&opts.Force, "force", false, "replace an existing version and its binaries")
	return cmd
}

// releaseBinaryArg reads OS/ARCH=PATH, or PATH named pcm-OS-ARCH[.exe].
func releaseBinaryArg(a string) (platform, path string, err error) {
	if p, path, ok := strings.Cut(a, "="); ok {
		return p, path, nil
	}
	name := strings.TrimSuffix(filepath.Base(a), ".exe")
	parts := strings.Split(name, "-")
	if len(parts) >= 3 {
		osName, arch := parts[len(parts)-2], parts[len(parts)-1]
		if err := events.ValidPlatform(osName + "/" + arch); err == nil && osName != "*" {
			return osName + "/" + arch, a, nil
		}
	}
	return "", "", fmt.Errorf("%s: give its platform as OS/ARCH=%s, or name it pcm-OS-ARCH (pcm-linux-amd64)", a, a)
}

func percentNote(r events.Release) string {
	if r.Percent <= 0 || r.Percent >= 100 {
		return ""
	}
	return fmt.Sprintf(" (%d%% of its clients)", r.Percent)
}

func platformsOf(r events.Release) string {
	var ps []string
	for p := range r.Platforms {
		ps = append(ps, p)
	}
	sort.Strings(ps)
	return strings.Join(ps, ", ")
}

func newReleasePromoteCmd(g *globals) *cobra.Command {
	var channel, key string
	var rollback bool
	var percent int
	cmd := &cobra.Command{
		Use:   "promote V --channel C --release-key FILE",
		Short: "Make a pushed release the release of a channel",
		Long: `Signs the manifest of version V again, naming channel C, and publishes it there: agents on C
install it once idle. To bring a channel back to an older version, give --rollback (agents refuse
a downgrade otherwise).`,
		Example: `  pcm release promote v1.5.0 --channel stable --release-key release.nk`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			kp, err := signerFrom(key)
			if err != nil {
				return fmt.Errorf("--release-key: %w", err)
			}
			if kp == nil {
				return fmt.Errorf("--release-key is required: agents install only signed releases")
			}
			nc, js, err := g.connect("pcm release promote")
			if err != nil {
				return err
			}
			defer nc.Close()
			r, err := releases.NewStore(js).Promote(cmd.Context(), args[0], channel, percent, rollback, kp, defaultPublisherName())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "release %s is now the release of channel %s%s\n", r.Version, r.Channel, percentNote(r))
			return nil
		},
	}
	cmd.Flags().StringVar(&channel, "channel", "stable", "channel to promote the release to")
	cmd.Flags().StringVar(&key, "release-key", "", "file holding the seed of the release key (pcm keys new)")
	cmd.Flags().BoolVar(&rollback, "rollback", false, "let agents running a newer version install this one")
	cmd.Flags().IntVar(&percent, "percent", 0, "offer the release to this percentage of the channel's clients only (1-99, by a stable hash of version and client id; 0: all)")
	return cmd
}

func newReleaseListCmd(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the pushed agent releases and the channels that run them",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output, "table", "json", "yaml"); err != nil {
				return err
			}
			nc, js, err := g.connect("pcm release list")
			if err != nil {
				return err
			}
			defer nc.Close()
			list, err := releases.NewStore(js).List(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if structured(output) {
				return writeDocument(out, output, list)
			}
			t := newTable(out)
			row(t, "VERSION", "CHANNELS", "PLATFORMS", "PUBLISHED", "SIGNER")
			for _, e := range list {
				row(t, e.Version, dash(strings.Join(e.Channels, ",")), platformsOf(e.Release), e.PublishedAt.Format(time.RFC3339), e.Signer)
			}
			return t.Flush()
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output: table, json or yaml")
	return cmd
}

// releaseStatus is how a release is doing across the fleet.
type releaseStatus struct {
	Version string `json:"version"`
	// Running counts the clients whose inventory reports the version.
	Running int `json:"running"`
	// Failed and Refused are the clients whose update to it failed or
	// that refused it, with why.
	Failed  map[string]string `json:"failed,omitempty"`
	Refused map[string]string `json:"refused,omitempty"`
	// Clients counts the clients with an inventory.
	Clients int `json:"clients"`
}

func newReleaseStatusCmd(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status V",
		Short: "Show how many clients run release V, and which failed to update to it and why",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output, "table", "json", "yaml"); err != nil {
				return err
			}
			nc, js, err := g.connect("pcm release status")
			if err != nil {
				return err
			}
			defer nc.Close()
			list, err := fleet.Inventory(cmd.Context(), js, time.Now())
			if err != nil {
				return err
			}
			st := releaseStatusOf(args[0], list)
			out := cmd.OutOrStdout()
			if structured(output) {
				return writeDocument(out, output, st)
			}
			return renderReleaseStatus(out, st)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output: table, json or yaml")
	return cmd
}

func releaseStatusOf(version string, list []fleet.AgentEntry) releaseStatus {
	st := releaseStatus{Version: version, Failed: map[string]string{}, Refused: map[string]string{}}
	for _, a := range list {
		i := a.Info
		if i == nil {
			continue
		}
		st.Clients++
		if i.Version == version {
			st.Running++
		}
		if u := i.Update; u != nil && u.Version == version {
			switch u.State {
			case events.UpdateFailed:
				st.Failed[a.Client] = u.Reason
			case events.UpdateRefused:
				st.Refused[a.Client] = u.Reason
			}
		}
	}
	return st
}

func renderReleaseStatus(w io.Writer, st releaseStatus) error {
	fmt.Fprintf(w, "release %s: %d of %d clients run it, %d failed to update, %d refused it\n",
		st.Version, st.Running, st.Clients, len(st.Failed), len(st.Refused))
	for _, m := range []struct {
		what string
		by   map[string]string
	}{{"failed", st.Failed}, {"refused", st.Refused}} {
		clients := make([]string, 0, len(m.by))
		for c := range m.by {
			clients = append(clients, c)
		}
		sort.Strings(clients)
		for _, c := range clients {
			fmt.Fprintf(w, "  %s %s: %s\n", c, m.what, oneLine(m.by[c]))
		}
	}
	return nil
}
