package replica_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strings"
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
	r, st := newMem(b, replica.Config{})
	return st, makeCharts(b, r, n)
}

// makeCharts imports n charts of 40 changes into r, and returns their
// IDs.
func makeCharts(b testing.TB, r *replica.Replica, n int) []string {
	b.Helper()
	ctx := context.Background()
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
	return ids
}

// BenchmarkCachedChart reports what one cached chart costs: the growth
// of the resident set (and of the Go heap) when 256 charts of 40 changes
// are read into the cache, per chart, and the bytes of the view the cache
// keeps of each (view-bytes/chart). The view codec is made before the
// measure (it is made once per process). Run it alone (-run '^$').
func BenchmarkCachedChart(b *testing.B) {
	ctx := context.Background()
	const n = 256
	st, ids := storeOfCharts(b, n)
	warm, err := replica.New(ctx, keepOpen{st}, replica.Config{})
	require.NoError(b, err)
	_, err = warm.Chart(ctx, ids[0])
	require.NoError(b, err)
	require.NoError(b, warm.Close())
	var rss, heap, kept float64
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
		kept = float64(r.CachedViewBytes()) / n
		require.NoError(b, r.Close())
	}
	b.ReportMetric(rss, "RSS-bytes/chart")
	b.ReportMetric(heap, "heap-bytes/chart")
	b.ReportMetric(kept, "view-bytes/chart")
}

// viewsDBEnv names the database TestMakeViewsDB makes for
// BenchmarkRandomViews, in a process of its own.
const viewsDBEnv = "CHARTSYNC_VIEWS_DB"

// TestMakeViewsDB makes BenchmarkRandomViews's database, at the path
// viewsDBEnv names, and prints the charts' IDs; without it, it is skipped.
func TestMakeViewsDB(t *testing.T) {
	path := os.Getenv(viewsDBEnv)
	if path == "" {
		t.Skip(viewsDBEnv + " not set: BenchmarkRandomViews runs it")
	}
	r, err := replica.Open(context.Background(), path, replica.Config{})
	require.NoError(t, err)
	ids := makeCharts(t, r, 1000)
	require.NoError(t, r.Close())
	fmt.Println("ids:" + strings.Join(ids, ","))
}

// BenchmarkRandomViews views 20,000 charts chosen at random among 1,000
// through the default cache (256 charts), as a busy clinic does, on a
// SQLite database as a device holds them (a memory store would hold every
// chart's changes in the process, over 100 MiB for these). The database
// is made by another process (TestMakeViewsDB), so that this one is a
// device's: it opens the database and views charts. It reports the
// resident set before the views (store-RSS-MiB), the highest resident set
// while they run, sampled after each (views-peak-RSS-MiB), the process's
// peak (peak-RSS-MiB), the resident set at the end, and the charts loaded
// from the store per view (loads/view). Run it alone (-run '^$'
// -benchtime=1x), as the peak is the process's.
func BenchmarkRandomViews(b *testing.B) {
	ctx := context.Background()
	path := tempDB(b, "views")
	cmd := exec.Command(os.Args[0], "-test.run=^TestMakeViewsDB$")
	cmd.Env = append(os.Environ(), viewsDBEnv+"="+path)
	out, err := cmd.Output()
	require.NoError(b, err, "make the database: %s", out)
	var ids []string
	for line := range strings.Lines(string(out)) {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "ids:"); ok {
			ids = strings.Split(rest, ",")
		}
	}
	require.Len(b, ids, 1000)
	rng := rand.New(rand.NewPCG(1, 2))
	runtime.GC()
	debug.FreeOSMemory()
	base := residentMiB()
	var during, loads float64
	for b.Loop() {
		r, err := replica.Open(ctx, path, replica.Config{})
		require.NoError(b, err)
		for range 20000 {
			_, err := r.Chart(ctx, ids[rng.IntN(len(ids))])
			require.NoError(b, err)
			during = max(during, residentMiB())
		}
		loads = float64(r.ChartsLoaded()) / 20000
		require.NoError(b, r.Close())
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(maxRSS())/(1<<20), "peak-RSS-MiB")
	b.ReportMetric(residentMiB(), "end-RSS-MiB")
	b.ReportMetric(base, "store-RSS-MiB")
	b.ReportMetric(during, "views-peak-RSS-MiB")
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-inuse-MiB")
	b.ReportMetric(loads, "loads/view")
}

// BenchmarkChartView reads one chart's view: again and again (cached:
// the same chart each time), and cycling through more charts than the
// cache holds (uncached: each read loads its chart), on 64 charts of 40
// changes.
func BenchmarkChartView(b *testing.B) {
	ctx := context.Background()
	st, ids := storeOfCharts(b, 64)
	for _, tc := range []struct {
		name  string
		cache int
	}{{"cached", 64}, {"uncached", 8}} {
		b.Run(tc.name, func(b *testing.B) {
			r, err := replica.New(ctx, keepOpen{st}, replica.Config{CacheCharts: tc.cache})
			require.NoError(b, err)
			defer r.Close()
			i := 0
			for b.Loop() {
				id := ids[0]
				if tc.name == "uncached" {
					id = ids[i%len(ids)]
				}
				i++
				_, err := r.Chart(ctx, id)
				require.NoError(b, err)
			}
		})
	}
}

// BenchmarkEditViewed edits a chart of 40 changes that is viewed between
// edits, as a clinician records a visit: each op is one edit and one view.
func BenchmarkEditViewed(b *testing.B) {
	ctx := context.Background()
	st, ids := storeOfCharts(b, 1)
	r, err := replica.New(ctx, keepOpen{st}, replica.Config{Now: func() time.Time { return frozenAt.Add(48 * time.Hour) }})
	require.NoError(b, err)
	defer r.Close()
	i := 0
	for b.Loop() {
		i++
		_, err := r.Edit(ctx, ids[0], doctor, record.AddEncounter{Complaint: "review", Note: fmt.Sprintf("Seen again, visit %d.", i)})
		require.NoError(b, err)
		_, err = r.Chart(ctx, ids[0])
		require.NoError(b, err)
	}
}
