package main

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/fleet"
	"github.com/pcm-project/pcm/maintenance"
)

// windowTarget are the flags that name whose windows: --client, --group or
// --all, exactly one.
type windowTarget struct {
	client, group string
	all           bool
}

func (w *windowTarget) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&w.client, "client", "", "the windows of this client")
	cmd.Flags().StringVar(&w.group, "group", "", "the windows of this group")
	cmd.Flags().BoolVar(&w.all, "all", false, "the windows of every client")
}

// target is the one target the flags name.
func (w *windowTarget) target() (events.Target, error) {
	var ts []events.Target
	if w.client != "" {
		ts = append(ts, events.Target{Kind: events.TargetClient, Name: w.client})
	}
	if w.group != "" {
		ts = append(ts, events.Target{Kind: events.TargetGroup, Name: w.group})
	}
	if w.all {
		ts = append(ts, events.Target{Kind: events.TargetAll})
	}
	if len(ts) != 1 {
		return events.Target{}, fmt.Errorf("name whose windows: one of --client ID, --group G or --all")
	}
	return ts[0], ts[0].Validate()
}

func newWindowCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "window",
		Short: "Maintenance windows: when the jobs that require one (pcm publish --in-window) may start",
		Long: `Maintenance windows are set per client, per group or for every client, in the PCM_WINDOWS bucket.
A client's windows are all of those that apply to it (its own, its groups' and every client's); a
job published with --in-window starts on it only inside one of them, and only when its timeout
fits in what is left of the window, and a restart such a job asks for waits for one too.

A window is written DAYS HH:MM-HH:MM ZONE (Mon-Fri 22:00-04:00 Europe/Berlin: an end before the
start is on the next day; Sat,Sun 00:00-24:00 UTC; daily 02:00-03:00 America/New_York), or, once,
DATE HH:MM-HH:MM ZONE (2026-12-24 08:00-18:00 Europe/Berlin). A window follows the daylight saving
changes of its zone. Setting windows needs an admin's credentials; publishers and auditors list them.`,
	}
	cmd.AddCommand(newWindowSetCmd(g), newWindowListCmd(g), newWindowRmCmd(g))
	return cmd
}

func newWindowSetCmd(g *globals) *cobra.Command {
	var w windowTarget
	var output string
	cmd := &cobra.Command{
		Use:   "set (--client ID | --group G | --all) WINDOW [WINDOW...]",
		Short: "Set (replace) the maintenance windows of a client, a group or every client",
		Example: `  pcm window set --group lab "Mon-Fri 22:00-04:00 Europe/Berlin"
  pcm window set --client ws-042 "Sat,Sun 00:00-24:00 UTC" "2026-12-24 08:00-18:00 Europe/Berlin"`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output, "text", "json"); err != nil {
				return err
			}
			t, err := w.target()
			if err != nil {
				return err
			}
			var ws []events.Window
			for _, spec := range args {
				win, err := events.ParseWindow(spec)
				if err != nil {
					return err
				}
				ws = append(ws, win)
			}
			// Checked before the broker is reached.
			if err := maintenance.Check(ws, time.Now()); err != nil {
				return err
			}
			nc, js, err := g.connect("pcm window set")
			if err != nil {
				return err
			}
			defer nc.Close()
			e, err := maintenance.New(js).Set(cmd.Context(), t, ws, defaultPublisherName())
			if err != nil {
				return err
			}
			if output == "json" {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(e)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s\n", t, events.Windows(e.Windows))
			return nil
		},
	}
	w.register(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output: text or json")
	return cmd
}

func newWindowRmCmd(g *globals) *cobra.Command {
	var w windowTarget
	cmd := &cobra.Command{
		Use:   "rm (--client ID | --group G | --all)",
		Short: "Remove the maintenance windows of a client, a group or every client",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, err := w.target()
			if err != nil {
				return err
			}
			nc, js, err := g.connect("pcm window rm")
			if err != nil {
				return err
			}
			defer nc.Close()
			return maintenance.New(js).Remove(cmd.Context(), t)
		},
	}
	w.register(cmd)
	return cmd
}

func newWindowListCmd(g *globals) *cobra.Command {
	var output, client string
	var utc bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the maintenance windows, with the next opening of each",
		Long: `Lists the windows of every client, group and of all clients, with when each set opens next. With
--client, lists the windows that apply to that client (its own, its enrolled groups' and every
client's) and when the next of them opens.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output, "table", "json"); err != nil {
				return err
			}
			nc, js, err := g.connect("pcm window list")
			if err != nil {
				return err
			}
			defer nc.Close()
			entries, err := maintenance.New(js).List(cmd.Context())
			if err != nil {
				return err
			}
			if client != "" {
				e, ok, err := fleet.EnrollmentOf(cmd.Context(), js, client)
				if err != nil {
					return err
				}
				if !ok {
					return fmt.Errorf("client %s is not enrolled: pcm enroll %s --group ...", client, client)
				}
				var mine []maintenance.Entry
				for _, en := range entries {
					if len(maintenance.Of([]maintenance.Entry{en}, client, e.Groups)) > 0 {
						mine = append(mine, en)
					}
				}
				entries = mine
			}
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if entries == nil {
					entries = []maintenance.Entry{}
				}
				return enc.Encode(entries)
			}
			d := newDisplay(cmd.OutOrStdout(), utc)
			t := newTable(cmd.OutOrStdout())
			row(t, "TARGET", "WINDOWS", "NEXT OPENING", "SET BY", "AT")
			now := time.Now()
			for _, e := range entries {
				next := "never"
				if o, ok := events.Windows(e.Windows).Next(now, 0); ok && !o.Start.After(now) {
					next = "open now, until " + d.time(o.End)
				} else if ok {
					next = d.time(o.Start)
				}
				row(t, e.Target.String(), dash(events.Windows(e.Windows).String()), next, dash(e.UpdatedBy), d.time(e.UpdatedAt))
			}
			if err := t.Flush(); err != nil {
				return err
			}
			if len(entries) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "no maintenance windows set")
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output: table or json")
	cmd.Flags().StringVar(&client, "client", "", "only the windows that apply to this client")
	addUTCFlag(cmd, &utc)
	return cmd
}
