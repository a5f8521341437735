package crdt_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/chartsync/chartsync/crdt"
)

// Whatever valid edits and merges several replicas make, every document
// they save loads back (through the Go reading Load does) to the same
// heads and content, and SaveChecked agrees.
func TestPropertySaveLoadRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		actors := []string{"aa01", "bb02", "cc03"}
		first, err := crdt.New(actors[0])
		require.NoError(t, err)
		_, err = first.Edit("init", t0, func(tx *crdt.Tx) error {
			if err := tx.PutMap(nil, "m"); err != nil {
				return err
			}
			return tx.PutText([]string{"m"}, "note", "fever")
		})
		require.NoError(t, err)
		docs := []*crdt.Doc{first}
		for _, a := range actors[1:] {
			d, err := first.Fork(nil, a)
			require.NoError(t, err)
			docs = append(docs, d)
		}
		keys := rapid.SampledFrom([]string{"dose", "route", "status", "e1", "e2"})
		steps := rapid.IntRange(1, 25).Draw(t, "steps")
		for i := range steps {
			d := docs[rapid.IntRange(0, len(docs)-1).Draw(t, "doc")]
			switch rapid.IntRange(0, 5).Draw(t, "kind") {
			case 0: // merge another replica
				o := docs[rapid.IntRange(0, len(docs)-1).Draw(t, "from")]
				_, err := d.Merge(o)
				require.NoError(t, err, "merge")
			case 1: // a nested map with fields
				k := keys.Draw(t, "map")
				_, err := d.Edit("map", t0, func(tx *crdt.Tx) error {
					if err := tx.PutMap([]string{"m"}, "sub"+k); err != nil {
						return err
					}
					return tx.Put([]string{"m", "sub" + k}, "v", fmt.Sprint(i))
				})
				if err != nil {
					require.ErrorIs(t, err, crdt.ErrWrongType)
				}
			case 2, 3: // edit the note: delete and insert
				s, err := textOf(d)
				require.NoError(t, err)
				n := len([]rune(s))
				pos := rapid.IntRange(0, n).Draw(t, "pos")
				del := rapid.IntRange(0, n-pos).Draw(t, "del")
				ins := rapid.SampledFrom([]string{"", "a", "é🙂", "worse at night"}).Draw(t, "ins")
				if del == 0 && ins == "" {
					ins = "x"
				}
				_, err = d.Edit("note", t0, func(tx *crdt.Tx) error {
					return tx.SpliceText([]string{"m"}, "note", pos, del, ins)
				})
				require.NoError(t, err, "splice")
			default: // overwrite a field
				k := keys.Draw(t, "key")
				_, err := d.Edit("put", t0, func(tx *crdt.Tx) error { return tx.Put([]string{"m"}, k, fmt.Sprint("v", i)) })
				require.NoError(t, err, "put")
			}
			for j, d := range docs {
				saved := d.Save()
				l, err := crdt.Load(saved, "dd04")
				require.NoError(t, err, "replica %d's saved document loads", j)
				require.Equal(t, d.Heads(), l.Heads(), "replica %d loads to its heads", j)
				want, err := d.Strings("m")
				require.NoError(t, err)
				got, err := l.Strings("m")
				require.NoError(t, err)
				require.Equal(t, want, got, "replica %d loads to its content", j)
				wantText, _ := textOf(d)
				gotText, _ := textOf(l)
				require.Equal(t, wantText, gotText)
				checked, err := d.SaveChecked()
				require.NoError(t, err, "replica %d saves checked", j)
				require.Equal(t, saved, checked)
			}
		}
	})
}

func textOf(d *crdt.Doc) (string, error) { return d.Text([]string{"m"}, "note") }
