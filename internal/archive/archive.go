// Package archive is the tar.gz form of a directory package, both ways:
// Pack writes a directory as a deterministic archive (pcm package push),
// Extract writes an archive into a directory (an agent, before the job
// runs in it). One set of rules, in this file, says what a package may
// hold: regular files, directories, and symlinks whose target is relative
// and stays inside the package. Pack refuses to write anything else, so a
// package is refused when it is pushed rather than on every agent, and
// Extract refuses anything else, whoever made the archive.
//
// It never writes outside the directory it is given, never writes through
// a link, never touches the network and never logs: errors that break a
// rule wrap ErrRefused; the others are the file system's.
package archive

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"strings"
)

// ErrRefused: an entry breaks the rules of a package (an absolute name, a
// ".." component, a write through a symlink, a symlink whose target is
// absolute or resolves outside the package, a duplicate, a type other than
// file, directory or symlink), or the archive is not a valid tar.gz.
var ErrRefused = errors.New("archive refused")

// Modes Pack writes: fixed, so that the archive does not depend on the
// pusher's umask.
const (
	dirMode  = 0o755
	execMode = 0o755
	fileMode = 0o644
	linkMode = 0o777
)

// refused builds an ErrRefused error about entry name.
func refused(name, format string, args ...any) error {
	return fmt.Errorf("%w: entry %q %s", ErrRefused, name, fmt.Sprintf(format, args...))
}

// checkLink is the rule of a symlink: the link at name (a slash-separated
// path relative to the package root) to target must point to a relative
// path that, joined to the link's directory, stays inside the package.
func checkLink(name, target string) error {
	if target == "" || path.IsAbs(target) || filepath.IsAbs(target) || filepath.VolumeName(target) != "" || strings.HasPrefix(target, `\`) {
		return refused(name, "is a symlink to the absolute path %q", target)
	}
	joined := path.Join(path.Dir(name), filepath.ToSlash(target))
	if joined != "." && !filepath.IsLocal(filepath.FromSlash(joined)) {
		return refused(name, "is a symlink to %q, outside the package", target)
	}
	return nil
}

// checkType is the rule of entry types: files, directories and symlinks.
func checkType(name string, t fs.FileMode) error {
	if t.IsDir() || t.IsRegular() || t&fs.ModeSymlink != 0 {
		return nil
	}
	return refused(name, "is a %s: a package holds only files, directories and symlinks", t.Type())
}

// localName turns an archive entry name into a relative local path, or
// refuses it.
func localName(name string) (string, error) {
	if name == "" {
		return "", refused(name, "has no name")
	}
	if path.IsAbs(name) || filepath.IsAbs(name) || filepath.VolumeName(name) != "" || strings.HasPrefix(name, `\`) {
		return "", refused(name, "has an absolute path")
	}
	for _, part := range strings.Split(strings.ReplaceAll(name, `\`, "/"), "/") {
		if part == ".." {
			return "", refused(name, "has a \"..\" component")
		}
	}
	clean := path.Clean(name)
	if clean == "." {
		return ".", nil
	}
	rel := filepath.FromSlash(clean)
	if !filepath.IsLocal(rel) {
		return "", refused(name, "is not a local path")
	}
	return rel, nil
}
