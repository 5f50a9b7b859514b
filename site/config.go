package site

import (
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/pcm-project/pcm/broker/auth"
	"github.com/pcm-project/pcm/events"
)

// Defaults of Config.
const (
	// DefaultHubDomain is the JetStream domain of the hub (pcm broker
	// --leaf-listen gives its hub this domain unless told otherwise).
	DefaultHubDomain = auth.DefaultHubDomain
	// DefaultRelink is how often Link checks that the hub still sources
	// the site (a hub re-provisioned by hand may have dropped it).
	DefaultRelink = 30 * time.Second
)

// Config says which site this is and which hub it belongs to.
type Config struct {
	// Name is the site's name and its JetStream domain. Required.
	Name string
	// HubDomain is the hub's JetStream domain. Default DefaultHubDomain.
	HubDomain string
	// Relink is how often the link is checked once made. Default
	// DefaultRelink.
	Relink time.Duration
	// Authenticated: the site's link authenticates with the site's own
	// credentials (broker.HubLink.Credentials), so Run reads the hub with
	// direct gets and forwards statuses and inventory instead of sourcing
	// (docs/sites.md, Authentication).
	Authenticated bool
	// DropAfter is how long the hub must refuse a forwarded message while
	// it answers before the forwarder drops it (Forwarder.DropAfter).
	// Default DefaultDropAfter.
	DropAfter time.Duration
	// Logger receives the site's logs; nil discards them.
	Logger *zap.Logger
}

func (c *Config) setDefaults() {
	if c.HubDomain == "" {
		c.HubDomain = DefaultHubDomain
	}
	if c.Relink <= 0 {
		c.Relink = DefaultRelink
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
}

// Validate checks the configuration with its defaults applied.
func (c Config) Validate() error {
	c.setDefaults()
	if err := events.ValidID("site name", c.Name); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if err := events.ValidID("hub domain", c.HubDomain); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if c.Name == c.HubDomain {
		return fmt.Errorf("%w: the site is named like the hub's domain %q: give it its own name", ErrInvalidConfig, c.Name)
	}
	return nil
}
