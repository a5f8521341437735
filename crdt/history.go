package crdt

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"
)

// ErrInvalidChange is matched (errors.Is) by the error for a change that
// Doc.Apply, Load or ApplyStored refuses because Automerge could not apply
// it and then save and load the result again: a sequence number that is
// not its author's next, dependencies without its author's previous
// change, operations naming what its dependencies do not hold, or bytes
// Automerge would not have written. Such an error also matches
// ErrMalformed, and is an *InvalidChangeError naming the change.
var ErrInvalidChange = errors.New("crdt: invalid change")

// InvalidChangeError is the error for one refused change.
type InvalidChangeError struct {
	// Hash names the refused change.
	Hash Hash
	// Err says what is wrong with it; it may match ErrUnknownRef.
	Err error
}

func (e *InvalidChangeError) Error() string {
	return fmt.Sprintf("invalid change %s: %v", e.Hash, e.Err)
}

// Unwrap makes the error match ErrInvalidChange, ErrMalformed and its cause.
func (e *InvalidChangeError) Unwrap() []error {
	return []error{ErrInvalidChange, ErrMalformed, e.Err}
}

func invalid(h Hash, format string, args ...any) error {
	return &InvalidChangeError{Hash: h, Err: fmt.Errorf(format, args...)}
}

// history is what a Doc knows of its applied changes beyond Automerge:
// each actor's chain of changes, each change's causal clock and every
// operation's object and key. It is kept up to date change by change,
// so that judging a new change costs in proportion to that change, not
// to the document. It is not safe for concurrent use; the Doc's lock
// guards it.
type history struct {
	actorIdx map[string]uint32
	actors   []actorHist
	byHash   map[Hash]uint32 // change index by hash
	changes  []changeRec
	hashes   []Hash   // by change index
	raws     [][]byte // by change index: the change's bytes, shared
	ops      []opRec
	props    map[string]uint32
	propList []string
	clocks   []uint32
}

// actorHist is one actor's changes, by sequence number (index seq-1).
type actorHist struct {
	id      string
	changes []uint32
}

// changeRec is one applied change.
type changeRec struct {
	actor   uint32
	seq     uint32
	nops    uint32
	opsAt   uint32 // index of its first operation in history.ops
	startOp uint64
	// maxOp is the largest operation counter the change and its
	// ancestors hold.
	maxOp uint64
	// clock is history.clocks[clockAt:clockAt+clockLen]: by actor index,
	// the largest sequence number of that actor among the change and its
	// ancestors (actors beyond clockLen: none).
	clockAt, clockLen uint32
}

// opRec is one operation: the object it acts on (the index in
// history.ops of the operation that made it, or objRoot), its key (a
// property index when opProp is set, otherwise the index in history.ops
// of the sequence element: the operation itself for an insertion), its
// action and whether it inserts.
type opRec struct {
	obj  uint32
	key  uint32
	kind uint8 // action | opInsert | opProp
}

const (
	opInsert = 0x08
	opProp   = 0x10
	objRoot  = math.MaxUint32
	keyHead  = math.MaxUint32
)

func (o opRec) action() Action { return Action(o.kind & 0x07) }

func newHistory() *history {
	return &history{
		actorIdx: map[string]uint32{},
		byHash:   map[Hash]uint32{},
		props:    map[string]uint32{},
	}
}

// histMark is a point history can be rolled back to.
type histMark struct{ actors, changes, ops, props, clocks int }

func (h *history) mark() histMark {
	return histMark{len(h.actors), len(h.changes), len(h.ops), len(h.propList), len(h.clocks)}
}

// undo rolls h back to m, forgetting everything recorded since.
func (h *history) undo(m histMark) {
	for i := len(h.changes) - 1; i >= m.changes; i-- {
		a := &h.actors[h.changes[i].actor]
		a.changes = a.changes[:len(a.changes)-1]
		delete(h.byHash, h.hashes[i])
	}
	h.changes, h.hashes, h.raws = h.changes[:m.changes], h.hashes[:m.changes], h.raws[:m.changes]
	for _, a := range h.actors[m.actors:] {
		delete(h.actorIdx, a.id)
	}
	h.actors = h.actors[:m.actors]
	for _, p := range h.propList[m.props:] {
		delete(h.props, p)
	}
	h.propList = h.propList[:m.props]
	h.ops, h.clocks = h.ops[:m.ops], h.clocks[:m.clocks]
	// What was undone may share its backing arrays with a clone (or the
	// history it was cloned from): clipped, the next append copies
	// rather than writing over the other's records.
	h.changes, h.hashes, h.ops = slices.Clip(h.changes), slices.Clip(h.hashes), slices.Clip(h.ops)
	h.raws = slices.Clip(h.raws)
	h.propList, h.clocks = slices.Clip(h.propList), slices.Clip(h.clocks)
	for i := range h.actors {
		h.actors[i].changes = slices.Clip(h.actors[i].changes)
	}
}

