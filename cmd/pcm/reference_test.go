package main

import (
	"flag"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the CLI reference in README.md")

const (
	refStart = "<!-- cli-reference:start (generated: go test ./cmd/pcm -run TestREADMEReference -update) -->\n"
	refEnd   = "<!-- cli-reference:end -->"
)

// TestREADMEReference fails when README.md's CLI reference does not match
// the commands and flags the binary has.
func TestREADMEReference(t *testing.T) {
	var b strings.Builder
	writeReference(&b, newRoot())
	want := b.String()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(readme)
	i, j := strings.Index(s, refStart), strings.Index(s, refEnd)
	if i < 0 || j < i {
		t.Fatalf("README.md lacks the markers %q ... %q", refStart, refEnd)
	}
	got := s[i+len(refStart) : j]
	if got == want {
		return
	}
	if *update {
		if err := os.WriteFile("../../README.md", []byte(s[:i+len(refStart)]+want+s[j:]), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatal("README.md's CLI reference is out of date: run go test ./cmd/pcm -run TestREADMEReference -update")
}
