package publisher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/internal/kvread"
	"github.com/pcm-project/pcm/internal/streamread"
)

// Enrollment is a client's durable consumer on PCM_JOBS, as the operator
// enrolled it, with the consumer's position.
type Enrollment struct {
	// Client is the client id.
	Client string `json:"client"`
	// Groups are the groups the client was enrolled in.
	Groups []string `json:"groups,omitempty"`
	// Filters are the PCM_JOBS subjects the consumer delivers.
	Filters []string `json:"filters"`
	// Delivered is the highest PCM_JOBS sequence delivered to the client's
	// agent: every offer on Filters up to it has been received.
	Delivered uint64 `json:"delivered_seq"`
	// AckFloor is the PCM_JOBS sequence up to which every offer is acked.
	AckFloor uint64 `json:"ack_floor_seq"`
	// NumPending counts the offers not delivered yet.
	NumPending uint64 `json:"num_pending"`
	// NumAckPending counts the offers delivered and not acked yet.
	NumAckPending int `json:"num_ack_pending"`
}

// Receives reports whether the consumer's filters take subject.
func (e Enrollment) Receives(subject string) bool {
	for _, f := range e.Filters {
		if subjectMatches(f, subject) {
			return true
		}
	}
	return false
}

// firstCopy returns the sequence of the first copy of an offer that the
// consumer takes, and whether there is one.
func (e Enrollment) firstCopy(copies []OfferCopy) (uint64, bool) {
	for _, c := range copies {
		if e.Receives(c.Subject) {
			return c.Seq, true
		}
	}
	return 0, false
}

// enrollmentOf reads a client's enrollment from its consumer's info; ok is
// false for a consumer that is not a client's (not named agent-<client>).
func enrollmentOf(info *jetstream.ConsumerInfo) (Enrollment, bool) {
	if info == nil {
		return Enrollment{}, false
	}
	client, ok := strings.CutPrefix(info.Name, events.ConsumerName(""))
	if !ok || events.ValidID("client id", client) != nil {
		return Enrollment{}, false
	}
	if c := info.Config.Metadata[events.ConsumerMetadataClient]; c != "" && c != client {
		return Enrollment{}, false
	}
	filters := info.Config.FilterSubjects
	if info.Config.FilterSubject != "" {
		filters = append([]string{info.Config.FilterSubject}, filters...)
	}
	return Enrollment{
		Client: client, Groups: events.GroupsOfConsumer(info.Config.Metadata), Filters: filters,
		Delivered: info.Delivered.Stream, AckFloor: info.AckFloor.Stream,
		NumPending: info.NumPending, NumAckPending: info.NumAckPending,
	}, true
}

// ListEnrollments returns every enrolled client, by client id, as the
// consumers of PCM_JOBS say. The server pages the list; nothing else is read.
func ListEnrollments(ctx context.Context, js jetstream.JetStream) (map[string]Enrollment, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	stream, err := js.Stream(ctx, events.StreamJobs)
	if err != nil {
		return nil, streamErr(events.StreamJobs, err)
	}
	out := map[string]Enrollment{}
	lister := stream.ListConsumers(ctx)
	for info := range lister.Info() {
		if e, ok := enrollmentOf(info); ok {
			out[e.Client] = e
		}
	}
	if err := lister.Err(); err != nil {
		return nil, fmt.Errorf("%w: listing the consumers of %s: %w", ErrRead, events.StreamJobs, err)
	}
	return out, nil
}

// EnrollmentOf returns one client's enrollment; ok is false when the client
// has no consumer.
func EnrollmentOf(ctx context.Context, js jetstream.JetStream, client string) (e Enrollment, ok bool, err error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	cons, err := js.Consumer(ctx, events.StreamJobs, events.ConsumerName(client))
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return Enrollment{}, false, nil
	}
	if err != nil {
		return Enrollment{}, false, streamErr(events.StreamJobs, err)
	}
	e, ok = enrollmentOf(cons.CachedInfo())
	return e, ok, nil
}

// LockHolder says who holds a client's service-versus-desktop lock: the
// value of key <client> in PCM_LOCKS.
type LockHolder = events.LockInfo

// HolderDesktop is the LockHolder.Holder of the desktop face.
const HolderDesktop = events.RunnerDesktop

// kvSnapshot reads every live key of bucket once, with batched direct gets
// (no consumer, no binding).
func kvSnapshot(ctx context.Context, js jetstream.JetStream, bucket string, each func(key string, value []byte)) error {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	err := kvread.Snapshot(ctx, js, bucket, func(e kvread.Entry) { each(e.Key, e.Value) })
	switch {
	case errors.Is(err, streamread.ErrNoStream):
		return fmt.Errorf("%w: bucket %s does not exist: run pcm broker provision", ErrNotProvisioned, bucket)
	case err != nil:
		return fmt.Errorf("%w: %w", ErrRead, err)
	}
	return nil
}

// decodeAgent reads a PCM_AGENTS value; ok is false for a value that is not
// an AgentInfo.
func decodeAgent(key string, value []byte) (events.AgentInfo, bool) {
	var a events.AgentInfo
	if json.Unmarshal(value, &a) != nil {
		return events.AgentInfo{}, false
	}
	if a.ClientID == "" {
		a.ClientID = key
	}
	return a, a.ClientID == key
}

// decodeLock reads a PCM_LOCKS value; ok is false for a value that names no
// holder.
func decodeLock(value []byte) (LockHolder, bool) {
	var l LockHolder
	if json.Unmarshal(value, &l) != nil || l.Holder == "" {
		return LockHolder{}, false
	}
	return l, true
}

