// Package controller is the rollout controller: it follows the statuses
// of the staged rollouts (jobs whose rollout plan has a halt threshold)
// and halts a job as soon as its failure rate passes the threshold,
// publishing a signed pcm.job.halted.v1 (publisher.Halt) that every agent
// reads before it runs the job.
//
// One controller is active per cluster: each waits for the lease on the
// key events.ControllerLeaderKey of the bucket events.BucketController
// (agent/lock on that bucket: a key with a per-key TTL, renewed by
// compare-and-set), and the one holding it leads until it loses it. Its
// state is the streams': when it starts leading it reads the offers, halts
// and resumes of PCM_JOBS and the statuses of PCM_STATUS from the oldest
// staged rollout on, so a controller restarted, or another taking over,
// picks up where the last one stopped and halts once what needs halting.
//
// It never starts anything: it stores halts only (never a resume, an offer
// or a cancellation), and an agent trusts its key for halts only. It reads
// with direct gets and core subscriptions (no consumer), and logs through
// the injected zap logger only.
package controller
