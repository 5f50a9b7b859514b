// Command bareclient is the smallest useful JetStream client: one nats.go
// connection holding one durable pull consumer, fetching one message at a
// time with a 30 s wait like the pcm agent does, and acking what it gets.
// The footprint benchmark of package integration compares an idle pcm agent
// with it; it is built by the benchmark and never installed.
//
// It prints "ready" on stdout once bound to its consumer and runs until
// SIGTERM or SIGINT.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func main() {
	url := flag.String("url", nats.DefaultURL, "broker URL")
	stream := flag.String("stream", "PCM_JOBS", "stream")
	consumer := flag.String("consumer", "", "durable consumer name")
	flag.Parse()
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()
	nc, err := nats.Connect(*url, nats.Name("bareclient "+*consumer), nats.MaxReconnects(-1))
	if err != nil {
		fail(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		fail(err)
	}
	cons, err := js.Consumer(ctx, *stream, *consumer)
	if err != nil {
		fail(err)
	}
	fmt.Println("ready")
	for ctx.Err() == nil {
		fctx, stop := context.WithTimeout(ctx, 30*time.Second)
		batch, err := cons.Fetch(1, jetstream.FetchContext(fctx))
		if err == nil {
			for msg := range batch.Messages() {
				_ = msg.DoubleAck(ctx)
			}
		}
		stop()
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bareclient:", err)
	os.Exit(1)
}
