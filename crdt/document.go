package crdt

import (
	"bytes"
	"cmp"
	"compress/flate"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// This file reads a saved document (a document chunk, as automerge-rs 0.5
// writes it: see rust/automerge/src/storage/document.rs and
// storage/load/reconstruct_document.rs in the automerge repository) in
// Go, rebuilding the changes it holds. Load hands Automerge those changes,
// each judged as Apply judges a change, and never the document's bytes:
// the pinned automerge-rs panics on some crafted documents (an unknown
// action, for one), and a Rust panic under cgo aborts the process.

// Limits on what one saved document may hold: at most maxDocRows changes
// and as many operations, and no more than docRowsPerByte of either per
// byte of the document beyond the first 16,384 rows, so that a small
// crafted document cannot claim, by run-length encoding, a million rows
// to decode (each costs a few microseconds and a few hundred bytes). A
// chart's note of 20,000 characters repeated saves at about 12 operations
// a byte.
const (
	maxDocRows     = 1 << 20
	docRowsPerByte = 32
)

func docRowLimit(size int) int { return min(maxDocRows, 1<<14+docRowsPerByte*size) }

// Column specifications (ID << 4 | type) of a document chunk.
const (
	// Change metadata.
	specDocChangeActor = 0<<4 | colActor
	specDocChangeSeq   = 0<<4 | colDelta
	specDocChangeMaxOp = 1<<4 | colDelta
	specDocChangeTime  = 2<<4 | colDelta
	specDocChangeMsg   = 3<<4 | colString
	specDocDepsGroup   = 4<<4 | colGroup
	specDocDepsIndex   = 4<<4 | colDelta
	specDocExtraMeta   = 5<<4 | colValueMeta
	specDocExtraRaw    = 5<<4 | colValueRaw
	// Operations.
	specDocObjActor  = 0<<4 | colActor
	specDocObjCtr    = 0<<4 | colULEB
	specDocKeyActor  = 1<<4 | colActor
	specDocKeyCtr    = 1<<4 | colDelta
	specDocKeyStr    = 1<<4 | colString
	specDocIDActor   = 2<<4 | colActor
	specDocIDCtr     = 2<<4 | colDelta
	specDocInsert    = 3<<4 | colBool
	specDocAction    = 4<<4 | colULEB
	specDocValueMeta = 5<<4 | colValueMeta
	specDocValueRaw  = 5<<4 | colValueRaw
	specDocSuccGroup = 8<<4 | colGroup
	specDocSuccActor = 8<<4 | colActor
	specDocSuccCtr   = 8<<4 | colDelta
	specDocExpand    = 9<<4 | colBool
	specDocMarkName  = 10<<4 | colString
)

// docCols is a document's columns of one kind, by specification with the
// deflate bit cleared.
type docCols map[uint64][]byte

// readColumnSpecs reads a column layout: a count, then a specification
// and a length for each column, in increasing order of specification.
func readColumnSpecs(r *reader) ([][2]uint64, error) {
	n := r.uvarint("column count")
	if r.err == nil && n > uint64(len(r.b)) {
		r.fail("columns")
	}
	var out [][2]uint64
	for i := uint64(0); i < n && r.err == nil; i++ {
		spec, length := r.uvarint("column spec"), r.uvarint("column length")
		if r.err == nil && len(out) > 0 && spec&^0x08 <= out[len(out)-1][0]&^0x08 {
			return nil, fmt.Errorf("columns out of order")
		}
		out = append(out, [2]uint64{spec, length})
	}
	return out, r.err
}

// readColumnData reads the data of columns laid out as specs, inflating
// deflated ones within *budget bytes, and checks each as checkColumn does
// (actor indices below actors).
func readColumnData(r *reader, specs [][2]uint64, known []uint64, actors uint64, budget *int) (docCols, error) {
	cols := docCols{}
	for _, s := range specs {
		data := r.bytes(s[1], "column data")
		if r.err != nil {
			return nil, r.err
		}
		spec := s[0] &^ 0x08
		if !slices.Contains(known, spec) {
			return nil, fmt.Errorf("unknown column %d of type %d", spec>>4, spec&0x07)
		}
		if s[0]&0x08 != 0 {
			inflated, err := io.ReadAll(io.LimitReader(flate.NewReader(bytes.NewReader(data)), int64(*budget)+1))
			if err != nil || len(inflated) > *budget {
				return nil, fmt.Errorf("column %d: bad or oversized deflate data", spec>>4)
			}
			*budget -= len(inflated)
			data = inflated
		}
		if _, err := checkColumn(spec&0x07, data, actors); err != nil && spec&0x07 != colValueRaw {
			return nil, fmt.Errorf("column %d: %w", spec>>4, err)
		}
		cols[spec] = data
	}
	return cols, nil
}

// docOp is one operation as a document holds it: with its successors
// (the operations that overwrite or delete it) instead of predecessors.
type docOp struct {
	Op
	succ []OpID
}

// docChange is one change's metadata as a document holds it.
type docChange struct {
	actor   int
	seq     uint64
	maxOp   uint64
	time    int64
	message string
	deps    []uint64 // indices of earlier changes
	ops     []Op
}

// decodeDocument reads one saved document and returns the raw bytes of
// the changes it holds, rebuilt as Automerge rebuilds them, in the order
// the document lists them (dependencies first), with the document's heads.
// It checks the chunk's checksum and layout, every column, that the
// changes' rebuilt hashes are the heads the document states, and bounds
// what it decodes (docRowLimit, maxInflate, and maxDecodedOps a change).
// Every error matches ErrMalformed.
func decodeDocument(data []byte) (raws [][]byte, heads Heads, err error) {
	raws, _, heads, err = readDocument(data, true)
	if err != nil {
		return nil, nil, fmt.Errorf("read document: %v: %w", err, ErrMalformed)
	}
	return raws, heads, nil
}

// documentHashes is decodeDocument for the hashes of the changes a saved
// document holds, in its order, without keeping their bytes: a long
// chart's changes are megabytes.
func documentHashes(data []byte) (hashes []Hash, heads Heads, err error) {
	_, hashes, heads, err = readDocument(data, false)
	if err != nil {
		return nil, nil, fmt.Errorf("read document: %v: %w", err, ErrMalformed)
	}
	return hashes, heads, nil
}

// readDocument reads a saved document's changes: their hashes, and their
// bytes if keep.
func readDocument(data []byte, keep bool) ([][]byte, []Hash, Heads, error) {
	if len(data) < 10 || !bytes.Equal(data[:4], chunkMagic) {
		return nil, nil, nil, fmt.Errorf("no document header")
	}
	if data[8] != chunkDocument {
		return nil, nil, nil, fmt.Errorf("chunk type %d is not a document", data[8])
	}
	n, k := binary.Uvarint(data[9:])
	if k <= 0 || n != uint64(len(data)-9-k) {
		return nil, nil, nil, fmt.Errorf("bad length (or bytes after the document)")
	}
	if sum := sha256.Sum256(data[8:]); !bytes.Equal(sum[:4], data[4:8]) {
		return nil, nil, nil, fmt.Errorf("checksum does not match the content")
	}
	r := &reader{b: data[9+k:]}

	// Actors, sorted, and heads.
	na := r.uvarint("actor count")
	if r.err == nil && na > uint64(len(r.b)) {
		r.fail("actors")
	}
	actors := make([]string, 0, min(na, 1024))
	var prev []byte
	for i := uint64(0); i < na && r.err == nil; i++ {
		a := r.bytes(r.uvarint("actor length"), "actor")
		if r.err == nil && (len(a) == 0 || i > 0 && bytes.Compare(prev, a) >= 0) {
			return nil, nil, nil, fmt.Errorf("actors empty, unsorted or repeated")
		}
		prev = a
		actors = append(actors, fmt.Sprintf("%x", a))
	}
	nh := r.uvarint("head count")
	if r.err == nil && nh > uint64(len(r.b))/32 {
		r.fail("heads")
	}
	var heads Heads
	for i := uint64(0); i < nh && r.err == nil; i++ {
		heads = append(heads, Hash(r.bytes(32, "head")))
	}
	if r.err != nil {
		return nil, nil, nil, r.err
	}
	if !slices.IsSortedFunc(heads, func(a, b Hash) int { return bytes.Compare(a[:], b[:]) }) || len(slices.Compact(slices.Clone(heads))) != len(heads) {
		return nil, nil, nil, fmt.Errorf("heads unsorted or repeated")
	}

	// Column layouts, then data.
	changeSpecs, err := readColumnSpecs(r)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("change columns: %w", err)
	}
	opSpecs, err := readColumnSpecs(r)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("operation columns: %w", err)
	}
	budget := maxInflate
	changeCols, err := readColumnData(r, changeSpecs, []uint64{
		specDocChangeActor, specDocChangeSeq, specDocChangeMaxOp, specDocChangeTime, specDocChangeMsg,
		specDocDepsGroup, specDocDepsIndex, specDocExtraMeta, specDocExtraRaw,
	}, na, &budget)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("change columns: %w", err)
	}
	opCols, err := readColumnData(r, opSpecs, []uint64{
		specDocObjActor, specDocObjCtr, specDocKeyActor, specDocKeyCtr, specDocKeyStr, specDocIDActor,
		specDocIDCtr, specDocInsert, specDocAction, specDocValueMeta, specDocValueRaw, specDocSuccGroup,
		specDocSuccActor, specDocSuccCtr, specDocExpand, specDocMarkName,
	}, na, &budget)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("operation columns: %w", err)
	}

	// Head indices, if any.
	var headIdx []uint64
	if len(r.b) > 0 {
		for range heads {
			headIdx = append(headIdx, r.uvarint("head index"))
		}
		if r.err != nil || len(r.b) > 0 {
			return nil, nil, nil, fmt.Errorf("bad head indices")
		}
	}

	limit := docRowLimit(len(data))
	changes, err := readDocChanges(changeCols, len(actors), limit)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("changes: %w", err)
	}
	ops, err := readDocOps(opCols, actors, limit)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("operations: %w", err)
	}
	if err := assignOps(changes, ops, actors); err != nil {
		return nil, nil, nil, err
	}

	// Rebuild each change's bytes and hash, dependencies first.
	var raws [][]byte
	if keep {
		raws = make([][]byte, len(changes))
	}
	hashes := make([]Hash, len(changes))
	isDep := make([]bool, len(changes))
	for i, c := range changes {
		info := ChangeInfo{
			Actor:   actors[c.actor],
			Seq:     c.seq,
			StartOp: c.maxOp + 1 - uint64(len(c.ops)),
			Time:    unixMilli(c.time),
			Message: c.message,
			Ops:     c.ops,
		}
		for _, d := range c.deps {
			info.Deps = append(info.Deps, hashes[d])
			isDep[d] = true
		}
		slices.SortFunc(info.Deps, func(a, b Hash) int { return bytes.Compare(a[:], b[:]) })
		info.OtherActors = otherActors(info.Actor, c.ops)
		raw, err := EncodeChange(info)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("change %d: %v", i, err)
		}
		hashes[i] = sha256.Sum256(raw[8:])
		if keep {
			raws[i] = raw
		}
	}
	var got Heads
	for i, h := range hashes {
		if !isDep[i] {
			got = append(got, h)
		}
	}
	sortHashes(got)
	if !got.Equal(heads) {
		return nil, nil, nil, fmt.Errorf("the changes' heads are not the document's")
	}
	for i, x := range headIdx {
		if x >= uint64(len(hashes)) || hashes[x] != heads[i] {
			return nil, nil, nil, fmt.Errorf("head index %d does not name head %s", x, heads[i])
		}
	}
	return raws, hashes, heads, nil
}

