package record

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"github.com/chartsync/chartsync/crdt"
)

// Checker judges a run of received changes to one chart, in causal order,
// as CheckChange judges each change on the chart holding the changes
// checked before it. It keeps what it learns of the chart (writes, entry
// kinds, scope, the chart's objects) from change to change, so judging a
// change that follows everything checked so far costs in proportion to
// the change, not to the chart. A Checker is not safe for concurrent use.
type Checker struct {
	// doc is the chart as given to NewChecker, plus every change
	// accepted since; heads are its heads.
	doc   *crdt.Doc
	heads crdt.Heads
	mode  checkerMode

	// What the fast path knows of doc, valid in modeReady.
	st        *state
	idx       *crdt.OpIndex
	wObj      crdt.OpID            // the map of writes
	notesObj  crdt.OpID            // the map of notes
	wKeys     map[string]struct{}  // the keys the map of writes shows
	notes     map[string]crdt.OpID // the keys the map of notes shows: the note's text, or zero if the key shows anything but one text
	texts     map[crdt.OpID]string // note texts, to their encounter
	referrals map[string]*entry    // the referral entries
	scope     []string             // the chart's scope, if scopeOK
	scopeOK   bool

	nfast, nslow int // changes judged each way, for tests
}

type checkerMode int

const (
	// modeStale: what the Checker knows must be read again from doc
	// before the next change judged without CheckChange.
	modeStale checkerMode = iota
	// modeReady: what the Checker knows is doc's.
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
	c := &Checker{doc: held, heads: held.Heads()}
	c.rebuild()
	return c, nil
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
// first change, an unusual operation, or one it would refuse) is judged
// by CheckChange, whose cost grows with the chart.
func (c *Checker) Check(ch crdt.Change) (Touched, error) {
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
		if !slices.Contains(c.heads, d) && !c.doc.Has(d) {
			return false
		}
	}
	return true
}

// slow judges ch with CheckChange and, if it is accepted, applies it.
func (c *Checker) slow(ch crdt.Change) (Touched, error) {
	c.nslow++
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
// writes (by key, with their JSON), new note texts, and edits of notes.
type edits struct {
	writes   map[string]string    // key in the map of writes → JSON
	newTexts map[crdt.OpID]string // text made in the map of notes → its key
	notes    map[string]bool      // notes whose text the change edits
}

// classify sorts a change's operations into edits, and reports false if
// any is not one this package makes on c's chart: a new key of the map
// of writes set to a string, a new key of the map of notes made a text,
// and insertions and deletions in a note's text.
func (c *Checker) classify(info *crdt.ChangeInfo) (edits, bool) {
	e := edits{writes: map[string]string{}, newTexts: map[crdt.OpID]string{}, notes: map[string]bool{}}
	newNotes := map[string]bool{}
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
			e.notes[k] = true
		default:
			k, ok := c.texts[op.Obj]
			if !ok {
				k, ok = e.newTexts[op.Obj]
			}
			if !ok || !op.Key.IsElem {
				return e, false
			}
			switch {
			case op.Insert && op.Action == crdt.ActionSet && op.Value.Type == crdt.ValueString:
			case !op.Insert && op.Action == crdt.ActionDelete:
			default:
				return e, false
			}
			e.notes[k] = true
		}
	}
	return e, true
}

