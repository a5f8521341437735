package crdt_test

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
)

// forge decodes c, lets mutate change it and encodes it again, as a peer
// crafting a change could.
func forge(t *testing.T, c crdt.Change, mutate func(*crdt.ChangeInfo)) crdt.Change {
	t.Helper()
	info := decode(t, c)
	info.Deps = slices.Clone(info.Deps)
	info.Ops = slices.Clone(info.Ops)
	for i := range info.Ops {
		info.Ops[i].Pred = slices.Clone(info.Ops[i].Pred)
	}
	mutate(&info)
	raw, err := crdt.EncodeChange(info)
	require.NoError(t, err)
	out, err := crdt.ParseChange(raw)
	require.NoError(t, err, "the forged change parses")
	return out
}

// forgeries is a document and changes made on copies of it: next is its
// author's next change (a put and a splice that deletes and inserts),
// reused another change of its author with the sequence number of its
// last one, and other a change by a second actor to a map the first made.
type forgeries struct {
	base                *crdt.Doc
	first, last         crdt.Change
	next, reused, other crdt.Change
}

func newForgeries(t *testing.T) forgeries {
	t.Helper()
	base := seedDoc(t)
	chs, err := base.Changes(nil)
	require.NoError(t, err)
	f := forgeries{base: base, first: chs[0], last: chs[1]}
	same, err := base.Fork(nil, "aa01")
	require.NoError(t, err)
	f.next = edit(t, same, "edit", func(tx *crdt.Tx) error {
		if err := tx.Put([]string{"m"}, "dose", "1 g"); err != nil {
			return err
		}
		return tx.SpliceText([]string{"m"}, "note", 1, 1, "a")
	})
	past, err := base.Fork(crdt.Heads{f.first.Hash}, "aa01")
	require.NoError(t, err)
	f.reused = edit(t, past, "reuse", func(tx *crdt.Tx) error { return tx.Put([]string{"m"}, "route", "oral") })
	require.Equal(t, f.last.Seq, f.reused.Seq)
	other, err := base.Fork(nil, "bb02")
	require.NoError(t, err)
	f.other = edit(t, other, "route", func(tx *crdt.Tx) error { return tx.Put([]string{"m"}, "route", "oral") })
	return f
}

// Changes that Automerge would apply (or hold, or abort on) but whose
// document could then not be saved and loaded again are refused by Apply
// itself, with a typed error naming the change, and the document is left
// exactly as it was.
func TestApplyRefusesChangesThatWouldNotSaveAndLoad(t *testing.T) {
	f := newForgeries(t)
	next := decode(t, f.next)
	m, note := next.Ops[0].Obj, next.Ops[1].Obj
	require.Equal(t, crdt.ActionDelete, next.Ops[1].Action, "the splice deletes")
	cases := []struct {
		name string
		bad  func(t *testing.T) crdt.Change
	}{
		{"sequence number skips one", func(t *testing.T) crdt.Change {
			return forge(t, f.next, func(c *crdt.ChangeInfo) { c.Seq++ })
		}},
		{"sequence number reused", func(t *testing.T) crdt.Change { return f.reused }},
		{"sequence number reused, dependencies missing", func(t *testing.T) crdt.Change {
			return forge(t, f.reused, func(c *crdt.ChangeInfo) { c.Deps = []crdt.Hash{{9}} })
		}},
		{"author's previous change not among the dependencies", func(t *testing.T) crdt.Change {
			return forge(t, f.next, func(c *crdt.ChangeInfo) { c.Deps = []crdt.Hash{f.first.Hash} })
		}},
		{"object that does not exist (a byte of the actor table flipped)", func(t *testing.T) crdt.Change {
			raw := bytes.Clone(f.other.Raw)
			at := bytes.LastIndex(raw, []byte{0xaa, 0x01})
			require.Positive(t, at, "the change lists the map's actor")
			raw[at] ^= 0x01
			c, err := crdt.ParseChange(reseal(raw))
			require.NoError(t, err, "the flipped change is well formed")
			return c
		}},
		{"map key in a text (automerge-rs aborts)", func(t *testing.T) crdt.Change {
			return forge(t, f.next, func(c *crdt.ChangeInfo) { c.Ops[1].Key = crdt.Key{Prop: "x"} })
		}},
		{"element in a map", func(t *testing.T) crdt.Change {
			return forge(t, f.next, func(c *crdt.ChangeInfo) { c.Ops[0].Key = crdt.Key{IsElem: true, Elem: note} })
		}},
		{"object nobody made", func(t *testing.T) crdt.Change {
			return forge(t, f.next, func(c *crdt.ChangeInfo) { c.Ops[0].Obj = id(99, "aa01") })
		}},
		{"string value treated as an object", func(t *testing.T) crdt.Change {
			return forge(t, f.next, func(c *crdt.ChangeInfo) { c.Ops[0].Obj = id(m.Counter+1, "aa01") })
		}},
		{"predecessor nobody made", func(t *testing.T) crdt.Change {
			return forge(t, f.next, func(c *crdt.ChangeInfo) { c.Ops[0].Pred = []crdt.OpID{id(98, "aa01")} })
		}},
		{"predecessor at another key", func(t *testing.T) crdt.Change {
			return forge(t, f.next, func(c *crdt.ChangeInfo) { c.Ops[0].Pred = []crdt.OpID{note} })
		}},
		{"deletion of nothing", func(t *testing.T) crdt.Change {
			return forge(t, f.next, func(c *crdt.ChangeInfo) { c.Ops[1].Pred = nil })
		}},
		{"element nobody made", func(t *testing.T) crdt.Change {
			return forge(t, f.next, func(c *crdt.ChangeInfo) { c.Ops[2].Key.Elem = id(97, "aa01") })
		}},
		{"element of another object", func(t *testing.T) crdt.Change {
			return forge(t, f.next, func(c *crdt.ChangeInfo) { c.Ops[2].Key.Elem = m })
		}},
		{"deletion of the head", func(t *testing.T) crdt.Change {
			return forge(t, f.next, func(c *crdt.ChangeInfo) { c.Ops[1].Key = crdt.Key{IsElem: true} })
		}},
		{"map made with a value", func(t *testing.T) crdt.Change {
			return forge(t, f.next, func(c *crdt.ChangeInfo) {
				c.Ops[0].Action, c.Ops[0].Pred = crdt.ActionMakeMap, nil
			})
		}},
		{"operations numbered before what the dependencies hold", func(t *testing.T) crdt.Change {
			return forge(t, f.next, func(c *crdt.ChangeInfo) {
				c.StartOp--
				for i := range c.Ops {
					c.Ops[i].ID.Counter--
				}
			})
		}},
		{"other actor listed that no operation names", func(t *testing.T) crdt.Change {
			return forge(t, f.next, func(c *crdt.ChangeInfo) { c.OtherActors = []string{"cc03"} })
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newForgeries(t)
			bad := tc.bad(t)
			heads, saved, pending := f.base.Heads(), f.base.Save(), f.base.Pending()
			applied, err := f.base.Apply(bad)
			require.ErrorIs(t, err, crdt.ErrInvalidChange, "the change is refused")
			require.ErrorIs(t, err, crdt.ErrMalformed, "callers matching ErrMalformed see the refusal")
			var ice *crdt.InvalidChangeError
			require.ErrorAs(t, err, &ice)
			assert.Equal(t, bad.Hash, ice.Hash, "the error names the refused change")
			assert.Empty(t, applied)
			assert.Equal(t, heads, f.base.Heads(), "heads unchanged")
			assert.Equal(t, saved, f.base.Save(), "document unchanged")
			assert.Equal(t, pending, f.base.Pending(), "nothing held")
			_, err = f.base.SaveChecked()
			require.NoError(t, err, "the document still saves and loads")
			_, err = f.base.Apply(f.next, f.other)
			require.NoError(t, err, "honest changes still apply")
		})
	}
}