// has reports whether the change with hash x is recorded.
func (h *history) has(x Hash) bool {
	_, ok := h.byHash[x]
	return ok
}

// next returns the sequence number actor's next change must carry.
func (h *history) next(actor string) uint64 {
	if a, ok := h.actorIdx[actor]; ok {
		return uint64(len(h.actors[a].changes)) + 1
	}
	return 1
}

// lookup finds the recorded operation id: its index in h.ops and the
// index of its change.
func (h *history) lookup(id OpID) (op, change uint32, ok bool) {
	a, ok := h.actorIdx[id.Actor]
	if !ok {
		return 0, 0, false
	}
	chs := h.actors[a].changes
	i := sort.Search(len(chs), func(i int) bool {
		c := &h.changes[chs[i]]
		return c.startOp+uint64(c.nops) > id.Counter
	})
	if i == len(chs) {
		return 0, 0, false
	}
	c := &h.changes[chs[i]]
	if c.startOp > id.Counter {
		return 0, 0, false
	}
	return c.opsAt + uint32(id.Counter-c.startOp), chs[i], true
}

// judge decodes one raw change and checks that Automerge would have
// written it byte for byte as it is: what is decoded encodes back to the
// same bytes. Errors match ErrInvalidChange.
func judge(raw []byte) (*ChangeInfo, error) {
	info, err := ChangeOps(raw)
	if err != nil {
		var h Hash
		if b, perr := parseChunk(raw); perr == nil {
			h = b.hash
		}
		return nil, &InvalidChangeError{Hash: h, Err: err}
	}
	enc, err := EncodeChange(info)
	if err != nil {
		return nil, &InvalidChangeError{Hash: info.Hash, Err: err}
	}
	if !bytes.Equal(enc, raw) {
		return nil, invalid(info.Hash, "not encoded as Automerge encodes it")
	}
	return &info, nil
}

