package auth

import (
	"cmp"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/pcm-project/pcm/events"
)

// Kind is the kind of a principal: what its account is for.
type Kind string

// The kinds of principal. Each principal has a NATS account of its own,
// which reaches the pcm account only through the imports of its kind.
const (
	// KindClient is one enrolled client: its agent and its desktop users.
	KindClient Kind = "client"
	// KindPublisher is one publisher (a CI pipeline, an operator).
	KindPublisher Kind = "publisher"
	// KindAuditor is one auditor.
	KindAuditor Kind = "auditor"
	// KindSite is one branch site (docs/sites.md): the account its leaf
	// connection is bound to at the hub.
	KindSite Kind = "site"
)

// Kinds lists the kinds of principal.
var Kinds = []Kind{KindClient, KindPublisher, KindAuditor, KindSite}

// ParseKind reads a kind name.
func ParseKind(s string) (Kind, error) {
	k := Kind(strings.ToLower(strings.TrimSpace(s)))
	if slices.Contains(Kinds, k) {
		return k, nil
	}
	return "", fmt.Errorf("%w: %q: use one of client, publisher, auditor, site", ErrInvalidUser, s)
}

// Roles are the roles of the users of a principal of the kind.
func (k Kind) Roles() []Role {
	switch k {
	case KindClient:
		return []Role{RoleAgent, RoleDesktop}
	case KindPublisher:
		return []Role{RolePublisher}
	case KindAuditor:
		return []Role{RoleAuditor}
	case KindSite:
		return []Role{RoleSite}
	}
	return nil
}

// Principal is a client, a publisher or an auditor: one NATS account.
type Principal struct {
	Kind Kind
	// Name is the client id, or the publisher's or the auditor's name.
	Name string
	// Groups are a client's groups: its account imports their job subjects
	// (the desktop hears of their new offers). Ignored for other kinds.
	Groups []string
	// Clients are a site's clients (those enrolled at it): its account
	// imports the writing of their statuses and inventory, which the site
	// forwards to the hub. Ignored for other kinds.
	Clients []string
	// HubDomain is, for a site, the hub's JetStream domain, under which
	// the site addresses the hub's JetStream across its link: its account
	// imports its requests under that name too (nats-server maps the
	// domain's API onto $JS.API in the account of a leaf connection when
	// the connection is made, but forgets it when the account's JWT is
	// updated). Default DefaultHubDomain. Ignored for other kinds.
	HubDomain string
}

// DefaultHubDomain is the JetStream domain of a hub that serves sites
// unless told otherwise (pcm broker --leaf-listen).
const DefaultHubDomain = "hub"

// Validate checks the kind, the name and the groups.
func (p Principal) Validate() error {
	if _, err := ParseKind(string(p.Kind)); err != nil {
		return err
	}
	what := "name"
	switch p.Kind {
	case KindClient:
		what = "client id"
	case KindSite:
		what = "site name"
	}
	if err := events.ValidID(what, p.Name); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidUser, err)
	}
	for _, g := range p.Groups {
		if err := events.ValidID("group", g); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidUser, err)
		}
	}
	for _, c := range p.Clients {
		if err := events.ValidID("client id", c); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidUser, err)
		}
	}
	if p.HubDomain != "" {
		if err := events.ValidID("hub domain", p.HubDomain); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidUser, err)
		}
	}
	return nil
}

// AccountName is the name in the principal's account JWT: kind:name.
func (p Principal) AccountName() string { return string(p.Kind) + ":" + p.Name }

// String is the account name.
func (p Principal) String() string { return p.AccountName() }

// PrincipalOfAccount reads the principal back from an account JWT's name;
// ok is false for an account that is not a pcm principal's.
func PrincipalOfAccount(name string) (p Principal, ok bool) {
	kind, n, found := strings.Cut(name, ":")
	if !found {
		return Principal{}, false
	}
	p = Principal{Kind: Kind(kind), Name: n}
	return p, p.Validate() == nil
}

