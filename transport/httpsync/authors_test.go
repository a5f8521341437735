package httpsync_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/internal/forge"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
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
	forged, err := forge.Prescription(lab.rep.ID(), nurse, labTech, "kamuga", time.Now().Add(-time.Hour))
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

// A device that sends changes which do not prove their author (well-formed
// bytes, but unsigned, signed with the wrong key, or credited to another
// device) is refused at the cloud with 403 forged-change, the bundle is
// quarantined, and the changes never reach another device.
func TestCloudRefusesForgedChanges(t *testing.T) {
	ctx := context.Background()
	c := newCloud(t, cloudOptions{memory: true})
	ward := c.newDevice(t, "kamuga", "kamuga-ward-tablet", fastRetries())
	rogue := c.newDevice(t, "kamuga", "kamuga-rogue", fastRetries())
	id := registerAt(t, ward.rep, "Wanjiru", "Mwangi", "kamuga")
	ward.sync(t)
	rogue.sync(t)

	// A chart made as the ward tablet's actor, on the rogue device.
	impostor, _, err := record.New(uuid.NewString(), ward.rep.ID(), nurse, time.Now().Add(-time.Hour), record.Register{
		GivenName: "Fake", Sex: "male", EstimatedBirthYear: 1970, HomeClinic: "kamuga"})
	require.NoError(t, err)
	ichs, err := impostor.Doc().Changes(nil)
	require.NoError(t, err)
	// The rogue device's own, honestly made change, to tamper with.
	edit(t, rogue.rep, id, amoxicillin(500))
	out, err := rogue.rep.MakeBundle(ctx, c.rep.ID())
	require.NoError(t, err)
	own, err := replica.DecodeBundle(out.Data)
	require.NoError(t, err)
	require.Len(t, own.Changes, 1)
	flipped := bytes.Clone(own.Changes[0].Sig)
	flipped[0] ^= 0x80

	post := func(b replica.Bundle) error {
		b.From, b.To = rogue.rep.ID(), c.rep.ID()
		data, err := b.Encode()
		require.NoError(t, err)
		_, err = rogue.client.PostRaw(ctx, data)
		return err
	}
	cases := []struct {
		name string
		send func() error
	}{
		{"signature with a bit flipped", func() error {
			return post(replica.Bundle{Changes: []replica.BundleChange{{Chart: id, Raw: own.Changes[0].Raw, Sig: flipped}}, Signers: own.Signers})
		}},
		{"unsigned", func() error {
			return post(replica.Bundle{Changes: []replica.BundleChange{{Chart: id, Raw: own.Changes[0].Raw}}, Signers: own.Signers})
		}},
		{"another device's actor ID, signed by the sender", func() error {
			return post(replica.Bundle{Changes: []replica.BundleChange{{Chart: impostor.ID(), Raw: ichs[0].Raw,
				Sig: rogue.id.SignChange(impostor.ID(), [32]byte(ichs[0].Hash))}}, Signers: own.Signers})
		}},
		{"another device's chart, imported and synced", func() error {
			require.NoError(t, rogue.rep.Import(ctx, []*record.Chart{impostor}))
			_, err := rogue.client.Sync(ctx)
			return err
		}},
	}
	before := snapshotOf(t, c.rep)
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.send()
			require.Error(t, err, "the cloud accepted a forged change")
			var se *httpsync.StatusError
			require.ErrorAs(t, err, &se)
			assert.Equal(t, 403, se.Status)
			assert.Equal(t, httpsync.CodeForgedChange, se.Code)
			assert.ErrorIs(t, err, httpsync.ErrForbidden)
			assert.ErrorIs(t, err, replica.ErrForgedChange)
			assert.Equal(t, before, snapshotOf(t, c.rep), "nothing of the forged bundle reached the cloud's charts")
			q, err := c.rep.Quarantined(ctx)
			require.NoError(t, err)
			assert.Len(t, q, i+1, "the forged bundle is kept for review")
		})
	}
	ward.sync(t)
	assert.NotContains(t, transporttest.ChartIDs(t, ward.rep), impostor.ID(), "the forged chart never reaches another device")
	assert.Equal(t, transporttest.ChartIDs(t, c.rep), transporttest.ChartIDs(t, ward.rep))
}
