package replica

import "github.com/chartsync/chartsync/crdt"

// CachedCharts reports how many charts the replica holds loaded, for tests
// of the LRU bound and of lazy loading.
func (r *Replica) CachedCharts() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cache.len()
}

// SetAfterPlan has f called with a bundle's sender each time a bundle is
// planned without the write lock, before its commit takes the lock.
func (r *Replica) SetAfterPlan(f func(from string)) { r.afterPlan = f }

// ResidentBytes is the process's resident set, as a receive reads it (0
// where it is not read).
func ResidentBytes() int64 { return residentBytes() }

// CheckersMade reports how many record.Checkers receiving has made (each
// reads its chart whole).
func (r *Replica) CheckersMade() int64 { return r.checkersMade.Load() }

// ChartsCopied reports how many cached charts receiving has copied (each
// copy costs Automerge the chart's whole history).
func (r *Replica) ChartsCopied() int64 { return r.chartsCopied.Load() }

// ProofSignature returns the signature a stored batch signature's proof
// carries; false if sig is no proof.
func ProofSignature(sig []byte) ([]byte, bool) {
	p, ok := parseProof(sig)
	return p.sig, ok
}

// VerifyStored checks a stored signature field that is a signature or a
// batch signature's proof, as a recipient of the change checks it.
func VerifyStored(keys Keys, actor, chart string, h crdt.Hash, sig []byte) (string, error) {
	v := &verifier{r: &Replica{cfg: Config{Keys: keys}}}
	return v.check(actor, chart, h, sig)
}

// ReceiveSlots reports how many bundles with changes this process
// receives at once, and how many of those slots are taken now.
func ReceiveSlots() (size, taken int) { return cap(receiveSlots), len(receiveSlots) }
