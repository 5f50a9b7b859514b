// Command leanagent runs the pcm service face (agent.New and Run, exactly as
// pcm agent does, with a production JSON logger on stderr) from a binary
// that links only the agent: no embedded nats-server, no CLI framework. The
// footprint benchmark of package integration compares its idle RSS with
// pcm agent's to show what the single pcm binary costs an agent. It is built
// by the benchmark and never installed.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/pcm-project/pcm/agent"
)

func main() {
	url := flag.String("url", nats.DefaultURL, "broker URL")
	client := flag.String("client-id", "", "client id")
	state := flag.String("state-dir", "", "state directory")
	flag.Parse()
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()
	log, err := zap.NewProduction()
	if err != nil {
		fail(err)
	}
	nc, err := nats.Connect(*url, agent.ConnectOptions("pcm agent "+*client)...)
	if err != nil {
		fail(err)
	}
	defer nc.Close()
	svc, err := agent.New(nc, agent.Config{ClientID: *client, StateDir: *state, Version: "lean", Logger: log})
	if err != nil {
		fail(err)
	}
	if err := svc.Run(ctx); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "leanagent:", err)
	os.Exit(1)
}
