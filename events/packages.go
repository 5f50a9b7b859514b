package events

import (
	"fmt"
	"regexp"
	"strings"
)

// How a package version is stored in the PCM_PACKAGES object store: the
// object's name and the metadata the publisher writes and agents read.
// They are part of the wire contract: changing one is a breaking change.

// PackageObjectName is the object holding name@version: "NAME@VERSION".
func PackageObjectName(name, version string) string { return name + "@" + version }

// Metadata keys of a package object.
const (
	PackageMetaName    = "pcm-name"
	PackageMetaVersion = "pcm-version"
	// PackageMetaSHA256 is set last: a package without it is incomplete.
	PackageMetaSHA256   = "pcm-sha256"
	PackageMetaSize     = "pcm-size"
	PackageMetaFormat   = "pcm-format"
	PackageMetaFile     = "pcm-file"
	PackageMetaMode     = "pcm-mode"
	PackageMetaPushedBy = "pcm-pushed-by"
	PackageMetaPushedAt = "pcm-pushed-at"
)

// Package content formats (the PackageMetaFormat value).
const (
	// PackageFormatFile: one file, copied into the job's directory.
	PackageFormatFile = "file"
	// PackageFormatTarGz: a directory packed as tar.gz, extracted into the
	// job's directory.
	PackageFormatTarGz = "tar.gz"
)

// maxPackagePart bounds a package name and a version (as maxNameLen does
// every name).
const maxPackagePart = maxNameLen

var packagePartPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+~-]*$`)

// ValidPackagePart checks a package name or version (what says which) as
// pcm names packages in PCM_PACKAGES: 1 to 128 characters from A-Z a-z 0-9
// . _ + ~ -, starting with a letter or a digit. Packages are pushed and
// jobs are published only with such names; an agent accepts any reference
// that PackageRef.Validate accepts. Errors wrap ErrInvalidPackage.
func ValidPackagePart(what, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%w: package %s is empty: give it (NAME@VERSION, as in app@1.2.0)", ErrInvalidPackage, what)
	case len(s) > maxPackagePart:
		return fmt.Errorf("%w: package %s %.20q... is %d characters long: use at most %d", ErrInvalidPackage, what, s, len(s), maxPackagePart)
	case !packagePartPattern.MatchString(s):
		return fmt.Errorf("%w: package %s %q may only contain A-Z a-z 0-9 . _ + ~ - and must start with a letter or a digit", ErrInvalidPackage, what, s)
	}
	return nil
}

// ParsePackageSpec splits "NAME@VERSION" (PackageObjectName) and checks
// both parts (ValidPackagePart). Errors wrap ErrInvalidPackage.
func ParsePackageSpec(spec string) (name, version string, err error) {
	name, version, ok := strings.Cut(spec, "@")
	if !ok {
		return "", "", fmt.Errorf("%w: %q is not NAME@VERSION (as in app@1.2.0)", ErrInvalidPackage, spec)
	}
	if err := ValidPackagePart("name", name); err != nil {
		return "", "", err
	}
	if err := ValidPackagePart("version", version); err != nil {
		return "", "", err
	}
	return name, version, nil
}