// add checks that the decoded change info may apply after everything h
// holds, and records it; otherwise it returns an error matching
// ErrInvalidChange and records nothing. The rules are those under which
// Automerge applies every operation of the change as the change states it
// (so that a saved document loads again, rebuilding the change to its own
// bytes), and reads it alike on every replica:
//   - its dependencies are recorded, sorted and distinct;
//   - its sequence number is its author's next, and its dependencies
//     include its author's previous change;
//   - its operations come after every operation its dependencies hold;
//   - its other actors are exactly those its operations name, sorted;
//   - each operation acts on an object its dependencies (or the change
//     itself, earlier) made, with a map key in a map and an element in a
//     list or text; an element is one inserted in that object;
//   - each predecessor is an operation at the same object and key that
//     its dependencies or the change hold, and is not a deletion;
//   - an insertion overwrites nothing and a deletion overwrites something;
//   - it uses only maps, lists, text and scalar values of known types:
//     no counters' increments, tables or marks, which chartsync does not
//     write (and whose values Automerge does not save as changes state
//     them).
//
// raw is the change's bytes, kept (not copied) so that the document's
// changes can be read without Automerge.
func (h *history) add(info *ChangeInfo, raw []byte) (err error) {
	m := h.mark()
	defer func() {
		if err != nil {
			h.undo(m)
		}
	}()
	fail := func(format string, args ...any) error { return invalid(info.Hash, format, args...) }
	if h.has(info.Hash) {
		return fail("already applied")
	}

	// Dependencies, their clock and their largest operation.
	for i, dep := range info.Deps {
		if !h.has(dep) {
			return fail("dependency %s is not applied", dep)
		}
		if i > 0 && bytes.Compare(info.Deps[i-1][:], dep[:]) >= 0 {
			return fail("dependencies are not sorted and distinct")
		}
	}
	ai, known := h.actorIdx[info.Actor]
	if !known {
		ai = uint32(len(h.actors))
		h.actorIdx[info.Actor] = ai
		h.actors = append(h.actors, actorHist{id: info.Actor})
	}
	clockAt := uint32(len(h.clocks))
	h.clocks = append(h.clocks, make([]uint32, len(h.actors))...)
	clock := h.clocks[clockAt:]
	var maxOp uint64
	for _, dep := range info.Deps {
		c := &h.changes[h.byHash[dep]]
		for i, s := range h.clocks[c.clockAt : c.clockAt+c.clockLen] {
			clock[i] = max(clock[i], s)
		}
		maxOp = max(maxOp, c.maxOp)
	}

	// Sequence number.
	chain := h.actors[ai].changes
	switch next := uint64(len(chain)) + 1; {
	case info.Seq < next:
		return fail("sequence number %d of actor %s is taken (next is %d)", info.Seq, info.Actor, next)
	case info.Seq > next:
		return fail("sequence number %d of actor %s skips (next is %d)", info.Seq, info.Actor, next)
	case next > 1:
		// Automerge lists its author's previous change among a change's
		// dependencies even when another dependency follows it.
		prev := h.hashes[chain[len(chain)-1]]
		if _, ok := slices.BinarySearchFunc(info.Deps, prev, func(a, b Hash) int { return bytes.Compare(a[:], b[:]) }); !ok {
			return fail("does not list its actor's previous change %s among its dependencies", prev)
		}
	}
	if info.StartOp <= maxOp {
		return fail("starts at operation %d, not after the %d its dependencies hold: %w", info.StartOp, maxOp, ErrUnknownRef)
	}
	n := uint64(len(info.Ops))
	if n > math.MaxUint32 || uint64(len(h.ops))+n > math.MaxUint32-2 {
		return fail("too many operations")
	}
	if n > 0 && info.StartOp+n-1 < info.StartOp {
		return fail("operation counters overflow")
	}

	// Operations.
	base := uint32(len(h.ops))
	others := map[string]bool{}
	// resolve finds operation id among the change's first i operations
	// and what its dependencies hold.
	resolve := func(id OpID, i int) (uint32, bool) {
		if id.Actor == info.Actor && id.Counter >= info.StartOp {
			if k := id.Counter - info.StartOp; k < uint64(i) {
				return base + uint32(k), true
			}
			return 0, false
		}
		op, ch, ok := h.lookup(id)
		if !ok {
			return 0, false
		}
		c := &h.changes[ch]
		if int(c.actor) >= len(clock) || clock[c.actor] < c.seq {
			return 0, false // not among the change's dependencies
		}
		return op, true
	}
	for i := range info.Ops {
		op := &info.Ops[i]
		fail := func(format string, args ...any) error {
			return fail("operation %s: %w", op.ID, fmt.Errorf(format, args...))
		}
		rec := opRec{kind: uint8(op.Action)}
		switch op.Action {
		case ActionMakeMap, ActionMakeList, ActionMakeText, ActionSet, ActionDelete:
		default:
			return fail("action %s is not used by chartsync", op.Action)
		}
		if op.Value.Type > ValueTimestamp {
			return fail("value of unknown type %d", op.Value.Type)
		}
		if op.Action != ActionSet && op.Value.Type != ValueNull {
			return fail("%s carries a value", op.Action)
		}
		if op.Expand || op.MarkName != "" {
			return fail("mark fields outside a mark")
		}

		// Object.
		seq := false
		if op.Obj.IsRoot() {
			rec.obj = objRoot
		} else {
			o, ok := resolve(op.Obj, i)
			if !ok || !h.ops[o].action().MakesObject() {
				return fail("acts on %s, an object its dependencies do not hold: %w", op.Obj, ErrUnknownRef)
			}
			others[op.Obj.Actor] = true
			rec.obj = o
			seq = h.ops[o].action() == ActionMakeList || h.ops[o].action() == ActionMakeText
		}

		// Key.
		switch {
		case !seq:
			if op.Key.IsElem || op.Insert {
				return fail("uses element %s in a map: %w", op.Key, ErrUnknownRef)
			}
			p, ok := h.props[op.Key.Prop]
			if !ok {
				p = uint32(len(h.propList))
				h.props[op.Key.Prop] = p
				h.propList = append(h.propList, op.Key.Prop)
			}
			rec.key, rec.kind = p, rec.kind|opProp
		case !op.Key.IsElem:
			return fail("uses map key %s in a sequence: %w", op.Key, ErrUnknownRef)
		case op.Key.IsHead() && !op.Insert:
			return fail("changes the head of a sequence: %w", ErrUnknownRef)
		default:
			elem := uint32(keyHead)
			if !op.Key.IsHead() {
				e, ok := resolve(op.Key.Elem, i)
				if !ok || h.ops[e].kind&opInsert == 0 || h.ops[e].obj != rec.obj {
					return fail("names element %s, which its dependencies do not hold in %s: %w", op.Key.Elem, op.Obj, ErrUnknownRef)
				}
				others[op.Key.Elem.Actor] = true
				elem = e
			}
			rec.key = elem
			if op.Insert {
				rec.key, rec.kind = base+uint32(i), rec.kind|opInsert
			}
		}
		if op.Insert && op.Action == ActionDelete {
			return fail("inserts a deletion")
		}

		// Predecessors.
		if op.Insert && len(op.Pred) > 0 {
			return fail("inserts and overwrites")
		}
		if op.Action == ActionDelete && len(op.Pred) == 0 {
			return fail("deletes nothing")
		}
		for j, p := range op.Pred {
			if j > 0 {
				q := op.Pred[j-1]
				if c := cmp.Compare(q.Counter, p.Counter); c > 0 || c == 0 && strings.Compare(q.Actor, p.Actor) >= 0 {
					return fail("predecessors are not sorted and distinct")
				}
			}
			pi, ok := resolve(p, i)
			if !ok {
				return fail("overwrites %s, which its dependencies do not hold: %w", p, ErrUnknownRef)
			}
			pr := h.ops[pi]
			pkey := pr.key
			if pr.kind&opInsert != 0 {
				pkey = pi
			}
			if pr.obj != rec.obj || pr.kind&opProp != rec.kind&opProp || pkey != rec.key || pr.action() == ActionDelete {
				return fail("overwrites %s, which is not a value at its object and key: %w", p, ErrUnknownRef)
			}
			others[p.Actor] = true
		}
		h.ops = append(h.ops, rec)
	}
	delete(others, info.Actor)
	if len(others) != len(info.OtherActors) {
		return fail("lists %d other actors where its operations name %d", len(info.OtherActors), len(others))
	}
	for i, a := range info.OtherActors {
		if !others[a] || i > 0 && info.OtherActors[i-1] >= a {
			return fail("other actors are not those its operations name, sorted")
		}
	}

	idx := uint32(len(h.changes))
	clock[ai] = uint32(info.Seq)
	end := info.StartOp - 1
	if n > 0 {
		end += n
	}
	h.changes = append(h.changes, changeRec{
		actor:    ai,
		seq:      uint32(info.Seq),
		nops:     uint32(n),
		opsAt:    base,
		startOp:  info.StartOp,
		maxOp:    max(maxOp, end),
		clockAt:  clockAt,
		clockLen: uint32(len(clock)),
	})
	h.hashes = append(h.hashes, info.Hash)
	h.raws = append(h.raws, raw)
	h.byHash[info.Hash] = idx
	h.actors[ai].changes = append(h.actors[ai].changes, idx)
	return nil
}

