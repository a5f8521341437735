package crdt_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
)

var t0 = time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)

func newDoc(t testing.TB, actor string) *crdt.Doc {
	t.Helper()
	d, err := crdt.New(actor)
	require.NoError(t, err)
	_, err = d.Edit("init", t0, func(tx *crdt.Tx) error { return tx.PutMap(nil, "m") })
	require.NoError(t, err)
	return d
}

func put(t testing.TB, d *crdt.Doc, key, val string, at time.Time) crdt.Change {
	t.Helper()
	ch, err := d.Edit("put "+key, at, func(tx *crdt.Tx) error { return tx.Put([]string{"m"}, key, val) })
	require.NoError(t, err)
	return ch
}

func TestEditRecordsChangeMetadata(t *testing.T) {
	d := newDoc(t, "aa01")
	ch := put(t, d, "dose", "500 mg", t0.Add(time.Minute))
	assert.Equal(t, "aa01", ch.Actor)
	assert.Equal(t, uint64(2), ch.Seq, "second change by the actor")
	assert.Equal(t, "put dose", ch.Message)
	assert.True(t, ch.Time.Equal(t0.Add(time.Minute)), "time %s", ch.Time)
	assert.Len(t, ch.Deps, 1)
	assert.Equal(t, crdt.Heads{ch.Hash}, d.Heads())
	parsed, err := crdt.ParseChange(ch.Raw)
	require.NoError(t, err)
	assert.Equal(t, ch, parsed)
}

func TestEditErrorLeavesDocUnchanged(t *testing.T) {
	d := newDoc(t, "aa01")
	put(t, d, "dose", "500 mg", t0)
	before := d.Save()
	heads := d.Heads()
	boom := errors.New("validation failed")
	_, err := d.Edit("bad", t0, func(tx *crdt.Tx) error {
		require.NoError(t, tx.Put([]string{"m"}, "dose", "9000 mg"))
		return boom
	})
	require.ErrorIs(t, err, boom)
	assert.Equal(t, heads, d.Heads())
	assert.Equal(t, before, d.Save())
	got, err := d.String([]string{"m"}, "dose")
	require.NoError(t, err)
	assert.Equal(t, "500 mg", got)
	// The document still writes as the same actor, continuing its sequence.
	ch := put(t, d, "route", "oral", t0)
	assert.Equal(t, "aa01", ch.Actor)
	assert.Equal(t, uint64(3), ch.Seq)
}

func TestEditThatWritesNothingIsRefused(t *testing.T) {
	d := newDoc(t, "aa01")
	heads := d.Heads()
	_, err := d.Edit("nothing", t0, func(tx *crdt.Tx) error { return nil })
	require.Error(t, err)
	assert.Equal(t, heads, d.Heads())
}

func TestApplyHoldsChangesUntilDependenciesArrive(t *testing.T) {
	a := newDoc(t, "aa01")
	c1 := put(t, a, "k1", "v1", t0)
	c2 := put(t, a, "k2", "v2", t0)
	c3 := put(t, a, "k3", "v3", t0)
	all, err := a.Changes(nil)
	require.NoError(t, err)
	init := all[0]

	b, err := crdt.New("bb02")
	require.NoError(t, err)
	applied, err := b.Apply(c3, c2)
	require.NoError(t, err)
	assert.Empty(t, applied, "nothing can apply before the first change")
	assert.Len(t, b.Pending(), 2)

	applied, err = b.Apply(init)
	require.NoError(t, err)
	assert.Equal(t, []crdt.Hash{init.Hash}, applied)
	assert.Len(t, b.Pending(), 2, "c2, c3 still wait for c1")

	applied, err = b.Apply(c1, c1)
	require.NoError(t, err)
	assert.ElementsMatch(t, []crdt.Hash{c1.Hash, c2.Hash, c3.Hash}, applied)
	assert.Empty(t, b.Pending())
	assert.Equal(t, a.Heads(), b.Heads())

	applied, err = b.Apply(all...)
	require.NoError(t, err)
	assert.Empty(t, applied, "reapplying known changes does nothing")
}

func TestConcurrentEditsMergeToEqualHeads(t *testing.T) {
	a := newDoc(t, "aa01")
	b, err := a.Fork(nil, "bb02")
	require.NoError(t, err)
	put(t, a, "x", "from a", t0)
	put(t, b, "y", "from b", t0)
	_, err = a.Merge(b)
	require.NoError(t, err)
	_, err = b.Merge(a)
	require.NoError(t, err)
	assert.Equal(t, a.Heads(), b.Heads())
	assert.Len(t, a.Heads(), 2)
	av, err := a.Strings("m")
	require.NoError(t, err)
	bv, err := b.Strings("m")
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"x": "from a", "y": "from b"}, av)
	assert.Equal(t, av, bv)
}

