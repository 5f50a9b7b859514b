package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"
)

// errConfigFile: a --config file cannot be read or holds a setting no pcm
// command has.
var errConfigFile = errors.New("bad configuration file")

// annotConfigMayBeMissing marks a command whose --config file may not
// exist yet (pcm agent install writes it).
const annotConfigMayBeMissing = "pcm-config-may-be-missing"

// defaultConfigPath is where pcm FACE install writes the service's
// configuration: /etc/pcm/FACE.yaml, %ProgramData%\pcm\FACE.yaml on
// Windows.
func defaultConfigPath(face string) string {
	if runtime.GOOS == "windows" {
		return filepath.Join(programData(), "pcm", face+".yaml")
	}
	return filepath.Join("/etc/pcm", face+".yaml")
}

// programData is %ProgramData% (C:\ProgramData when unset).
func programData() string {
	if d := os.Getenv("ProgramData"); d != "" {
		return d
	}
	return `C:\ProgramData`
}

// applyConfigFile sets every flag of cmd that neither the command line nor
// the environment set from the --config file, if one is given. The file
// is YAML: top-level keys are flag names and apply to every command; a map
// under a command's name (agent:, desktop:, broker:) applies to that
// command only and wins. A key that is the flag of another pcm command is
// ignored here (the agent's and the desktop's settings share a file); a
// key no command has is an error naming it.
func applyConfigFile(cmd *cobra.Command, path string) error {
	if path == "" {
		return nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && cmd.Annotations[annotConfigMayBeMissing] != "" {
		return nil // install writes it
	}
	if err != nil {
		return fmt.Errorf("%w: %w: give --config the file pcm agent install wrote (or create it)", errConfigFile, err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("%w: %s: %w", errConfigFile, path, err)
	}
	settings := map[string]any{}
	for k, v := range doc {
		if _, ok := v.(map[string]any); !ok {
			settings[k] = v
		} else if !isCommandName(cmd.Root(), k) {
			return fmt.Errorf("%w: %s: %s holds a map: only a command's section (agent:, desktop:, broker:) does", errConfigFile, path, k)
		}
	}
	if own, ok := doc[cmd.Name()].(map[string]any); ok {
		for k, v := range own {
			settings[k] = v
		}
	}
	known := allFlagNames(cmd.Root())
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		f := cmd.Flags().Lookup(k)
		if f == nil {
			if !known[k] && !isCommandName(cmd.Root(), k) {
				return fmt.Errorf("%w: %s: unknown setting %q: settings are the flags of pcm's commands without the dashes (pcm %s --help)", errConfigFile, path, k, cmd.Name())
			}
			continue
		}
		if f.Changed || k == "config" {
			continue
		}
		v, err := settingValue(settings[k])
		if err != nil {
			return fmt.Errorf("%w: %s: %s: %w", errConfigFile, path, k, err)
		}
		if err := cmd.Flags().Set(k, v); err != nil {
			return fmt.Errorf("%w: %s: %s: %q: %w", errConfigFile, path, k, v, err)
		}
	}
	return nil
}

// settingValue is a YAML value as a flag's text: lists comma-separated.
func settingValue(v any) (string, error) {
	switch t := v.(type) {
	case string:
		return t, nil
	case bool:
		return strconv.FormatBool(t), nil
	case float64:
		return strconv.FormatFloat(t, 'f', -1, 64), nil
	case nil:
		return "", nil
	case []any:
		parts := make([]string, len(t))
		for i, e := range t {
			s, err := settingValue(e)
			if err != nil {
				return "", err
			}
			parts[i] = s
		}
		return strings.Join(parts, ","), nil
	}
	return "", fmt.Errorf("a %T is not a flag's value: use a string, a number, true/false or a list", v)
}

func allFlagNames(root *cobra.Command) map[string]bool {
	names := map[string]bool{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.Flags().VisitAll(func(f *pflag.Flag) { names[f.Name] = true })
		c.PersistentFlags().VisitAll(func(f *pflag.Flag) { names[f.Name] = true })
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(root)
	return names
}

func isCommandName(root *cobra.Command, name string) bool {
	for _, c := range root.Commands() {
		if c.Name() == name {
			return true
		}
	}
	return false
}

// pathSettings are the flags that name files: written absolute.
var pathSettings = map[string]bool{"creds": true, "tls-ca": true, "tls-cert": true, "tls-key": true,
	"trusted-keys-file": true, "state-dir": true, "log-file": true, "data": true, "auth-dir": true}

// writeConfigFile writes the flags of cmd that were set (on the command
// line or by the environment) to path as a configuration file, leaving
// out those in skip. It never overwrites a file.
func writeConfigFile(cmd *cobra.Command, path string, skip map[string]bool, extra map[string]string) error {
	settings := map[string]any{}
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if !f.Changed || skip[f.Name] || f.Name == "config" || f.Name == "help" {
			return
		}
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			settings[f.Name] = sv.GetSlice()
			return
		}
		v := f.Value.String()
		if pathSettings[f.Name] && v != "" {
			if abs, err := filepath.Abs(v); err == nil {
				v = abs // a service starts in / (or System32)
			}
		}
		settings[f.Name] = v
	})
	for k, v := range extra {
		if _, set := settings[k]; !set {
			settings[k] = v
		}
	}
	data, err := yaml.Marshal(settings)
	if err != nil {
		return err
	}
	header := "# pcm configuration, written by pcm " + cmd.Parent().Name() + " " + cmd.Name() +
		".\n# Keys are the flags of pcm " + cmd.Parent().Name() + " (pcm " + cmd.Parent().Name() + " --help), without the dashes.\n"
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("%w: creating the directory of %s: %w", errConfigFile, path, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("%w: writing %s: %w", errConfigFile, path, err)
	}
	_, err = f.WriteString(header + string(data))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
