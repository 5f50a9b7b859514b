package pkgcache

import (
	"errors"

	"github.com/pcm-project/pcm/events"
)

// Sentinel errors. Every error of the package wraps one of them (or, for an
// invalid reference, events.ErrInvalidPackage); the message
// around it names the package and says what to do. ErrMissing,
// ErrDigestMismatch, ErrTooLarge, ErrFormat, ErrUnsafeArchive and ErrUnpack
// are permanent for a job (retrying cannot help); ErrDownload and
// ErrCacheFull may succeed later.
var (
	// ErrInvalidConfig: a Config field is missing or out of range.
	ErrInvalidConfig = errors.New("invalid package cache configuration")
	// ErrMissing: the package's object is not in PCM_PACKAGES (never pushed,
	// or removed), or the object store does not exist.
	ErrMissing = errors.New("package missing from the broker")
	// ErrDigestMismatch: the stored content is not what the job pinned: its
	// sha256 or its size differs (replaced or altered after the job was
	// published).
	ErrDigestMismatch = errors.New("package digest mismatch")
	// ErrTooLarge: the package is larger than the whole cache.
	ErrTooLarge = errors.New("package larger than the cache")
	// ErrCacheFull: the content pinned by pending jobs leaves no room for
	// the package now.
	ErrCacheFull = errors.New("package cache full of pinned content")
	// ErrFormat: the object's metadata names a format pcm does not know, or
	// the object is a link.
	ErrFormat = errors.New("unknown package format")
	// ErrDownload: the download failed and may succeed later (broker
	// unreachable, stalled, cancelled, local disk error).
	ErrDownload = errors.New("package download failed")
	// ErrUnpack: the job's directory could not be prepared: emptied,
	// created, or written with the content (disk full, permissions, a file
	// system that refuses the removal). The message names the path. It is
	// a fault of this client that redelivering the offer does not fix: the
	// job fails with the reason instead of waiting for ever.
	ErrUnpack = errors.New("job directory could not be prepared")
	// ErrUnsafeArchive: a tar.gz package holds an entry that would land
	// outside the job's directory (absolute path, "..", a write through a
	// symlink, a symlink resolving outside, a dangling symlink), an entry
	// of a type pcm does not extract (hard link, device, fifo), a duplicate
	// entry, or it is not a valid tar.gz.
	ErrUnsafeArchive = errors.New("unsafe or corrupt package archive")
)

// Permanent reports whether err means the package can never be used for
// the job (an invalid reference, events.ErrInvalidPackage; missing,
// altered, too large, unknown format, unsafe archive), or the job's
// directory cannot be prepared (ErrUnpack), as opposed to a failure that
// may pass (the package store unreachable, a full cache).
func Permanent(err error) bool {
	for _, p := range []error{events.ErrInvalidPackage, ErrMissing, ErrDigestMismatch, ErrTooLarge, ErrFormat, ErrUnsafeArchive, ErrUnpack} {
		if errors.Is(err, p) {
			return true
		}
	}
	return false
}
