//go:build !(linux && cgo)

package crdt

// mallocFree reports that malloc's free memory cannot be known here.
func mallocFree() int64 { return -1 }

// trimMalloc does nothing where glibc's malloc_trim is not known.
func trimMalloc() {}
