package site

import "errors"

// Sentinel errors.
var (
	// ErrInvalidConfig: a Config field is missing or invalid.
	ErrInvalidConfig = errors.New("invalid site config")
	// ErrLink: the hub's streams could not be set to source the site's.
	ErrLink = errors.New("linking the site to the hub failed")
	// ErrRefused: the hub refuses a forwarded message while it answers
	// the site: the site's account at the hub does not import the
	// message's client (it is no longer enrolled at the site). The
	// forwarder drops such a message (Forwarder.Dropped).
	ErrRefused = errors.New("the hub refuses the site's message")
	// ErrCache: a package could not be copied from the hub to the site.
	ErrCache = errors.New("caching a package at the site failed")
)
