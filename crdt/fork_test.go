package crdt_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
)

// A whole-document fork shares the history its original has judged
// changes with; each then records on its own. Refusals (which undo what
// was recorded) on one side and new changes on both must leave each
// judging as a document built from scratch would.
func TestForkSharesHistoryWithoutTouchingTheOriginal(t *testing.T) {
	at := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	put := func(t *testing.T, d *crdt.Doc, key, v string) crdt.Change {
		t.Helper()
		c, err := d.Edit("", at, func(tx *crdt.Tx) error { return tx.Put(nil, key, v) })
		require.NoError(t, err)
		return c
	}
	d, err := crdt.New(crdt.NewActorID())
	require.NoError(t, err)
	for i := range 20 {
		put(t, d, fmt.Sprintf("k%d", i%5), fmt.Sprint(i))
	}
	last := put(t, d, "last", "x")
	f, err := d.Fork(nil, crdt.NewActorID())
	require.NoError(t, err)

	// A refused change on each side, then new changes on each.
	info, err := crdt.ChangeOps(last.Raw)
	require.NoError(t, err)
	info.Seq += 3
	raw, err := crdt.EncodeChange(info)
	require.NoError(t, err)
	bad, err := crdt.ParseChange(raw)
	require.NoError(t, err)
	for _, doc := range []*crdt.Doc{d, f} {
		_, err = doc.Apply(bad)
		require.ErrorIs(t, err, crdt.ErrInvalidChange)
	}
	var dChs, fChs []crdt.Change
	for i := range 10 {
		dChs = append(dChs, put(t, d, "d", fmt.Sprint(i)))
		fChs = append(fChs, put(t, f, "f", fmt.Sprint(i)))
	}

	// Each takes the other's changes, and saves what loads again.
	_, err = d.Apply(fChs...)
	require.NoError(t, err)
	_, err = f.Apply(dChs...)
	require.NoError(t, err)
	assert.True(t, d.Heads().Equal(f.Heads()))
	for _, doc := range []*crdt.Doc{d, f} {
		_, err := doc.SaveChecked()
		require.NoError(t, err)
		_, err = doc.Apply(bad)
		require.ErrorIs(t, err, crdt.ErrInvalidChange, "each still judges as before")
	}
}
