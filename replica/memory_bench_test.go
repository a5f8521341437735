package replica_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
)

// maxRSS returns the process's peak resident set, in bytes.
func maxRSS() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Maxrss << 10
}

// BenchmarkReceiveLongNotes receives one bundle of many new charts, each
// with a long encounter note: a bundle that compresses very well (the
// notes repeat) and is large once decompressed. It reports the bundle's
// bytes on the wire and decompressed, and how much the process's peak
// resident set grew while receiving it. Run it alone (-run '^$'), as the
// peak is the process's.
func BenchmarkReceiveLongNotes(b *testing.B) {
	ctx := context.Background()
	const n = 100
	from, _ := newMem(b, replica.Config{})
	note := strings.Repeat("Patient reports intermittent fever and cough. ", 440)[:20000]
	for i := range n {
		id := register(b, from, fmt.Sprintf("Given%d", i), "Family", "Village")
		edit(b, from, id, record.AddEncounter{Complaint: "fever", Note: note})
	}
	out, err := from.MakeBundle(ctx, replica.NewID())
	require.NoError(b, err)
	var growth, heap float64
	for b.Loop() {
		b.StopTimer()
		to, _ := newMem(b, replica.Config{})
		runtime.GC()
		before := maxRSS()
		data := retarget(b, out.Data, to.ID())
		b.StartTimer()
		_, err := to.Receive(ctx, data)
		require.NoError(b, err)
		growth = max(growth, float64(maxRSS()-before)/(1<<20))
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		heap = max(heap, float64(ms.HeapInuse)/(1<<20))
	}
	b.ReportMetric(float64(len(out.Data)), "wire-bytes")
	b.ReportMetric(float64(n*len(note)), "note-bytes")
	b.ReportMetric(growth, "peak-RSS-growth-MiB")
	b.ReportMetric(heap, "heap-inuse-MiB")
}

// retarget readdresses a bundle to another recipient.
func retarget(b *testing.B, data []byte, to string) []byte {
	bd, err := replica.DecodeBundle(data)
	require.NoError(b, err)
	bd.To = to
	out, err := bd.Encode()
	require.NoError(b, err)
	return out
}
