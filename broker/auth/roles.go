package auth

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"

	"github.com/pcm-project/pcm/events"
)

// Role is what a NATS user of pcm is for; it decides its permissions.
type Role string

// The roles. docs/security.md tabulates what each may do.
const (
	// RoleAgent is the service face of one client (pcm agent): it fetches
	// from and acks only its consumer, reports only its own statuses and
	// writes only its own inventory and lock keys.
	RoleAgent Role = "agent"
	// RoleDesktop is the desktop face of one client (pcm desktop): it lists
	// its client's offers (direct gets, no consumer), takes its client's
	// lock and reports its client's statuses.
	RoleDesktop Role = "desktop"
	// RolePublisher publishes and cancels jobs, enrolls clients (consumer
	// management on PCM_JOBS), pushes packages and reads statuses and the
	// inventory.
	RolePublisher Role = "publisher"
	// RoleAuditor reads both streams (direct gets, no consumer), the
	// inventory and the locks, and changes nothing.
	RoleAuditor Role = "auditor"
	// RoleAdmin provisions: every subject of the pcm account.
	RoleAdmin Role = "admin"
)

// Roles lists every role, in the order of the documentation.
var Roles = []Role{RoleAgent, RoleDesktop, RolePublisher, RoleAuditor, RoleAdmin}

// ParseRole reads a role name.
func ParseRole(s string) (Role, error) {
	r := Role(strings.ToLower(strings.TrimSpace(s)))
	if slices.Contains(Roles, r) {
		return r, nil
	}
	return "", fmt.Errorf("%w: role %q: use one of agent, desktop, publisher, auditor, admin", ErrInvalidUser, s)
}

// User is one NATS user to issue.
type User struct {
	// Role decides the permissions.
	Role Role
	// Name is the client id for RoleAgent and RoleDesktop, a free name
	// (a subject token) for the other roles.
	Name string
	// Groups are the client's groups, for RoleDesktop: the desktop may
	// subscribe to their job subjects, to hear of new offers (it reads the
	// offers themselves with direct gets). Ignored by the other roles.
	Groups []string
	// TTL makes the credentials expire that long after they are issued;
	// zero: they never expire.
	TTL time.Duration
}

// Validate checks the role and the name (and the groups of a desktop).
func (u User) Validate() error {
	if _, err := ParseRole(string(u.Role)); err != nil {
		return err
	}
	what := "user name"
	if u.Role == RoleAgent || u.Role == RoleDesktop {
		what = "client id"
	}
	if err := events.ValidID(what, u.Name); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidUser, err)
	}
	if u.TTL < 0 {
		return fmt.Errorf("%w: TTL %s is negative: use 0 for credentials that never expire", ErrInvalidUser, u.TTL)
	}
	if u.Role == RoleDesktop {
		for _, g := range u.Groups {
			if err := events.ValidID("group", g); err != nil {
				return fmt.Errorf("%w: %w", ErrInvalidUser, err)
			}
		}
	}
	return nil
}

// UserName is the name in the user's JWT: role-name (agent-ws-042).
func (u User) UserName() string { return string(u.Role) + "-" + u.Name }

// InboxPrefix is the user's private inbox prefix: replies to its requests
// (JetStream API answers, pulled messages, publish acks) come there, and no
// other user may subscribe to it. Connect with nats.CustomInboxPrefix of it
// (ClientConfig does).
func (u User) InboxPrefix() string { return inboxPrefixStart + u.UserName() }

// inboxPrefixStart starts every private inbox prefix.
const inboxPrefixStart = "_INBOX_"

// JetStream API subject prefixes.
const (
	api     = "$JS.API."
	kvPre   = "$KV."
	objPre  = "$O."
	ackPre  = "$JS.ACK."
	fcPre   = "$JS.FC."
	kvSPre  = "KV_"
	objSPre = "OBJ_"
)

