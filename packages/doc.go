// Package packages is the operator's side of package content: Store pushes
// a file or a directory into the PCM_PACKAGES object store (a directory
// packed by internal/archive, the same rules the agents unpack with),
// lists and removes packages, and resolves NAME@VERSION to the reference a
// job pins (Pin: the sha256 and size the agents verify). A package becomes
// usable only once its sha256 is recorded, after its last chunk.
//
// It never publishes jobs, never runs or unpacks anything, and never logs:
// problems come back as errors wrapping the sentinels of errors.go. The
// agents' side (download, verification, cache, unpacking) is
// agent/pkgcache.
package packages
