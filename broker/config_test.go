package broker_test

import (
	"errors"
	"testing"
	"time"

	"github.com/pcm-project/pcm/broker"
)

func TestConfigValidate(t *testing.T) {
	dir := t.TempDir()
	cluster := broker.ClusterConfig{Name: "c", Listen: "127.0.0.1:-1", Routes: []string{"nats-route://127.0.0.1:6222"}}
	tests := []struct {
		name    string
		cfg     broker.Config
		wantErr []error
	}{
		{name: "minimal", cfg: broker.Config{StoreDir: dir}},
		{name: "random port", cfg: broker.Config{StoreDir: dir, Listen: "127.0.0.1:-1"}},
		{name: "port zero", cfg: broker.Config{StoreDir: dir, Listen: "127.0.0.1:0"}},
		{name: "all interfaces", cfg: broker.Config{StoreDir: dir, Listen: ":4222", MonitorListen: "127.0.0.1:8222"}},
		{name: "cluster member", cfg: broker.Config{StoreDir: dir, ServerName: "n1", Cluster: cluster}},
		{name: "nats scheme route", cfg: broker.Config{StoreDir: dir, Cluster: broker.ClusterConfig{Name: "c", Listen: "127.0.0.1:6222", Routes: []string{"nats://10.0.0.2:6222"}}}},
		{name: "max payload", cfg: broker.Config{StoreDir: dir, MaxPayload: broker.MaxPayloadLimit}},
		{name: "no store dir", cfg: broker.Config{}, wantErr: []error{broker.ErrInvalidConfig}},
		{name: "blank store dir", cfg: broker.Config{StoreDir: "  "}, wantErr: []error{broker.ErrInvalidConfig}},
		{name: "listen without port", cfg: broker.Config{StoreDir: dir, Listen: "127.0.0.1"}, wantErr: []error{broker.ErrInvalidConfig, broker.ErrInvalidListen}},
		{name: "listen port not a number", cfg: broker.Config{StoreDir: dir, Listen: "127.0.0.1:nats"}, wantErr: []error{broker.ErrInvalidConfig, broker.ErrInvalidListen}},
		{name: "listen port too big", cfg: broker.Config{StoreDir: dir, Listen: "127.0.0.1:65536"}, wantErr: []error{broker.ErrInvalidConfig, broker.ErrInvalidListen}},
		{name: "listen port below -1", cfg: broker.Config{StoreDir: dir, Listen: "127.0.0.1:-2"}, wantErr: []error{broker.ErrInvalidConfig, broker.ErrInvalidListen}},
		{name: "bad monitor listen", cfg: broker.Config{StoreDir: dir, MonitorListen: "8222"}, wantErr: []error{broker.ErrInvalidConfig, broker.ErrInvalidListen}},
		{name: "server name with space", cfg: broker.Config{StoreDir: dir, ServerName: "my broker"}, wantErr: []error{broker.ErrInvalidConfig}},
		{name: "negative max payload", cfg: broker.Config{StoreDir: dir, MaxPayload: -1}, wantErr: []error{broker.ErrInvalidConfig}},
		{name: "max payload too big", cfg: broker.Config{StoreDir: dir, MaxPayload: broker.MaxPayloadLimit + 1}, wantErr: []error{broker.ErrInvalidConfig}},
		{name: "negative max store", cfg: broker.Config{StoreDir: dir, MaxStore: -1}, wantErr: []error{broker.ErrInvalidConfig}},
		{name: "negative default max consumers", cfg: broker.Config{StoreDir: dir, DefaultMaxConsumersPerStream: -1}, wantErr: []error{broker.ErrInvalidConfig}},
		{name: "negative start timeout", cfg: broker.Config{StoreDir: dir, StartTimeout: -time.Second}, wantErr: []error{broker.ErrInvalidConfig}},
		{name: "cluster without name", cfg: broker.Config{StoreDir: dir, Cluster: broker.ClusterConfig{Listen: "127.0.0.1:6222", Routes: cluster.Routes}}, wantErr: []error{broker.ErrInvalidConfig, broker.ErrInvalidCluster}},
		{name: "cluster without listen", cfg: broker.Config{StoreDir: dir, Cluster: broker.ClusterConfig{Name: "c", Routes: cluster.Routes}}, wantErr: []error{broker.ErrInvalidConfig, broker.ErrInvalidCluster}},
		{name: "cluster bad listen", cfg: broker.Config{StoreDir: dir, Cluster: broker.ClusterConfig{Name: "c", Listen: "6222", Routes: cluster.Routes}}, wantErr: []error{broker.ErrInvalidConfig, broker.ErrInvalidCluster, broker.ErrInvalidListen}},
		{name: "cluster without routes", cfg: broker.Config{StoreDir: dir, Cluster: broker.ClusterConfig{Name: "c", Listen: "127.0.0.1:6222"}}, wantErr: []error{broker.ErrInvalidConfig, broker.ErrInvalidCluster}},
		{name: "route with http scheme", cfg: broker.Config{StoreDir: dir, Cluster: broker.ClusterConfig{Name: "c", Listen: "127.0.0.1:6222", Routes: []string{"http://10.0.0.2:6222"}}}, wantErr: []error{broker.ErrInvalidConfig, broker.ErrInvalidCluster}},
		{name: "route without port", cfg: broker.Config{StoreDir: dir, Cluster: broker.ClusterConfig{Name: "c", Listen: "127.0.0.1:6222", Routes: []string{"nats-route://10.0.0.2"}}}, wantErr: []error{broker.ErrInvalidConfig, broker.ErrInvalidCluster}},
		{name: "hub", cfg: broker.Config{StoreDir: dir, Domain: "hub", LeafListen: "127.0.0.1:-1"}},
		{name: "site", cfg: broker.Config{StoreDir: dir, Domain: "branch1", Hub: &broker.HubLink{URL: "nats-leaf://hub:7422"}}},
		{name: "site of a hub cluster", cfg: broker.Config{StoreDir: dir, Domain: "branch1", Hub: &broker.HubLink{URL: "nats-leaf://h1:7422,nats-leaf://h2:7422"}}},
		{name: "hub without domain", cfg: broker.Config{StoreDir: dir, LeafListen: "127.0.0.1:7422"}, wantErr: []error{broker.ErrInvalidConfig, broker.ErrInvalidSite}},
		{name: "hub of relays", cfg: broker.Config{StoreDir: dir, Domain: "hub", LeafListen: "127.0.0.1:-1", Relays: true}},
		{name: "relays without a leaf listener", cfg: broker.Config{StoreDir: dir, Relays: true}, wantErr: []error{broker.ErrInvalidConfig, broker.ErrInvalidSite}},
		{name: "hub bad leaf listen", cfg: broker.Config{StoreDir: dir, Domain: "hub", LeafListen: "7422"}, wantErr: []error{broker.ErrInvalidConfig, broker.ErrInvalidListen}},
		{name: "domain with a dot", cfg: broker.Config{StoreDir: dir, Domain: "a.b"}, wantErr: []error{broker.ErrInvalidConfig}},
		{name: "site without domain", cfg: broker.Config{StoreDir: dir, Hub: &broker.HubLink{URL: "nats-leaf://hub:7422"}}, wantErr: []error{broker.ErrInvalidConfig, broker.ErrInvalidSite}},
		{name: "site without hub port", cfg: broker.Config{StoreDir: dir, Domain: "b", Hub: &broker.HubLink{URL: "nats-leaf://hub"}}, wantErr: []error{broker.ErrInvalidConfig, broker.ErrInvalidSite}},
		{name: "site with http hub", cfg: broker.Config{StoreDir: dir, Domain: "b", Hub: &broker.HubLink{URL: "http://hub:7422"}}, wantErr: []error{broker.ErrInvalidConfig, broker.ErrInvalidSite}},
		{name: "site in a cluster", cfg: broker.Config{StoreDir: dir, Domain: "b", Hub: &broker.HubLink{URL: "nats-leaf://hub:7422"}, Cluster: cluster}, wantErr: []error{broker.ErrInvalidConfig, broker.ErrInvalidSite}},
		{name: "site negative reconnect", cfg: broker.Config{StoreDir: dir, Domain: "b", Hub: &broker.HubLink{URL: "nats-leaf://hub:7422", Reconnect: -time.Second}}, wantErr: []error{broker.ErrInvalidConfig, broker.ErrInvalidSite}},
		{name: "cluster name with space", cfg: broker.Config{StoreDir: dir, Cluster: broker.ClusterConfig{Name: "my cluster", Listen: "127.0.0.1:6222", Routes: cluster.Routes}}, wantErr: []error{broker.ErrInvalidConfig, broker.ErrInvalidCluster}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want %v", tt.wantErr)
			}
			for _, want := range tt.wantErr {
				if !errors.Is(err, want) {
					t.Errorf("Validate() = %v, want it to wrap %v", err, want)
				}
			}
			// New refuses the same configuration with the same error.
			if _, nerr := broker.New(tt.cfg); !errors.Is(nerr, tt.wantErr[0]) {
				t.Errorf("New() = %v, want it to wrap %v", nerr, tt.wantErr[0])
			}
		})
	}
}

