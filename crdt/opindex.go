package crdt

import (
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
)

// ErrUnknownRef is matched by the error CheckRefs returns for a change
// that names an object, element or operation that neither its
// dependencies nor its own earlier operations hold. Automerge applies
// such a change without complaint, but what it does then depends on
// which other changes a replica happens to hold: an operation on an
// object that does not exist is dropped, and applies on a replica that
// receives the object later from elsewhere, so replicas diverge.
var ErrUnknownRef = errors.New("crdt: change names an operation its dependencies do not hold")

// OpIndex records which operations, and which objects, a set of changes
// holds: normally a document's history, or the changes a change depends
// on. It is not safe for concurrent use.
type OpIndex struct {
	ranges  map[string][]opRange // by actor: the counters of its changes, sorted
	objects map[OpID]Action      // objects made, by ID, with the action that made them
	maxOp   uint64
}

// opRange is the counters [start, end) of one change's operations.
type opRange struct{ start, end uint64 }

// NewOpIndex returns an empty index.
func NewOpIndex() *OpIndex {
	return &OpIndex{ranges: map[string][]opRange{}, objects: map[OpID]Action{}}
}

// Add records the operations of a decoded change.
func (x *OpIndex) Add(info *ChangeInfo) {
	x.addRange(info.Actor, info.StartOp, uint64(len(info.Ops)))
	for _, op := range info.Ops {
		if op.Action.MakesObject() {
			x.objects[op.ID] = op.Action
		}
	}
}

// AddRaw records the operations of one raw change, reading only its
// header and its action column (much cheaper than ChangeOps, and with no
// bound on the operations beyond ParseChanges's). Bytes that are not one
// valid change give ErrMalformed and record nothing.
func (x *OpIndex) AddRaw(raw []byte) error {
	b, err := parseChunk(raw)
	if err != nil {
		return fmt.Errorf("index change: %v: %w", err, ErrMalformed)
	}
	var acts []byte
	for _, c := range b.cols {
		if c.spec&^0x08 == specAction {
			acts = c.data
		}
	}
	actor := hex.EncodeToString(b.actor)
	d := newULEBs(acts)
	var made []OpID
	var madeBy []Action
	n := uint64(0)
	for !d.done() {
		a, ok, _, err := d.next()
		if err != nil {
			return fmt.Errorf("index change %s: %v: %w", b.hash, err, ErrMalformed)
		}
		if ok && a <= uint64(ActionMark) && Action(a).MakesObject() {
			made = append(made, OpID{Counter: b.startOp + n, Actor: actor})
			madeBy = append(madeBy, Action(a))
		}
		n++
	}
	x.addRange(actor, b.startOp, n)
	for i, id := range made {
		x.objects[id] = madeBy[i]
	}
	return nil
}

func (x *OpIndex) addRange(actor string, start, n uint64) {
	if start+n > 0 {
		x.maxOp = max(x.maxOp, start+n-1)
	}
	if n == 0 {
		return
	}
	rs := x.ranges[actor]
	r := opRange{start, start + n}
	i, _ := slices.BinarySearchFunc(rs, r, func(a, b opRange) int {
		switch {
		case a.start < b.start:
			return -1
		case a.start > b.start:
			return 1
		}
		return 0
	})
	if i < len(rs) && rs[i] == r {
		return // the same change again
	}
	x.ranges[actor] = slices.Insert(rs, i, r)
}

// Has reports whether the index holds the operation id.
func (x *OpIndex) Has(id OpID) bool {
	rs := x.ranges[id.Actor]
	i, _ := slices.BinarySearchFunc(rs, id.Counter, func(r opRange, c uint64) int {
		switch {
		case r.end <= c:
			return -1
		case r.start > c:
			return 1
		}
		return 0
	})
	return i < len(rs) && rs[i].start <= id.Counter && id.Counter < rs[i].end
}

