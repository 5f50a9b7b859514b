package broker

import "errors"

// Sentinel errors. Every error the package returns wraps one of them, so a
// caller can tell with errors.Is what went wrong; the message added around it
// names the field or the resource and says how to fix it.
var (
	// ErrInvalidConfig: a Config field has a value the broker cannot use.
	// Every error Config.Validate returns wraps it, together with
	// ErrInvalidListen or ErrInvalidCluster where one of those applies.
	ErrInvalidConfig = errors.New("invalid broker config")
	// ErrInvalidListen: an address (Config.Listen, Config.MonitorListen or
	// Config.Cluster.Listen) is not a host:port with a port in -1..65535.
	ErrInvalidListen = errors.New("invalid listen address")
	// ErrInvalidCluster: the Config.Cluster settings are incomplete or a
	// route is not a nats-route://host:port URL.
	ErrInvalidCluster = errors.New("invalid cluster config")
	// ErrInvalidTLS: the Config.TLS settings are incomplete, or a
	// certificate, key or CA file does not load.
	ErrInvalidTLS = errors.New("invalid TLS config")
	// ErrInvalidProvisionOptions: a ProvisionOptions field is out of range.
	ErrInvalidProvisionOptions = errors.New("invalid provision options")
	// ErrStart: the embedded server could not be started (a port already in
	// use, an unusable store directory, a start timeout, ...).
	ErrStart = errors.New("broker failed to start")
	// ErrAlreadyStarted: Start or Run was called on a Broker that was already
	// started (or shut down). A Broker runs once: make a new one with New.
	ErrAlreadyStarted = errors.New("broker already started")
	// ErrStopped: the embedded server stopped on its own while Run was
	// waiting for its context to be cancelled.
	ErrStopped = errors.New("broker stopped unexpectedly")
	// ErrInvalidSite: the settings of a branch site (Config.Hub,
	// Config.LeafListen, Config.Domain) are incomplete or inconsistent.
	ErrInvalidSite = errors.New("invalid site config")
	// ErrSiteAuth: an authenticated site broker lacks what its leaf
	// connection authenticates with (Config.Hub.Credentials) or its
	// services run as, or cannot read it, or it is not this site's.
	ErrSiteAuth = errors.New("site authentication")
	// ErrProvision: a stream or bucket could not be created or updated.
	ErrProvision = errors.New("provisioning failed")
)
