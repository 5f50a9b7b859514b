package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/fleet"
)

func newAgentsCmd(g *globals) *cobra.Command {
	var output string
	var utc bool
	cmd := &cobra.Command{
		Use:   "agents",
		Short: "List the clients: inventory, heartbeat, current job and lock holder",
		Long: `Lists every client that is enrolled or has an agent inventory in PCM_AGENTS: client id, host,
os/arch, groups (as enrolled), agent version and release channel, last heartbeat, online or stale (three heartbeats
missed) or never seen (or site NAME unreachable, for a client of a branch site whose link to the hub is down:
the last heartbeat is then the last the hub heard of it), the job it is running, and who holds its service-versus-desktop lock.
pcm agents show CLIENT adds the client's pending jobs and its last statuses.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output, "table", "json", "yaml"); err != nil {
				return err
			}
			nc, js, err := g.connect("pcm agents")
			if err != nil {
				return err
			}
			defer nc.Close()
			list, err := fleet.Inventory(cmd.Context(), js, time.Now())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if structured(output) {
				return writeDocument(out, output, list)
			}
			return renderAgents(out, newDisplay(out, utc), list)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output: table, json or yaml")
	addUTCFlag(cmd, &utc)
	cmd.AddCommand(newAgentsShowCmd(g))
	return cmd
}

func newAgentsShowCmd(g *globals) *cobra.Command {
	var output string
	var utc bool
	var last int
	cmd := &cobra.Command{
		Use:   "show CLIENT",
		Short: "Show one client: inventory, pending jobs and last statuses",
		Long: `Shows one client's inventory, its pending jobs (offered to it and not settled by a final status:
received and waiting, or not received yet) and its last statuses, oldest first.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output, "table", "json", "yaml"); err != nil {
				return err
			}
			nc, js, err := g.connect("pcm agents show")
			if err != nil {
				return err
			}
			defer nc.Close()
			detail, err := fleet.ShowAgent(cmd.Context(), js, args[0], last, time.Now())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if structured(output) {
				return writeDocument(out, output, detail)
			}
			return renderAgentDetail(out, newDisplay(out, utc), detail)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output: table, json or yaml")
	cmd.Flags().IntVar(&last, "last", fleet.DefaultRecentStatuses, "how many of the last statuses to show")
	addUTCFlag(cmd, &utc)
	return cmd
}

// agentCells are the inventory columns of one client.
func agentCells(d display, a fleet.AgentEntry) []string {
	host, platform, version, channel, seen, job := "-", "-", "-", "-", "-", "-"
	if i := a.Info; i != nil {
		host, platform, version, channel, seen, job = dash(i.Host), i.OS+"/"+i.Arch, dash(i.Version), dash(i.Channel), d.time(i.LastSeen), dash(i.CurrentJob)
	}
	state := stateLabel(string(a.Liveness))
	if a.Liveness == fleet.SiteUnreachable && a.Enrollment != nil {
		state = "site " + a.Enrollment.Site + " unreachable"
	}
	return []string{a.Client, host, platform, dash(strings.Join(a.Groups(), ",")), version, channel, seen,
		d.paint(string(a.Liveness), state), job, lockCell(a.Lock)}
}

// lockCell describes a lock holder briefly: "desktop/ann (job J)".
func lockCell(l *events.LockInfo) string {
	if l == nil {
		return "-"
	}
	s := string(l.Holder)
	if l.User != "" {
		s += "/" + l.User
	}
	if l.JobID != "" {
		s += " (job " + l.JobID + ")"
	}
	return s
}

func renderAgents(w io.Writer, d display, list []fleet.AgentEntry) error {
	t := newTable(w)
	row(t, "CLIENT", "HOST", "OS/ARCH", "GROUPS", "VERSION", "CHANNEL", "LAST SEEN", "STATE", "JOB", "LOCK")
	counts := map[fleet.Liveness]int{}
	for _, a := range list {
		row(t, agentCells(d, a)...)
		counts[a.Liveness]++
	}
	if err := t.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "%s: %d online, %d stale, %d never seen", plural(len(list), "client"),
		counts[fleet.Online], counts[fleet.Stale], counts[fleet.NeverSeen])
	if n := counts[fleet.SiteUnreachable]; n > 0 {
		fmt.Fprintf(w, ", %d behind an unreachable site", n)
	}
	fmt.Fprintln(w)
	return nil
}

func renderAgentDetail(w io.Writer, d display, a fleet.AgentDetail) error {
	t := newTable(w)
	cells := agentCells(d, a.AgentEntry)
	for i, name := range []string{"client", "host", "os/arch", "groups", "version", "channel", "last seen", "state", "current job", "lock"} {
		row(t, name+":", cells[i])
	}
	if i := a.Info; i != nil {
		row(t, "started:", d.time(i.StartedAt))
		if u := i.Update; u != nil {
			row(t, "last update:", updateCell(d, *u))
		}
		row(t, "heartbeat:", time.Duration(i.Heartbeat).String())
	}
	if e := a.Enrollment; e != nil {
		row(t, "consumer:", fmt.Sprintf("%d not delivered, %d unacked, filters %s", e.NumPending, e.NumAckPending, strings.Join(e.Filters, " ")))
	} else {
		row(t, "consumer:", "not enrolled")
	}
	if err := t.Flush(); err != nil {
		return err
	}

	fmt.Fprintf(w, "\npending jobs (%d):\n", len(a.Pending))
	if len(a.Pending) > 0 {
		t = newTable(w)
		row(t, "JOB", "NAME", "RECEIVED", "OFFER AFTER", "MANDATORY AFTER", "EXPIRE AFTER", "LAST STATE")
		for _, p := range a.Pending {
			mandatory := "optional"
			if p.MandatoryAfter != nil {
				mandatory = d.time(*p.MandatoryAfter)
			}
			row(t, p.JobID, dash(p.Name), strconv.FormatBool(p.Received), d.time(p.OfferAfter), mandatory, d.time(p.ExpireAfter),
				dash(stateLabel(string(p.LastState))))
		}
		if err := t.Flush(); err != nil {
			return err
		}
	}

	fmt.Fprintf(w, "\nlast %d statuses:\n", len(a.Recent))
	if len(a.Recent) > 0 {
		t = newTable(w)
		row(t, "TIME", "JOB", "STATE", "EXIT", "ATTEMPT", "RUNNER", "REASON")
		for _, s := range a.Recent {
			exit := "-"
			if s.ExitCode != nil {
				exit = strconv.Itoa(*s.ExitCode)
			}
			runner := string(s.Runner)
			if s.User != "" {
				runner += "/" + s.User
			}
			row(t, d.time(s.Time), s.JobID, d.paint(string(s.State), stateLabel(string(s.State))), exit, strconv.Itoa(s.Attempt), runner, dash(oneLine(s.Reason)))
		}
		if err := t.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// oneLine keeps the first line of s.
func oneLine(s string) string {
	first, _, _ := strings.Cut(s, "\n")
	return first
}

// updateCell describes an agent's last self-update briefly.
func updateCell(d display, u events.UpdateInfo) string {
	s := fmt.Sprintf("%s %s -> %s at %s", u.State, dash(u.From), u.Version, d.time(u.At))
	if u.Reason != "" {
		s += ": " + oneLine(u.Reason)
	}
	return s
}
