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