// ReadAgents returns the inventory every agent keeps in PCM_AGENTS, by
// client id. Values that are not an AgentInfo are skipped.
func ReadAgents(ctx context.Context, js jetstream.JetStream) (map[string]events.AgentInfo, error) {
	out := map[string]events.AgentInfo{}
	err := kvSnapshot(ctx, js, events.BucketAgents, func(key string, value []byte) {
		if a, ok := decodeAgent(key, value); ok {
			out[key] = a
		}
	})
	return out, err
}

// ReadLocks returns the held service-versus-desktop locks, by client id.
func ReadLocks(ctx context.Context, js jetstream.JetStream) (map[string]LockHolder, error) {
	out := map[string]LockHolder{}
	err := kvSnapshot(ctx, js, events.BucketLocks, func(key string, value []byte) {
		if l, ok := decodeLock(value); ok {
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
	Lock *LockHolder `json:"lock,omitempty"`
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
	out := make([]AgentEntry, 0, len(clients))
	for c := range clients {
		e := AgentEntry{Client: c, Liveness: NeverSeen}
		if a, ok := agents[c]; ok {
			e.Info = &a
			e.Liveness = livenessOf(a, now)
		}
		if en, ok := enrolled[c]; ok {
			e.Enrollment = &en
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
		return AgentDetail{}, fmt.Errorf("%w: %w", ErrInvalidFilter, err)
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
	err := scanStream(ctx, js, events.StreamJobs, streamread.Options{
		Filters:  e.Filters,
		StartSeq: e.AckFloor + 1,
	}, func(msg streamread.Msg) {
		ev, err := events.Decode(msg.Header, msg.Data)
		if err != nil {
			return
		}
		switch ev.Type() {
		case events.TypeJobCancelled:
			cancelled[ev.Subject()] = true
		case events.TypeJobOffered:
			job, err := events.ParseJobOffered(ev)
			if err != nil {
				return
			}
			if _, seen := index[job.JobID]; seen {
				return
			}
			index[job.JobID] = len(out)
			out = append(out, PendingJob{
				JobID: job.JobID, Name: job.Name, Subject: msg.Subject, Seq: msg.Seq,
				Received:   msg.Seq <= e.Delivered,
				OfferAfter: job.OfferAfter, MandatoryAfter: job.MandatoryAfter, ExpireAfter: job.ExpireAfter,
			})
		}
	})
	if err != nil {
		return nil, err
	}
	status, err := js.Stream(ctx, events.StreamStatus)
	if err != nil {
		return nil, streamErr(events.StreamStatus, err)
	}
	kept := make([]PendingJob, 0, len(out))
	for _, p := range out {
		if cancelled[p.JobID] {
			continue
		}
		last, err := lastStatusOf(ctx, status, e.Client, p.JobID)
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

// lastStatusOf reads the last status of job on client; nil when none.
func lastStatusOf(ctx context.Context, status jetstream.Stream, client, job string) (*events.JobStatus, error) {
	gctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	raw, err := status.GetLastMsgForSubject(gctx, events.StatusSubject(client, job))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: last status of %s on %s: %w", ErrRead, job, client, err)
	}
	ev, err := events.Decode(raw.Header, raw.Data)
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
	err := scanStream(ctx, js, events.StreamStatus, streamread.Options{
		Filters: []string{events.StatusSubjectsOfClient(client)},
	}, func(msg streamread.Msg) {
		ev, err := events.Decode(msg.Header, msg.Data)
		if err != nil {
			return
		}
		st, err := events.ParseJobStatus(ev)
		if err != nil {
			return
		}
		s := StoredStatus{JobStatus: st, Time: ev.Time(), Stored: msg.Time, Seq: msg.Seq}
		if len(ring) < n {
			ring = append(ring, s)
			return
		}
		ring[next] = s
		next = (next + 1) % n
	})
	if err != nil {
		return nil, err
	}
	return append(ring[next:], ring[:next]...), nil
}

// scanStream reads what stream holds on opts' filters, from its start
// position up to what the stream held when it began, with batched direct
// gets (internal/streamread: no consumer, so an auditor needs no consumer
// right). The scan is bounded by ctx only, since a long history takes its
// time; each answer of the broker by streamread's timeout.
func scanStream(ctx context.Context, js jetstream.JetStream, stream string, opts streamread.Options, each func(streamread.Msg)) error {
	err := streamread.Scan(ctx, js, stream, opts, func(m streamread.Msg) error {
		each(m)
		return nil
	})
	if err != nil {
		return streamErr(stream, err)
	}
	return nil
}

// streamErr maps a stream lookup error to the package's sentinels.
func streamErr(stream string, err error) error {
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("%w: stream %s does not exist: run pcm broker provision", ErrNotProvisioned, stream)
	}
	return fmt.Errorf("%w: %s: %w", ErrRead, stream, err)
}

// subjectMatches reports whether subject matches filter, which may hold
// the wildcards * (one token) and > (the rest).
func subjectMatches(filter, subject string) bool {
	for {
		ft, frest, fmore := strings.Cut(filter, ".")
		st, srest, smore := strings.Cut(subject, ".")
		switch {
		case ft == ">":
			return true
		case ft != "*" && ft != st:
			return false
		case !fmore || !smore:
			return fmore == smore
		}
		filter, subject = frest, srest
	}
}
