package crdt_test

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
)

// chartHistory builds a document the way a chart grows: three devices
// each add entries (maps of string fields), correct fields and extend a
// shared clinical note, merging with each other now and then. It returns
// the first device's document, holding every change, and the changes in
// causal order.
func chartHistory(tb testing.TB, n int) (*crdt.Doc, []crdt.Change) {
	tb.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	at := t0
	first, err := crdt.New("aa01")
	require.NoError(tb, err)
	_, err = first.Edit("create", at, func(tx *crdt.Tx) error {
		if err := tx.PutMap(nil, "patient"); err != nil {
			return err
		}
		if err := tx.Put([]string{"patient"}, "family", "Okafor"); err != nil {
			return err
		}
		if err := tx.PutMap(nil, "entries"); err != nil {
			return err
		}
		return tx.PutText([]string{"patient"}, "note", "Presented with fever.")
	})
	require.NoError(tb, err)
	devices := []*crdt.Doc{first}
	for _, actor := range []string{"bb02", "cc03"} {
		d, err := first.Fork(nil, actor)
		require.NoError(tb, err)
		devices = append(devices, d)
	}
	made := 1
	entries := map[*crdt.Doc][]string{}
	for made < n {
		d := devices[rng.IntN(len(devices))]
		at = at.Add(time.Minute)
		switch k := rng.IntN(10); {
		case k < 4 || len(entries[d]) == 0:
			key := fmt.Sprintf("e%s-%d", d.Actor(), made)
			_, err = d.Edit("add entry", at, func(tx *crdt.Tx) error {
				if err := tx.PutMap([]string{"entries"}, key); err != nil {
					return err
				}
				for _, f := range []string{"kind", "code", "dose", "status", "author"} {
					if err := tx.Put([]string{"entries", key}, f, fmt.Sprintf("%s-%d", f, rng.IntN(1000))); err != nil {
						return err
					}
				}
				return nil
			})
			entries[d] = append(entries[d], key)
		case k < 7:
			key := entries[d][rng.IntN(len(entries[d]))]
			_, err = d.Edit("correct entry", at, func(tx *crdt.Tx) error {
				return tx.Put([]string{"entries", key}, "status", fmt.Sprintf("status-%d", rng.IntN(1000)))
			})
		default:
			_, err = d.Edit("note", at, func(tx *crdt.Tx) error {
				txt := " Temperature 38.5, given paracetamol."
				return tx.SpliceText([]string{"patient"}, "note", 0, 0, txt[:1+rng.IntN(len(txt)-1)])
			})
		}
		require.NoError(tb, err)
		made++
		if rng.IntN(5) == 0 {
			o := devices[rng.IntN(len(devices))]
			if o != d {
				_, err := d.Merge(o)
				require.NoError(tb, err)
			}
		}
	}
	for _, d := range devices[1:] {
		_, err := first.Merge(d)
		require.NoError(tb, err)
	}
	chs, err := first.Changes(nil)
	require.NoError(tb, err)
	return first, chs
}

// BenchmarkApply applies a ~300-change chart's changes one Apply call at
// a time to an empty document: the cost per change as a chart grows.
func BenchmarkApply(b *testing.B) {
	_, chs := chartHistory(b, 300)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		d, err := crdt.New("dd04")
		require.NoError(b, err)
		for _, c := range chs {
			if _, err := d.Apply(c); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(chs)), "ns/change")
}

// BenchmarkApplyOne applies one change to a document holding the 300
// before it.
func BenchmarkApplyOne(b *testing.B) {
	_, chs := chartHistory(b, 301)
	base, err := crdt.New("dd04")
	require.NoError(b, err)
	_, err = base.Apply(chs[:len(chs)-1]...)
	require.NoError(b, err)
	saved := base.Save()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		d, err := crdt.Load(saved, "dd04")
		require.NoError(b, err)
		b.StartTimer()
		if _, err := d.Apply(chs[len(chs)-1]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoad loads a saved ~300-change chart.
func BenchmarkLoad(b *testing.B) {
	d, _ := chartHistory(b, 300)
	saved := d.Save()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := crdt.Load(saved, "dd04"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSaveChecked saves a ~300-change chart and reads the saved
// bytes back, as a replica does before it stores a snapshot.
func BenchmarkSaveChecked(b *testing.B) {
	d, _ := chartHistory(b, 300)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := d.SaveChecked(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkApplyStored bulk-loads a ~300-change chart's stored changes.
func BenchmarkApplyStored(b *testing.B) {
	_, chs := chartHistory(b, 300)
	raw := crdt.SaveChanges(chs)
	hs := make([]crdt.Hash, len(chs))
	for i, c := range chs {
		hs[i] = c.Hash
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		d, err := crdt.New("dd04")
		require.NoError(b, err)
		if err := d.ApplyStored(raw, hs); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEdit makes one edit on a ~300-change chart.
func BenchmarkEdit(b *testing.B) {
	d, _ := chartHistory(b, 300)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, err := d.Edit("correct", t0, func(tx *crdt.Tx) error {
			return tx.Put([]string{"patient"}, "family", fmt.Sprint("Okafor", i))
		}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHistoryMemory reports the heap a ~300-change chart's judging
// state keeps (bytes/doc), beside its saved size, by building that state
// b.N times and keeping it.
func BenchmarkHistoryMemory(b *testing.B) {
	d, chs := chartHistory(b, 300)
	ops := 0
	for _, c := range chs {
		info, err := crdt.ChangeOps(c.Raw)
		require.NoError(b, err)
		ops += len(info.Ops)
	}
	kept := make([]any, 0, b.N)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for range b.N {
		h, err := crdt.NewHistoryOf(d)
		require.NoError(b, err)
		kept = append(kept, h)
	}
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(b.N), "bytes/doc")
	b.ReportMetric(float64(len(chs)), "changes")
	b.ReportMetric(float64(ops), "ops")
	b.ReportMetric(float64(len(d.Save())), "saved-bytes")
	runtime.KeepAlive(kept)
}
