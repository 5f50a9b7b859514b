package agent_test

import (
	"testing"

	"github.com/pcm-project/pcm/agent"
)

// TestNoticeLine: the terminal's line is the notice's text, then its hint
// how to act from the command line, when it has one.
func TestNoticeLine(t *testing.T) {
	for _, c := range []struct {
		name string
		n    agent.Notice
		want string
	}{
		{"no hint", agent.Notice{Text: "job x succeeded"}, "job x succeeded"},
		{"a hint", agent.Notice{Text: "job x offered", Hint: "run it with: pcm desktop run x"}, "job x offered; run it with: pcm desktop run x"},
	} {
		if got := c.n.Line(); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}
