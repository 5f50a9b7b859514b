// Package releases is the operator's side of agent releases: Store pushes
// one agent binary per platform as packages of PCM_PACKAGES
// (events.ReleasePackageName) with a manifest signed by a release key into
// PCM_RELEASES, promotes a version to a channel (a manifest signed again,
// naming that channel), and lists what is stored.
//
// Release keys are nkeys, as job-signing keys are, but agents trust them
// separately (--release-keys): a key that may publish jobs runs commands
// that are audited one by one, a release key replaces the agent itself on
// every client of a channel, so it is kept apart (offline, with fewer
// people) and the publishing key of a CI pipeline cannot ship an agent.
//
// It never runs, installs or swaps a binary and never logs: the agents'
// side (watch, verification, swap, health, rollback) is agent's updater.
package releases
