// Package rollout says where one job stands on every client it targets:
// a pure model (Rollout, ClientRollout: computed from the job's offer, the
// enrollments, the agents' inventory, the locks and each client's latest
// status, with the verdict a CI pipeline waits for and the words that
// explain each client's state) and a follower (Watch, whose Updates send
// the rollout once caught up and again at each change; Read takes the
// first).
//
// It only reads, with direct gets and core subscriptions (no consumer:
// an auditor's or a publisher's credentials suffice). It never publishes,
// never writes a bucket, and never logs.
package rollout
