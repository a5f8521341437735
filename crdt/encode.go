package crdt

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
)

// EncodeChange encodes info as one raw change chunk: the inverse of
// ChangeOps. Its columns are written as automerge-rs 0.5 writes them, so
// a change Automerge made encodes back to exactly its own bytes. It is
// meant for tests and tools that need changes Automerge would not make
// (a forged change, say): nothing checks that the operations make sense.
//
// info.Hash is ignored (the result's hash is that of its bytes). Every
// operation's ID must be (info.Actor, info.StartOp + its index), and
// every actor an operation names must be info.Actor or one of
// info.OtherActors; otherwise, or for an actor that is not hex, it
// returns an error matching ErrMalformed.
func EncodeChange(info ChangeInfo) ([]byte, error) {
	actors := map[string]uint64{info.Actor: 0}
	var others [][]byte
	actor, err := hex.DecodeString(info.Actor)
	if err != nil || len(actor) == 0 {
		return nil, fmt.Errorf("encode change: actor %q: %w", info.Actor, ErrMalformed)
	}
	for i, a := range info.OtherActors {
		b, err := hex.DecodeString(a)
		if err != nil || len(b) == 0 {
			return nil, fmt.Errorf("encode change: actor %q: %w", a, ErrMalformed)
		}
		if _, dup := actors[a]; !dup {
			actors[a] = uint64(i + 1)
		}
		others = append(others, b)
	}
	index := func(a string) (uint64, error) {
		i, ok := actors[a]
		if !ok {
			return 0, fmt.Errorf("encode change: actor %q is not among the change's actors: %w", a, ErrMalformed)
		}
		return i, nil
	}

	var (
		objActor, objCtr, keyActor, action, valMeta, predNum, predActor = newULEBEnc(), newULEBEnc(), newULEBEnc(), newULEBEnc(), newULEBEnc(), newULEBEnc(), newULEBEnc()
		keyCtr, predCtr                                                 = deltaEnc{rle: newSLEBEnc()}, deltaEnc{rle: newSLEBEnc()}
		keyStr, markName                                                = newStringEnc(), newStringEnc()
		insert, expand                                                  boolEnc
		anyExpand                                                       bool
		valRaw                                                          []byte
	)
	for i, op := range info.Ops {
		if op.ID != (OpID{Counter: info.StartOp + uint64(i), Actor: info.Actor}) {
			return nil, fmt.Errorf("encode change: op %d has ID %s: %w", i, op.ID, ErrMalformed)
		}
		if op.Obj.IsRoot() {
			objActor.appendNull()
			objCtr.appendNull()
		} else {
			a, err := index(op.Obj.Actor)
			if err != nil {
				return nil, err
			}
			objActor.append(a)
			objCtr.append(op.Obj.Counter)
		}
		switch {
		case !op.Key.IsElem:
			keyActor.appendNull()
			keyCtr.appendNull()
			keyStr.append(op.Key.Prop)
		case op.Key.IsHead():
			keyActor.appendNull()
			keyCtr.append(0)
			keyStr.appendNull()
		default:
			a, err := index(op.Key.Elem.Actor)
			if err != nil {
				return nil, err
			}
			keyActor.append(a)
			keyCtr.append(int64(op.Key.Elem.Counter))
			keyStr.appendNull()
		}
		insert.append(op.Insert)
		action.append(uint64(op.Action))
		var meta uint64
		meta, valRaw = appendValue(valRaw, op.Value)
		valMeta.append(meta)
		predNum.append(uint64(len(op.Pred)))
		for _, p := range op.Pred {
			a, err := index(p.Actor)
			if err != nil {
				return nil, err
			}
			predActor.append(a)
			predCtr.append(int64(p.Counter))
		}
		expand.append(op.Expand)
		anyExpand = anyExpand || op.Expand
		if op.MarkName != "" {
			markName.append(op.MarkName)
		} else {
			markName.appendNull()
		}
	}
	cols := []struct {
		spec uint64
		data []byte
	}{
		{specObjActor, objActor.finish()},
		{specObjCtr, objCtr.finish()},
		{specKeyActor, keyActor.finish()},
		{specKeyCtr, keyCtr.rle.finish()},
		{specKeyStr, keyStr.finish()},
		{specInsert, insert.finish()},
		{specAction, action.finish()},
		{specValueMeta, valMeta.finish()},
		{specValueRaw, valRaw},
		{specPredGroup, predNum.finish()},
		{specPredActor, predActor.finish()},
		{specPredCtr, predCtr.rle.finish()},
		{specExpand, expand.finishIf(anyExpand)},
		{specMarkName, markName.finish()},
	}

	body := binary.AppendUvarint(nil, uint64(len(info.Deps)))
	for _, d := range info.Deps {
		body = append(body, d[:]...)
	}
	body = appendBytes(body, actor)
	body = binary.AppendUvarint(body, info.Seq)
	body = binary.AppendUvarint(body, info.StartOp)
	body = appendSLEB(body, info.Time.UnixMilli())
	body = appendBytes(body, []byte(info.Message))
	body = binary.AppendUvarint(body, uint64(len(others)))
	for _, o := range others {
		body = appendBytes(body, o)
	}
	n := 0
	for _, c := range cols {
		if len(c.data) > 0 {
			n++
		}
	}
	body = binary.AppendUvarint(body, uint64(n))
	for _, c := range cols {
		if len(c.data) > 0 {
			body = binary.AppendUvarint(body, c.spec)
			body = binary.AppendUvarint(body, uint64(len(c.data)))
		}
	}
	for _, c := range cols {
		body = append(body, c.data...)
	}

	chunk := append([]byte(nil), chunkMagic...)
	chunk = append(chunk, 0, 0, 0, 0, chunkChange)
	chunk = binary.AppendUvarint(chunk, uint64(len(body)))
	chunk = append(chunk, body...)
	sum := sha256.Sum256(chunk[8:])
	copy(chunk[4:8], sum[:4])
	return chunk, nil
}

