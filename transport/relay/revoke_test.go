package relay

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/store"
)

// TestRevokedTabletsChangesForwardedByRelayAreRefused: a relay bundle of
// an honest phone carrying a stolen tablet's change made after its
// revocation is refused by a clinic whose roster holds the revocation
// (the tablet's own bundles are refused at the relay already: its
// enrolment is revoked), whole, changing nothing; the phone's bundle
// made before, carrying the tablet's changes the revocation accepts,
// still applies.
func TestRevokedTabletsChangesForwardedByRelayAreRefused(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, testDir(t))
	ids := map[string]*device.Identity{}
	recs := map[string][]byte{}
	for _, name := range []string{"tablet", "phone", "clinic"} {
		id, err := device.Generate(replica.NewID(), "kamuga")
		require.NoError(t, err)
		rec, err := w.cloud.Enrol(id.Public(), w.clock.Now(), 365*24*time.Hour)
		require.NoError(t, err)
		ids[name], recs[name] = id, rec
	}
	sites := map[string]*site{}
	rosters := map[string]*device.Roster{}
	for name, id := range ids {
		roster, err := device.NewRoster(device.RosterConfig{Authorities: []device.TrustedAuthority{{Key: w.cloud.PublicKey()}}, Now: w.clock.Now})
		require.NoError(t, err)
		for _, rec := range recs {
			_, err := roster.Add(rec)
			require.NoError(t, err)
		}
		st := store.NewMem()
		r, err := replica.New(ctx, keepOpen{st}, replica.Config{Now: w.clock.Now, Signer: id, Keys: roster})
		require.NoError(t, err)
		e, err := OpenEndpoint(filepath.Join(w.dir, name), r, id, roster, Config{Now: w.clock.Now})
		require.NoError(t, err)
		sites[name], rosters[name] = &site{name: name, r: r, id: id, e: e, st: st}, roster
		defer sites[name].close()
	}
	tablet, phone, clinic := sites["tablet"], sites["phone"], sites["clinic"]
	carry := func(from, to *site) (replica.Received, error) {
		sealed, err := from.e.Seal(ctx, to.r.ID())
		require.NoError(t, err)
		return to.e.Open(ctx, sealed)
	}

	chart := register(t, tablet.r, "Wanjiru")
	_, err := carry(tablet, phone)
	require.NoError(t, err)
	early, err := phone.e.Seal(ctx, clinic.r.ID()) // made before the revocation
	require.NoError(t, err)

	// The cloud revokes the tablet, accepting what the phone (standing
	// for the cloud here) holds of it; the clinic learns it.
	accepted, err := phone.r.ActorSeqs(ctx, tablet.r.ID())
	require.NoError(t, err)
	rev, err := w.cloud.RevokeAccepting(tablet.r.ID(), "kamuga", w.clock.Now(), accepted)
	require.NoError(t, err)
	_, err = rosters["clinic"].Add(rev)
	require.NoError(t, err)

	// The thief edits on; the phone, not knowing, takes it and forwards.
	_, err = tablet.r.Edit(ctx, chart, nurse, record.AddAllergy{Substance: "Sulfa", Reaction: "rash", Severity: "mild"})
	require.NoError(t, err)
	_, err = carry(tablet, phone)
	require.NoError(t, err)
	before := snapshot(t, clinic.r)
	_, err = carry(phone, clinic)
	require.ErrorIs(t, err, replica.ErrRevokedChange, "a change made after the revocation must be refused")
	require.ErrorIs(t, err, replica.ErrForgedChange)
	assert.Equal(t, before, snapshot(t, clinic.r), "nothing of the bundle is applied")
	q, err := clinic.r.Quarantined(ctx)
	require.NoError(t, err)
	assert.Len(t, q, 1, "the refused bundle is kept for review")

	// The tablet itself is refused at the relay.
	_, err = carry(tablet, clinic)
	assert.ErrorIs(t, err, device.ErrRevoked)

	res, err := clinic.e.Open(ctx, early)
	require.NoError(t, err, "the tablet's change made before the revocation still applies")
	assert.Equal(t, 1, res.Applied)
	v, err := clinic.r.Chart(ctx, chart)
	require.NoError(t, err)
	assert.Equal(t, "Wanjiru", v.Patient.GivenName)
}
