package events

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
