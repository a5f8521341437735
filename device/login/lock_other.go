//go:build !unix

package login

import "os"

// On systems without flock, only one process may use a state file.
func flock(*os.File) error   { return nil }
func funlock(*os.File) error { return nil }
