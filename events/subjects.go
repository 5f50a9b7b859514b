package events

import (
	"fmt"
	"regexp"
	"strings"
)

// Names of the JetStream resources pcm uses. They are part of the wire
// contract (see the design contract): changing one is a breaking change.
const (
	// StreamJobs holds job offered and job cancelled events.
	StreamJobs = "PCM_JOBS"
	// StreamStatus holds status events (the MIFs): the audit record.
	StreamStatus = "PCM_STATUS"
	// BucketAgents is the KV bucket of agent inventory and heartbeats, keyed by client id.
	BucketAgents = "PCM_AGENTS"
	// BucketLocks is the KV bucket of service-versus-desktop lease locks, keyed by client id.
	BucketLocks = "PCM_LOCKS"
	// BucketPackages is the object store of package content.
	BucketPackages = "PCM_PACKAGES"
	// BucketWindows is the KV bucket of maintenance windows, keyed by
	// WindowKey: client.<id>, group.<name>, all.
	BucketWindows = "PCM_WINDOWS"
)

// Subject prefixes and wildcards of the two streams.
const (
	jobsPrefix         = "pcm.jobs."
	jobsClientPrefix   = jobsPrefix + "client."
	jobsGroupPrefix    = jobsPrefix + "group."
	jobsCancelPrefix   = jobsPrefix + "cancel."
	statusPrefix       = "pcm.status."
	consumerNamePrefix = "agent-"
	// SubjectJobsAll is the subject of jobs offered to every client.
	SubjectJobsAll = jobsPrefix + "all"
	// SubjectJobsClients matches every per-client job subject.
	SubjectJobsClients = jobsClientPrefix + "*"
	// SubjectJobsGroups matches every per-group job subject.
	SubjectJobsGroups = jobsGroupPrefix + "*"
	// SubjectJobsCancels matches every per-job cancellation subject (see
	// CancelSubject).
	SubjectJobsCancels = jobsCancelPrefix + "*"
	// SubjectStatusAll matches every status subject.
	SubjectStatusAll = statusPrefix + "*.*"
	// SubjectJobsAny matches every subject of PCM_JOBS (offers,
	// cancellations, halts).
	SubjectJobsAny = jobsPrefix + ">"
	// SubjectStatusAny matches every subject of PCM_STATUS.
	SubjectStatusAny = statusPrefix + ">"
)

// JobsStreamSubjects are the subjects the PCM_JOBS stream captures.
func JobsStreamSubjects() []string {
	return []string{SubjectJobsClients, SubjectJobsGroups, SubjectJobsAll, SubjectJobsCancels, SubjectJobsHalts}
}

// StatusStreamSubjects are the subjects the PCM_STATUS stream captures.
func StatusStreamSubjects() []string { return []string{SubjectStatusAll} }

var idPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidID checks that s can be used as a client id, group name or job id: a
// single subject token of 1 to 64 characters from [A-Za-z0-9_-]. what names the
// field in the error ("client id", "group", "job id").
func ValidID(what, s string) error {
	if idPattern.MatchString(s) {
		return nil
	}
	switch {
	case s == "":
		return fmt.Errorf("%w: %s is empty: use 1 to 64 characters from A-Z a-z 0-9 _ -", ErrInvalidID, what)
	case len(s) > 64:
		return fmt.Errorf("%w: %s %.20q... is %d characters long: use at most 64", ErrInvalidID, what, s, len(s))
	default:
		return fmt.Errorf("%w: %s %q may only contain A-Z a-z 0-9 _ - (no dots, spaces, wildcards or other characters)", ErrInvalidID, what, s)
	}
}

// TargetKind says whom a job is offered to.
type TargetKind string

// The three kinds of target.
const (
	TargetClient TargetKind = "client"
	TargetGroup  TargetKind = "group"
	TargetAll    TargetKind = "all"
)

// Target is one addressee of a job: a client, a group, or every client.
type Target struct {
	Kind TargetKind `json:"kind"`
	// Name is the client id or group name; empty for TargetAll.
	Name string `json:"name,omitempty"`
}

// String renders the target as "client:ID", "group:G" or "all".
func (t Target) String() string {
	if t.Kind == TargetAll {
		return string(TargetAll)
	}
	return string(t.Kind) + ":" + t.Name
}

// Validate checks the kind and the name of the target.
func (t Target) Validate() error {
	switch t.Kind {
	case TargetAll:
		if t.Name != "" {
			return fmt.Errorf("%w: target \"all\" takes no name (got %q)", ErrInvalidTarget, t.Name)
		}
		return nil
	case TargetClient:
		return ValidID("client id", t.Name)
	case TargetGroup:
		return ValidID("group", t.Name)
	default:
		return fmt.Errorf("%w: target kind %q: use client, group or all", ErrInvalidTarget, t.Kind)
	}
}

// JobSubject is the PCM_JOBS subject a job for target t is published on.
// The target must be valid (see Target.Validate).
func JobSubject(t Target) string {
	switch t.Kind {
	case TargetClient:
		return jobsClientPrefix + t.Name
	case TargetGroup:
		return jobsGroupPrefix + t.Name
	default:
		return SubjectJobsAll
	}
}

