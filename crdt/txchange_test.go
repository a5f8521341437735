package crdt_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
)

// TestTxChangeNamesTheChangeMade: Tx.Change tells the actor and sequence
// number of the change the Edit commits, on a new document, one loaded
// from its saved bytes, a whole fork, a fork at past heads (whose history
// is read from its changes' bytes while the transaction has written
// operations) and a document that received another actor's changes; and
// the transaction is unusable once its Edit returned.
func TestTxChangeNamesTheChangeMade(t *testing.T) {
	d := newDoc(t, "aa01")
	first := put(t, d, "a", "1", t0.Add(time.Minute))
	put(t, d, "b", "2", t0.Add(2*time.Minute))
	other, err := d.Fork(nil, "bb02")
	require.NoError(t, err)
	fromOther := put(t, other, "c", "3", t0.Add(3*time.Minute))
	received, err := d.Fork(nil, "aa01")
	require.NoError(t, err)
	_, err = received.Apply(fromOther)
	require.NoError(t, err)
	loaded, err := crdt.Load(d.Save(), "aa01")
	require.NoError(t, err)
	whole, err := d.Fork(nil, "cc03")
	require.NoError(t, err)
	past, err := d.Fork(crdt.Heads{first.Hash}, "aa01")
	require.NoError(t, err)
	pastOfPast, err := past.Fork(crdt.Heads{first.Hash}, "dd04")
	require.NoError(t, err)

	for _, tc := range []struct {
		name    string
		doc     *crdt.Doc
		actor   string
		wantSeq uint64
	}{
		{"the document", d, "aa01", 4},
		{"loaded", loaded, "aa01", 4},
		{"a whole fork, another actor", whole, "cc03", 1},
		{"a fork at past heads", past, "aa01", 3},
		{"a fork of a fork", pastOfPast, "dd04", 1},
		{"after another actor's change", received, "aa01", 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var tx *crdt.Tx
			var actor string
			var seq uint64
			ch, err := tc.doc.Edit("x", t0.Add(time.Hour), func(x *crdt.Tx) error {
				tx = x
				if err := x.Put([]string{"m"}, "before", "x"); err != nil {
					return err
				}
				var err error
				if actor, seq, err = x.Change(); err != nil {
					return err
				}
				return x.Put([]string{"m"}, "after", "y")
			})
			require.NoError(t, err)
			assert.Equal(t, tc.actor, actor)
			assert.Equal(t, tc.wantSeq, seq)
			assert.Equal(t, ch.Actor, actor)
			assert.Equal(t, ch.Seq, seq)
			v, err := tc.doc.String([]string{"m"}, "before")
			require.NoError(t, err)
			assert.Equal(t, "x", v, "the operations written before Change are kept")
			_, _, err = tx.Change()
			assert.Error(t, err, "a transaction is unusable after its Edit")
		})
	}
}
