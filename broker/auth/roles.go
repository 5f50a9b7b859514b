package auth

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/internal/clientview"
)

// Role is what a NATS user of pcm is for; it decides the account the user
// belongs to and its permissions there.
type Role string

// The roles. docs/security.md tabulates what each may do.
const (
	// RoleAgent is the service face of one client (pcm agent), a user of
	// the client's account: it fetches from and acks only its consumer,
	// reports only its own statuses and writes only its own inventory and
	// lock keys.
	RoleAgent Role = "agent"
	// RoleDesktop is the desktop face of one client (pcm desktop), a user
	// of the client's account: it lists its client's offers, takes its
	// client's lock and reports its client's statuses.
	RoleDesktop Role = "desktop"
	// RolePublisher publishes and cancels jobs, pushes packages and reads
	// both streams, the inventory and the locks, from an account of its
	// own.
	RolePublisher Role = "publisher"
	// RoleAuditor reads both streams, the inventory and the locks, from an
	// account of its own, and changes nothing.
	RoleAuditor Role = "auditor"
	// RoleSite is the leaf connection of one branch site's broker to the
	// hub (docs/sites.md), a user of the site's account at the hub, which
	// may connect only as a leaf node: it reads the hub's PCM_JOBS and its
	// package store with direct gets, and changes nothing.
	RoleSite Role = "site"
	// RoleAdmin is a user of the pcm account itself: every subject,
	// provisioning, enrollment (consumers and accounts), revocation.
	RoleAdmin Role = "admin"
)

// Roles lists every role, in the order of the documentation.
var Roles = []Role{RoleAgent, RoleDesktop, RolePublisher, RoleAuditor, RoleSite, RoleAdmin}

// ParseRole reads a role name.
func ParseRole(s string) (Role, error) {
	r := Role(strings.ToLower(strings.TrimSpace(s)))
	if slices.Contains(Roles, r) {
		return r, nil
	}
	return "", fmt.Errorf("%w: role %q: use one of agent, desktop, publisher, auditor, site, admin", ErrInvalidUser, s)
}

// Kind is the kind of account a role's users belong to; the admin has none
// (it belongs to the pcm account).
func (r Role) Kind() Kind {
	switch r {
	case RoleAgent, RoleDesktop:
		return KindClient
	case RolePublisher:
		return KindPublisher
	case RoleAuditor:
		return KindAuditor
	case RoleSite:
		return KindSite
	}
	return ""
}

// User is one NATS user to issue.
type User struct {
	// Role decides the account and the permissions.
	Role Role
	// Name is the client id for RoleAgent and RoleDesktop, a free name
	// (a subject token) for the other roles: the name of the publisher's
	// or the auditor's account.
	Name string
	// TTL makes the credentials expire that long after they are issued;
	// zero: they never expire.
	TTL time.Duration
	// InProcess limits the credentials to connections made inside a
	// broker's own process (nats.InProcessServer): stolen, they open no
	// network connection to any broker. A branch site's broker runs its
	// services as such an admin (pcm creds site writes it).
	InProcess bool
}

// Validate checks the role, the name and the TTL.
func (u User) Validate() error {
	if _, err := ParseRole(string(u.Role)); err != nil {
		return err
	}
	what := "user name"
	switch u.Role.Kind() {
	case KindClient:
		what = "client id"
	case KindSite:
		what = "site name"
	}
	if err := events.ValidID(what, u.Name); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidUser, err)
	}
	if u.TTL < 0 {
		return fmt.Errorf("%w: TTL %s is negative: use 0 for credentials that never expire", ErrInvalidUser, u.TTL)
	}
	if u.InProcess && u.Role == RoleSite {
		return fmt.Errorf("%w: a site's credentials are a leaf connection's: they cannot be in-process only", ErrInvalidUser)
	}
	return nil
}

// UserName is the name in the user's JWT: role-name (agent-ws-042).
func (u User) UserName() string { return string(u.Role) + "-" + u.Name }

// Principal is the account the user belongs to (zero for an admin).
func (u User) Principal() Principal {
	return Principal{Kind: u.Role.Kind(), Name: u.Name}
}

// InboxPrefix is the user's private inbox prefix: replies to its requests
// (JetStream API answers, pulled messages, publish acks) come there, and no
// other user of its account may subscribe to it. Connect with
// nats.CustomInboxPrefix of it (ClientConfig does).
func (u User) InboxPrefix() string { return inboxPrefixStart + u.UserName() }

// inboxPrefixStart starts every private inbox prefix.
const inboxPrefixStart = "_INBOX_"

