package rollout

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/fleet"
	"github.com/pcm-project/pcm/internal/offers"
)

// ClientState is where a job stands on one client: the state of the
// client's latest status (started, succeeded, failed, ...; see
// events.State), or, for a client that has reported nothing yet, why not:
// ClientPending, ClientNotReceived, ClientQueued, ClientOffline or
// ClientLocked.
type ClientState string

// The states of a client that has not reported on the job.
const (
	// ClientPending: the agent received the offer and waits (for the offer
	// or mandatory time, or for the user at the desktop).
	ClientPending ClientState = "pending"
	// ClientNotReceived: the client is expected but its agent has not
	// fetched the offer (or the client is not enrolled at all).
	ClientNotReceived ClientState = "not_received"
	// ClientQueued: the client's agent is online and busy with another
	// job; it fetches this one when that one is over.
	ClientQueued ClientState = "queued"
	// ClientOffline: the agent's heartbeat is stale, or it never wrote one.
	ClientOffline ClientState = "offline"
	// ClientLocked: the desktop face holds the client's lock, so the
	// service waits to run the job.
	ClientLocked ClientState = "locked"
	// ClientHalted: the job's staged rollout is halted; the client does
	// not start it until pcm resume.
	ClientHalted ClientState = "halted"
)

// ClientRollout is where a job stands on one client.
type ClientRollout struct {
	// Client is the client id.
	Client string `json:"client"`
	// State is the latest status's state, or why there is none.
	State ClientState `json:"state"`
	// Detail explains State in words, times in RFC 3339 UTC ("offline since
	// 2026-11-21T10:00:00Z", "pending: mandatory at ...", the status's
	// reason). Explain renders it with another time format.
	Detail string `json:"detail,omitempty"`
	// Expected is true for a client the job targets: named explicitly, or
	// enrolled with a consumer that takes one of the offer's copies. A
	// client that reported without being expected (enrolled later) is
	// listed with Expected false.
	Expected bool `json:"expected"`
	// Enrolled is false for a client named by the job that has no
	// consumer: its agent cannot receive the job until pcm enroll.
	Enrolled bool `json:"enrolled"`
	// Site is the branch site the client is enrolled at, empty for a
	// client of the hub.
	Site string `json:"site,omitempty"`
	// Done is true when the client's last status ends the job there (see
	// events.JobStatus.EndsJob): a final state with no attempt left; a
	// rejection does not end the job.
	Done bool `json:"done"`
	// Failed is true when Done and the job failed there (see
	// events.State.Failure): failed, timed out or expired; not when it
	// succeeded, did not apply or was cancelled.
	Failed bool `json:"failed"`
	// ExitCode, Runner, User, Host, Platform and Attempt come from the
	// latest status.
	ExitCode    *int          `json:"exit_code,omitempty"`
	Runner      events.Runner `json:"runner,omitempty"`
	User        string        `json:"user,omitempty"`
	Host        string        `json:"host,omitempty"`
	Platform    string        `json:"platform,omitempty"`
	Attempt     int           `json:"attempt,omitempty"`
	MaxAttempts int           `json:"max_attempts,omitempty"`
	// Time is when the latest status was made (its time attribute).
	Time *time.Time `json:"time,omitempty"`
	// Reason is the latest status's reason, as the agent wrote it.
	Reason string `json:"reason,omitempty"`
	// OutputTail is the end of the command's output, from the latest
	// status.
	OutputTail string `json:"output_tail,omitempty"`
	// Behind is the job a queued client's agent is running.
	Behind string `json:"behind,omitempty"`
	// Since is the last heartbeat of an offline agent, or when the desktop
	// took the lock.
	Since *time.Time `json:"since,omitempty"`
	// Due is when a pending job is due (its offer or mandatory time).
	Due *time.Time `json:"due,omitempty"`
	// Groups are the client's enrolled groups.
	Groups []string `json:"groups,omitempty"`
	// Lock is who holds the client's lock, if anyone.
	Lock *events.LockInfo `json:"lock,omitempty"`
	// Ring is the client's ring (from 1) of a staged rollout, as its agent
	// computes it (events.RolloutPlan.RingOf); 0 without rings.
	Ring int `json:"ring,omitempty"`
	// WaitsFor is the job this one requires that has not ended on the
	// client yet, when the client waits for it.
	WaitsFor string `json:"waits_for,omitempty"`
	// Halt is the job's halt, for a client halted.
	Halt *events.JobHalted `json:"-"`

	note note
}