// readDocChanges decodes the change metadata columns.
func readDocChanges(cols docCols, actors, limit int) ([]docChange, error) {
	actor := newULEBs(cols[specDocChangeActor])
	seq := deltas{rle: newSLEBs(cols[specDocChangeSeq])}
	maxOp := deltas{rle: newSLEBs(cols[specDocChangeMaxOp])}
	tm := deltas{rle: newSLEBs(cols[specDocChangeTime])}
	msg := newStrings(cols[specDocChangeMsg], string(cols[specDocChangeMsg]))
	ndeps := newULEBs(cols[specDocDepsGroup])
	dep := deltas{rle: newSLEBs(cols[specDocDepsIndex])}
	extra := newULEBs(cols[specDocExtraMeta])
	if len(cols[specDocExtraRaw]) > 0 {
		return nil, fmt.Errorf("extra bytes")
	}
	var out []docChange
	for i := 0; !actor.done(); i++ {
		if i >= limit {
			return nil, fmt.Errorf("more than %d changes", limit)
		}
		var c docChange
		a, ok, _, err := actor.next()
		if err != nil || !ok || a >= uint64(actors) {
			return nil, fmt.Errorf("change %d: bad actor", i)
		}
		c.actor = int(a)
		s, ok, _, err := seq.next()
		if err != nil || !ok || s < 1 {
			return nil, fmt.Errorf("change %d: bad sequence number", i)
		}
		c.seq = uint64(s)
		mo, ok, _, err := maxOp.next()
		if err != nil || !ok || mo < 0 {
			return nil, fmt.Errorf("change %d: bad max op", i)
		}
		c.maxOp = uint64(mo)
		if c.time, ok, _, err = tm.next(); err != nil || !ok {
			return nil, fmt.Errorf("change %d: bad time", i)
		}
		if c.message, _, _, err = msg.next(); err != nil {
			return nil, fmt.Errorf("change %d: bad message", i)
		}
		nd, ok, _, err := ndeps.next()
		if err != nil || !ok || nd > uint64(i) {
			return nil, fmt.Errorf("change %d: bad dependency count", i)
		}
		for range nd {
			d, ok, _, err := dep.next()
			if err != nil || !ok || d < 0 || d >= int64(i) {
				return nil, fmt.Errorf("change %d: bad dependency", i)
			}
			c.deps = append(c.deps, uint64(d))
		}
		if !extra.done() {
			if m, ok, _, err := extra.next(); err != nil || ok && m != uint64(ValueBytes) {
				return nil, fmt.Errorf("change %d: extra bytes", i)
			}
		}
		out = append(out, c)
	}
	if !seq.rle.done() || !maxOp.rle.done() || !tm.rle.done() || !msg.done() || !ndeps.done() || !dep.rle.done() || !extra.done() {
		return nil, fmt.Errorf("columns of different lengths")
	}
	return out, nil
}

