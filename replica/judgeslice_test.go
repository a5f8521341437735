package replica_test

import (
	"context"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
)

// A checking replica receiving a bundle of one chart's changes holds the
// decoded operations of a slice of them at a time, not of the whole
// bundle: a decoded operation takes about 200 bytes where its bytes in
// the change take a few. The bundle here is 160 note edits of 1,000
// characters each, 160,000 operations: decoded all at once, the receive
// held 45 MiB of Go heap when it applied them; in slices it holds about
// 13 MiB at most, and everything is received and checked as before.
func TestReceiveHoldsASliceOfDecodedOperations(t *testing.T) {
	ctx := context.Background()
	device, _ := newMem(t, replica.Config{})
	cloud, _ := newMem(t, replica.Config{CheckAuthors: true})
	chart := register(t, device, "Wanjiru", "Mwangi", "Kamuga")
	enc := edit(t, device, chart, record.AddEncounter{Date: "2026-03-02", Complaint: "fever", Note: "Seen."})
	text := strings.Repeat("a", 1000)
	const edits = 160
	for i := range edits {
		if i%2 == 0 {
			edit(t, device, chart, record.EditNote{EncounterID: enc.EntryID, Pos: 0, Insert: text})
		} else {
			edit(t, device, chart, record.EditNote{EncounterID: enc.EntryID, Pos: 0, Delete: len(text)})
		}
	}
	out, err := device.MakeBundle(ctx, cloud.ID())
	require.NoError(t, err)
	require.True(t, out.Complete, "the chart's history comes in one bundle")

	var slices int
	var base, peak uint64
	replica.SetAfterSlice(func() {
		slices++
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.HeapAlloc)
	})
	defer replica.SetAfterSlice(nil)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base = ms.HeapAlloc
	rec, err := cloud.Receive(ctx, out.Data)
	require.NoError(t, err)
	assert.Equal(t, edits+2, rec.Applied, "every change is taken")
	ops := edits * len(text)
	assert.GreaterOrEqual(t, slices, ops/replica.JudgeSliceOps, "the chart's changes are judged, checked and applied in slices")
	held := int64(peak) - int64(base)
	assert.Less(t, held, int64(24<<20), "after a slice the receive holds %d MiB of Go heap for %d operations", held>>20, ops)

	st, err := replica.SyncPair(ctx, device, cloud)
	require.NoError(t, err)
	require.True(t, st.ConvergedAll)
	requireSameCharts(t, device, cloud)
}
