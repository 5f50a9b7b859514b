package main

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/pcm-project/pcm/events"
)

// TestREADMEDocumentsTheJobFile: README.md's job file table has a row for
// every field of a job file and of its command line.
func TestREADMEDocumentsTheJobFile(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	var want []string
	want = append(want, jsonFields(reflect.TypeFor[jobFile]())...)
	for _, f := range jsonFields(reflect.TypeFor[events.CommandLine]()) {
		want = append(want, "command."+f)
	}
	for _, f := range want {
		if !strings.Contains(readme, "\n| `"+f+"` |") {
			t.Errorf("README.md's job file table has no row for %s", f)
		}
	}
}
