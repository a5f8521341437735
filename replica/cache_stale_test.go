package replica_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/replica"
)

// A chart's view is answered from the cache only while the chart's index
// entry has the heads it was read at: a change stored past the cache (by
// another replica object over the same store, as a cloud node of a shared
// store writes, or a receive whose copy of the chart the cache never
// saw) is shown by the next view, whatever the cache held.
func TestCachedViewFollowsTheIndex(t *testing.T) {
	ctx := context.Background()
	cfg := replica.Config{Now: frozen}
	r, st := newMem(t, cfg)
	id := register(t, r, "Wanjiru", "Mwangi", "Kamuga")
	edit(t, r, id, allergy(1))
	require.Len(t, view(t, r, id).Allergies, 1) // cached
	require.Len(t, view(t, r, id).Allergies, 1) // read from the cache

	other, err := replica.New(ctx, keepOpen{st}, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = other.Close() })
	res := edit(t, other, id, allergy(2))

	v := view(t, r, id)
	assert.Len(t, v.Allergies, 2, "the view shows the change stored past the cache")
	assert.Equal(t, res.Change.Hash, v.Heads[0])
	assert.Equal(t, view(t, other, id), v)
}
