package replica

// CachedViewBytes reports the bytes of the views the cache keeps (their
// compressed JSON), for the cache's benchmarks.
func (r *Replica) CachedViewBytes() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for e := r.cache.order.Front(); e != nil; e = e.Next() {
		if v := e.Value.(*entry).view; v != nil {
			n += len(v.data)
		}
	}
	return n
}

// ChartsLoaded reports how many charts the replica has loaded from its
// store since it was made.
func (r *Replica) ChartsLoaded() int64 { return r.loads.Load() }
