package replica

// CachedCharts reports how many charts the replica holds loaded, for tests
// of the LRU bound and of lazy loading.
func (r *Replica) CachedCharts() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cache.len()
}