// CancelSubject is the PCM_JOBS subject that keeps the cancellations of
// job, whatever its targets: pcm cancel publishes there first, then on the
// job's target subjects. An agent reads the last message on it (a direct
// get by subject) before it runs the job, so a cancellation holds whatever
// the order in which the offer and the cancellation reach the client. No
// client's consumer is filtered to it.
func CancelSubject(job string) string { return jobsCancelPrefix + job }

// StatusSubject is the PCM_STATUS subject of the statuses of job on client.
func StatusSubject(client, job string) string {
	return statusPrefix + client + "." + job
}

// SessionSubject is where a client's desktop session says, now and then,
// that a user is logged in: core NATS, never stored, and in an
// authenticated deployment heard only inside the client's own account
// (its service hears it; nothing is imported or exported).
func SessionSubject(client string) string { return "pcm.session." + client }

// StatusSubjectsOfClient matches every status subject of one client.
func StatusSubjectsOfClient(client string) string { return statusPrefix + client + ".*" }

// StatusSubjectsOfJob matches every status subject of one job.
func StatusSubjectsOfJob(job string) string { return statusPrefix + "*." + job }

// ConsumerName is the name of a client's durable consumer on PCM_JOBS.
func ConsumerName(client string) string { return consumerNamePrefix + client }

// The metadata of a client's consumer: who it is and the groups the
// operator enrolled it in (the enrollment, as readers find it).
const (
	// ConsumerMetadataClient holds the client id.
	ConsumerMetadataClient = "pcm_client"
	// ConsumerMetadataGroups holds the client's groups, comma-separated.
	ConsumerMetadataGroups = "pcm_groups"
)

// GroupsOfConsumer reads the groups a client's consumer was enrolled with
// from its metadata.
func GroupsOfConsumer(metadata map[string]string) []string {
	if metadata[ConsumerMetadataGroups] == "" {
		return nil
	}
	return strings.Split(metadata[ConsumerMetadataGroups], ",")
}

// ConsumerFilters lists the PCM_JOBS subjects a client's consumer is filtered
// to: its own subject, each of its groups' subjects, and pcm.jobs.all.
// Duplicate groups are listed once.
func ConsumerFilters(client string, groups []string) []string {
	filters := []string{jobsClientPrefix + client}
	seen := map[string]bool{}
	for _, g := range groups {
		if seen[g] {
			continue
		}
		seen[g] = true
		filters = append(filters, jobsGroupPrefix+g)
	}
	return append(filters, SubjectJobsAll)
}

// TargetOfSubject reverses JobSubject. ok is false when subject is not a job subject.
func TargetOfSubject(subject string) (t Target, ok bool) {
	switch {
	case subject == SubjectJobsAll:
		return Target{Kind: TargetAll}, true
	case len(subject) > len(jobsClientPrefix) && subject[:len(jobsClientPrefix)] == jobsClientPrefix:
		return Target{Kind: TargetClient, Name: subject[len(jobsClientPrefix):]}, true
	case len(subject) > len(jobsGroupPrefix) && subject[:len(jobsGroupPrefix)] == jobsGroupPrefix:
		return Target{Kind: TargetGroup, Name: subject[len(jobsGroupPrefix):]}, true
	}
	return Target{}, false
}

// Every subject of each stream, for denying them across a link (a site's
// leaf connection to its hub).
const (
	// SubjectJobsAllStreams matches every PCM_JOBS subject.
	SubjectJobsAllStreams = jobsPrefix + ">"
	// SubjectStatusAllStreams matches every PCM_STATUS subject.
	SubjectStatusAllStreams = statusPrefix + ">"
)

// StreamJobsHub is a branch site's copy of the hub's PCM_JOBS, which the
// site relays into its own PCM_JOBS.
const StreamJobsHub = "PCM_JOBS_HUB"

// BucketSites is the hub's KV bucket of the clients enrolled at a branch
// site, keyed by client id (pcm enroll --site).
const BucketSites = "PCM_SITES"

// SiteProbeSubject is where an authenticated hub answers its admins that
// the branch site site's leaf connection is up (and stays silent when it
// is not): its pcm account does not reach the site's JetStream, which
// answers only the site's own account at the hub.
func SiteProbeSubject(site string) string { return "pcm.admin.site." + site + ".reachable" }

// DomainAPI is the JetStream API prefix of domain: $JS.<domain>.API.
func DomainAPI(domain string) string { return "$JS." + domain + ".API" }

// livePrefix begins the subjects on which the pcm account's streams and
// buckets republish what they store (see LiveSubject).
const livePrefix = "pcm.live."

// LiveSubject is the subject on which the stream or bucket that stores
// subject (a pcm subject, pcm.status.<client>.<job>, or a bucket's key
// subject, $KV.<bucket>.<key>; wildcards included) republishes each message
// it stores: pcm.live.status.<client>.<job>, pcm.live.kv.<bucket>.<key>.
// Principals' accounts hear of stored messages through stream imports of
// these subjects, under the original subject: a message that reached the
// pcm account through a service import (an agent's status, a publisher's
// job) is not forwarded to other accounts' stream imports by nats-server,
// but the stream's republish is (docs/security.md).
func LiveSubject(subject string) string {
	if rest, ok := strings.CutPrefix(subject, "$KV."); ok {
		return livePrefix + "kv." + rest
	}
	return livePrefix + strings.TrimPrefix(subject, "pcm.")
}
