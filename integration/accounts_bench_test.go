//go:build linux

package integration_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pcm-project/pcm/broker/auth"
	"github.com/pcm-project/pcm/integration/testenv"
)

// BenchmarkClientAccounts measures what a client's account costs the broker
// when its agent connects (nats-server loads the account on its first
// connection): the time of a connection and the broker's heap per
// connected client, at N clients connected, against the same connections
// to an open broker in the same run (the baseline). Each client connects
// once with its agent's credentials and subscribes as an agent does (its
// statuses and its lock key); the connections live in this process, in
// both fleets alike, so the heap difference is the account's. The last
// tenth of the connections are timed: nats-server checks every loaded
// account when it loads a new one, so a connection costs more the more
// accounts are loaded (BENCHMARKS.md, "Issue 12").
//
//	go test -run '^$' -bench BenchmarkClientAccounts -benchtime 1x -timeout 60m ./integration/
//
// PCM_BENCH_N (default 1000,5000) sets the sizes; 10,000 takes about 20
// minutes on two cores.
func BenchmarkClientAccounts(b *testing.B) {
	benchOpen(b)
	limit := benchRaiseNoFile(b)
	for _, n := range benchEnvInts(b, "PCM_BENCH_N", 1000, 5000) {
		if uint64(n)*2+1000 > limit {
			b.Logf("N=%d: %d open files allowed, skipped", n, limit)
			continue
		}
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			open := accountsFleet(b, n, false)
			secure := accountsFleet(b, n, true)
			b.ReportMetric(float64(open.lastConnect.Microseconds())/1000, "open-connect-ms")
			b.ReportMetric(float64(secure.lastConnect.Microseconds())/1000, "secure-connect-ms")
			b.ReportMetric(float64(secure.lastConnect)/float64(open.lastConnect), "secure/open-connect")
			b.ReportMetric(float64(secure.heap-open.heap)/float64(n)/1024, "account-KiB")
			benchSay(b, "N=%d | connection at N: open %s ms, secure %s ms (%.1fx) | all N connected in: open %s, secure %s | heap per connected client (this process holds both ends): open %.1f KiB, secure %.1f KiB, the account %.1f KiB",
				n, benchMs(open.lastConnect), benchMs(secure.lastConnect), float64(secure.lastConnect)/float64(open.lastConnect),
				open.all.Round(time.Millisecond), secure.all.Round(time.Millisecond),
				float64(open.heap)/float64(n)/1024, float64(secure.heap)/float64(n)/1024, float64(secure.heap-open.heap)/float64(n)/1024)
		})
	}
}

// accountsResult is what connecting one fleet cost.
type accountsResult struct {
	lastConnect time.Duration // mean connection time over the last tenth
	all         time.Duration // connecting the whole fleet
	heap        int64         // heap growth while connecting the fleet
}

// accountsFleet connects n agents (with their accounts when secure) to a
// fresh broker, one after the other, and closes them at the end of b.
func accountsFleet(b *testing.B, n int, secure bool) accountsResult {
	var opts []testenv.Option
	if secure {
		opts = append(opts, testenv.WithAuth())
	}
	env := testenv.StartBroker(b, append(opts, testenv.WithoutView())...)
	prefix := "open"
	var iss *auth.Issuer
	if secure {
		prefix = "secure"
		accts := env.Sec.Accounts(b)
		took := benchAccounts(b, accts, prefix, n)
		b.Logf("N=%d: made %d client accounts in %s", n, n, took.Round(time.Millisecond))
		iss = accts.Issuer()
	}
	dial := make([][]nats.Option, n) // credentials made before the clock starts
	for i := range dial {
		dial[i] = []nats.Option{nats.Name(benchClientID(prefix, i)), nats.NoReconnect()}
		if iss != nil {
			u := auth.User{Role: auth.RoleAgent, Name: benchClientID(prefix, i)}
			creds, err := iss.Issue(u)
			if err != nil {
				b.Fatal(err)
			}
			o, err := auth.CredsOption(creds)
			if err != nil {
				b.Fatal(err)
			}
			dial[i] = append(dial[i], o)
		}
	}
	heap := benchHeap()
	var res accountsResult
	conns := make([]*nats.Conn, 0, n)
	b.Cleanup(func() {
		for _, nc := range conns {
			nc.Close()
		}
	})
	timed := n - n/10
	start := time.Now()
	var tail time.Time
	for i := range n {
		if i == timed {
			tail = time.Now()
		}
		client := benchClientID(prefix, i)
		nc, err := nats.Connect(env.URL, dial[i]...)
		if err != nil {
			b.Fatalf("connecting %s: %v", client, err)
		}
		conns = append(conns, nc)
		for _, s := range []string{"pcm.status." + client + ".*", "$KV.PCM_LOCKS." + client} {
			if _, err := nc.Subscribe(s, func(*nats.Msg) {}); err != nil {
				b.Fatal(err)
			}
		}
		if err := nc.Flush(); err != nil {
			b.Fatalf("%s: %v", client, err)
		}
	}
	res.all = time.Since(start)
	res.lastConnect = time.Since(tail) / time.Duration(n-timed)
	res.heap = int64(benchHeap()) - int64(heap)
	return res
}
