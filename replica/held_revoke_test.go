package replica_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/replica"
)

// TestHeldChangeCheckedAgainstARevocationLearntMeanwhile: a change of a
// device held back for want of its dependencies, whose device is revoked
// before they arrive, not accepting it, is not applied when they do; it
// is dropped from the held changes, for good.
func TestHeldChangeCheckedAgainstARevocationLearntMeanwhile(t *testing.T) {
	ctx := context.Background()
	d := newDeployment(t)
	tablet := d.device(t, "north")
	cloud, hub := d.checker(t), d.checker(t)
	x := register(t, tablet.Replica, "Wanjiru", "Mwangi", "Kamuga")
	_, err := replica.SyncPair(ctx, tablet.Replica, cloud.Replica)
	require.NoError(t, err)
	_, err = replica.SyncPair(ctx, tablet.Replica, hub.Replica)
	require.NoError(t, err)
	missing := edit(t, tablet.Replica, x, allergy(1)).Change
	orphan := edit(t, tablet.Replica, x, allergy(2)).Change

	rec, err := hub.Receive(ctx, signedOrphans(t, tablet, hub.ID(), x, orphan))
	require.NoError(t, err)
	require.Equal(t, 1, rec.Held, "the change waits for the one before it")

	// The cloud gets the missing change, then revokes the tablet: it
	// accepts that change, not the one held at the hub.
	_, err = cloud.Receive(ctx, signedOrphans(t, tablet, cloud.ID(), x, missing))
	require.NoError(t, err)
	rv, accepted := d.revoke(t, cloud.Replica, tablet)
	require.Equal(t, map[string]uint64{x: missing.Seq}, accepted)
	_, err = hub.roster.Add(rv)
	require.NoError(t, err)

	rec, err = hub.Receive(ctx, signedOrphans(t, tablet, hub.ID(), x, missing))
	require.NoError(t, err, "the missing change is accepted by the revocation")
	assert.Equal(t, 1, rec.Applied, "only the change the revocation accepts is applied")
	assert.Zero(t, hub.Held(), "the held change the revocation refuses is dropped")
	got := actorChanges(t, hub.st, tablet.ID())
	assert.Equal(t, map[uint64]crdt.Hash{1: got[x][1], missing.Seq: missing.Hash}, got[x], "the hub holds the tablet's accepted changes only")
	assert.Equal(t, view(t, cloud.Replica, x), view(t, hub.Replica, x))

	hub2 := reopenMem(t, hub.Replica, hub.st, replica.Config{Keys: hub.roster})
	assert.Zero(t, hub2.Held(), "the dropped change stays dropped after a restart")
}

// signedOrphans returns a bundle from the tablet to a replica carrying
// only chs of chart, each with its stored signature and the tablet's
// enrolment.
func signedOrphans(t *testing.T, tablet signedDevice, to, chart string, chs ...crdt.Change) []byte {
	t.Helper()
	stored, err := tablet.st.ChartChanges(context.Background(), chart, 0)
	require.NoError(t, err)
	sigs := map[crdt.Hash][]byte{}
	for _, c := range stored {
		sigs[c.Hash] = c.Sig
	}
	bc := make([]replica.BundleChange, len(chs))
	for i, c := range chs {
		require.NotEmpty(t, sigs[c.Hash], "the tablet signed its change")
		bc[i] = replica.BundleChange{Chart: chart, Raw: c.Raw, Sig: sigs[c.Hash]}
	}
	return encode(t, replica.Bundle{From: tablet.ID(), To: to, Changes: bc, Signers: [][]byte{tablet.rec}})
}
