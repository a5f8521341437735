package replica_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
)

// A checking replica that has received the first bundle of a long
// history keeps the Checker for the rest of it, resting on the chart it
// received: the Checker keeps no copy of the changes it accepted, which
// the chart holds. What the checking replica retains beyond one that
// does not check is what the Checker knows of the chart, less than the
// bundle's changes; with a copy of them it was more.
func TestKeptCheckerKeepsNoCopyOfTheChanges(t *testing.T) {
	ctx := context.Background()
	device, _ := newMem(t, replica.Config{BundleBytes: 1 << 20})
	chart := register(t, device, "Wanjiru", "Mwangi", "Kamuga")
	for i := range 2400 {
		edit(t, device, chart, record.AddAllergy{Substance: fmt.Sprintf("substance-%d", i), Reaction: strings.Repeat(string(rune('a'+i%26)), 300), Severity: "mild"})
	}
	retained := func(check bool) (held int64, size int) {
		cloud, _ := newMem(t, replica.Config{CheckAuthors: check})
		out, err := device.MakeBundle(ctx, cloud.ID())
		require.NoError(t, err)
		require.False(t, out.Complete, "the history takes more than one bundle")
		b, err := replica.DecodeBundle(out.Data)
		require.NoError(t, err)
		for _, c := range b.Changes {
			size += len(c.Raw)
		}
		b = nil
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err = cloud.ReceiveFrom(ctx, out.Data, replica.ReceiveOptions{Sender: device.ID()})
		require.NoError(t, err)
		out.Data = nil
		runtime.GC()
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(cloud)
		return int64(after.HeapAlloc) - int64(before.HeapAlloc), size
	}
	plain, size := retained(false)
	checking, _ := retained(true)
	assert.Less(t, checking-plain, int64(size), "a checking replica retains %d KiB more than one that does not, for a bundle of %d KiB of changes", (checking-plain)>>10, size>>10)
}
