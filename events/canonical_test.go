package events_test

import (
	"errors"
	"testing"

	"github.com/pcm-project/pcm/events"
)

// TestCanonicalJSON checks the examples of RFC 8785 (the JSON
// Canonicalization Scheme) and that re-spaced, re-ordered or re-escaped
// forms of one value have one canonical form.
func TestCanonicalJSON(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"RFC 8785 3.2.2", `{
  "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}`, `{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}`},
		{"RFC 8785 3.2.3 sorting by UTF-16 code units", `{
  "\u20ac": "Euro Sign",
  "\r": "Carriage Return",
  "\ufb33": "Hebrew Letter Dalet With Dagesh",
  "1": "One",
  "\ud83d\ude00": "Emoji: Grinning Face",
  "\u0080": "Control",
  "\u00f6": "Latin Small Letter O With Diaeresis"
}`, "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u0080\":\"Control\",\"ö\":\"Latin Small Letter O With Diaeresis\",\"€\":\"Euro Sign\",\"😀\":\"Emoji: Grinning Face\",\"\ufb33\":\"Hebrew Letter Dalet With Dagesh\"}"},
		{"numbers", `[0, -0, 1, -1, 1.0, 1e21, 1e20, 123456789012345680000, 0.000001, 1e-7, 4294967295, 9007199254740993]`,
			`[0,0,1,-1,1,1e+21,100000000000000000000,123456789012345680000,0.000001,1e-7,4294967295,9007199254740992]`},
		{"pcm data", ` { "targets" : [ { "kind" : "all" } ], "job_id" : "J1" , "command":{"timeout":"1h","argv":["sh","-c","echo \"a<b>&\u2028\""]}}`,
			"{\"command\":{\"argv\":[\"sh\",\"-c\",\"echo \\\"a<b>&\u2028\\\"\"],\"timeout\":\"1h\"},\"job_id\":\"J1\",\"targets\":[{\"kind\":\"all\"}]}"},
		{"scalars", `"x"`, `"x"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := events.CanonicalJSON([]byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Fatalf("got  %s\nwant %s", got, tc.want)
			}
			again, err := events.CanonicalJSON(got)
			if err != nil || string(again) != tc.want {
				t.Fatalf("the canonical form is not its own canonical form: %s, %v", again, err)
			}
		})
	}
	for _, bad := range []string{``, `{`, `{"a":1,"a":2}`, `[1e400]`, `1 2`, `{"a":}`} {
		if _, err := events.CanonicalJSON([]byte(bad)); !errors.Is(err, events.ErrMalformed) {
			t.Errorf("CanonicalJSON(%q): want ErrMalformed, got %v", bad, err)
		}
	}
}
