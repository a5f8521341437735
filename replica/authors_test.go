package replica_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/internal/forge"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
)

var labTech = record.Author{UserID: "u-lab", Name: "Lab Tech", Role: record.RoleLabTechnician, Device: "lab-pc"}

func TestCloudRefusesAndQuarantinesUnauthorizedChanges(t *testing.T) {
	ctx := context.Background()
	cloud, cloudStore := newMem(t, replica.Config{})
	check := func(dev *replica.Replica) (replica.Received, error) {
		up, err := dev.MakeBundle(ctx, cloud.ID())
		require.NoError(t, err)
		return cloud.ReceiveFrom(ctx, up.Data, replica.ReceiveOptions{Sender: dev.ID(), Clinic: "north", CheckAuthors: true})
	}

	// Changes made through record's operations pass.
	honest, _ := newMem(t, replica.Config{Clinic: "north"})
	id := registerAt(t, honest, "Wanjiru", "north")
	edit(t, honest, id, prescribe("Amoxicillin", 500))
	res, err := check(honest)
	require.NoError(t, err)
	assert.Equal(t, 2, res.Applied)

	// A lab technician's prescription is refused whole and quarantined.
	rogue, _ := newMem(t, replica.Config{})
	forged, err := forge.Prescription("", nurse, labTech, "north", time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC))
	require.NoError(t, err)
	require.NoError(t, rogue.Import(ctx, []*record.Chart{forged}))
	before := dumpStore(t, cloudStore)
	_, err = check(rogue)
	require.ErrorIs(t, err, replica.ErrUnauthorizedChange)
	require.ErrorIs(t, err, record.ErrForbidden, "the record error says which section the role may not change")
	assert.Equal(t, before, dumpStore(t, cloudStore), "nothing of a refused bundle is applied")
	q, err := cloud.Quarantined(ctx)
	require.NoError(t, err)
	require.Len(t, q, 1, "the refused bundle is kept for review")
	assert.Equal(t, rogue.ID(), q[0].From)
	assert.Contains(t, q[0].Reason, "prescriptions")

	// The change never reaches another replica through the cloud.
	other, _ := newMem(t, replica.Config{Clinic: "north"})
	scopedSync(t, cloud, other, "north")
	assert.Equal(t, []string{id}, chartIDs(t, other))

	// Without the check (a hub that trusts its peers) the same bundle is
	// accepted: the check is what refuses it.
	hub, _ := newMem(t, replica.Config{})
	up, err := rogue.MakeBundle(ctx, hub.ID())
	require.NoError(t, err)
	_, err = hub.Receive(ctx, up.Data)
	require.NoError(t, err)
}

// A change whose dependencies have not arrived cannot be judged: it is
// refused, and not quarantined (it is not known to be wrong).
func TestCheckAuthorsHoldsChangesItCannotJudgeYet(t *testing.T) {
	ctx := context.Background()
	cloud, cloudStore := newMem(t, replica.Config{})
	dev, _ := newMem(t, replica.Config{Clinic: "north"})
	id := registerAt(t, dev, "Wanjiru", "north")
	edit(t, dev, id, allergy(1))
	out, err := dev.MakeBundle(ctx, cloud.ID())
	require.NoError(t, err)
	b, err := replica.DecodeBundle(out.Data)
	require.NoError(t, err)
	require.Len(t, b.Changes, 2)
	reg := b.Changes[0]
	b.Changes = b.Changes[1:] // the edit without the registration it depends on
	b.Upto = b.Base
	data, err := b.Encode()
	require.NoError(t, err)

	before := dumpStore(t, cloudStore)
	rec, err := cloud.ReceiveFrom(ctx, data, replica.ReceiveOptions{Sender: dev.ID(), CheckAuthors: true})
	require.NoError(t, err)
	assert.Equal(t, 1, rec.Held, "a change that cannot be judged yet is held, not taken")
	after := dumpStore(t, cloudStore)
	assert.Equal(t, before.Log, after.Log)
	assert.Equal(t, before.Charts, after.Charts)
	q, err := cloud.Quarantined(ctx)
	require.NoError(t, err)
	assert.Empty(t, q, "a change that cannot be judged yet is not quarantined")

	// With its registration it is judged and taken.
	b.Changes = []replica.BundleChange{reg}
	data, err = b.Encode()
	require.NoError(t, err)
	rec, err = cloud.ReceiveFrom(ctx, data, replica.ReceiveOptions{Sender: dev.ID(), CheckAuthors: true})
	require.NoError(t, err)
	assert.Equal(t, 2, rec.Applied)
	assert.Zero(t, cloud.Held())
}

// When the quarantine cannot be written, the refusal still stands and
// says so.
func TestQuarantineWriteFailure(t *testing.T) {
	ctx := context.Background()
	cloud, cloudStore := newMem(t, replica.Config{})
	rogue, _ := newMem(t, replica.Config{})
	forged, err := forge.Prescription("", nurse, labTech, "north", time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC))
	require.NoError(t, err)
	require.NoError(t, rogue.Import(ctx, []*record.Chart{forged}))
	up, err := rogue.MakeBundle(ctx, cloud.ID())
	require.NoError(t, err)

	diskFull := errors.New("disk full")
	cloudStore.FailWrites = diskFull
	_, err = cloud.ReceiveFrom(ctx, up.Data, replica.ReceiveOptions{Sender: rogue.ID(), CheckAuthors: true})
	require.ErrorIs(t, err, replica.ErrUnauthorizedChange)
	require.ErrorIs(t, err, diskFull, "the error says the bundle could not be kept")
	cloudStore.FailWrites = nil
	q, err := cloud.Quarantined(ctx)
	require.NoError(t, err)
	assert.Empty(t, q)
	assert.Empty(t, chartIDs(t, cloud), "nothing was applied")
}
