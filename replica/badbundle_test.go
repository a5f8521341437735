package replica_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash/crc32"
	"testing"

	"github.com/google/uuid"
	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/internal/wire"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/store"
)

// typedBundleErrors are the errors Receive may give for bad input.
var typedBundleErrors = []error{replica.ErrMalformedBundle, replica.ErrBundleVersion, replica.ErrBundleTooLarge, replica.ErrWrongRecipient}

func isTypedBundleError(err error) bool {
	for _, e := range typedBundleErrors {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// frame builds a wire frame by hand, with a correct checksum, so that the
// test can declare lengths and flags Encode would never write.
func frame(kind, version, flags byte, rawLen, storedLen uint64, stored []byte) []byte {
	out := []byte{'C', 'S', kind, 0x01, version, flags}
	out = binary.AppendUvarint(out, rawLen)
	out = binary.AppendUvarint(out, storedLen)
	out = append(out, stored...)
	return binary.BigEndian.AppendUint32(out, crc32.Checksum(out, crc32.MakeTable(crc32.Castagnoli)))
}

// body builds a bundle body by hand: sender and recipient, the four
// positions, no position hashes, a change count, then the given fields as
// they are.
func body(from, to string, pos [4]uint64, count uint64, rest ...[]byte) []byte {
	f, _ := hex.DecodeString(from)
	t, _ := hex.DecodeString(to)
	out := append(append([]byte{}, f...), t...)
	for _, p := range pos {
		out = binary.AppendUvarint(out, p)
	}
	out = append(out, 0, 0, 0, 0, 0) // UptoHash, CheckAt, CheckHash, Epoch, AckEpoch
	out = binary.AppendUvarint(out, count)
	for _, r := range rest {
		out = append(out, r...)
	}
	return out
}

// checksumLeftOut reports whether a bundle carries raw without its
// checksum, which its recipient computes: raw is a change whose header
// reads, of at least 12 bytes, whose checksum is the start of its hash.
func checksumLeftOut(raw []byte) bool {
	at, n, err := crdt.DepsSpan(raw)
	if err != nil || at+32*n > len(raw) || len(raw) < 12 {
		return false
	}
	h := sha256.Sum256(raw[8:])
	return bytes.Equal(raw[4:8], h[:4])
}

// rawField is a change's bytes as a bundle body holds them, none of its
// dependencies left out: the form (1 if its checksum is left out) and the
// length-prefixed bytes.
func rawField(raw []byte) []byte {
	if !checksumLeftOut(raw) {
		return wire.AppendBytes([]byte{0}, raw)
	}
	return wire.AppendBytes([]byte{1}, append(bytes.Clone(raw[:4]), raw[8:]...))
}

// changeField is one unsigned change as a bundle body holds it.
func changeField(chart string, raw []byte) []byte {
	id := uuid.MustParse(chart)
	return append(append(append([]byte{}, id[:]...), rawField(raw)...), 0)
}

// cutField is one unsigned change as a bundle body holds it with the
// dependency hashes at the given places cut out, each said to be the hash
// of the change that many back in the bundle (cut: place, back).
func cutField(t T, chart string, raw []byte, cut ...[2]uint64) []byte {
	t.Helper()
	id := uuid.MustParse(chart)
	elide := checksumLeftOut(raw)
	form := uint64(2 * len(cut))
	if elide {
		form++
	}
	out := binary.AppendUvarint(append([]byte{}, id[:]...), form)
	at, _, err := crdt.DepsSpan(raw)
	require.NoError(t, err)
	stripped := bytes.Clone(raw[:at])
	if elide {
		stripped = append(bytes.Clone(raw[:4]), raw[8:at]...)
	}
	next := at
	for _, c := range cut {
		out = binary.AppendUvarint(binary.AppendUvarint(out, c[0]), c[1])
		slot := at + 32*int(c[0])
		if slot > next && slot <= len(raw) {
			stripped = append(stripped, raw[next:slot]...)
		}
		next = min(slot+32, len(raw))
	}
	stripped = append(stripped, raw[next:]...)
	return append(wire.AppendBytes(out, stripped), 0)
}

// signedField is one change and its signature as a bundle body holds it.
func signedField(chart string, raw, sig []byte) []byte {
	id := uuid.MustParse(chart)
	return wire.AppendBytes(append(append(append([]byte{}, id[:]...), rawField(raw)...), 1), sig)
}

// coveredField is one change covered by the bundle's change at index
// cover, as a bundle body holds it.
func coveredField(chart string, raw []byte, cover uint64) []byte {
	id := uuid.MustParse(chart)
	return binary.AppendUvarint(append(append(append([]byte{}, id[:]...), rawField(raw)...), 2), cover)
}

// batchField is one change vouched for by the bundle's batch signature
// tree, at leaf, as a bundle body holds it.
func batchField(chart string, raw []byte, tree, leaf uint64) []byte {
	id := uuid.MustParse(chart)
	out := append(append(append([]byte{}, id[:]...), rawField(raw)...), 3)
	return binary.AppendUvarint(binary.AppendUvarint(out, tree), leaf)
}

// treeField is a batch signature's tree as a bundle body holds it: its
// leaf count, signature and sibling hashes.
func treeField(n uint64, sig []byte, extra ...crdt.Hash) []byte {
	out := wire.AppendBytes(binary.AppendUvarint(nil, n), sig)
	out = binary.AppendUvarint(out, uint64(len(extra)))
	for _, h := range extra {
		out = append(out, h[:]...)
	}
	return out
}

func encode(t T, b replica.Bundle) []byte {
	t.Helper()
	data, err := b.Encode()
	require.NoError(t, err)
	return data
}

// badBundleFixture is a recipient with charts, peers and cached charts,
// and a well-formed bundle for it.
type badBundleFixture struct {
	a, b  *replica.Replica
	chart string        // a chart both hold
	good  []byte        // a's bundle for b: three changes
	small []byte        // a bundle of one change
	chs   []crdt.Change // the changes of good, in order
	dump  func() any    // the recipient's whole store
}

func newBadBundleFixture(t *testing.T, backend string) *badBundleFixture {
	ctx := context.Background()
	cfg := replica.Config{Now: frozen, CompactAfter: 2}
	f := &badBundleFixture{}
	var a *replica.Replica
	a, _ = newMem(t, cfg)
	f.a = a
	switch backend {
	case "mem":
		b, st := newMem(t, cfg)
		f.b = b
		f.dump = func() any { return dumpStore(t, st) }
	case "sqlite":
		path := tempDB(t, "recipient")
		b, st := openSQLite(t, path, cfg)
		f.b = b
		f.dump = func() any {
			return struct {
				API storeDump
				SQL string
			}{dumpStore(t, st), sqlDump(t, path)}
		}
	}
	f.chart = register(t, a, "Wanjiru", "Mwangi", "Kamuga")
	edit(t, f.b, register(t, f.b, "Baraka", "Otieno", "Siaya"), allergy(0))
	_, err := replica.SyncPair(ctx, a, f.b)
	require.NoError(t, err)
	view(t, f.b, f.chart) // cached at the recipient

	for i := range 3 {
		f.chs = append(f.chs, edit(t, a, f.chart, allergy(10+i)).Change)
	}
	out, err := a.MakeBundle(ctx, f.b.ID())
	require.NoError(t, err)
	require.Equal(t, 3, out.Changes)
	f.good = out.Data
	f.small = encode(t, replica.Bundle{From: a.ID(), To: f.b.ID(), Changes: []replica.BundleChange{{Chart: f.chart, Raw: f.chs[0].Raw}}})
	return f
}

func TestBadBundlesAreRefused(t *testing.T) {
	for _, backend := range []string{"mem", "sqlite"} {
		t.Run(backend, func(t *testing.T) { testBadBundles(t, backend) })
	}
}

func testBadBundles(t *testing.T, backend string) {
	ctx := context.Background()
	f := newBadBundleFixture(t, backend)
	from, to := f.a.ID(), f.b.ID()
	good, err := replica.DecodeBundle(f.good)
	require.NoError(t, err)
	_, goodBody, err := wire.Decode(f.good, 'B', replica.BundleVersion, replica.MaxBundleBytes)
	require.NoError(t, err)
	chartID := uuid.MustParse(f.chart)
	raw0 := f.chs[0].Raw
	zenc, err := zstd.NewWriter(nil)
	require.NoError(t, err)
	defer zenc.Close()
	bigBody := bytes.Repeat(goodBody, 4)
	zBig := zenc.EncodeAll(bigBody, nil)
	savedDoc := func() []byte {
		doc, err := crdt.New("")
		require.NoError(t, err)
		_, err = doc.Apply(f.chs[0])
		_ = err // held for its dependencies; Save then holds nothing
		return doc.Save()
	}()

	pos := func(base, upto, head, ack uint64) [4]uint64 { return [4]uint64{base, upto, head, ack} }
	cases := []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, replica.ErrMalformedBundle},
		{"not a frame", []byte("hello, this is not a bundle at all"), replica.ErrMalformedBundle},
		{"frame of another kind", wire.Encode('R', 1, goodBody), replica.ErrMalformedBundle},
		{"version 1 (before signatures)", wire.Encode('B', 1, goodBody), replica.ErrBundleVersion},
		{"version 2 (a signature per change)", wire.Encode('B', 2, goodBody), replica.ErrBundleVersion},
		{"version 3 (no bundle signature)", wire.Encode('B', 3, goodBody), replica.ErrBundleVersion},
		{"version 4 (every dependency hash sent)", wire.Encode('B', 4, goodBody), replica.ErrBundleVersion},
		{"version 5 (no position hashes)", wire.Encode('B', 5, goodBody), replica.ErrBundleVersion},
		{"version 6 (no log epochs)", wire.Encode('B', 6, goodBody), replica.ErrBundleVersion},
		{"version 7 (no batch signatures)", wire.Encode('B', 7, goodBody), replica.ErrBundleVersion},
		{"version 9", wire.Encode('B', 9, goodBody), replica.ErrBundleVersion},
		{"version 0", wire.Encode('B', 0, goodBody), replica.ErrBundleVersion},
		{"version 255", wire.Encode('B', 255, goodBody), replica.ErrBundleVersion},
		{"declared body just over the limit", frame('B', replica.BundleVersion, 0, replica.MaxBundleBytes+1, uint64(len(goodBody)), goodBody), replica.ErrBundleTooLarge},
		{"declared body of 2^62 bytes", frame('B', replica.BundleVersion, 1, 1<<62, uint64(len(zBig)), zBig), replica.ErrBundleTooLarge},
		{"stored length beyond the data", frame('B', replica.BundleVersion, 0, 1<<20, 1<<20, goodBody), replica.ErrMalformedBundle},
		{"change over the change limit", wire.Encode('B', replica.BundleVersion, body(from, to, pos(0, 0, 0, 0), 1,
			chartID[:], []byte{0}, binary.AppendUvarint(nil, replica.MaxChangeBytes+1), raw0)), replica.ErrBundleTooLarge},
		{"a dependency left out named as the change itself", wire.Encode('B', replica.BundleVersion, body(from, to, pos(0, 0, 0, 0), 2,
			changeField(f.chart, raw0), cutField(t, f.chart, f.chs[1].Raw, [2]uint64{0, 0}), []byte{0})), replica.ErrMalformedBundle},
		{"a dependency left out named before the bundle's first change", wire.Encode('B', replica.BundleVersion, body(from, to, pos(0, 0, 0, 0), 2,
			changeField(f.chart, raw0), cutField(t, f.chart, f.chs[1].Raw, [2]uint64{0, 2}), []byte{0})), replica.ErrMalformedBundle},
		{"a dependency left out beyond the change's dependencies", wire.Encode('B', replica.BundleVersion, body(from, to, pos(0, 0, 0, 0), 2,
			changeField(f.chart, raw0), cutField(t, f.chart, f.chs[1].Raw, [2]uint64{5, 1}), []byte{0})), replica.ErrMalformedBundle},
		{"dependencies left out out of order", wire.Encode('B', replica.BundleVersion, body(from, to, pos(0, 0, 0, 0), 3,
			changeField(f.chart, raw0), changeField(f.chart, f.chs[1].Raw), cutField(t, f.chart, f.chs[2].Raw, [2]uint64{0, 1}, [2]uint64{0, 2}), []byte{0})), replica.ErrMalformedBundle},
		{"a dependency put back from the wrong change", wire.Encode('B', replica.BundleVersion, body(from, to, pos(0, 0, 0, 0), 3,
			changeField(f.chart, raw0), changeField(f.chart, f.chs[2].Raw), cutField(t, f.chart, f.chs[1].Raw, [2]uint64{0, 1}), []byte{0})), replica.ErrMalformedBundle},
		{"a change without its checksum, cut inside its header", wire.Encode('B', replica.BundleVersion, body(from, to, pos(0, 0, 0, 0), 1,
			chartID[:], []byte{1}, wire.AppendBytes(nil, raw0[:6]), []byte{0, 0, 0, 0})), replica.ErrMalformedBundle},
		{"a change without its checksum, and a byte changed", wire.Encode('B', replica.BundleVersion, body(from, to, pos(0, 0, 0, 0), 1,
			chartID[:], []byte{1}, wire.AppendBytes(nil, append(bytes.Clone(raw0[:4]), append([]byte{raw0[8] ^ 0x40}, raw0[9:]...)...)), []byte{0, 0, 0, 0})), replica.ErrMalformedBundle},
		{"a change sent with a checksum its recipient computes", wire.Encode('B', replica.BundleVersion, body(from, to, pos(0, 0, 0, 0), 1,
			chartID[:], wire.AppendBytes([]byte{0}, raw0), []byte{0, 0, 0, 0})), replica.ErrMalformedBundle},
		{"a batch signature's proof sent as a plain signature", wire.Encode('B', replica.BundleVersion, body(from, to, pos(0, 0, 0, 0), 1,
			signedField(f.chart, raw0, append([]byte{'p', 1, 0, 64}, make([]byte, 64)...)), []byte{0, 0, 0})), replica.ErrMalformedBundle},
		{"batch signature trees numbered out of order", wire.Encode('B', replica.BundleVersion, body(from, to, pos(0, 0, 0, 0), 2,
			batchField(f.chart, raw0, 1, 0), batchField(f.chart, f.chs[1].Raw, 0, 0),
			[]byte{2}, treeField(1, bytes.Repeat([]byte{1}, 64)), treeField(1, bytes.Repeat([]byte{2}, 64)), []byte{0, 0})), replica.ErrMalformedBundle},
		{"dependencies left out counted beyond the body", wire.Encode('B', replica.BundleVersion, body(from, to, pos(0, 0, 0, 0), 1,
			chartID[:], binary.AppendUvarint(nil, 1<<40), raw0)), replica.ErrMalformedBundle},
		{"compressed body longer than declared", frame('B', replica.BundleVersion, 1, uint64(len(goodBody)), uint64(len(zBig)), zBig), replica.ErrMalformedBundle},
		{"compressed body shorter than declared", frame('B', replica.BundleVersion, 1, uint64(len(bigBody)+1), uint64(len(zBig)), zBig), replica.ErrMalformedBundle},
		{"compressed body that is not zstd", frame('B', replica.BundleVersion, 1, uint64(len(goodBody)), uint64(len(goodBody)), goodBody), replica.ErrMalformedBundle},
		{"unknown flags", frame('B', replica.BundleVersion, 2, uint64(len(goodBody)), uint64(len(goodBody)), goodBody), replica.ErrMalformedBundle},
		{"raw and stored lengths differ", frame('B', replica.BundleVersion, 0, uint64(len(goodBody)+1), uint64(len(goodBody)), goodBody), replica.ErrMalformedBundle},
		{"byte after the frame", append(bytes.Clone(f.good), 0), replica.ErrMalformedBundle},
		{"checksum wrong", append(bytes.Clone(f.good[:len(f.good)-1]), f.good[len(f.good)-1]^1), replica.ErrMalformedBundle},
		{"byte after the last change", wire.Encode('B', replica.BundleVersion, append(bytes.Clone(goodBody), 0)), replica.ErrMalformedBundle},
		{"base after upto", wire.Encode('B', replica.BundleVersion, body(from, to, pos(5, 4, 6, 0), 0)), replica.ErrMalformedBundle},
		{"upto after head", wire.Encode('B', replica.BundleVersion, body(from, to, pos(0, 7, 6, 0), 0)), replica.ErrMalformedBundle},
		{"sender is the recipient", wire.Encode('B', replica.BundleVersion, body(to, to, pos(0, 0, 0, 0), 0)), replica.ErrMalformedBundle},
		{"position varint overflows", wire.Encode('B', replica.BundleVersion, append(body(from, to, pos(0, 0, 0, 0), 0)[:32], bytes.Repeat([]byte{0xff}, 11)...)), replica.ErrMalformedBundle},
		{"body ends inside the positions", wire.Encode('B', replica.BundleVersion, body(from, to, pos(0, 0, 0, 0), 0)[:34]), replica.ErrMalformedBundle},
		{"change count beyond the body", wire.Encode('B', replica.BundleVersion, body(from, to, pos(0, 0, 0, 0), 1000, changeField(f.chart, raw0))), replica.ErrMalformedBundle},
		{"empty change", wire.Encode('B', replica.BundleVersion, body(from, to, pos(0, 0, 0, 0), 1, changeField(f.chart, nil))), replica.ErrMalformedBundle},
		{"change length beyond the body", wire.Encode('B', replica.BundleVersion, body(from, to, pos(0, 0, 0, 0), 1, changeField(f.chart, raw0)[:16+3+100])), replica.ErrMalformedBundle},
		{"signature over the limit", wire.Encode('B', replica.BundleVersion, body(from, to, pos(0, 0, 0, 0), 1,
			signedField(f.chart, raw0, make([]byte, replica.MaxSignatureBytes+1)), []byte{0})), replica.ErrBundleTooLarge},
		{"empty signature", wire.Encode('B', replica.BundleVersion, body(from, to, pos(0, 0, 0, 0), 1,
			signedField(f.chart, raw0, nil), []byte{0})), replica.ErrMalformedBundle},
		{"unknown signature form", wire.Encode('B', replica.BundleVersion, body(from, to, pos(0, 0, 0, 0), 1,
			append(changeField(f.chart, raw0)[:len(changeField(f.chart, raw0))-1], 3), []byte{0})), replica.ErrMalformedBundle},
		{"cover beyond the bundle", wire.Encode('B', replica.BundleVersion, body(from, to, pos(0, 0, 0, 0), 2,
			coveredField(f.chart, raw0, 2), signedField(f.chart, f.chs[1].Raw, make([]byte, 64)), []byte{0})), replica.ErrMalformedBundle},
		{"change covering itself", wire.Encode('B', replica.BundleVersion, body(from, to, pos(0, 0, 0, 0), 1,
			coveredField(f.chart, raw0, 0), []byte{0})), replica.ErrMalformedBundle},
		{"cover by an unsigned change", wire.Encode('B', replica.BundleVersion, body(from, to, pos(0, 0, 0, 0), 2,
			coveredField(f.chart, raw0, 1), changeField(f.chart, f.chs[1].Raw), []byte{0})), replica.ErrMalformedBundle},
		{"cover by another chart's change", wire.Encode('B', replica.BundleVersion, body(from, to, pos(0, 0, 0, 0), 2,
			coveredField(f.chart, raw0, 1), signedField(uuid.NewString(), f.chs[1].Raw, make([]byte, 64)), []byte{0})), replica.ErrMalformedBundle},
		{"a batch signature naming a tree the bundle lacks", wire.Encode('B', replica.BundleVersion, body(from, to, pos(0, 0, 0, 0), 1,
			batchField(f.chart, raw0, 0, 0), []byte{0, 0, 0})), replica.ErrMalformedBundle},
		{"a batch signature tree vouching for no change", wire.Encode('B', replica.BundleVersion, body(from, to, pos(0, 0, 0, 0), 1,
			changeField(f.chart, raw0), []byte{1}, treeField(1, make([]byte, 64)), []byte{0, 0})), replica.ErrMalformedBundle},
		{"a batch signature tree short of a sibling hash", wire.Encode('B', replica.BundleVersion, body(from, to, pos(0, 0, 0, 0), 1,
			batchField(f.chart, raw0, 0, 0), []byte{1}, treeField(2, make([]byte, 64)), []byte{0, 0})), replica.ErrMalformedBundle},
		{"a batch signature tree with a sibling hash too many", wire.Encode('B', replica.BundleVersion, body(from, to, pos(0, 0, 0, 0), 1,
			batchField(f.chart, raw0, 0, 0), []byte{1}, treeField(1, make([]byte, 64), crdt.Hash{7}), []byte{0, 0})), replica.ErrMalformedBundle},
		{"two changes at one leaf of a batch signature tree", wire.Encode('B', replica.BundleVersion, body(from, to, pos(0, 0, 0, 0), 2,
			batchField(f.chart, raw0, 0, 0), batchField(f.chart, f.chs[1].Raw, 0, 0), []byte{1}, treeField(2, make([]byte, 64)), []byte{0, 0})), replica.ErrMalformedBundle},
		{"a leaf past its batch signature tree", wire.Encode('B', replica.BundleVersion, body(from, to, pos(0, 0, 0, 0), 1,
			batchField(f.chart, raw0, 0, 5), []byte{1}, treeField(2, make([]byte, 64), crdt.Hash{7}), []byte{0, 0})), replica.ErrMalformedBundle},
		{"a batch signature tree over the leaf limit", wire.Encode('B', replica.BundleVersion, body(from, to, pos(0, 0, 0, 0), 1,
			batchField(f.chart, raw0, 0, 0), []byte{1}, treeField(257, make([]byte, 64)), []byte{0, 0})), replica.ErrMalformedBundle},
		{"a batch signature tree without a signature", wire.Encode('B', replica.BundleVersion, body(from, to, pos(0, 0, 0, 0), 1,
			batchField(f.chart, raw0, 0, 0), []byte{1}, treeField(1, nil), []byte{0, 0})), replica.ErrMalformedBundle},
		{"no signer count", wire.Encode('B', replica.BundleVersion, body(from, to, pos(0, 0, 0, 0), 1, changeField(f.chart, raw0))), replica.ErrMalformedBundle},
		{"signer count beyond the body", wire.Encode('B', replica.BundleVersion, body(from, to, pos(0, 0, 0, 0), 1,
			changeField(f.chart, raw0), []byte{0, 100}, wire.AppendBytes(nil, []byte("signer")))), replica.ErrMalformedBundle},
		{"empty signer", wire.Encode('B', replica.BundleVersion, body(from, to, pos(0, 0, 0, 0), 1,
			changeField(f.chart, raw0), []byte{0, 1, 0})), replica.ErrMalformedBundle},
		{"signer over the limit", wire.Encode('B', replica.BundleVersion, body(from, to, pos(0, 0, 0, 0), 1,
			changeField(f.chart, raw0), []byte{0, 1}, wire.AppendBytes(nil, make([]byte, replica.MaxRevocationRecordBytes+1)))), replica.ErrBundleTooLarge},
		{"garbage change bytes", encode(t, replica.Bundle{From: from, To: to, Changes: []replica.BundleChange{
			{Chart: f.chart, Raw: []byte("this is not an automerge change")}}}), replica.ErrMalformedBundle},
		{"good changes, then garbage", encode(t, replica.Bundle{From: from, To: to, Changes: []replica.BundleChange{
			{Chart: f.chart, Raw: f.chs[0].Raw}, {Chart: f.chart, Raw: f.chs[1].Raw}, {Chart: f.chart, Raw: bytes.Repeat([]byte{0x85}, 64)}}}), replica.ErrMalformedBundle},
		{"truncated change", encode(t, replica.Bundle{From: from, To: to, Changes: []replica.BundleChange{
			{Chart: f.chart, Raw: raw0[:len(raw0)-1]}}}), replica.ErrMalformedBundle},
		{"two changes as one", encode(t, replica.Bundle{From: from, To: to, Changes: []replica.BundleChange{
			{Chart: f.chart, Raw: append(bytes.Clone(f.chs[0].Raw), f.chs[1].Raw...)}}}), replica.ErrMalformedBundle},
		{"a saved document instead of a change", encode(t, replica.Bundle{From: from, To: to, Changes: []replica.BundleChange{
			{Chart: f.chart, Raw: savedDoc}}}), replica.ErrMalformedBundle},
		{"addressed to another replica", encode(t, replica.Bundle{From: from, To: crdt.NewActorID(), Changes: good.Changes}), replica.ErrWrongRecipient},
	}

	before := f.dump()
	vBefore := view(t, f.b, f.chart)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.b.Receive(ctx, tc.data)
			require.ErrorIs(t, err, tc.want)
			assert.Equal(t, before, f.dump(), "the refused bundle left the store as it was")
		})
	}

	// Bulk corruptions: every check on the in-memory store, a sample on
	// SQLite, and a full comparison after each class.
	every := 1
	if backend == "sqlite" {
		every = 37
	}
	bulk := func(t *testing.T, name string, n int, corrupt func(i int) []byte) {
		for i := range n {
			data := corrupt(i)
			_, err := f.b.Receive(ctx, data)
			require.Error(t, err, "%s %d was accepted", name, i)
			require.True(t, isTypedBundleError(err), "%s %d: untyped error %v", name, i, err)
			if i%every == 0 {
				require.Equal(t, before, f.dump(), "%s %d left the store changed", name, i)
			}
		}
		require.Equal(t, before, f.dump(), "%s left the store changed", name)
	}
	t.Run("every truncation", func(t *testing.T) {
		bulk(t, "truncation at", len(f.good), func(i int) []byte { return f.good[:i] })
	})
	t.Run("every bit flip of a small bundle", func(t *testing.T) {
		bulk(t, "bit flip", len(f.small)*8, func(i int) []byte {
			data := bytes.Clone(f.small)
			data[i/8] ^= 1 << (i % 8)
			return data
		})
	})
	t.Run("every byte of a change corrupted inside a well-formed bundle", func(t *testing.T) {
		bulk(t, "change byte", len(raw0), func(i int) []byte {
			raw := bytes.Clone(raw0)
			raw[i] ^= 1 << (i % 8)
			return encode(t, replica.Bundle{From: from, To: to, Changes: []replica.BundleChange{{Chart: f.chart, Raw: raw}}})
		})
	})
	t.Run("every truncation of a change inside a well-formed bundle", func(t *testing.T) {
		bulk(t, "change truncated at", len(raw0)-1, func(i int) []byte {
			return encode(t, replica.Bundle{From: from, To: to, Changes: []replica.BundleChange{{Chart: f.chart, Raw: raw0[:i+1]}}})
		})
	})

	// After all that the recipient is unharmed: same chart in memory, and
	// the good bundle still applies.
	assert.Equal(t, vBefore, view(t, f.b, f.chart), "the cached chart saw none of the refused bundles")
	got, err := f.b.Receive(ctx, f.good)
	require.NoError(t, err)
	assert.Equal(t, 3, got.Applied)
	_, err = replica.SyncPair(ctx, f.a, f.b)
	require.NoError(t, err)
	requireSameCharts(t, f.a, f.b)
}

