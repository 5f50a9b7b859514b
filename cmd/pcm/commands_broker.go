//go:build !nobroker

package main

import "github.com/spf13/cobra"

// brokerCommands are the commands that embed nats-server: pcm broker and
// pcm up. A client build without them (go build -tags nobroker) is smaller
// and idles lighter; see BENCHMARKS.md.
func brokerCommands(g *globals) []*cobra.Command {
	return []*cobra.Command{newBrokerCmd(g), newUpCmd(g)}
}
