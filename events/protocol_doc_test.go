package events_test

import (
	"encoding/json"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/pcm-project/pcm/events"
)

// protocolDoc is the wire contract for other languages.
const protocolDoc = "../docs/protocol.md"

// docBlock returns the lines between <!-- start --> and <!-- end ... -->.
func docBlock(t *testing.T, doc, start string) []string {
	t.Helper()
	i := strings.Index(doc, "<!-- "+start+" -->")
	if i < 0 {
		t.Fatalf("%s has no <!-- %s --> block", protocolDoc, start)
	}
	rest := doc[i:]
	j := strings.Index(rest, "<!-- end")
	if j < 0 {
		t.Fatalf("%s: the <!-- %s --> block has no end", protocolDoc, start)
	}
	return strings.Split(rest[:j], "\n")
}

// firstCells are the backquoted first cells of a markdown table's rows.
var firstCell = regexp.MustCompile("^\\| `([^`]+)` \\|")

func rowsOf(lines []string) map[string][]string {
	rows := map[string][]string{}
	for _, l := range lines {
		if m := firstCell.FindStringSubmatch(l); m != nil {
			var cells []string
			for _, c := range strings.Split(strings.Trim(l, "|"), "|") {
				cells = append(cells, strings.TrimSpace(c))
			}
			rows[m[1]] = cells
		}
	}
	return rows
}

// schemaPaths lists every field a JSON schema defines, as dotted paths
// (targets[].kind for the members of an array's objects).
func schemaPaths(t *testing.T, typ string) []string {
	t.Helper()
	b, err := events.Schema(typ)
	if err != nil {
		t.Fatal(err)
	}
	var root map[string]any
	if err := json.Unmarshal(b, &root); err != nil {
		t.Fatal(err)
	}
	defs, _ := root["$defs"].(map[string]any)
	var paths []string
	var walk func(prefix string, s map[string]any)
	walk = func(prefix string, s map[string]any) {
		if ref, ok := s["$ref"].(string); ok {
			s, _ = defs[strings.TrimPrefix(ref, "#/$defs/")].(map[string]any)
		}
		if items, ok := s["items"].(map[string]any); ok {
			walk(prefix+"[]", items)
		}
		props, _ := s["properties"].(map[string]any)
		for name, p := range props {
			path := name
			if prefix != "" {
				path = prefix + "." + name
			}
			paths = append(paths, path)
			walk(path, p.(map[string]any))
		}
	}
	walk("", root)
	sort.Strings(paths)
	return paths
}

// TestProtocolDocumentsEveryField: docs/protocol.md documents every field
// of every event type's JSON schema, and no field the schema lacks; every
// state, whether it is final and whether it counts as a failure; and every
// field of the inventory an agent keeps in PCM_AGENTS.
func TestProtocolDocumentsEveryField(t *testing.T) {
	b, err := os.ReadFile(protocolDoc)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	for _, typ := range events.Types {
		want := schemaPaths(t, typ)
		var got []string
		for path := range rowsOf(docBlock(t, doc, "fields: "+typ)) {
			got = append(got, path)
		}
		sort.Strings(got)
		for _, p := range want {
			if !slices.Contains(got, p) {
				t.Errorf("%s: field %s of %s (events/schemas) is not documented: add a row for it", protocolDoc, p, typ)
			}
		}
		for _, p := range got {
			if !slices.Contains(want, p) {
				t.Errorf("%s documents a field %s of %s that its schema does not have", protocolDoc, p, typ)
			}
		}
	}
	// The inventory in PCM_AGENTS: every field of AgentInfo.
	agents := ""
	for _, l := range strings.Split(doc, "\n") {
		if strings.HasPrefix(l, "| `PCM_AGENTS` |") {
			agents = l
		}
	}
	at := reflect.TypeFor[events.AgentInfo]()
	for i := range at.NumField() {
		name, _, _ := strings.Cut(at.Field(i).Tag.Get("json"), ",")
		if !strings.Contains(agents, "`"+name+"`") {
			t.Errorf("%s: field %s of the inventory in PCM_AGENTS is not documented in its row", protocolDoc, name)
		}
	}
	states := rowsOf(docBlock(t, doc, "states"))
	if len(states) != len(events.States) {
		t.Errorf("%s documents %d states, pcm has %d", protocolDoc, len(states), len(events.States))
	}
	for _, s := range events.States {
		row, ok := states[string(s)]
		if !ok {
			t.Errorf("%s does not document state %s", protocolDoc, s)
			continue
		}
		if final := row[1] == "yes"; final != s.Final() {
			t.Errorf("%s says state %s is final: %s", protocolDoc, s, row[1])
		}
		if failure := row[3] == "yes"; failure != s.Failure() {
			t.Errorf("%s says state %s is a failure: %s", protocolDoc, s, row[3])
		}
	}
}
