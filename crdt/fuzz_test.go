package crdt_test

import (
	"crypto/sha256"
	"encoding/binary"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
)

func seedDoc(f testing.TB) *crdt.Doc {
	f.Helper()
	d, err := crdt.New("aa01")
	require.NoError(f, err)
	_, err = d.Edit("init", t0, func(tx *crdt.Tx) error {
		if err := tx.PutMap(nil, "m"); err != nil {
			return err
		}
		return tx.PutText([]string{"m"}, "note", "fever")
	})
	require.NoError(f, err)
	_, err = d.Edit("dose", t0.Add(time.Hour), func(tx *crdt.Tx) error { return tx.Put([]string{"m"}, "dose", "500 mg") })
	require.NoError(f, err)
	return d
}

// FuzzLoad feeds arbitrary bytes to Load, as they are and with the
// document chunk's checksum made valid (so the fuzzer reaches the reading
// of the document, as a crafted file would): it must return a document or
// an ErrMalformed error, never panic or abort; a document it returns saves
// and loads again to the same heads.
func FuzzLoad(f *testing.F) {
	d := seedDoc(f)
	f.Add(d.Save())
	hist, _ := chartHistory(f, 40)
	f.Add(hist.Save())
	empty, err := crdt.New("aa01")
	require.NoError(f, err)
	f.Add(empty.Save())
	f.Add([]byte{})
	f.Add([]byte{0x85, 0x6f, 0x4a, 0x83})
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, in := range [][]byte{data, reseal(data)} {
			doc, err := crdt.Load(in, "")
			if err != nil {
				require.ErrorIs(t, err, crdt.ErrMalformed)
				continue
			}
			_, _ = doc.Keys()
			again, err := crdt.Load(doc.Save(), "")
			require.NoError(t, err, "a loaded document saves and loads")
			require.Equal(t, doc.Heads(), again.Heads())
		}
	})
}

// FuzzApply parses arbitrary bytes as changes and applies them to a chart:
// either it is refused with ErrMalformed and the document is unchanged, or
// the changes apply, the document stays readable, and its saved bytes load
// back to the same heads.
func FuzzApply(f *testing.F) {
	fuzzApply(f, func(data []byte) []byte { return data })
}

// fuzzApply runs the FuzzApply property on prepare(data).
func fuzzApply(f *testing.F, prepare func([]byte) []byte) {
	base := seedDoc(f)
	chs, err := base.Changes(nil)
	require.NoError(f, err)
	for _, c := range chs {
		f.Add(c.Raw)
	}
	f.Add(crdt.SaveChanges(chs))
	f.Fuzz(func(t *testing.T, data []byte) {
		doc, err := crdt.New("bb02")
		require.NoError(t, err)
		_, err = doc.Apply(chs[0])
		require.NoError(t, err)
		heads, saved := doc.Heads(), doc.Save()
		parsed, err := crdt.ParseChanges(prepare(data))
		if err != nil {
			require.ErrorIs(t, err, crdt.ErrMalformed)
			return
		}
		if _, err := doc.Apply(parsed...); err != nil {
			require.ErrorIs(t, err, crdt.ErrMalformed)
			require.Equal(t, heads, doc.Heads())
			require.Equal(t, saved, doc.Save())
			return
		}
		_, _ = doc.Strings("m")
		// What Apply accepts, a saved document keeps: it loads again.
		loaded, err := crdt.Load(doc.Save(), "")
		require.NoError(t, err, "the document saved after accepted changes loads")
		require.Equal(t, doc.Heads(), loaded.Heads())
	})
}

// reseal recomputes the checksum of every change chunk in data, so the
// fuzzer explores changes that pass the checksum, as a crafted change from
// a malicious peer would. Bytes that do not split into chunks are returned
// as they are.
func reseal(data []byte) []byte {
	out := append([]byte(nil), data...)
	for rest := out; len(rest) >= 10; {
		n, k := binary.Uvarint(rest[9:])
		if k <= 0 || n > uint64(len(rest)-9-k) {
			break
		}
		end := 9 + k + int(n)
		sum := sha256.Sum256(rest[8:end])
		copy(rest[4:8], sum[:4])
		rest = rest[end:]
	}
	return out
}

// FuzzApplyCrafted is FuzzApply for changes whose checksums are valid: it
// exercises the structural checks that stand between a crafted change and
// a panic in automerge-rs.
func FuzzApplyCrafted(f *testing.F) {
	fuzzApply(f, reseal)
}

