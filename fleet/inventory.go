package fleet

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/internal/backoff"
	"github.com/pcm-project/pcm/internal/kvread"
	"github.com/pcm-project/pcm/internal/offers"
	"github.com/pcm-project/pcm/internal/streamread"
)

// kvSnapshot reads every live key of bucket once, with batched direct gets
// (no consumer, no binding).
func kvSnapshot(ctx context.Context, js jetstream.JetStream, bucket string, each func(key string, value []byte)) error {
	ctx, cancel := backoff.WithDefaultTimeout(ctx, readTimeout)
	defer cancel()
	if err := kvread.Snapshot(ctx, js, bucket, func(e kvread.Entry) { each(e.Key, e.Value) }); err != nil {
		return streamread.Describe("bucket "+bucket, err, ErrNotProvisioned, ErrRead)
	}
	return nil
}

// ReadAgents returns the inventory every agent keeps in PCM_AGENTS, by
// client id. Values that are not an AgentInfo are skipped.
func ReadAgents(ctx context.Context, js jetstream.JetStream) (map[string]events.AgentInfo, error) {
	out := map[string]events.AgentInfo{}
	err := kvSnapshot(ctx, js, events.BucketAgents, func(key string, value []byte) {
		if a, ok := events.ParseAgentInfo(key, value); ok {
			out[key] = a
		}
	})
	return out, err
}

// ReadLocks returns the held service-versus-desktop locks, by client id.
func ReadLocks(ctx context.Context, js jetstream.JetStream) (map[string]events.LockInfo, error) {
	out := map[string]events.LockInfo{}
	err := kvSnapshot(ctx, js, events.BucketLocks, func(key string, value []byte) {
		if l, ok := events.ParseLockInfo(value); ok {
			out[key] = l
		}
	})
	return out, err
}

// Liveness says whether an agent's heartbeat is current.
type Liveness string

// The liveness of an agent.
const (
	// Online: the agent's last heartbeat is recent.
	Online Liveness = "online"
	// Stale: the agent missed three heartbeats.
	Stale Liveness = "stale"
	// NeverSeen: the client is enrolled but no agent ever wrote its inventory.
	NeverSeen Liveness = "never_seen"
	// SiteUnreachable: the client belongs to a branch site whose link to
	// the hub is down; its last heartbeat is the last the hub heard of it
	// (its agent may well be running at the site).
	SiteUnreachable Liveness = "site_unreachable"
)

// AgentEntry is one client of the inventory: what its agent reports, how the
// operator enrolled it, and who holds its lock.
type AgentEntry struct {
	// Client is the client id.
	Client string `json:"client"`
	// Liveness of the agent at the time of reading.
	Liveness Liveness `json:"liveness"`
	// Info is the agent's own inventory; nil when it never wrote one.
	Info *events.AgentInfo `json:"info,omitempty"`
	// Enrollment is the client's consumer; nil when it is not enrolled.
	Enrollment *Enrollment `json:"enrollment,omitempty"`
	// Lock is who holds the client's lock; nil when it is free.
	Lock *events.LockInfo `json:"lock,omitempty"`
}

// Groups are the enrolled groups, or the agent's own when not enrolled.
func (a AgentEntry) Groups() []string {
	if a.Enrollment != nil {
		return a.Enrollment.Groups
	}
	if a.Info != nil {
		return a.Info.Groups
	}
	return nil
}

