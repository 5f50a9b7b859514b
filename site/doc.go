// Package site runs what a branch site's broker does besides nats-server
// and provisioning (docs/sites.md). An open site links the site's streams
// to the hub's (Link: the hub's PCM_STATUS and PCM_AGENTS source the
// site's, so statuses reach the hub once, in order, with their ids, and
// site clients show in the hub's views) and relays the hub's job events
// into the site's PCM_JOBS (Relay), each offer once the package content it
// uses is at the site (one download per site and package version, not one
// per client). An authenticated site, whose link carries only its own
// account at the hub, reads the hub with direct gets (NewDirectRelay) and
// publishes its statuses and inventory through that account's imports
// (Forwarder), changing no stream's configuration and making no consumer
// at the hub. All keep working across cuts of the link: they retry until
// it returns. It never runs jobs.
package site
