package main

import (
	"errors"
	"fmt"
	"os/user"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/publisher"
	"github.com/pcm-project/pcm/rollout"
)

// jobFile is the format of pcm publish -f: YAML or JSON. Times are RFC 3339
// or relative to now ("+2h").
type jobFile struct {
	JobID          string             `json:"job_id,omitempty"`
	Name           string             `json:"name,omitempty"`
	Package        string             `json:"package,omitempty"` // NAME@VERSION
	Clients        []string           `json:"clients,omitempty"`
	Groups         []string           `json:"groups,omitempty"`
	All            bool               `json:"all,omitempty"`
	OfferAfter     string             `json:"offer_after,omitempty"`
	MandatoryAfter string             `json:"mandatory_after,omitempty"`
	ExpireAfter    string             `json:"expire_after,omitempty"`
	Optional       bool               `json:"optional,omitempty"`
	MaxAttempts    int                `json:"max_attempts,omitempty"`
	Command        events.CommandLine `json:"command"`
	// The plan (events.JobPlan): rings, detection, required jobs.
	Rollout  *events.RolloutPlan   `json:"rollout,omitempty"`
	Detect   *events.DetectCommand `json:"detect,omitempty"`
	Requires []string              `json:"requires,omitempty"`
	jobFileTimeRules
}

// publishFlags are pcm publish's flags; they fill a jobFile.
type publishFlags struct {
	file, output, publisherName string
	signingKey                  string
	job                         jobFile
	interactive, force          bool
	timeout                     time.Duration
	successCodes                []int64
	platforms                   []string
	clients, groups             []string
	wait                        waitFlags
	plan                        planFlags
	timeRules                   timeRuleFlags
}

func newPublishCmd(g *globals) *cobra.Command { return publishCmd(g, &publishFlags{}) }

