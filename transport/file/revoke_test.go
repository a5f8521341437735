package file_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/transport/file"
	"github.com/chartsync/chartsync/transport/transporttest"
)

// TestRevokedTabletsLaterFileIsRefused: a stolen tablet's file made after
// its revocation is refused by a device whose roster holds the
// revocation, whole, kept for review, changing nothing; a file it made
// before, holding only changes the revocation accepts (those the cloud
// held), still applies.
func TestRevokedTabletsLaterFileIsRefused(t *testing.T) {
	ctx := t.Context()
	auth, err := device.NewAuthority()
	require.NoError(t, err)
	now := time.Now().Truncate(time.Second)
	trust := device.RosterConfig{Authorities: []device.TrustedAuthority{{Key: auth.PublicKey()}}}
	signed := func(name string) (*replica.Replica, *device.Roster) {
		id, err := device.Generate(replica.NewID(), "kamuga-dispensary")
		require.NoError(t, err)
		rec, err := auth.Enrol(id.Public(), now, time.Hour)
		require.NoError(t, err)
		roster, err := device.NewRoster(trust)
		require.NoError(t, err)
		_, err = roster.Add(rec)
		require.NoError(t, err)
		r, err := replica.Open(ctx, filepath.Join(t.TempDir(), name+".db"), replica.Config{Signer: id, Keys: roster})
		require.NoError(t, err)
		t.Cleanup(func() { _ = r.Close() })
		return r, roster
	}
	tablet, _ := signed("tablet")
	clinic, clinicRoster := signed("clinic")
	cloud, _ := signed("cloud")

	chart := register(t, tablet, "Wanjiru")
	addAllergy(t, tablet, chart, "Penicillin")
	toCloud, early, late := t.TempDir(), t.TempDir(), t.TempDir()
	export(t, tablet, cloud.ID(), toCloud)
	importAll(t, cloud, toCloud)
	export(t, tablet, clinic.ID(), early) // made before the revocation

	accepted, err := cloud.ActorSeqs(ctx, tablet.ID())
	require.NoError(t, err)
	require.Equal(t, map[string]uint64{chart: 2}, accepted)
	rec, err := auth.RevokeAccepting(tablet.ID(), "kamuga-dispensary", now, accepted)
	require.NoError(t, err)
	_, err = clinicRoster.Add(rec)
	require.NoError(t, err)

	// The thief edits on and carries a file to the clinic.
	addAllergy(t, tablet, chart, "Sulfa")
	export(t, tablet, clinic.ID(), late)
	before := transporttest.Snapshot(t, clinic)
	_, err = file.Import(ctx, clinic, late)
	require.ErrorIs(t, err, replica.ErrRevokedChange, "a change made after the revocation must be refused")
	require.ErrorIs(t, err, replica.ErrForgedChange)
	assert.Equal(t, before, transporttest.Snapshot(t, clinic), "a refused file changes nothing")
	q, err := clinic.Quarantined(ctx)
	require.NoError(t, err)
	assert.Len(t, q, 1, "the refused file is kept for review")

	// The file made before the revocation holds accepted changes only.
	importAll(t, clinic, early)
	v, err := clinic.Chart(ctx, chart)
	require.NoError(t, err)
	want, err := cloud.Chart(ctx, chart)
	require.NoError(t, err)
	assert.Equal(t, want, v, "the tablet's changes made before the revocation apply")
}
