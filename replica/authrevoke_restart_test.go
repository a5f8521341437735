package replica_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/store"
)

// TestLearntAuthorityRevocationOutlivesARestart: a clinic device learns
// the cloud's revocation of a hub's stolen key from a peer's bundle
// (over HTTPS: LearnRevocations, from a refusal), restarts with its
// roster built again from its files, which never held the revocation,
// and still refuses a tablet the thief enrolled with that key.
func TestLearntAuthorityRevocationOutlivesARestart(t *testing.T) {
	for _, how := range []string{"with a bundle", "from a refusal"} {
		t.Run(how, func(t *testing.T) {
			ctx := context.Background()
			now := time.Now().UTC().Truncate(time.Second)
			cloudKey, err := device.NewAuthority()
			require.NoError(t, err)
			hubKey, err := device.NewAuthority()
			require.NoError(t, err)
			trust := device.RosterConfig{Authorities: []device.TrustedAuthority{
				{Key: cloudKey.PublicKey()},
				{Key: hubKey.PublicKey(), Clinics: []string{"kamuga"}},
			}}
			var records [][]byte
			enrol := func(a *device.Authority, issued time.Time) *device.Identity {
				id, err := device.Generate(replica.NewID(), "kamuga")
				require.NoError(t, err)
				rec, err := a.Enrol(id.Public(), issued, 24*time.Hour)
				require.NoError(t, err)
				records = append(records, rec)
				return id
			}
			// roster is what a device builds from its files: every
			// enrolment, the thief's among them, and no revocation.
			roster := func() *device.Roster {
				r, err := device.NewRoster(trust)
				require.NoError(t, err)
				for _, rec := range records {
					_, err := r.Merge(rec)
					require.NoError(t, err)
				}
				return r
			}
			clinicID := enrol(cloudKey, now.Add(-3*time.Hour))
			peerID := enrol(cloudKey, now.Add(-3*time.Hour))
			rogueID := enrol(hubKey, now.Add(-30*time.Minute))
			revocation, err := cloudKey.RevokeAuthority(hubKey.PublicKey(), now.Add(-time.Hour), nil)
			require.NoError(t, err)

			path := tempDB(t, "clinic")
			clinic, err := replica.Open(ctx, path, replica.Config{Signer: clinicID, Keys: roster()})
			require.NoError(t, err)
			switch how {
			case "with a bundle":
				peerRoster := roster()
				_, err = peerRoster.Merge(revocation)
				require.NoError(t, err)
				peer, err := replica.New(ctx, store.NewMem(), replica.Config{Signer: peerID, Keys: peerRoster})
				require.NoError(t, err)
				defer peer.Close()
				register(t, peer, "Amina", "Hassan", "Kamuga")
				_, err = replica.SyncPair(ctx, peer, clinic)
				require.NoError(t, err)
			case "from a refusal":
				_, err = clinic.LearnRevocations(ctx, [][]byte{revocation})
				require.NoError(t, err)
			}
			require.NoError(t, clinic.Close())

			clinic, err = replica.Open(ctx, path, replica.Config{Signer: clinicID, Keys: roster()})
			require.NoError(t, err)
			defer clinic.Close()
			rogue, err := replica.New(ctx, store.NewMem(), replica.Config{Signer: rogueID, Keys: roster()})
			require.NoError(t, err)
			defer rogue.Close()
			register(t, rogue, "Thief", "Made", "Kamuga")
			out, err := rogue.MakeBundle(ctx, clinic.ID())
			require.NoError(t, err)
			_, err = clinic.Receive(ctx, out.Data)
			require.ErrorIs(t, err, replica.ErrForgedChange, "the thief's tablet is refused after the restart")
			assert.ErrorIs(t, err, replica.ErrRevokedChange, "as a revoked device's")
		})
	}
}
