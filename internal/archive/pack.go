package archive

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Pack writes the directory root to w as a deterministic tar.gz: entries
// in lexical order (each directory's entries sorted by name, a directory
// before its content), names relative to root with forward slashes, zero
// modification times, uid and gid 0 without user or group names, modes
// fixed to 0755 for directories and executable files and 0644 for other
// files, and a gzip header without a name or a time. The same tree packed
// twice by the same pcm build gives the same bytes, hence the same sha256.
//
// An entry that breaks the rules of a package (see the package doc) fails
// with ErrRefused, before the archive is used; a file that changes size
// while it is packed fails too: the archive is never silently wrong.
func Pack(ctx context.Context, root string, w io.Writer) error {
	zw, err := gzip.NewWriterLevel(w, gzip.DefaultCompression)
	if err != nil {
		return err
	}
	// The zero gzip.Header: no name, no comment, no modification time, OS
	// "unknown" (255): nothing that depends on the pusher's machine.
	tw := tar.NewWriter(zw)
	walkErr := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("reading %s: %w", p, err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
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
		return fmt.Errorf("closing the archive: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("closing the archive: %w", err)
	}
	return nil
}

// packEntry writes one entry of Pack.
func packEntry(tw *tar.Writer, p, name string, d fs.DirEntry) error {
	if err := checkType(name, d.Type()); err != nil {
		return fmt.Errorf("%w: remove %s from the directory", err, p)
	}
	hdr := &tar.Header{Name: name}
	switch t := d.Type(); {
	case t.IsDir():
		hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, name+"/", dirMode
	case t&fs.ModeSymlink != 0:
		target, err := os.Readlink(p)
		if err != nil {
			return fmt.Errorf("reading symlink %s: %w", p, err)
		}
		if err := checkLink(name, target); err != nil {
			return fmt.Errorf("%w: agents refuse such a package; make the link relative and inside, or copy the file", err)
		}
		hdr.Typeflag, hdr.Linkname, hdr.Mode = tar.TypeSymlink, filepath.ToSlash(target), linkMode
	default:
		info, err := d.Info()
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		hdr.Typeflag, hdr.Size, hdr.Mode = tar.TypeReg, info.Size(), fileMode
		if info.Mode()&0o111 != 0 {
			hdr.Mode = execMode
		}
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	if hdr.Typeflag != tar.TypeReg {
		return nil
	}
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	// A file that grows or shrinks while packed makes the tar writer fail
	// (or the copy come short): the archive is never silently wrong.
	n, err := io.Copy(tw, io.LimitReader(f, hdr.Size+1))
	if err == nil && n != hdr.Size {
		err = fmt.Errorf("it changed size while it was packed (%d bytes, then %d)", hdr.Size, n)
	}
	if err != nil {
		return fmt.Errorf("packing %s: %w", p, err)
	}
	return nil
}

// FileMode is the mode a single-file package is recorded with: 0755 when
// the file is executable, else 0644, whatever the pusher's umask.
func FileMode(m fs.FileMode) fs.FileMode {
	if m&0o111 != 0 {
		return execMode
	}
	return fileMode
}
