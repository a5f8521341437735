package crdt

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// docRow is the one operation of a hand-built document of one change by
// actor aa01: column values as they are encoded, so that a test can write
// what Automerge would not.
type docRow struct {
	idActor, action, valueMeta uint64
	objActor, objCtr           uint64 // an object other than the root when objCtr > 0
	value                      string
}

// handDocument writes a document chunk holding one change (seq 1, max op 1)
// whose operation is row, with a valid checksum, and heads naming the
// change a well-formed row would make.
func handDocument(t *testing.T, row docRow) []byte {
	t.Helper()
	actor, _ := hex.DecodeString("aa01")
	col := func(e interface{ finish() []byte }) []byte { return e.finish() }
	one := func(v uint64) []byte { e := newULEBEnc(); e.append(v); return col(&e) }
	delta := func(v int64) []byte { e := deltaEnc{rle: newSLEBEnc()}; e.append(v); return e.rle.finish() }
	keys := newStringEnc()
	keys.append("k")
	var ins boolEnc
	ins.append(false)

	changeCols := []struct {
		spec uint64
		data []byte
	}{
		{specDocChangeActor, one(0)},
		{specDocChangeSeq, delta(1)},
		{specDocChangeMaxOp, delta(1)},
		{specDocChangeTime, delta(0)},
		{specDocDepsGroup, one(0)},
	}
	opCols := []struct {
		spec uint64
		data []byte
	}{}
	if row.objCtr > 0 {
		opCols = append(opCols,
			struct {
				spec uint64
				data []byte
			}{specDocObjActor, one(row.objActor)},
			struct {
				spec uint64
				data []byte
			}{specDocObjCtr, one(row.objCtr)})
	}
	opCols = append(opCols, []struct {
		spec uint64
		data []byte
	}{
		{specDocKeyStr, keys.finish()},
		{specDocIDActor, one(row.idActor)},
		{specDocIDCtr, delta(1)},
		{specDocInsert, ins.finish()},
		{specDocAction, one(row.action)},
		{specDocValueMeta, one(row.valueMeta)},
		{specDocValueRaw, []byte(row.value)},
		{specDocSuccGroup, one(0)},
	}...)

	// The heads: the change a set of "v" at "k" in the root makes.
	raw, err := EncodeChange(ChangeInfo{Actor: "aa01", Seq: 1, StartOp: 1, Time: time.UnixMilli(0), Ops: []Op{
		{ID: OpID{Counter: 1, Actor: "aa01"}, Key: Key{Prop: "k"}, Action: ActionSet, Value: Value{Type: ValueString, Str: "v"}},
	}})
	require.NoError(t, err)
	head := sha256.Sum256(raw[8:])

	body := binary.AppendUvarint(nil, 1)
	body = appendBytes(body, actor)
	body = binary.AppendUvarint(body, 1)
	body = append(body, head[:]...)
	var data []byte
	for _, cols := range [][]struct {
		spec uint64
		data []byte
	}{changeCols, opCols} {
		body = binary.AppendUvarint(body, uint64(len(cols)))
		for _, c := range cols {
			body = binary.AppendUvarint(body, c.spec)
			body = binary.AppendUvarint(body, uint64(len(c.data)))
			data = append(data, c.data...)
		}
	}
	body = append(body, data...)
	body = binary.AppendUvarint(body, 0) // head index
	chunk := append([]byte{}, chunkMagic...)
	chunk = append(chunk, 0, 0, 0, 0, chunkDocument)
	chunk = binary.AppendUvarint(chunk, uint64(len(body)))
	chunk = append(chunk, body...)
	sum := sha256.Sum256(chunk[8:])
	copy(chunk[4:8], sum[:4])
	return chunk
}

// Crafted documents with valid checksums that automerge-rs would panic on
// (aborting the process) or load wrongly are refused by Load, in Go.
func TestLoadRefusesCraftedDocuments(t *testing.T) {
	good := docRow{action: uint64(ActionSet), valueMeta: 1<<4 | uint64(ValueString), value: "v"}
	d, err := Load(handDocument(t, good), "bb02")
	require.NoError(t, err, "the hand-built document is well formed")
	v, err := d.String(nil, "k")
	require.NoError(t, err)
	assert.Equal(t, "v", v)

	cases := map[string]func(r *docRow){
		"unknown action (automerge-rs: validate_action_and_value returned UnknownAction)": func(r *docRow) { r.action = 8 },
		"actor index beyond the actors": func(r *docRow) { r.idActor = 5 },
		"value of an unknown type":      func(r *docRow) { r.valueMeta = 1<<4 | 12 },
		"increment of a string":         func(r *docRow) { r.action = uint64(ActionIncrement) },
		"table":                         func(r *docRow) { r.action, r.valueMeta, r.value = uint64(ActionMakeTable), 0, "" },
		"object that does not exist":    func(r *docRow) { r.objCtr = 7 },
		"object beyond the actors":      func(r *docRow) { r.objActor, r.objCtr = 3, 1 },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			row := good
			mutate(&row)
			_, err := Load(handDocument(t, row), "bb02")
			require.ErrorIs(t, err, ErrMalformed)
		})
	}
}

