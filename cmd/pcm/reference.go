package main

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// writeReference renders the command tree as the Markdown CLI reference
// kept in README.md (between the cli-reference markers).
func writeReference(w io.Writer, root *cobra.Command) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Hidden || c.Name() == "help" || c.Name() == "completion" {
			return
		}
		fmt.Fprintf(w, "#### `%s`\n\n%s\n\n", c.UseLine(), c.Short)
		var rows []string
		c.NonInheritedFlags().VisitAll(func(f *pflag.Flag) {
			if f.Name == "help" {
				return
			}
			def := f.DefValue
			if def == "" || def == "[]" || def == "false" {
				def = ""
			} else {
				def = "`" + def + "`"
			}
			name := "`--" + f.Name + "`"
			if f.Shorthand != "" {
				name = "`-" + f.Shorthand + "`, " + name
			}
			usage := strings.TrimSuffix(f.Usage, " [$"+envName(c, f.Name)+"]")
			rows = append(rows, fmt.Sprintf("| %s | `%s` | %s | %s |", name, envName(c, f.Name), def, strings.ReplaceAll(usage, "|", "\\|")))
		})
		if len(rows) > 0 {
			sort.Strings(rows)
			fmt.Fprintln(w, "| flag | environment | default | meaning |")
			fmt.Fprintln(w, "|---|---|---|---|")
			fmt.Fprintln(w, strings.Join(rows, "\n"))
			fmt.Fprintln(w)
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}
