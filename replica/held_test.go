package replica_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/replica"
)

// orphanBundle returns a bundle from a to b carrying chs only.
func orphanBundle(t *testing.T, a, b *replica.Replica, chart string, chs ...crdt.Change) []byte {
	t.Helper()
	bc := make([]replica.BundleChange, len(chs))
	for i, c := range chs {
		bc[i] = replica.BundleChange{Chart: chart, Raw: c.Raw}
	}
	return encode(t, replica.Bundle{From: a.ID(), To: b.ID(), Changes: bc})
}

// A change whose dependencies never arrive, received by a replica with
// the zero Config: it is held aside, not stored in the log, not forwarded
// (the peer the hub syncs with would refuse it, and with it the honest
// news), does not stop the chart's snapshots, survives a restart, and is
// applied when what it waits for arrives.
func TestHeldChangesAreKeptAsideUntilTheirDependenciesArrive(t *testing.T) {
	ctx := context.Background()
	a, _ := newMem(t, replica.Config{})
	cfg := replica.Config{CompactAfter: 4}
	hub, hubStore := newMem(t, cfg)
	c, _ := newMem(t, replica.Config{CheckAuthors: true})
	chart := register(t, a, "Wanjiru", "Mwangi", "Kamuga")
	_, err := replica.SyncPair(ctx, a, hub)
	require.NoError(t, err)
	_, err = replica.SyncPair(ctx, hub, c)
	require.NoError(t, err)
	missing := edit(t, a, chart, allergy(1)).Change
	orphan := edit(t, a, chart, allergy(2)).Change

	rec, err := hub.Receive(ctx, orphanBundle(t, a, hub, chart, orphan))
	require.NoError(t, err)
	assert.Equal(t, 1, rec.Held)
	assert.Zero(t, rec.Applied)
	assert.Equal(t, 1, hub.Held())
	known, err := hubStore.Known(ctx, []crdt.Hash{orphan.Hash})
	require.NoError(t, err)
	assert.False(t, known[orphan.Hash], "a held change is not in the log")

	// Honest edits go on at the hub; they reach c, the orphan does not,
	// and the chart is snapshotted.
	for i := range 5 {
		edit(t, hub, chart, allergy(10+i))
	}
	_, err = hubStore.Snapshot(ctx, chart)
	require.NoError(t, err, "a held change does not stop the chart's snapshot")
	_, err = replica.SyncPair(ctx, hub, c)
	require.NoError(t, err, "the hub forwards nothing its peer would refuse")
	requireSameCharts(t, hub, c)

	// Across a restart.
	hub = reopenMem(t, hub, hubStore, cfg)
	require.Equal(t, 1, hub.Held(), "held changes survive a restart")

	rec, err = hub.Receive(ctx, orphanBundle(t, a, hub, chart, missing))
	require.NoError(t, err)
	assert.Equal(t, 2, rec.Applied, "the missing change and the one that waited for it")
	assert.Zero(t, hub.Held())
	known, err = hubStore.Known(ctx, []crdt.Hash{orphan.Hash, missing.Hash})
	require.NoError(t, err)
	assert.Len(t, known, 2)
	hub = reopenMem(t, hub, hubStore, cfg)
	assert.Zero(t, hub.Held(), "an applied held change is no longer kept aside")
}

// A replica that checks authors takes the honest news of a bundle that
// also carries a change it cannot check yet, instead of refusing it all.
func TestHeldChangesDoNotBlockTheRestOfTheBundle(t *testing.T) {
	ctx := context.Background()
	a, _ := newMem(t, replica.Config{})
	b, _ := newMem(t, replica.Config{CheckAuthors: true})
	chart := register(t, a, "Wanjiru", "Mwangi", "Kamuga")
	other := register(t, a, "Baraka", "Otieno", "Siaya")
	_, err := replica.SyncPair(ctx, a, b)
	require.NoError(t, err)
	edit(t, a, chart, allergy(1))
	orphan := edit(t, a, chart, allergy(2)).Change
	news := edit(t, a, other, allergy(3)).Change

	rec, err := b.Receive(ctx, orphanBundle(t, a, b, chart, orphan))
	require.NoError(t, err)
	assert.Equal(t, 1, rec.Held)
	data := encode(t, replica.Bundle{From: a.ID(), To: b.ID(), Changes: []replica.BundleChange{{Chart: other, Raw: news.Raw}, {Chart: chart, Raw: orphan.Raw}}})
	rec, err = b.Receive(ctx, data)
	require.NoError(t, err)
	assert.Equal(t, 1, rec.Applied, "the honest news is taken")
	assert.Equal(t, 1, b.Held())
}

// Orphans cost a bounded amount: past MaxHeldPerChart for one chart the
// rest are dropped (and logged), and what is held is what was kept.
func TestHeldChangesAreBounded(t *testing.T) {
	ctx := context.Background()
	a, _ := newMem(t, replica.Config{})
	b, bst := newMem(t, replica.Config{})
	chart := register(t, a, "Wanjiru", "Mwangi", "Kamuga")
	_, err := replica.SyncPair(ctx, a, b)
	require.NoError(t, err)
	edit(t, a, chart, allergy(0)) // never sent
	var chs []crdt.Change
	for i := range replica.MaxHeldPerChart + 10 {
		chs = append(chs, edit(t, a, chart, allergy(1+i)).Change)
	}
	rec, err := b.Receive(ctx, orphanBundle(t, a, b, chart, chs...))
	require.NoError(t, err)
	assert.Equal(t, replica.MaxHeldPerChart+10, rec.Held)
	assert.Equal(t, replica.MaxHeldPerChart, b.Held())
	hashes := make([]crdt.Hash, len(chs))
	for i, c := range chs {
		hashes[i] = c.Hash
	}
	known, err := bst.Known(ctx, hashes)
	require.NoError(t, err)
	assert.Empty(t, known, "held changes are not in the log")
}
