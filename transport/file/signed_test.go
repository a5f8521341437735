package file_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/transport/file"
	"github.com/chartsync/chartsync/transport/transporttest"
)

// TestForgedChangesOnAStickAreRefused: a device that checks signatures
// refuses a bundle file whose changes do not prove their author (unsigned,
// or credited to another device), keeps it for review, and changes
// nothing; an honest device's file still applies.
func TestForgedChangesOnAStickAreRefused(t *testing.T) {
	ctx := t.Context()
	auth, err := device.NewAuthority()
	require.NoError(t, err)
	now := time.Now().Truncate(time.Second)
	trust := device.RosterConfig{Authorities: []device.TrustedAuthority{{Key: auth.PublicKey()}}}
	signed := func(name string) (*replica.Replica, *device.Identity) {
		id, err := device.Generate(replica.NewID(), "kamuga-dispensary")
		require.NoError(t, err)
		rec, err := auth.Enrol(id.Public(), now, time.Hour)
		require.NoError(t, err)
		roster, err := device.NewRoster(trust)
		require.NoError(t, err)
		_, err = roster.Add(rec)
		require.NoError(t, err)
		r, err := replica.Open(ctx, filepath.Join(t.TempDir(), name+".db"), replica.Config{Signer: id, Keys: roster, CheckAuthors: true})
		require.NoError(t, err)
		t.Cleanup(func() { _ = r.Close() })
		return r, id
	}
	honest, _ := signed("honest")
	checker, _ := signed("checker")
	rogue, rogueKey := signed("rogue")
	unsigned := openReplica(t, "unsigned")

	// An unsigned device's file.
	stick := t.TempDir()
	register(t, unsigned, "Nafula")
	export(t, unsigned, checker.ID(), stick)
	before := transporttest.Snapshot(t, checker)
	_, err = file.Import(ctx, checker, stick)
	require.ErrorIs(t, err, replica.ErrForgedChange)
	assert.Equal(t, before, transporttest.Snapshot(t, checker), "a refused file changes nothing")

	// A change credited to the honest device, signed by the rogue one.
	stick = t.TempDir()
	c, res, err := record.New(uuid.NewString(), honest.ID(), nurse, now, record.Register{GivenName: "Fake", Sex: "male", EstimatedBirthYear: 1970, HomeClinic: "kamuga-dispensary"})
	require.NoError(t, err)
	b := replica.Bundle{From: rogue.ID(), To: checker.ID(), Changes: []replica.BundleChange{
		{Chart: c.ID(), Raw: res.Change.Raw, Sig: rogueKey.SignChange(c.ID(), [32]byte(res.Change.Hash))}}}
	data, err := b.Encode()
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(stick, file.NameFor(b.From, b.To, data)), data, 0o600))
	_, err = file.Import(ctx, checker, stick)
	require.ErrorIs(t, err, replica.ErrForgedChange)
	assert.Equal(t, before, transporttest.Snapshot(t, checker))
	q, err := checker.Quarantined(ctx)
	require.NoError(t, err)
	assert.Len(t, q, 2, "both forged files are kept for review")

	// The honest device's file applies, its enrolment carried inside.
	stick = t.TempDir()
	id := register(t, honest, "Wanjiru")
	export(t, honest, checker.ID(), stick)
	importAll(t, checker, stick)
	assert.True(t, hasChart(t, checker, id))
}
