package record

import (
	"fmt"
	"maps"
	"slices"

	"github.com/chartsync/chartsync/crdt"
)

// Checker judges a run of received changes to one chart, in causal order,
// as CheckChange judges each change on the chart holding the changes
// checked before it. It keeps what it learns of the chart (writes, entry
// kinds, scope, the chart's objects and its notes' characters) from
// change to change, so judging a change that follows everything checked
// so far costs in proportion to the change, not to the chart. A Checker
// is not safe for concurrent use.
type Checker struct {
	// doc is the chart as given to NewChecker, plus every change
	// accepted since except those queued, which are applied to it when
	// it is next read. The queue is a copy of the changes' bytes, one
	// after another in blocks, with their hashes: the Checker keeps
	// neither the buffers the changes were handed in (a bundle's) nor
	// what their bytes decode to, and a long run of changes costs its
	// bytes, not twice as much as a buffer grown by doubling would.
	// heads are the heads of doc and the queue.
	//
	// A resting Checker (Rest) has no doc of its own and nothing
	// queued: src, the chart it was given by Resume, holds what it
	// holds, and doc is copied from src only when a change needs it.
	doc    *crdt.Doc
	src    *crdt.Doc
	queue  []queuedBlock
	queued map[crdt.Hash]bool
	heads  crdt.Heads
	mode   checkerMode

	// What the fast path knows of the chart, valid in modeReady.
	st        *state
	idx       *crdt.OpIndex
	seqs      map[string]uint64    // changes held, by actor
	wObj      crdt.OpID            // the map of writes
	notesObj  crdt.OpID            // the map of notes
	wKeys     map[string]struct{}  // the keys the map of writes shows
	notes     map[string]crdt.OpID // the keys the map of notes shows: the note's text, or zero if the key shows anything but one text this Checker follows
	texts     map[crdt.OpID]*noteText
	referrals map[string]*entry // the referral entries
	scope     []string          // the chart's scope, if scopeOK
	scopeOK   bool

	nfast, nslow int // changes judged each way, for tests
	closed       bool
}

// queuedBlock holds changes a Checker accepted and has not applied to
// its copy of the chart: their bytes, concatenated, and their hashes.
type queuedBlock struct {
	raw    []byte
	hashes []crdt.Hash
}

// queueBlockBytes is the largest block of queued changes (a larger
// change has a block of its own); the first block is
// queueFirstBlockBytes and each next one twice as large as the last, up
// to queueBlockBytes: a replica keeps a Checker for each chart a bundle
// brings, most with a few changes of a kilobyte.
const (
	queueFirstBlockBytes = 4 << 10
	queueBlockBytes      = 256 << 10
)

// noteText is the text of an encounter's note, character by character:
// every element ever inserted (a string, by the operation that inserted
// it), whether it is still shown, and its length in bytes.
type noteText struct {
	encounter string
	elems     map[crdt.OpID]noteElem
}

type noteElem struct {
	n       int
	visible bool
}

type checkerMode int

const (
	// modeStale: what the Checker knows must be read again from doc
	// before the next change judged without CheckChange.
	modeStale checkerMode = iota
	// modeReady: what the Checker knows is the chart's.
	modeReady
	// modeNotChart: doc holds no chart (yet); every change goes to
	// CheckChange until one is accepted.
	modeNotChart
	// modeIrregular: doc's layout is not one this Checker reads (a
	// second registration, say); every change goes to CheckChange.
	modeIrregular
)