func TestForkAtPastHeadsShowsHistory(t *testing.T) {
	d := newDoc(t, "aa01")
	put(t, d, "dose", "250 mg", t0)
	past := d.Heads()
	put(t, d, "dose", "500 mg", t0)
	old, err := d.Fork(past, "")
	require.NoError(t, err)
	v, err := old.String([]string{"m"}, "dose")
	require.NoError(t, err)
	assert.Equal(t, "250 mg", v)

	_, err = d.Fork(crdt.Heads{{1, 2, 3}}, "")
	require.ErrorIs(t, err, crdt.ErrNotFound)
}

func TestChangesSinceUnknownHeadIsAnError(t *testing.T) {
	d := newDoc(t, "aa01")
	_, err := d.Changes(crdt.Heads{{9}})
	require.ErrorIs(t, err, crdt.ErrNotFound)
	h := d.Heads()
	c := put(t, d, "a", "b", t0)
	chs, err := d.Changes(h)
	require.NoError(t, err)
	require.Len(t, chs, 1)
	assert.Equal(t, c.Hash, chs[0].Hash)
}

func TestSaveLoadRoundTrip(t *testing.T) {
	d := newDoc(t, "aa01")
	_, err := d.Edit("note", t0, func(tx *crdt.Tx) error { return tx.PutText([]string{"m"}, "note", "fever") })
	require.NoError(t, err)
	_, err = d.Edit("note", t0, func(tx *crdt.Tx) error { return tx.SpliceText([]string{"m"}, "note", 5, 0, " 3 days") })
	require.NoError(t, err)
	l, err := crdt.Load(d.Save(), "cc03")
	require.NoError(t, err)
	assert.Equal(t, d.Heads(), l.Heads())
	txt, err := l.Text([]string{"m"}, "note")
	require.NoError(t, err)
	assert.Equal(t, "fever 3 days", txt)
}

func TestConcurrentTextSplicesBothSurvive(t *testing.T) {
	a := newDoc(t, "aa01")
	_, err := a.Edit("note", t0, func(tx *crdt.Tx) error { return tx.PutText([]string{"m"}, "note", "cough") })
	require.NoError(t, err)
	b, err := a.Fork(nil, "bb02")
	require.NoError(t, err)
	_, err = a.Edit("a", t0, func(tx *crdt.Tx) error { return tx.SpliceText([]string{"m"}, "note", 0, 0, "dry ") })
	require.NoError(t, err)
	_, err = b.Edit("b", t0, func(tx *crdt.Tx) error { return tx.SpliceText([]string{"m"}, "note", 5, 0, ", worse at night") })
	require.NoError(t, err)
	_, err = a.Merge(b)
	require.NoError(t, err)
	txt, err := a.Text([]string{"m"}, "note")
	require.NoError(t, err)
	assert.Equal(t, "dry cough, worse at night", txt)
}

func TestTypedErrors(t *testing.T) {
	d := newDoc(t, "aa01")
	put(t, d, "s", "v", t0)
	tests := []struct {
		name string
		run  func() error
		want error
	}{
		{"missing path", func() error { _, err := d.Strings("nope"); return err }, crdt.ErrNotFound},
		{"missing key", func() error { _, err := d.String([]string{"m"}, "nope"); return err }, crdt.ErrNotFound},
		{"string read as map", func() error { _, err := d.Keys("m", "s"); return err }, crdt.ErrWrongType},
		{"string read as text", func() error { _, err := d.Text([]string{"m"}, "s"); return err }, crdt.ErrWrongType},
		{"splice outside text", func() error {
			_, err := d.Edit("x", t0, func(tx *crdt.Tx) error {
				if err := tx.PutText([]string{"m"}, "t", "ab"); err != nil {
					return err
				}
				return tx.SpliceText([]string{"m"}, "t", 1, 5, "")
			})
			return err
		}, crdt.ErrOutOfRange},
		{"bad actor", func() error { _, err := crdt.New("xyz"); return err }, crdt.ErrInvalidActor},
		{"empty document", func() error { _, err := crdt.Load(nil, ""); return err }, crdt.ErrMalformed},
		{"garbage document", func() error { _, err := crdt.Load([]byte("not automerge"), ""); return err }, crdt.ErrMalformed},
		{"garbage change", func() error { _, err := crdt.ParseChanges([]byte{0x85, 0x6f, 0x4a, 0x83, 1, 2}); return err }, crdt.ErrMalformed},
		{"bad hash", func() error { _, err := crdt.ParseHash("abc"); return err }, crdt.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.ErrorIs(t, tt.run(), tt.want)
		})
	}
	// The failed splice above rolled back its PutText too.
	_, err := d.Text([]string{"m"}, "t")
	require.ErrorIs(t, err, crdt.ErrNotFound)
}