// note says which explanation applies to a ClientRollout.
type note int

const (
	noteNone note = iota
	noteNotEnrolled
	noteNeverSeen
	noteOfferedFrom
	noteMandatoryAt
	noteForUser
	noteDue
	noteAgentOffline
	noteRetrying
	noteRing
	noteRequires
	noteWindow
	noteSiteUnreachable
)

// Explain renders why the client is in its state, formatting times with
// ts: "offline since T", "not received", "queued behind job J", "locked by
// desktop (user ann, job J) since T", "pending: mandatory at T", or the
// status's reason.
func (c ClientRollout) Explain(ts func(time.Time) string) string {
	at := func(t *time.Time) string {
		if t == nil {
			return "?"
		}
		return ts(*t)
	}
	switch c.State {
	case ClientNotReceived:
		if c.note == noteNotEnrolled {
			return "not received: not enrolled (pcm enroll " + c.Client + ")"
		}
		return "not received"
	case ClientQueued:
		return "queued behind job " + c.Behind
	case ClientOffline:
		if c.note == noteSiteUnreachable {
			return "site " + c.Site + " unreachable since " + at(c.Since)
		}
		if c.note == noteNeverSeen {
			return "offline: never seen (no heartbeat in " + events.BucketAgents + ")"
		}
		return "offline since " + at(c.Since)
	case ClientLocked:
		s := "locked by desktop"
		if l := c.Lock; l != nil {
			var who []string
			if l.User != "" {
				who = append(who, "user "+l.User)
			}
			if l.JobID != "" {
				who = append(who, "job "+l.JobID)
			}
			if len(who) > 0 {
				s += " (" + strings.Join(who, ", ") + ")"
			}
			s += " since " + ts(l.Since)
		}
		return s
	case ClientHalted:
		s := "halted"
		if h := c.Halt; h != nil && h.Reason != "" {
			s += ": " + h.Reason
		}
		return s
	case ClientPending:
		switch c.note {
		case noteRing:
			return fmt.Sprintf("pending: ring %d opens at %s", c.Ring, at(c.Due))
		case noteRequires:
			return "pending: waiting for job " + c.WaitsFor
		case noteOfferedFrom:
			return "pending: offered from " + at(c.Due)
		case noteMandatoryAt:
			return "pending: mandatory at " + at(c.Due)
		case noteForUser:
			return "pending: waiting for the user at the desktop"
		case noteWindow:
			if c.Due == nil {
				return "pending: waiting for maintenance window (none opens before the job expires in which its timeout fits: pcm window list --client " + c.Client + ")"
			}
			return "pending: waiting for maintenance window (next: " + at(c.Due) + ")"
		}
		return "pending: received, due now"
	}
	var parts []string
	if c.Reason != "" {
		parts = append(parts, c.Reason)
	}
	switch c.note {
	case noteRetrying:
		parts = append(parts, fmt.Sprintf("attempt %d of %d, will retry", c.Attempt, c.MaxAttempts))
	case noteAgentOffline:
		parts = append(parts, "agent offline since "+at(c.Since))
	case noteSiteUnreachable:
		parts = append(parts, "site "+c.Site+" unreachable since "+at(c.Since))
	}
	return strings.Join(parts, "; ")
}

