package controller

import "errors"

// ErrInvalidConfig: a Config field is wrong.
var ErrInvalidConfig = errors.New("invalid controller configuration")
