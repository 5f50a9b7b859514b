// Package pkgcache is the agent's content cache of packages: it downloads a
// package version from the PCM_PACKAGES object store into a directory of
// the agent's state dir, verifies its sha256 against the digest the job
// pinned, keeps it under that digest so that every job naming the same
// content shares one copy, and unpacks it into a job's working directory.
//
// A download is streamed to a temporary file while it is hashed, fsynced,
// and renamed into place only once its digest matches: a download cut short
// (a broker restart, a crash of the agent) never leaves a file that counts
// as valid. Downloads read the object's chunks with batched direct gets
// (no consumer), so one interrupted by a broker restart resumes at the next
// chunk, and one that stalls is abandoned after Config.StallTimeout and
// resumed again (internal/backoff's delays).
// Cached content is hashed again on every use.
//
// The cache has a size limit, enforced by evicting the least recently used
// content first; content pinned (Pin) by a job that is still pending is
// never evicted. Tar.gz packages are extracted by internal/archive, with
// the rules pcm package push packs them by: absolute paths, ".."
// components, writes through symlinks and symlinks that resolve outside the
// job's directory are refused.
//
// The package never runs commands, never writes outside its directory and
// the directories given to Unpack, and logs only through the injected
// *zap.Logger. One Cache owns its directory: do not open two on the same
// directory at once.
package pkgcache
