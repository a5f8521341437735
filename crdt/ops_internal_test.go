package crdt

import (
	"bytes"
	"compress/flate"
	"crypto/sha256"
	"encoding/binary"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// chunkOf builds a change chunk by actor aa01 (seq 1, start op startOp,
// message msg) from operation columns given by specification, written in
// ascending order of specification.
func chunkOf(startOp uint64, msg string, cols map[uint64][]byte) []byte {
	body := binary.AppendUvarint(nil, 0)         // no dependencies
	body = appendBytes(body, []byte{0xaa, 0x01}) // actor
	body = binary.AppendUvarint(body, 1)         // seq
	body = binary.AppendUvarint(body, startOp)   // start op
	body = appendSLEB(body, 1_700_000_000_000)   // time
	body = appendBytes(body, []byte(msg))        // message
	body = binary.AppendUvarint(body, 0)         // no other actors
	specs := make([]uint64, 0, len(cols))
	for s := range cols {
		specs = append(specs, s)
	}
	slices.Sort(specs)
	body = binary.AppendUvarint(body, uint64(len(specs)))
	for _, s := range specs {
		body = binary.AppendUvarint(body, s)
		body = binary.AppendUvarint(body, uint64(len(cols[s])))
	}
	for _, s := range specs {
		body = append(body, cols[s]...)
	}
	chunk := append([]byte(nil), chunkMagic...)
	chunk = append(chunk, 0, 0, 0, 0, chunkChange)
	chunk = binary.AppendUvarint(chunk, uint64(len(body)))
	chunk = append(chunk, body...)
	sum := sha256.Sum256(chunk[8:])
	copy(chunk[4:8], sum[:4])
	return chunk
}

// oneSet is the columns of one operation setting root key "k" to "v".
func oneSet() map[uint64][]byte {
	return map[uint64][]byte{
		specKeyStr:    {0x7f, 1, 'k'},   // literal run of one string
		specInsert:    {1},              // one false
		specAction:    {0x7f, 1},        // literal run: set
		specValueMeta: {0x7f, 1<<4 | 6}, // a string of one byte
		specValueRaw:  {'v'},
		specPredGroup: {0x7f, 0}, // no predecessors
	}
}

func with(cols map[uint64][]byte, spec uint64, data []byte) map[uint64][]byte {
	out := map[uint64][]byte{}
	for k, v := range cols {
		out[k] = v
	}
	if data == nil {
		delete(out, spec)
	} else {
		out[spec] = data
	}
	return out
}

func TestChangeOpsReadsHandBuiltColumns(t *testing.T) {
	info, err := ChangeOps(chunkOf(5, "m", oneSet()))
	require.NoError(t, err)
	assert.Equal(t, []Op{{ID: OpID{5, "aa01"}, Obj: Root, Key: Key{Prop: "k"}, Action: ActionSet,
		Value: Value{Type: ValueString, Str: "v"}}}, info.Ops)

	// As automerge-rs reads them: an object counter column without its
	// actor column leaves every object the root; a counter of 0 is the
	// root whatever the actor.
	info, err = ChangeOps(chunkOf(5, "m", with(oneSet(), specObjCtr, []byte{0x7f, 7})))
	require.NoError(t, err)
	assert.Equal(t, Root, info.Ops[0].Obj)
	info, err = ChangeOps(chunkOf(5, "m", with(with(oneSet(), specObjCtr, []byte{0x7f, 0}), specObjActor, []byte{0x7f, 0})))
	require.NoError(t, err)
	assert.Equal(t, Root, info.Ops[0].Obj)
	// A deflated column is inflated.
	info, err = ChangeOps(chunkOf(5, "m", with(with(oneSet(), specAction, nil), specAction|0x08, deflate(t, []byte{0x7f, 1}))))
	require.NoError(t, err)
	assert.Equal(t, ActionSet, info.Ops[0].Action)
}

func TestChangeOpsRefusesMalformedColumns(t *testing.T) {
	many := func(n int64) []byte { return binary.AppendUvarint(appendSLEB(nil, n), 1) }
	cases := []struct {
		name    string
		startOp uint64
		msg     string
		cols    map[uint64][]byte
	}{
		{"start op 0", 0, "m", oneSet()},
		{"message not UTF-8", 1, "\xff", oneSet()},
		{"unknown column", 1, "m", with(oneSet(), 2<<4|colActor, []byte{0x7f, 0})},
		{"a column twice, once deflated", 1, "m", with(oneSet(), specAction|0x08, deflate(t, []byte{0x7f, 1}))},
		{"no insert column", 1, "m", with(oneSet(), specInsert, nil)},
		{"no value metadata", 1, "m", with(with(oneSet(), specValueMeta, nil), specValueRaw, nil)},
		{"raw values without metadata", 1, "m", with(oneSet(), specValueMeta, nil)},
		{"no predecessor counts", 1, "m", with(oneSet(), specPredGroup, nil)},
		{"predecessor actors without counters", 1, "m", with(with(oneSet(), specPredGroup, []byte{0x7f, 1}), specPredActor, []byte{0x7f, 0})},
		{"a predecessor missing", 1, "m", with(with(with(oneSet(), specPredGroup, []byte{0x7f, 2}), specPredActor, []byte{0x7f, 0}), specPredCtr, []byte{0x7f, 1})},
		{"a negative predecessor counter", 1, "m", with(with(with(oneSet(), specPredGroup, []byte{0x7f, 1}), specPredActor, []byte{0x7f, 0}), specPredCtr, []byte{0x7f, 0x7f})},
		{"unknown action", 1, "m", with(oneSet(), specAction, []byte{0x7f, 8})},
		{"a null action", 1, "m", with(oneSet(), specAction, []byte{0, 1})},
		{"an action column ending in an empty null run", 1, "m", with(oneSet(), specAction, []byte{0x7f, 1, 0, 0})},
		{"increment by a string", 1, "m", with(oneSet(), specAction, []byte{0x7f, 5})},
		{"no key", 1, "m", with(oneSet(), specKeyStr, nil)},
		{"key both string and element", 1, "m", with(with(oneSet(), specKeyActor, []byte{0x7f, 0}), specKeyCtr, []byte{0x7f, 2})},
		{"element without actor", 1, "m", with(with(oneSet(), specKeyStr, nil), specKeyCtr, []byte{0x7f, 2})},
		{"negative element counter", 1, "m", with(with(with(oneSet(), specKeyStr, nil), specKeyActor, []byte{0x7f, 0}), specKeyCtr, []byte{0x7f, 0x7f})},
		{"key string not UTF-8", 1, "m", with(oneSet(), specKeyStr, []byte{0x7f, 1, 0xff})},
		{"object without counter", 1, "m", with(with(oneSet(), specObjActor, []byte{0x7f, 0}), specObjCtr, []byte{0, 1})},
		{"object without actor", 1, "m", with(with(oneSet(), specObjActor, []byte{0, 1}), specObjCtr, []byte{0x7f, 3})},
		{"actor index beyond the change's actors", 1, "m", with(with(oneSet(), specObjActor, []byte{0x7f, 1}), specObjCtr, []byte{0x7f, 3})},
		{"value longer than the raw column", 1, "m", with(oneSet(), specValueMeta, []byte{0x7f, 2<<4 | 6})},
		{"string value not UTF-8", 1, "m", with(oneSet(), specValueRaw, []byte{0xff})},
		{"float of one byte", 1, "m", with(oneSet(), specValueMeta, []byte{0x7f, 1<<4 | 5})},
		{"overlong uint", 1, "m", with(with(oneSet(), specValueMeta, []byte{0x7f, 2<<4 | 3}), specValueRaw, []byte{0x80, 0x00})},
		{"uint with a byte to spare", 1, "m", with(with(oneSet(), specValueMeta, []byte{0x7f, 2<<4 | 3}), specValueRaw, []byte{0x01, 0x01})},
		{"int beyond 64 bits", 1, "m", with(with(oneSet(), specValueMeta, []byte{0x7f, 0xb4, 0x01}), specValueRaw,
			[]byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x81, 0x01})},
		{"a run claiming more operations than decoded", 1, "m", map[uint64][]byte{
			specKeyStr: append(appendSLEB(nil, 200_000), 1, 'k'), specInsert: binary.AppendUvarint(nil, 200_000),
			specAction: many(200_000), specValueMeta: append(appendSLEB(nil, 200_000), 0), specPredGroup: append(appendSLEB(nil, 200_000), 0),
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			raw := chunkOf(tc.startOp, tc.msg, tc.cols)
			_, err := ChangeOps(raw)
			require.ErrorIs(t, err, ErrMalformed)
		})
	}
	t.Run("not one change", func(t *testing.T) {
		raw := chunkOf(1, "m", oneSet())
		for _, b := range [][]byte{nil, raw[:9], raw[:len(raw)-1], append(slices.Clone(raw), raw...), append(slices.Clone(raw), 0)} {
			_, err := ChangeOps(b)
			require.ErrorIs(t, err, ErrMalformed)
		}
		bad := slices.Clone(raw)
		bad[len(bad)-1] ^= 1
		_, err := ChangeOps(bad)
		require.ErrorIs(t, err, ErrMalformed, "checksum")
	})
}

func deflate(t *testing.T, b []byte) []byte {
	var buf bytes.Buffer
	w, err := flate.NewWriter(&buf, flate.BestCompression)
	require.NoError(t, err)
	_, err = w.Write(b)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	return buf.Bytes()
}
