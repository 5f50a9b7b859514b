package streamread_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pcm-project/pcm/internal/streamread"
	"github.com/pcm-project/pcm/testenv"
)

// BenchmarkScan reads 100,000 stored messages of about 1 KiB (headers like
// a CloudEvent's) with Scan, whole stream and through two filters, and
// reports messages/s.
func BenchmarkScan(b *testing.B) {
	const n = 100_000
	env := testenv.StartBroker(b)
	js := env.JS
	if _, err := js.CreateStream(context.Background(), streamConfig()); err != nil {
		b.Fatal(err)
	}
	body := []byte(`{"specversion":"1.0","data":"` + strings.Repeat("x", 900) + `"}`)
	for i := range n {
		msg := nats.NewMsg(fmt.Sprintf("sr.%c.%d", "ab"[i%2], i%100))
		msg.Data = body
		msg.Header.Set("Content-Type", "application/cloudevents+json")
		msg.Header.Set("Nats-Msg-Id", fmt.Sprint(i))
		if _, err := js.PublishMsgAsync(msg); err != nil {
			b.Fatal(err)
		}
		if i%4000 == 3999 {
			select {
			case <-js.PublishAsyncComplete():
			case <-time.After(30 * time.Second):
				b.Fatal("publishes not acknowledged")
			}
		}
	}
	<-js.PublishAsyncComplete()
	for _, tc := range []struct {
		name string
		opts streamread.Options
		want int
	}{
		{"whole stream", streamread.Options{}, n},
		{"two filters", streamread.Options{Filters: []string{"sr.a.*", "sr.b.1"}}, n/2 + n/100},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var got int
			start := time.Now()
			for b.Loop() {
				got = 0
				err := streamread.Scan(context.Background(), js, testStream, tc.opts, func(streamread.Msg) error { got++; return nil })
				if err != nil {
					b.Fatal(err)
				}
			}
			if got != tc.want {
				b.Fatalf("read %d messages, want %d", got, tc.want)
			}
			b.ReportMetric(float64(got*b.N)/time.Since(start).Seconds(), "msgs/s")
		})
	}
}
