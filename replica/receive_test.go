package replica_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/replica"
)

// With a clock that moves, a repeated bundle and an idle exchange still
// change nothing in the store (not even the peer's LastSync).
func TestRepeatAndIdleWriteNothing(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	clock := func() time.Time { now = now.Add(time.Minute); return now }
	a, _ := newMem(t, replica.Config{Now: clock})
	b, bStore := newMem(t, replica.Config{Now: clock})
	id := register(t, a, "Amina", "Okafor", "Kamuga")
	edit(t, a, id, allergy(1))

	out, err := a.MakeBundle(ctx, b.ID())
	require.NoError(t, err)
	first, err := b.Receive(ctx, out.Data)
	require.NoError(t, err)
	require.Equal(t, 2, first.Applied)
	peers, err := b.Peers(ctx)
	require.NoError(t, err)
	require.Len(t, peers, 1, "the first contact records the peer")

	before := dumpStore(t, bStore)
	again, err := b.Receive(ctx, out.Data)
	require.NoError(t, err)
	assert.Zero(t, again.Applied)
	assert.Equal(t, 2, again.Duplicates)
	assert.Equal(t, before, dumpStore(t, bStore), "a repeated bundle changed the store")

	// Two exchanges: the last answer's acknowledgement reaches b on the
	// second.
	for range 2 {
		_, err = replica.SyncPair(ctx, a, b)
		require.NoError(t, err)
	}
	before = dumpStore(t, bStore)
	st, err := replica.SyncPair(ctx, a, b)
	require.NoError(t, err)
	assert.Equal(t, 1, st.RoundTrips)
	assert.Equal(t, before, dumpStore(t, bStore), "an idle exchange changed the store")

	edit(t, a, id, allergy(2))
	_, err = replica.SyncPair(ctx, a, b)
	require.NoError(t, err)
	after, err := b.Peers(ctx)
	require.NoError(t, err)
	assert.True(t, after[0].LastSync.After(peers[0].LastSync), "a bundle that brings changes moves LastSync")
}