func TestNewAppliesDefaults(t *testing.T) {
	b, err := broker.New(broker.Config{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	cfg := b.Config()
	if cfg.Listen != broker.DefaultListen {
		t.Errorf("Listen = %q, want %q", cfg.Listen, broker.DefaultListen)
	}
	if cfg.ServerName == "" {
		t.Error("ServerName is empty, want one derived from the host name")
	}
	if cfg.StartTimeout != broker.DefaultStartTimeout {
		t.Errorf("StartTimeout = %s, want %s", cfg.StartTimeout, broker.DefaultStartTimeout)
	}
	if b.ClientURL() != "" {
		t.Errorf("ClientURL() before Start = %q, want empty", b.ClientURL())
	}
	b.Shutdown() // never started: returns at once
}

func TestProvisionOptionsValidate(t *testing.T) {
	tests := []struct {
		name    string
		opts    broker.ProvisionOptions
		wantErr error
	}{
		{name: "defaults", opts: broker.ProvisionOptions{}},
		{name: "cluster", opts: broker.ProvisionOptions{Replicas: 3, StatusMaxAge: 90 * 24 * time.Hour}},
		{name: "short windows", opts: broker.ProvisionOptions{JobsMaxAge: time.Hour, DuplicateWindow: time.Minute, LockMarkerTTL: time.Second}},
		{name: "negative replicas", opts: broker.ProvisionOptions{Replicas: -1}, wantErr: broker.ErrInvalidProvisionOptions},
		{name: "too many replicas", opts: broker.ProvisionOptions{Replicas: 6}, wantErr: broker.ErrInvalidProvisionOptions},
		{name: "negative jobs max age", opts: broker.ProvisionOptions{JobsMaxAge: -time.Hour}, wantErr: broker.ErrInvalidProvisionOptions},
		{name: "negative status max age", opts: broker.ProvisionOptions{StatusMaxAge: -time.Hour}, wantErr: broker.ErrInvalidProvisionOptions},
		{name: "negative duplicate window", opts: broker.ProvisionOptions{DuplicateWindow: -time.Hour}, wantErr: broker.ErrInvalidProvisionOptions},
		{name: "duplicate window longer than jobs max age", opts: broker.ProvisionOptions{JobsMaxAge: time.Hour}, wantErr: broker.ErrInvalidProvisionOptions},
		{name: "duplicate window longer than status max age", opts: broker.ProvisionOptions{StatusMaxAge: time.Hour}, wantErr: broker.ErrInvalidProvisionOptions},
		{name: "negative max consumers", opts: broker.ProvisionOptions{MaxConsumers: -1}, wantErr: broker.ErrInvalidProvisionOptions},
		{name: "negative max msg size", opts: broker.ProvisionOptions{MaxMsgSize: -1}, wantErr: broker.ErrInvalidProvisionOptions},
		{name: "lock marker ttl under a second", opts: broker.ProvisionOptions{LockMarkerTTL: time.Millisecond}, wantErr: broker.ErrInvalidProvisionOptions},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.opts.Validate()
			if tt.wantErr == nil && err != nil {
				t.Fatalf("Validate() = %v, want nil", err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("Validate() = %v, want %v", err, tt.wantErr)
			}
		})
	}
}
