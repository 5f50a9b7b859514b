package pkgcache

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Unpack puts the content of e into dir (created if missing): a FormatFile
// package is copied as e.File with e.Mode, a FormatTarGz package extracted.
// Extraction refuses, with ErrUnsafeArchive, any entry that would land
// outside dir: an absolute name, a ".." component, a write through a
// symlink, a symlink whose target is absolute or resolves outside dir (or
// nowhere), a duplicate entry, and entries other than files, directories
// and symlinks. Modes are kept to their owner-readable, at most 0755, form;
// owners and times are not restored. On error dir may hold part of the
// content: the caller removes it.
func Unpack(ctx context.Context, e Entry, dir string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("%w: creating %s: %w", ErrUnpack, dir, err)
	}
	f, err := os.Open(e.Path)
	if err != nil {
		return fmt.Errorf("%w: %s@%s is no longer in the cache (pin it while in use): %w", ErrUnpack, e.Name, e.Version, err)
	}
	defer f.Close()
	switch e.Format {
	case FormatFile:
		return copyFile(ctx, f, dir, e)
	case FormatTarGz:
		if err := extractTarGz(ctx, f, dir); err != nil {
			if errors.Is(err, ErrUnsafeArchive) || errors.Is(err, ErrUnpack) || ctx.Err() != nil {
				return fmt.Errorf("%s@%s: %w", e.Name, e.Version, err)
			}
			return fmt.Errorf("%w: %s@%s: %w", ErrUnpack, e.Name, e.Version, err)
		}
		return nil
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
		return fmt.Errorf("%w: %w", ErrUnpack, err)
	}
	mode := e.Mode.Perm() & 0o755
	if mode == 0 {
		mode = 0o644
	}
	out, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode|0o600)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnpack, err)
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
		return fmt.Errorf("%w: copying %s@%s: %w", ErrUnpack, e.Name, e.Version, err)
	}
	return nil
}

// unsafe builds an ErrUnsafeArchive error about entry name.
func unsafe(name, format string, args ...any) error {
	return fmt.Errorf("%w: entry %q %s", ErrUnsafeArchive, name, fmt.Sprintf(format, args...))
}

// extractTarGz extracts r into root (which exists).
func extractTarGz(ctx context.Context, r io.Reader, root string) error {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return fmt.Errorf("%w: not a gzip stream: %w", ErrUnsafeArchive, err)
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
			return fmt.Errorf("%w: reading the archive: %w", ErrUnsafeArchive, err)
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
			return unsafe(hdr.Name, "%v", err)
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			fi, err := os.Lstat(target)
			switch {
			case err == nil && fi.IsDir():
			case err == nil:
				return unsafe(hdr.Name, "is a directory where the archive already put a %s", fi.Mode().Type())
			default:
				if err := os.MkdirAll(target, dirMode(hdr.Mode)); err != nil {
					return fmt.Errorf("%w: %w", ErrUnpack, err)
				}
			}
		case tar.TypeReg: // the reader turns the old TypeRegA into TypeReg
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return fmt.Errorf("%w: %w", ErrUnpack, err)
			}
			out, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fileMode(hdr.Mode))
			if errors.Is(err, fs.ErrExist) {
				return unsafe(hdr.Name, "appears twice in the archive")
			}
			if err != nil {
				return fmt.Errorf("%w: %w", ErrUnpack, err)
			}
			_, err = io.Copy(out, ctxReader{ctx: ctx, r: tr})
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return fmt.Errorf("%w: extracting %q: %w", ErrUnsafeArchive, hdr.Name, err)
			}
		case tar.TypeSymlink:
			link := hdr.Linkname
			if link == "" || path.IsAbs(link) || filepath.IsAbs(link) || filepath.VolumeName(link) != "" || strings.HasPrefix(link, `\`) {
				return unsafe(hdr.Name, "is a symlink to the absolute path %q", link)
			}
			joined := path.Join(path.Dir(filepath.ToSlash(rel)), link)
			if !filepath.IsLocal(filepath.FromSlash(joined)) && joined != "." {
				return unsafe(hdr.Name, "is a symlink to %q, outside the package", link)
			}
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return fmt.Errorf("%w: %w", ErrUnpack, err)
			}
			if err := os.Symlink(filepath.FromSlash(link), target); err != nil {
				if errors.Is(err, fs.ErrExist) {
					return unsafe(hdr.Name, "appears twice in the archive")
				}
				return fmt.Errorf("%w: %w", ErrUnpack, err)
			}
			links = append(links, hdr.Name)
		default:
			return unsafe(hdr.Name, "has type %q: pcm extracts only files, directories and symlinks", string(hdr.Typeflag))
		}
	}
	// Each symlink must resolve, through every other one, to a place
	// inside root.
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnpack, err)
	}
	for _, l := range links {
		rel, _ := localName(l)
		resolved, err := filepath.EvalSymlinks(filepath.Join(root, rel))
		if err != nil {
			return unsafe(l, "is a symlink that resolves to nothing in the package: %v", err)
		}
		if inside, err := filepath.Rel(realRoot, resolved); err != nil || !filepath.IsLocal(inside) && inside != "." {
			return unsafe(l, "is a symlink that resolves to %s, outside the package", resolved)
		}
	}
	return nil
}

// localName turns an archive entry name into a relative local path, or
// refuses it.
func localName(name string) (string, error) {
	if name == "" {
		return "", unsafe(name, "has no name")
	}
	if path.IsAbs(name) || filepath.IsAbs(name) || filepath.VolumeName(name) != "" || strings.HasPrefix(name, `\`) {
		return "", unsafe(name, "has an absolute path")
	}
	for _, part := range strings.Split(strings.ReplaceAll(name, `\`, "/"), "/") {
		if part == ".." {
			return "", unsafe(name, "has a \"..\" component")
		}
	}
	clean := path.Clean(name)
	if clean == "." {
		return ".", nil
	}
	rel := filepath.FromSlash(clean)
	if !filepath.IsLocal(rel) {
		return "", unsafe(name, "is not a local path")
	}
	return rel, nil
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

// fileMode keeps a file's permission bits, at most 0755, owner rw always.
func fileMode(m int64) fs.FileMode { return fs.FileMode(m)&0o755 | 0o600 }

// dirMode keeps a directory's permission bits, at most 0755, owner rwx always.
func dirMode(m int64) fs.FileMode { return fs.FileMode(m)&0o755 | 0o700 }
