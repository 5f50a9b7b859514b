// Command pcm is the one binary of pcm, the Package Command Manager: the
// broker, the publisher's commands, the agent's two faces and the operator's
// tools. Run pcm --help for the list.
//
// It turns flags and environment variables into calls of the packages below
// it and their results into what the user asked for (tables, JSON, exit
// codes); logs go to stderr. It holds no rule of pcm's own: what a job is,
// how it is published, run, followed or audited lives in those packages.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root, g := newCLI()
	err := root.ExecuteContext(ctx)
	if err == nil {
		return
	}
	err = g.explainRefusal(err)
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintln(os.Stderr, "pcm:", userText(ee.err))
		}
		os.Exit(ee.code)
	}
	fmt.Fprintln(os.Stderr, "pcm:", userText(err))
	os.Exit(1)
}

// libraryNames turns the names of configuration fields in the messages of
// pcm's packages into the flags a user of the binary sets.
var libraryNames = strings.NewReplacer(
	"Config.Cluster.Listen", "--cluster-listen", "Config.Cluster.Routes", "--routes", "Config.Cluster.Name", "--cluster-name",
	"Config.MonitorListen", "--monitor", "Config.Listen", "--listen", "Config.ServerName", "--server-name",
	"Config.TLS.VerifyClients", "--tls-verify-clients", "Config.TLS", "TLS", "Config.StoreDir", "--data", "Config.Auth", "--auth",
	"JobsMaxAge", "--jobs-max-age", "StatusMaxAge", "--status-max-age", "MaxConsumers", "--max-consumers",
	"PackagesMaxBytes", "--packages-max-bytes",
)

// userText is the message of err as the user reads it: in the words of the
// command line, not of the packages behind it.
func userText(err error) string { return libraryNames.Replace(err.Error()) }

// exitError carries a specific exit code out of a command (publish --wait
// exits 1 on failures, 2 on timeout).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }
