package main

import (
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// sharedMeaning are the variables read by several commands whose help
// texts differ only by wording for their command: the same setting.
var sharedMeaning = map[string]bool{
	"PCM_TLS_CA": true, "PCM_TLS_CERT": true, "PCM_AUTH_DIR": true, "PCM_STATE_DIR": true, "PCM_ACK_WAIT": true,
	"PCM_TRUSTED_KEYS": true, "PCM_TRUSTED_KEYS_FILE": true, "PCM_CONTROLLER_KEYS": true, "PCM_SIGNING_KEY": true,
	"PCM_REASON": true, "PCM_GRACE": true,
}

// TestEnvNamesMeanOneThing: a variable sets flags of one meaning (the same
// help text, or a setting listed in sharedMeaning) in every command that
// reads it, so that PCM_STATUS_OUTPUT=wide never reaches pcm audit, nor an
// audit's client filter a publish's target.
func TestEnvNamesMeanOneThing(t *testing.T) {
	meaning := map[string]string{} // variable -> help text
	where := map[string]string{}
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		c.NonInheritedFlags().VisitAll(func(f *pflag.Flag) {
			if f.Name == "help" {
				return
			}
			v := envName(c, f.Name)
			if m, ok := meaning[v]; ok && m != f.Usage && !sharedMeaning[v] {
				t.Errorf("%s sets --%s of %s (%q) and of %s (%q)", v, f.Name, c.CommandPath(), f.Usage, where[v], m)
			}
			meaning[v], where[v] = f.Usage, c.CommandPath()
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRoot())
}

// TestEnvOfOneCommand: each command reads its own variable of a scoped
// flag, and the plain name of an unscoped one.
func TestEnvOfOneCommand(t *testing.T) {
	t.Setenv("PCM_STATUS_OUTPUT", "wide")
	t.Setenv("PCM_AUDIT_OUTPUT", "json")
	t.Setenv("PCM_PACKAGE_PUSH_VERSION", "1.2")
	t.Setenv("PCM_VERSION", "dev") // docker-compose.yml's image tag
	t.Setenv("PCM_LOG_LEVEL", "warn")
	root := newRoot()
	for _, tc := range []struct {
		args       []string
		flag, want string
	}{
		{[]string{"status"}, "output", "wide"},
		{[]string{"audit"}, "output", "json"},
		{[]string{"agents"}, "output", "table"},
		{[]string{"package", "push"}, "version", "1.2"},
		{[]string{"audit"}, "log-level", "warn"},
	} {
		c, _, err := root.Find(tc.args)
		if err != nil {
			t.Fatal(err)
		}
		if err := applyEnv(c); err != nil {
			t.Fatalf("%s: %v", c.CommandPath(), err)
		}
		if got := c.Flags().Lookup(tc.flag).Value.String(); got != tc.want {
			t.Errorf("%s --%s = %q from the environment, want %q", c.CommandPath(), tc.flag, got, tc.want)
		}
	}
}
