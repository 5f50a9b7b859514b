package integration_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/fleet"
	"github.com/pcm-project/pcm/testenv"
)

// TestEnrollStorage: a client's consumer keeps its state on file on a
// single node (the only storage that survives its restart) and in memory
// when it is replicated in a cluster (StorageAuto); a consumer enrolled
// again keeps the storage it has (nats-server cannot change it).
func TestEnrollStorage(t *testing.T) {
	enrollIn := func(t *testing.T, js jetstream.JetStream, client string, groups []string, opts fleet.ConsumerOptions) jetstream.ConsumerConfig {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cons, err := fleet.EnrollConsumer(ctx, js, client, groups, opts)
		if err != nil {
			t.Fatalf("enrolling %s: %v", client, err)
		}
		return cons.CachedInfo().Config
	}
	t.Run("single node", func(t *testing.T) {
		env := testenv.StartBroker(t)
		if cfg := enrollIn(t, env.JS, "file1", nil, fleet.ConsumerOptions{}); cfg.MemoryStorage {
			t.Errorf("single node, default storage: memory, want file")
		}
		if cfg := enrollIn(t, env.JS, "mem1", nil, fleet.ConsumerOptions{Storage: fleet.StorageMemory}); !cfg.MemoryStorage {
			t.Errorf("StorageMemory: file, want memory")
		}
		cfg := enrollIn(t, env.JS, "file1", []string{"g1"}, fleet.ConsumerOptions{Storage: fleet.StorageMemory})
		if cfg.MemoryStorage || len(cfg.FilterSubjects) != 3 {
			t.Errorf("enrolled again with StorageMemory and a group: memory %v, filters %v; want file, 3 filters", cfg.MemoryStorage, cfg.FilterSubjects)
		}
	})
	t.Run("cluster", func(t *testing.T) {
		c := testenv.StartCluster(t, 3)
		_, js := c.Connect(t)
		if cfg := enrollIn(t, js, "node1", nil, fleet.ConsumerOptions{}); !cfg.MemoryStorage || cfg.Replicas > 1 && cfg.Replicas != 3 {
			t.Errorf("cluster, default storage: memory %v replicas %d, want memory", cfg.MemoryStorage, cfg.Replicas)
		}
		if cfg := enrollIn(t, js, "node2", nil, fleet.ConsumerOptions{Storage: fleet.StorageFile}); cfg.MemoryStorage {
			t.Errorf("cluster, StorageFile: memory, want file")
		}
		if cfg := enrollIn(t, js, "node3", nil, fleet.ConsumerOptions{Replicas: 1}); cfg.MemoryStorage {
			t.Errorf("cluster, one replica: memory, want file (a lone copy in memory dies with its member)")
		}
	})
}
