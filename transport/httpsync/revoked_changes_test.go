package httpsync_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/transport/httpsync"
)

// TestCloudRefusesRevokedTabletsLaterChanges: once the cloud revokes a
// tablet, accepting the changes of it the cloud holds, an honest laptop
// that took a change the tablet made afterwards (device to device, before
// it learnt of the revocation) has its sync refused as forged (403,
// replica.ErrForgedChange; the cloud's replica gives ErrRevokedChange),
// nothing of it stored and the bundle kept for review; the tablet's
// earlier changes still reach another device over HTTPS, with the
// revocation, which that device then enforces.
func TestCloudRefusesRevokedTabletsLaterChanges(t *testing.T) {
	ctx := context.Background()
	c := newCloud(t, cloudOptions{memory: true})
	tablet := c.newDevice(t, "kamuga", "kamuga-tablet", fastRetries())
	laptop := c.newDevice(t, "kamuga", "kamuga-laptop", fastRetries())
	ward := c.newDevice(t, "kamuga", "kamuga-ward", fastRetries()) // enrolled before the revocation
	chart := registerAt(t, tablet.rep, "Wanjiru", "Mwangi", "kamuga")
	edit(t, tablet.rep, chart, allergy(1))
	tablet.sync(t)

	accepted, err := c.rep.ActorSeqs(ctx, tablet.rep.ID())
	require.NoError(t, err)
	require.Equal(t, map[string]uint64{chart: 2}, accepted)
	rec, err := c.auth.RevokeAccepting(tablet.rep.ID(), "kamuga", time.Now().Truncate(time.Second), accepted)
	require.NoError(t, err)
	_, err = c.roster.Add(rec)
	require.NoError(t, err)

	// The thief edits on and hands the change to the laptop directly.
	edit(t, tablet.rep, chart, allergy(2))
	out, err := tablet.rep.MakeBundle(ctx, laptop.rep.ID())
	require.NoError(t, err)
	_, err = laptop.rep.Receive(ctx, out.Data)
	require.NoError(t, err, "the laptop has not learnt of the revocation")

	up, err := laptop.rep.MakeBundle(ctx, c.rep.ID())
	require.NoError(t, err)
	before := snapshotOf(t, c.rep)
	_, err = laptop.client.Sync(ctx)
	require.Error(t, err, "the cloud took a change the tablet made after its revocation")
	var se *httpsync.StatusError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, 403, se.Status)
	assert.ErrorIs(t, err, replica.ErrForgedChange)
	assert.Equal(t, before, snapshotOf(t, c.rep), "nothing of the refused bundle is stored")
	q, err := c.rep.Quarantined(ctx)
	require.NoError(t, err)
	assert.Len(t, q, 1, "the refused bundle is kept for review")
	_, err = c.rep.Receive(ctx, up.Data)
	assert.ErrorIs(t, err, replica.ErrRevokedChange, "the cloud's replica says why")

	// The tablet's earlier changes still flow, and the revocation with them.
	ward.sync(t)
	v, err := ward.rep.Chart(ctx, chart)
	require.NoError(t, err, "the tablet's changes made before its revocation reach another device")
	w, err := c.rep.Chart(ctx, chart)
	require.NoError(t, err)
	assert.Equal(t, w, v)
	_, err = ward.rep.Receive(ctx, mustBundle(t, tablet.rep, ward.rep.ID()))
	assert.ErrorIs(t, err, replica.ErrRevokedChange, "the revocation reached the device over HTTPS: it refuses the tablet's later change itself")
}

func mustBundle(t *testing.T, from *replica.Replica, to string) []byte {
	t.Helper()
	out, err := from.MakeBundle(context.Background(), to)
	require.NoError(t, err)
	return out.Data
}