// readDocOps decodes the operation columns.
func readDocOps(cols docCols, actors []string, limit int) ([]docOp, error) {
	actorAt := func(i uint64) (string, error) {
		if i >= uint64(len(actors)) {
			return "", fmt.Errorf("actor index %d beyond the %d actors", i, len(actors))
		}
		return actors[i], nil
	}
	objCols := len(cols[specDocObjActor]) > 0 && len(cols[specDocObjCtr]) > 0
	if !objCols && len(cols[specDocObjActor])+len(cols[specDocObjCtr]) > 0 {
		return nil, fmt.Errorf("object column without its pair")
	}
	idActor := newULEBs(cols[specDocIDActor])
	idCtr := deltas{rle: newSLEBs(cols[specDocIDCtr])}
	objActor := newULEBs(cols[specDocObjActor])
	objCtr := newULEBs(cols[specDocObjCtr])
	keyActor := newULEBs(cols[specDocKeyActor])
	keyCtr := deltas{rle: newSLEBs(cols[specDocKeyCtr])}
	keyStr := newStrings(cols[specDocKeyStr], string(cols[specDocKeyStr]))
	insert := bools{r: reader{b: cols[specDocInsert]}}
	action := newULEBs(cols[specDocAction])
	valMeta := newULEBs(cols[specDocValueMeta])
	valRaw := string(cols[specDocValueRaw])
	succNum := newULEBs(cols[specDocSuccGroup])
	succActor := newULEBs(cols[specDocSuccActor])
	succCtr := deltas{rle: newSLEBs(cols[specDocSuccCtr])}
	expand := bools{r: reader{b: cols[specDocExpand]}}
	markName := newStrings(cols[specDocMarkName], string(cols[specDocMarkName]))

	n, err := checkColumn(colULEB, cols[specDocAction], 0)
	if err != nil || n > uint64(limit) {
		return nil, fmt.Errorf("bad action column, or more than %d operations", limit)
	}
	out := make([]docOp, 0, n)
	succs := 0
	for i := 0; !idActor.done() || !idCtr.rle.done(); i++ {
		if i >= limit {
			return nil, fmt.Errorf("more than %d operations", limit)
		}
		fail := func(what string, err error) error {
			if err != nil {
				return fmt.Errorf("op %d: %s: %w", i, what, err)
			}
			return fmt.Errorf("op %d: bad %s", i, what)
		}
		var op docOp
		a, aok, _, err := idActor.next()
		c, cok, _, err2 := idCtr.next()
		if err != nil || err2 != nil || !aok || !cok || c < 1 {
			return nil, fail("id", cmp.Or(err, err2))
		}
		if op.ID.Actor, err = actorAt(a); err != nil {
			return nil, fail("id", err)
		}
		op.ID.Counter = uint64(c)

		if objCols {
			a, aok, _, err := objActor.next()
			c, cok, _, err2 := objCtr.next()
			switch {
			case err != nil || err2 != nil:
				return nil, fail("object", cmp.Or(err, err2))
			case cok && c == 0, !aok && !cok:
				op.Obj = Root
			case !aok || !cok:
				return nil, fail("object", nil)
			default:
				actor, err := actorAt(a)
				if err != nil {
					return nil, fail("object", err)
				}
				op.Obj = OpID{Counter: c, Actor: actor}
			}
		}

		ka, kaok, _, err := keyActor.next()
		kc, kcok, _, err2 := keyCtr.next()
		ks, ksok, _, err3 := keyStr.next()
		if err := cmp.Or(err, err2, err3); err != nil {
			return nil, fail("key", err)
		}
		switch {
		case !kaok && !kcok && ksok:
			op.Key = Key{Prop: ks}
		case !kaok && kcok && kc == 0 && !ksok:
			op.Key = Key{IsElem: true}
		case kaok && kcok && !ksok && kc >= 0:
			if ka == 0 && kc == 0 {
				op.Key = Key{IsElem: true}
				break
			}
			actor, err := actorAt(ka)
			if err != nil {
				return nil, fail("key", err)
			}
			op.Key = Key{IsElem: true, Elem: OpID{Counter: uint64(kc), Actor: actor}}
		default:
			return nil, fail("key", nil)
		}

		ins, ok, err := insert.next()
		if err != nil || !ok {
			return nil, fail("insert", err)
		}
		op.Insert = ins
		act, ok, _, err := action.next()
		if err != nil || !ok || act > uint64(ActionMark) {
			return nil, fail("action", err)
		}
		op.Action = Action(act)
		meta, ok, _, err := valMeta.next()
		if err != nil || !ok {
			return nil, fail("value", err)
		}
		if op.Value, valRaw, err = decodeValue(meta, valRaw); err != nil {
			return nil, fail("value", err)
		}
		if op.Action == ActionIncrement && op.Value.Type != ValueInt && op.Value.Type != ValueUint {
			return nil, fail("increment", nil)
		}

		ns, ok, _, err := succNum.next()
		if err != nil || !ok || ns > uint64(limit-succs) {
			return nil, fail("successors", err)
		}
		succs += int(ns)
		for range ns {
			a, aok, _, err := succActor.next()
			c, cok, _, err2 := succCtr.next()
			if err != nil || err2 != nil || !aok || !cok || c < 1 {
				return nil, fail("successor", cmp.Or(err, err2))
			}
			actor, err := actorAt(a)
			if err != nil {
				return nil, fail("successor", err)
			}
			op.succ = append(op.succ, OpID{Counter: uint64(c), Actor: actor})
		}
		if len(cols[specDocExpand]) > 0 {
			e, _, err := expand.next()
			if err != nil {
				return nil, fail("expand", err)
			}
			op.Expand = e
		}
		if op.MarkName, _, _, err = markName.next(); err != nil {
			return nil, fail("mark name", err)
		}
		out = append(out, op)
	}
	if len(valRaw) > 0 || !objActor.done() || !objCtr.done() || !keyActor.done() || !keyCtr.rle.done() || !keyStr.done() ||
		!action.done() || !valMeta.done() || !succNum.done() || !succActor.done() || !succCtr.rle.done() || !markName.done() {
		return nil, fmt.Errorf("operation columns of different lengths")
	}
	if _, ok, _ := insert.next(); ok {
		return nil, fmt.Errorf("operation columns of different lengths")
	}
	return out, nil
}