// Inventory returns every client that is enrolled or has an agent
// inventory, sorted by client id, with its liveness at now.
func Inventory(ctx context.Context, js jetstream.JetStream, now time.Time) ([]AgentEntry, error) {
	agents, err := ReadAgents(ctx, js)
	if err != nil {
		return nil, err
	}
	locks, err := ReadLocks(ctx, js)
	if err != nil {
		return nil, err
	}
	enrolled, err := ListEnrollments(ctx, js)
	if err != nil {
		return nil, err
	}
	clients := map[string]bool{}
	for c := range agents {
		clients[c] = true
	}
	for c := range enrolled {
		clients[c] = true
	}
	probed := map[string]bool{}
	reachable := func(ctx context.Context, js jetstream.JetStream, site string) bool {
		r, ok := probed[site]
		if !ok {
			r = SiteReachable(ctx, js.Conn(), site)
			probed[site] = r
		}
		return r
	}
	out := make([]AgentEntry, 0, len(clients))
	for c := range clients {
		e := AgentEntry{Client: c, Liveness: NeverSeen}
		if a, ok := agents[c]; ok {
			e.Info = &a
			e.Liveness = livenessOf(a, now)
		}
		if en, ok := enrolled[c]; ok {
			e.Enrollment = &en
			if en.Site != "" && e.Liveness != Online && !reachable(ctx, js, en.Site) {
				e.Liveness = SiteUnreachable
			}
		}
		if l, ok := locks[c]; ok {
			e.Lock = &l
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Client < out[j].Client })
	return out, nil
}

func livenessOf(a events.AgentInfo, now time.Time) Liveness {
	if a.Stale(now) {
		return Stale
	}
	return Online
}

// PendingJob is a job offered to a client that the client has not settled:
// no final status ends it there yet.
type PendingJob struct {
	// JobID and Name of the job.
	JobID string `json:"job_id"`
	Name  string `json:"name,omitempty"`
	// Subject and Seq of the copy the client's consumer takes.
	Subject string `json:"subject"`
	Seq     uint64 `json:"seq"`
	// Received is true when the offer was delivered to the agent.
	Received bool `json:"received"`
	// The job's time window.
	OfferAfter     time.Time  `json:"offer_after"`
	MandatoryAfter *time.Time `json:"mandatory_after,omitempty"`
	ExpireAfter    time.Time  `json:"expire_after"`
	// LastState is the client's last status of the job, if any (started, or
	// a failed attempt that will be retried).
	LastState events.State `json:"last_state,omitempty"`
}

// StoredStatus is a status with where and when the broker stored it.
type StoredStatus struct {
	events.JobStatus
	// Time is the event's time attribute: when the agent made it.
	Time time.Time `json:"time"`
	// Stored is when PCM_STATUS stored it.
	Stored time.Time `json:"stored"`
	// Seq is its PCM_STATUS sequence.
	Seq uint64 `json:"seq"`
}

// AgentDetail is one client of the inventory with its pending jobs and its
// most recent statuses.
type AgentDetail struct {
	AgentEntry
	// Pending are the jobs offered to it that it has not settled, in
	// stream order.
	Pending []PendingJob `json:"pending"`
	// Recent are its last statuses, oldest first.
	Recent []StoredStatus `json:"recent"`
}

// DefaultRecentStatuses is how many statuses ShowAgent returns by default.
const DefaultRecentStatuses = 20

// ShowAgent returns one client's inventory entry, its pending jobs and its
// last recent statuses (DefaultRecentStatuses when recent <= 0). It reads
// the client's offers from its consumer's ack floor on and its statuses
// with batched direct gets (no consumer), keeping only what it returns in
// memory. A client that is neither enrolled nor has an inventory is
// ErrUnknownClient.
func ShowAgent(ctx context.Context, js jetstream.JetStream, client string, recent int, now time.Time) (AgentDetail, error) {
	if err := events.ValidID("client id", client); err != nil {
		return AgentDetail{}, fmt.Errorf("%w: %w", ErrUnknownClient, err)
	}
	if recent <= 0 {
		recent = DefaultRecentStatuses
	}
	d := AgentDetail{AgentEntry: AgentEntry{Client: client, Liveness: NeverSeen}}
	agents, err := ReadAgents(ctx, js)
	if err != nil {
		return d, err
	}
	if a, ok := agents[client]; ok {
		d.Info = &a
		d.Liveness = livenessOf(a, now)
	}
	locks, err := ReadLocks(ctx, js)
	if err != nil {
		return d, err
	}
	if l, ok := locks[client]; ok {
		d.Lock = &l
	}
	e, enrolled, err := EnrollmentOf(ctx, js, client)
	if err != nil {
		return d, err
	}
	if !enrolled && d.Info == nil {
		return d, fmt.Errorf("%w: %s has no consumer on %s and no inventory in %s: check the id, or enroll it with pcm enroll %s",
			ErrUnknownClient, client, events.StreamJobs, events.BucketAgents, client)
	}
	if enrolled {
		d.Enrollment = &e
		if d.Pending, err = pendingJobs(ctx, js, e); err != nil {
			return d, err
		}
	}
	if d.Recent, err = lastStatuses(ctx, js, client, recent); err != nil {
		return d, err
	}
	return d, nil
}

