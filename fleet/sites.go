package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/broker/auth"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/internal/backoff"
)

// SiteRecord is what the hub knows of a client enrolled at a branch site
// (pcm enroll --site): its consumer lives in the site's PCM_JOBS, out of
// the hub's sight, so the hub keeps its site and groups in PCM_SITES.
type SiteRecord struct {
	// Client is the client id; Site the site's name (its JetStream domain).
	Client string `json:"client"`
	Site   string `json:"site"`
	// Groups and Filters are those of the client's consumer at the site.
	Groups  []string `json:"groups,omitempty"`
	Filters []string `json:"filters"`
}

// siteProbeTimeout is how long SiteReachable waits for the site's
// JetStream to answer.
const siteProbeTimeout = time.Second

// sitesBucket opens (or, with create, makes) the hub's PCM_SITES bucket.
func sitesBucket(ctx context.Context, js jetstream.JetStream, create bool) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, events.BucketSites)
	if create && errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: events.BucketSites, Description: "pcm clients enrolled at a branch site, keyed by client id",
			History: 1, Storage: jetstream.FileStorage,
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = js.KeyValue(ctx, events.BucketSites)
		}
	}
	return kv, err
}

// EnrollAtSite enrolls client at the branch site site through the hub js:
// it creates or updates the client's consumer in the site's PCM_JOBS (the
// site's JetStream domain, reached across the site's leaf connection, which
// must be up) and records the client's site and groups in the hub's
// PCM_SITES, so that the hub's views list it. It returns the groups as
// enrolled.
func EnrollAtSite(ctx context.Context, js jetstream.JetStream, site, client string, groups []string, opts ConsumerOptions) ([]string, error) {
	if err := events.ValidID("site", site); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrEnroll, err)
	}
	groups, err := checkClient(client, groups)
	if err != nil {
		return nil, err
	}
	siteJS, err := jetstream.NewWithDomain(js.Conn(), site)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrEnroll, err)
	}
	cons, err := EnrollConsumer(ctx, siteJS, client, groups, opts)
	if err != nil {
		if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) || errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("%w: site %s does not answer (is its broker connected to this hub?): %w", ErrEnroll, site, err)
		}
		return nil, fmt.Errorf("at site %s: %w", site, err)
	}
	e, _ := enrollmentOf(cons.CachedInfo())
	if err := RecordSite(ctx, js, SiteRecord{Client: client, Site: site, Groups: groups, Filters: e.Filters}); err != nil {
		return nil, err
	}
	return groups, nil
}

// EnrollAtAuthSite enrolls client at the branch site site of an
// authenticated hub: hub is an admin's connection to the hub, siteJS and
// siteAccts an admin's connection to the site's broker (the same
// authority). Its consumer and its account are made at the site (Enroll:
// the account is pushed to the site's resolver, so the agent credentials
// the issuer mints work there), the hub records its site in PCM_SITES,
// and the site's account at the hub is signed again with every client
// recorded at the site (EnsureSiteAccount), so that the site forwards
// this client's statuses and inventory too. A client moved from another
// site leaves that site's account at the hub too (signed again without
// it). It returns the groups as enrolled.
func EnrollAtAuthSite(ctx context.Context, hub jetstream.JetStream, hubAccts *Accounts,
	siteJS jetstream.JetStream, siteAccts *Accounts, site, client string, groups []string, opts ConsumerOptions) ([]string, error) {
	if err := events.ValidID("site", site); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrEnroll, err)
	}
	enrolled, err := Enroll(ctx, siteJS, siteAccts, client, groups, opts)
	if err != nil {
		return nil, fmt.Errorf("at site %s: %w", site, err)
	}
	e, ok, err := EnrollmentOf(ctx, siteJS, client)
	if err != nil {
		return nil, fmt.Errorf("%w: reading %s's consumer at site %s: %w", ErrEnroll, client, site, err)
	}
	if !ok {
		return nil, fmt.Errorf("%w: %s has no consumer at site %s after its enrollment there", ErrEnroll, client, site)
	}
	sites, err := ReadSites(ctx, hub)
	if err != nil {
		return nil, err
	}
	before := sites[client].Site
	if err := RecordSite(ctx, hub, SiteRecord{Client: client, Site: site, Groups: enrolled, Filters: e.Filters}); err != nil {
		return nil, err
	}
	if err := EnsureSiteAccount(ctx, hub, hubAccts, site); err != nil {
		return nil, err
	}
	if before != "" && before != site {
		if err := EnsureSiteAccount(ctx, hub, hubAccts, before); err != nil {
			return nil, fmt.Errorf("%s left site %s: %w", client, before, err)
		}
	}
	return enrolled, nil
}

// EnsureSiteAccount signs the account of site at the hub again (hub is an
// admin's connection to it) with the clients PCM_SITES records at the site
// and the hub's JetStream domain, and pushes it: its imports then forward
// the statuses and inventory of exactly those clients.
func EnsureSiteAccount(ctx context.Context, hub jetstream.JetStream, accts *Accounts, site string) error {
	return ensureSiteAccount(ctx, hub, accts, site, "")
}