// assignOps rebuilds each change's operations from the document's, as
// automerge-rs does when it loads a document: an operation's
// predecessors are the operations of its object that list it as a
// successor, and a successor that is no operation is a deletion, of the
// key of the first operation that lists it. Each change holds the
// operations of its actor after the previous change's max op, up to its
// own.
func assignOps(changes []docChange, ops []docOp, actors []string) error {
	byID := make(map[OpID]int, len(ops))
	for i := range ops {
		if _, dup := byID[ops[i].ID]; dup {
			return fmt.Errorf("operation %s appears twice", ops[i].ID)
		}
		byID[ops[i].ID] = i
	}
	var dels []Op
	delAt := map[OpID]int{}
	for i := range ops {
		y := &ops[i]
		for _, s := range y.succ {
			if j, ok := byID[s]; ok {
				if ops[j].Obj != y.Obj {
					return fmt.Errorf("operation %s has a successor in another object", y.ID)
				}
				ops[j].Pred = append(ops[j].Pred, y.ID)
				continue
			}
			j, ok := delAt[s]
			if !ok {
				if y.Action != ActionSet && !y.Action.MakesObject() {
					return fmt.Errorf("deletion %s of a %s", s, y.Action)
				}
				key := y.Key
				if y.Insert {
					key = Key{IsElem: true, Elem: y.ID}
				}
				j = len(dels)
				delAt[s] = j
				dels = append(dels, Op{ID: s, Obj: y.Obj, Key: key, Action: ActionDelete})
			} else if dels[j].Obj != y.Obj {
				return fmt.Errorf("deletion %s in two objects", s)
			}
			dels[j].Pred = append(dels[j].Pred, y.ID)
		}
	}

	// Each actor's changes, in order.
	byActor := make([][]int, len(actors))
	for i, c := range changes {
		chs := byActor[c.actor]
		if n := len(chs); n == 0 && c.seq != 1 || n > 0 && (c.seq != changes[chs[n-1]].seq+1 || c.maxOp < changes[chs[n-1]].maxOp) {
			return fmt.Errorf("changes of actor %s out of order", actors[c.actor])
		}
		byActor[c.actor] = append(chs, i)
	}
	actorIdx := make(map[string]int, len(actors))
	for i, a := range actors {
		actorIdx[a] = i
	}
	changeOf := func(id OpID) (int, error) {
		chs := byActor[actorIdx[id.Actor]]
		i, _ := slices.BinarySearchFunc(chs, id.Counter, func(c int, ctr uint64) int { return cmp.Compare(changes[c].maxOp, ctr) })
		if i == len(chs) {
			return 0, fmt.Errorf("operation %s belongs to no change", id)
		}
		return chs[i], nil
	}
	// Count each change's operations, then place them.
	counts := make([]int, len(changes))
	for pass := range 2 {
		for i := range len(ops) + len(dels) {
			var op *Op
			if i < len(ops) {
				op = &ops[i].Op
			} else {
				op = &dels[i-len(ops)]
			}
			c, err := changeOf(op.ID)
			if err != nil {
				return err
			}
			if pass == 0 {
				if counts[c]++; counts[c] > maxDecodedOps {
					return fmt.Errorf("change %d holds more than %d operations", c, maxDecodedOps)
				}
				continue
			}
			if changes[c].ops == nil {
				changes[c].ops = make([]Op, 0, counts[c])
			}
			changes[c].ops = append(changes[c].ops, *op)
		}
	}
	for i := range changes {
		c := &changes[i]
		n := uint64(len(c.ops))
		if n > c.maxOp {
			return fmt.Errorf("change %d holds more operations than its max op", i)
		}
		slices.SortFunc(c.ops, func(a, b Op) int { return cmp.Compare(a.ID.Counter, b.ID.Counter) })
		for j := range c.ops {
			op := &c.ops[j]
			if op.ID.Counter != c.maxOp+1-n+uint64(j) {
				return fmt.Errorf("change %d: operations missing", i)
			}
			slices.SortFunc(op.Pred, func(a, b OpID) int {
				return cmp.Or(cmp.Compare(a.Counter, b.Counter), strings.Compare(a.Actor, b.Actor))
			})
		}
	}
	return nil
}

func unixMilli(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

// otherActors lists the actors, beside author, that ops name, sorted: the
// actor table Automerge writes for a change.
func otherActors(author string, ops []Op) []string {
	set := map[string]bool{}
	for _, op := range ops {
		if !op.Obj.IsRoot() {
			set[op.Obj.Actor] = true
		}
		if op.Key.IsElem && !op.Key.IsHead() {
			set[op.Key.Elem.Actor] = true
		}
		for _, p := range op.Pred {
			set[p.Actor] = true
		}
	}
	delete(set, author)
	if len(set) == 0 {
		return nil
	}
	out := make([]string, 0, len(set))
	for a := range set {
		out = append(out, a)
	}
	slices.Sort(out)
	return out
}
