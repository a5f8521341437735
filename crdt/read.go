package crdt

import "github.com/chartsync/chartsync/third_party/automerge-go"

// reads holds the Automerge values one read has taken from a document, so
// that their C memory is released as soon as the read is done with them.
// Left to automerge-go, each would be freed by a finalizer only after a
// garbage collection, which the Go heap alone paces: a process that reads
// many charts (a device receiving a sync, a cloud serving many) holds
// hundreds of megabytes of finished reads that way (see the package doc).
// The zero value is ready; a nil *reads keeps nothing (the value is left
// to its finalizer).
type reads struct {
	vals []*automerge.Value
}

// keep notes v for release and returns it.
func (r *reads) keep(v *automerge.Value) *automerge.Value {
	if r != nil {
		r.vals = append(r.vals, v)
	}
	return v
}

// keepAll notes the values of one Map.Values call for release: they share
// one result, so one of them stands for all.
func (r *reads) keepAll(vals map[string]*automerge.Value) {
	for _, v := range vals {
		r.keep(v)
		return
	}
}

// release frees everything kept. Nothing read through the kept values
// but copies (strings, keys) may be used afterwards.
func (r *reads) release() {
	for _, v := range r.vals {
		v.Free()
	}
	r.vals = nil
}
