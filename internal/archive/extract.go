package archive

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Extract writes the tar.gz read from r into root, which must exist. It
// refuses, with ErrRefused, any entry that breaks the rules of a package
// (see the package doc) or would land outside root: an absolute name, a
// ".." component, a write through a symlink (an entry under a symlink
// extracted before it, or one the directory already held), a duplicate
// entry, a symlink that resolves to nothing inside root once every entry
// is written; and an archive that is not a valid tar.gz. Modes are kept to
// their owner-readable, at most 0755, form; owners and times are not
// restored. It checks ctx between entries; to stop within a large one, give
// it an r that fails once ctx ends. On error root may hold part of the
// content: the caller removes it.
func Extract(ctx context.Context, r io.Reader, root string) error {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return fmt.Errorf("%w: not a gzip stream: %w", ErrRefused, err)
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	var links []string // names of the symlinks extracted
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: reading the archive: %w", ErrRefused, err)
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		rel, err := localName(hdr.Name)
		if err != nil {
			return err
		}
		if rel == "." {
			continue // the root itself ("./")
		}
		target := filepath.Join(root, rel)
		if err := realParents(root, rel); err != nil {
			return refused(hdr.Name, "%v", err)
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			fi, err := os.Lstat(target)
			switch {
			case err == nil && fi.IsDir():
			case err == nil:
				return refused(hdr.Name, "is a directory where the archive already put a %s", fi.Mode().Type())
			default:
				if err := os.MkdirAll(target, extractedDirMode(hdr.Mode)); err != nil {
					return err
				}
			}
		case tar.TypeReg: // the reader turns the old TypeRegA into TypeReg
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			out, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, extractedFileMode(hdr.Mode))
			if errors.Is(err, fs.ErrExist) {
				return refused(hdr.Name, "appears twice in the archive")
			}
			if err != nil {
				return err
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return fmt.Errorf("%w: extracting %q: %w", ErrRefused, hdr.Name, err)
			}
		case tar.TypeSymlink:
			if err := checkLink(filepath.ToSlash(rel), hdr.Linkname); err != nil {
				return err
			}
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			if err := os.Symlink(filepath.FromSlash(hdr.Linkname), target); err != nil {
				if errors.Is(err, fs.ErrExist) {
					return refused(hdr.Name, "appears twice in the archive")
				}
				return err
			}
			links = append(links, hdr.Name)
		default:
			return refused(hdr.Name, "has type %q: a package holds only files, directories and symlinks", string(hdr.Typeflag))
		}
	}
	// Each symlink must resolve, through every other one, to a place
	// inside root.
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return err
	}
	for _, l := range links {
		rel, _ := localName(l)
		resolved, err := filepath.EvalSymlinks(filepath.Join(root, rel))
		if err != nil {
			return refused(l, "is a symlink that resolves to nothing in the package: %v", err)
		}
		if inside, err := filepath.Rel(realRoot, resolved); err != nil || !filepath.IsLocal(inside) && inside != "." {
			return refused(l, "is a symlink that resolves to %s, outside the package", resolved)
		}
	}
	return nil
}

// realParents checks that every existing parent of rel under root is a
// real directory, not a symlink (nothing is ever written through a link).
func realParents(root, rel string) error {
	dir := filepath.Dir(rel)
	if dir == "." {
		return nil
	}
	cur := root
	for _, part := range strings.Split(dir, string(filepath.Separator)) {
		cur = filepath.Join(cur, part)
		fi, err := os.Lstat(cur)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // created as a directory, with what follows
		}
		if err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return fmt.Errorf("goes through the symlink %s", part)
		}
		if !fi.IsDir() {
			return fmt.Errorf("goes through %s, which is not a directory", part)
		}
	}
	return nil
}

// extractedFileMode keeps a file's permission bits, at most 0755, owner
// rw always.
func extractedFileMode(m int64) fs.FileMode { return fs.FileMode(m)&0o755 | 0o600 }

// extractedDirMode keeps a directory's permission bits, at most 0755,
// owner rwx always.
func extractedDirMode(m int64) fs.FileMode { return fs.FileMode(m)&0o755 | 0o700 }
