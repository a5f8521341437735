package replica_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/store"
)

// checker is a replica that checks signatures with its own roster and
// signs nothing (a hub, or the cloud).
type checker struct {
	*replica.Replica
	st     *store.Mem
	roster *device.Roster
}

func (d *deployment) checker(t *testing.T) checker {
	roster := d.roster(t)
	r, st := newMem(t, replica.Config{Keys: roster})
	return checker{Replica: r, st: st, roster: roster}
}

// revoke revokes the device as the cloud does: accepting the changes of
// it the cloud holds.
func (d *deployment) revoke(t *testing.T, cloud *replica.Replica, tablet signedDevice) ([]byte, map[string]uint64) {
	t.Helper()
	accepted, err := cloud.ActorSeqs(context.Background(), tablet.ID())
	require.NoError(t, err)
	rec, err := d.auth.RevokeAccepting(tablet.ID(), "north", d.now.Add(time.Hour), accepted)
	require.NoError(t, err)
	return rec, accepted
}

// actorChanges returns the hashes of actor's changes st holds, by chart
// and sequence number.
func actorChanges(t *testing.T, st store.Store, actor string) map[string]map[uint64]crdt.Hash {
	t.Helper()
	log, err := st.Log(context.Background(), 0, 0)
	require.NoError(t, err)
	out := map[string]map[uint64]crdt.Hash{}
	for _, c := range log {
		pc, err := crdt.ParseChange(c.Raw)
		require.NoError(t, err)
		if pc.Actor != actor {
			continue
		}
		if out[c.Chart] == nil {
			out[c.Chart] = map[uint64]crdt.Hash{}
		}
		out[c.Chart][pc.Seq] = c.Hash
	}
	return out
}

// TestRevocationRefusesLaterChangesForwardedByAnotherDevice: a stolen
// tablet's changes made after its revocation, carried by another device
// that took them before it learnt of the revocation, are refused as
// forged by a replica that holds the revocation, whole bundle and
// quarantined; the tablet's earlier changes keep flowing through the
// same device. The forwarding device learns the revocation from its
// peer's answer and stops sending those changes, so its own later work
// is not held up.
func TestRevocationRefusesLaterChangesForwardedByAnotherDevice(t *testing.T) {
	ctx := context.Background()
	d := newDeployment(t)
	tablet, b := d.device(t, "north"), d.device(t, "north")
	cloud, hub := d.checker(t), d.checker(t)

	x := register(t, tablet.Replica, "Wanjiru", "Mwangi", "Kamuga")
	edit(t, tablet.Replica, x, allergy(1))
	y := register(t, tablet.Replica, "Achieng", "Otieno", "Kamuga")
	_, err := replica.SyncPair(ctx, tablet.Replica, cloud.Replica)
	require.NoError(t, err)
	_, err = replica.SyncPair(ctx, tablet.Replica, b.Replica)
	require.NoError(t, err)

	rec, accepted := d.revoke(t, cloud.Replica, tablet)
	assert.Equal(t, map[string]uint64{x: 2, y: 1}, accepted, "the cloud held two changes of the tablet to x and one to y")
	for _, r := range []*device.Roster{cloud.roster, hub.roster} {
		_, err = r.Add(rec)
		require.NoError(t, err)
	}

	// The thief edits on; b, not knowing of the revocation, takes it.
	edit(t, tablet.Replica, x, allergy(2))
	z := register(t, tablet.Replica, "Fake", "Patient", "Kamuga")
	_, err = replica.SyncPair(ctx, tablet.Replica, b.Replica)
	require.NoError(t, err)

	before := dumpStore(t, hub.st)
	up, err := b.MakeBundle(ctx, hub.ID())
	require.NoError(t, err)
	_, err = hub.Receive(ctx, up.Data)
	require.ErrorIs(t, err, replica.ErrRevokedChange, "a change made after the revocation must be refused")
	require.ErrorIs(t, err, replica.ErrForgedChange, "it is refused as a forged one")
	assert.Equal(t, before, dumpStore(t, hub.st), "nothing of the bundle is applied")
	q, err := hub.Quarantined(ctx)
	require.NoError(t, err)
	require.Len(t, q, 1, "the bundle is kept for review")
	_, err = hub.Chart(ctx, z)
	assert.Error(t, err, "the thief's chart must not reach the hub")

	// The hub's answer teaches b the revocation; b then leaves the
	// refused changes out, and its own work flows again.
	back, err := hub.MakeBundle(ctx, b.ID())
	require.NoError(t, err)
	_, err = b.Receive(ctx, back.Data)
	require.NoError(t, err)
	own := register(t, b.Replica, "Njeri", "Kamau", "Lwanda")
	_, err = replica.SyncPair(ctx, b.Replica, hub.Replica)
	require.NoError(t, err, "an honest device that took a refused change before it learnt the revocation must not stay refused")
	assert.Equal(t, view(t, b.Replica, own), view(t, hub.Replica, own))
	assert.Equal(t, view(t, cloud.Replica, x), view(t, hub.Replica, x), "the tablet's changes made before the revocation flow on through b")
	assert.Equal(t, view(t, cloud.Replica, y), view(t, hub.Replica, y))
	_, err = hub.Chart(ctx, z)
	assert.Error(t, err, "the thief's chart must still not reach the hub")
	q, err = hub.Quarantined(ctx)
	require.NoError(t, err)
	assert.Len(t, q, 1, "the hub refused the offending bundle once")
	got := actorChanges(t, hub.st, tablet.ID())
	assert.Len(t, got[x], 2, "the hub holds the tablet's two accepted changes to x")
	assert.Len(t, got[y], 1)
	assert.NotContains(t, got, z)
}

// TestRevocationTravelsWithTheDevicesChanges: a replica that never saw the
// roster learns the revocation from a bundle carrying the revoked
// device's changes, and refuses its later ones from then on.
func TestRevocationTravelsWithTheDevicesChanges(t *testing.T) {
	ctx := context.Background()
	d := newDeployment(t)
	tablet := d.device(t, "north")
	cloud, hub := d.checker(t), d.checker(t)

	x := register(t, tablet.Replica, "Wanjiru", "Mwangi", "Kamuga")
	_, err := replica.SyncPair(ctx, tablet.Replica, cloud.Replica)
	require.NoError(t, err)
	rec, _ := d.revoke(t, cloud.Replica, tablet)
	_, err = cloud.roster.Add(rec)
	require.NoError(t, err)

	_, err = replica.SyncPair(ctx, cloud.Replica, hub.Replica)
	require.NoError(t, err, "the tablet's accepted change reaches the hub")
	assert.Equal(t, view(t, tablet.Replica, x), view(t, hub.Replica, x))
	_, err = hub.roster.Lookup(tablet.ID())
	require.ErrorIs(t, err, device.ErrRevoked, "the revocation travelled with the tablet's change")

	edit(t, tablet.Replica, x, allergy(1))
	_, err = replica.SyncPair(ctx, tablet.Replica, hub.Replica)
	require.ErrorIs(t, err, replica.ErrRevokedChange)
}
