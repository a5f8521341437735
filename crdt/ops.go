package crdt

import (
	"encoding/hex"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// This file decodes the operations of one raw change in Go, following the
// Automerge binary format as automerge-rs 0.5 writes and reads it (see
// rust/automerge/src/storage/change/change_op_columns.rs and
// rust/automerge/src/columnar in the automerge repository). Package record
// uses it to judge a change by what it does, without applying it.

// OpID names one operation: its counter and the actor (hex) that made
// it. An object is named by the ID of the operation that made it; the
// zero OpID is Root, the document's root map.
type OpID struct {
	Counter uint64
	Actor   string
}

// Root names the document's root map.
var Root = OpID{}

// IsRoot reports whether id names the root map.
func (id OpID) IsRoot() bool { return id == Root }

// String formats id as Automerge does ("7@aa01"), or "_root".
func (id OpID) String() string {
	if id.IsRoot() {
		return "_root"
	}
	return strconv.FormatUint(id.Counter, 10) + "@" + id.Actor
}

// Key is where an operation acts in its object: a map key (Prop), or in a
// list or text an element (Elem, with IsElem set): the element an
// inserted one follows, or the one an update or deletion changes. An
// element key with the zero Elem is the head of the sequence.
type Key struct {
	Prop   string
	Elem   OpID
	IsElem bool
}

// IsHead reports whether k names the head of a sequence.
func (k Key) IsHead() bool { return k.IsElem && k.Elem == (OpID{}) }

// String formats k as a quoted map key, an element ID or "_head".
func (k Key) String() string {
	switch {
	case !k.IsElem:
		return strconv.Quote(k.Prop)
	case k.IsHead():
		return "_head"
	}
	return k.Elem.String()
}

// Action is what an operation does, numbered as in the binary format.
type Action uint8

// The actions of automerge-rs 0.5.
const (
	ActionMakeMap   Action = 0
	ActionSet       Action = 1
	ActionMakeList  Action = 2
	ActionDelete    Action = 3
	ActionMakeText  Action = 4
	ActionIncrement Action = 5
	ActionMakeTable Action = 6
	ActionMark      Action = 7
)

var actionNames = [...]string{"makeMap", "set", "makeList", "del", "makeText", "inc", "makeTable", "mark"}

// String names the action as Automerge's documentation does.
func (a Action) String() string {
	if int(a) < len(actionNames) {
		return actionNames[a]
	}
	return "action(" + strconv.Itoa(int(a)) + ")"
}

// MakesObject reports whether the action creates an object (map, list,
// text or table), whose ID is then the operation's ID.
func (a Action) MakesObject() bool {
	switch a {
	case ActionMakeMap, ActionMakeList, ActionMakeText, ActionMakeTable:
		return true
	}
	return false
}

// ValueType is the type of an operation's scalar value, numbered as the
// low four bits of the format's value metadata.
type ValueType uint8

// The value types of the format; codes 10 to 15 are unknown types, whose
// bytes are kept.
const (
	ValueNull      ValueType = 0
	ValueFalse     ValueType = 1
	ValueTrue      ValueType = 2
	ValueUint      ValueType = 3
	ValueInt       ValueType = 4
	ValueFloat     ValueType = 5
	ValueString    ValueType = 6
	ValueBytes     ValueType = 7
	ValueCounter   ValueType = 8
	ValueTimestamp ValueType = 9
)

var valueTypeNames = [...]string{"null", "false", "true", "uint", "int", "float", "str", "bytes", "counter", "timestamp"}

// String names the type.
func (t ValueType) String() string {
	if int(t) < len(valueTypeNames) {
		return valueTypeNames[t]
	}
	return "unknown(" + strconv.Itoa(int(t)) + ")"
}

// Value is an operation's scalar value. Which field holds it depends on
// Type: Str for a string, and for bytes and unknown types their raw bytes;
// Int for int, counter and timestamp (milliseconds); Uint for uint; Float
// for float. Null, false and true carry nothing. Operations that make an
// object or delete carry a null value.
type Value struct {
	Type  ValueType
	Str   string
	Int   int64
	Uint  uint64
	Float float64
}

// Op is one operation of a change.
type Op struct {
	// ID is the operation's own ID: the change's actor, and the change's
	// StartOp plus the operation's index in the change.
	ID OpID
	// Obj is the object the operation acts on (Root for the root map).
	Obj OpID
	// Key is the map key or sequence element it acts at.
	Key Key
	// Insert is set for an operation that inserts a new element into a
	// sequence after Key.
	Insert bool
	Action Action
	Value  Value
	// Pred names the operations this one overwrites or deletes. The
	// Pred slices of one ChangeInfo may share memory.
	Pred []OpID
	// Expand and MarkName belong to marks (ActionMark); a mark with no
	// name ends a mark.
	Expand   bool
	MarkName string
}

// ChangeInfo is one change as its bytes describe it: the header and every
// operation.
type ChangeInfo struct {
	Hash Hash
	// Deps are the hashes of the changes it depends on, in the order the
	// change lists them.
	Deps    []Hash
	Actor   string
	Seq     uint64
	StartOp uint64
	Time    time.Time
	Message string
	// OtherActors are the actors, beyond Actor, its operations name; an
	// operation's actor index 0 is Actor, index i is OtherActors[i-1].
	OtherActors []string
	Ops         []Op
}

// maxDecodedOps bounds the operations (and, separately, the predecessor
// IDs) ChangeOps decodes from one change. Run-length encoding lets a few
// bytes claim many operations; a chart change has at most a few tens of
// thousands (a note is at most 20,000 characters, each an operation).
const maxDecodedOps = 1 << 17

// Column specifications of a change's operation columns: column ID << 4
// | type, as automerge-rs 0.5 writes them. No other column is accepted.
const (
	specObjActor  = 0<<4 | colActor
	specObjCtr    = 0<<4 | colULEB
	specKeyActor  = 1<<4 | colActor
	specKeyCtr    = 1<<4 | colDelta
	specKeyStr    = 1<<4 | colString
	specInsert    = 3<<4 | colBool
	specAction    = 4<<4 | colULEB
	specValueMeta = 5<<4 | colValueMeta
	specValueRaw  = 5<<4 | colValueRaw
	specPredGroup = 7<<4 | colGroup
	specPredActor = 7<<4 | colActor
	specPredCtr   = 7<<4 | colDelta
	specExpand    = 9<<4 | colBool
	specMarkName  = 10<<4 | colString
)

// ChangeOps decodes one raw change (a Change.Raw: exactly one change
// chunk) into its header and operations, without Automerge. It checks
// what ParseChanges checks before Automerge sees a change (checksum,
// header, column layout, actor indices) and everything the operations'
// decoding needs, as automerge-rs does when it reads them: every column a
// change needs is present, no column is unknown or repeated, values have
// their declared types and lengths, counters are not negative, actions
// are known and an increment carries a number.
//
// It decodes at most 131,072 operations (and as many predecessor IDs); a
// change claiming more is refused. Memory is bounded by those counts and
// the input; nothing is allocated from a length the input claims before it
// is checked against the bytes that remain.
//
// Every error matches ErrMalformed. The returned ChangeInfo shares no
// memory with raw.
func ChangeOps(raw []byte) (ChangeInfo, error) {
	b, err := parseChunk(raw)
	if err != nil {
		return ChangeInfo{}, fmt.Errorf("change ops: %v: %w", err, ErrMalformed)
	}
	info, err := decodeOps(b)
	if err != nil {
		return ChangeInfo{}, fmt.Errorf("change ops %s: %v: %w", b.hash, err, ErrMalformed)
	}
	return info, nil
}

func decodeOps(b *changeBody) (ChangeInfo, error) {
	info := ChangeInfo{
		Hash:    b.hash,
		Actor:   hex.EncodeToString(b.actor),
		Seq:     b.seq,
		StartOp: b.startOp,
		Time:    time.UnixMilli(b.time).UTC(),
	}
	if b.startOp == 0 {
		return info, fmt.Errorf("start op 0")
	}
	if !utf8.Valid(b.message) {
		return info, fmt.Errorf("message is not UTF-8")
	}
	info.Message = string(b.message)
	if len(b.deps) > 0 {
		info.Deps = make([]Hash, len(b.deps)/32)
		for i := range info.Deps {
			copy(info.Deps[i][:], b.deps[32*i:])
		}
	}
	actors := make([]string, 1, 1+len(b.others))
	actors[0] = info.Actor
	for _, a := range b.others {
		h := hex.EncodeToString(a)
		if slices.Contains(actors, h) {
			// One actor at two indices would name one operation two
			// ways; Automerge lists each actor once.
			return info, fmt.Errorf("actor %s listed twice", h)
		}
		actors = append(actors, h)
	}
	if len(actors) > 1 {
		info.OtherActors = actors[1:]
	}

	// The columns, by specification (deflate bit cleared).
	var cols [16 << 4]*column
	for i := range b.cols {
		c := &b.cols[i]
		spec := c.spec &^ 0x08
		switch spec {
		case specObjActor, specObjCtr, specKeyActor, specKeyCtr, specKeyStr, specInsert, specAction,
			specValueMeta, specValueRaw, specPredGroup, specPredActor, specPredCtr, specExpand, specMarkName:
		default:
			return info, fmt.Errorf("unknown column %d of type %d", c.spec>>4, c.spec&0x07)
		}
		if cols[spec] != nil {
			return info, fmt.Errorf("column %d of type %d appears twice", c.spec>>4, c.spec&0x07)
		}
		cols[spec] = c
	}
	data := func(spec int) []byte {
		if c := cols[spec]; c != nil {
			return c.data
		}
		return nil
	}
	if cols[specValueRaw] != nil && cols[specValueMeta] == nil {
		return info, fmt.Errorf("raw value column without its metadata")
	}
	if (cols[specPredActor] != nil || cols[specPredCtr] != nil) &&
		(cols[specPredGroup] == nil || cols[specPredActor] == nil || cols[specPredCtr] == nil) {
		return info, fmt.Errorf("incomplete predecessor columns")
	}
	var n uint64
	if c := cols[specAction]; c != nil {
		n = c.count
	}
	if n > maxDecodedOps {
		return info, fmt.Errorf("%d operations, more than the %d decoded", n, maxDecodedOps)
	}

	// Strings (map keys, values, mark names) are cut from one copy of
	// their column each.
	keyStrs := string(data(specKeyStr))
	rawVals := string(data(specValueRaw))
	markStrs := string(data(specMarkName))

	// As automerge-rs: the object columns count only if both have data.
	objCols := len(data(specObjActor)) > 0 && len(data(specObjCtr)) > 0
	objActor := newULEBs(data(specObjActor))
	objCtr := newULEBs(data(specObjCtr))
	keyActor := newULEBs(data(specKeyActor))
	keyCtr := deltas{rle: newSLEBs(data(specKeyCtr))}
	keyStr := newStrings(data(specKeyStr), keyStrs)
	insert := bools{r: reader{b: data(specInsert)}}
	action := newULEBs(data(specAction))
	valMeta := newULEBs(data(specValueMeta))
	valRaw := rawVals
	predNum := newULEBs(data(specPredGroup))
	predActor := newULEBs(data(specPredActor))
	predCtr := deltas{rle: newSLEBs(data(specPredCtr))}
	expandData := data(specExpand)
	expand := bools{r: reader{b: expandData}}
	markName := newStrings(data(specMarkName), markStrs)

	actorAt := func(i uint64) (string, error) {
		if i >= uint64(len(actors)) {
			return "", fmt.Errorf("actor index %d beyond the %d actors of the change", i, len(actors))
		}
		return actors[i], nil
	}

	info.Ops = make([]Op, 0, n)
	var preds []OpID
	for i := uint64(0); !action.done(); i++ {
		if i >= n {
			return info, fmt.Errorf("action column describes more operations than it counts")
		}
		op := Op{ID: OpID{Counter: b.startOp + i, Actor: info.Actor}}
		if op.ID.Counter < b.startOp {
			return info, fmt.Errorf("operation counter overflows")
		}

		// Object.
		if objCols {
			a, aok, _, err := objActor.next()
			if err != nil {
				return info, fmt.Errorf("op %d: object actor: %w", i, err)
			}
			c, cok, _, err := objCtr.next()
			if err != nil {
				return info, fmt.Errorf("op %d: object counter: %w", i, err)
			}
			switch {
			case cok && c == 0, !aok && !cok:
				op.Obj = Root
			case !aok:
				return info, fmt.Errorf("op %d: object without an actor", i)
			case !cok:
				return info, fmt.Errorf("op %d: object without a counter", i)
			default:
				actor, err := actorAt(a)
				if err != nil {
					return info, fmt.Errorf("op %d: object: %w", i, err)
				}
				op.Obj = OpID{Counter: c, Actor: actor}
			}
		}

		// Key.
		ka, kaok, _, err := keyActor.next()
		if err != nil {
			return info, fmt.Errorf("op %d: key actor: %w", i, err)
		}
		kc, kcok, _, err := keyCtr.next()
		if err != nil {
			return info, fmt.Errorf("op %d: key counter: %w", i, err)
		}
		ks, ksok, _, err := keyStr.next()
		if err != nil {
			return info, fmt.Errorf("op %d: key string: %w", i, err)
		}
		switch {
		case kaok && kcok && ksok:
			return info, fmt.Errorf("op %d: key is both a string and an element", i)
		case !kaok && !kcok && ksok:
			op.Key = Key{Prop: ks}
		case !kaok && kcok && kc == 0 && !ksok:
			op.Key = Key{IsElem: true}
		case kaok && kcok && !ksok:
			if kc < 0 {
				return info, fmt.Errorf("op %d: negative key counter", i)
			}
			if ka == 0 && kc == 0 {
				op.Key = Key{IsElem: true} // the head, as automerge-rs reads it
				break
			}
			actor, err := actorAt(ka)
			if err != nil {
				return info, fmt.Errorf("op %d: key: %w", i, err)
			}
			op.Key = Key{IsElem: true, Elem: OpID{Counter: uint64(kc), Actor: actor}}
		case !kaok && !kcok && !ksok:
			return info, fmt.Errorf("op %d: no key", i)
		case !kaok:
			return info, fmt.Errorf("op %d: key element without an actor", i)
		default:
			return info, fmt.Errorf("op %d: key element without a counter", i)
		}

		// Insert.
		ins, ok, err := insert.next()
		if err != nil {
			return info, fmt.Errorf("op %d: insert: %w", i, err)
		}
		if !ok {
			return info, fmt.Errorf("op %d: insert column ends early", i)
		}
		op.Insert = ins

		// Action.
		act, aok, _, err := action.next()
		if err != nil {
			return info, fmt.Errorf("op %d: action: %w", i, err)
		}
		if !aok {
			return info, fmt.Errorf("op %d: no action", i)
		}
		if act > uint64(ActionMark) {
			return info, fmt.Errorf("op %d: unknown action %d", i, act)
		}
		op.Action = Action(act)

		// Value.
		meta, mok, _, err := valMeta.next()
		if err != nil {
			return info, fmt.Errorf("op %d: value metadata: %w", i, err)
		}
		if !mok {
			return info, fmt.Errorf("op %d: no value metadata", i)
		}
		if op.Value, valRaw, err = decodeValue(meta, valRaw); err != nil {
			return info, fmt.Errorf("op %d: value: %w", i, err)
		}
		if op.Action == ActionIncrement && op.Value.Type != ValueInt && op.Value.Type != ValueUint {
			return info, fmt.Errorf("op %d: increment by a %s", i, op.Value.Type)
		}

		// Predecessors.
		np, pok, _, err := predNum.next()
		if err != nil {
			return info, fmt.Errorf("op %d: predecessor count: %w", i, err)
		}
		if !pok {
			return info, fmt.Errorf("op %d: no predecessor count", i)
		}
		if np > maxDecodedOps-uint64(len(preds)) {
			return info, fmt.Errorf("op %d: more than %d predecessors in the change", i, maxDecodedOps)
		}
		start := len(preds)
		for j := uint64(0); j < np; j++ {
			pa, paok, _, err := predActor.next()
			if err != nil {
				return info, fmt.Errorf("op %d: predecessor actor: %w", i, err)
			}
			pc, pcok, _, err := predCtr.next()
			if err != nil {
				return info, fmt.Errorf("op %d: predecessor counter: %w", i, err)
			}
			if !paok {
				return info, fmt.Errorf("op %d: predecessor without an actor", i)
			}
			if !pcok {
				return info, fmt.Errorf("op %d: predecessor without a counter", i)
			}
			if pc < 0 {
				return info, fmt.Errorf("op %d: negative predecessor counter", i)
			}
			actor, err := actorAt(pa)
			if err != nil {
				return info, fmt.Errorf("op %d: predecessor: %w", i, err)
			}
			preds = append(preds, OpID{Counter: uint64(pc), Actor: actor})
		}
		if np > 0 {
			op.Pred = preds[start:len(preds):len(preds)]
		}

		// Marks.
		if len(expandData) > 0 {
			e, _, err := expand.next()
			if err != nil {
				return info, fmt.Errorf("op %d: expand: %w", i, err)
			}
			op.Expand = e
		}
		name, _, _, err := markName.next()
		if err != nil {
			return info, fmt.Errorf("op %d: mark name: %w", i, err)
		}
		op.MarkName = name

		info.Ops = append(info.Ops, op)
	}
	if len(info.Ops) == 0 {
		info.Ops = nil
	}
	return info, nil
}

// decodeValue decodes one value of metadata meta from the front of raw,
// returning the rest of raw.
func decodeValue(meta uint64, raw string) (Value, string, error) {
	v := Value{Type: ValueType(meta & 0x0f)}
	n := meta >> 4
	switch v.Type {
	case ValueNull, ValueFalse, ValueTrue:
		return v, raw, nil // no bytes, whatever the length says
	}
	if n > uint64(len(raw)) {
		return v, raw, fmt.Errorf("%s of %d bytes beyond the value column", v.Type, n)
	}
	b, rest := raw[:n], raw[n:]
	switch v.Type {
	case ValueUint:
		x, ok := strictUvarint(b)
		if !ok {
			return v, rest, fmt.Errorf("bad uint")
		}
		v.Uint = x
	case ValueInt, ValueCounter, ValueTimestamp:
		x, ok := strictSvarint(b)
		if !ok {
			return v, rest, fmt.Errorf("bad %s", v.Type)
		}
		v.Int = x
	case ValueFloat:
		if n != 8 {
			return v, rest, fmt.Errorf("float of %d bytes", n)
		}
		var bits uint64
		for i := 7; i >= 0; i-- {
			bits = bits<<8 | uint64(b[i])
		}
		v.Float = math.Float64frombits(bits)
	case ValueString:
		if !utf8.ValidString(b) {
			return v, rest, fmt.Errorf("string is not UTF-8")
		}
		v.Str = b
	default: // bytes, unknown types
		v.Str = b
	}
	return v, rest, nil
}

// strictUvarint reads an unsigned LEB128 value that fills b exactly, as
// automerge-rs reads a value: not overlong, not beyond 64 bits.
func strictUvarint(b string) (uint64, bool) {
	var v uint64
	var shift uint
	for i := 0; i < len(b); i++ {
		c := b[i]
		v |= uint64(c&0x7f) << shift
		shift += 7
		if c&0x80 == 0 {
			if shift > 64 && c > 1 || shift > 7 && c == 0 {
				return 0, false
			}
			return v, i == len(b)-1
		}
		if shift > 64 {
			return 0, false
		}
	}
	return 0, false
}

// strictSvarint is strictUvarint for a signed LEB128 value.
func strictSvarint(b string) (int64, bool) {
	var v int64
	var shift uint
	var prev byte
	for i := 0; i < len(b); i++ {
		c := b[i]
		v |= int64(c&0x7f) << shift
		shift += 7
		if c&0x80 == 0 {
			switch {
			case shift > 64 && c != 0 && c != 0x7f:
				return 0, false
			case shift > 7 && (c == 0 && prev&0x40 == 0 || c == 0x7f && prev&0x40 != 0):
				return 0, false
			case shift < 64 && c&0x40 != 0:
				v |= -1 << shift
			}
			return v, i == len(b)-1
		}
		if shift > 64 {
			return 0, false
		}
		prev = c
	}
	return 0, false
}

// rle decodes a run-length encoded column (see checkColumn): runs of one
// value, literal runs, and runs of nulls. next returns each value in
// turn: ok is false for a null, end is true once the column is exhausted.
type rle[T any] struct {
	r       reader
	read    func(*reader) T
	count   uint64
	literal bool
	last    T
	lastOK  bool
}

func newULEBs(b []byte) rle[uint64] {
	return rle[uint64]{r: reader{b: b}, read: func(r *reader) uint64 { return r.uvarint("value") }}
}

func newSLEBs(b []byte) rle[int64] {
	return rle[int64]{r: reader{b: b}, read: func(r *reader) int64 { return r.svarint("value") }}
}

// newStrings decodes a string column b; s is string(b), from which the
// strings it returns are cut.
func newStrings(b []byte, s string) rle[string] {
	return rle[string]{r: reader{b: b}, read: func(r *reader) string {
		n := r.uvarint("string length")
		start := len(s) - len(r.b)
		if r.bytes(n, "string"); r.err != nil {
			return ""
		}
		str := s[start : start+int(n)]
		if !utf8.ValidString(str) {
			r.fail("UTF-8 string")
		}
		return str
	}}
}

// done reports whether every value has been read.
func (d *rle[T]) done() bool { return d.count == 0 && len(d.r.b) == 0 }

func (d *rle[T]) next() (v T, ok, end bool, err error) {
	for d.count == 0 {
		if len(d.r.b) == 0 {
			return v, false, true, nil
		}
		n := d.r.svarint("run length")
		switch {
		case d.r.err != nil:
		case n > 0:
			d.count, d.literal = uint64(n), false
			d.last, d.lastOK = d.read(&d.r), true
		case n < 0:
			if n == math.MinInt64 {
				d.r.fail("run length")
				break
			}
			d.count, d.literal = uint64(-n), true
		default:
			d.count, d.literal, d.lastOK = d.r.uvarint("null run"), false, false
		}
		if d.r.err != nil {
			return v, false, false, d.r.err
		}
	}
	d.count--
	if d.literal {
		v = d.read(&d.r)
		if d.r.err != nil {
			return v, false, false, d.r.err
		}
		return v, true, false, nil
	}
	if d.lastOK {
		return d.last, true, false, nil
	}
	return v, false, false, nil
}

// deltas decodes a delta column: run-length encoded differences from the
// previous value (nulls aside), starting at 0, added with saturation as
// automerge-rs does.
type deltas struct {
	rle rle[int64]
	abs int64
}

func (d *deltas) next() (v int64, ok, end bool, err error) {
	delta, ok, end, err := d.rle.next()
	if err != nil || !ok {
		return 0, false, end, err
	}
	switch {
	case delta > 0 && d.abs > math.MaxInt64-delta:
		d.abs = math.MaxInt64
	case delta < 0 && d.abs < math.MinInt64-delta:
		d.abs = math.MinInt64
	default:
		d.abs += delta
	}
	return d.abs, true, false, nil
}

// bools decodes a boolean column: alternating run lengths of false and
// true, starting with false. ok is false once the column is exhausted.
type bools struct {
	r     reader
	last  bool
	count uint64
	begun bool
}

func (d *bools) next() (v, ok bool, err error) {
	if !d.begun {
		d.begun, d.last = true, true
	}
	for d.count == 0 {
		if len(d.r.b) == 0 {
			return false, false, nil
		}
		d.count = d.r.uvarint("run length")
		if d.r.err != nil {
			return false, false, d.r.err
		}
		d.last = !d.last
	}
	d.count--
	return d.last, true, nil
}
