package replica_test

import (
	"context"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/replica"
)

// A decoded bundle costs about its changes' bytes: it keeps nothing of
// the frame it was read from. The changes of a chart's history leave out
// the hashes of the changes before them, so each is put back together in
// a copy; a copy of each beside the frame's body, which the changes read
// whole kept alive, cost twice the changes' bytes.
func TestDecodedBundleKeepsNotItsFrame(t *testing.T) {
	ctx := context.Background()
	device, _ := newMem(t, replica.Config{})
	cloud, _ := newMem(t, replica.Config{})
	chart := register(t, device, "Wanjiru", "Mwangi", "Kamuga")
	for i := range 600 {
		edit(t, device, chart, allergy(i))
	}
	out, err := device.MakeBundle(ctx, cloud.ID())
	require.NoError(t, err)

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	b, err := replica.DecodeBundle(out.Data)
	require.NoError(t, err)
	out.Data = nil
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	size := 0
	for _, c := range b.Changes {
		size += len(c.Raw) + len(c.Sig)
	}
	require.Greater(t, size, 256<<10, "the bundle's changes")
	held := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	assert.Less(t, held, int64(size)*3/2, "a decoded bundle of %d KiB of changes holds %d KiB", size>>10, held>>10)
	runtime.KeepAlive(b)
}
