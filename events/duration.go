package events

import (
	"encoding/json"
	"fmt"
	"time"
)

// Duration is a time.Duration that reads and writes JSON as a Go duration
// string ("90s", "1h30m"), so job files and audit records stay readable.
type Duration time.Duration

// String renders the duration as Go does ("1h30m0s").
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads a duration string such as "90s" or "1h30m".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("%w: a duration must be a string such as \"90s\" or \"1h30m\"", ErrTimeout)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%w: %q is not a duration: write it as \"90s\" or \"1h30m\"", ErrTimeout, s)
	}
	*d = Duration(v)
	return nil
}
