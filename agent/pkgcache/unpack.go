package pkgcache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/internal/archive"
)

// Unpack puts the content of e into dir (created if missing): a file
// package is copied as e.File with e.Mode, a tar.gz package extracted
// by archive.Extract, which refuses, with ErrUnsafeArchive here, any entry
// that breaks the rules of a package or would land outside dir (an
// absolute name, a ".." component, a write through a symlink, a symlink
// whose target is absolute or resolves outside dir or nowhere, a duplicate
// entry, an entry other than a file, a directory or a symlink). Modes are
// kept to their owner-readable, at most 0755, form; owners and times are
// not restored. On error dir may hold part of the content: the caller
// removes it.
func Unpack(ctx context.Context, e Entry, dir string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("%w: creating %s: %w", ErrUnpack, dir, err)
	}
	f, err := os.Open(e.Path)
	if err != nil {
		return fmt.Errorf("%w: %s@%s is no longer in the cache (pin it while in use): %w", ErrDownload, e.Name, e.Version, err)
	}
	defer f.Close()
	switch e.Format {
	case events.PackageFormatFile:
		return copyFile(ctx, f, dir, e)
	case events.PackageFormatTarGz:
		err := archive.Extract(ctx, ctxReader{ctx: ctx, r: f}, dir)
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return fmt.Errorf("%s@%s: %w", e.Name, e.Version, err)
		case errors.Is(err, archive.ErrRefused):
			return fmt.Errorf("%w: %s@%s: %w", ErrUnsafeArchive, e.Name, e.Version, err)
		default:
			return fmt.Errorf("%w: extracting %s@%s into %s: %w", ErrUnpack, e.Name, e.Version, dir, err)
		}
	default:
		return fmt.Errorf("%w: %s@%s has format %q", ErrFormat, e.Name, e.Version, e.Format)
	}
}

// copyFile copies a single-file package into dir.
func copyFile(ctx context.Context, src *os.File, dir string, e Entry) error {
	name := safeFileName(e.File, e.Name)
	target := filepath.Join(dir, name)
	// Whatever is there (a file, a symlink planted by an earlier run) goes:
	// the package is written afresh, never through a link.
	if err := os.RemoveAll(target); err != nil {
		return fmt.Errorf("%w: removing %s: %w", ErrUnpack, target, err)
	}
	mode := e.Mode.Perm() & 0o755
	if mode == 0 {
		mode = 0o644
	}
	out, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode|0o600)
	if err != nil {
		return fmt.Errorf("%w: creating %s: %w", ErrUnpack, target, err)
	}
	// A plain *os.File copy lets the kernel copy (copy_file_range, a
	// reflink where the file system can) instead of going through memory.
	if err := ctx.Err(); err != nil {
		_ = out.Close()
		return err
	}
	_, err = io.Copy(out, src)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%w: copying %s@%s to %s: %w", ErrUnpack, e.Name, e.Version, target, err)
	}
	return nil
}
