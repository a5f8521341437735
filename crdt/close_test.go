package crdt_test

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/crdt/internal/cmem"
)

// A closed document refuses every use with ErrClosed (or reports
// nothing, for the calls without an error), never crashes, and closing
// it again is harmless. Forks made before are untouched.
func TestClosedDocRefusesUse(t *testing.T) {
	d, chs := chartHistory(t, 20)
	fork, err := d.Fork(nil, "dd04")
	require.NoError(t, err)
	require.NoError(t, d.Close())
	require.NoError(t, d.Close(), "closing twice")

	edit := func(tx *crdt.Tx) error { return tx.Put([]string{"patient"}, "family", "Mwangi") }
	calls := map[string]func() error{
		"Apply":       func() error { _, err := d.Apply(chs[0]); return err },
		"ApplyStored": func() error { return d.ApplyStored(chs[0].Raw, []crdt.Hash{chs[0].Hash}) },
		"Edit":        func() error { _, err := d.Edit("", t0, edit); return err },
		"Fork":        func() error { _, err := d.Fork(nil, "dd05"); return err },
		"Changes":     func() error { _, err := d.Changes(nil); return err },
		"SaveChecked": func() error { _, err := d.SaveChecked(); return err },
		"OpIndex":     func() error { _, err := d.OpIndex(); return err },
		"Strings":     func() error { _, err := d.Strings("patient"); return err },
		"Keys":        func() error { _, err := d.Keys("patient"); return err },
		"IsMap":       func() error { return d.IsMap("patient") },
		"String":      func() error { _, err := d.String([]string{"patient"}, "family"); return err },
		"Text":        func() error { _, err := d.Text([]string{"patient"}, "note"); return err },
		"Merge":       func() error { _, err := fork.Merge(d); return err },
	}
	for name, call := range calls {
		assert.ErrorIs(t, call(), crdt.ErrClosed, "%s on a closed document", name)
	}
	assert.Nil(t, d.Save(), "a closed document saves nothing")
	assert.Nil(t, d.Heads(), "a closed document has no heads")
	assert.False(t, d.Has(chs[0].Hash), "a closed document holds no change")
	assert.Empty(t, d.Pending(), "a closed document holds no change")

	v, err := fork.String([]string{"patient"}, "family")
	require.NoError(t, err, "a fork outlives the document it was made from")
	assert.Equal(t, "Okafor", v)
}

// Close gives the document's Automerge memory back at once, without
// waiting for the garbage collector.
func TestCloseReleasesAutomergeMemory(t *testing.T) {
	if cmem.InUse() == 0 {
		t.Skip("the C heap cannot be measured here")
	}
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	d, _ := chartHistory(t, 300)
	saved := d.Save()
	runtime.GC()
	before := cmem.InUse()
	docs := make([]*crdt.Doc, 20)
	for i := range docs {
		var err error
		docs[i], err = crdt.Load(saved, "dd04")
		require.NoError(t, err)
	}
	loaded := cmem.InUse()
	require.Greater(t, loaded-before, int64(len(docs))*10_000, "20 loaded charts hold C memory")
	for _, l := range docs {
		require.NoError(t, l.Close())
	}
	left := cmem.InUse() - before
	assert.Less(t, left, (loaded-before)/10, "C memory still held after closing every document: %d of %d bytes", left, loaded-before)
	runtime.KeepAlive(docs)
}

// Closing a document while other goroutines read, edit and fork it
// gives each of them a result or ErrClosed, never a crash or another
// error.
func TestCloseWhileInUse(t *testing.T) {
	for round := range 20 {
		d, _ := chartHistory(t, 30)
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 10 {
					var err error
					switch (g + i) % 4 {
					case 0:
						_, err = d.String([]string{"patient"}, "family")
					case 1:
						_, err = d.Edit("", t0, func(tx *crdt.Tx) error {
							return tx.Put([]string{"patient"}, "village", fmt.Sprint(round, g, i))
						})
					case 2:
						var f *crdt.Doc
						if f, err = d.Fork(nil, "dd04"); err == nil {
							err = f.Close()
						}
					default:
						_, err = d.Changes(nil)
					}
					if err != nil && !assert.ErrorIs(t, err, crdt.ErrClosed) {
						errs <- err
						return
					}
				}
			}()
		}
		require.NoError(t, d.Close())
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("round %d: %v", round, err)
		}
	}
}

// Changes since any version, read from the document's own record of
// its changes, are exactly those a fork at that version lacks, each
// after its dependencies; a version the document does not know is
// ErrNotFound.
func TestChangesSinceAVersion(t *testing.T) {
	d, all := chartHistory(t, 120)
	got, err := d.Changes(nil)
	require.NoError(t, err)
	require.Len(t, got, len(all))
	for _, i := range []int{0, 1, 17, 60, 119} {
		since := crdt.Heads{all[i].Hash}
		past, err := d.Fork(since, "dd04")
		require.NoError(t, err)
		want := map[crdt.Hash]bool{}
		for _, c := range all {
			if !past.Has(c.Hash) {
				want[c.Hash] = true
			}
		}
		require.NoError(t, past.Close())
		chs, err := d.Changes(since)
		require.NoError(t, err)
		seen := map[crdt.Hash]bool{}
		for _, c := range chs {
			assert.True(t, want[c.Hash], "change %s since %d is held at that version", c.Hash, i)
			for _, dep := range c.Deps {
				assert.True(t, !want[dep] || seen[dep], "change %s comes before its dependency %s", c.Hash, dep)
			}
			seen[c.Hash] = true
			parsed, err := crdt.ParseChange(c.Raw)
			require.NoError(t, err)
			assert.Equal(t, parsed, c, "a change read from the record is the one Automerge reads")
		}
		assert.Len(t, chs, len(want), "changes since %d", i)
	}
	_, err = d.Changes(crdt.Heads{{1, 2, 3}})
	assert.ErrorIs(t, err, crdt.ErrNotFound)
}
