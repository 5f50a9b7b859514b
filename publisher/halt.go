package publisher

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/internal/backoff"
	"github.com/pcm-project/pcm/internal/offers"
	"github.com/pcm-project/pcm/internal/streamread"
)

// Halt halts the staged rollout of h.JobID (a job with a rollout plan): it
// stores a pcm.job.halted.v1 (h, with the job's targets; signed when the
// publisher has a Signer) on the job's halt subject (events.HaltSubject),
// which every agent reads before it runs the job, so that no client starts
// it until it is resumed, also clients offline now or enrolled later; then
// copies on the job's targets, which a client's audit shows. Attempts
// already running finish. It returns false, storing nothing, when the job
// is halted already. Only the pcm account (an admin, the rollout
// controller) may store on a halt subject.
func (p *Publisher) Halt(ctx context.Context, h events.JobHalted) (bool, error) {
	return p.control(ctx, h.JobID, true, func(targets []events.Target) (event.Event, error) {
		h.Targets = targets
		return events.NewJobHalted(p.source(), h)
	})
}

// Resume lifts the halt of jobID's staged rollout (see Halt): its rings
// open at their times again. It returns false, storing nothing, when the
// job is not halted. The rollout controller never resumes (ErrController).
func (p *Publisher) Resume(ctx context.Context, jobID, reason string) (bool, error) {
	if p.cfg.Controller {
		return false, fmt.Errorf("%w: it may halt a rollout, never resume one", ErrController)
	}
	return p.control(ctx, jobID, false, func(targets []events.Target) (event.Event, error) {
		return events.NewJobResumed(p.cfg.Name, events.JobResumed{JobID: jobID, Reason: reason, Targets: targets})
	})
}

// controlRounds bounds the tries of a halt or a resume that finds the
// halt subject changed between its read and its write (another operator,
// the controller).
const controlRounds = 3

// control stores a halt (halt true) or a resume of jobID, made by mk from
// the job's targets, unless the job already is in that state: on the halt
// subject, written only if nothing was stored there since it was read
// (Nats-Expected-Last-Subject-Sequence), then on the targets.
func (p *Publisher) control(ctx context.Context, jobID string, halt bool, mk func([]events.Target) (event.Event, error)) (bool, error) {
	ctx, cancel := backoff.WithDefaultTimeout(ctx, defaultRequestTimeout)
	defer cancel()
	if err := events.ValidID("job id", jobID); err != nil {
		return false, fmt.Errorf("%w: %w", ErrInvalidJob, err)
	}
	offer, err := p.find(ctx, jobID)
	if err != nil {
		return false, err
	}
	if offer.Job.Rollout == nil {
		return false, fmt.Errorf("%w: job %s has no rollout plan (it was published without --rings): only a staged rollout halts; cancel it instead (pcm cancel %s)",
			ErrNotStaged, jobID, jobID)
	}
	kind := map[bool]string{true: "halt", false: "resume"}[halt]
	for range controlRounds {
		halted, seq, err := p.haltState(ctx, jobID)
		if err != nil {
			return false, err
		}
		if halted == halt {
			return false, nil
		}
		ev, err := mk(offer.Job.Targets)
		if err != nil {
			return false, fmt.Errorf("%w: %w", ErrInvalidJob, err)
		}
		if err := p.sign(&ev); err != nil {
			return false, err
		}
		id := kind + "." + jobID + "." + strconv.FormatUint(seq, 10)
		msg, err := events.NewMsg(events.HaltSubject(jobID), ev, id)
		if err != nil {
			return false, err
		}
		msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(seq, 10))
		err = p.publishMsg(ctx, msg)
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
			continue // stored meanwhile: read again
		}
		if err != nil {
			if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, jetstream.ErrStreamNotFound) {
				err = fmt.Errorf("%w: no stream answered on %s: store halts with an admin's credentials (--creds admin.creds, or --issuer), on a broker provisioned by this version (pcm broker provision) (%w)",
					ErrNotProvisioned, events.HaltSubject(jobID), err)
			}
			return false, fmt.Errorf("%w: %s of job %s: %w", ErrPublish, kind, jobID, err)
		}
		return true, p.publishToTargets(ctx, jobID, offer.Job.Targets, func(t events.Target) string {
			return id + "." + t.String()
		}, ev)
	}
	return false, fmt.Errorf("%w: the halt subject of job %s kept changing while the %s was stored: try again", ErrPublish, jobID, kind)
}

// haltState reads the last event on jobID's halt subject: whether it is a
// halt (as stored, whoever signed it) and its sequence (0: none).
func (p *Publisher) haltState(ctx context.Context, jobID string) (halted bool, seq uint64, err error) {
	m, found, err := streamread.Last(ctx, p.js, events.StreamJobs, events.HaltSubject(jobID))
	if err != nil {
		return false, 0, fmt.Errorf("%w: reading the halt of job %s: %w", ErrPublish, jobID, err)
	}
	if !found {
		return false, 0, nil
	}
	ev, err := events.Decode(m.Header, m.Data)
	return err == nil && ev.Type() == events.TypeJobHalted, m.Seq, nil
}

// find looks jobID's offer up in the jobs stream.
func (p *Publisher) find(ctx context.Context, jobID string) (offers.Found, error) {
	offer, err := offers.Find(ctx, p.js, nil, jobID)
	switch {
	case errors.Is(err, offers.ErrNotFound):
		return offer, err // ErrJobNotFound: said once
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return offer, fmt.Errorf("%w: stream %s does not exist: run pcm broker provision", ErrNotProvisioned, events.StreamJobs)
	}
	return offer, err
}

// maxRequiresLookups bounds the offers checkRequires reads.
const maxRequiresLookups = 64

// checkRequires refuses a job whose required jobs, as published, require
// it back, directly or through others (a cycle never runs): it follows the
// requires of the offers in the jobs stream, breadth first, at most
// maxRequiresLookups of them. A required job not published yet is fine
// (jobs may be published in any order).
func (p *Publisher) checkRequires(ctx context.Context, job events.JobOffered) error {
	type link struct{ job, path string } // path: from this job to job
	queue := make([]link, 0, len(job.Requires))
	for _, r := range job.Requires {
		queue = append(queue, link{r, job.JobID + " -> " + r})
	}
	seen := map[string]bool{}
	for len(queue) > 0 && len(seen) < maxRequiresLookups {
		l := queue[0]
		queue = queue[1:]
		if seen[l.job] {
			continue
		}
		seen[l.job] = true
		offer, err := offers.Find(ctx, p.js, nil, l.job)
		if errors.Is(err, offers.ErrNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("%w: reading required job %s: %w", ErrPublish, l.job, err)
		}
		for _, r := range offer.Job.Requires {
			if r == job.JobID {
				return fmt.Errorf("%w: %w: requires: %s -> %s is a cycle, which never runs: drop one of its requirements",
					ErrInvalidJob, events.ErrInvalidRequires, l.path, r)
			}
			queue = append(queue, link{r, l.path + " -> " + r})
		}
	}
	return nil
}