// JetStream subject prefixes.
const (
	api     = "$JS.API."
	kvPre   = "$KV."
	objPre  = "$O."
	ackPre  = "$JS.ACK."
	kvSPre  = "KV_"
	objSPre = "OBJ_"
)

// Grant is one subject a user may publish to (or subscribe to) in its own
// account, and why. In a client's, a publisher's or an auditor's account a
// published subject leads somewhere only through one of the account's
// imports (Imports): the grant says which users of the account may use it.
type Grant struct {
	// Sub is true for a subscription, false for a publish (which includes
	// JetStream API requests, KV writes and acks).
	Sub bool
	// Subject is the subject, with wildcards.
	Subject string
	// Why says which act of pcm needs it.
	Why string
	// Local is true for a publish heard inside the user's own account (by
	// another user of it), which its account does not import.
	Local bool
}

// Grants returns what u may publish and subscribe to, each with its
// reason, in a stable order (docs/security.md is generated from it). Its
// account imports exactly what its users' grants publish to (Imports).
//
// AgentPermissions: an agent's JWT does not list its grants; it allows
// the agent's whole account (publish and subscribe to ">"). Its account
// confines it all the same: a subject leads out of the account only
// through an import, and the account imports only what the grants of its
// agent and desktop use. Inside the account the agent reaches its own
// desktop's subjects and the client view, which its grants leave out and
// which hold nothing the agent, the machine's service, may not already
// do or read. A listed grant costs the broker a subscription-list entry
// per connection: about 25 KiB per connected agent (BENCHMARKS.md,
// "Issue 12").
func Grants(u User) ([]Grant, error) {
	if err := u.Validate(); err != nil {
		return nil, err
	}
	var gs []Grant
	switch u.Role {
	case RoleAgent:
		gs = agentGrants(u.Name)
	case RoleDesktop:
		gs = desktopGrants(u.Name)
	case RolePublisher:
		gs = publisherGrants()
	case RoleAuditor:
		gs = readerGrants()
	case RoleSite:
		gs = siteGrants()
	case RoleAdmin:
		return []Grant{
			{Subject: ">", Why: "everything in the pcm account: provisioning, enrollment, revocation, repairs"},
			{Sub: true, Subject: ">", Why: "everything in the pcm account"},
		}, nil
	}
	return append(gs, Grant{Sub: true, Subject: u.InboxPrefix() + ".>",
		Why: "its private inbox: the answers to its requests, which its account's imports bring back (no other user of the account may read them)"}), nil
}

