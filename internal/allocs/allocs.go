// Package allocs measures what a call allocates, for tests that bound the
// memory a decoder spends on a small input.
package allocs

import "runtime"

// Bytes returns the bytes f allocates on the Go heap. Two collections
// first empty the sync.Pools (and their victim caches) that f could
// otherwise take an earlier call's buffers from.
func Bytes(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}
