//go:build !windows

package runner

// systemCodePages: no legacy code pages off Windows, where programs write
// UTF-8.
func systemCodePages() codePages { return codePages{} }