// NewChecker returns a Checker for the chart doc holds (doc may hold
// nothing yet, or be any document: CheckChange's errors then apply). doc
// is not modified, and later changes to it are not seen: the Checker
// works on its own copy of doc's applied changes (held changes, whose
// dependencies are missing, are not copied). NewChecker reads the whole
// chart once.
func NewChecker(doc *crdt.Doc) (*Checker, error) {
	var (
		held *crdt.Doc
		err  error
	)
	switch heads := doc.Heads(); {
	case len(heads) == 0:
		held, err = crdt.New(crdt.NewActorID())
	case len(doc.Pending()) == 0:
		held, err = doc.Fork(nil, crdt.NewActorID()) // a copy, much cheaper than a fork at heads
	default:
		held, err = doc.Fork(heads, crdt.NewActorID()) // without the held changes
	}
	if err != nil {
		return nil, fmt.Errorf("new checker: %w", err)
	}
	c := &Checker{doc: held, heads: held.Heads(), queued: map[crdt.Hash]bool{}}
	c.rebuild()
	return c, nil
}

// NewCheckerOn is NewChecker for a chart its caller goes on holding (a
// replica's own copy of a chart, while it receives changes to it): the
// Checker reads doc where it is instead of copying it first, as a
// Checker given doc by Resume does, and copies it only when a change
// needs that (one judged by CheckChange, or one whose notes' texts must
// be read again once it is applied). doc must stay open, changed only by
// changes the Checker accepted, until the Checker rests or is closed;
// the Checker does not modify it. A doc holding changes held for their
// dependencies, or nothing, is copied at once, as NewChecker does.
func NewCheckerOn(doc *crdt.Doc) (*Checker, error) {
	if len(doc.Heads()) == 0 || len(doc.Pending()) > 0 {
		return NewChecker(doc)
	}
	c := &Checker{src: doc, heads: doc.Heads(), queued: map[crdt.Hash]bool{}}
	c.rebuild()
	return c, nil
}

// Close releases the Checker's copy of the chart (its Automerge memory, at
// once rather than by a finalizer). A chart that adopted the Checker's
// state (Chart.Adopt) keeps it; the Checker must not be used afterwards.
func (c *Checker) Close() error {
	c.closed = true
	c.queue, c.queued, c.src = nil, nil, nil
	if c.doc == nil {
		return nil
	}
	return c.doc.Close()
}

// Rest lets go of the Checker's copy of the chart and of the changes it
// queued for it, for a Checker kept between runs of changes to a chart
// its caller holds (a replica's, between the bundles of a long history):
// doc must hold exactly what the Checker holds (its heads, and no change
// held for its dependencies), or Rest does nothing and reports false. A
// resting Checker keeps what it knows of the chart, and must be given
// the chart again by Resume before it judges another change. doc is not
// kept.
func (c *Checker) Rest(doc *crdt.Doc) bool {
	if c.closed || len(doc.Pending()) > 0 || !doc.Heads().Equal(c.heads) {
		return false
	}
	if c.doc != nil {
		_ = c.doc.Close()
	}
	c.doc, c.src, c.queue, c.queued = nil, nil, nil, map[crdt.Hash]bool{}
	return true
}

// Resume gives a resting Checker the chart to judge changes on: doc must
// hold exactly what the Checker holds (its heads, and no change held for
// its dependencies), or Resume reports false and the Checker cannot be
// used. The Checker copies its own document from doc only if a change
// needs it, so doc must stay open, changed only by changes the Checker
// accepted, until the Checker rests again or is closed; the Checker does
// not modify it. A Checker that is not resting ignores doc and reports
// true.
func (c *Checker) Resume(doc *crdt.Doc) bool {
	switch {
	case c.closed:
		return false
	case c.doc != nil:
		return true
	case len(doc.Pending()) > 0 || !doc.Heads().Equal(c.heads):
		return false
	}
	c.src = doc
	return true
}

// document makes sure the Checker has its own copy of the chart, copying
// it from the chart Resume gave if it rests.
func (c *Checker) document() error {
	if c.doc != nil {
		return nil
	}
	if c.src == nil {
		return fmt.Errorf("checker: resting, and not given the chart again")
	}
	var (
		held *crdt.Doc
		err  error
	)
	if len(c.src.Pending()) == 0 {
		held, err = c.src.Fork(nil, crdt.NewActorID()) // a copy, much cheaper than a fork at heads
	} else {
		held, err = c.src.Fork(c.src.Heads(), crdt.NewActorID()) // without the held changes
	}
	if err != nil {
		return fmt.Errorf("checker: copy the chart: %w", err)
	}
	c.doc, c.src = held, nil
	return nil
}