func TestTruncatedAndFlippedChangesAreRefused(t *testing.T) {
	d := newDoc(t, "aa01")
	c := put(t, d, "dose", "500 mg", t0)
	for n := 0; n < len(c.Raw); n++ {
		_, err := crdt.ParseChanges(c.Raw[:n])
		require.ErrorIs(t, err, crdt.ErrMalformed, "truncated to %d bytes", n)
	}
	for i := range c.Raw {
		bad := append([]byte(nil), c.Raw...)
		bad[i] ^= 0x40
		chs, err := crdt.ParseChanges(bad)
		if err == nil {
			// A flip inside the body changes the hash, so the change is a
			// different, valid one; applying it must not disturb d.
			heads := d.Heads()
			_, aerr := d.Apply(chs...)
			if aerr != nil {
				assert.Equal(t, heads, d.Heads(), "flip at %d", i)
			}
			continue
		}
		require.ErrorIs(t, err, crdt.ErrMalformed, fmt.Sprintf("flip at %d", i))
	}
}

func TestApplyRefusesChangeWhoseBytesDoNotMatchHash(t *testing.T) {
	a := newDoc(t, "aa01")
	c := put(t, a, "k", "v", t0)
	b, err := a.Fork(crdt.Heads{c.Deps[0]}, "bb02")
	require.NoError(t, err)
	forged := c
	forged.Hash[0] ^= 1
	heads := b.Heads()
	_, err = b.Apply(forged)
	require.ErrorIs(t, err, crdt.ErrMalformed)
	assert.Equal(t, heads, b.Heads())
}

func TestApplyStoredFastAndSlowPaths(t *testing.T) {
	a := newDoc(t, "aa01")
	put(t, a, "k1", "v1", t0)
	put(t, a, "k2", "v2", t0)
	all, err := a.Changes(nil)
	require.NoError(t, err)

	fast, err := crdt.New("bb02")
	require.NoError(t, err)
	require.NoError(t, fast.ApplyStored(crdt.SaveChanges(all), hashes(all)))
	assert.Equal(t, a.Heads(), fast.Heads())

	slow, err := crdt.New("bb02")
	require.NoError(t, err)
	require.NoError(t, slow.ApplyStored(crdt.SaveChanges(all[1:]), hashes(all[1:])), "missing first change is held, not refused")
	assert.Len(t, slow.Pending(), 2)
	require.NoError(t, slow.ApplyStored(all[0].Raw, hashes(all[:1])))
	assert.Empty(t, slow.Pending())
	assert.Equal(t, a.Heads(), slow.Heads())

	heads := slow.Heads()
	next := put(t, a, "k3", "v3", t0)
	other := put(t, a, "k4", "v4", t0)
	require.ErrorIs(t, slow.ApplyStored([]byte("garbage"), hashes([]crdt.Change{next})), crdt.ErrMalformed)
	assert.Equal(t, heads, slow.Heads())
	require.ErrorIs(t, slow.ApplyStored(other.Raw, hashes([]crdt.Change{next})), crdt.ErrMalformed, "bytes that are not the promised change")
	assert.Equal(t, heads, slow.Heads())
}

func hashes(chs []crdt.Change) []crdt.Hash {
	out := make([]crdt.Hash, len(chs))
	for i, c := range chs {
		out[i] = c.Hash
	}
	return out
}

func TestHashJSONIsHex(t *testing.T) {
	h := crdt.Hash{0xab, 0x01}
	b, err := json.Marshal(crdt.Heads{h})
	require.NoError(t, err)
	assert.Equal(t, `["`+h.String()+`"]`, string(b))
	var back crdt.Heads
	require.NoError(t, json.Unmarshal(b, &back))
	assert.Equal(t, crdt.Heads{h}, back)
	assert.ErrorIs(t, json.Unmarshal([]byte(`["zz"]`), &back), crdt.ErrMalformed)
}
