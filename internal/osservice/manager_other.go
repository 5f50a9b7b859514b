//go:build !linux && !darwin && !windows

package osservice

import (
	"fmt"
	"runtime"
)

func newManager() (Manager, error) {
	return nil, fmt.Errorf("%w: pcm installs services on Linux (systemd), macOS (launchd) and Windows, not on %s: run pcm from your init system", ErrNoServiceManager, runtime.GOOS)
}