// Grant is one subject a role may publish to (or subscribe to) and why.
type Grant struct {
	// Sub is true for a subscription, false for a publish (which includes
	// JetStream API requests, KV writes and acks).
	Sub bool
	// Subject is the subject, with wildcards.
	Subject string
	// Why says which act of pcm needs it.
	Why string
}

// Grants returns what u may publish and subscribe to, each with its
// reason, in a stable order (docs/security.md is generated from it).
func Grants(u User) ([]Grant, error) {
	if err := u.Validate(); err != nil {
		return nil, err
	}
	var gs []Grant
	switch u.Role {
	case RoleAgent:
		gs = agentGrants(u.Name)
	case RoleDesktop:
		gs = desktopGrants(u.Name, u.Groups)
	case RolePublisher:
		gs = publisherGrants()
	case RoleAuditor:
		gs = auditorGrants()
	case RoleAdmin:
		return []Grant{
			{Subject: ">", Why: "everything in the pcm account: provisioning, repairs"},
			{Sub: true, Subject: ">", Why: "everything in the pcm account"},
		}, nil
	}
	return append(gs, Grant{Sub: true, Subject: u.InboxPrefix() + ".>",
		Why: "its private inbox: replies to its requests (API answers, pulled messages, publish acks); no other user may read them"}), nil
}

// Permissions returns the exact subject permissions of u (its Grants).
// They were worked out against a real nats-server:
// integration/permissions_test.go checks each role's allowed acts and
// forbidden ones.
func Permissions(u User) (jwt.Permissions, error) {
	gs, err := Grants(u)
	if err != nil {
		return jwt.Permissions{}, err
	}
	var p jwt.Permissions
	for _, g := range gs {
		if g.Sub {
			p.Sub.Allow.Add(g.Subject)
		} else {
			p.Pub.Allow.Add(g.Subject)
		}
	}
	return p, nil
}

// pub makes publish grants with one reason.
func pub(why string, subjects ...string) []Grant {
	out := make([]Grant, len(subjects))
	for i, s := range subjects {
		out[i] = Grant{Subject: s, Why: why}
	}
	return out
}