// Rollout is where one job stands on every client it targets.
type Rollout struct {
	// JobID, Name and Targets of the job.
	JobID   string          `json:"job_id"`
	Name    string          `json:"name,omitempty"`
	Targets []events.Target `json:"targets"`
	// Publisher is the name in the offer's source.
	Publisher string `json:"publisher"`
	// Signer is the public key that signed the offer (its pcmkey), if it
	// is signed.
	Signer string `json:"signer,omitempty"`
	// OfferedAt is the offer's time attribute.
	OfferedAt time.Time `json:"offered_at"`
	// The job's time window.
	OfferAfter     time.Time  `json:"offer_after"`
	MandatoryAfter *time.Time `json:"mandatory_after,omitempty"`
	ExpireAfter    time.Time  `json:"expire_after"`
	// Cancelled is the cancellation of the job, if one was published.
	Cancelled *events.JobCancelled `json:"cancelled,omitempty"`
	// Plan is the job's rollout plan (rings, soak, halt threshold); nil
	// when it is offered to every target at once.
	Plan *events.RolloutPlan `json:"plan,omitempty"`
	// Requires are the jobs it requires on each client.
	Requires []string `json:"requires,omitempty"`
	// Halted is the job's halt while it is halted (the last event on its
	// halt subject is a halt); HaltedBy who made it.
	Halted   *events.JobHalted `json:"halted,omitempty"`
	HaltedBy string            `json:"halted_by,omitempty"`
	// Rings is where each ring of a staged rollout stands.
	Rings []RingState `json:"rings,omitempty"`
	// Clients are the expected clients and any other that reported, sorted
	// by client id.
	Clients []ClientRollout `json:"clients"`
	// Counts are the number of clients per state.
	Counts map[ClientState]int `json:"counts"`
	// Done counts the clients whose last status ends the job; Failed those
	// of them where it failed; Succeeded the others (succeeded, and also
	// not_applicable and cancelled: nothing failed there).
	Done      int `json:"done"`
	Succeeded int `json:"succeeded"`
	Failed    int `json:"failed"`
	// At is when the rollout was computed.
	At time.Time `json:"at"`
}

// RingState is where one ring of a staged rollout stands.
type RingState struct {
	// Ring is its number, from 1; Spec the plan's ring ("10%",
	// "group:pilot").
	Ring int    `json:"ring"`
	Spec string `json:"spec"`
	// OpensAt is when it opens (the offer time plus ring-1 soak times).
	OpensAt time.Time `json:"opens_at"`
	// State is "open" (its clients run the job), "waiting" (it has not
	// opened yet) or "halted" (the rollout is halted).
	State string `json:"state"`
	// Clients, Done and Failed count its clients as Rollout does.
	Clients int `json:"clients"`
	Done    int `json:"done"`
	Failed  int `json:"failed"`
}

// The states of a ring.
const (
	RingOpen    = "open"
	RingWaiting = "waiting"
	RingHalted  = "halted"
)

// Unfinished returns the clients that are not done.
func (r Rollout) Unfinished() []ClientRollout {
	var out []ClientRollout
	for _, c := range r.Clients {
		if !c.Done {
			out = append(out, c)
		}
	}
	return out
}

// FailedClients returns the clients that are done without success.
func (r Rollout) FailedClients() []ClientRollout {
	var out []ClientRollout
	for _, c := range r.Clients {
		if c.Failed {
			out = append(out, c)
		}
	}
	return out
}

// Over reports whether the job is over on every client it targets: there
// is at least one, and every one is done.
func (r Rollout) Over() bool { return len(r.Clients) > 0 && r.Done == len(r.Clients) }

// NoFailureLimit, as Verdict's maxFailures, lets no number of failures
// fail the rollout: a staged rollout's halt threshold judges them.
const NoFailureLimit = -1

// Verdict says how a rollout went for a CI pipeline.
type Verdict string

// The verdicts of Rollout.Verdict.
const (
	// VerdictRunning: some clients have not finished and failures are
	// within the limit.
	VerdictRunning Verdict = "running"
	// VerdictSucceeded: every client is done, with no more failures than
	// allowed.
	VerdictSucceeded Verdict = "succeeded"
	// VerdictFailed: more clients failed than allowed.
	VerdictFailed Verdict = "failed"
	// VerdictHalted: the staged rollout is halted, by its failure
	// threshold or an operator, before every client was done.
	VerdictHalted Verdict = "halted"
)

