package replica_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
)

// scopedSync syncs a clinic device with the cloud as a sync server does:
// the cloud accepts only the device's own bundles within the clinic's
// scope, and sends only charts in it.
func scopedSync(t *testing.T, cloud, dev *replica.Replica, clinic string) {
	t.Helper()
	ctx := context.Background()
	for range 100 {
		up, err := dev.MakeBundle(ctx, cloud.ID())
		require.NoError(t, err)
		_, err = cloud.ReceiveFrom(ctx, up.Data, replica.ReceiveOptions{Sender: dev.ID(), Clinic: clinic})
		require.NoError(t, err, "the cloud refused a device's bundle within its scope")
		down, err := cloud.MakeBundleFor(ctx, dev.ID(), replica.BundleOptions{Clinic: clinic})
		require.NoError(t, err)
		_, err = dev.Receive(ctx, down.Data)
		require.NoError(t, err)
		if up.Complete && down.Complete {
			return
		}
	}
	t.Fatal("scoped sync did not finish in 100 round trips")
}

func registerAt(t *testing.T, r *replica.Replica, given, clinic string) string {
	t.Helper()
	id, err := r.Register(context.Background(), nurse, record.Register{
		GivenName: given, Sex: "female", EstimatedBirthYear: 1990, HomeClinic: clinic,
	})
	require.NoError(t, err)
	return id
}

func TestScopedSync(t *testing.T) {
	ctx := context.Background()
	cloud, cloudStore := newMem(t, replica.Config{})
	north, _ := newMem(t, replica.Config{})
	north2, _ := newMem(t, replica.Config{})
	south, _ := newMem(t, replica.Config{})

	n1 := registerAt(t, north, "Amina", "north")
	edit(t, north, n1, prescribe("Amoxicillin", 500))
	s1 := registerAt(t, south, "Wanjiru", "south")
	edit(t, south, s1, allergy(1))
	scopedSync(t, cloud, north, "north")
	scopedSync(t, cloud, south, "south")
	scopedSync(t, cloud, north2, "north")
	scopedSync(t, cloud, north, "north")

	assert.ElementsMatch(t, []string{n1, s1}, chartIDs(t, cloud))
	assert.Equal(t, []string{n1}, chartIDs(t, north2), "a device receives only its clinic's charts")
	assert.Equal(t, []string{s1}, chartIDs(t, south))

	t.Run("out-of-scope changes are refused and change nothing", func(t *testing.T) {
		// A north device that somehow holds the south chart (here: an
		// unscoped sync) tries to change it through the cloud.
		rogue, _ := newMem(t, replica.Config{})
		_, err := replica.SyncPair(ctx, rogue, south)
		require.NoError(t, err)
		edit(t, rogue, s1, allergy(2))
		before := dumpStore(t, cloudStore)
		up, err := rogue.MakeBundle(ctx, cloud.ID())
		require.NoError(t, err)
		_, err = cloud.ReceiveFrom(ctx, up.Data, replica.ReceiveOptions{Sender: rogue.ID(), Clinic: "north"})
		require.ErrorIs(t, err, replica.ErrOutOfScope)
		assert.Equal(t, before, dumpStore(t, cloudStore), "a refused bundle changed the cloud's store")

		_, err = cloud.ReceiveFrom(ctx, up.Data, replica.ReceiveOptions{Sender: north.ID(), Clinic: "north"})
		require.ErrorIs(t, err, replica.ErrWrongSender, "a device cannot pass off another replica's bundle")
		assert.Equal(t, before, dumpStore(t, cloudStore))
	})

	t.Run("a device cannot register a chart for another clinic", func(t *testing.T) {
		dev, _ := newMem(t, replica.Config{})
		registerAt(t, dev, "Halima", "south")
		before := dumpStore(t, cloudStore)
		up, err := dev.MakeBundle(ctx, cloud.ID())
		require.NoError(t, err)
		_, err = cloud.ReceiveFrom(ctx, up.Data, replica.ReceiveOptions{Sender: dev.ID(), Clinic: "north"})
		require.ErrorIs(t, err, replica.ErrOutOfScope)
		assert.Equal(t, before, dumpStore(t, cloudStore))
	})

	t.Run("a referral brings the whole chart to the referred clinic, and its end stops it", func(t *testing.T) {
		// The south device has acknowledged the cloud's log past all of
		// the north chart's changes, which it never got.
		ref := edit(t, north, n1, record.Refer{ToClinic: "south", Reason: "antenatal care"})
		scopedSync(t, cloud, north, "north")
		scopedSync(t, cloud, south, "south")
		require.ElementsMatch(t, []string{n1, s1}, chartIDs(t, south))
		assert.Equal(t, view(t, cloud, n1).Heads, view(t, south, n1).Heads, "the referred clinic holds the whole chart")
		assert.Len(t, view(t, south, n1).Prescriptions, 1, "changes made before the referral arrived too")

		// The referred clinic may now edit it.
		edit(t, south, n1, allergy(3))
		scopedSync(t, cloud, south, "south")
		scopedSync(t, cloud, north, "north")
		assert.Equal(t, view(t, south, n1).Heads, view(t, north, n1).Heads)

		// South edits while north, concurrently, ends the referral: the
		// edit was made while south held the chart, so it is accepted.
		concurrent := edit(t, south, n1, allergy(4))
		edit(t, north, n1, record.EndReferral{ReferralID: ref.EntryID})
		scopedSync(t, cloud, north, "north")
		scopedSync(t, cloud, south, "south")
		assert.True(t, hasChange(t, cloud, n1, concurrent), "an edit made before the clinic learnt it lost the chart is kept")
		v := view(t, south, n1)
		require.Len(t, v.Referrals, 1)
		assert.Equal(t, record.StatusEnded, v.Referrals[0].Status, "the referred clinic learns that the referral ended")

		edit(t, north, n1, allergy(5))
		scopedSync(t, cloud, north, "north")
		scopedSync(t, cloud, south, "south")
		assert.Len(t, view(t, south, n1).Allergies, 2, "after the referral ended the south clinic gets no more changes")
		assert.Len(t, view(t, north, n1).Allergies, 3)

		edit(t, south, n1, allergy(6))
		up, err := south.MakeBundle(ctx, cloud.ID())
		require.NoError(t, err)
		before := dumpStore(t, cloudStore)
		_, err = cloud.ReceiveFrom(ctx, up.Data, replica.ReceiveOptions{Sender: south.ID(), Clinic: "south"})
		assert.ErrorIs(t, err, replica.ErrOutOfScope, "an edit made after the clinic learnt it lost the chart is refused")
		assert.Equal(t, before, dumpStore(t, cloudStore))
	})
}

