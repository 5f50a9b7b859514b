package integration_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/agent"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/publisher"
	"github.com/pcm-project/pcm/testenv"
)

// statusWant says what status a bad input must leave on the status subject
// of the job id it carries.
type statusWant int

const (
	// noStatus: the job id cannot be read (or is not a valid id): no status.
	noStatus statusWant = iota
	// rejectedStatus: exactly one status, rejected, naming the reason.
	rejectedStatus
)

// badInput is one row of the bad-input table: one kind of bad input,
// published raw onto the jobs subjects and, where it can be expressed,
// given to the publisher and to pcm publish.
type badInput struct {
	name string
	// raw builds the message published straight onto the jobs stream,
	// bypassing the publisher; id is the row's own job id.
	raw func(k *badKit, id string) *nats.Msg
	// agentErr is the sentinel the agent's logged (and term) reason wraps.
	agentErr error
	// status is what the agent reports under id.
	status statusWant

	// job, when set, turns a valid job into this bad input for
	// publisher.Publish, which must refuse it with publisher.ErrInvalidJob
	// and pubErr before sending anything.
	job    func(j *events.JobOffered)
	pubErr error
	// cliArgs (flags and "-- command") or cliFile (a job file given with
	// -f) express the input to pcm publish, which must exit non-zero with
	// cliErr in its stderr, sending nothing.
	cliArgs []string
	cliFile string
	cliErr  string
}

// badKit builds the raw messages of the table for one client.
type badKit struct {
	t      *testing.T
	client string
	marker string // every bad offer's command appends here: it must stay absent
}

// subject is the client's own jobs subject.
func (k *badKit) subject() string { return events.JobSubject(toClient(k.client)) }

// validJob is a mandatory-now job for the client whose command appends to
// the marker.
func (k *badKit) validJob(id string) events.JobOffered {
	j := job(appendTo(k.marker), toClient(k.client))
	j.JobID = id
	j.ExpireAfter = j.OfferAfter.Add(time.Hour)
	return j
}

// envelope returns a valid offer of job id in structured mode as a map of
// its attributes, with its data as a map too, ready to be spoiled.
func (k *badKit) envelope(id string) (env, data map[string]any) {
	k.t.Helper()
	ev, err := events.NewJobOffered("test", k.validJob(id))
	if err != nil {
		k.t.Fatal(err)
	}
	b, err := json.Marshal(ev)
	if err != nil {
		k.t.Fatal(err)
	}
	if err := json.Unmarshal(b, &env); err != nil {
		k.t.Fatal(err)
	}
	return env, env["data"].(map[string]any)
}

// structured encodes env as the body of a structured-mode message on the
// client's subject.
func (k *badKit) structured(env map[string]any) *nats.Msg {
	k.t.Helper()
	b, err := json.Marshal(env)
	if err != nil {
		k.t.Fatal(err)
	}
	return k.body(b)
}

// body is a structured-mode message with body b on the client's subject.
func (k *badKit) body(b []byte) *nats.Msg {
	msg := nats.NewMsg(k.subject())
	msg.Header.Set(events.HeaderContentType, events.ContentTypeCloudEvents)
	msg.Data = b
	return msg
}

// offer is a valid structured offer of id with spoil applied to its
// attributes and data.
func (k *badKit) offer(id string, spoil func(env, data map[string]any)) *nats.Msg {
	env, data := k.envelope(id)
	spoil(env, data)
	return k.structured(env)
}

// command returns the command object of an offer's data.
func command(data map[string]any) map[string]any { return data["command"].(map[string]any) }

// binary is the offer of id in binary mode: ce- headers carry the
// attributes, the body is the data; spoil changes the headers and data.
func (k *badKit) binary(id string, spoil func(h nats.Header, data map[string]any)) *nats.Msg {
	k.t.Helper()
	env, data := k.envelope(id)
	msg := nats.NewMsg(k.subject())
	for _, a := range []string{"specversion", "id", "source", "type", "subject", "time"} {
		msg.Header.Set("ce-"+a, env[a].(string))
	}
	msg.Header.Set(events.HeaderContentType, events.ContentTypeJSON)
	spoil(msg.Header, data)
	b, err := json.Marshal(data)
	if err != nil {
		k.t.Fatal(err)
	}
	msg.Data = b
	return msg
}

// badID is an id that is not a subject token, used as the event's id, its
// subject and its data's job_id.
func (k *badKit) badID(id string) *nats.Msg {
	return k.offer("placeholder", func(env, data map[string]any) {
		env["id"], env["subject"], data["job_id"] = id, id, id
	})
}

