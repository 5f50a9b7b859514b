package agent

import "sync/atomic"

// Stats counts what a face did with the jobs it was given since it was
// created: for tests, benchmarks and monitoring, which should not have to
// read its logs. Each face counts what it does; the others stay zero.
type Stats struct {
	// Offers counts the offers decided (a valid offer, once per delivery);
	// Filtered those not for this client's platform.
	Offers, Filtered int64
	// Held counts the deliveries held for later (the offer or mandatory
	// time has not come, the job waits for the user): the service asks the
	// broker to deliver them again then.
	Held int64
	// Refused counts the events refused: malformed, of an unknown type,
	// invalid, or not signed by a trusted key (the service reports them
	// rejected where it can name the job, and terms them).
	Refused int64
	// Started counts the attempts started: a start recorded and a process
	// about to run.
	Started int64
	// StatusWaits counts the times a status, or the ack of an offer, could
	// not be stored yet and waited for the broker (in the journal).
	StatusWaits int64
	// FetchRetries counts the service's pulls of offers that failed (the
	// broker away) and were tried again.
	FetchRetries int64
	// DesktopRuns counts the offers the service acked because the desktop
	// ran the job.
	DesktopRuns int64
	// Untrusted counts the job events the desktop ignored because their
	// signature is not trusted; ServiceOnly the background jobs it would
	// not list or run.
	Untrusted, ServiceOnly int64
	// ReleasesRefused counts the release manifests the service refused
	// (signature, channel, platform, downgrade, download).
	ReleasesRefused int64
	// UntrustedHalts counts the halts and resumes read on a job's halt
	// subject that were not trusted (a halt not signed by a publisher or
	// the controller is ignored; a resume not signed by a publisher leaves
	// the job halted).
	UntrustedHalts int64
	// Detections counts the detect commands run; Present those that found
	// their job already in place.
	Detections, Present int64
	// Woken counts the held offers woken before their time: by a resume,
	// or by the end of a job they require.
	Woken int64
	// HaltedHolds counts the offers held because their staged rollout is
	// halted (among Held).
	HaltedHolds int64
	// Superseded counts the final statuses not stored because their
	// attempt already had one, stored by the other face while this face's
	// lease had lapsed (one final status per attempt).
	Superseded int64
}

// counters are a face's Stats as they are counted.
type counters struct {
	offers, filtered, held, refused, started, statusWaits, fetchRetries, desktopRuns, untrusted, serviceOnly, releasesRefused atomic.Int64
	untrustedHalts, detections, present, woken, haltedHolds, superseded                                                       atomic.Int64
}

// Stats returns what the face has counted so far.
func (f *face) Stats() Stats {
	c := f.counts
	return Stats{
		Offers: c.offers.Load(), Filtered: c.filtered.Load(), Held: c.held.Load(), Refused: c.refused.Load(),
		Started: c.started.Load(), StatusWaits: c.statusWaits.Load(), FetchRetries: c.fetchRetries.Load(),
		DesktopRuns: c.desktopRuns.Load(), Untrusted: c.untrusted.Load(), ServiceOnly: c.serviceOnly.Load(),
		UntrustedHalts: c.untrustedHalts.Load(), Detections: c.detections.Load(), Present: c.present.Load(), Woken: c.woken.Load(),
		HaltedHolds: c.haltedHolds.Load(), Superseded: c.superseded.Load(),
		ReleasesRefused: c.releasesRefused.Load(),
	}
}