// fast judges a change made on everything the Checker holds from its
// operations, and applies it if it is accepted. It reports false, having
// changed nothing, for a change it does not accept or cannot judge so:
// CheckChange then decides.
func (c *Checker) fast(ch crdt.Change) (Touched, bool) {
	var msg message
	if json.Unmarshal([]byte(ch.Message), &msg) != nil {
		return Touched{}, false
	}
	t := Touched{Author: Author{UserID: msg.User, Name: msg.Name, Role: msg.Role, Device: msg.Device}}
	if t.Author.Validate() != nil {
		return Touched{}, false
	}
	info, err := crdt.ChangeOps(ch.Raw)
	if err != nil || info.Hash != ch.Hash || info.Message != ch.Message || !sameHashes(info.Deps, ch.Deps) {
		return Touched{}, false
	}
	if c.idx.CheckRefs(&info) != nil {
		return Touched{}, false
	}
	e, ok := c.classify(&info)
	if !ok {
		return Touched{}, false
	}

	// The rules CheckChange applies, in its order.
	j := newJudge(ch.Hash, c.st.chartID, &t, c.kindOf, func(id string) *write { return c.st.byID[id] })
	ws := make([]*write, 0, len(e.writes))
	for _, k := range slices.Sorted(maps.Keys(e.writes)) {
		w, err := j.write(k, e.writes[k])
		if err != nil {
			return Touched{}, false
		}
		ws = append(ws, w)
	}
	for k := range e.notes {
		if kind, _ := j.kind(k); kind != KindEncounter {
			return Touched{}, false
		}
	}
	if len(e.notes) > 0 && !Permitted(t.Author.Role, SectionEncounters) {
		return Touched{}, false // refused if it changes a note's text
	}
	if authorize(t.Author.Role, t.Sections) != nil {
		return Touched{}, false
	}

	// Whether the notes' texts change is read before and after applying
	// the change; nothing refuses the change after it is applied.
	before := make(map[string]string, len(e.notes))
	for k := range e.notes {
		if _, ok := c.notes[k]; ok {
			before[k] = noteAt(c.doc, k)
		}
	}
	scope := c.currentScope()
	// Its dependencies are held, and ChangeOps read its bytes: a bulk
	// load, which checks the change's hash, applies it most cheaply.
	if err := c.doc.ApplyStored(ch.Raw, []crdt.Hash{ch.Hash}); err != nil {
		return Touched{}, false
	}
	c.heads = crdt.Heads{ch.Hash}
	for k := range e.notes {
		if noteAt(c.doc, k) != before[k] {
			t.Sections = addSection(t.Sections, SectionEncounters) // an encounter's, as checked above
		}
	}
	t.Scope = scope
	if !c.learn(&info, e, ws) {
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
		w := &write{}
		if json.Unmarshal([]byte(js), w) != nil || !knownKind(w.Kind) || w.Entry == "" || w.Field == "" {
			return false
		}
		w.ID = k
		ws = append(ws, w)
	}
	return c.learn(&info, e, ws)
}

// learn records an applied change's edits; false if the state cannot
// take them (a write that would change an entry's kind).
func (c *Checker) learn(info *crdt.ChangeInfo, e edits, ws []*write) bool {
	c.idx.Add(info)
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
	for obj, k := range e.newTexts {
		c.notes[k] = obj
		c.texts[obj] = k
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
	c.st, c.idx, c.wKeys, c.notes, c.texts, c.referrals, c.scope, c.scopeOK = nil, nil, nil, nil, nil, nil, nil, false
	c.mode = c.read()
}

func (c *Checker) read() checkerMode {
	if len(c.heads) == 0 {
		return modeNotChart
	}
	if _, err := Open(c.doc); err != nil {
		return modeNotChart
	}
	id, err := c.doc.String(pathChart, "id")
	if err != nil {
		return modeIrregular
	}
	raw, err := c.doc.Strings(pathW...)
	if err != nil {
		return modeIrregular
	}
	st := stateFrom(id, raw)
	chs, err := c.doc.Changes(nil)
	if err != nil {
		return modeIrregular
	}

	// Every operation on the root map and on the maps made at its keys,
	// to find the chart's objects and what their keys show.
	type liveOp struct {
		id     crdt.OpID
		action crdt.Action
		str    bool // a string value
	}
	live := map[crdt.OpID]map[string][]liveOp{crdt.Root: {}}
	idx := crdt.NewOpIndex()
	for _, ch := range chs {
		info, err := crdt.ChangeOps(ch.Raw)
		if err != nil {
			return modeIrregular
		}
		idx.Add(&info)
		for _, op := range info.Ops {
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
			if op.Obj == crdt.Root && op.Action == crdt.ActionMakeMap && (k == "chart" || k == "w" || k == "notes") {
				live[op.ID] = map[string][]liveOp{}
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
		keys, err := c.doc.Keys(p...)
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
	c.notes, c.texts = map[string]crdt.OpID{}, map[crdt.OpID]string{}
	for k, ops := range live[notesObj] {
		if len(ops) == 0 {
			continue
		}
		text, ok := only(ops, crdt.ActionMakeText)
		c.notes[k] = text // zero unless one text
		if ok {
			c.texts[text] = k
		}
	}
	st.indexWrites()
	c.referrals = map[string]*entry{}
	for id, e := range st.entries {
		if e.kind == KindReferral {
			c.referrals[id] = e
		}
	}
	c.st, c.idx = st, idx
	return modeReady
}

// sameHashes reports whether a and b hold the same hashes.
func sameHashes(a, b []crdt.Hash) bool {
	if len(a) != len(b) {
		return false
	}
	for _, h := range a {
		if !slices.Contains(b, h) {
			return false
		}
	}
	return true
}
