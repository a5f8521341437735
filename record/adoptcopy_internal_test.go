package record

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
)

// A chart that takes a copy of a Checker's state (AdoptCopy) shows what a
// chart reading its own document shows, and goes its own way from then
// on: the Checker judges the rest of the history as if nothing had been
// taken, and the chart is not changed by it.
func TestAdoptCopyLeavesTheCheckerAsItWas(t *testing.T) {
	chs := linearRun(t, 60)
	half := len(chs) / 2
	empty, err := crdt.New(crdt.NewActorID())
	require.NoError(t, err)
	k, err := NewChecker(empty)
	require.NoError(t, err)
	defer k.Close()
	viewOf := func(c *Chart) string {
		v, err := c.View()
		require.NoError(t, err)
		js, err := json.Marshal(v)
		require.NoError(t, err)
		return string(js)
	}
	open := func(chs []crdt.Change) *Chart {
		doc, err := crdt.New(crdt.NewActorID())
		require.NoError(t, err)
		_, err = doc.Apply(chs...)
		require.NoError(t, err)
		c, err := Open(doc)
		require.NoError(t, err)
		return c
	}
	for _, ch := range chs[:half] {
		_, err := k.Check(ch)
		require.NoError(t, err)
	}
	require.True(t, k.Heads().Equal(crdt.Heads{chs[half-1].Hash}))

	adopted, fresh := open(chs[:half]), open(chs[:half])
	require.True(t, adopted.AdoptCopy(k))
	require.Equal(t, viewOf(fresh), viewOf(adopted), "the copy shows what reading the document shows")

	// The Checker goes on, fast, as if nothing were taken.
	fast := k.nfast
	for _, ch := range chs[half:] {
		_, err := k.Check(ch)
		require.NoError(t, err)
	}
	require.Equal(t, len(chs)-half, k.nfast-fast, "every later change judged on the fast path")
	require.Equal(t, viewOf(fresh), viewOf(adopted), "the chart's copy is not changed by the Checker's later work")

	// And the chart's copy is its own to write on.
	full := open(chs)
	_, err = adopted.doc.Apply(chs[half:]...)
	require.NoError(t, err)
	require.Equal(t, viewOf(full), viewOf(adopted))

	require.NoError(t, k.Close())
	require.False(t, open(chs[:half]).AdoptCopy(k), "nothing is taken from a closed Checker")
}
