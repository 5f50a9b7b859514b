package events

import (
	"fmt"
	"slices"
	"strings"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/oklog/ulid/v2"
)

// The halt of a staged rollout (a job with a RolloutPlan): the rollout
// controller, or an operator, halts it; an operator resumes it. Each halt
// and resume is stored on the job's halt subject (HaltSubject), whose last
// event every agent reads before it runs the job, as it reads the job's
// cancellation subject; copies go to the job's targets, so that agents
// holding the offer hear of a resume at once and a client's audit shows it.

// The CloudEvents types of a halt and a resume.
const (
	TypeJobHalted  = "pcm.job.halted.v1"
	TypeJobResumed = "pcm.job.resumed.v1"
)

// BucketController is the KV bucket of the rollout controller: the lease of
// the one active controller of a cluster (key ControllerLeaderKey). Only
// the pcm account reaches it.
const BucketController = "PCM_CONTROLLER"

// ControllerLeaderKey is the key of BucketController whose holder is the
// active rollout controller.
const ControllerLeaderKey = "leader"

// HolderController is the holder of the rollout controller's lease (a
// LockInfo under ControllerLeaderKey of BucketController), beside the two
// faces that hold a client's lock.
const HolderController Runner = "controller"

// controllerSourcePrefix starts the source of the rollout controller's
// events.
const controllerSourcePrefix = "/pcm/controller/"

// ControllerSource is the source attribute of the events made by the
// rollout controller name.
func ControllerSource(name string) string { return controllerSourcePrefix + name }

// jobsHaltPrefix starts the halt subjects.
const jobsHaltPrefix = jobsPrefix + "halt."

// SubjectJobsHalts matches every per-job halt subject (see HaltSubject).
const SubjectJobsHalts = jobsHaltPrefix + "*"

// HaltSubject is the PCM_JOBS subject that keeps the halts and resumes of
// job's rollout. Only the pcm account (its admins, the rollout controller)
// may store on it; agents read its last event (a direct get by subject)
// before they run the job. No client's consumer is filtered to it.
func HaltSubject(job string) string { return jobsHaltPrefix + job }

// JobHalted is the data of a pcm.job.halted.v1 event: no client starts the
// job until it is resumed. Attempts already running finish.
type JobHalted struct {
	// JobID is the job halted; it is the event's subject.
	JobID string `json:"job_id"`
	// Reason says why, for the audit record and pcm status.
	Reason string `json:"reason,omitempty"`
	// Targets are the targets the job was offered to; copies of the halt
	// go to their subjects.
	Targets []Target `json:"targets"`
	// Failed and Finished are the counts that passed the job's threshold
	// when the rollout controller halted it (see RolloutTally); zero for
	// an operator's halt.
	Failed   int `json:"failed,omitempty"`
	Finished int `json:"finished,omitempty"`
}

// JobResumed is the data of a pcm.job.resumed.v1 event: the halt is
// lifted; the rings open at their times again.
type JobResumed struct {
	// JobID is the job resumed; it is the event's subject.
	JobID string `json:"job_id"`
	// Reason says why, for the audit record.
	Reason string `json:"reason,omitempty"`
	// Targets are the targets the job was offered to.
	Targets []Target `json:"targets"`
}

// Validate checks the rules of a halt.
func (h JobHalted) Validate() error {
	if err := validateControl(h.JobID, h.Reason, h.Targets); err != nil {
		return err
	}
	if h.Failed < 0 || h.Finished < 0 || h.Failed > h.Finished {
		return fmt.Errorf("%w: failed %d of finished %d: give counts with 0 <= failed <= finished", ErrInvalidState, h.Failed, h.Finished)
	}
	return nil
}

// Validate checks the rules of a resume.
func (r JobResumed) Validate() error { return validateControl(r.JobID, r.Reason, r.Targets) }

func validateControl(job, reason string, targets []Target) error {
	if err := ValidID("job id", job); err != nil {
		return err
	}
	if len(reason) > maxReasonLen {
		return fmt.Errorf("%w: reason is %d bytes: use at most %d", ErrTooLarge, len(reason), maxReasonLen)
	}
	return validateTargets(targets)
}

// NewJobHalted validates h and returns its pcm.job.halted.v1 event made by
// source (PublisherSource or ControllerSource of a valid name), with a new
// unique id.
func NewJobHalted(source string, h JobHalted) (event.Event, error) {
	if err := checkControlSource(source); err != nil {
		return event.Event{}, err
	}
	if err := h.Validate(); err != nil {
		return event.Event{}, err
	}
	return newEvent(TypeJobHalted, ulid.Make().String(), source, h.JobID, h)
}