// Object reports whether id names an object the index holds (Root always
// does), and the action that made it (ActionMakeMap for Root).
func (x *OpIndex) Object(id OpID) (Action, bool) {
	if id.IsRoot() {
		return ActionMakeMap, true
	}
	a, ok := x.objects[id]
	return a, ok
}

// MaxOp returns the largest operation counter the index holds.
func (x *OpIndex) MaxOp() uint64 { return x.maxOp }

// CheckRefs checks that a change names only what its author can have
// seen, when x holds exactly the change's dependencies and everything
// they depend on: its operations come after every operation x holds (as
// Automerge numbers them), each acts on an object x holds or the change
// made before it, with a map key in a map and an element in a list or
// text (the head only to insert), and each element and predecessor it
// names is an operation x holds or an earlier one of the change. It
// returns an error matching ErrUnknownRef otherwise.
func (x *OpIndex) CheckRefs(info *ChangeInfo) error {
	if len(info.Ops) > 0 && info.StartOp <= x.maxOp {
		return fmt.Errorf("change %s starts at operation %d, not after the %d its dependencies hold: %w", info.Hash, info.StartOp, x.maxOp, ErrUnknownRef)
	}
	// earlier reports whether id is an operation of the change before
	// operation i, returning its index.
	earlier := func(id OpID, i int) (int, bool) {
		if id.Actor != info.Actor || id.Counter < info.StartOp || id.Counter-info.StartOp >= uint64(i) {
			return 0, false
		}
		return int(id.Counter - info.StartOp), true
	}
	for i := range info.Ops {
		op := &info.Ops[i]
		kind, ok := x.Object(op.Obj)
		if !ok {
			if j, in := earlier(op.Obj, i); in && info.Ops[j].Action.MakesObject() {
				kind, ok = info.Ops[j].Action, true
			}
		}
		if !ok {
			return fmt.Errorf("change %s: operation %s acts on %s, an object its dependencies do not hold: %w", info.Hash, op.ID, op.Obj, ErrUnknownRef)
		}
		seq := kind == ActionMakeList || kind == ActionMakeText
		switch {
		case seq && !op.Key.IsElem:
			return fmt.Errorf("change %s: operation %s uses map key %s in a sequence: %w", info.Hash, op.ID, op.Key, ErrUnknownRef)
		case !seq && (op.Key.IsElem || op.Insert):
			return fmt.Errorf("change %s: operation %s uses element %s in a map: %w", info.Hash, op.ID, op.Key, ErrUnknownRef)
		case op.Key.IsHead() && !op.Insert:
			return fmt.Errorf("change %s: operation %s changes the head of a sequence: %w", info.Hash, op.ID, ErrUnknownRef)
		case op.Key.IsElem && !op.Key.IsHead():
			if _, in := earlier(op.Key.Elem, i); !in && !x.Has(op.Key.Elem) {
				return fmt.Errorf("change %s: operation %s names element %s, which its dependencies do not hold: %w", info.Hash, op.ID, op.Key.Elem, ErrUnknownRef)
			}
		}
		for _, p := range op.Pred {
			if _, in := earlier(p, i); !in && !x.Has(p) {
				return fmt.Errorf("change %s: operation %s overwrites %s, which its dependencies do not hold: %w", info.Hash, op.ID, p, ErrUnknownRef)
			}
		}
	}
	return nil
}

// OpIndex indexes every applied change of the document (held changes
// are not included): its cost is that of reading the whole history.
func (d *Doc) OpIndex() (x *OpIndex, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	defer recoverInto(&err)
	if err := d.closed("index operations"); err != nil {
		return nil, err
	}
	if err := d.ensureHistory(); err != nil {
		return nil, fmt.Errorf("index operations: %w", err)
	}
	x = NewOpIndex()
	for _, raw := range d.hist.raws {
		if err := x.AddRaw(raw); err != nil {
			return nil, err
		}
	}
	return x, nil
}
