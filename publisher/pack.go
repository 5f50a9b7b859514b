package publisher

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Modes written into a packed directory: fixed, so that the archive does not
// depend on the pusher's umask.
const (
	packDirMode  = 0o755
	packExecMode = 0o755
	packFileMode = 0o644
	packLinkMode = 0o777
)

// PackDir writes the directory root to w as a deterministic tar.gz: entries
// in lexical order (each directory's entries sorted by name, a directory
// before its content), names relative to root with forward slashes, zero
// modification times, uid and gid 0 without user or group names, modes
// fixed to 0755 for directories and executable files and 0644 for other
// files, and a gzip header without a name or a time. The same tree packed
// twice by the same pcm build gives the same bytes, hence the same sha256.
//
// Regular files, directories and relative symlinks that stay inside root are
// packed; anything else (a socket, a device, a symlink to an absolute path
// or out of root) fails with ErrInvalidPackage before the archive is used.
func PackDir(ctx context.Context, root string, w io.Writer) error {
	zw, err := gzip.NewWriterLevel(w, gzip.DefaultCompression)
	if err != nil {
		return err
	}
	// The zero gzip.Header: no name, no comment, no modification time, OS
	// "unknown" (255): nothing that depends on the pusher's machine.
	tw := tar.NewWriter(zw)
	walkErr := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("%w: reading %s: %w", ErrPush, p, err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return fmt.Errorf("%w: %s: %w", ErrPush, p, err)
		}
		if rel == "." {
			return nil
		}
		return packEntry(tw, p, filepath.ToSlash(rel), d)
	})
	if walkErr != nil {
		return walkErr
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("%w: closing the archive: %w", ErrPush, err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("%w: closing the archive: %w", ErrPush, err)
	}
	return nil
}

// packEntry writes one entry of PackDir.
func packEntry(tw *tar.Writer, p, name string, d fs.DirEntry) error {
	hdr := &tar.Header{Name: name}
	switch t := d.Type(); {
	case t.IsDir():
		hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, name+"/", packDirMode
	case t&fs.ModeSymlink != 0:
		target, err := os.Readlink(p)
		if err != nil {
			return fmt.Errorf("%w: reading symlink %s: %w", ErrPush, p, err)
		}
		target = filepath.ToSlash(target)
		if path.IsAbs(target) || filepath.IsAbs(target) || !isLocalLink(name, target) {
			return fmt.Errorf("%w: symlink %s points to %q, outside the directory: agents refuse such a package; make it relative and inside, or copy the file", ErrInvalidPackage, p, target)
		}
		hdr.Typeflag, hdr.Linkname, hdr.Mode = tar.TypeSymlink, target, packLinkMode
	case t.IsRegular():
		info, err := d.Info()
		if err != nil {
			return fmt.Errorf("%w: %s: %w", ErrPush, p, err)
		}
		hdr.Typeflag, hdr.Size, hdr.Mode = tar.TypeReg, info.Size(), packFileMode
		if info.Mode()&0o111 != 0 {
			hdr.Mode = packExecMode
		}
	default:
		return fmt.Errorf("%w: %s is a %s, not a regular file, directory or symlink: remove it from the directory", ErrInvalidPackage, p, t.Type())
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrPush, p, err)
	}
	if hdr.Typeflag != tar.TypeReg {
		return nil
	}
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrPush, err)
	}
	defer f.Close()
	// A file that grows or shrinks while packed makes the tar writer fail
	// (or the copy come short): the archive is never silently wrong.
	n, err := io.Copy(tw, io.LimitReader(f, hdr.Size+1))
	if err == nil && n != hdr.Size {
		err = fmt.Errorf("it changed size while it was packed (%d bytes, then %d)", hdr.Size, n)
	}
	if err != nil {
		return fmt.Errorf("%w: packing %s: %w", ErrPush, p, err)
	}
	return nil
}

// isLocalLink reports whether the symlink at name (a slash-separated path
// relative to the root) pointing to the relative target stays inside the
// root.
func isLocalLink(name, target string) bool {
	joined := path.Join(path.Dir(name), target)
	return joined != ".." && !strings.HasPrefix(joined, "../") && !path.IsAbs(joined)
}
