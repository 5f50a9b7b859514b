package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/packages"
)

func newPackageCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "package",
		Short: "Store package content in the broker (PCM_PACKAGES): push, list, remove",
		Long: `A package is content a job's command runs in: an installer, or a script and its files. It is
stored once in the broker's PCM_PACKAGES object store under NAME@VERSION with its size and
sha256. A job names it with pcm publish --package NAME@VERSION; the publisher pins its sha256 in
the offer, and every agent downloads it once into its cache, verifies it and unpacks it into the
job's working directory before running the command there.`,
	}
	cmd.AddCommand(newPackagePushCmd(g), newPackageListCmd(g), newPackageRmCmd(g))
	return cmd
}

func newPackagePushCmd(g *globals) *cobra.Command {
	var opts packages.PushOptions
	var output string
	cmd := &cobra.Command{
		Use:   "push PATH --name NAME --version VERSION",
		Short: "Push a file, or a directory (packed as a deterministic tar.gz), as a package version",
		Long: `Stores the content of PATH as package NAME@VERSION: a file as it is (agents copy it into the job's
directory under its file name, executable if it is), a directory packed as a tar.gz that is the
same bytes for the same tree (sorted entries, no times, owners or umask). Prints the package's
size and sha256. An existing NAME@VERSION is never replaced unless --force is given: jobs already
published pin the old sha256 and fail on agents that have not cached it.`,
		Example: `  pcm package push ./app-installer.msi --name app --version 1.4.2
  pcm package push ./scripts/ --name lab-setup --version 2025.06 --force`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output == "text" { // before -o took the one vocabulary
				output = ""
			}
			if output != "" {
				if err := checkOutput(output, "json", "yaml"); err != nil {
					return err
				}
			}
			if err := events.ValidPackagePart("name", opts.Name); err != nil {
				return fmt.Errorf("--name: %w", err)
			}
			if err := events.ValidPackagePart("version", opts.Version); err != nil {
				return fmt.Errorf("--version: %w", err)
			}
			if opts.PushedBy == "" {
				opts.PushedBy = g.identity()
			}
			nc, js, err := g.connect("pcm package push")
			if err != nil {
				return err
			}
			defer nc.Close()
			var bar *pushBar
			if f, ok := cmd.ErrOrStderr().(*os.File); ok && term.IsTerminal(int(f.Fd())) {
				bar = &pushBar{w: f, label: events.PackageObjectName(opts.Name, opts.Version), start: time.Now()}
				opts.Progress = bar.update
			}
			info, err := packages.NewStore(js).Push(cmd.Context(), args[0], opts)
			if bar != nil {
				bar.finish(err == nil)
			}
			if err != nil {
				return err
			}
			if structured(output) {
				return writeDocument(cmd.OutOrStdout(), output, info)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "pushed %s: %s (%d bytes), sha256 %s\n", info.Spec(), humanBytes(info.Size), info.Size, info.SHA256)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Name, "name", "", "package name (A-Z a-z 0-9 . _ + ~ -)")
	fl.StringVar(&opts.Version, "version", "", "package version (A-Z a-z 0-9 . _ + ~ -)")
	fl.BoolVar(&opts.Force, "force", false, "replace an existing NAME@VERSION")
	fl.StringVar(&opts.PushedBy, "pushed-by", "", "who pushed it, recorded with the package (default: the --creds user's name, else the system user's)")
	fl.StringVarP(&output, "output", "o", "", "output: json or yaml (default: a line saying what was pushed)")
	return cmd
}

func newPackageListCmd(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the packages in the broker: name, version, size, sha256, pushed at, by whom",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output, "table", "json", "yaml"); err != nil {
				return err
			}
			nc, js, err := g.connect("pcm package list")
			if err != nil {
				return err
			}
			defer nc.Close()
			list, err := packages.NewStore(js).List(cmd.Context())
			if err != nil {
				return err
			}
			if structured(output) {
				if list == nil {
					list = []packages.Info{}
				}
				return writeDocument(cmd.OutOrStdout(), output, list)
			}
			return renderPackages(cmd.OutOrStdout(), list)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output: table, json or yaml")
	return cmd
}

func newPackageRmCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rm NAME@VERSION",
		Short: "Remove a package version from the broker",
		Long: `Removes NAME@VERSION from PCM_PACKAGES. Jobs that name it still run on agents that have it
cached; the others report them failed (package missing).`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, _, err := events.ParsePackageSpec(args[0]); err != nil {
				return err
			}
			nc, js, err := g.connect("pcm package rm")
			if err != nil {
				return err
			}
			defer nc.Close()
			if err := packages.NewStore(js).Remove(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed %s\n", args[0])
			return nil
		},
	}
}

// renderPackages writes the package table.
func renderPackages(w io.Writer, list []packages.Info) error {
	if len(list) == 0 {
		_, err := fmt.Fprintln(w, "no packages (push one with pcm package push PATH --name N --version V)")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tVERSION\tSIZE\tFORMAT\tSHA256\tPUSHED AT\tPUSHED BY")
	for _, p := range list {
		sha := p.SHA256
		if !p.Complete {
			sha = "(incomplete push: push it again with --force)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, p.Version, humanBytes(p.Size), p.Format, sha,
			p.PushedAt.Local().Format(time.RFC3339), orDefault(p.PushedBy, "-"))
	}
	return tw.Flush()
}

// humanBytes renders a size in binary units.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

// pushBar draws the progress of an upload on a terminal.
type pushBar struct {
	w     io.Writer
	label string
	start time.Time
	last  time.Time
	sent  int64
	total int64
}

// pushBarWidth is the number of cells of the bar.
const pushBarWidth = 30

func (b *pushBar) update(sent, total int64) {
	b.sent, b.total = sent, total
	if now := time.Now(); now.Sub(b.last) >= 100*time.Millisecond {
		b.last = now
		b.draw()
	}
}

func (b *pushBar) draw() {
	rate := float64(b.sent) / max(time.Since(b.start).Seconds(), 1e-3)
	if b.total <= 0 {
		fmt.Fprintf(b.w, "\r%s  %s  %s/s   ", b.label, humanBytes(b.sent), humanBytes(int64(rate)))
		return
	}
	done := min(int(float64(pushBarWidth)*float64(b.sent)/float64(b.total)), pushBarWidth)
	fmt.Fprintf(b.w, "\r%s [%s%s] %3d%%  %s / %s  %s/s   ", b.label, strings.Repeat("=", done), strings.Repeat(" ", pushBarWidth-done),
		int(100*b.sent/b.total), humanBytes(b.sent), humanBytes(b.total), humanBytes(int64(rate)))
}

func (b *pushBar) finish(ok bool) {
	if b.sent > 0 || ok {
		b.draw()
	}
	fmt.Fprintln(b.w)
}

// byteSize is a flag holding a size in bytes, written as 2GiB, 500MiB,
// 1.5G, 300MB or a plain number of bytes.
type byteSize int64

func (s *byteSize) String() string {
	n := int64(*s)
	for _, u := range []struct {
		suffix string
		size   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.size && n%u.size == 0 {
			return strconv.FormatInt(n/u.size, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

func (s *byteSize) Set(v string) error {
	n, err := parseByteSize(v)
	if err != nil {
		return err
	}
	*s = byteSize(n)
	return nil
}

func (s *byteSize) Type() string { return "size" }

// parseByteSize reads a size: a number with an optional unit, binary (K,
// KiB, M, MiB, G, GiB, T, TiB) or decimal (KB, MB, GB, TB).
func parseByteSize(v string) (int64, error) {
	s := strings.TrimSpace(v)
	i := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, unit := s, ""
	if i >= 0 {
		num, unit = s[:i], strings.TrimSpace(s[i:])
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("size %q: give a number of bytes with an optional unit, as in 2GiB or 500MiB", v)
	}
	mult := map[string]float64{
		"": 1, "b": 1,
		"k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20, "g": 1 << 30, "gib": 1 << 30, "t": 1 << 40, "tib": 1 << 40,
		"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
	}[strings.ToLower(unit)]
	if mult == 0 {
		return 0, fmt.Errorf("size %q: unknown unit %q: use B, KiB, MiB, GiB, TiB (or KB, MB, GB, TB)", v, unit)
	}
	return int64(f * mult), nil
}
