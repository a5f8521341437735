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
	// released: the chart's document was let go once a receive planned
	// it (see heldChart.release); it must not be cached.
	released bool
}

// lru keeps at most max charts loaded. It is not safe for concurrent use.
type lru struct {
	max   int
	order *list.List // front is most recent; values are *loaded
	byID  map[string]*list.Element
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

func (c *lru) put(l *loaded) {
	if e, ok := c.byID[l.id]; ok {
		e.Value = l
		c.order.MoveToFront(e)
		return
	}
	c.byID[l.id] = c.order.PushFront(l)
	for c.order.Len() > c.max {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.byID, last.Value.(*loaded).id)
	}
}

func (c *lru) remove(id string) {
	if e, ok := c.byID[id]; ok {
		c.order.Remove(e)
		delete(c.byID, id)
	}
}

func (c *lru) len() int { return c.order.Len() }
