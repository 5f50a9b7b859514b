//go:build tools

package tools

import (
	_ "github.com/cloudevents/sdk-go/v2"
	_ "github.com/nats-io/nats-server/v2/server"
	_ "github.com/nats-io/nats.go/jetstream"
	_ "github.com/nats-io/nkeys"
	_ "github.com/oklog/ulid/v2"
	_ "github.com/santhosh-tekuri/jsonschema/v6"
	_ "github.com/spf13/cobra"
	_ "go.etcd.io/bbolt"
	_ "go.uber.org/zap"
	_ "sigs.k8s.io/yaml"
	_ "golang.org/x/term"
)
