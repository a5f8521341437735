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
	c := checkerOf(t, chs)
	queued, room := 0, 0
	for _, b := range c.queue {
		queued += len(b.hashes)
		room += cap(b.raw) - len(b.raw)
	}
	assert.Greater(t, queued, len(chs)/2, "most changes wait in the queue")
	assert.LessOrEqual(t, room, queueBlockBytes, "the queue's unused room")
	assert.LessOrEqual(t, room, queuedBytes(c), "the queue's unused room is at most what it holds")
	require.NoError(t, c.flush())
	assert.Equal(t, crdt.Heads{chs[len(chs)-1].Hash}, c.doc.Heads(), "the queued changes apply in order")
	assert.Empty(t, c.queue)
}

// A Checker rested on the chart its accepted changes were applied to
// keeps neither its copy of the chart nor the changes it queued; resumed
// on that chart, it judges the rest of the history as CheckChange does,
// copying the chart only when a change needs it, and leaves the chart
// alone. A chart that does not hold what the Checker holds is refused
// either way.
func TestCheckerRestsOnTheChartItsChangesWereAppliedTo(t *testing.T) {
	chs := cachedRun(t, 1000)
	half := len(chs) / 2
	empty, err := crdt.New(crdt.NewActorID())
	require.NoError(t, err)
	c, err := NewChecker(empty)
	require.NoError(t, err)
	chart, err := crdt.New(crdt.NewActorID())
	require.NoError(t, err)
	defer chart.Close()
	for i, ch := range chs[:half] {
		_, err := c.Check(ch)
		require.NoError(t, err, "change %d (%s)", i, ch.Message)
	}
	require.NotEmpty(t, c.queue, "the changes accepted wait in the queue")

	require.NoError(t, chart.ApplyStored(crdt.SaveChanges(chs[:half-1]), hashesOf(chs[:half-1])))
	assert.False(t, c.Rest(chart), "a chart a change behind is not the Checker's")
	assert.NotEmpty(t, c.queue, "a refused rest keeps the queue")
	_, err = chart.Apply(chs[half-1])
	require.NoError(t, err)
	require.True(t, c.Rest(chart), "the chart holds what the Checker holds")
	assert.Empty(t, c.queue, "a resting Checker keeps no copy of the changes it accepted")
	assert.Nil(t, c.doc, "nor its own copy of the chart")

	other, err := crdt.New(crdt.NewActorID())
	require.NoError(t, err)
	defer other.Close()
	assert.False(t, c.Resume(other), "a chart that is not the Checker's is refused")
	require.True(t, c.Resume(chart))
	heads := chart.Heads()
	for i, ch := range chs[half:] {
		got, gotErr := c.Check(ch)
		require.NoError(t, gotErr, "change %d", half+i)
		if i < 100 {
			assert.Equal(t, heads, chart.Heads(), "the Checker leaves the chart alone")
			continue
		}
		if i == 100 {
			// The caller applies the changes the Checker accepted.
			require.NoError(t, chart.ApplyStored(crdt.SaveChanges(chs[half:half+100]), hashesOf(chs[half:half+100])))
		}
		if i%50 == 0 {
			// CheckChange reads the whole chart: a sample of them.
			want, wantErr := CheckChange(chart, ch)
			require.NoError(t, wantErr, "change %d", half+i)
			require.Equal(t, want, got, "change %d", half+i)
		}
		_, err := chart.Apply(ch)
		require.NoError(t, err)
	}
	assert.Nil(t, c.doc, "no change needed the document")
	_, err = c.Check(chs[half])
	require.NoError(t, err, "a change checked again is accepted again, on a copy of the chart")
	require.NotNil(t, c.doc)
	require.NoError(t, c.flush())
	assert.Equal(t, chart.Heads(), c.doc.Heads(), "the copy holds the chart's history")
	require.NoError(t, c.Close())
	assert.Equal(t, chs[len(chs)-1].Hash, chart.Heads()[0], "closing the Checker leaves the chart open")
}

// checkerOf returns a Checker of a new chart that accepted chs, closed
// when the test ends.
func checkerOf(t *testing.T, chs []crdt.Change) *Checker {
	t.Helper()
	empty, err := crdt.New(crdt.NewActorID())
	require.NoError(t, err)
	c, err := NewChecker(empty)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	for i, ch := range chs {
		_, err := c.Check(ch)
		require.NoError(t, err, "change %d (%s)", i, ch.Message)
	}
	return c
}

func queuedBytes(c *Checker) int {
	n := 0
	for _, b := range c.queue {
		n += len(b.raw)
	}
	return n
}

// A Checker of a chart with a few small changes, as a replica keeps one
// for each chart a bundle brings, queues them in room of their size, not
// in a block made for a long history.
func TestSmallChartsQueueIsSmall(t *testing.T) {
	c := checkerOf(t, cachedRun(t, 4))
	room := 0
	for _, b := range c.queue {
		room += cap(b.raw)
	}
	require.NotEmpty(t, c.queue, "a change waits in the queue")
	assert.LessOrEqual(t, room, max(2*queuedBytes(c), queueFirstBlockBytes), "the queue's room for %d bytes", queuedBytes(c))
}

// A Checker made on a chart its caller holds (NewCheckerOn) reads that
// chart without copying it: a run of changes it judges from their
// operations, applied by the caller run after run, never makes it copy
// the chart, and it leaves the chart alone. A change that needs a copy
// (one checked again, which CheckChange judges) makes one then.
func TestCheckerOnAChartCopiesItOnlyWhenAChangeNeedsIt(t *testing.T) {
	chs := cachedRun(t, 300)
	chart, err := crdt.New(crdt.NewActorID())
	require.NoError(t, err)
	defer chart.Close()
	require.NoError(t, chart.ApplyStored(crdt.SaveChanges(chs[:100]), hashesOf(chs[:100])))

	c, err := NewCheckerOn(chart)
	require.NoError(t, err)
	assert.Nil(t, c.doc, "the Checker has no copy of the chart")
	assert.Equal(t, modeReady, c.mode, "it read the chart where it is")
	for start := 100; start < len(chs); start += 50 {
		run := chs[start : start+50]
		heads := chart.Heads()
		for i, ch := range run {
			_, err := c.Check(ch)
			require.NoError(t, err, "change %d (%s)", start+i, ch.Message)
		}
		assert.Equal(t, heads, chart.Heads(), "the Checker leaves the chart alone")
		// The caller applies what the Checker accepted.
		require.NoError(t, chart.ApplyStored(crdt.SaveChanges(run), hashesOf(run)))
	}
	assert.Equal(t, 200, c.nfast, "every change is judged from its operations")
	assert.Nil(t, c.doc, "no change needed a copy of the chart")

	_, err = c.Check(chs[150])
	require.NoError(t, err, "a change checked again is accepted again")
	require.NotNil(t, c.doc, "on a copy of the chart")
	assert.Empty(t, c.queue, "the copy holds what the chart held: nothing waits to be applied")
	assert.Equal(t, chart.Heads(), c.doc.Heads())
	require.NoError(t, c.Close())
	assert.Equal(t, crdt.Heads{chs[len(chs)-1].Hash}, chart.Heads(), "closing the Checker leaves the chart open")
}
