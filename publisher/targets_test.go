package publisher_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/fleet"
	"github.com/pcm-project/pcm/publisher"
	"github.com/pcm-project/pcm/testenv"
)

// TestRequireEnrolled: with RequireEnrolled, a job one of whose targets
// matches no enrolled client is refused (ErrNoSuchTarget) naming it, and
// the groups clients are in only when a group was missed; without it, the
// job waits for clients enrolled later. The local rules come first.
func TestRequireEnrolled(t *testing.T) {
	tb := testenv.StartBroker(t)
	testenv.EnrollClient(t, tb.JS, "ws1", []string{"lab"}, fleet.ConsumerOptions{})
	strict, err := publisher.New(tb.JS, publisher.Config{Name: "test", RequireEnrolled: true})
	if err != nil {
		t.Fatal(err)
	}
	lenient, err := publisher.New(tb.JS, publisher.Config{Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	client := func(n string) events.Target { return events.Target{Kind: events.TargetClient, Name: n} }
	group := func(n string) events.Target { return events.Target{Kind: events.TargetGroup, Name: n} }
	for _, tc := range []struct {
		name    string
		targets []events.Target
		want    string // "" accepted, else the whole refusal
	}{
		{"an enrolled client", []events.Target{client("ws1")}, ""},
		{"a group with a client", []events.Target{group("lab")}, ""},
		{"all", []events.Target{{Kind: events.TargetAll}}, ""},
		{"a client not enrolled", []events.Target{client("ws2")}, "target matches no enrolled client: client ws2 is not enrolled"},
		{"a group without clients", []events.Target{group("labb")}, "target matches no enrolled client: group labb has no enrolled client (groups with clients: lab)"},
		{"one of two missed", []events.Target{client("ws1"), client("wsx"), group("lab")}, "target matches no enrolled client: client wsx is not enrolled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			job := events.JobOffered{Targets: tc.targets, Command: events.CommandLine{Argv: []string{"true"}}}
			_, err := strict.Prepare(t.Context(), job)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (!errors.Is(err, publisher.ErrNoSuchTarget) || err.Error() != tc.want):
				t.Fatalf("got %v, want ErrNoSuchTarget: %q", err, tc.want)
			}
			if _, err := lenient.Prepare(t.Context(), job); err != nil {
				t.Fatalf("without RequireEnrolled the job is refused: %v", err)
			}
		})
	}
	// Every local rule comes first: an oversized job is refused as such,
	// whatever its targets.
	huge := events.JobOffered{Targets: []events.Target{client("ws2")}, Command: events.CommandLine{Argv: []string{"echo", strings.Repeat("x", events.MaxDataSize)}}}
	if _, err := strict.Prepare(t.Context(), huge); !errors.Is(err, events.ErrTooLarge) || !errors.Is(err, publisher.ErrInvalidJob) {
		t.Fatalf("an oversized job to a client not enrolled: got %v, want %v", err, events.ErrTooLarge)
	}
}