// Verdict is VerdictFailed as soon as more than maxFailures clients failed
// (NoFailureLimit: never), VerdictHalted while the rollout is halted with
// clients not done, VerdictSucceeded once every client is done within that
// limit, and VerdictRunning otherwise (including while no client is
// expected).
func (r Rollout) Verdict(maxFailures int) Verdict {
	switch {
	case maxFailures != NoFailureLimit && r.Failed > max(maxFailures, 0):
		return VerdictFailed
	case r.Halted != nil && r.Done < len(r.Clients):
		return VerdictHalted
	case r.Over():
		return VerdictSucceeded
	}
	return VerdictRunning
}

// fingerprint changes when anything shown of the rollout changes.
func (r Rollout) fingerprint() string {
	var b strings.Builder
	for _, c := range r.Clients {
		b.WriteString(c.Client + "|" + string(c.State) + "|" + c.Detail + "|" + strconv.FormatBool(c.Expected) + "\n")
	}
	if r.Cancelled != nil {
		b.WriteString("cancelled")
	}
	if r.Halted != nil {
		b.WriteString("halted")
	}
	for _, rs := range r.Rings {
		b.WriteString("|" + rs.State)
	}
	return b.String()
}

// trackedStatus is a client's latest status of the job.
type trackedStatus struct {
	st events.JobStatus
	at time.Time
}

// view is what a rollout is computed from: the job's offer as stored
// (every copy, and its cancellation), the enrollments, the agents'
// inventory, the locks and each client's latest status. It is pure:
// nothing in it reads the broker.
type view struct {
	offer    offers.Found
	enrolled map[string]fleet.Enrollment
	agents   map[string]events.AgentInfo
	locks    map[string]events.LockInfo
	statuses map[string]trackedStatus
	// halt is the job's halt while halted, by whom; required the latest
	// status of each required job, by client then job.
	halt     *events.JobHalted
	haltedBy string
	required map[string]map[string]events.JobStatus
	// windows are PCM_WINDOWS by key, for a job that requires a window.
	windows map[string]events.Windows
	// unreachable are the branch sites whose link to the hub is down.
	unreachable map[string]bool
}

func newView(offer offers.Found, enrolled map[string]fleet.Enrollment) *view {
	return &view{offer: offer, enrolled: enrolled, agents: map[string]events.AgentInfo{},
		locks: map[string]events.LockInfo{}, statuses: map[string]trackedStatus{},
		required: map[string]map[string]events.JobStatus{}, windows: map[string]events.Windows{}}
}

// siteLastHeard is when the hub last heard from site: the latest
// heartbeat of its clients that reached the hub; nil when none did.
func (v *view) siteLastHeard(site string) *time.Time {
	var last *time.Time
	for c, e := range v.enrolled {
		if e.Site != site {
			continue
		}
		if a, ok := v.agents[c]; ok && (last == nil || a.LastSeen.After(*last)) {
			t := a.LastSeen
			last = &t
		}
	}
	return last
}

// windowsOf are the maintenance windows of a client in groups.
func (v *view) windowsOf(client string, groups []string) events.Windows {
	var ws events.Windows
	for _, k := range events.WindowKeysOf(client, groups) {
		ws = append(ws, v.windows[k]...)
	}
	return ws
}

// applyRequired records the status of a job this one requires, unless it
// is older than what is known.
func (v *view) applyRequired(st events.JobStatus) {
	m := v.required[st.ClientID]
	if m == nil {
		m = map[string]events.JobStatus{}
		v.required[st.ClientID] = m
	}
	if cur, ok := m[st.JobID]; ok && !st.Supersedes(cur) {
		return
	}
	m[st.JobID] = st
}

// applyHalt records the last event stored on the job's halt subject: a
// halt halts it, a resume lifts it.
func (v *view) applyHalt(h *events.JobHalted, by string) {
	v.halt, v.haltedBy = h, by
	if h == nil {
		v.haltedBy = ""
	}
}