func hasChange(t *testing.T, r *replica.Replica, chart string, res record.Result) bool {
	t.Helper()
	for _, h := range view(t, r, chart).History {
		if h.Change == res.Change.Hash {
			return true
		}
	}
	return false
}

func TestDeviceRefusesOutOfScopeWrites(t *testing.T) {
	ctx := context.Background()
	hub, _ := newMem(t, replica.Config{})
	dev, devStore := newMem(t, replica.Config{Clinic: "north"})

	_, err := dev.Register(ctx, nurse, record.Register{GivenName: "Asha", Sex: "female", EstimatedBirthYear: 1990, HomeClinic: "south"})
	require.ErrorIs(t, err, replica.ErrOutOfScope, "a device registers patients of its own clinic")

	own := registerAt(t, dev, "Amina", "north")
	edit(t, dev, own, allergy(1))
	other := registerAt(t, hub, "Wanjiru", "south")
	_, err = replica.SyncPair(ctx, dev, hub)
	require.NoError(t, err)

	before := dumpStore(t, devStore)
	_, err = dev.Edit(ctx, other, doctor, allergy(2))
	require.ErrorIs(t, err, replica.ErrOutOfScope, "a device edits only charts in its clinic's scope")
	_, err = dev.Preview(ctx, other, doctor, allergy(2))
	require.ErrorIs(t, err, replica.ErrOutOfScope, "nor previews an edit of one outside it")
	assert.Equal(t, before, dumpStore(t, devStore))

	edit(t, hub, other, record.Refer{ToClinic: "north"})
	_, err = replica.SyncPair(ctx, dev, hub)
	require.NoError(t, err)
	edit(t, dev, other, allergy(3))
}

func TestRegistrationGrantsHomeClinicOnce(t *testing.T) {
	ctx := context.Background()
	cloud, cloudStore := newMem(t, replica.Config{})
	dev, devStore := newMem(t, replica.Config{Clinic: "north"})
	id := registerAt(t, dev, "Amina", "north")
	grants, err := devStore.Grants(ctx, "north", 0, 1<<62)
	require.NoError(t, err)
	require.Len(t, grants, 1, "registering records the home clinic's grant")
	edit(t, dev, id, allergy(1))
	grants, err = devStore.Grants(ctx, "north", 0, 1<<62)
	require.NoError(t, err)
	assert.Len(t, grants, 1, "an edit that does not change the scope records no grant")

	pending, err := dev.Pending(ctx, cloud.ID())
	require.NoError(t, err)
	assert.Equal(t, 2, pending, "a peer never synced with lacks every change")
	scopedSync(t, cloud, dev, "north")
	pending, err = dev.Pending(ctx, cloud.ID())
	require.NoError(t, err)
	assert.Zero(t, pending)
	log, err := cloudStore.Log(ctx, 0, 0)
	require.NoError(t, err)
	assert.Len(t, log, 2)

	// A second device of the clinic gets each change once.
	dev2, _ := newMem(t, replica.Config{Clinic: "north"})
	down, err := cloud.MakeBundleFor(ctx, dev2.ID(), replica.BundleOptions{Clinic: "north"})
	require.NoError(t, err)
	assert.Equal(t, 2, down.Changes, "no change is sent twice")
}
