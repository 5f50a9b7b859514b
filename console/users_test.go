package console_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/pcm-project/pcm/console"
)

func TestParseUsers(t *testing.T) {
	tests := []struct {
		name, file string
		wantErr    error
	}{
		{name: "viewer and operator", file: "# who\nviewer vic 0123456789abcdef\n\noperator olga 0123456789abcdefg\n"},
		{name: "unknown role", file: "admin root 0123456789abcdef\n", wantErr: console.ErrUsersFile},
		{name: "short token", file: "viewer vic short\n", wantErr: console.ErrUsersFile},
		{name: "missing field", file: "viewer 0123456789abcdef\n", wantErr: console.ErrUsersFile},
		{name: "no user", file: "# nobody\n", wantErr: console.ErrUsersFile},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "users")
			if err := os.WriteFile(path, []byte(tt.file), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := console.ParseUsers(path)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ParseUsers: %v, want %v", err, tt.wantErr)
			}
		})
	}
	if _, err := console.ParseUsers(filepath.Join(t.TempDir(), "absent")); !errors.Is(err, console.ErrUsersFile) {
		t.Errorf("an absent file: %v", err)
	}
}

func TestCheckListen(t *testing.T) {
	users := console.NewUsers(console.NewUser("vic", console.RoleViewer, "0123456789abcdef"))
	tests := []struct {
		name     string
		users    *console.Users
		loopback bool
		wantErr  error
	}{
		{name: "loopback without users", loopback: true},
		{name: "loopback with users", users: users, loopback: true},
		{name: "beyond loopback with users", users: users},
		{name: "beyond loopback without users", wantErr: console.ErrUnsafeListen},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := console.CheckListen("0.0.0.0:8180", tt.users, tt.loopback); !errors.Is(err, tt.wantErr) {
				t.Fatalf("CheckListen: %v, want %v", err, tt.wantErr)
			}
		})
	}
}
