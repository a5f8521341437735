package httpsync_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/internal/forge"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/transport/httpsync"
	"github.com/chartsync/chartsync/transport/transporttest"
)

// A lab technician's device that adds a prescription (a modified client:
// record itself refuses) is refused at the cloud with 403, the cloud's
// data is unchanged, the bundle is quarantined for review, and the change
// never reaches another device.
func TestCloudRefusesLabTechnicianPrescription(t *testing.T) {
	ctx := context.Background()
	c := newCloud(t, cloudOptions{})
	lab := c.newDevice(t, "kamuga", "kamuga-lab-pc", fastRetries())
	ward := c.newDevice(t, "kamuga", "kamuga-ward-tablet", fastRetries())
	registerAt(t, ward.rep, "Wanjiru", "Mwangi", "kamuga")
	ward.sync(t)

	labTech := record.Author{UserID: "u-chege", Name: "Chege", Role: record.RoleLabTechnician, Device: "kamuga-lab-pc"}
	forged, err := forge.Prescription(nurse, labTech, "kamuga", time.Now().Add(-time.Hour))
	require.NoError(t, err)
	require.NoError(t, lab.rep.Import(ctx, []*record.Chart{forged}))

	before := snapshotOf(t, c.rep)
	_, err = lab.client.Sync(ctx)
	require.Error(t, err, "the cloud accepted a lab technician's prescription")
	var se *httpsync.StatusError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, 403, se.Status)
	assert.Equal(t, httpsync.CodeUnauthorizedChange, se.Code)
	assert.ErrorIs(t, err, httpsync.ErrForbidden)
	assert.Contains(t, se.Message, "prescriptions", "the refusal names the section")
	assert.Equal(t, before, snapshotOf(t, c.rep), "nothing of the refused bundle reached the cloud's charts")

	q, err := c.rep.Quarantined(ctx)
	require.NoError(t, err)
	require.Len(t, q, 1, "the refused bundle is kept for review")
	assert.Equal(t, lab.rep.ID(), q[0].From)

	ward.sync(t)
	assert.Equal(t, transporttest.ChartIDs(t, c.rep), transporttest.ChartIDs(t, ward.rep))
	assert.NotContains(t, transporttest.ChartIDs(t, ward.rep), forged.ID(), "the forged chart never reaches another device")
}
