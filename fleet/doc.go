// Package fleet is who is in a pcm deployment and how they stand. It
// enrolls and revokes the principals: a client's durable consumer on
// PCM_JOBS (its groups), and, on an authenticated broker, each principal's
// NATS account (made by package auth's Issuer and pushed to every broker's
// resolver through the system account's claims update), its credentials,
// and their revocation. And it reads the fleet back: the enrollments
// (ListEnrollments, EnrollmentOf), the agents' inventory and heartbeats
// with the locks (Inventory), and one client's pending jobs and last
// statuses (ShowAgent).
//
// Enrolling and revoking need an admin of the pcm account (or an open
// broker); reading needs what an auditor has. It never runs a job, never
// publishes or writes an event, and never logs: it returns errors
// wrapping its sentinels.
package fleet
