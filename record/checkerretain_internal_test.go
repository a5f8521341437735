package record

import (
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
)

// A Checker keeps nothing of the changes it was handed: not the buffer
// their bytes came in (a replica hands it changes cut from a bundle of
// megabytes), nor what their bytes decode to. Each of 300 changes comes
// in a 256 KiB buffer of its own, 75 MiB in all; once the buffers are let
// go, the Checker, still open and holding every change it accepted,
// retains a small fraction of that.
func TestCheckerKeepsNothingOfTheChangesHandedIn(t *testing.T) {
	const n, bufBytes = 300, 256 << 10
	chs := linearRun(t, n)
	empty, err := crdt.New(crdt.NewActorID())
	require.NoError(t, err)
	c, err := NewChecker(empty)
	require.NoError(t, err)
	defer c.Close()

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	for i, ch := range chs {
		buf := make([]byte, bufBytes)
		ch.Raw = buf[:copy(buf, ch.Raw)]
		_, err := crdt.Judge(&ch) // judged as a replica judges it, once for its check and apply
		require.NoError(t, err, "change %d", i)
		_, err = c.Check(ch)
		require.NoError(t, err, "change %d (%s)", i, ch.Message)
	}
	assert.Greater(t, c.nfast, n-5, "the changes are judged from their operations")
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	assert.Less(t, grown, int64(n*bufBytes/8), "the Checker holds %d MiB after checking changes handed in %d MiB of buffers", grown>>20, n*bufBytes>>20)
	runtime.KeepAlive(c)

	// What the Checker accepted is still there: a change it holds is
	// accepted again, and its copy of the chart takes the rest.
	_, err = c.Check(chs[n-1])
	require.NoError(t, err, "a change checked again is accepted again")
	require.NoError(t, c.flush(), "the changes accepted apply to the Checker's copy")
	assert.Equal(t, crdt.Heads{chs[n-1].Hash}, c.doc.Heads())
}

// The changes a Checker has accepted and not yet applied to its copy of
// the chart cost their bytes in its queue, not the spare room of a
// buffer grown by doubling (up to as much again): at most one block's
// room is unused. Applied, they are all in its copy of the chart.
func TestCheckerQueueCostsItsBytes(t *testing.T) {
	chs := cachedRun(t, 1000)
	empty, err := crdt.New(crdt.NewActorID())
	require.NoError(t, err)
	c, err := NewChecker(empty)
	require.NoError(t, err)
	defer c.Close()
	for i, ch := range chs {
		_, err := c.Check(ch)
		require.NoError(t, err, "change %d (%s)", i, ch.Message)
	}
	queued, room := 0, 0
	for _, b := range c.queue {
		queued += len(b.hashes)
		room += cap(b.raw) - len(b.raw)
	}
	assert.Greater(t, queued, len(chs)/2, "most changes wait in the queue")
	assert.LessOrEqual(t, room, queueBlockBytes, "the queue's unused room")
	require.NoError(t, c.flush())
	assert.Equal(t, crdt.Heads{chs[len(chs)-1].Hash}, c.doc.Heads(), "the queued changes apply in order")
	assert.Empty(t, c.queue)
}