// accountKey derives the principal's account key pair from the issuer's
// secret, so that the same principal always gets the same account (its
// credentials survive a new enrollment, a revocation is found again)
// without a registry to keep.
func accountKey(secret []byte, p Principal) (nkeys.KeyPair, error) {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("pcm principal account\x00" + string(p.Kind) + "\x00" + p.Name))
	kp, err := nkeys.FromRawSeed(nkeys.PrefixByteAccount, m.Sum(nil))
	if err != nil {
		return nil, fmt.Errorf("%w: deriving the account of %s: %w", ErrIssue, p, err)
	}
	return kp, nil
}

// Import is one subject a principal's account imports from the pcm
// account, under the same subject.
type Import struct {
	// Stream is true for a stream import (messages stored or published in
	// the pcm account reach the account's subscribers); false for a
	// service import (a request or publish of the account's users reaches
	// the pcm account, and the answer comes back to the requester's
	// account only).
	Stream bool
	// Subject is the subject, the same in both accounts.
	Subject string
	// Local, when set, is the subject the account's users use instead.
	Local string
	// Why says which act of pcm needs it.
	Why string
}

// liveImport is a stream import of what the pcm account stores on
// subject, as its stream or bucket republishes it (events.LiveSubject),
// heard under subject itself. The pcm account's raw traffic would not do:
// nats-server forwards to a stream import nothing that reached the pcm
// account through a service import (server/client.go, processMsgResults:
// "If this message was a service import do not re-export to an exported
// stream"), so an agent's status or a publisher's job would never be heard.
func liveImport(subject, why string) Import {
	return Import{Stream: true, Subject: events.LiveSubject(subject), Local: subject, Why: why + ", as stored"}
}

// noneSubject is a service of the pcm account that nobody answers. Every
// principal's account imports it as $JS.API.INFO: nats-server then leaves
// out its own JetStream API import from the account, so the account's
// $JS.API subjects reach only the imports listed here, and anything else
// finds no responder.
const noneSubject = "pcm.none"

// Imports returns what p's account imports from the pcm account: every
// subject its users may publish to (a service import each), and for a
// client its offer subjects, for a publisher or an auditor every offer and
// status (stream imports), in a stable order.
func Imports(p Principal) ([]Import, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	var out []Import
	seen := map[string]bool{}
	for _, r := range p.Kind.Roles() {
		gs, err := Grants(User{Role: r, Name: p.Name})
		if err != nil {
			return nil, err
		}
		for _, g := range gs {
			if g.Sub || g.Local || seen[g.Subject] {
				continue
			}
			seen[g.Subject] = true
			out = append(out, Import{Subject: g.Subject, Why: g.Why})
		}
	}
	// An account may not import overlapping subjects: a grant within
	// another of the account's roles (the service's pcm.view.<client>.windows
	// within the desktop's pcm.view.<client>.*) comes through the wider one.
	granted := slices.Clone(out)
	out = slices.DeleteFunc(out, func(im Import) bool {
		return slices.ContainsFunc(granted, func(o Import) bool {
			return o.Subject != im.Subject && jwt.Subject(im.Subject).IsContainedIn(jwt.Subject(o.Subject))
		})
	})
	switch p.Kind {
	case KindClient:
		for _, s := range events.ConsumerFilters(p.Name, p.Groups) {
			out = append(out, liveImport(s, "its desktop hears of new offers of its client"))
		}
		out = append(out, Import{Stream: true, Subject: events.ReleaseHintSubject("*"),
			Why: "its agent hears of new releases on its channel"})
	case KindSite:
		// A site hears of nothing (the hub's job subjects do not cross
		// the leaf connection: broker.SiteLocalSubjects); it writes the
		// statuses and inventory of its own clients only, under local
		// names that its link lets through.
		domain := cmp.Or(p.HubDomain, DefaultHubDomain)
		for _, im := range slices.Clone(out) {
			if rest, ok := strings.CutPrefix(im.Subject, api); ok {
				out = append(out, Import{Subject: im.Subject, Local: "$JS." + domain + ".API." + rest,
					Why: "the same, as the site addresses it across its link (the hub's JetStream domain)"})
			}
		}
		for _, c := range p.Clients {
			out = append(out,
				Import{Subject: events.StatusSubjectsOfClient(c), Local: SiteStatusPrefix + c + ".*",
					Why: "forward its client's statuses to the hub's PCM_STATUS (in the site's order, with their ids)"},
				Import{Subject: kvPre + events.BucketAgents + "." + c, Local: SiteAgentsPrefix + c,
					Why: "forward its client's inventory and heartbeats to the hub's PCM_AGENTS"})
		}
	default:
		out = append(out,
			liveImport(events.SubjectJobsAny, "hear of new offers and cancellations"),
			liveImport(events.SubjectStatusAll, "hear of new statuses"),
			liveImport(kvPre+events.BucketAgents+".>", "hear of inventory changes"),
			liveImport(kvPre+events.BucketLocks+".>", "hear of lock changes"))
	}
	return append(out, Import{Subject: noneSubject, Local: api + "INFO",
		Why: "keeps nats-server's own JetStream API out of the account: its $JS.API subjects reach only these imports"}), nil
}