// has reports whether the Checker's copy of the chart (or the chart it
// rests on) holds the change with hash h.
func (c *Checker) has(h crdt.Hash) bool {
	if c.doc == nil {
		return c.src != nil && c.src.Has(h)
	}
	return c.doc.Has(h)
}

// Check judges ch as CheckChange(d, ch) would, where d is the document
// given to NewChecker plus every change Check has accepted since: same
// Touched, same errors. When it accepts ch, ch counts as held for later
// Checks (as in d); when it refuses ch, nothing changes.
//
// A change whose dependencies include every head of what the Checker
// holds (the usual run of changes from one device) is judged from the
// change's decoded operations and the chart the Checker keeps, at the
// change's cost; one it cannot judge so (a concurrent branch, a chart's
// first change, an unusual operation or encoding, or one it would
// refuse) is judged by CheckChange, whose cost grows with the chart.
func (c *Checker) Check(ch crdt.Change) (Touched, error) {
	if c.closed {
		return Touched{}, fmt.Errorf("check change %s: the checker is closed", ch.Hash)
	}
	if c.follows(ch) {
		if c.mode == modeStale {
			c.rebuild()
		}
		if c.mode == modeReady {
			if t, ok := c.fast(ch); ok {
				c.nfast++
				return t, nil
			}
		}
	}
	return c.slow(ch)
}

// follows reports whether ch's dependencies are held and include every
// head held: whether ch was made on everything the Checker holds.
func (c *Checker) follows(ch crdt.Change) bool {
	if len(ch.Deps) == 0 || len(c.heads) == 0 {
		return false
	}
	for _, h := range c.heads {
		if !slices.Contains(ch.Deps, h) {
			return false
		}
	}
	for _, d := range ch.Deps {
		if !slices.Contains(c.heads, d) && !c.queued[d] && !c.has(d) {
			return false
		}
	}
	return true
}

// flush applies the queued changes to doc.
func (c *Checker) flush() error {
	c.dropHeld()
	if err := c.document(); err != nil {
		c.mode = modeIrregular
		return err
	}
	if len(c.queue) == 0 {
		return nil
	}
	// ApplyStored copies each change's bytes out of the queue. The
	// blocks are in the order the changes were accepted, so each
	// block's dependencies are applied before it.
	for len(c.queue) > 0 {
		b := c.queue[0]
		if err := c.doc.ApplyStored(b.raw, b.hashes); err != nil {
			// Every queued change was checked to be one Automerge applies.
			c.mode = modeIrregular
			return fmt.Errorf("checker: apply the changes accepted before: %w", err)
		}
		c.queue = c.queue[1:]
	}
	c.queue, c.queued = nil, map[crdt.Hash]bool{}
	return nil
}

// dropHeld reports whether the Checker rests on a chart that holds just
// what the Checker holds (its holder applied every change it queued, as
// a receive applies each run of changes the Checker accepted), and then
// forgets the queue: reading that chart, or copying it, needs none of it.
func (c *Checker) dropHeld() bool {
	if c.doc != nil || c.src == nil || !c.src.Heads().Equal(c.heads) {
		return false
	}
	if len(c.queue) > 0 {
		c.queue, c.queued = nil, map[crdt.Hash]bool{}
	}
	return true
}

// reading returns the chart as the Checker holds it, to read: the chart
// it rests on if that holds just what the Checker holds, else its own
// copy, with the queued changes applied.
func (c *Checker) reading() (*crdt.Doc, error) {
	if c.dropHeld() {
		return c.src, nil
	}
	if err := c.flush(); err != nil {
		return nil, err
	}
	return c.doc, nil
}