// publishCmd is pcm publish with its flags bound to f.
func publishCmd(g *globals, f *publishFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "publish [flags] -- COMMAND [ARG...]",
		Short: "Publish a job: run a command line on clients, groups or all",
		Long: `Publishes a job offer to each target. Every check runs before anything is sent: a bad flag or
job file publishes nothing. Prints the job id (or, with -o json, the job).

Times (--offer-after, --mandatory-after, --expire-after) are RFC 3339 or relative to now: +10m, +2h.
By default a job is offered now, mandatory now (the agent's service runs it at once), automated,
expires after 7 days and times out after 1 hour. --optional leaves it to the user at the desktop.

A staged rollout: --rings gives cumulative percentages of the targets (1,10,50,100; each client
computes its own ring from a stable hash of the job and client ids), or first rings by group
(group:pilot,10,100); ring k opens --soak after ring k-1. With --halt-at the rollout controller
halts the job as soon as more than that share of the clients that finished it failed (once at
least --halt-min finished): no client starts it until pcm resume. --detect runs a shell command
line before the install (exit 0: already in place, not_applicable "already present") and after
it (still absent: failed "installed but not detected"); --requires JOB makes the job wait on each
client until JOB succeeded there (or was already present), and not_applicable if it failed for
good. In a job file: rollout: {rings: [1, 10, 100], soak: 2h, halt_at: 5, halt_min: 20},
detect: {argv: [...]}, requires: [JOB].`,
		Example: `  pcm publish --all -- echo hello
  pcm publish --group lab --mandatory-after +2h --background --platform windows/* -- msiexec /i app.msi /qn
  pcm publish --all --rings 1,10,50,100 --soak 2h --halt-at 5% --halt-min 20 --wait --wait-timeout 12h -- ./install.sh
  pcm publish --group lab --detect 'test -x /opt/app/bin/app' --requires 01JD3S1M9ZQ6V3W5X7Y9A1B2C3 -- ./install.sh
  pcm publish -f job.yaml --wait --wait-timeout 30m --max-failures 2`,
		RunE: func(cmd *cobra.Command, args []string) error {
			job, err := f.build(cmd, args, time.Now())
			if err != nil {
				return err
			}
			signer, err := signerFrom(f.signingKey)
			if err != nil {
				return err
			}
			nc, js, err := g.connect("pcm publish")
			if err != nil {
				return err
			}
			defer nc.Close()
			p, err := publisher.New(js, publisher.Config{Name: orDefault(f.publisherName, g.identity()), Signer: signer, RequireEnrolled: !f.force})
			if err != nil {
				return err
			}
			published, err := p.Publish(cmd.Context(), job)
			if errors.Is(err, publisher.ErrNoSuchTarget) {
				return fmt.Errorf("%w: check the names, or publish anyway with --force (the job then waits for clients enrolled later)", err)
			}
			if err != nil {
				return explainTimeRule(err)
			}
			if structured(f.output) {
				if err := writeDocument(cmd.OutOrStdout(), f.output, published); err != nil {
					return err
				}
			} else {
				fmt.Fprintln(cmd.OutOrStdout(), published.JobID)
			}
			if f.wait.wait {
				if p := job.Rollout; p != nil && p.HaltAt != nil && !cmd.Flags().Changed("max-failures") {
					f.wait.maxFailures = rollout.NoFailureLimit
				}
				return waitForRollout(cmd.Context(), cmd.ErrOrStderr(), js, published.JobID, f.wait)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.file, "file", "f", "", "job file (YAML or JSON) instead of flags and a command")
	fl.StringArrayVar(&f.clients, "client", nil, "target a client by id (repeatable)")
	fl.StringArrayVar(&f.groups, "group", nil, "target a group (repeatable)")
	fl.BoolVar(&f.job.All, "all", false, "target every client")
	fl.StringVar(&f.job.JobID, "job-id", "", "job id (default: a new sortable id); reuse it to retry a publish safely")
	fl.StringVar(&f.job.Name, "name", "", "human-readable name of the job")
	fl.StringVar(&f.job.Package, "package", "", "NAME@VERSION of a pushed package: agents unpack it into the job's directory and run the command there")
	fl.StringVar(&f.job.OfferAfter, "offer-after", "", "nothing runs before this time (default now)")
	fl.StringVar(&f.job.MandatoryAfter, "mandatory-after", "", "the job runs without anyone acting from this time (default: the offer time)")
	fl.StringVar(&f.job.ExpireAfter, "expire-after", "", "nothing runs after this time; no later than the jobs stream keeps events (default +7d)")
	fl.BoolVar(&f.job.Optional, "optional", false, "no mandatory time: only a user at the desktop runs it")
	fl.BoolVar(&f.job.Command.Background, "background", false, "service-only: never shown to the user")
	fl.BoolVar(&f.interactive, "interactive", false, "the command needs the user: only the desktop runs it")
	fl.BoolVar(&f.job.Command.Shell, "shell", false, "run the command through the platform shell")
	fl.BoolVar(&f.job.Command.MayReboot, "may-reboot", false, "the command may restart the machine")
	fl.StringVar(&f.job.Command.Name, "command-name", "", "name of the command line (install, uninstall, ...)")
	fl.StringArrayVar(&f.platforms, "platform", nil, "supported platform os/arch, * as wildcard (repeatable; default all)")
	fl.DurationVar(&f.timeout, "timeout", publisher.DefaultTimeout, "kill the command's process tree after this long (at most 24h)")
	fl.Int64SliceVar(&f.successCodes, "success-codes", []int64{0}, "exit codes that mean success, comma-separated")
	fl.IntVar(&f.job.MaxAttempts, "max-attempts", 1, "runs of a failing command on a client, at most")
	fl.StringVarP(&f.output, "output", "o", "", "output: json or yaml, the job (default: its id)")
	fl.StringVar(&f.publisherName, "publisher", "", publisherUsage)
	fl.StringVar(&f.signingKey, "signing-key", "", signingKeyUsage)
	fl.BoolVar(&f.force, "force", false, "publish even when a --client or --group matches no enrolled client (for clients enrolled later)")
	f.wait.register(fl)
	f.plan.register(fl)
	f.timeRules.register(fl)
	return cmd
}

// build turns the flags (and the job file) into a job, checking everything
// it can before a connection is made.
func (f *publishFlags) build(cmd *cobra.Command, args []string, now time.Time) (events.JobOffered, error) {
	jf := f.job
	if f.output == "text" { // before -o took the one vocabulary
		f.output = ""
	}
	if f.output != "" {
		if err := checkOutput(f.output, "json", "yaml"); err != nil {
			return events.JobOffered{}, err
		}
	}
	if f.file != "" {
		if len(args) > 0 {
			return events.JobOffered{}, fmt.Errorf("give the command either in the job file or after --, not both")
		}
		file, err := readJobFile(f.file)
		if err != nil {
			return events.JobOffered{}, err
		}
		jf = mergeJobFile(file, jf, cmd)
	} else {
		if len(args) == 0 {
			return events.JobOffered{}, fmt.Errorf("no command: give it after --, as in pcm publish --all -- echo hello (or use -f job.yaml)")
		}
		if f.timeout <= 0 {
			return events.JobOffered{}, fmt.Errorf("%w: --timeout %s: give a positive duration, at most 24h (such as 30m)", events.ErrTimeout, f.timeout)
		}
		if f.interactive && jf.Command.Background {
			return events.JobOffered{}, fmt.Errorf("--background and --interactive contradict each other: a background job runs in the service and is never shown to the user; give one")
		}
		jf.Command.Argv = args
		jf.Command.Timeout = events.Duration(f.timeout)
		jf.Command.SuccessExitCodes = f.successCodes
		jf.Command.Platforms = f.platforms
		jf.Command.Automated = !f.interactive
	}
	jf.Clients = append(jf.Clients, f.clients...)
	jf.Groups = append(jf.Groups, f.groups...)
	if err := f.plan.apply(cmd, &jf); err != nil {
		return events.JobOffered{}, err
	}
	if err := f.timeRules.apply(cmd, &jf); err != nil {
		return events.JobOffered{}, err
	}
	// A value's name in an error: the flag, or the job file's field.
	name := func(flag string) string {
		if f.file != "" && !cmd.Flags().Changed(flag) {
			field := strings.ReplaceAll(flag, "-", "_")
			if flag == "background" {
				field = "command.background"
			}
			return fmt.Sprintf("%s (job file %s)", field, f.file)
		}
		return "--" + flag
	}
	return jf.toJob(now, name)
}

// mergeJobFile lets flags given on the command line add to the file's
// targets and override its times.
func mergeJobFile(file, flags jobFile, cmd *cobra.Command) jobFile {
	if cmd.Flags().Changed("all") {
		file.All = flags.All
	}
	for flag, dst := range map[string]*string{"offer-after": &file.OfferAfter, "mandatory-after": &file.MandatoryAfter, "expire-after": &file.ExpireAfter, "job-id": &file.JobID, "name": &file.Name, "package": &file.Package} {
		if cmd.Flags().Changed(flag) {
			*dst, _ = cmd.Flags().GetString(flag)
		}
	}
	if cmd.Flags().Changed("optional") {
		file.Optional = flags.Optional
	}
	if cmd.Flags().Changed("max-attempts") {
		file.MaxAttempts = flags.MaxAttempts
	}
	return file
}

// toJob resolves the times and targets of a job file; name says where a
// value came from ("--expire-after", "expire_after (job file job.yaml)").
func (jf jobFile) toJob(now time.Time, name func(flag string) string) (events.JobOffered, error) {
	job := events.JobOffered{JobID: jf.JobID, Name: jf.Name, Command: jf.Command, MaxAttempts: jf.MaxAttempts,
		JobPlan: events.JobPlan{Rollout: jf.Rollout, Detect: jf.Detect, Requires: jf.Requires}}
	if jf.Package != "" {
		pkg, version, err := events.ParsePackageSpec(jf.Package)
		if err != nil {
			return job, fmt.Errorf("%s: %w", name("package"), err)
		}
		// The publisher resolves it and pins its sha256 before sending.
		job.Package = &events.PackageRef{Name: pkg, Version: version}
	}
	for _, c := range jf.Clients {
		job.Targets = append(job.Targets, events.Target{Kind: events.TargetClient, Name: c})
	}
	for _, gr := range jf.Groups {
		job.Targets = append(job.Targets, events.Target{Kind: events.TargetGroup, Name: gr})
	}
	if jf.All {
		job.Targets = append(job.Targets, events.Target{Kind: events.TargetAll})
	}
	if len(job.Targets) == 0 {
		return job, fmt.Errorf("no target: give --client ID, --group G or --all (repeatable)")
	}
	var err error
	at := func(flag, s string) (time.Time, error) {
		if s == "" {
			return time.Time{}, nil
		}
		t, err := publisher.ParseWhen(s, now)
		if err != nil {
			return t, fmt.Errorf("%s: %w", name(flag), err)
		}
		return t.UTC(), nil
	}
	if job.OfferAfter, err = at("offer-after", jf.OfferAfter); err != nil {
		return job, err
	}
	if job.ExpireAfter, err = at("expire-after", jf.ExpireAfter); err != nil {
		return job, err
	}
	switch {
	case jf.Optional && jf.MandatoryAfter != "":
		return job, fmt.Errorf("%s and %s contradict each other: give one", name("optional"), name("mandatory-after"))
	case jf.Optional && jf.Command.Background:
		return job, fmt.Errorf("%s and %s contradict each other: an optional job runs only when a user picks it at the desktop, which never shows a background job; give one",
			name("optional"), name("background"))
	case jf.Optional:
	case jf.MandatoryAfter != "":
		m, err := at("mandatory-after", jf.MandatoryAfter)
		if err != nil {
			return job, err
		}
		job.MandatoryAfter = &m
	default: // mandatory from the offer time: the service runs it then
		m := job.OfferAfter
		if m.IsZero() {
			m = now.UTC()
		}
		job.MandatoryAfter = &m
	}
	if job.TimeRules, err = jf.timeRules(now); err != nil {
		return job, err
	}
	// The publisher applies the job defaults (events.JobOffered.WithDefaults).
	if len(job.Command.SuccessExitCodes) == 1 && job.Command.SuccessExitCodes[0] == 0 {
		job.Command.SuccessExitCodes = nil // the default
	}
	return job, nil
}

var nonID = regexp.MustCompile(`[^A-Za-z0-9_-]+`)

// sanitizeID turns a host or user name into a valid id.
func sanitizeID(s string) string {
	s = nonID.ReplaceAllString(s, "-")
	s = strings.Trim(s, "-")
	if len(s) > 64 {
		s = s[:64]
	}
	return s
}

// publisherUsage is the help of --publisher.
const publisherUsage = "publisher name recorded in the events' source (default: the --creds user's name, else the system user's)"

// defaultPublisherName is the system user's name, as an id.
func defaultPublisherName() string {
	if u, err := user.Current(); err == nil {
		if name := sanitizeID(u.Username); name != "" {
			return name
		}
	}
	return "pcm"
}

// orDefault is s, or def when s is empty.
func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
