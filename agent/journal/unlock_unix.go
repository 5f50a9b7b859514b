//go:build unix

package journal

import (
	"os"
	"syscall"
)

// unlockFile releases bbolt's flock on f. Closing f is not enough after
// bbolt panicked inside Open: its memory mapping of the file, which cannot be
// unmapped from outside, keeps the open file and so the lock alive.
func unlockFile(f *os.File) {
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
}
