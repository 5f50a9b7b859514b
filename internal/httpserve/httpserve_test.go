package httpserve_test

import (
	"testing"

	"github.com/pcm-project/pcm/internal/httpserve"
)

func TestLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:8180": true, "localhost:8180": true, "[::1]:8180": true, "127.0.0.2:1": true,
		":8180": false, "0.0.0.0:8180": false, "[::]:8180": false, "10.0.0.5:8180": false, "example.org:80": false, "8180": false,
	} {
		if got := httpserve.Loopback(addr); got != want {
			t.Errorf("Loopback(%q) = %v, want %v", addr, got, want)
		}
	}
}