// enqueue queues ch, accepted, to be applied to doc when it is next read.
func (c *Checker) enqueue(ch crdt.Change) {
	n := len(c.queue)
	if n == 0 || len(c.queue[n-1].raw)+len(ch.Raw) > cap(c.queue[n-1].raw) {
		size := queueFirstBlockBytes
		if n > 0 {
			size = min(2*cap(c.queue[n-1].raw), queueBlockBytes)
		}
		c.queue = append(c.queue, queuedBlock{raw: make([]byte, 0, max(size, len(ch.Raw)))})
		n++
	}
	b := &c.queue[n-1]
	b.raw = append(b.raw, ch.Raw...)
	b.hashes = append(b.hashes, ch.Hash)
	c.queued[ch.Hash] = true
}

// slow judges ch with CheckChange and, if it is accepted, applies it.
func (c *Checker) slow(ch crdt.Change) (Touched, error) {
	c.nslow++
	if err := c.flush(); err != nil {
		return Touched{}, fmt.Errorf("check change %s: %w", ch.Hash, err)
	}
	t, err := CheckChange(c.doc, ch)
	if err != nil {
		return t, err
	}
	applied, err := c.doc.Apply(ch)
	if err != nil {
		c.mode = modeStale
		return t, fmt.Errorf("check change %s: %w", ch.Hash, err)
	}
	if !slices.Contains(applied, ch.Hash) {
		return t, nil // held already
	}
	c.heads = c.doc.Heads()
	switch c.mode {
	case modeReady:
		if !c.absorb(ch) {
			c.mode = modeStale
		}
	case modeNotChart:
		c.mode = modeStale
	}
	return t, nil
}

// edits are the operations of a change the fast path understands: new
// writes (by key, with their JSON), new note texts, and edits of notes'
// texts.
type edits struct {
	writes   map[string]string // key in the map of writes → JSON
	newTexts map[crdt.OpID]string
	textOps  map[crdt.OpID][]*crdt.Op // by text, in order
}

// classify sorts a change's operations into edits, and reports false if
// any is not one this package makes on c's chart: a new key of the map
// of writes set to a string, a new key of the map of notes made a text,
// and in a note's text insertions of strings after one of its characters
// (or at its head) and deletions of one of its characters.
func (c *Checker) classify(info *crdt.ChangeInfo) (edits, bool) {
	e := edits{writes: map[string]string{}, newTexts: map[crdt.OpID]string{}, textOps: map[crdt.OpID][]*crdt.Op{}}
	newNotes := map[string]bool{}
	inserted := map[crdt.OpID]crdt.OpID{} // characters the change inserts → their text
	for i := range info.Ops {
		op := &info.Ops[i]
		switch op.Obj {
		case c.wObj:
			k := op.Key.Prop
			if op.Action != crdt.ActionSet || op.Insert || op.Key.IsElem || len(op.Pred) > 0 || op.Value.Type != crdt.ValueString {
				return e, false
			}
			if _, ok := c.wKeys[k]; ok {
				return e, false
			}
			if _, ok := e.writes[k]; ok {
				return e, false
			}
			e.writes[k] = op.Value.Str
		case c.notesObj:
			k := op.Key.Prop
			if op.Action != crdt.ActionMakeText || op.Insert || op.Key.IsElem || len(op.Pred) > 0 {
				return e, false
			}
			if _, ok := c.notes[k]; ok || newNotes[k] {
				return e, false
			}
			newNotes[k] = true
			e.newTexts[op.ID] = k
		default:
			nt := c.texts[op.Obj]
			if _, made := e.newTexts[op.Obj]; nt == nil && !made {
				return e, false
			}
			// The character an operation names must be this text's.
			ofText := func(id crdt.OpID) bool {
				if t, ok := inserted[id]; ok {
					return t == op.Obj
				}
				_, ok := nt.elem(id)
				return ok
			}
			switch {
			case op.Insert && op.Action == crdt.ActionSet && op.Value.Type == crdt.ValueString &&
				op.Key.IsElem && len(op.Pred) == 0 && (op.Key.IsHead() || ofText(op.Key.Elem)):
				inserted[op.ID] = op.Obj
			case !op.Insert && op.Action == crdt.ActionDelete && op.Key.IsElem && !op.Key.IsHead() &&
				len(op.Pred) == 1 && op.Pred[0] == op.Key.Elem && ofText(op.Key.Elem):
			default:
				return e, false
			}
			e.textOps[op.Obj] = append(e.textOps[op.Obj], op)
		}
	}
	return e, true
}

