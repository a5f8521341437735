package automerge

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// (chartsync patch) A freed document refuses every use with ErrFreed,
// and freeing twice is harmless.
func TestFree(t *testing.T) {
	doc := New()
	require.NoError(t, doc.RootMap().Set("a", "b"))
	_, err := doc.Commit("one")
	require.NoError(t, err)
	fork, err := doc.Fork()
	require.NoError(t, err)
	m := doc.RootMap()

	doc.Free()
	doc.Free()
	assert.PanicsWithValue(t, ErrFreed, func() { doc.Save() })
	assert.PanicsWithValue(t, ErrFreed, func() { doc.Heads() })
	assert.PanicsWithValue(t, ErrFreed, func() { _, _ = m.Get("a") })

	// The fork is independent of the freed document.
	v, err := fork.RootMap().Get("a")
	require.NoError(t, err)
	assert.Equal(t, "b", v.Str())
	fork.Free()
}

// (chartsync patch) A freed read result keeps the scalars read from it
// and refuses use of the objects read from it with ErrFreed; the
// document and other reads are unaffected.
func TestValueFree(t *testing.T) {
	doc := New()
	defer doc.Free()
	require.NoError(t, doc.RootMap().Set("name", "Wanjiru"))
	require.NoError(t, doc.Path("chart", "w").Map().Set("w1", "first"))
	_, err := doc.Commit("one")
	require.NoError(t, err)

	name, err := doc.RootMap().Get("name")
	require.NoError(t, err)
	chart, err := doc.RootMap().Get("chart")
	require.NoError(t, err)
	w, err := chart.Map().Get("w")
	require.NoError(t, err)
	vals, err := w.Map().Values()
	require.NoError(t, err)
	require.Len(t, vals, 1)

	name.Free()
	name.Free()
	vals["w1"].Free()
	chart.Free()
	assert.Equal(t, "Wanjiru", name.Str(), "a string read before Free is a Go copy")
	assert.Equal(t, "first", vals["w1"].Str())
	assert.PanicsWithValue(t, ErrFreed, func() { _, _ = chart.Map().Get("w") })
	assert.PanicsWithValue(t, ErrFreed, func() { _ = chart.Map().Set("x", "y") })

	// w was read by a call of its own: still usable, as is the document.
	keys, err := w.Map().Keys()
	require.NoError(t, err)
	assert.Equal(t, []string{"w1"}, keys)
	again, err := doc.RootMap().Get("chart")
	require.NoError(t, err)
	assert.Equal(t, KindMap, again.Kind())
	w.Free()
	again.Free()
}