// A document holding a change Automerge applied only in part (here, one
// whose sequence number skips, applied behind Apply's back) does not save
// to bytes that load: SaveChecked says so, and Load refuses the bytes.
func TestSaveCheckedRefusesADocumentThatDoesNotLoad(t *testing.T) {
	d, err := New("aa01")
	require.NoError(t, err)
	_, err = d.Edit("init", time.UnixMilli(0), func(tx *Tx) error { return tx.PutMap(nil, "m") })
	require.NoError(t, err)
	chs, err := d.Changes(nil)
	require.NoError(t, err)
	info, err := ChangeOps(chs[0].Raw)
	require.NoError(t, err)
	next := ChangeInfo{Deps: []Hash{chs[0].Hash}, Actor: "aa01", Seq: 3, StartOp: 2, Time: info.Time, Ops: []Op{
		{ID: OpID{Counter: 2, Actor: "aa01"}, Obj: OpID{Counter: 1, Actor: "aa01"}, Key: Key{Prop: "dose"}, Action: ActionSet, Value: Value{Type: ValueString, Str: "1 g"}},
	}}
	raw, err := EncodeChange(next)
	require.NoError(t, err)
	require.NoError(t, d.am.LoadIncremental(raw), "automerge applies the skipping change")

	_, err = d.SaveChecked()
	require.ErrorIs(t, err, ErrUnsaveable)
	_, err = Load(d.Save(), "")
	require.ErrorIs(t, err, ErrMalformed)
}

// A document of a hundred bytes whose run-length encoded columns claim a
// million operations is refused before they are decoded.
func TestLoadRefusesDocumentsClaimingMoreRowsThanTheirSize(t *testing.T) {
	n := int64(1 << 20)
	run := func(v uint64) []byte { return binary.AppendUvarint(appendSLEB(nil, n), v) }
	one := func(v uint64) []byte { e := newULEBEnc(); e.append(v); return e.finish() }
	keys := appendBytes(appendSLEB(nil, n), []byte("k"))
	type col struct {
		spec uint64
		data []byte
	}
	body := binary.AppendUvarint(nil, 1)
	body = appendBytes(body, []byte{0xaa, 0x01})
	body = binary.AppendUvarint(body, 1)
	body = append(body, make([]byte, 32)...)
	var data []byte
	for _, cols := range [][]col{
		{{specDocChangeActor, one(0)}, {specDocChangeSeq, appendSLEB(appendSLEB(nil, -1), 1)}, {specDocChangeMaxOp, appendSLEB(appendSLEB(nil, -1), n)}, {specDocChangeTime, appendSLEB(appendSLEB(nil, -1), 0)}, {specDocDepsGroup, one(0)}},
		{{specDocKeyStr, keys}, {specDocIDActor, run(0)}, {specDocIDCtr, appendSLEB(appendSLEB(nil, n), 1)}, {specDocInsert, binary.AppendUvarint(nil, uint64(n))}, {specDocAction, run(1)}, {specDocValueMeta, run(0)}, {specDocSuccGroup, run(0)}},
	} {
		body = binary.AppendUvarint(body, uint64(len(cols)))
		for _, c := range cols {
			body = binary.AppendUvarint(body, c.spec)
			body = binary.AppendUvarint(body, uint64(len(c.data)))
			data = append(data, c.data...)
		}
	}
	body = append(body, data...)
	chunk := append(append([]byte{}, chunkMagic...), 0, 0, 0, 0, chunkDocument)
	chunk = append(binary.AppendUvarint(chunk, uint64(len(body))), body...)
	sum := sha256.Sum256(chunk[8:])
	copy(chunk[4:8], sum[:4])
	require.Less(t, len(chunk), 200)
	_, err := Load(chunk, "")
	require.ErrorIs(t, err, ErrMalformed)
}