func (nt *noteText) elem(id crdt.OpID) (noteElem, bool) {
	if nt == nil {
		return noteElem{}, false
	}
	x, ok := nt.elems[id]
	return x, ok
}

// noteChanges works out, from the characters a change inserts into and
// deletes from each note, whether the note's text changes: by encounter,
// true if it does. decided is false when it cannot tell (as many bytes
// removed as inserted), and the text must be read before and after.
func (c *Checker) noteChanges(e edits) (changed map[string]bool, decided bool) {
	changed = map[string]bool{}
	for obj, ops := range e.textOps {
		nt := c.texts[obj]
		enc := e.newTexts[obj]
		if nt != nil {
			enc = nt.encounter
		}
		ins := map[crdt.OpID]int{}
		removed := map[crdt.OpID]bool{}
		insBytes, delBytes := 0, 0
		for _, op := range ops {
			if op.Insert {
				ins[op.ID] = len(op.Value.Str)
				continue
			}
			target := op.Key.Elem
			if _, ok := ins[target]; ok {
				delete(ins, target) // inserted and deleted by the change
				continue
			}
			if x, ok := nt.elem(target); ok && x.visible && !removed[target] {
				removed[target] = true
				delBytes += x.n
			}
		}
		for _, n := range ins {
			insBytes += n
		}
		switch {
		case insBytes != delBytes:
			changed[enc] = true
		case insBytes > 0:
			return nil, false
		}
	}
	return changed, true // notes not in changed keep their text
}

// fast judges a change made on everything the Checker holds from its
// operations, and accepts it if it can tell CheckChange would. It
// reports false, having changed nothing, for a change it does not accept
// or cannot judge so: CheckChange then decides.
func (c *Checker) fast(ch crdt.Change) (Touched, bool) {
	msg, err := parseMessage(ch.Message)
	if err != nil {
		return Touched{}, false
	}
	t := Touched{Author: Author{UserID: msg.User, Name: msg.Name, Role: msg.Role, Device: msg.Device}}
	if t.Author.Validate() != nil {
		return Touched{}, false
	}
	// What Automerge applies for sure: bytes as Automerge itself writes
	// them (it writes every change so; Judge checks it, once for the
	// change wherever it is used), and a sequence number it has not seen
	// from the actor (it refuses another change numbered so).
	info, err := crdt.Judge(&ch)
	if err != nil || info.Message != ch.Message {
		return Touched{}, false
	}
	if c.seqs[info.Actor] >= info.Seq {
		return Touched{}, false
	}
	if c.idx.CheckRefs(info) != nil {
		return Touched{}, false
	}
	e, ok := c.classify(info)
	if !ok {
		return Touched{}, false
	}

	// The rules CheckChange applies, in its order.
	j := newJudge(ch, c.st.chartID, &t, c.kindOf, func(id string) *write { return c.st.byID[id] })
	ws := make([]*write, 0, len(e.writes))
	for _, k := range slices.Sorted(maps.Keys(e.writes)) {
		w, err := j.write(k, e.writes[k])
		if err != nil {
			return Touched{}, false
		}
		ws = append(ws, w)
	}
	notes := map[string]bool{}
	for obj := range e.textOps {
		if nt := c.texts[obj]; nt != nil {
			notes[nt.encounter] = true
		}
	}
	for _, k := range e.newTexts {
		notes[k] = true
	}

	scope := c.currentScope()
	changed, decided := c.noteChanges(e)
	if decided {
		for k, ok := range changed {
			if ok {
				s, ok := j.noteSection(k)
				if !ok {
					return Touched{}, false // refused: a note for something else
				}
				t.Sections = addSection(t.Sections, s)
			}
		}
		if authorize(t.Author.Role, t.Sections) != nil {
			return Touched{}, false
		}
		c.enqueue(ch)
	} else {
		// Whether the notes' texts change is read before and after
		// applying the change; nothing may refuse it once applied.
		sections := make(map[string]Section, len(notes))
		for k := range notes {
			s, ok := j.noteSection(k)
			if !ok || !Permitted(t.Author.Role, s) {
				return Touched{}, false
			}
			sections[k] = s
		}
		if authorize(t.Author.Role, t.Sections) != nil {
			return Touched{}, false
		}
		if c.flush() != nil {
			return Touched{}, false
		}
		before := make(map[string]string, len(notes))
		for k := range notes {
			if _, ok := c.notes[k]; ok {
				before[k] = noteAt(c.doc, k)
			}
		}
		if err := c.doc.ApplyStored(ch.Raw, []crdt.Hash{ch.Hash}); err != nil {
			return Touched{}, false
		}
		for k := range notes {
			if noteAt(c.doc, k) != before[k] {
				t.Sections = addSection(t.Sections, sections[k])
			}
		}
	}
	c.heads = crdt.Heads{ch.Hash}
	t.Scope = scope
	if !c.learn(info, e, ws) {
		c.mode = modeStale
	}
	return t, true
}

