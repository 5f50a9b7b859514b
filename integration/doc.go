// Package integration holds pcm's end-to-end tests: real embedded brokers
// (see testenv), real agents, real processes and the built pcm binary.
package integration
