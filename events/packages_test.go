package events_test

import (
	"errors"
	"testing"

	"github.com/pcm-project/pcm/events"
)

func TestParsePackageSpec(t *testing.T) {
	cases := []struct {
		spec          string
		name, version string
		wantErr       error
	}{
		{"app@1.2.3", "app", "1.2.3", nil},
		{"my_app-x@2025.06+build.7~rc1", "my_app-x", "2025.06+build.7~rc1", nil},
		{"app", "", "", events.ErrInvalidPackage},
		{"@1", "", "", events.ErrInvalidPackage},
		{"app@", "", "", events.ErrInvalidPackage},
		{"app@1@2", "", "", events.ErrInvalidPackage},
		{"a pp@1", "", "", events.ErrInvalidPackage},
		{".hidden@1", "", "", events.ErrInvalidPackage},
		{"app@../1", "", "", events.ErrInvalidPackage},
	}
	for _, tc := range cases {
		t.Run(tc.spec, func(t *testing.T) {
			name, version, err := events.ParsePackageSpec(tc.spec)
			if !errors.Is(err, tc.wantErr) || name != tc.name || version != tc.version {
				t.Fatalf("ParsePackageSpec = %q, %q, %v; want %q, %q, %v", name, version, err, tc.name, tc.version, tc.wantErr)
			}
		})
	}
}