// The sentinels are distinct, so a caller can tell the cases apart.
func TestBundleErrorsAreDistinct(t *testing.T) {
	for i, a := range typedBundleErrors {
		for j, b := range typedBundleErrors {
			if i != j {
				assert.NotErrorIs(t, a, b)
			}
		}
	}
	assert.NotErrorIs(t, replica.ErrMalformedBundle, store.ErrNotFound)
}

// TestBatchProofsAreBoundedByTheBundle: a bundle cannot make its
// recipient build proofs many times its size (a tree of 256 leaves whose
// changes are a few bytes each): it is refused as too large before its
// changes are read.
func TestBatchProofsAreBoundedByTheBundle(t *testing.T) {
	from, to := crdt.NewActorID(), crdt.NewActorID()
	chart := uuid.NewString()
	var fields [][]byte
	for i := range 256 {
		fields = append(fields, batchField(chart, []byte{0x85, 0x6f, 0x4a, 0x83, byte(i)}, 0, uint64(i)))
	}
	fields = append(fields, []byte{1}, treeField(256, make([]byte, 64)), []byte{0, 0})
	data := wire.Encode('B', replica.BundleVersion, body(from, to, [4]uint64{}, 256, fields...))
	_, err := replica.DecodeBundle(data)
	require.ErrorIs(t, err, replica.ErrBundleTooLarge)

	// The same tree over changes of an honest size decodes.
	fields = fields[:0]
	for i := range 256 {
		fields = append(fields, batchField(chart, bytes.Repeat([]byte{byte(i)}, 300), 0, uint64(i)))
	}
	fields = append(fields, []byte{1}, treeField(256, make([]byte, 64)), []byte{0, 0})
	data = wire.Encode('B', replica.BundleVersion, body(from, to, [4]uint64{}, 256, fields...))
	b, err := replica.DecodeBundle(data)
	require.NoError(t, err)
	for _, c := range b.Changes {
		_, ok := replica.ProofSignature(c.Sig)
		require.True(t, ok)
	}
}