// badInputs is the table: at least 30 kinds of bad input.
func badInputs() []badInput {
	hugeArg := strings.Repeat("x", 70<<10)
	return []badInput{
		// The envelope: what is not a CloudEvent pcm reads.
		{name: "not JSON", raw: func(k *badKit, id string) *nats.Msg { return k.body([]byte("install everything now")) },
			agentErr: events.ErrMalformed, status: noStatus,
			cliFile: "install: [everything", cliErr: "job file"},
		{name: "truncated JSON", raw: func(k *badKit, id string) *nats.Msg {
			env, _ := k.envelope(id)
			b, _ := json.Marshal(env)
			return k.body(b[:len(b)/2])
		}, agentErr: events.ErrMalformed, status: noStatus,
			cliFile: `{"clients":["badin"],"command":{"argv":["true"]`, cliErr: "job file"},
		{name: "empty body", raw: func(k *badKit, id string) *nats.Msg { return k.body(nil) },
			agentErr: events.ErrMalformed, status: noStatus},
		{name: "JSON but not an object", raw: func(k *badKit, id string) *nats.Msg { return k.body([]byte(`["pcm.job.offered.v1"]`)) },
			agentErr: events.ErrMalformed, status: noStatus,
			cliFile: `["badin", "true"]`, cliErr: "got an array, want an object of job fields"},
		{name: "body not UTF-8", raw: func(k *badKit, id string) *nats.Msg {
			m := k.offer(id, func(env, data map[string]any) { command(data)["argv"] = []string{"sh", "-c", "PLACEHOLDER"} })
			m.Data = bytes.Replace(m.Data, []byte("PLACEHOLDER"), []byte("echo \xff\xfe"), 1)
			return m
		}, agentErr: events.ErrMalformed, status: rejectedStatus,
			job: func(j *events.JobOffered) { j.Command.Argv = []string{"sh", "-c", "echo \xff\xfe"} }, pubErr: events.ErrInvalidArgv,
			cliArgs: []string{"--", "sh", "-c", "echo \xff\xfe"}, cliErr: events.ErrInvalidArgv.Error()},
		{name: "wrong specversion 0.3", raw: func(k *badKit, id string) *nats.Msg {
			return k.offer(id, func(env, _ map[string]any) { env["specversion"] = "0.3" })
		}, agentErr: events.ErrMissingAttribute, status: rejectedStatus},
		{name: "unknown specversion 2.0", raw: func(k *badKit, id string) *nats.Msg {
			return k.offer(id, func(env, _ map[string]any) { env["specversion"] = "2.0" })
		}, agentErr: events.ErrMalformed, status: rejectedStatus},
		{name: "missing id", raw: func(k *badKit, id string) *nats.Msg {
			return k.offer(id, func(env, _ map[string]any) { delete(env, "id") })
		}, agentErr: events.ErrMissingAttribute, status: rejectedStatus},
		{name: "missing source", raw: func(k *badKit, id string) *nats.Msg {
			return k.offer(id, func(env, _ map[string]any) { delete(env, "source") })
		}, agentErr: events.ErrMissingAttribute, status: rejectedStatus},
		{name: "missing type", raw: func(k *badKit, id string) *nats.Msg {
			return k.offer(id, func(env, _ map[string]any) { delete(env, "type") })
		}, agentErr: events.ErrMissingAttribute, status: rejectedStatus},
		// No subject attribute: the agent reads the job id from data.job_id.
		{name: "missing subject", raw: func(k *badKit, id string) *nats.Msg {
			return k.offer(id, func(env, _ map[string]any) { delete(env, "subject") })
		}, agentErr: events.ErrMissingAttribute, status: rejectedStatus},
		{name: "unknown type", raw: func(k *badKit, id string) *nats.Msg {
			return k.offer(id, func(env, _ map[string]any) { env["type"] = "pcm.job.exploded.v1" })
		}, agentErr: events.ErrUnknownType, status: rejectedStatus},
		{name: "time attribute not a time", raw: func(k *badKit, id string) *nats.Msg {
			return k.offer(id, func(env, _ map[string]any) { env["time"] = "yesterday" })
		}, agentErr: events.ErrMalformed, status: rejectedStatus},
		{name: "datacontenttype not JSON", raw: func(k *badKit, id string) *nats.Msg {
			return k.offer(id, func(env, _ map[string]any) {
				env["datacontenttype"] = "text/plain"
				env["data"] = "sh -c 'echo ran'"
			})
		}, agentErr: events.ErrMissingAttribute, status: rejectedStatus},
		{name: "no data", raw: func(k *badKit, id string) *nats.Msg {
			return k.offer(id, func(env, _ map[string]any) { delete(env, "data") })
		}, agentErr: events.ErrMissingAttribute, status: rejectedStatus},
		{name: "source not a publisher", raw: func(k *badKit, id string) *nats.Msg {
			return k.offer(id, func(env, _ map[string]any) { env["source"] = "/somewhere/else" })
		}, agentErr: events.ErrMissingAttribute, status: rejectedStatus},
		{name: "event id differs from data.job_id", raw: func(k *badKit, id string) *nats.Msg {
			return k.offer(id, func(env, _ map[string]any) { env["id"] = id + "-other" })
		}, agentErr: events.ErrMissingAttribute, status: rejectedStatus},
		{name: "subject differs from data.job_id", raw: func(k *badKit, id string) *nats.Msg {
			return k.offer(id, func(_, data map[string]any) { data["job_id"] = id + "-other" })
		}, agentErr: events.ErrMissingAttribute, status: rejectedStatus},

		// The data: what the schema or the rules refuse.
		{name: "data a string, not an object", raw: func(k *badKit, id string) *nats.Msg {
			return k.offer(id, func(env, _ map[string]any) { env["data"] = "run it" })
		}, agentErr: events.ErrSchema, status: rejectedStatus,
			cliFile: `"run it"`, cliErr: "got a string, want an object of job fields"},
		{name: "timeout a number", raw: func(k *badKit, id string) *nats.Msg {
			return k.offer(id, func(_, data map[string]any) { command(data)["timeout"] = 60 })
		}, agentErr: events.ErrSchema, status: rejectedStatus,
			cliFile: `{"clients":["badin"],"command":{"argv":["true"],"timeout":60}}`, cliErr: events.ErrTimeout.Error()},
		{name: "argv a string", raw: func(k *badKit, id string) *nats.Msg {
			return k.offer(id, func(_, data map[string]any) { command(data)["argv"] = "sh -c true" })
		}, agentErr: events.ErrSchema, status: rejectedStatus,
			cliFile: `{"clients":["badin"],"command":{"argv":"sh -c true"}}`, cliErr: "command.argv: got a string, want a list of strings"},
		{name: "max_attempts a string", raw: func(k *badKit, id string) *nats.Msg {
			return k.offer(id, func(_, data map[string]any) { data["max_attempts"] = "three" })
		}, agentErr: events.ErrSchema, status: rejectedStatus,
			cliFile: `{"clients":["badin"],"max_attempts":"three","command":{"argv":["true"]}}`, cliErr: "max_attempts: got a string, want a whole number"},
		{name: "unknown data field", raw: func(k *badKit, id string) *nats.Msg {
			return k.offer(id, func(_, data map[string]any) { command(data)["run_as"] = "root" })
		}, agentErr: events.ErrSchema, status: rejectedStatus,
			cliFile: `{"clients":["badin"],"command":{"argv":["true"],"run_as":"root"}}`, cliErr: "unknown field"},
		{name: "id with a dot", raw: func(k *badKit, id string) *nats.Msg { return k.badID("bad.dot") },
			agentErr: events.ErrMissingAttribute, status: noStatus,
			job: func(j *events.JobOffered) { j.JobID = "bad.dot" }, pubErr: events.ErrInvalidID,
			cliArgs: []string{"--job-id", "bad.dot", "--", "true"}, cliErr: events.ErrInvalidID.Error()},
		{name: "id with a space", raw: func(k *badKit, id string) *nats.Msg { return k.badID("bad id") },
			agentErr: events.ErrMissingAttribute, status: noStatus,
			job: func(j *events.JobOffered) { j.JobID = "bad id" }, pubErr: events.ErrInvalidID,
			cliArgs: []string{"--job-id", "bad id", "--", "true"}, cliErr: events.ErrInvalidID.Error()},
		{name: "id with wildcards", raw: func(k *badKit, id string) *nats.Msg { return k.badID("bad*>") },
			agentErr: events.ErrMissingAttribute, status: noStatus,
			job: func(j *events.JobOffered) { j.JobID = "*" }, pubErr: events.ErrInvalidID,
			cliArgs: []string{"--job-id", ">", "--", "true"}, cliErr: events.ErrInvalidID.Error()},
		{name: "id with unicode", raw: func(k *badKit, id string) *nats.Msg { return k.badID("jöb-ü") },
			agentErr: events.ErrMissingAttribute, status: noStatus,
			job: func(j *events.JobOffered) { j.JobID = "jöb-ü" }, pubErr: events.ErrInvalidID,
			cliArgs: []string{"--job-id", "jöb-ü", "--", "true"}, cliErr: events.ErrInvalidID.Error()},
		{name: "id of 65 characters", raw: func(k *badKit, id string) *nats.Msg { return k.badID(strings.Repeat("a", 65)) },
			agentErr: events.ErrMissingAttribute, status: noStatus,
			job: func(j *events.JobOffered) { j.JobID = strings.Repeat("a", 65) }, pubErr: events.ErrInvalidID,
			cliArgs: []string{"--job-id", strings.Repeat("a", 65), "--", "true"}, cliErr: events.ErrInvalidID.Error()},
		{name: "target client id with a dot", raw: func(k *badKit, id string) *nats.Msg {
			return k.offer(id, func(_, data map[string]any) {
				data["targets"] = []any{map[string]any{"kind": "client", "name": "ws.1"}}
			})
		}, agentErr: events.ErrSchema, status: rejectedStatus,
			job: func(j *events.JobOffered) { j.Targets = []events.Target{toClient("ws.1")} }, pubErr: events.ErrInvalidID,
			cliArgs: []string{"--client", "ws.1", "--", "true"}, cliErr: events.ErrInvalidID.Error()},
		{name: "no targets", raw: func(k *badKit, id string) *nats.Msg {
			return k.offer(id, func(_, data map[string]any) { data["targets"] = []any{} })
		}, agentErr: events.ErrSchema, status: rejectedStatus,
			job: func(j *events.JobOffered) { j.Targets = nil }, pubErr: events.ErrInvalidTarget},
		{name: "unknown target kind", raw: func(k *badKit, id string) *nats.Msg {
			return k.offer(id, func(_, data map[string]any) {
				data["targets"] = []any{map[string]any{"kind": "site", "name": "paris"}}
			})
		}, agentErr: events.ErrSchema, status: rejectedStatus,
			job: func(j *events.JobOffered) { j.Targets = []events.Target{{Kind: "site", Name: "paris"}} }, pubErr: events.ErrInvalidTarget},
		{name: "expire before offer", raw: func(k *badKit, id string) *nats.Msg {
			return k.offer(id, func(_, data map[string]any) {
				delete(data, "mandatory_after")
				data["expire_after"] = time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
			})
		}, agentErr: events.ErrTimeWindow, status: rejectedStatus,
			job: func(j *events.JobOffered) {
				j.OfferAfter = time.Now().Add(2 * time.Hour).UTC()
				j.MandatoryAfter = nil
				j.ExpireAfter = time.Now().Add(time.Hour).UTC()
			}, pubErr: events.ErrTimeWindow,
			cliArgs: []string{"--offer-after", "+2h", "--expire-after", "+1h", "--", "true"}, cliErr: events.ErrTimeWindow.Error()},
		{name: "mandatory after expire", raw: func(k *badKit, id string) *nats.Msg {
			return k.offer(id, func(_, data map[string]any) {
				data["mandatory_after"] = time.Now().Add(2 * time.Hour).UTC().Format(time.RFC3339)
			})
		}, agentErr: events.ErrTimeWindow, status: rejectedStatus,
			job: func(j *events.JobOffered) {
				m := time.Now().Add(3 * time.Hour).UTC()
				j.MandatoryAfter = &m
				j.ExpireAfter = time.Now().Add(2 * time.Hour).UTC()
			}, pubErr: events.ErrTimeWindow,
			cliArgs: []string{"--mandatory-after", "+3h", "--expire-after", "+2h", "--", "true"}, cliErr: events.ErrTimeWindow.Error()},
		{name: "mandatory before offer", raw: func(k *badKit, id string) *nats.Msg {
			return k.offer(id, func(_, data map[string]any) {
				data["mandatory_after"] = time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
			})
		}, agentErr: events.ErrTimeWindow, status: rejectedStatus,
			job: func(j *events.JobOffered) {
				m := j.OfferAfter.Add(-time.Minute)
				j.MandatoryAfter = &m
			}, pubErr: events.ErrTimeWindow,
			cliArgs: []string{"--offer-after", "+2h", "--mandatory-after", "+1h", "--", "true"}, cliErr: events.ErrTimeWindow.Error()},
		{name: "offer time not a time", raw: func(k *badKit, id string) *nats.Msg {
			return k.offer(id, func(_, data map[string]any) { data["offer_after"] = "tomorrow" })
		}, agentErr: events.ErrSchema, status: rejectedStatus,
			cliArgs: []string{"--offer-after", "tomorrow", "--", "true"}, cliErr: publisher.ErrInvalidTime.Error()},
		{name: "no expiry", raw: func(k *badKit, id string) *nats.Msg {
			return k.offer(id, func(_, data map[string]any) { delete(data, "expire_after") })
		}, agentErr: events.ErrSchema, status: rejectedStatus},
		{name: "empty argv", raw: func(k *badKit, id string) *nats.Msg {
			return k.offer(id, func(_, data map[string]any) { command(data)["argv"] = []string{} })
		}, agentErr: events.ErrSchema, status: rejectedStatus,
			job: func(j *events.JobOffered) { j.Command.Argv = nil }, pubErr: events.ErrEmptyArgv,
			cliFile: `{"clients":["badin"],"command":{"argv":[]}}`, cliErr: events.ErrEmptyArgv.Error()},
		{name: "empty program", raw: func(k *badKit, id string) *nats.Msg {
			return k.offer(id, func(_, data map[string]any) { command(data)["argv"] = []string{"", "x"} })
		}, agentErr: events.ErrEmptyArgv, status: rejectedStatus,
			job: func(j *events.JobOffered) { j.Command.Argv = []string{"", "x"} }, pubErr: events.ErrEmptyArgv,
			cliArgs: []string{"--", "", "x"}, cliErr: events.ErrEmptyArgv.Error()},
		{name: "NUL byte in argv", raw: func(k *badKit, id string) *nats.Msg {
			return k.offer(id, func(_, data map[string]any) { command(data)["argv"] = []string{"rm", "-rf", "/tmp/x\x00/"} })
		}, agentErr: events.ErrInvalidArgv, status: rejectedStatus,
			job: func(j *events.JobOffered) { j.Command.Argv = []string{"rm", "-rf", "/tmp/x\x00/"} }, pubErr: events.ErrInvalidArgv,
			cliFile: `{"clients":["badin"],"command":{"argv":["rm","-rf","/tmp/x\u0000/"]}}`, cliErr: events.ErrInvalidArgv.Error()},
		{name: "negative timeout", raw: func(k *badKit, id string) *nats.Msg {
			return k.offer(id, func(_, data map[string]any) { command(data)["timeout"] = "-5s" })
		}, agentErr: events.ErrSchema, status: rejectedStatus,
			job: func(j *events.JobOffered) { j.Command.Timeout = events.Duration(-5 * time.Second) }, pubErr: events.ErrTimeout,
			cliArgs: []string{"--timeout=-5s", "--", "true"}, cliErr: events.ErrTimeout.Error()},
		{name: "zero timeout", raw: func(k *badKit, id string) *nats.Msg {
			return k.offer(id, func(_, data map[string]any) { command(data)["timeout"] = "0s" })
		}, agentErr: events.ErrTimeout, status: rejectedStatus},
		{name: "huge timeout", raw: func(k *badKit, id string) *nats.Msg {
			return k.offer(id, func(_, data map[string]any) { command(data)["timeout"] = "8760h" })
		}, agentErr: events.ErrTimeout, status: rejectedStatus,
			job: func(j *events.JobOffered) { j.Command.Timeout = events.Duration(8760 * time.Hour) }, pubErr: events.ErrTimeout,
			cliArgs: []string{"--timeout", "8760h", "--", "true"}, cliErr: events.ErrTimeout.Error()},
		{name: "timeout not a duration", raw: func(k *badKit, id string) *nats.Msg {
			return k.offer(id, func(_, data map[string]any) { command(data)["timeout"] = "soon" })
		}, agentErr: events.ErrSchema, status: rejectedStatus,
			cliFile: `{"clients":["badin"],"command":{"argv":["true"],"timeout":"soon"}}`, cliErr: events.ErrTimeout.Error()},
		{name: "platform without arch", raw: func(k *badKit, id string) *nats.Msg {
			return k.offer(id, func(_, data map[string]any) { command(data)["platforms"] = []string{"linux"} })
		}, agentErr: events.ErrSchema, status: rejectedStatus,
			job: func(j *events.JobOffered) { j.Command.Platforms = []string{"linux"} }, pubErr: events.ErrPlatform,
			cliArgs: []string{"--platform", "linux", "--", "true"}, cliErr: events.ErrPlatform.Error()},
		{name: "platform of an unknown OS", raw: func(k *badKit, id string) *nats.Msg {
			return k.offer(id, func(_, data map[string]any) { command(data)["platforms"] = []string{"beos/amd64"} })
		}, agentErr: events.ErrPlatform, status: rejectedStatus,
			job: func(j *events.JobOffered) { j.Command.Platforms = []string{"beos/amd64"} }, pubErr: events.ErrPlatform,
			cliArgs: []string{"--platform", "beos/amd64", "--", "true"}, cliErr: events.ErrPlatform.Error()},
		{name: "platform with a variant", raw: func(k *badKit, id string) *nats.Msg {
			return k.offer(id, func(_, data map[string]any) { command(data)["platforms"] = []string{"linux/amd64/v3"} })
		}, agentErr: events.ErrSchema, status: rejectedStatus,
			job: func(j *events.JobOffered) { j.Command.Platforms = []string{"linux/amd64/v3"} }, pubErr: events.ErrPlatform,
			cliArgs: []string{"--platform", "linux/amd64/v3", "--", "true"}, cliErr: events.ErrPlatform.Error()},
		{name: "background but not automated", raw: func(k *badKit, id string) *nats.Msg {
			return k.offer(id, func(_, data map[string]any) {
				command(data)["background"] = true
				command(data)["automated"] = false
			})
		}, agentErr: events.ErrBackgroundNotAutomated, status: rejectedStatus},
		{name: "negative success exit code", raw: func(k *badKit, id string) *nats.Msg {
			return k.offer(id, func(_, data map[string]any) { command(data)["success_exit_codes"] = []int{0, -1} })
		}, agentErr: events.ErrSchema, status: rejectedStatus,
			job: func(j *events.JobOffered) { j.Command.SuccessExitCodes = []int64{0, -1} }, pubErr: events.ErrExitCode,
			cliArgs: []string{"--success-codes=0,-1", "--", "true"}, cliErr: events.ErrExitCode.Error()},
		{name: "max_attempts over 100", raw: func(k *badKit, id string) *nats.Msg {
			return k.offer(id, func(_, data map[string]any) { data["max_attempts"] = 101 })
		}, agentErr: events.ErrSchema, status: rejectedStatus,
			job: func(j *events.JobOffered) { j.MaxAttempts = 101 }, pubErr: events.ErrMaxAttempts,
			cliArgs: []string{"--max-attempts", "101", "--", "true"}, cliErr: events.ErrMaxAttempts.Error()},
		{name: "package with a bad sha256", raw: func(k *badKit, id string) *nats.Msg {
			return k.offer(id, func(_, data map[string]any) {
				data["package"] = map[string]any{"name": "editor", "version": "1.2", "sha256": "not-a-digest"}
			})
		}, agentErr: events.ErrSchema, status: rejectedStatus,
			job: func(j *events.JobOffered) {
				j.Package = &events.PackageRef{Name: "editor", Version: "1.2", SHA256: "not-a-digest"}
			}, pubErr: events.ErrInvalidPackage},
		{name: "package with a negative size", raw: func(k *badKit, id string) *nats.Msg {
			return k.offer(id, func(_, data map[string]any) {
				data["package"] = map[string]any{"name": "editor", "version": "1.2", "sha256": strings.Repeat("ab", 32), "size": -1}
			})
		}, agentErr: events.ErrSchema, status: rejectedStatus,
			job: func(j *events.JobOffered) {
				j.Package = &events.PackageRef{Name: "editor", Version: "1.2", SHA256: strings.Repeat("ab", 32), Size: -1}
			}, pubErr: events.ErrInvalidPackage},
		{name: "name over 128 bytes", raw: func(k *badKit, id string) *nats.Msg {
			return k.offer(id, func(_, data map[string]any) { data["name"] = strings.Repeat("n", 129) })
		}, agentErr: events.ErrSchema, status: rejectedStatus,
			job: func(j *events.JobOffered) { j.Name = strings.Repeat("n", 129) }, pubErr: events.ErrTooLarge,
			cliArgs: []string{"--name", strings.Repeat("n", 129), "--", "true"}, cliErr: events.ErrTooLarge.Error()},
		{name: "data over 64 KiB", raw: func(k *badKit, id string) *nats.Msg {
			return k.offer(id, func(_, data map[string]any) { command(data)["argv"] = []string{"echo", hugeArg} })
		}, agentErr: events.ErrTooLarge, status: rejectedStatus,
			job: func(j *events.JobOffered) { j.Command.Argv = []string{"echo", hugeArg} }, pubErr: events.ErrTooLarge,
			cliArgs: []string{"--", "echo", hugeArg}, cliErr: events.ErrTooLarge.Error()},
		{name: "body over 128 KiB", raw: func(k *badKit, id string) *nats.Msg {
			return k.offer(id, func(_, data map[string]any) { command(data)["argv"] = []string{"echo", hugeArg, hugeArg} })
		}, agentErr: events.ErrTooLarge, status: rejectedStatus},

		// Binary mode: ce- headers and a body that disagree.
		// The job id is in the ce-subject header, but the agent reads it from
		// the body only: no rejected status (see the report).
		{name: "binary headers with a structured content type", raw: func(k *badKit, id string) *nats.Msg {
			return k.binary(id, func(h nats.Header, _ map[string]any) { h.Set(events.HeaderContentType, events.ContentTypeCloudEvents) })
		}, agentErr: events.ErrMalformed, status: rejectedStatus},
		{name: "binary ce-id contradicts data.job_id", raw: func(k *badKit, id string) *nats.Msg {
			return k.binary(id, func(h nats.Header, _ map[string]any) { h.Set("ce-id", id+"-other") })
		}, agentErr: events.ErrMissingAttribute, status: rejectedStatus},
		{name: "binary ce-subject contradicts data.job_id", raw: func(k *badKit, id string) *nats.Msg {
			return k.binary(id, func(_ nats.Header, data map[string]any) { data["job_id"] = id + "-other" })
		}, agentErr: events.ErrMissingAttribute, status: rejectedStatus},
		{name: "binary ce-type says status, data is an offer", raw: func(k *badKit, id string) *nats.Msg {
			return k.binary(id, func(h nats.Header, _ map[string]any) { h.Set("ce-type", events.TypeJobStatus) })
		}, agentErr: events.ErrUnexpectedType, status: rejectedStatus},
		{name: "binary unknown specversion", raw: func(k *badKit, id string) *nats.Msg {
			return k.binary(id, func(h nats.Header, _ map[string]any) { h.Set("ce-specversion", "9.9") })
		}, agentErr: events.ErrMissingAttribute, status: rejectedStatus},
		{name: "binary content type not JSON", raw: func(k *badKit, id string) *nats.Msg {
			return k.binary(id, func(h nats.Header, _ map[string]any) { h.Set(events.HeaderContentType, "text/plain") })
		}, agentErr: events.ErrMissingAttribute, status: rejectedStatus},
		{name: "structured body contradicted by a ce-subject header", raw: func(k *badKit, id string) *nats.Msg {
			m := k.offer(id, func(_, _ map[string]any) {})
			m.Header.Set("ce-subject", id+"-other")
			return m
		}, agentErr: events.ErrMalformed, status: rejectedStatus},

		// Events that are valid but do not belong here.
		{name: "a status event on the jobs subject", raw: func(k *badKit, id string) *nats.Msg {
			ev, err := events.NewJobStatus(events.JobStatus{JobID: id, ClientID: k.client, State: events.StateSucceeded,
				Attempt: 1, Runner: events.RunnerService})
			if err != nil {
				k.t.Fatal(err)
			}
			m, err := events.NewMsg(k.subject(), ev, "")
			if err != nil {
				k.t.Fatal(err)
			}
			return m
		}, agentErr: events.ErrUnexpectedType, status: rejectedStatus},
		{name: "an offer on a subject that is not one of its targets", raw: func(k *badKit, id string) *nats.Msg {
			return k.offer(id, func(_, data map[string]any) {
				data["targets"] = []any{map[string]any{"kind": "client", "name": "someone-else"}}
			})
		}, agentErr: agent.ErrMisrouted, status: rejectedStatus},
		{name: "a group offer on the all subject", raw: func(k *badKit, id string) *nats.Msg {
			m := k.offer(id, func(_, data map[string]any) {
				data["targets"] = []any{map[string]any{"kind": "group", "name": "lab"}}
			})
			m.Subject = events.SubjectJobsAll
			return m
		}, agentErr: agent.ErrMisrouted, status: rejectedStatus},
		// A bad cancellation names a job the agent may not have seen: it is
		// termed, never reported as that job's rejection.
		{name: "a cancellation without targets", raw: func(k *badKit, id string) *nats.Msg {
			ev, err := events.NewJobCancelled("test", events.JobCancelled{JobID: id, Targets: []events.Target{toClient(k.client)}})
			if err != nil {
				k.t.Fatal(err)
			}
			_ = ev.SetData(events.ContentTypeJSON, json.RawMessage(`{"job_id":"`+id+`","targets":[]}`))
			m, err := events.NewMsg(k.subject(), ev, "")
			if err != nil {
				k.t.Fatal(err)
			}
			return m
		}, agentErr: events.ErrSchema, status: noStatus},
	}
}

