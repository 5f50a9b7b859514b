//go:build nobroker

package main

import "github.com/spf13/cobra"

// brokerCommands is empty in a client build (-tags nobroker): no embedded
// broker, so no nats-server linked in.
func brokerCommands(*globals) []*cobra.Command { return nil }
