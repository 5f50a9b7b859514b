package fleet

import "testing"

func TestSubjectMatches(t *testing.T) {
	cases := []struct {
		filter, subject string
		want            bool
	}{
		{"pcm.jobs.group.lab", "pcm.jobs.group.lab", true},
		{"pcm.jobs.group.lab", "pcm.jobs.group.lab2", false},
		{"pcm.jobs.group.*", "pcm.jobs.group.lab", true},
		{"pcm.jobs.*", "pcm.jobs.group.lab", false},
		{"pcm.jobs.>", "pcm.jobs.group.lab", true},
		{"pcm.jobs.all", "pcm.jobs", false},
		{"pcm.jobs", "pcm.jobs.all", false},
		{">", "pcm.jobs.all", true},
	}
	for _, c := range cases {
		if got := subjectMatches(c.filter, c.subject); got != c.want {
			t.Errorf("subjectMatches(%q, %q) = %v, want %v", c.filter, c.subject, got, c.want)
		}
	}
}
