package events

import (
	"fmt"
	"strings"
)

// The operating systems and architectures a platform may name (Go's names).
var (
	knownOS = map[string]bool{
		"aix": true, "android": true, "darwin": true, "dragonfly": true, "freebsd": true,
		"illumos": true, "ios": true, "linux": true, "netbsd": true, "openbsd": true,
		"plan9": true, "solaris": true, "windows": true,
	}
	knownArch = map[string]bool{
		"386": true, "amd64": true, "arm": true, "arm64": true, "loong64": true,
		"mips": true, "mipsle": true, "mips64": true, "mips64le": true,
		"ppc64": true, "ppc64le": true, "riscv64": true, "s390x": true,
	}
)

// ValidPlatform checks a platform pattern: "os/arch" with Go's names, either
// side may be "*".
func ValidPlatform(p string) error {
	osName, arch, ok := strings.Cut(p, "/")
	if !ok || strings.Contains(arch, "/") {
		return fmt.Errorf("%w: %q: write a platform as os/arch, such as linux/amd64, windows/*, */arm64", ErrPlatform, p)
	}
	if osName != "*" && !knownOS[osName] {
		return fmt.Errorf("%w: %q: unknown operating system %q (use Go's names: linux, windows, darwin, ... or *)", ErrPlatform, p, osName)
	}
	if arch != "*" && !knownArch[arch] {
		return fmt.Errorf("%w: %q: unknown architecture %q (use Go's names: amd64, arm64, 386, ... or *)", ErrPlatform, p, arch)
	}
	return nil
}

// PlatformMatches reports whether a command line supporting platforms runs on
// goos/goarch. An empty list supports every platform.
func PlatformMatches(platforms []string, goos, goarch string) bool {
	if len(platforms) == 0 {
		return true
	}
	for _, p := range platforms {
		osName, arch, _ := strings.Cut(p, "/")
		if (osName == "*" || osName == goos) && (arch == "*" || arch == goarch) {
			return true
		}
	}
	return false
}