// A held change that proves invalid when its dependencies arrive is
// refused then, and is no longer held; the document is unchanged.
func TestApplyJudgesHeldChangesWhenTheyBecomeReady(t *testing.T) {
	f := newForgeries(t)
	bad := forge(t, f.next, func(c *crdt.ChangeInfo) { c.Ops[1].Key = crdt.Key{Prop: "x"} })
	empty, err := crdt.New("dd04")
	require.NoError(t, err)
	applied, err := empty.Apply(bad, f.last)
	require.NoError(t, err, "held until the first change arrives")
	assert.Empty(t, applied)
	assert.Len(t, empty.Pending(), 2)

	heads, saved := empty.Heads(), empty.Save()
	_, err = empty.Apply(f.first)
	require.ErrorIs(t, err, crdt.ErrInvalidChange)
	var ice *crdt.InvalidChangeError
	require.ErrorAs(t, err, &ice)
	assert.Equal(t, bad.Hash, ice.Hash)
	assert.Equal(t, heads, empty.Heads())
	assert.Equal(t, saved, empty.Save())
	assert.Equal(t, []crdt.Change{f.last}, empty.Pending(), "the refused change is no longer held")

	applied, err = empty.Apply(f.first)
	require.NoError(t, err)
	assert.Equal(t, []crdt.Hash{f.first.Hash, f.last.Hash}, applied)
}

// A failed Edit on a document with no changes leaves it with none.
func TestEditRollsBackAnEmptyDocument(t *testing.T) {
	d, err := crdt.New("aa01")
	require.NoError(t, err)
	saved := d.Save()
	boom := errors.New("refused")
	_, err = d.Edit("bad", t0, func(tx *crdt.Tx) error {
		require.NoError(t, tx.PutMap(nil, "m"))
		return boom
	})
	require.ErrorIs(t, err, boom)
	assert.Empty(t, d.Heads(), "no change")
	keys, err := d.Keys()
	require.NoError(t, err)
	assert.Empty(t, keys, "the write is gone")
	assert.Equal(t, saved, d.Save())
	ch := put(t, newDoc(t, "aa01"), "k", "v", t0)
	assert.Equal(t, uint64(2), ch.Seq)
	first, err := d.Edit("init", t0, func(tx *crdt.Tx) error { return tx.PutMap(nil, "m") })
	require.NoError(t, err)
	assert.Equal(t, uint64(1), first.Seq, "the document's first change is still its first")
}

// ApplyStored with no bytes for some hashes is an error, not nothing.
func TestApplyStoredRefusesEmptyBytesForHashes(t *testing.T) {
	d := newDoc(t, "aa01")
	c := put(t, newDoc(t, "aa01"), "k", "v", t0)
	require.NoError(t, d.ApplyStored(nil, nil), "nothing for nothing")
	err := d.ApplyStored(nil, []crdt.Hash{c.Hash, c.Deps[0]})
	require.ErrorIs(t, err, crdt.ErrMalformed)
}