func appendBytes(b, s []byte) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// appendSLEB appends v as signed LEB128 (not zig-zag), as few bytes as
// it needs.
func appendSLEB(b []byte, v int64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 && c&0x40 == 0 || v == -1 && c&0x40 != 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// appendValue appends v's bytes to raw and returns its metadata.
func appendValue(raw []byte, v Value) (uint64, []byte) {
	start := len(raw)
	switch v.Type {
	case ValueNull, ValueFalse, ValueTrue:
	case ValueUint:
		raw = binary.AppendUvarint(raw, v.Uint)
	case ValueInt, ValueCounter, ValueTimestamp:
		raw = appendSLEB(raw, v.Int)
	case ValueFloat:
		raw = binary.LittleEndian.AppendUint64(raw, math.Float64bits(v.Float))
	default: // string, bytes, unknown types
		raw = append(raw, v.Str...)
	}
	return uint64(len(raw)-start)<<4 | uint64(v.Type&0x0f), raw
}

// rleEnc is automerge-rs's run-length encoder (RleEncoder), state for
// state, so that its output matches byte for byte: a lone value or
// differing values are a literal run, two or more equal values a run,
// nulls a null run, and nulls before any value nothing at all.
type rleEnc[T comparable] struct {
	buf   []byte
	write func([]byte, T) []byte
	state int // rleEmpty...
	last  T
	lit   []T
	n     uint64
}

const (
	rleEmpty = iota
	rleInitialNulls
	rleNulls
	rleLone
	rleRun
	rleLiteral
)

func newULEBEnc() rleEnc[uint64] { return rleEnc[uint64]{write: binary.AppendUvarint} }
func newSLEBEnc() rleEnc[int64]  { return rleEnc[int64]{write: appendSLEB} }
func newStringEnc() rleEnc[string] {
	return rleEnc[string]{write: func(b []byte, s string) []byte { return appendBytes(b, []byte(s)) }}
}

func (e *rleEnc[T]) flushRun(v T, n uint64) {
	e.buf = appendSLEB(e.buf, int64(n))
	e.buf = e.write(e.buf, v)
}

func (e *rleEnc[T]) flushNulls(n uint64) {
	e.buf = appendSLEB(e.buf, 0)
	e.buf = binary.AppendUvarint(e.buf, n)
}

func (e *rleEnc[T]) flushLiteral(run []T) {
	e.buf = appendSLEB(e.buf, -int64(len(run)))
	for _, v := range run {
		e.buf = e.write(e.buf, v)
	}
}

func (e *rleEnc[T]) appendNull() {
	switch e.state {
	case rleEmpty:
		e.state, e.n = rleInitialNulls, 1
		return
	case rleInitialNulls, rleNulls:
		e.n++
		return
	case rleLone:
		e.flushLiteral([]T{e.last})
	case rleRun:
		e.flushRun(e.last, e.n)
	case rleLiteral:
		e.flushLiteral(append(e.lit, e.last))
		e.lit = nil
	}
	e.state, e.n = rleNulls, 1
}

func (e *rleEnc[T]) append(v T) {
	switch e.state {
	case rleEmpty:
		e.state, e.last = rleLone, v
	case rleLone:
		if e.last == v {
			e.state, e.n = rleRun, 2
		} else {
			e.state, e.lit, e.last = rleLiteral, []T{e.last}, v
		}
	case rleRun:
		if e.last == v {
			e.n++
		} else {
			e.flushRun(e.last, e.n)
			e.state, e.last = rleLone, v
		}
	case rleLiteral:
		if e.last == v {
			e.flushLiteral(e.lit)
			e.state, e.lit, e.n = rleRun, nil, 2
		} else {
			e.lit = append(e.lit, e.last)
			e.last = v
		}
	case rleNulls, rleInitialNulls:
		e.flushNulls(e.n)
		e.state, e.last = rleLone, v
	}
}

func (e *rleEnc[T]) finish() []byte {
	switch e.state {
	case rleNulls:
		e.flushNulls(e.n)
	case rleLone:
		e.flushLiteral([]T{e.last})
	case rleRun:
		e.flushRun(e.last, e.n)
	case rleLiteral:
		e.flushLiteral(append(e.lit, e.last))
	}
	e.state = rleEmpty
	return e.buf
}

// deltaEnc is automerge-rs's DeltaEncoder: differences from the previous
// value, subtracted with saturation, run-length encoded.
type deltaEnc struct {
	rle rleEnc[int64]
	abs int64
}

func (e *deltaEnc) append(v int64) {
	d := v - e.abs
	switch {
	case e.abs < 0 && v > math.MaxInt64+e.abs:
		d = math.MaxInt64
	case e.abs > 0 && v < math.MinInt64+e.abs:
		d = math.MinInt64
	}
	e.rle.append(d)
	e.abs = v
}

func (e *deltaEnc) appendNull() { e.rle.appendNull() }

// boolEnc is automerge-rs's BooleanEncoder: alternating run lengths,
// starting with false.
type boolEnc struct {
	buf   []byte
	last  bool
	count uint64
}

func (e *boolEnc) append(v bool) {
	if v == e.last {
		e.count++
		return
	}
	e.buf = binary.AppendUvarint(e.buf, e.count)
	e.last, e.count = v, 1
}

func (e *boolEnc) finish() []byte {
	if e.count > 0 {
		e.buf = binary.AppendUvarint(e.buf, e.count)
	}
	return e.buf
}

// finishIf is finish for a column written only when some value is true
// (automerge-rs's MaybeBooleanEncoder).
func (e *boolEnc) finishIf(any bool) []byte {
	if !any {
		return nil
	}
	return e.finish()
}