// TestCraftedActorIndex is the change the fuzzer found that made
// automerge-rs panic (an operation naming actor 48 of a change with one
// actor), with a valid checksum: it must be refused, not crash.
func TestCraftedActorIndex(t *testing.T) {
	crash := []byte("\x85oJ\x830000\x01X\x00\x02\xaa\x01BX\x80\xaf\xf2ۙ4\x04i71\"\x00\n\x01\x04\x02\x06\x11\x04\x13\a\x15\n4\x02B\x05V\x04W\x05p\x02\x00\x01\x060\x00\x01\x7f\x01\x05\x02\x00\x03\x04\x00\x00\x02~\x00\x03\x03\x01~\x01m\x04note\x00\x05\x02\x05~\x00\x04\x05\x01\x02\x00\x05\x16fever\a\x00")
	for name, data := range map[string][]byte{"as found": crash, "checksum fixed": reseal(crash)} {
		_, err := crdt.ParseChanges(data)
		require.ErrorIs(t, err, crdt.ErrMalformed, name)
	}
}

// FuzzChangeActor reads the actor of arbitrary bytes: never a panic,
// ErrMalformed or an actor, and the same actor ParseChange finds whenever
// the bytes are one valid change.
func FuzzChangeActor(f *testing.F) {
	base := seedDoc(f)
	chs, err := base.Changes(nil)
	require.NoError(f, err)
	for _, c := range chs {
		f.Add(c.Raw)
		f.Add(c.Raw[:len(c.Raw)/2])
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		actor, err := crdt.ChangeActor(data)
		if err != nil {
			require.ErrorIs(t, err, crdt.ErrMalformed)
		}
		hActor, deps, herr := crdt.ChangeHeader(data)
		if herr != nil {
			require.ErrorIs(t, herr, crdt.ErrMalformed)
		} else {
			require.Equal(t, actor, hActor, "ChangeActor and ChangeHeader read the same actor")
		}
		if c, perr := crdt.ParseChange(data); perr == nil {
			require.NoError(t, err, "a valid change has a readable actor")
			require.Equal(t, c.Actor, actor)
			require.NoError(t, herr, "a valid change has a readable header")
			require.Equal(t, len(c.Deps), len(deps), "ChangeHeader reads the change's dependencies")
			for i := range deps {
				require.Equal(t, c.Deps[i], deps[i])
			}
		}
	})
}

// FuzzChangeOps decodes arbitrary bytes, and the same bytes with their
// checksums made valid, as one change: never a panic; an error matches
// ErrMalformed; what decodes encodes again (EncodeChange) to bytes that
// decode to the same change, and agrees with Automerge's reading of the
// header whenever ParseChange accepts the bytes too.
func FuzzChangeOps(f *testing.F) {
	base := seedDoc(f)
	other, err := base.Fork(nil, "bb02")
	require.NoError(f, err)
	_, err = other.Edit("b", t0, func(tx *crdt.Tx) error { return tx.SpliceText([]string{"m"}, "note", 0, 2, "FE") })
	require.NoError(f, err)
	_, err = base.Edit("a", t0, func(tx *crdt.Tx) error { return tx.Put([]string{"m"}, "dose", "1 g") })
	require.NoError(f, err)
	_, err = base.Merge(other)
	require.NoError(f, err)
	_, err = base.Edit("c", t0, func(tx *crdt.Tx) error {
		if err := tx.Put([]string{"m"}, "dose", "750 mg"); err != nil {
			return err
		}
		return tx.SpliceText([]string{"m"}, "note", 1, 2, "é🙂")
	})
	require.NoError(f, err)
	chs, err := base.Changes(nil)
	require.NoError(f, err)
	for _, c := range chs {
		f.Add(c.Raw)
		f.Add(c.Raw[:len(c.Raw)-1])
	}
	f.Add([]byte{})
	f.Add(crdt.SaveChanges(chs[:2]))

	f.Fuzz(func(t *testing.T, data []byte) {
		for _, in := range [][]byte{data, reseal(data)} {
			info, err := crdt.ChangeOps(in)
			if err != nil {
				require.ErrorIs(t, err, crdt.ErrMalformed)
				continue
			}
			raw, err := crdt.EncodeChange(info)
			require.NoError(t, err, "a decoded change encodes")
			again, err := crdt.ChangeOps(raw)
			require.NoError(t, err, "an encoded change decodes")
			again.Hash = info.Hash
			require.Equal(t, info, again, "the change decodes differently once encoded again")
			if c, err := crdt.ParseChange(in); err == nil {
				require.Equal(t, c.Hash, info.Hash)
				require.Equal(t, c.Actor, info.Actor)
				require.Equal(t, c.Seq, info.Seq)
				require.Equal(t, c.Message, info.Message)
				require.ElementsMatch(t, c.Deps, info.Deps)
			}
		}
	})
}