// absorb learns an applied change CheckChange accepted (it need not
// follow everything held); false if it cannot, and the Checker must read
// the chart again.
func (c *Checker) absorb(ch crdt.Change) bool {
	info, err := crdt.ChangeOps(ch.Raw)
	if err != nil {
		return false
	}
	e, ok := c.classify(&info)
	if !ok {
		return false
	}
	ws := make([]*write, 0, len(e.writes))
	for k, js := range e.writes {
		w, err := parseWrite(js)
		if err != nil || !knownKind(w.Kind) || w.Entry == "" || w.Field == "" {
			return false
		}
		w.ID = k
		ws = append(ws, w)
	}
	return c.learn(&info, e, ws)
}

// learn records an accepted change's edits; false if the state cannot
// take them (a write that would change an entry's kind).
func (c *Checker) learn(info *crdt.ChangeInfo, e edits, ws []*write) bool {
	c.idx.Add(info)
	c.seqs[info.Actor]++
	for obj, k := range e.newTexts {
		c.notes[k] = obj
		c.texts[obj] = &noteText{encounter: k, elems: map[crdt.OpID]noteElem{}}
	}
	for obj, ops := range e.textOps {
		nt := c.texts[obj]
		for _, op := range ops {
			if op.Insert {
				nt.elems[op.ID] = noteElem{n: len(op.Value.Str), visible: true}
			} else if x, ok := nt.elems[op.Key.Elem]; ok {
				x.visible = false
				nt.elems[op.Key.Elem] = x
			}
		}
	}
	for _, w := range ws {
		c.wKeys[w.ID] = struct{}{}
		if !c.st.add(w) {
			return false
		}
		if x := c.st.entries[w.Entry]; x != nil && x.kind == KindReferral {
			c.referrals[w.Entry] = x
			c.scopeOK = false
		}
		if w.Entry == c.st.chartID && w.Field == "home_clinic" {
			c.scopeOK = false
		}
	}
	return true
}

func (c *Checker) kindOf(entry string) (string, bool) {
	if e := c.st.entries[entry]; e != nil {
		return e.kind, true
	}
	return "", false
}