// ensureSiteAccount is EnsureSiteAccount, leaving out the client except
// (none when empty).
func ensureSiteAccount(ctx context.Context, hub jetstream.JetStream, accts *Accounts, site, except string) error {
	sites, err := ReadSites(ctx, hub)
	if err != nil {
		return err
	}
	var clients []string
	for c, r := range sites {
		if r.Site == site && c != except {
			clients = append(clients, c)
		}
	}
	slices.Sort(clients)
	ctx, cancel := backoff.WithDefaultTimeout(ctx, defaultTimeout)
	defer cancel()
	info, err := hub.AccountInfo(ctx)
	if err != nil {
		return fmt.Errorf("%w: the hub's JetStream domain: %w", ErrEnroll, err)
	}
	p := auth.Principal{Kind: auth.KindSite, Name: site, Clients: clients, HubDomain: info.Domain}
	if err := accts.Ensure(ctx, p); err != nil {
		return fmt.Errorf("%w: the account of site %s at the hub: %w", ErrEnroll, site, err)
	}
	return nil
}

// LeaveAuthSite is LeaveSite on an authenticated hub (hub is an admin's
// connection to it, accts its accounts): the account at the hub of the
// site client was enrolled at is first signed again without it, so that
// the site no longer forwards its statuses and inventory, and only then
// is its record removed (a failed signature leaves the record, and running
// it again finds the site). It returns the site client left, "" when it
// was at none.
func LeaveAuthSite(ctx context.Context, hub jetstream.JetStream, accts *Accounts, client string) (string, error) {
	sites, err := ReadSites(ctx, hub)
	if err != nil {
		return "", err
	}
	site := sites[client].Site
	if site == "" {
		return "", nil
	}
	if err := ensureSiteAccount(ctx, hub, accts, site, client); err != nil {
		return "", err
	}
	return site, LeaveSite(ctx, hub, client)
}

// RecordSite records in the hub's PCM_SITES (made when missing) that
// r.Client is enrolled at r.Site, so that the hub's views list it.
func RecordSite(ctx context.Context, js jetstream.JetStream, r SiteRecord) error {
	rec, _ := json.Marshal(r)
	ctx, cancel := backoff.WithDefaultTimeout(ctx, defaultTimeout)
	defer cancel()
	kv, err := sitesBucket(ctx, js, true)
	if err != nil {
		return fmt.Errorf("%w: bucket %s: %w", ErrEnroll, events.BucketSites, err)
	}
	if _, err := kv.Put(ctx, r.Client, rec); err != nil {
		return fmt.Errorf("%w: recording the site of %s: %w", ErrEnroll, r.Client, err)
	}
	return nil
}

// LeaveSite forgets that client is at a site (it was enrolled at the hub);
// nothing when it was not.
func LeaveSite(ctx context.Context, js jetstream.JetStream, client string) error {
	ctx, cancel := backoff.WithDefaultTimeout(ctx, defaultTimeout)
	defer cancel()
	kv, err := sitesBucket(ctx, js, false)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: bucket %s: %w", ErrEnroll, events.BucketSites, err)
	}
	if err := kv.Delete(ctx, client); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("%w: forgetting the site of %s: %w", ErrEnroll, client, err)
	}
	return nil
}

// ReadSites returns the clients enrolled at sites, by client id: none when
// the hub has no PCM_SITES, or when js cannot reach it (on an
// authenticated hub only its admins can: no principal's account imports
// PCM_SITES).
func ReadSites(ctx context.Context, js jetstream.JetStream) (map[string]SiteRecord, error) {
	ctx, cancel := backoff.WithDefaultTimeout(ctx, readTimeout)
	defer cancel()
	out := map[string]SiteRecord{}
	if authenticated(js.Conn()) && !isAdmin(js.Conn()) {
		return out, nil // not even asked: a denied request fails the connection's user
	}
	if _, err := js.KeyValue(ctx, events.BucketSites); err != nil {
		return out, nil
	}
	err := kvSnapshot(ctx, js, events.BucketSites, func(key string, value []byte) {
		var r SiteRecord
		if json.Unmarshal(value, &r) == nil && r.Client == key && r.Site != "" {
			out[key] = r
		}
	})
	if err != nil {
		return nil, fmt.Errorf("%w: bucket %s: %w", ErrRead, events.BucketSites, err)
	}
	return out, nil
}

// authenticated reports whether nc connects with credentials of its own:
// an authenticated broker.
func authenticated(nc *nats.Conn) bool {
	o := nc.Opts
	return o.UserJWT != nil || o.Nkey != "" || o.User != "" || o.Token != "" || o.TokenHandler != nil
}

// isAdmin reports whether nc connects as an admin of the pcm account (its
// user JWT says so; pcm issued it).
func isAdmin(nc *nats.Conn) bool {
	if nc.Opts.UserJWT == nil {
		return false
	}
	tok, err := nc.Opts.UserJWT()
	if err != nil {
		return false
	}
	uc, err := jwt.DecodeUserClaims(tok)
	if err != nil {
		return false
	}
	role, ok := auth.RoleOf(uc)
	return ok && role == auth.RoleAdmin
}

// SiteReachable reports whether site answers through nc, the hub's
// connection: false when the site's leaf connection is down. On an open
// hub it asks the site's JetStream; on an authenticated one, whose pcm
// account does not reach the site's JetStream, it asks the hub broker
// whether the site's leaf connection is up (events.SiteProbeSubject,
// broker.ServeSiteProbes).
func SiteReachable(ctx context.Context, nc *nats.Conn, site string) bool {
	ctx, cancel := context.WithTimeout(ctx, siteProbeTimeout)
	defer cancel()
	subject := events.DomainAPI(site) + ".INFO"
	if authenticated(nc) {
		subject = events.SiteProbeSubject(site)
	}
	_, err := nc.RequestWithContext(ctx, subject, nil)
	return err == nil
}
