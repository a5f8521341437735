package crdt_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
)

func seedDoc(f *testing.F) *crdt.Doc {
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

// FuzzLoad feeds arbitrary bytes to Load: it must return a document or an
// ErrMalformed error, never panic.
func FuzzLoad(f *testing.F) {
	d := seedDoc(f)
	f.Add(d.Save())
	f.Add([]byte{})
	f.Add([]byte{0x85, 0x6f, 0x4a, 0x83})
	f.Fuzz(func(t *testing.T, data []byte) {
		doc, err := crdt.Load(data, "")
		if err != nil {
			require.ErrorIs(t, err, crdt.ErrMalformed)
			return
		}
		_ = doc.Heads()
		_, _ = doc.Keys()
	})
}

// FuzzApply parses arbitrary bytes as changes and applies them to a chart:
// either it is refused with ErrMalformed and the document is unchanged, or
// the changes apply and the document stays readable.
func FuzzApply(f *testing.F) {
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
		parsed, err := crdt.ParseChanges(data)
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
	})
}