// Limits of the principals' accounts and users: a client's account holds
// its agent and a few desktop sessions; publishers and auditors run
// commands and followers. Nobody but the pcm account has JetStream.
const (
	clientConns       = 32
	clientSubs        = 1024
	clientUserSubs    = 256
	principalConns    = 64
	principalSubs     = 8192
	principalUserSubs = 2048
	// siteLeafConns is how many leaf connections a site's account takes.
	siteLeafConns = 2
	// MaxEventPayload bounds what a client's users may publish: an event
	// (at most 256 KiB in the streams) with its headers.
	MaxEventPayload = 512 << 10
	// MaxPublisherPayload bounds what a publisher may publish: a package
	// chunk or an event.
	MaxPublisherPayload = 1 << 20
)

// principalAccount builds the claims of p's account: its imports, its
// limits, the principals' signing key, default permissions that deny
// everything (a user minted without permissions can do nothing), and the
// revocations given.
func principalAccount(pub, pcmAccount, signingKey string, p Principal, rev jwt.RevocationList) (*jwt.AccountClaims, error) {
	imports, err := Imports(p)
	if err != nil {
		return nil, err
	}
	ac := jwt.NewAccountClaims(pub)
	ac.Name = p.AccountName()
	ac.SigningKeys.Add(signingKey)
	for _, im := range imports {
		t := jwt.Service
		if im.Stream {
			t = jwt.Stream
		}
		i := &jwt.Import{Account: pcmAccount, Subject: jwt.Subject(im.Subject), Type: t}
		if im.Local != "" {
			i.LocalSubject = jwt.RenamingSubject(im.Local)
		}
		ac.Imports.Add(i)
	}
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{}
	ac.Limits.Exports = 0
	ac.Limits.WildcardExports = false
	ac.Limits.LeafNodeConn = 0
	if p.Kind == KindSite {
		// The site broker's leaf connection, and a second one while
		// nats-server has not yet noticed that the first dropped.
		ac.Limits.LeafNodeConn = siteLeafConns
	}
	ac.Limits.DisallowBearer = true
	ac.Limits.Imports = int64(len(imports))
	ac.Limits.Data = -1
	if p.Kind == KindClient {
		ac.Limits.Conn, ac.Limits.Subs, ac.Limits.Payload = clientConns, clientSubs, MaxEventPayload
	} else {
		ac.Limits.Conn, ac.Limits.Subs, ac.Limits.Payload = principalConns, principalSubs, MaxPublisherPayload
	}
	ac.DefaultPermissions.Pub.Deny.Add(">")
	ac.DefaultPermissions.Sub.Deny.Add(">")
	if len(rev) > 0 {
		ac.Revocations = rev
	}
	return ac, nil
}

// userLimits are the limits of one user of role r.
func userLimits(r Role) jwt.Limits {
	var l jwt.Limits
	l.Data = -1
	switch r.Kind() {
	case KindClient:
		l.Subs, l.Payload = clientUserSubs, MaxEventPayload
	case KindPublisher, KindAuditor:
		l.Subs, l.Payload = principalUserSubs, MaxPublisherPayload
	default:
		l.Subs, l.Payload = -1, -1
	}
	return l
}

