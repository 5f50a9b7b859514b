package integration_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pcm-project/pcm/broker"
	"github.com/pcm-project/pcm/broker/auth"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/testenv"
)

// TestTLS checks TLS on client connections (a whole job over TLS; plain
// TCP, an unknown CA and a missing client certificate refused) and on
// cluster routes (members talk mutual TLS, with authentication on).
func TestTLS(t *testing.T) {
	testenv.SameInBothModes(t)
	t.Run("a job over TLS, strangers refused", func(t *testing.T) {
		env := testenv.StartBroker(t, testenv.WithTLS())
		if cs, err := env.NC.TLSConnectionState(); err != nil || !cs.HandshakeComplete {
			t.Fatalf("the helper connection is not TLS: %v", err)
		}
		enroll(t, env.JS, "tls1")
		a := startAgent(t, env.URL, "tls1", t.TempDir())
		a.waitReady(t)
		if _, err := a.nc.TLSConnectionState(); err != nil {
			t.Fatalf("the agent's connection is not TLS: %v", err)
		}
		id := publish(t, newPublisher(t, env.JS), job([]string{"true"}, toClient("tls1")))
		if fin := finals(waitFinal(t, env.JS, "tls1", id, 10*time.Second)); fin[0].State != events.StateSucceeded {
			t.Fatalf("job over TLS: %+v", fin[0])
		}
		other, err := auth.ClientConfig{CAFile: env.Sec.Certs.OtherCAFile}.Options()
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name string
			opts []nats.Option
			want string
		}{
			{"plain TCP, no CA", nil, "certificate"},
			{"a CA that did not sign the broker's certificate", other, "certificate"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				nc, err := nats.Connect(env.URL, append(tc.opts, nats.Timeout(2*time.Second), nats.NoReconnect())...)
				if err == nil {
					nc.Close()
					t.Fatal("connected")
				}
				if !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("refused for another reason: %v", err)
				}
			})
		}
	})

	t.Run("client certificates required", func(t *testing.T) {
		certs, err := testenv.NewCerts(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		b, err := broker.New(broker.Config{
			StoreDir: t.TempDir(), Listen: "127.0.0.1:-1", ServerName: "pcm-tls",
			TLS: broker.TLSConfig{CertFile: certs.CertFile, KeyFile: certs.KeyFile, CAFile: certs.CAFile, VerifyClients: true},
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := b.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(b.Shutdown)
		without, err := auth.ClientConfig{CAFile: certs.CAFile}.Options()
		if err != nil {
			t.Fatal(err)
		}
		if nc, err := nats.Connect(b.ClientURL(), append(without, nats.Timeout(2*time.Second), nats.NoReconnect())...); err == nil {
			nc.Close()
			t.Fatal("connected without a client certificate")
		}
		with, err := auth.ClientConfig{CAFile: certs.CAFile, CertFile: certs.ClientCertFile, KeyFile: certs.ClientKeyFile}.Options()
		if err != nil {
			t.Fatal(err)
		}
		nc, err := nats.Connect(b.ClientURL(), append(with, nats.Timeout(2*time.Second))...)
		if err != nil {
			t.Fatalf("refused with a client certificate: %v", err)
		}
		nc.Close()
	})

	t.Run("cluster routes over mutual TLS, with auth", func(t *testing.T) {
		c := testenv.StartCluster(t, 3, testenv.WithTLS(), testenv.WithAuth())
		cert, err := tls.LoadX509KeyPair(c.Sec.Certs.CertFile, c.Sec.Certs.KeyFile)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			r := c.Server(i).ClusterURL()
			if routePlain(t, r) {
				t.Fatalf("member %d talks to a route without TLS", i)
			}
			if routeTLS(t, r, c.Sec, nil) {
				t.Fatalf("member %d talks to a route without a client certificate", i)
			}
			if !routeTLS(t, r, c.Sec, []tls.Certificate{cert}) {
				t.Fatalf("member %d refuses a route with the cluster's certificate", i)
			}
		}
		_, js := c.Connect(t)
		enroll(t, js, "tlsc")
		urls := strings.Join(c.URLs(), ",")
		a := startAgent(t, urls, "tlsc", t.TempDir())
		a.waitReady(t)
		id := publish(t, newPublisher(t, js), job([]string{"true"}, toClient("tlsc")))
		if fin := finals(waitFinal(t, js, "tlsc", id, 20*time.Second)); fin[0].State != events.StateSucceeded {
			t.Fatalf("job on a TLS cluster: %+v", fin[0])
		}
	})
}

// routeTLS dials a cluster port over TLS, trusting the cluster's CA and
// presenting cert (none when nil), and reports whether the member talks:
// it sends its INFO only once the handshake, client certificate included,
// succeeded.
func routeTLS(t *testing.T, routeURL string, sec *testenv.Security, cert []tls.Certificate) bool {
	t.Helper()
	u, err := url.Parse(routeURL)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := auth.LoadCAPool(sec.Certs.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	d := &net.Dialer{Timeout: 2 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", u.Host, &tls.Config{RootCAs: pool, Certificates: cert, ServerName: "127.0.0.1"})
	if err != nil {
		return false
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "INFO ")
}

// routePlain dials a cluster port without TLS and reports whether the
// member sends a plain-text INFO (it must not).
func routePlain(t *testing.T, routeURL string) bool {
	t.Helper()
	u, err := url.Parse(routeURL)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialTimeout("tcp", u.Host, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(500 * time.Millisecond))
	line, err := bufio.NewReader(conn).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "INFO ")
}