// pendingJobs reads the offers on e's filters after its ack floor and keeps
// those that are neither cancelled nor ended by a final status.
func pendingJobs(ctx context.Context, js jetstream.JetStream, e Enrollment) ([]PendingJob, error) {
	if e.NumPending == 0 && e.NumAckPending == 0 {
		return []PendingJob{}, nil
	}
	var out []PendingJob
	index := map[string]int{}
	cancelled := map[string]bool{}
	err := offers.Scan(ctx, js, streamread.Options{Filters: e.Filters, StartSeq: e.AckFloor + 1}, func(en offers.Entry) bool {
		if en.Cancel != nil {
			cancelled[en.Cancel.JobID] = true
			return true
		}
		job := en.Offer
		if _, seen := index[job.JobID]; seen {
			return true
		}
		index[job.JobID] = len(out)
		out = append(out, PendingJob{
			JobID: job.JobID, Name: job.Name, Subject: en.Subject, Seq: en.Seq,
			Received:   en.Seq <= e.Delivered,
			OfferAfter: job.OfferAfter, MandatoryAfter: job.MandatoryAfter, ExpireAfter: job.ExpireAfter,
		})
		return true
	})
	if err != nil {
		return nil, streamErr(events.StreamJobs, err)
	}
	kept := make([]PendingJob, 0, len(out))
	for _, p := range out {
		if cancelled[p.JobID] {
			continue
		}
		last, err := lastStatusOf(ctx, js, e.Client, p.JobID)
		if err != nil {
			return nil, err
		}
		if last != nil {
			if last.EndsJob(last.MaxAttempts) {
				continue
			}
			p.LastState = last.State
		}
		kept = append(kept, p)
	}
	return kept, nil
}

// lastStatusOf reads the last status of job on client (a direct get by
// subject); nil when there is none, or when it does not decode.
func lastStatusOf(ctx context.Context, js jetstream.JetStream, client, job string) (*events.JobStatus, error) {
	m, found, err := streamread.Last(ctx, js, events.StreamStatus, events.StatusSubject(client, job))
	if err != nil {
		return nil, fmt.Errorf("last status of %s on %s: %w", job, client, streamErr(events.StreamStatus, err))
	}
	if !found {
		return nil, nil
	}
	ev, err := events.Decode(m.Header, m.Data)
	if err != nil {
		return nil, nil
	}
	st, err := events.ParseJobStatus(ev)
	if err != nil {
		return nil, nil
	}
	return &st, nil
}

// lastStatuses returns client's last n statuses, oldest first, keeping a
// ring of n while it reads them.
func lastStatuses(ctx context.Context, js jetstream.JetStream, client string, n int) ([]StoredStatus, error) {
	ring := make([]StoredStatus, 0, n)
	next := 0
	// Read with batched direct gets (no consumer: an auditor needs no
	// consumer right), bounded by ctx only: a long history takes its time.
	err := streamread.Scan(ctx, js, events.StreamStatus, streamread.Options{
		Filters: []string{events.StatusSubjectsOfClient(client)},
	}, func(msg streamread.Msg) error {
		ev, err := events.Decode(msg.Header, msg.Data)
		if err != nil {
			return nil
		}
		st, err := events.ParseJobStatus(ev)
		if err != nil {
			return nil
		}
		s := StoredStatus{JobStatus: st, Time: ev.Time(), Stored: msg.Time, Seq: msg.Seq}
		if len(ring) < n {
			ring = append(ring, s)
			return nil
		}
		ring[next] = s
		next = (next + 1) % n
		return nil
	})
	if err != nil {
		return nil, streamErr(events.StreamStatus, err)
	}
	return append(ring[next:], ring[:next]...), nil
}
