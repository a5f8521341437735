package replica_test

import (
	"context"
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
	forged, err := forge.Prescription(nurse, labTech, "north", time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC))
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