// Permissions returns the subject permissions of u's JWT: its Grants,
// but for an agent, whose JWT allows its whole account (AgentPermissions).
// integration/attack_test.go makes every request each role may make
// against a real nats-server, aimed at every target.
func Permissions(u User) (jwt.Permissions, error) {
	gs, err := Grants(u)
	if err != nil {
		return jwt.Permissions{}, err
	}
	var p jwt.Permissions
	if u.Role == RoleAgent {
		p.Pub.Allow.Add(">")
		p.Sub.Allow.Add(">")
		return p, nil
	}
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

// subs makes subscription grants with one reason.
func subs(why string, subjects ...string) []Grant {
	out := make([]Grant, len(subjects))
	for i, s := range subjects {
		out[i] = Grant{Sub: true, Subject: s, Why: why}
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

// directGet is the subject of a direct get of stream: the last message of
// subject when subject is given (the subject form), else the request whose
// JSON body says what to read (by sequence, time or subject, in batches).
func directGet(stream, subject string) string {
	if subject == "" {
		return api + "DIRECT.GET." + stream
	}
	return api + "DIRECT.GET." + stream + "." + subject
}

// ownKey is reading and writing one key of a KV bucket: the writes are
// publishes to the key's subject (create, compare-and-set update, delete,
// each acked by the bucket's stream), the read a direct get of the key.
func ownKey(bucket, key, what string) []Grant {
	subj := kvPre + bucket + "." + key
	return cat(
		pub("write "+what+" (create, compare-and-set, delete)", subj),
		pub("read "+what, directGet(kvSPre+bucket, subj)),
	)
}

// packagesRead is downloading packages: an object's info (the last message
// on its meta subject) and its chunks, both with direct gets that name
// the subject in their body. Package content is shared by the fleet: any
// client may read any package, so one import serves both.
func packagesRead() []Grant {
	return pub("read a package's info and download its chunks (direct gets naming the subject in their body)",
		directGet(objSPre+events.BucketPackages, ""))
}

// releasesRead is following the agent release channels: the direct get
// of a channel's key (the signed manifest; the agent verifies it) and its
// writes heard as hints. A client reads any channel's manifest (they are
// not secret) and no other key of PCM_RELEASES.
func releasesRead() []Grant {
	return cat(
		pub("read a release channel's manifest (direct get of the channel's key)",
			directGet(kvSPre+events.BucketReleases, kvPre+events.BucketReleases+"."+events.ReleaseChannelKey("*"))),
		subs("hear a release channel change (PCM_RELEASES republishes it; a hint: it reads the key and verifies the manifest before acting)",
			events.ReleaseHintSubject("*")),
	)
}

// clientStatus is reporting a client's statuses and reading the last
// status of each of its jobs.
func clientStatus(client string) []Grant {
	return cat(
		pub("report its client's statuses", events.StatusSubjectsOfClient(client)),
		pub("read the last status of a job on its client (no rerun)",
			directGet(events.StreamStatus, events.StatusSubjectsOfClient(client))),
	)
}

// cancellationRead is reading whether a job was cancelled: the last
// message on its cancellation subject.
func cancellationRead() []Grant {
	return pub("read whether a job was cancelled (the last cancellation of the job)",
		directGet(events.StreamJobs, events.SubjectJobsCancels))
}

// haltRead is reading whether a job's staged rollout is halted: the last
// message on its halt subject. Like a cancellation, a halt is read by job
// id by any client; only the pcm account stores one.
func haltRead() []Grant {
	return pub("read whether a job's staged rollout is halted (the last halt or resume of the job)",
		directGet(events.StreamJobs, events.SubjectJobsHalts))
}

func agentGrants(client string) []Grant {
	cons := events.ConsumerName(client)
	return cat(
		pub("bind its consumer", api+"CONSUMER.INFO."+events.StreamJobs+"."+cons),
		pub("fetch its offers", api+"CONSUMER.MSG.NEXT."+events.StreamJobs+"."+cons),
		pub("ack, nak, term, in-progress its offers (the v1 ack subject: exactly five tokens after the consumer)",
			ackPre+events.StreamJobs+"."+cons+".*.*.*.*.*"),
		clientStatus(client),
		cancellationRead(),
		haltRead(),
		ownKey(events.BucketAgents, client, "its inventory"),
		ownKey(events.BucketLocks, client, "its lock"),
		packagesRead(),
		releasesRead(),
		pub("read its client's maintenance windows through the client view (pcm broker, pcm controller), which reads them for it", "pcm.view."+client+"."+clientview.Windows),
		subs("hear its desktop's statuses (a hint: it reads the stored status before acting)", events.StatusSubjectsOfClient(client)),
		subs("hear its lock change (a hint: it reads the lock before acting)", kvPre+events.BucketLocks+"."+client),
	)
}

// desktopGrants: the desktop reads its client's offers and statuses
// through the client view (a service of the pcm account that reads them
// for it: a client may not read PCM_JOBS at large, since a batched direct
// get names its filter in its body, where no import can confine it), and
// hears of new offers on its client's job subjects, which its account
// imports (its own subject, its groups', pcm.jobs.all) and nothing else.
func desktopGrants(client string) []Grant {
	return cat(
		pub("read its client's consumer filters (the subjects its offers come on)", api+"CONSUMER.INFO."+events.StreamJobs+"."+events.ConsumerName(client)),
		pub("list its client's offers, statuses and maintenance windows through the client view (pcm broker, pcm controller), which reads them for it", "pcm.view."+client+".*"),
		clientStatus(client),
		cancellationRead(),
		haltRead(),
		ownKey(events.BucketLocks, client, "its client's lock"),
		packagesRead(),
		[]Grant{{Subject: events.SessionSubject(client), Local: true,
			Why: "say its user's session is open, to its client's service inside their account (the user's deferrals and countdowns hold while one is)"}},
		subs("hear of its client's new offers (its account imports only its own subject, its groups' and pcm.jobs.all)", "pcm.jobs.>"),
		subs("hear its client's statuses and lock change (hints: it reads the stored state before acting)",
			events.StatusSubjectsOfClient(client), kvPre+events.BucketLocks+"."+client),
	)
}

// readStreams are the streams and buckets publishers and auditors read.
var readStreams = []string{events.StreamJobs, events.StreamStatus, kvSPre + events.BucketAgents, kvSPre + events.BucketLocks, objSPre + events.BucketPackages,
	kvSPre + events.BucketWindows, kvSPre + events.BucketReleases}

// readerGrants are what a publisher and an auditor read: the state of the
// streams and buckets, every stored message by direct gets (no consumer),
// the enrolled clients (the consumers of PCM_JOBS), and new offers and
// statuses as they are stored.
func readerGrants() []Grant {
	var gs []Grant
	for _, s := range readStreams {
		gs = append(gs, pub("read "+s+"'s state", api+"STREAM.INFO."+s)...)
	}
	for _, s := range readStreams {
		gs = append(gs, pub("read "+s+" by sequence, time or subject (batched direct gets, no consumer)", directGet(s, ""), directGet(s, ">"))...)
	}
	return cat(gs,
		pub("list the enrolled clients and read their consumers' progress",
			api+"CONSUMER.LIST."+events.StreamJobs, api+"CONSUMER.NAMES."+events.StreamJobs, api+"CONSUMER.INFO."+events.StreamJobs+".*"),
		subs("hear of new offers and statuses (a rollout, pcm audit --follow); it reads them with direct gets",
			"pcm.jobs.>", events.SubjectStatusAll),
		subs("hear of inventory and lock changes (a rollout's view of the fleet); it reads them with direct gets",
			kvPre+events.BucketAgents+".>", kvPre+events.BucketLocks+".>"),
	)
}

// SiteReadStreams are the hub's streams a branch site reads across its
// leaf connection: the job events it copies and the package content its
// jobs use.
var SiteReadStreams = []string{events.StreamJobs, objSPre + events.BucketPackages}

// siteGrants are what a site's leaf connection may send to the hub: its
// clients' statuses and inventory, the state of PCM_JOBS and of the
// package store, and batched direct gets of both, each under its $JS.API name (what the site's account imports) and
// addressed to the hub's JetStream domain, as the site sends it across
// the leaf connection (the hub maps $JS.<domain>.API onto $JS.API in the
// account the connection is bound to). It creates no consumer: a consumer
// delivers where its creator says, and would be made in the pcm account.
func siteGrants() []Grant {
	var gs []Grant
	for _, s := range SiteReadStreams {
		gs = append(gs,
			Grant{Subject: api + "STREAM.INFO." + s, Why: "read the hub's " + s + "'s state (how far its copy at the site may go)"},
			Grant{Subject: directGet(s, ""), Why: "copy the hub's " + s + " to the site (batched direct gets, no consumer)"})
	}
	gs = append(gs,
		Grant{Subject: SiteStatusPrefix + "*.*", Local: true,
			Why: "forward its clients' statuses to the hub (pcm.status.<client>.<job> under this name: its account imports it for the clients enrolled at the site only)"},
		Grant{Subject: SiteAgentsPrefix + "*", Local: true,
			Why: "forward its clients' inventory to the hub ($KV.PCM_AGENTS.<client> under this name, likewise)"})
	for _, s := range SiteReadStreams {
		gs = append(gs,
			Grant{Subject: siteDomainAPI + "STREAM.INFO." + s, Local: true, Why: "the same, addressed to the hub's JetStream domain across the leaf connection (the hub maps it onto $JS.API in the site's account)"},
			Grant{Subject: siteDomainAPI + "DIRECT.GET." + s, Local: true, Why: "the same, addressed to the hub's JetStream domain across the leaf connection (the hub maps it onto $JS.API in the site's account)"})
	}
	return gs
}

// The names under which a site forwards its clients' statuses
// (SiteStatusPrefix + "<client>.<job>") and inventory (SiteAgentsPrefix +
// "<client>") across its link: its account at the hub imports
// pcm.status.<client>.* and $KV.PCM_AGENTS.<client> under them for each
// client enrolled at the site. They differ from the subjects themselves,
// which never cross the link (the hub's streams would capture the site's
// agents' publishes directly, out of the site's order).
const (
	SiteStatusPrefix = "pcm.site.status."
	SiteAgentsPrefix = "pcm.site.agents."
)

// siteDomainAPI is the JetStream API of any domain: a site addresses the
// hub's as $JS.<hub domain>.API. Only the hub's own domain is mapped onto
// its JetStream API; any other leads nowhere.
const siteDomainAPI = "$JS.*.API."

func publisherGrants() []Grant {
	pkg := objSPre + events.BucketPackages
	return cat(
		pub("publish and cancel jobs (not on the halt subjects: only the pcm account stores a halt or a resume)",
			events.SubjectJobsClients, events.SubjectJobsGroups, events.SubjectJobsAll, events.SubjectJobsCancels),
		pub("push packages (chunks and info)", objPre+events.BucketPackages+".>"),
		pub("remove or replace packages (purge an object's chunks)", api+"STREAM.PURGE."+pkg),
		pub("push and promote agent releases (manifests an agent installs only when signed by a release key it trusts)", kvPre+events.BucketReleases+".>"),
		readerGrants(),
	)
}