// currentScope returns the scope of the chart held (a new slice).
func (c *Checker) currentScope() []string {
	if !c.scopeOK {
		c.scope = scopeOf(c.st.patient(), maps.Values(c.referrals))
		c.scopeOK = true
	}
	return slices.Clone(c.scope)
}

// rebuild reads what the fast path needs from the whole chart held.
func (c *Checker) rebuild() {
	c.st, c.idx, c.seqs, c.wKeys, c.notes, c.texts, c.referrals, c.scope, c.scopeOK = nil, nil, nil, nil, nil, nil, nil, nil, false
	d, err := c.reading()
	if err != nil {
		c.mode = modeIrregular
		return
	}
	c.mode = c.read(d)
}

// read reads what the fast path needs from d, the chart as the Checker
// holds it.
func (c *Checker) read(d *crdt.Doc) checkerMode {
	if len(c.heads) == 0 {
		return modeNotChart
	}
	if _, err := Open(d); err != nil {
		return modeNotChart
	}
	id, err := d.String(pathChart, "id")
	if err != nil {
		return modeIrregular
	}
	raw, err := d.Strings(pathW...)
	if err != nil {
		return modeIrregular
	}
	st := stateFrom(id, raw)
	chs, err := d.Changes(nil)
	if err != nil {
		return modeIrregular
	}

	// Every operation on the root map and on the maps made at its keys,
	// to find the chart's objects and what their keys show; and every
	// operation on the texts made in the map of notes.
	type liveOp struct {
		id     crdt.OpID
		action crdt.Action
		str    bool // a string value
	}
	live := map[crdt.OpID]map[string][]liveOp{crdt.Root: {}}
	notesMaps := map[crdt.OpID]bool{}
	texts := map[crdt.OpID]*noteText{}
	odd := map[crdt.OpID]bool{} // texts changed otherwise than by inserting and deleting characters
	idx := crdt.NewOpIndex()
	seqs := map[string]uint64{}
	for _, ch := range chs {
		info, err := crdt.ChangeOps(ch.Raw)
		if err != nil {
			return modeIrregular
		}
		idx.Add(&info)
		seqs[info.Actor]++
		for i := range info.Ops {
			op := &info.Ops[i]
			if nt := texts[op.Obj]; nt != nil {
				switch _, known := nt.elems[op.Key.Elem]; {
				case op.Insert && op.Action == crdt.ActionSet && op.Value.Type == crdt.ValueString && len(op.Pred) == 0 &&
					op.Key.IsElem && (op.Key.IsHead() || known):
					nt.elems[op.ID] = noteElem{n: len(op.Value.Str), visible: true}
				case !op.Insert && op.Action == crdt.ActionDelete && op.Key.IsElem && len(op.Pred) == 1 && op.Pred[0] == op.Key.Elem && known:
					x := nt.elems[op.Key.Elem]
					x.visible = false
					nt.elems[op.Key.Elem] = x
				default:
					odd[op.Obj] = true
				}
				continue
			}
			keys, tracked := live[op.Obj]
			if !tracked {
				continue
			}
			if op.Key.IsElem || op.Insert || op.Action == crdt.ActionIncrement || op.Action == crdt.ActionMark {
				return modeIrregular
			}
			k := op.Key.Prop
			keys[k] = slices.DeleteFunc(keys[k], func(l liveOp) bool { return slices.Contains(op.Pred, l.id) })
			if op.Action != crdt.ActionDelete {
				keys[k] = append(keys[k], liveOp{op.ID, op.Action, op.Value.Type == crdt.ValueString})
			}
			switch {
			case op.Obj == crdt.Root && op.Action == crdt.ActionMakeMap && (k == "chart" || k == "w" || k == "notes"):
				live[op.ID] = map[string][]liveOp{}
				if k == "notes" {
					notesMaps[op.ID] = true
				}
			case notesMaps[op.Obj] && op.Action == crdt.ActionMakeText:
				texts[op.ID] = &noteText{encounter: k, elems: map[crdt.OpID]noteElem{}}
			}
		}
	}
	only := func(ops []liveOp, a crdt.Action) (crdt.OpID, bool) {
		if len(ops) != 1 || ops[0].action != a {
			return crdt.OpID{}, false
		}
		return ops[0].id, true
	}
	root := live[crdt.Root]
	wObj, okW := only(root["w"], crdt.ActionMakeMap)
	notesObj, okN := only(root["notes"], crdt.ActionMakeMap)
	if _, okC := only(root["chart"], crdt.ActionMakeMap); !okW || !okN || !okC {
		return modeIrregular
	}
	// Automerge must show the keys this reading finds.
	shown := func(keys map[string][]liveOp) []string {
		var out []string
		for k, ops := range keys {
			if len(ops) > 0 {
				out = append(out, k)
			}
		}
		slices.Sort(out)
		return out
	}
	for _, p := range [][]string{nil, pathNotes} {
		keys, err := d.Keys(p...)
		if err != nil {
			return modeIrregular
		}
		slices.Sort(keys)
		obj := crdt.Root
		if p != nil {
			obj = notesObj
		}
		if !slices.Equal(keys, shown(live[obj])) {
			return modeIrregular
		}
	}
	// The map of writes shows one string at every key, those Automerge
	// reads (raw).
	n := 0
	for k, ops := range live[wObj] {
		if len(ops) == 0 {
			continue
		}
		if _, ok := raw[k]; !ok || len(ops) != 1 || ops[0].action != crdt.ActionSet || !ops[0].str {
			return modeIrregular
		}
		n++
	}
	if n != len(raw) {
		return modeIrregular
	}

	c.wObj, c.notesObj = wObj, notesObj
	c.wKeys = make(map[string]struct{}, len(raw))
	for k := range raw {
		c.wKeys[k] = struct{}{}
	}
	c.notes, c.texts = map[string]crdt.OpID{}, map[crdt.OpID]*noteText{}
	for k, ops := range live[notesObj] {
		if len(ops) == 0 {
			continue
		}
		text, ok := only(ops, crdt.ActionMakeText)
		if !ok || odd[text] || texts[text] == nil {
			c.notes[k] = crdt.OpID{} // shown, but not a text this Checker follows
			continue
		}
		c.notes[k] = text
		c.texts[text] = texts[text]
	}
	st.indexWrites()
	c.referrals = map[string]*entry{}
	for id, e := range st.entries {
		if e.kind == KindReferral {
			c.referrals[id] = e
		}
	}
	c.st, c.idx, c.seqs = st, idx, seqs
	return modeReady
}

