// Package site runs what a branch site's broker does besides nats-server
// and provisioning (docs/sites.md): it links the site's streams to the
// hub's (Link: the hub's PCM_STATUS and PCM_AGENTS source the site's,
// so statuses reach the hub once, in order, with their ids, and site
// clients show in the hub's views) and relays the hub's job events into
// the site's PCM_JOBS (Relay), each offer once the package content it uses
// is at the site (one download per site and package version, not one per
// client). Both keep working across cuts of the link: they
// retry until it returns. It never runs jobs and never writes to the hub's
// streams directly: the hub pulls what the site holds.
package site
