package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// parseWith runs pcm's root with args up to the chosen command's
// PersistentPreRunE (environment and --config applied) and returns it.
func parseWith(t *testing.T, args ...string) (*cobra.Command, error) {
	t.Helper()
	root := newRoot()
	cmd, rest, err := root.Find(args)
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.ParseFlags(rest); err != nil {
		t.Fatal(err)
	}
	return cmd, root.PersistentPreRunE(cmd, nil)
}

func writeTemp(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigFile(t *testing.T) {
	path := writeTemp(t, `
url: nats://broker.example:4222
client-id: ws-1
groups: [lab, floor-2]
heartbeat: 10s
grace: 1m          # a desktop setting: ignored by pcm agent
agent:
  client-id: ws-1-svc
desktop:
  client-id: ws-1-desk
`)
	cmd, err := parseWith(t, "agent", "--config", path, "--heartbeat", "20s")
	if err != nil {
		t.Fatal(err)
	}
	get := func(name string) string { return cmd.Flags().Lookup(name).Value.String() }
	if get("url") != "nats://broker.example:4222" || get("client-id") != "ws-1-svc" || get("groups") != "[lab,floor-2]" {
		t.Errorf("url %s, client-id %s, groups %s: want the file's, the agent: section winning", get("url"), get("client-id"), get("groups"))
	}
	if get("heartbeat") != "20s" {
		t.Errorf("heartbeat %s: the command line must win over the file", get("heartbeat"))
	}
	t.Setenv("PCM_CLIENT_ID", "from-env")
	cmd, err = parseWith(t, "desktop", "--config", path)
	if err != nil {
		t.Fatal(err)
	}
	if got := cmd.Flags().Lookup("client-id").Value.String(); got != "from-env" {
		t.Errorf("desktop client-id %s: the environment must win over the file", got)
	}
	if got := cmd.Flags().Lookup("grace").Value.String(); got != "1m0s" {
		t.Errorf("desktop grace %s, want the file's 1m0s", got)
	}
}

func TestConfigFileErrors(t *testing.T) {
	tests := []struct {
		name, text, want string
	}{
		{"unknown key", "url: nats://x:4222\nheartbeet: 10s\n", `unknown setting "heartbeet"`},
		{"bad value", "heartbeat: soon\n", "heartbeat"},
		{"not yaml", "url: [unclosed\n", "agent.yaml"},
		{"map value", "url: {a: 1}\n", "url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseWith(t, "agent", "--config", writeTemp(t, tt.text))
			if !errors.Is(err, errConfigFile) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want errConfigFile naming %q", err, tt.want)
			}
		})
	}
	_, err := parseWith(t, "agent", "--config", filepath.Join(t.TempDir(), "missing.yaml"))
	if !errors.Is(err, errConfigFile) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: err = %v", err)
	}
	if _, err := parseWith(t, "agent", "install", "--config", filepath.Join(t.TempDir(), "missing.yaml")); err != nil {
		t.Fatalf("install with a file to write: %v", err)
	}
}

// What pcm agent install writes, pcm agent reads back: the flags given,
// file paths made absolute, and nothing else.
func TestWriteConfigFileRoundTrip(t *testing.T) {
	t.Chdir(t.TempDir())
	path := filepath.Join(t.TempDir(), "etc", "agent.yaml")
	cmd, err := parseWith(t, "agent", "install", "--config", path, "--url", "nats://b:4222", "--creds", "ws-9-agent.creds",
		"--client-id", "ws-9", "--groups", "lab,ops", "--no-start")
	if err != nil {
		t.Fatal(err)
	}
	if err := writeConfigFile(cmd, path, map[string]bool{"no-start": true}, map[string]string{"log-file": "/var/log/pcm.log"}); err != nil {
		t.Fatal(err)
	}
	if err := writeConfigFile(cmd, path, nil, nil); err == nil {
		t.Fatal("writeConfigFile overwrote an existing file")
	}
	data, _ := os.ReadFile(path)
	text := string(data)
	wd, _ := os.Getwd()
	for _, want := range []string{"client-id: ws-9", "url: nats://b:4222", "creds: " + filepath.Join(wd, "ws-9-agent.creds"), "- lab", "log-file: /var/log/pcm.log"} {
		if !strings.Contains(text, want) {
			t.Errorf("config lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "no-start") || strings.Contains(text, "heartbeat") {
		t.Errorf("config holds settings that were not given:\n%s", text)
	}
	back, err := parseWith(t, "agent", "--config", path)
	if err != nil {
		t.Fatal(err)
	}
	if got := back.Flags().Lookup("groups").Value.String(); got != "[lab,ops]" {
		t.Errorf("groups read back %s", got)
	}
}