// cat concatenates grant lists.
func cat(lists ...[]Grant) []Grant {
	var out []Grant
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

// streamRead is reading a whole stream through ordered consumers and
// direct gets: its info, creating consumers with any filter (both request
// forms: with and without the filter in the subject), pulling from them and
// reading their info. It does not include deleting consumers: see
// consumerCleanup. Only for the buckets (KV watchers, object downloads);
// PCM_JOBS and PCM_STATUS are read with directRead.
func streamRead(stream, what string) []Grant {
	return cat(
		pub("bind "+stream, api+"STREAM.INFO."+stream),
		pub("read "+what+" through ordered consumers (any filter)", api+"CONSUMER.CREATE."+stream+".>",
			api+"CONSUMER.MSG.NEXT."+stream+".*", api+"CONSUMER.INFO."+stream+".*"),
		directGets(stream, what),
	)
}

// directRead is reading a whole stream without any consumer: its info and
// direct gets (batches by sequence, time or subject, and the last message
// of a subject), as internal/streamread does.
func directRead(stream, what string) []Grant {
	return cat(pub("bind "+stream, api+"STREAM.INFO."+stream), directGets(stream, what))
}

// directGets are the direct gets of a stream, in both forms (subject in the
// body, subject in the request subject), and the non-direct message get.
func directGets(stream, what string) []Grant {
	return pub("read "+what+" by sequence, time or subject (batched direct gets)", api+"DIRECT.GET."+stream,
		api+"DIRECT.GET."+stream+".>", api+"STREAM.MSG.GET."+stream)
}

// subs makes subscription grants with one reason.
func subs(why string, subjects ...string) []Grant {
	out := make([]Grant, len(subjects))
	for i, s := range subjects {
		out[i] = Grant{Sub: true, Subject: s, Why: why}
	}
	return out
}

// consumerCleanup is deleting any consumer of a stream, granted only on
// streams without durable consumers (all but PCM_JOBS): a KV watcher
// deletes its consumer when it stops, and waits for the broker's answer.
func consumerCleanup(stream string) []Grant {
	return pub("delete its finished consumers ("+stream+" has no durable consumer)", api+"CONSUMER.DELETE."+stream+".*")
}

// flowControl are both formats of the flow control replies of push
// consumers (KV watchers) on a stream.
func flowControl(stream string) []Grant {
	return pub("flow control of its watchers (v1 and v2 formats)", fcPre+stream+".>", fcPre+"*.*."+stream+".>")
}

// kvRead is reading every key of a bucket: get, list and watch.
func kvRead(bucket string) []Grant {
	s := kvSPre + bucket
	return cat(streamRead(s, "every key of "+bucket), consumerCleanup(s), flowControl(s))
}

// kvKey is reading, writing and watching one key of a bucket.
func kvKey(bucket, key, what string) []Grant {
	s := kvSPre + bucket
	subj := kvPre + bucket + "." + key
	return cat(
		pub("bind "+bucket, api+"STREAM.INFO."+s),
		pub("write, renew (compare-and-set) and delete "+what, subj),
		pub("read "+what, api+"DIRECT.GET."+s+"."+subj),
		pub("watch "+what+" (an ordered consumer filtered to the key)", api+"CONSUMER.CREATE."+s+".*."+subj),
		consumerCleanup(s), flowControl(s),
	)
}

// kvOwnKey is reading and writing one key of a bucket, without watching it.
func kvOwnKey(bucket, key, what string) []Grant {
	s := kvSPre + bucket
	subj := kvPre + bucket + "." + key
	return cat(
		pub("bind "+bucket, api+"STREAM.INFO."+s),
		pub("write "+what, subj),
		pub("read "+what, api+"DIRECT.GET."+s+"."+subj),
	)
}

// packagesRead is downloading packages: an object's info, and its chunks
// through an ordered consumer filtered to the object's chunk subject.
func packagesRead() []Grant {
	s := objSPre + events.BucketPackages
	return cat(
		pub("bind "+events.BucketPackages, api+"STREAM.INFO."+s),
		pub("read a package's info", api+"DIRECT.GET."+s+"."+objPre+events.BucketPackages+".M.*"),
		pub("download a package's chunks (an ordered consumer filtered to one object)",
			api+"CONSUMER.CREATE."+s+".*."+objPre+events.BucketPackages+".C.*",
			api+"CONSUMER.MSG.NEXT."+s+".*", api+"CONSUMER.INFO."+s+".*"),
		consumerCleanup(s),
	)
}

// statusGrants is publishing a client's statuses and reading the last
// status of each of its jobs.
func statusGrants(client string) []Grant {
	return cat(
		pub("report its client's statuses", events.StatusSubjectsOfClient(client)),
		pub("bind "+events.StreamStatus, api+"STREAM.INFO."+events.StreamStatus),
		pub("read the last status of a job on its client (no rerun)",
			api+"DIRECT.GET."+events.StreamStatus+"."+events.StatusSubjectsOfClient(client)),
	)
}

// cancelRead is reading the last cancellation of a job (a direct get by
// subject on its own cancellation subject) before running it.
func cancelRead() []Grant {
	return pub("read whether a job was cancelled before running it",
		api+"DIRECT.GET."+events.StreamJobs+"."+events.SubjectJobsCancels)
}

func agentGrants(client string) []Grant {
	cons := events.ConsumerName(client)
	return cat(
		pub("bind its consumer", api+"CONSUMER.INFO."+events.StreamJobs+"."+cons),
		pub("fetch its offers", api+"CONSUMER.MSG.NEXT."+events.StreamJobs+"."+cons),
		pub("ack, nak, term, in-progress its offers (v1 format)", ackPre+events.StreamJobs+"."+cons+".>"),
		pub("ack, nak, term, in-progress its offers (v2 format: domain, account hash)", ackPre+"*.*."+events.StreamJobs+"."+cons+".>"),
		statusGrants(client),
		cancelRead(),
		kvOwnKey(events.BucketAgents, client, "its inventory"),
		kvKey(events.BucketLocks, client, "its lock"),
		packagesRead(),
		[]Grant{{Sub: true, Subject: events.StatusSubjectsOfClient(client), Why: "hear its desktop's final statuses, to ack the offers the desktop ran"}},
	)
}

// desktopGrants: the desktop reads its client's offers with batched
// direct gets on PCM_JOBS (a request whose subject names no filter, so it
// could read any offer by sequence: a confidentiality gap, see
// docs/security.md) and hears of new ones on its client's job subjects. It
// has no right on any consumer of PCM_JOBS but reading its client's
// consumer's info (its filters).
func desktopGrants(client string, groups []string) []Grant {
	subjects := []string{events.JobSubject(events.Target{Kind: events.TargetClient, Name: client})}
	for _, g := range groups {
		subjects = append(subjects, events.JobSubject(events.Target{Kind: events.TargetGroup, Name: g}))
	}
	subjects = append(subjects, events.SubjectJobsAll)
	return cat(
		pub("read its client's consumer filters", api+"CONSUMER.INFO."+events.StreamJobs+"."+events.ConsumerName(client)),
		pub("list its client's offers (batched direct gets merged by sequence, one per filter)", api+"DIRECT.GET."+events.StreamJobs),
		statusGrants(client),
		cancelRead(),
		kvKey(events.BucketLocks, client, "its client's lock"),
		packagesRead(),
		subs("hear of its client's new offers (its own subject, its groups' from its credentials, pcm.jobs.all); it reads them with direct gets", subjects...),
	)
}

func publisherGrants() []Grant {
	j := events.StreamJobs
	pkg := objSPre + events.BucketPackages
	return cat(
		pub("publish and cancel jobs", "pcm.jobs.>"),
		pub("list the enrolled clients", api+"CONSUMER.LIST."+j, api+"CONSUMER.NAMES."+j),
		directRead(j, "the offers"),
		pub("enroll (create or update agent-CLIENT), read and unenroll clients",
			api+"CONSUMER.CREATE."+j+".>", api+"CONSUMER.INFO."+j+".*", api+"CONSUMER.DELETE."+j+".*"),
		directRead(events.StreamStatus, "the statuses"),
		kvRead(events.BucketAgents),
		kvRead(events.BucketLocks),
		streamRead(pkg, "the packages"),
		consumerCleanup(pkg),
		pub("push packages", objPre+events.BucketPackages+".>"),
		pub("remove packages (purge an object's chunks)", api+"STREAM.PURGE."+pkg),
		flowControl(pkg),
		subs("hear of new statuses (a rollout, pcm audit --follow); it reads them with direct gets", events.SubjectStatusAll),
		subs("hear of new offers (pcm audit --follow); it reads them with direct gets", events.JobsStreamSubjects()...),
	)
}

// auditorGrants: the auditor reads both streams with direct gets and the
// buckets (KV watchers, ordered consumers on buckets without durable
// consumers); on PCM_JOBS it may only list the consumers and read their
// info. It writes nothing and creates no consumer on either stream.
func auditorGrants() []Grant {
	j := events.StreamJobs
	return cat(
		pub("list the enrolled clients", api+"CONSUMER.LIST."+j, api+"CONSUMER.NAMES."+j),
		pub("read a client's enrollment (its consumer's filters and progress)", api+"CONSUMER.INFO."+j+".*"),
		directRead(j, "the offers"),
		directRead(events.StreamStatus, "the statuses"),
		kvRead(events.BucketAgents),
		kvRead(events.BucketLocks),
		subs("hear of new statuses (a rollout, pcm audit --follow); it reads them with direct gets", events.SubjectStatusAll),
		subs("hear of new offers (pcm audit --follow); it reads them with direct gets", events.JobsStreamSubjects()...),
	)
}
