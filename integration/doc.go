// Package integration holds pcm's end-to-end tests: real embedded brokers
// and clusters (package testenv), real agents, real processes and the
// built pcm binary, one suite per feature, and the benchmarks of
// BENCHMARKS.md. It holds no production code and no test helper another
// package needs: those are testenv's.
package integration
