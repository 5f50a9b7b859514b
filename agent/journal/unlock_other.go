//go:build !unix

package journal

import "os"

// unlockFile does nothing where bbolt's lock is tied to the file handle
// (Windows): closing the handle releases it.
func unlockFile(*os.File) {}
