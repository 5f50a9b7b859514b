package site_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/broker"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/packages"
	"github.com/pcm-project/pcm/publisher"
	"github.com/pcm-project/pcm/site"
	"github.com/pcm-project/pcm/testenv"
)

// start runs an open broker of cfg in process, provisioned with opts.
func start(t *testing.T, cfg broker.Config, opts broker.ProvisionOptions) (*broker.Broker, jetstream.JetStream) {
	t.Helper()
	cfg.StoreDir, cfg.Listen = t.TempDir(), "127.0.0.1:-1"
	b, err := broker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Shutdown)
	nc, err := nats.Connect(b.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := broker.Provision(t.Context(), js, opts); err != nil {
		t.Fatal(err)
	}
	return b, js
}

// TestLinkAndRelay: a hub and a site in process. Link is idempotent; the
// relay passes the hub's offers on to the site's PCM_JOBS in order, and
// copies their package once.
func TestLinkAndRelay(t *testing.T) {
	hub, hubJS := start(t, broker.Config{ServerName: "hub", Domain: "hub", LeafListen: "127.0.0.1:-1"}, broker.ProvisionOptions{})
	_, siteJS := start(t, broker.Config{ServerName: "site", Domain: "b", Hub: &broker.HubLink{URL: hub.LeafURL(), Reconnect: 100 * time.Millisecond}},
		broker.ProvisionOptions{HubDomain: "hub"})
	viaSite, err := jetstream.NewWithDomain(siteJS.Conn(), "hub")
	if err != nil {
		t.Fatal(err)
	}
	testenv.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error { return site.Link(t.Context(), viaSite, "b") })
	if err := site.Link(t.Context(), viaSite, "b"); err != nil {
		t.Fatal(err)
	}
	if err := site.Relink(t.Context(), viaSite, "b"); err != nil {
		t.Fatal(err)
	}
	if err := site.RelinkJobs(t.Context(), siteJS, "hub"); err != nil {
		t.Fatal(err)
	}
	if s, err := siteJS.Stream(t.Context(), events.StreamJobsHub); err != nil || len(s.CachedInfo().Config.Sources) != 1 {
		t.Fatalf("the site's %s after a relink: %v", events.StreamJobsHub, err)
	}
	for _, name := range site.LinkedStreams() {
		s, err := hubJS.Stream(t.Context(), name)
		if err != nil {
			t.Fatal(err)
		}
		if n := len(s.CachedInfo().Config.Sources); n != 1 {
			t.Fatalf("the hub's %s has %d sources after two links and a relink, want 1", name, n)
		}
	}

	path := filepath.Join(t.TempDir(), "tool.bin")
	if err := os.WriteFile(path, []byte("content of the tool"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := packages.NewStore(hubJS).Push(t.Context(), path, packages.PushOptions{Name: "tool", Version: "1"}); err != nil {
		t.Fatal(err)
	}
	p, err := publisher.New(hubJS, publisher.Config{Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for range 3 {
		j := events.JobOffered{Command: events.CommandLine{Argv: []string{"true"}, Automated: true, Timeout: events.Duration(time.Minute)},
			Targets: []events.Target{{Kind: events.TargetAll}}, OfferAfter: time.Now().UTC(), Package: &events.PackageRef{Name: "tool", Version: "1"}}
		pub, err := p.Publish(t.Context(), j)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, pub.JobID)
	}

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	r := site.NewRelay(siteJS, viaSite, nil)
	go func() { _ = r.Run(ctx) }()
	testenv.CheckFor(t, 15*time.Second, 50*time.Millisecond, func() error {
		if st := r.Stats(); st.Relayed < 3 {
			return fmt.Errorf("%d of 3 offers relayed", st.Relayed)
		}
		return nil
	})
	if st := r.Stats(); st.Downloads != 1 || st.Bytes != int64(len("content of the tool")) {
		t.Fatalf("relay stats %+v: want one download of the package for three offers", st)
	}
	s, err := siteJS.Stream(t.Context(), events.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		m, err := s.GetMsg(t.Context(), uint64(i+1))
		if err != nil {
			t.Fatal(err)
		}
		ev, err := events.Decode(m.Header, m.Data)
		if err != nil || ev.ID() != id {
			t.Fatalf("site PCM_JOBS #%d is %v (%v), want the offer of %s", i+1, ev.ID(), err, id)
		}
	}
}
