package site

import "errors"

// Sentinel errors.
var (
	// ErrInvalidConfig: a Config field is missing or invalid.
	ErrInvalidConfig = errors.New("invalid site config")
	// ErrLink: the hub's streams could not be set to source the site's.
	ErrLink = errors.New("linking the site to the hub failed")
	// ErrCache: a package could not be copied from the hub to the site.
	ErrCache = errors.New("caching a package at the site failed")
)
