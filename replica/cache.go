package replica

import (
	"container/list"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/record"
)

// loaded is a chart held in memory.
type loaded struct {
	id    string
	doc   *crdt.Doc
	chart *record.Chart // nil while the chart's first change has not arrived
	users *record.Users // set instead of chart for a clinic's user roster
	// sinceSnapshot counts changes applied on top of the stored snapshot.
	sinceSnapshot int
	// scope is the chart's scope as last indexed; a clinic that joins it
	// gets a store.Grant.
	scope []string
	// row is the heads of the chart's index entry as this replica last
	// read or wrote it (nil: it had none), which a write to a shared
	// store expects to find (Config.SharedStore).
	row crdt.Heads
	// released: the chart's document was let go once a receive planned
	// it (see heldChart.release); it must not be cached.
	released bool
}

// lru keeps at most max charts loaded. It is not safe for concurrent use.
//
// The cache owns the documents of the charts it holds: a chart evicted,
// removed or replaced by another copy has its document closed (its
// Automerge memory released at once), but only when release is called,
// which the replica does as it gives up its write lock. Code holding the
// lock may therefore keep using a chart it read from the cache even if a
// later read in the same call evicts it; code without the lock never
// holds a cached chart (it works on forks).
type lru struct {
	max   int
	order *list.List // front is most recent; values are *loaded
	byID  map[string]*list.Element
	// dropped are the documents to close at the next release.
	dropped []*crdt.Doc
	// closed counts the documents closed.
	closed int
}

func newLRU(max int) *lru {
	return &lru{max: max, order: list.New(), byID: map[string]*list.Element{}}
}

func (c *lru) get(id string) *loaded {
	e, ok := c.byID[id]
	if !ok {
		return nil
	}
	c.order.MoveToFront(e)
	return e.Value.(*loaded)
}

// put caches l, in place of any other copy of the chart, and evicts the
// least recently used charts beyond max.
func (c *lru) put(l *loaded) {
	if e, ok := c.byID[l.id]; ok {
		c.drop(e.Value.(*loaded), l)
		e.Value = l
		c.order.MoveToFront(e)
		return
	}
	c.byID[l.id] = c.order.PushFront(l)
	for c.order.Len() > c.max {
		last := c.order.Back()
		c.order.Remove(last)
		old := last.Value.(*loaded)
		delete(c.byID, old.id)
		c.drop(old, nil)
	}
}

func (c *lru) remove(id string) {
	if e, ok := c.byID[id]; ok {
		c.order.Remove(e)
		delete(c.byID, id)
		c.drop(e.Value.(*loaded), nil)
	}
}

// clear evicts every chart.
func (c *lru) clear() {
	for e := c.order.Front(); e != nil; e = e.Next() {
		c.drop(e.Value.(*loaded), nil)
	}
	c.order.Init()
	clear(c.byID)
}

// drop queues old's document for closing, unless next (the copy that
// replaces it, or nil) still uses it.
func (c *lru) drop(old, next *loaded) {
	if old == next || old.doc == nil || (next != nil && next.doc == old.doc) {
		return
	}
	c.dropped = append(c.dropped, old.doc)
}

// release closes the documents of the charts evicted, removed or
// replaced since it was last called. The replica calls it as it gives up
// its write lock (see Replica.lock).
func (c *lru) release() {
	for _, d := range c.dropped {
		_ = d.Close()
	}
	c.closed += len(c.dropped)
	clear(c.dropped)
	c.dropped = c.dropped[:0]
}

func (c *lru) len() int { return c.order.Len() }
