package sqlite_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica/store"
	"github.com/chartsync/chartsync/replica/store/sqlite"
)

// benchChart is one registered patient's chart as a replica writes it:
// its changes and its index entry.
type benchChart struct {
	changes []store.NewChange
	entry   store.Chart
}

var (
	benchOnce   sync.Once
	benchCharts []benchChart
)

// benchBatches returns the batches of n small charts (a registration and
// three diagnoses each), made once per process.
func benchBatches(tb testing.TB, n int) []benchChart {
	tb.Helper()
	benchOnce.Do(func() {
		by := record.Author{UserID: "u-1", Name: "Nurse One", Role: record.RoleClinician, Device: "tab-1"}
		at := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
		for i := range 1000 {
			id := fmt.Sprintf("6f1c2d3e-4b5a-4c7d-8e9f-%012d", i)
			c, _, err := record.New(id, crdt.NewActorID(), by, at, record.Register{GivenName: "Amina", FamilyName: fmt.Sprintf("Okafor%d", i), Sex: "female", EstimatedBirthYear: 1990, Village: "Lwanda", HomeClinic: "north"})
			require.NoError(tb, err)
			for j := range 3 {
				_, err := c.Do(by, at.Add(time.Duration(j+1)*time.Hour), record.Diagnose{Code: "B54", Text: "Malaria, unspecified"})
				require.NoError(tb, err)
			}
			chs, err := c.Doc().Changes(nil)
			require.NoError(tb, err)
			bc := benchChart{entry: store.Chart{ID: id, Heads: c.Doc().Heads(), GivenName: "Amina", FamilyName: fmt.Sprintf("Okafor%d", i),
				Village: "Lwanda", HomeClinic: "north", Scope: []string{"north"}, Updated: at, Keys: []string{"amina", fmt.Sprintf("okafor%d", i), "lwanda"}}}
			for _, ch := range chs {
				bc.changes = append(bc.changes, store.NewChange{Chart: id, Hash: ch.Hash, Raw: ch.Raw})
			}
			c.Doc().Close()
			benchCharts = append(benchCharts, bc)
		}
	})
	require.LessOrEqual(tb, n, len(benchCharts))
	return benchCharts[:n]
}

func (c benchChart) batch() store.Batch {
	return store.Batch{Changes: c.changes, Charts: []store.Chart{c.entry}}
}

// benchConfigs are the stores each benchmark compares: in clear and
// encrypted.
func benchConfigs() []struct {
	name string
	cfg  sqlite.Config
} {
	return []struct {
		name string
		cfg  sqlite.Config
	}{
		{"plain", sqlite.Config{}},
		{"encrypted", sqlite.Config{Key: bytes.Repeat([]byte{0x5a}, sqlite.KeySize)}},
	}
}

// filledStore writes charts into a new store at path, one batch each.
func filledStore(tb testing.TB, path string, cfg sqlite.Config, charts []benchChart) *sqlite.Store {
	tb.Helper()
	ctx := context.Background()
	s, err := sqlite.OpenConfig(ctx, path, cfg)
	require.NoError(tb, err)
	for _, c := range charts {
		_, err := s.Write(ctx, c.batch())
		require.NoError(tb, err)
	}
	return s
}

// BenchmarkOpen opens and closes a store of 1,000 charts (4,000 changes).
func BenchmarkOpen(b *testing.B) {
	ctx := context.Background()
	for _, bc := range benchConfigs() {
		b.Run(bc.name, func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "charts.db")
			require.NoError(b, filledStore(b, path, bc.cfg, benchBatches(b, 1000)).Close())
			b.ResetTimer()
			for b.Loop() {
				s, err := sqlite.OpenConfig(ctx, path, bc.cfg)
				require.NoError(b, err)
				_, err = s.Head(ctx)
				require.NoError(b, err)
				require.NoError(b, s.Close())
			}
		})
	}
}

// BenchmarkWrite writes one chart a batch (4 changes and its entry, one
// fsynced transaction), as registering a patient does.
func BenchmarkWrite(b *testing.B) {
	ctx := context.Background()
	for _, bc := range benchConfigs() {
		b.Run(bc.name, func(b *testing.B) {
			charts := benchBatches(b, 1000)
			dir := b.TempDir()
			s, err := sqlite.OpenConfig(ctx, filepath.Join(dir, "charts.db"), bc.cfg)
			require.NoError(b, err)
			defer s.Close()
			i := 0
			for b.Loop() {
				if i == len(charts) {
					// Start again on a new file, so that every write adds
					// a chart.
					b.StopTimer()
					require.NoError(b, s.Close())
					s, err = sqlite.OpenConfig(ctx, filepath.Join(dir, fmt.Sprintf("charts-%d.db", i)), bc.cfg)
					require.NoError(b, err)
					i = 0
					b.StartTimer()
				}
				_, err := s.Write(ctx, charts[i].batch())
				require.NoError(b, err)
				i++
			}
		})
	}
}

// BenchmarkSyncRead reads a clinic's whole log (4,000 changes, pages of
// 500), as a sync to a new device of the clinic does. Warm, the store
// stays open, and its pages stay in SQLite's cache (the database, about
// 2 MB, fits); cold, each read opens the store first, so every page is
// read (and, encrypted, decrypted) again, as on a database larger than
// the cache.
func BenchmarkSyncRead(b *testing.B) {
	ctx := context.Background()
	readLog := func(b *testing.B, s *sqlite.Store) {
		var after uint64
		n := 0
		for range 100 {
			page, err := s.LogFor(ctx, store.LogQuery{Clinic: "north", After: after, Limit: 500})
			require.NoError(b, err)
			if len(page) == 0 {
				break
			}
			n += len(page)
			after = page[len(page)-1].Seq
		}
		require.Equal(b, 4000, n)
	}
	for _, bc := range benchConfigs() {
		b.Run(bc.name, func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "charts.db")
			s := filledStore(b, path, bc.cfg, benchBatches(b, 1000))
			defer s.Close()
			b.Run("warm", func(b *testing.B) {
				for b.Loop() {
					readLog(b, s)
				}
			})
			b.Run("cold", func(b *testing.B) {
				for b.Loop() {
					s, err := sqlite.OpenConfig(ctx, path, bc.cfg)
					require.NoError(b, err)
					readLog(b, s)
					require.NoError(b, s.Close())
				}
				fi, err := os.Stat(path)
				require.NoError(b, err)
				b.ReportMetric(float64(fi.Size()), "db-bytes")
			})
		})
	}
}
