package crdt

// StartTrimCount has the next look at malloc's free memory come with the
// next bytes freed and take malloc's free memory now as its least, so
// that a test knows when the next trim comes, and returns how many trims
// were made so far.
func StartTrimCount() int64 {
	trim.mu.Lock()
	defer trim.mu.Unlock()
	trim.freed.Store(checkEvery)
	trim.least = mallocFree()
	return trim.trims
}
