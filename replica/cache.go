package replica

import (
	"container/list"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/klauspost/compress/zstd"

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

// lru is the replica's cache of charts: at most max of them, least
// recently used evicted first. It is not safe for concurrent use (the
// replica's write lock guards it).
//
// Between calls it keeps no Automerge document of a chart: it keeps the
// chart's view (record.View, as JSON compressed with zstd, about 4 KB for
// a chart of 40 changes where its document costs Automerge hundreds of
// kilobytes) and the heads it was read at, and Replica.Chart answers from
// it while the chart's index entry has those heads. A chart a call loads
// (to write it, receive into it, or read it the first time) is held with
// its document until the call gives up the write lock (release): the
// document is then closed, its Automerge memory released at once, and the
// chart kept as its view if it was viewed (again at its new heads if the
// call changed it), or else forgotten. Two kinds of document stay open
// between calls: those of the openWritten charts most recently changed by
// a call that loaded them (a clinician records a visit as several edits
// of one chart, each of which would otherwise load it again), and a
// clinic's user roster (a replica holds a few, small, and reads them
// often).
//
// Code holding the lock may keep using a chart it read from the cache
// even if a later read in the same call evicts it: a document is closed
// only by release, which the replica calls as it gives up its write lock.
// Code without the lock never holds a cached chart: it works on forks,
// or, as a receive does, takes the chart out of the cache (take) and
// owns its document until it puts it back or closes it.
type lru struct {
	max   int
	order *list.List // front is most recent; values are *entry
	byID  map[string]*list.Element
	// hot are the entries given or read with a document since the last
	// release.
	hot []*entry
	// written are the entries whose document stays open because a call
	// changed it, oldest first (at most openWritten once released).
	written []*entry
	// dropped are the documents to close at the next release.
	dropped []*crdt.Doc
	// closed counts the documents closed.
	closed int
}

// entry is one chart the cache holds: loaded (with its document) while a
// call uses it, and its view, if one was read, at the heads it was read
// at.
type entry struct {
	id   string
	l    *loaded // nil between calls, but for a user roster and openWritten charts
	view *cachedView
	// hot: in lru.hot; heads are its document's heads when it became so.
	hot   bool
	heads crdt.Heads
	// changed: a call put the chart as it changed it (a receive's
	// judged copy), which heads cannot show.
	changed bool
}

// openWritten is how many charts changed by a call keep their document
// open between calls: a loaded chart of 40 changes costs Automerge about
// half a megabyte.
const openWritten = 4

// cachedView is a chart's view as kept between calls.
type cachedView struct {
	heads crdt.Heads
	data  []byte // the record.View as JSON, compressed with zstd
}

func newLRU(max int) *lru {
	return &lru{max: max, order: list.New(), byID: map[string]*list.Element{}}
}

// get returns a chart the cache holds loaded, or nil: nil too for a chart
// it keeps only as a view (see viewOf).
func (c *lru) get(id string) *loaded {
	e, ok := c.byID[id]
	if !ok {
		return nil
	}
	ent := e.Value.(*entry)
	if ent.l == nil {
		return nil
	}
	c.order.MoveToFront(e)
	c.markHot(ent)
	return ent.l
}

// take removes a chart the cache holds loaded and gives it to the caller,
// who owns its document from then on; nil if the chart is not loaded.
// written reports whether its document was one kept open as changed
// (see openWritten), for the caller to put it back so (putChanged). A
// view kept of the chart goes with it.
func (c *lru) take(id string) (l *loaded, written bool) {
	e, ok := c.byID[id]
	if !ok || e.Value.(*entry).l == nil {
		return nil, false
	}
	ent := e.Value.(*entry)
	l = ent.l
	c.order.Remove(e)
	delete(c.byID, id)
	ent.l = nil
	written = slices.Contains(c.written, ent)
	c.written = slices.DeleteFunc(c.written, func(w *entry) bool { return w == ent })
	return l, written
}

// markHot notes that a call uses ent's document, for release.
func (c *lru) markHot(ent *entry) {
	if ent.hot {
		return
	}
	ent.hot, ent.heads = true, ent.l.doc.Heads()
	c.hot = append(c.hot, ent)
}

// viewOf returns the view kept of a chart not loaded now, or nil.
func (c *lru) viewOf(id string) *cachedView {
	e, ok := c.byID[id]
	if !ok {
		return nil
	}
	ent := e.Value.(*entry)
	if ent.l != nil || ent.view == nil {
		return nil
	}
	c.order.MoveToFront(e)
	return ent.view
}

// put caches l, in place of any other copy of the chart. The least
// recently used charts beyond max are evicted by release, once the
// charts loaded meanwhile are kept or forgotten: loading a chart to write
// it does not evict a chart kept as its view.
func (c *lru) put(l *loaded) {
	if l.doc == nil {
		c.remove(l.id)
		return
	}
	if e, ok := c.byID[l.id]; ok {
		ent := e.Value.(*entry)
		c.drop(ent.l, l)
		ent.l = l
		c.markHot(ent)
		c.order.MoveToFront(e)
		return
	}
	ent := &entry{id: l.id, l: l}
	c.byID[l.id] = c.order.PushFront(ent)
	c.markHot(ent)
}

// putChanged caches l, a chart the call changed, as put does; it counts
// as written when the call releases it, as a chart changed in place does.
func (c *lru) putChanged(l *loaded) {
	c.put(l)
	if e, ok := c.byID[l.id]; ok && l.doc != nil {
		e.Value.(*entry).changed = true
	}
}

// keepView keeps v as the view of chart id, which the cache holds loaded
// at v's heads; it is what the chart is kept as once released.
func (c *lru) keepView(id string, v record.View) error {
	e, ok := c.byID[id]
	if !ok {
		return nil
	}
	ent := e.Value.(*entry)
	if ent.l == nil || !ent.l.doc.Heads().Equal(v.Heads) {
		return nil
	}
	cv, err := encodeView(v)
	if err != nil {
		return err
	}
	ent.view = cv
	return nil
}

func (c *lru) remove(id string) {
	if e, ok := c.byID[id]; ok {
		c.order.Remove(e)
		delete(c.byID, id)
		c.drop(e.Value.(*entry).l, nil)
	}
}

// clear evicts every chart.
func (c *lru) clear() {
	for e := c.order.Front(); e != nil; e = e.Next() {
		c.drop(e.Value.(*entry).l, nil)
	}
	c.order.Init()
	clear(c.byID)
}

// drop queues old's document for closing, unless next (the copy that
// replaces it, or nil) still uses it.
func (c *lru) drop(old, next *loaded) {
	if old == nil || old == next || old.doc == nil || (next != nil && next.doc == old.doc) {
		return
	}
	c.dropped = append(c.dropped, old.doc)
}

// release lets go of the documents of the charts used since it was last
// called: each viewed chart is kept as its view (read again if the chart
// changed meanwhile) and the others forgotten, but for the openWritten
// charts most recently changed, whose documents stay open. It then evicts
// the least recently used charts beyond max, and closes the documents let
// go of with those of the charts evicted, removed or replaced meanwhile.
// The replica calls it as it gives up its write lock (see Replica.lock).
func (c *lru) release() {
	for _, ent := range c.hot {
		ent.hot = false
		if !c.holds(ent) || ent.l.users != nil {
			continue // evicted or replaced (its document is queued), or a roster
		}
		changed := ent.changed || !ent.heads.Equal(ent.l.doc.Heads())
		ent.changed = false
		if changed && ent.l.chart != nil && !ent.l.released {
			c.written = slices.DeleteFunc(c.written, func(w *entry) bool { return w == ent })
			c.written = append(c.written, ent)
			continue
		}
		if !slices.Contains(c.written, ent) {
			c.letGo(ent)
		}
	}
	clear(c.hot)
	c.hot = c.hot[:0]
	c.written = slices.DeleteFunc(c.written, func(w *entry) bool { return !c.holds(w) })
	for len(c.written) > openWritten {
		c.letGo(c.written[0])
		c.written = slices.Delete(c.written, 0, 1)
	}
	for c.order.Len() > c.max {
		last := c.order.Back()
		c.order.Remove(last)
		old := last.Value.(*entry)
		delete(c.byID, old.id)
		c.drop(old.l, nil)
	}
	for _, d := range c.dropped {
		_ = d.Close()
	}
	c.closed += len(c.dropped)
	clear(c.dropped)
	c.dropped = c.dropped[:0]
}

// holds reports whether ent is the cache's entry of its chart, with a
// document.
func (c *lru) holds(ent *entry) bool {
	e, ok := c.byID[ent.id]
	return ok && e.Value.(*entry) == ent && ent.l != nil
}

// letGo queues ent's document for closing, keeping the chart as its view
// if it was viewed, else forgetting it.
func (c *lru) letGo(ent *entry) {
	if !ent.settle() {
		if e, ok := c.byID[ent.id]; ok && e.Value.(*entry) == ent {
			c.order.Remove(e)
			delete(c.byID, ent.id)
		}
	}
	c.drop(ent.l, nil)
	ent.l = nil
}

// settle makes ent's view that of its loaded chart, reading it again if
// the chart changed since it was viewed, and reports whether the chart is
// worth keeping as a view: it was viewed, and its view reads.
func (ent *entry) settle() bool {
	l := ent.l
	if ent.view == nil || l.chart == nil || l.released {
		return false
	}
	heads := l.doc.Heads()
	if ent.view.heads.Equal(heads) {
		return true
	}
	ent.view = nil
	if plain, err := unmerged(l); err != nil || !plain {
		return false
	}
	v, err := l.chart.View()
	if err != nil || !v.Heads.Equal(heads) {
		return false
	}
	cv, err := encodeView(v)
	if err != nil {
		return false
	}
	ent.view = cv
	return true
}

func (c *lru) len() int { return c.order.Len() }

// viewCodec compresses the views the cache keeps: JSON shrinks about six
// times (keys and dates recur), and a view is decoded in about the time
// it takes to build from its document.
var viewCodec = sync.OnceValues(func() (*zstd.Encoder, *zstd.Decoder) {
	enc, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(zstd.SpeedFastest),
		zstd.WithEncoderCRC(false), // in memory only
		zstd.WithEncoderConcurrency(1),
		zstd.WithLowerEncoderMem(true),
	)
	if err != nil {
		panic(fmt.Sprintf("replica: view encoder: %v", err)) // fixed options
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderLowmem(true))
	if err != nil {
		panic(fmt.Sprintf("replica: view decoder: %v", err))
	}
	return enc, dec
})

// errCachedView is the error of a kept view that does not decode; the
// chart is then read from the store.
var errCachedView = errors.New("replica: cached view does not decode")

func encodeView(v record.View) (*cachedView, error) {
	js, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("cache view of chart %s: %w", v.ChartID, err)
	}
	enc, _ := viewCodec()
	// Kept for as long as the chart is cached: no spare capacity.
	data := slices.Clone(enc.EncodeAll(js, nil))
	return &cachedView{heads: slices.Clone(v.Heads), data: data}, nil
}

func (cv *cachedView) decode() (record.View, error) {
	_, dec := viewCodec()
	js, err := dec.DecodeAll(cv.data, nil)
	if err != nil {
		return record.View{}, fmt.Errorf("%w: %v", errCachedView, err)
	}
	var v record.View
	if err := json.Unmarshal(js, &v); err != nil {
		return record.View{}, fmt.Errorf("%w: %v", errCachedView, err)
	}
	return v, nil
}
