//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package audit

import "os"

// lockFile does nothing where flock is not available: the caller must not
// open one log twice.
func lockFile(*os.File) error { return nil }