// Adopt gives c the state k keeps of the same version of the chart (the
// same heads), so that reading c does not parse the whole chart again. It
// reports whether it did: only when k judged the chart's last changes
// itself, and holds exactly c's heads. k must not be used afterwards (c
// owns the state from then on).
func (c *Chart) Adopt(k *Checker) bool { return c.adopt(k, false) }

// AdoptCopy is Adopt for a Checker that goes on judging changes to the
// chart (the rest of a long history, in the sender's next bundle): c gets
// a copy of k's state, at a cost that follows the chart's entries and
// writes but reads nothing of its document, and k stays as it was.
func (c *Chart) AdoptCopy(k *Checker) bool { return c.adopt(k, true) }

func (c *Chart) adopt(k *Checker, keep bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if k.closed || k.mode != modeReady || k.st == nil || k.st.chartID != c.id {
		return false
	}
	heads := c.doc.Heads()
	if !k.heads.Equal(heads) {
		return false
	}
	if keep {
		c.st, c.heads = k.st.clone(), heads
		return true
	}
	c.st, c.heads = k.st, heads
	k.st, k.mode = nil, modeStale
	return true
}

// Heads returns the heads of the chart as the Checker holds it: the
// document given to NewChecker and every change it accepted since.
func (c *Checker) Heads() crdt.Heads { return slices.Clone(c.heads) }