// clone returns a copy of h that records on its own. The records of h
// are never changed once added, so the copy shares them: its slices are
// clipped, so that the first append to either copies, and its maps are
// copied.
func (h *history) clone() *history {
	c := &history{
		actorIdx: maps.Clone(h.actorIdx),
		actors:   slices.Clone(h.actors),
		byHash:   maps.Clone(h.byHash),
		changes:  slices.Clip(h.changes),
		hashes:   slices.Clip(h.hashes),
		raws:     slices.Clip(h.raws),
		ops:      slices.Clip(h.ops),
		props:    maps.Clone(h.props),
		propList: slices.Clip(h.propList),
		clocks:   slices.Clip(h.clocks),
	}
	for i := range c.actors {
		c.actors[i].changes = slices.Clip(c.actors[i].changes)
	}
	return c
}

// trim drops the spare capacity the history's slices grew while it was
// built in one go (by Load, or at a Fork's first Apply).
func (h *history) trim() {
	h.changes = slices.Clone(h.changes)
	h.hashes = slices.Clone(h.hashes)
	h.raws = slices.Clone(h.raws)
	h.ops = slices.Clone(h.ops)
	h.clocks = slices.Clone(h.clocks)
}

// covered reports, by change index, which recorded changes heads hold
// (each head and its ancestors). Every head must be recorded.
func (h *history) covered(heads []Hash) []bool {
	out := make([]bool, len(h.changes))
	for _, x := range heads {
		c := &h.changes[h.byHash[x]]
		clock := h.clocks[c.clockAt : c.clockAt+c.clockLen]
		for i := range h.changes {
			r := &h.changes[i]
			if int(r.actor) < len(clock) && clock[r.actor] >= r.seq {
				out[i] = true
			}
		}
	}
	return out
}
