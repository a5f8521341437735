package httpsync_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/internal/wire"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/transport/httpsync"
)

// longNote is a note of 20,000 characters (the most record takes) that
// compresses some 45 times.
var longNote = strings.Repeat("Patient reports fever and cough for three days. ", 20000/48)

// addNoteCharts registers n charts on r, each with an encounter carrying
// longNote: a bundle of them compresses far better than clinical data
// usually does, and costs the replica applying it about 600 bytes of
// memory per byte decompressed.
func addNoteCharts(t testing.TB, r *replica.Replica, clinic string, n int) {
	t.Helper()
	for i := range n {
		id := registerAt(t, r, fmt.Sprintf("Patient%d", i), "Otieno", clinic)
		edit(t, r, id, record.AddEncounter{Complaint: "fever", Note: longNote})
	}
}

// A bundle over the cloud's memory budget once decompressed is refused
// with 413 from the size its frame declares, however well it compresses,
// before it is decompressed or applied; the cloud's data is unchanged.
func TestHighRatioBundleRefused(t *testing.T) {
	const budget = 2 << 20 // so the largest bundle is 256 KiB decompressed
	c := newCloud(t, cloudOptions{memory: true, config: httpsync.Config{MaxRequestMemory: budget}})
	d := c.newDevice(t, "kamuga", "kamuga-tablet", fastRetries())
	addNoteCharts(t, d.rep, "kamuga", 16)
	out, err := d.rep.MakeBundle(t.Context(), c.rep.ID())
	require.NoError(t, err)
	size, err := wire.Size(out.Data, 'B')
	require.NoError(t, err)
	require.Greater(t, size, uint64(budget/8), "the bundle is over the budget once decompressed")
	require.Less(t, len(out.Data), budget/32, "and far under it as sent")
	t.Logf("bundle of %d bytes, %d decompressed (%.0fx)", len(out.Data), size, float64(size)/float64(len(out.Data)))

	before := snapshotOf(t, c.rep)
	_, err = d.client.Sync(t.Context())
	var se *httpsync.StatusError
	require.ErrorAs(t, err, &se, "the cloud took a bundle over its memory budget")
	assert.Equal(t, http.StatusRequestEntityTooLarge, se.Status)
	assert.Equal(t, httpsync.CodeTooLarge, se.Code)
	assert.ErrorIs(t, err, httpsync.ErrTooLarge)
	assert.Contains(t, se.Message, strconv.Itoa(budget/8), "the refusal names the limit")
	assert.Equal(t, before, snapshotOf(t, c.rep), "nothing of the bundle reached the cloud")
}

// BenchmarkHighRatioBundle sends one bundle of charts with long notes
// (HTTPSYNC_NOTE_CHARTS of them, default 1,400: 0.6 MiB as sent, 30 MiB
// decompressed) to a cloud in its own process, with the default
// configuration, and reports the cloud's peak memory. Making the charts
// takes some minutes. Run it once:
//
//	go test -run '^$' -bench HighRatioBundle -benchtime 1x ./transport/httpsync/
func BenchmarkHighRatioBundle(b *testing.B) {
	n := 1400
	if s := os.Getenv("HTTPSYNC_NOTE_CHARTS"); s != "" {
		var err error
		n, err = strconv.Atoi(s)
		require.NoError(b, err)
	}
	for range b.N {
		lc := startLoadCloud(b)
		d := lc.newDevice(b, "kamuga", "kamuga-tablet", replica.Config{BundleBytes: 64 << 20, CacheCharts: 4})
		addNoteCharts(b, d.rep, "kamuga", n)
		out, err := d.rep.MakeBundleFor(context.Background(), lc.id, replica.BundleOptions{Clinic: "kamuga"})
		require.NoError(b, err)
		size, err := wire.Size(out.Data, 'B')
		require.NoError(b, err)
		_, err = d.client.PostRaw(context.Background(), out.Data)
		st := lc.stop(b)
		status := "200"
		var se *httpsync.StatusError
		if err != nil {
			require.ErrorAs(b, err, &se)
			status = strconv.Itoa(se.Status)
		}
		mib := func(v uint64) float64 { return float64(v) / (1 << 20) }
		b.Logf("%d charts: bundle %d bytes, %d decompressed: answered %s; cloud peak heap %.1f MiB, Go memory %.1f MiB, RSS %.1f MiB (VmHWM %.1f MiB)",
			n, len(out.Data), size, status, mib(st.PeakHeap), mib(st.PeakGoMemory), mib(st.PeakRSS), mib(st.HighWaterRSS))
		b.ReportMetric(mib(st.HighWaterRSS), "cloud-peak-RSS-MiB")
		b.ReportMetric(mib(st.PeakHeap), "cloud-peak-heap-MiB")
	}
}