// NewJobResumed validates r and returns its pcm.job.resumed.v1 event made
// by publisher, with a new unique id. Only a publisher resumes: the rollout
// controller never starts anything.
func NewJobResumed(publisher string, r JobResumed) (event.Event, error) {
	if err := ValidID("publisher name", publisher); err != nil {
		return event.Event{}, err
	}
	if err := r.Validate(); err != nil {
		return event.Event{}, err
	}
	return newEvent(TypeJobResumed, ulid.Make().String(), PublisherSource(publisher), r.JobID, r)
}

// ParseJobHalted checks that ev is a valid pcm.job.halted.v1 event and
// returns its data.
func ParseJobHalted(ev event.Event) (JobHalted, error) {
	var h JobHalted
	if err := parse(ev, TypeJobHalted, &h); err != nil {
		return JobHalted{}, err
	}
	if err := h.Validate(); err != nil {
		return h, err
	}
	return h, checkControlSource(ev.Source())
}

// ParseJobResumed checks that ev is a valid pcm.job.resumed.v1 event and
// returns its data.
func ParseJobResumed(ev event.Event) (JobResumed, error) {
	var r JobResumed
	if err := parse(ev, TypeJobResumed, &r); err != nil {
		return JobResumed{}, err
	}
	if err := r.Validate(); err != nil {
		return r, err
	}
	return r, checkPublisherSource(ev)
}

// checkControlSource accepts a publisher's or the rollout controller's
// source.
func checkControlSource(source string) error {
	for _, prefix := range []string{publisherSourcePrefix, controllerSourcePrefix} {
		if name, ok := strings.CutPrefix(source, prefix); ok && ValidID("name", name) == nil {
			return nil
		}
	}
	return fmt.Errorf("%w: source %q: a halt comes from /pcm/publisher/<name> or /pcm/controller/<name>", ErrMissingAttribute, source)
}

// MakerOf names who made an offer, a cancellation, a halt or a resume:
// the publisher's name, or "controller NAME" for the rollout controller.
func MakerOf(ev event.Event) string {
	if name, ok := strings.CutPrefix(ev.Source(), controllerSourcePrefix); ok {
		return "controller " + name
	}
	return PublisherOf(ev)
}

// ReadHalt says what the last event stored on job's halt subject (header
// and data) means to an agent that trusts the publisher keys publishers
// and the rollout controller keys controllers. A valid halt signed by
// either kind of key halts the job: it is returned. A valid resume signed
// by a publisher key lifts it: nil. A resume that is not (a controller's
// key, no signature, a bad one) leaves the job halted, since a resume
// follows a halt and a controller may only stop rollouts: it returns a
// halt saying so, with the reason in err. Anything else (not a halt or a
// resume of job, an untrusted halt) says nothing: nil, with err saying
// why. With no publisher key (an agent that runs unsigned jobs) no
// signature is checked.
func ReadHalt(h nats.Header, data []byte, job string, publishers, controllers []string) (*JobHalted, error) {
	ev, err := Decode(h, data)
	if err != nil {
		return nil, err
	}
	check := func(keys []string) error {
		if len(publishers) == 0 {
			return nil
		}
		_, err := Verify(ev, keys)
		return err
	}
	switch ev.Type() {
	case TypeJobHalted:
		halt, err := ParseJobHalted(ev)
		if err == nil && halt.JobID != job {
			err = fmt.Errorf("%w: the halt stored for job %s halts job %s", ErrMalformed, job, halt.JobID)
		}
		if err == nil {
			err = check(slices.Concat(publishers, controllers))
		}
		if err != nil {
			return nil, err
		}
		return &halt, nil
	case TypeJobResumed:
		r, err := ParseJobResumed(ev)
		if err == nil && r.JobID != job {
			err = fmt.Errorf("%w: the resume stored for job %s resumes job %s", ErrMalformed, job, r.JobID)
		}
		if err == nil {
			err = check(publishers)
		}
		if err != nil {
			return &JobHalted{JobID: job, Reason: "its resume is not a trusted publisher's"}, err
		}
		return nil, nil
	}
	return nil, fmt.Errorf("%w: a %s event on the halt subject of job %s", ErrUnexpectedType, ev.Type(), job)
}