// waitsFor is the first job the offer requires that has not ended on
// client, "" when none.
func (v *view) waitsFor(client string) string {
	for _, req := range v.offer.Job.Requires {
		st, ok := v.required[client][req]
		if !ok || !st.EndsJob(st.MaxAttempts) {
			return req
		}
	}
	return ""
}

// firstCopy returns the sequence of the first copy of the offer that e's
// consumer takes, and whether there is one.
func (v *view) firstCopy(e fleet.Enrollment) (uint64, bool) {
	for _, c := range v.offer.Copies {
		if e.Receives(c.Subject) {
			return c.Seq, true
		}
	}
	return 0, false
}

// apply records a status unless it is older than what is known: a started
// status never replaces a final one of the same or a later attempt.
func (v *view) apply(st events.JobStatus, at time.Time) {
	if cur, ok := v.statuses[st.ClientID]; ok && !st.Supersedes(cur.st) {
		return
	}
	v.statuses[st.ClientID] = trackedStatus{st: st, at: at}
}

// expected reports whether client is targeted by the job.
func (v *view) expected(client string) bool {
	for _, t := range v.offer.Job.Targets {
		if t.Kind == events.TargetClient && t.Name == client {
			return true
		}
	}
	if e, ok := v.enrolled[client]; ok {
		_, ok := v.firstCopy(e)
		return ok
	}
	return false
}

// rollout computes the rollout at now.
func (v *view) rollout(now time.Time) Rollout {
	job := v.offer.Job
	first := v.offer.Copies[0].Event
	signer, _ := first.Extensions()[events.ExtensionSigner].(string)
	r := Rollout{
		JobID: job.JobID, Name: job.Name, Targets: job.Targets, Publisher: events.PublisherOf(first), Signer: signer,
		OfferedAt: first.Time(), OfferAfter: job.OfferAfter, MandatoryAfter: job.MandatoryAfter,
		ExpireAfter: job.ExpireAfter, Cancelled: v.offer.Cancelled, Counts: map[ClientState]int{}, At: now,
		Plan: job.Rollout, Requires: job.Requires, Halted: v.halt, HaltedBy: v.haltedBy,
	}
	if p := job.Rollout; p != nil {
		for i, ring := range p.Rings {
			rs := RingState{Ring: i + 1, Spec: ring.String(), OpensAt: p.OpensAt(job.OfferAfter, i+1), State: RingOpen}
			switch {
			case v.halt != nil:
				rs.State = RingHalted
			case now.Before(rs.OpensAt):
				rs.State = RingWaiting
			}
			r.Rings = append(r.Rings, rs)
		}
	}
	clients := map[string]bool{}
	for _, t := range job.Targets {
		if t.Kind == events.TargetClient {
			clients[t.Name] = true
		}
	}
	for c := range v.enrolled {
		if v.expected(c) {
			clients[c] = true
		}
	}
	for c := range v.statuses {
		clients[c] = true
	}
	for c := range clients {
		cr := v.client(c, now)
		cr.Detail = cr.Explain(func(t time.Time) string { return t.UTC().Format(time.RFC3339) })
		r.Clients = append(r.Clients, cr)
		r.Counts[cr.State]++
		var rs *RingState
		if cr.Ring > 0 && cr.Ring <= len(r.Rings) {
			rs = &r.Rings[cr.Ring-1]
			rs.Clients++
		}
		if cr.Done {
			r.Done++
			if cr.Failed {
				r.Failed++
			} else {
				r.Succeeded++
			}
			if rs != nil {
				rs.Done++
				if cr.Failed {
					rs.Failed++
				}
			}
		}
	}
	sort.Slice(r.Clients, func(i, j int) bool { return r.Clients[i].Client < r.Clients[j].Client })
	return r
}

