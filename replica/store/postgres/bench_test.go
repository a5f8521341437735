package postgres_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/replica/store"
	"github.com/chartsync/chartsync/replica/store/postgres"
	"github.com/chartsync/chartsync/replica/store/postgres/pgtest"
	"github.com/chartsync/chartsync/replica/store/sqlite"
)

// backends opens an empty store of each kind for a benchmark.
func backends(b *testing.B) map[string]func(b *testing.B) store.Store {
	return map[string]func(b *testing.B) store.Store{
		"sqlite": func(b *testing.B) store.Store {
			s, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "charts.db"))
			require.NoError(b, err)
			b.Cleanup(func() { _ = s.Close() })
			return s
		},
		"postgres": func(b *testing.B) store.Store {
			s, err := postgres.Open(context.Background(), pgtest.ConnString(b), postgres.Config{Schema: pgtest.Schema(b)})
			require.NoError(b, err)
			b.Cleanup(func() { _ = s.Close() })
			return s
		},
	}
}

// benchChange is a change of about the size of a clinical edit.
func benchChange(chart string, n int) store.NewChange {
	c := change(chart, n, "")
	c.Raw = append(c.Raw, make([]byte, 300)...)
	return c
}

// BenchmarkWrite measures durable writes, one after another, of batches
// of one change and of 100 changes (a received bundle), each with its
// chart's index entry.
func BenchmarkWrite(b *testing.B) {
	for _, name := range []string{"sqlite", "postgres"} {
		for _, size := range []int{1, 100} {
			b.Run(fmt.Sprintf("%s/%d-changes", name, size), func(b *testing.B) {
				s := backends(b)[name](b)
				ctx := context.Background()
				n := 0
				b.ResetTimer()
				for i := 0; b.Loop(); i++ {
					chart := fmt.Sprint("c", i%50)
					batch := store.Batch{Charts: []store.Chart{{ID: chart, Scope: []string{"north"}}}}
					for range size {
						n++
						batch.Changes = append(batch.Changes, benchChange(chart, n))
					}
					if _, err := s.Write(ctx, batch); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
				b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "changes/s")
			})
		}
	}
}

// BenchmarkWriteParallel measures writes of one change from 8 goroutines
// at once: SQLite takes them one at a time on one connection, PostgreSQL
// on a pool of 4, ordered by the log head's lock.
func BenchmarkWriteParallel(b *testing.B) {
	for _, name := range []string{"sqlite", "postgres"} {
		b.Run(name, func(b *testing.B) {
			s := backends(b)[name](b)
			ctx := context.Background()
			var n atomic.Int64
			b.SetParallelism(4) // 8 goroutines on 2 CPUs
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := int(n.Add(1))
					if _, err := s.Write(ctx, store.Batch{Changes: []store.NewChange{benchChange(fmt.Sprint("c", i%50), i)}}); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
		})
	}
}

// BenchmarkLog measures reading the log in pages of 500 changes (as a
// sync does), from a log of 10,000 changes, and one clinic's log of 2,000
// of them.
func BenchmarkLog(b *testing.B) {
	const total, page = 10_000, 500
	for _, name := range []string{"sqlite", "postgres"} {
		s := backends(b)[name](b)
		ctx := context.Background()
		for i := 0; i < total; i += 100 {
			var batch store.Batch
			for j := i; j < i+100; j++ {
				batch.Changes = append(batch.Changes, benchChange(fmt.Sprint("c", j%50), j))
			}
			_, err := s.Write(ctx, batch)
			require.NoError(b, err)
		}
		var charts []store.Chart
		for c := range 10 { // 10 of 50 charts: a fifth of the log
			charts = append(charts, store.Chart{ID: fmt.Sprint("c", c), Scope: []string{"north"}})
		}
		_, err := s.Write(ctx, store.Batch{Charts: charts})
		require.NoError(b, err)
		for _, q := range []struct {
			name string
			read func(after uint64) ([]store.Change, error)
			size int
		}{
			{"all", func(after uint64) ([]store.Change, error) { return s.Log(ctx, after, page) }, total},
			{"clinic", func(after uint64) ([]store.Change, error) {
				return s.LogFor(ctx, store.LogQuery{After: after, Clinic: "north", Limit: page})
			}, total / 5},
		} {
			b.Run(name+"/"+q.name, func(b *testing.B) {
				read := 0
				var after uint64
				for b.Loop() {
					got, err := q.read(after)
					if err != nil {
						b.Fatal(err)
					}
					read += len(got)
					if len(got) < page {
						after = 0
					} else {
						after = got[len(got)-1].Seq
					}
				}
				b.ReportMetric(float64(read)/b.Elapsed().Seconds(), "changes/s")
			})
		}
	}
}