// Export is one subject the pcm account exports to the principals'
// accounts (publicly: only the operator's signing key makes accounts, and
// an account imports only what Imports gives its kind).
type Export struct {
	Stream   bool
	Subject  string
	Response jwt.ResponseType
}

// exports are the pcm account's exports: each import of every kind must
// fall within one (TestImportsAreExported).
var exports = []Export{
	{Subject: api + "CONSUMER.INFO." + events.StreamJobs + ".*"},
	{Subject: api + "CONSUMER.MSG.NEXT." + events.StreamJobs + ".*", Response: jwt.ResponseTypeStream},
	// An ack subject of pcm's consumers has exactly five tokens after the
	// consumer name (v1 format): nothing longer, which nats-server could
	// read as the v2 format of another consumer.
	{Subject: ackPre + events.StreamJobs + ".*.*.*.*.*.*", Response: jwt.ResponseTypeStream},
	{Subject: "pcm.jobs.>"},
	{Subject: "pcm.status.*.*"},
	{Subject: kvPre + events.BucketAgents + ".*"},
	{Subject: kvPre + events.BucketLocks + ".*"},
	{Subject: objPre + events.BucketPackages + ".>"},
	{Subject: kvPre + events.BucketReleases + ".>"},
	{Subject: api + "STREAM.PURGE." + objSPre + events.BucketPackages},
	{Subject: api + "CONSUMER.LIST." + events.StreamJobs},
	{Subject: api + "CONSUMER.NAMES." + events.StreamJobs},
	{Subject: api + "STREAM.INFO.*"},
	{Subject: noneSubject},
	{Subject: "pcm.view.*.*", Response: jwt.ResponseTypeStream},
	{Stream: true, Subject: events.LiveSubject(events.SubjectJobsAny)},
	{Stream: true, Subject: events.LiveSubject(events.SubjectStatusAny)},
	{Stream: true, Subject: events.LiveSubject(kvPre + events.BucketAgents + ".>")},
	{Stream: true, Subject: events.LiveSubject(kvPre + events.BucketLocks + ".>")},
	{Stream: true, Subject: events.ReleaseHintSubject(">")},
}

func init() {
	for _, s := range readStreams {
		exports = append(exports,
			Export{Subject: directGet(s, ""), Response: jwt.ResponseTypeStream},
			Export{Subject: directGet(s, ">")})
	}
}

// Exports returns the pcm account's exports.
func Exports() []Export { return slices.Clone(exports) }

// exportResponseThreshold is how long the pcm account keeps the way back
// to a requester for the answers of a request: longer than any pull an
// agent waits on.
const exportResponseThreshold = 10 * time.Minute

// jwtExports renders the exports for the pcm account's JWT.
func jwtExports() jwt.Exports {
	var out jwt.Exports
	for _, e := range exports {
		x := &jwt.Export{Subject: jwt.Subject(e.Subject), Type: jwt.Stream}
		if !e.Stream {
			x.Type = jwt.Service
			x.ResponseType = e.Response
			if x.ResponseType == "" {
				x.ResponseType = jwt.ResponseTypeSingleton
			}
			x.ResponseThreshold = exportResponseThreshold
		}
		out.Add(x)
	}
	return out
}

// The system account's services pcm's admins use, through the pcm
// account's imports: push an account JWT to every broker's resolver, and
// read the one a broker holds.
const (
	sysClaimsUpdate = "$SYS.REQ.CLAIMS.UPDATE"
	sysClaimsLookup = "$SYS.REQ.ACCOUNT.*.CLAIMS.LOOKUP"
	// ClaimsUpdateSubject is where an admin of the pcm account sends an
	// account JWT to store it in the resolver of every broker.
	ClaimsUpdateSubject = "pcm.admin.claims.update"
	// ClaimsLookupPrefix, followed by an account's public key, is where an
	// admin asks for the account JWT the brokers hold.
	ClaimsLookupPrefix = "pcm.admin.claims.lookup."
)