// terminations collects the broker's terminated-message advisories of one
// consumer: stream sequence -> reason.
type terminations struct {
	mu      sync.Mutex
	reasons map[uint64]string
}

// watchTerminations subscribes to the terminated-message advisories of
// client's consumer.
func watchTerminations(t *testing.T, nc *nats.Conn, client string) *terminations {
	t.Helper()
	tm := &terminations{reasons: map[uint64]string{}}
	sub, err := nc.Subscribe("$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED."+events.StreamJobs+"."+events.ConsumerName(client), func(m *nats.Msg) {
		var adv struct {
			StreamSeq uint64 `json:"stream_seq"`
			Reason    string `json:"reason"`
		}
		if json.Unmarshal(m.Data, &adv) == nil {
			tm.mu.Lock()
			tm.reasons[adv.StreamSeq] = adv.Reason
			tm.mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return tm
}

// reason returns the reason the message at stream sequence seq was termed
// with, and whether it was.
func (tm *terminations) reason(seq uint64) (string, bool) {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	r, ok := tm.reasons[seq]
	return r, ok
}

// jobsCount is the number of messages PCM_JOBS holds.
func jobsCount(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), events.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// TestBadInput is invariant 6: every kind of bad input of the table is
// refused by the publisher and by pcm publish before anything is sent, and,
// published raw onto the jobs subjects of an enrolled client, is refused by
// its agent (logged, termed with the reason, reported rejected where the
// job id can be read) without running anything; a valid job published after
// all of them runs, and the consumer ends with nothing pending.
func TestBadInput(t *testing.T) {
	env := testenv.StartBroker(t)
	p := newPublisher(t, env.JS)
	const client = "badin"
	dir := t.TempDir()
	k := &badKit{t: t, client: client, marker: filepath.Join(dir, "bad-marker")}
	rows := badInputs()
	if len(rows) < 30 {
		t.Fatalf("the table has %d rows, want at least 30", len(rows))
	}

	t.Run("publisher", func(t *testing.T) {
		for _, row := range rows {
			if row.job == nil {
				continue
			}
			t.Run(row.name, func(t *testing.T) {
				j := k.validJob("")
				row.job(&j)
				before := jobsCount(t, env.JS)
				_, err := p.Publish(context.Background(), j)
				if !errors.Is(err, publisher.ErrInvalidJob) || !errors.Is(err, row.pubErr) {
					t.Fatalf("want %v wrapping %v, got %v", publisher.ErrInvalidJob, row.pubErr, err)
				}
				if after := jobsCount(t, env.JS); after != before {
					t.Fatalf("a refused job was sent: PCM_JOBS went from %d to %d messages", before, after)
				}
			})
		}
	})

	t.Run("pcm publish", func(t *testing.T) {
		for _, row := range rows {
			if row.cliArgs == nil && row.cliFile == "" {
				continue
			}
			t.Run(row.name, func(t *testing.T) {
				args := []string{"publish", "--url", env.URL, "--publisher", "test"}
				if row.cliFile != "" {
					f := filepath.Join(t.TempDir(), "job.json")
					if err := os.WriteFile(f, []byte(row.cliFile), 0o600); err != nil {
						t.Fatal(err)
					}
					args = append(args, "-f", f)
				} else {
					args = append(append(args, "--client", client), row.cliArgs...)
				}
				before := jobsCount(t, env.JS)
				out, errOut, code := runPCM(t, nil, args...)
				if code == 0 || !strings.Contains(errOut, row.cliErr) {
					t.Fatalf("exit %d, stdout %q, stderr %q: want a failure saying %q", code, out, errOut, row.cliErr)
				}
				if after := jobsCount(t, env.JS); after != before {
					t.Fatalf("a refused job was sent: PCM_JOBS went from %d to %d messages", before, after)
				}
			})
		}
	})

	enroll(t, env.JS, client)
	terms := watchTerminations(t, env.NC, client)
	a := startAgent(t, env.URL, client, filepath.Join(dir, "state"))
	a.waitReady(t)

	// Publish every bad input raw, in table order, then one valid job.
	seqs := make([]uint64, len(rows))
	ids := make([]string, len(rows))
	for i, row := range rows {
		ids[i] = "bad-" + strconv.Itoa(i+1)
		ack, err := env.JS.PublishMsg(context.Background(), row.raw(k, ids[i]))
		if err != nil {
			t.Fatalf("%s: publishing raw: %v", row.name, err)
		}
		seqs[i] = ack.Sequence
	}
	good := filepath.Join(dir, "good-marker")
	id := publish(t, p, job(appendTo(good), toClient(client)))
	sts := waitFinal(t, env.JS, client, id, 30*time.Second)
	if fin := finals(sts); len(fin) != 1 || fin[0].State != events.StateSucceeded {
		t.Fatalf("the valid job after the bad inputs: want succeeded, got %+v", sts)
	}
	waitAcked(t, env.JS, client, 10*time.Second)
	if n := markerLines(t, good); n != 1 {
		t.Fatalf("the valid job ran %d times", n)
	}
	if n := markerLines(t, k.marker); n != 0 {
		t.Fatalf("bad offers ran %d times", n)
	}

	t.Run("agent", func(t *testing.T) {
		if n := a.svc.Stats().Refused; n != int64(len(rows)) {
			t.Fatalf("the agent refused %d events, want the %d bad ones", n, len(rows))
		}
		for i, row := range rows {
			t.Run(row.name, func(t *testing.T) {
				// Every message is settled (waitAcked): refused and termed,
				// the broker's advisory says why.
				var reason string
				testenv.WaitFor(t, 5*time.Second, "the message termed", func() bool {
					var ok bool
					reason, ok = terms.reason(seqs[i])
					return ok
				})
				if !strings.Contains(reason, row.agentErr.Error()) {
					t.Fatalf("termed with reason %q, want it to say %q", reason, row.agentErr)
				}
				sts := readStatuses(t, env.JS, client, ids[i])
				switch row.status {
				case rejectedStatus:
					if len(sts) != 1 || sts[0].State != events.StateRejected || !strings.Contains(sts[0].Reason, row.agentErr.Error()) {
						t.Fatalf("want one rejected status saying %q, got %+v", row.agentErr, sts)
					}
				case noStatus:
					if len(sts) != 0 {
						t.Fatalf("want no status, got %+v", sts)
					}
				}
			})
		}
	})
}