// client computes where the job stands on one client.
func (v *view) client(c string, now time.Time) ClientRollout {
	job := v.offer.Job
	cr := ClientRollout{Client: c, Expected: v.expected(c)}
	e, enrolled := v.enrolled[c]
	cr.Enrolled = enrolled
	if enrolled {
		cr.Groups, cr.Site = e.Groups, e.Site
	}
	cut := cr.Site != "" && v.unreachable[cr.Site]
	if p := job.Rollout; p != nil {
		cr.Ring = p.RingOf(job.JobID, c, e.Groups)
	}
	if l, ok := v.locks[c]; ok {
		cr.Lock = &l
	}
	a, seen := v.agents[c]
	if ts, ok := v.statuses[c]; ok {
		st := ts.st
		t := ts.at
		cr.State, cr.Time, cr.Reason, cr.OutputTail = ClientState(st.State), &t, st.Reason, st.OutputTail
		cr.ExitCode, cr.Runner, cr.User, cr.Host, cr.Platform = st.ExitCode, st.Runner, st.User, st.Host, st.Platform
		cr.Attempt, cr.MaxAttempts = st.Attempt, st.MaxAttempts
		if cr.MaxAttempts <= 0 {
			cr.MaxAttempts = job.Attempts()
		}
		switch {
		case st.EndsJob(cr.MaxAttempts):
			cr.Done = true
			cr.Failed = st.State.Failure()
		case v.halt != nil && st.State.Final():
			cr.State, cr.Halt = ClientHalted, v.halt
		case st.State.Retryable(): // with attempts left
			cr.note = noteRetrying
		case cut:
			cr.note, cr.Since = noteSiteUnreachable, v.siteLastHeard(cr.Site)
		case seen && a.Stale(now):
			cr.note, cr.Since = noteAgentOffline, &a.LastSeen
		}
		return cr
	}
	switch {
	case v.halt != nil && enrolled && seen && !a.Stale(now):
		cr.State, cr.Halt = ClientHalted, v.halt
	case !enrolled:
		cr.State, cr.note = ClientNotReceived, noteNotEnrolled
	case cut:
		cr.State, cr.note, cr.Since = ClientOffline, noteSiteUnreachable, v.siteLastHeard(cr.Site)
	case !seen:
		cr.State, cr.note = ClientOffline, noteNeverSeen
	case a.Stale(now):
		last := a.LastSeen
		cr.State, cr.Since = ClientOffline, &last
	case cr.Lock != nil && cr.Lock.Holder == events.RunnerDesktop:
		since := cr.Lock.Since
		cr.State, cr.Since = ClientLocked, &since
	default:
		seq, ok := v.firstCopy(e)
		// A site client's consumer is at its site: the hub cannot
		// tell whether it has received the offer; it has while the
		// site is reachable and the client is online.
		if !ok || (e.Site == "" && e.Delivered < seq) {
			cr.State = ClientNotReceived
			if a.CurrentJob != "" && a.CurrentJob != job.JobID {
				cr.State, cr.Behind = ClientQueued, a.CurrentJob
			}
			break
		}
		cr.State = ClientPending
		opens := job.OfferAfter
		if job.Rollout != nil {
			opens = job.Rollout.OpensAt(job.OfferAfter, cr.Ring)
		}
		switch {
		case now.Before(job.OfferAfter):
			due := job.OfferAfter
			cr.note, cr.Due = noteOfferedFrom, &due
		case now.Before(opens):
			cr.note, cr.Due = noteRing, &opens
		case v.waitsFor(c) != "":
			cr.note, cr.WaitsFor = noteRequires, v.waitsFor(c)
		case !job.Mandatory() || !job.Command.Automated:
			cr.note = noteForUser
		case now.Before(*job.MandatoryAfter):
			due := *job.MandatoryAfter
			cr.note, cr.Due = noteMandatoryAt, &due
		case job.InWindow:
			ws := v.windowsOf(c, e.Groups)
			need := time.Duration(job.Command.Timeout)
			o, ok := ws.Next(now, need)
			switch {
			case ok && !o.Start.After(now):
				cr.note = noteDue
			case ok && o.Start.Before(job.ExpireAfter):
				cr.note, cr.Due = noteWindow, &o.Start
			default:
				cr.note = noteWindow
			}
		default:
			cr.note = noteDue
		}
	}
	return cr
}
