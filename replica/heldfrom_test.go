package replica_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/replica"
)

// TestReleasedChangeKeepsItsSender: a change the hub held for a missing
// dependency, released when another peer's bundle brings it, is stored
// as received from the peer that sent it, not from the one that released
// it, so the hub still forwards it to the releasing peer, which lacks it.
func TestReleasedChangeKeepsItsSender(t *testing.T) {
	ctx := context.Background()
	a, _ := newMem(t, replica.Config{})
	b, _ := newMem(t, replica.Config{})
	hub, _ := newMem(t, replica.Config{})
	chart := register(t, a, "Wanjiru", "Mwangi", "Kamuga")
	for _, peer := range []*replica.Replica{hub, b} {
		_, err := replica.SyncPair(ctx, a, peer)
		require.NoError(t, err)
	}
	missing := edit(t, a, chart, allergy(1)).Change
	orphan := edit(t, a, chart, allergy(2)).Change

	rec, err := hub.Receive(ctx, orphanBundle(t, a, hub, chart, orphan))
	require.NoError(t, err)
	require.Equal(t, 1, rec.Held, "the hub holds a's change until what it depends on arrives")
	_, err = b.Receive(ctx, orphanBundle(t, a, b, chart, missing))
	require.NoError(t, err)

	_, err = replica.SyncPair(ctx, b, hub)
	require.NoError(t, err)
	require.Zero(t, hub.Held(), "b's bundle released the held change")
	_, err = replica.SyncPair(ctx, b, hub)
	require.NoError(t, err)
	hubHeads, err := hub.Heads(ctx, chart)
	require.NoError(t, err)
	bHeads, err := b.Heads(ctx, chart)
	require.NoError(t, err)
	assert.Equal(t, hubHeads, bHeads, "b gets from the hub the change b's bundle released there")
	assert.Contains(t, bHeads, orphan.Hash)
}
