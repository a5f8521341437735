package replica_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"runtime/debug"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/store"
)

// residentMiB returns the process's resident set now, in MiB (0 if it
// cannot be read).
func residentMiB() float64 { return float64(replica.ResidentBytes()) / (1 << 20) }

// storeOfCharts returns a memory store holding n charts of 40 changes
// each (a registration, then allergies, prescriptions and encounters
// with notes: about 12 KB of changes, as stored charts average), and
// their IDs.
func storeOfCharts(b *testing.B, n int) (*store.Mem, []string) {
	b.Helper()
	ctx := context.Background()
	r, st := newMem(b, replica.Config{})
	ids := make([]string, 0, n)
	at := frozen()
	for len(ids) < n {
		var batch []*record.Chart
		for range min(50, n-len(ids)) {
			id := uuid.NewString()
			c, _, err := record.New(id, r.ID(), nurse, at, record.Register{
				GivenName: fmt.Sprintf("Given%d", len(ids)), FamilyName: "Okafor", Sex: "female",
				EstimatedBirthYear: 1988, Village: "Kamuga", HomeClinic: "kamuga-dispensary",
			})
			require.NoError(b, err)
			for i := 1; i < 40; i++ {
				var op record.Op
				switch i % 3 {
				case 0:
					op = allergy(i)
				case 1:
					op = prescribe(fmt.Sprintf("Drug%d", i), 500)
				default:
					op = record.AddEncounter{Complaint: "fever", Note: "Temperature 38.5, given paracetamol; review in three days."}
				}
				_, err := c.Do(doctor, at.Add(time.Duration(i)*time.Hour), op)
				require.NoError(b, err)
			}
			batch = append(batch, c)
			ids = append(ids, id)
		}
		require.NoError(b, r.Import(ctx, batch))
		// Import keeps none of them: their Automerge memory is let go
		// now rather than left to finalizers, which would count it in
		// the measures that follow.
		for _, c := range batch {
			require.NoError(b, c.Doc().Close())
		}
	}
	return st, ids
}

// BenchmarkCachedChart reports what one cached chart costs: the growth
// of the resident set (and of the Go heap) when 256 charts of 40 changes
// are read into the cache, per chart. Run it alone (-run '^$').
func BenchmarkCachedChart(b *testing.B) {
	ctx := context.Background()
	const n = 256
	st, ids := storeOfCharts(b, n)
	var rss, heap float64
	for b.Loop() {
		r, err := replica.New(ctx, keepOpen{st}, replica.Config{CacheCharts: n})
		require.NoError(b, err)
		runtime.GC()
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		before := residentMiB()
		for _, id := range ids {
			_, err := r.Chart(ctx, id)
			require.NoError(b, err)
		}
		runtime.GC()
		runtime.ReadMemStats(&m1)
		rss = (residentMiB() - before) * (1 << 20) / n
		heap = float64(m1.HeapInuse-m0.HeapInuse) / n
		require.NoError(b, r.Close())
	}
	b.ReportMetric(rss, "RSS-bytes/chart")
	b.ReportMetric(heap, "heap-bytes/chart")
}

// BenchmarkRandomViews views 20,000 charts chosen at random among 1,000
// through the default cache (256 charts), as a busy clinic does, and
// reports the process's peak resident set (peak-RSS-MiB, the store's
// making included) and the resident set at the end; store-RSS-MiB is the
// resident set once the store of 1,000 charts is made (the Go runtime
// having given back what it does not use), and views-peak-RSS-MiB the
// highest resident set while the views run, sampled after each. Run it
// alone (-run '^$' -benchtime=1x), as the peak is the process's.
func BenchmarkRandomViews(b *testing.B) {
	ctx := context.Background()
	st, ids := storeOfCharts(b, 1000)
	rng := rand.New(rand.NewPCG(1, 2))
	runtime.GC()
	debug.FreeOSMemory()
	base := residentMiB()
	var during float64
	for b.Loop() {
		r, err := replica.New(ctx, keepOpen{st}, replica.Config{})
		require.NoError(b, err)
		for range 20000 {
			_, err := r.Chart(ctx, ids[rng.IntN(len(ids))])
			require.NoError(b, err)
			during = max(during, residentMiB())
		}
		require.NoError(b, r.Close())
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(maxRSS())/(1<<20), "peak-RSS-MiB")
	b.ReportMetric(residentMiB(), "end-RSS-MiB")
	b.ReportMetric(base, "store-RSS-MiB")
	b.ReportMetric(during, "views-peak-RSS-MiB")
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-inuse-MiB")
}
