package replica_test

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
)

// TestForkNeedsProof: what finds a replica forked must be proof, not a
// claim anyone can write. A change naming the replica's own ID, not signed
// by its key, is refused as forged (not taken as a change of its own it
// lost), whether the bundle comes signed by an enrolled device or
// unsigned; and a replica serving a clinic's devices (ReceiveOptions.Clinic)
// is never found forked by a device's positions, however false they are.
func TestForkNeedsProof(t *testing.T) {
	ctx := context.Background()
	d := newDeployment(t)
	victim, liar := d.device(t, "kamuga"), d.device(t, "kamuga")

	// A change credited to the victim, made and signed by the liar.
	impostor, _, err := record.New(uuid.NewString(), victim.ID(), nurse, d.now, record.Register{
		GivenName: "Fake", Sex: "male", EstimatedBirthYear: 1970, HomeClinic: "kamuga"})
	require.NoError(t, err)
	chs, err := impostor.Doc().Changes(nil)
	require.NoError(t, err)
	forged := replica.BundleChange{Chart: impostor.ID(), Raw: chs[0].Raw, Sig: liar.id.SignChange(impostor.ID(), [32]byte(chs[0].Hash))}
	for _, tc := range []struct {
		name string
		sign bool
	}{{"signed by the liar", true}, {"unsigned", false}} {
		t.Run(tc.name, func(t *testing.T) {
			b := replica.Bundle{From: liar.ID(), To: victim.ID(), Changes: []replica.BundleChange{forged}, Signers: [][]byte{victim.rec, liar.rec}}
			var data []byte
			if tc.sign {
				data, err = b.EncodeSigned(liar.id)
			} else {
				data, err = b.Encode()
			}
			require.NoError(t, err)
			_, err = victim.ReceiveFrom(ctx, data, replica.ReceiveOptions{Sender: liar.ID()})
			require.ErrorIs(t, err, replica.ErrForgedChange)
			require.NoError(t, victim.Forked(), "a forged change of its own does not find the victim forked")
			register(t, victim.Replica, "Wanjiru", "Mwangi", "kamuga")
		})
	}

	t.Run("a serving replica and a device's false check", func(t *testing.T) {
		cloud := d.device(t, "kamuga")
		chart := registerAt(t, liar.Replica, "Achieng", "kamuga")
		_, err := replica.SyncPair(ctx, liar.Replica, cloud.Replica)
		require.NoError(t, err)
		edit(t, liar.Replica, chart, allergy(1))
		out, err := liar.MakeBundle(ctx, cloud.ID())
		require.NoError(t, err)
		b, err := replica.DecodeBundle(out.Data)
		require.NoError(t, err)
		b.CheckAt, b.CheckHash = 1, []byte{1, 2, 3, 4, 5, 6, 7, 8}
		b.Ack = 1 << 40
		data, err := b.EncodeSigned(liar.id)
		require.NoError(t, err)
		rec, err := cloud.ReceiveFrom(ctx, data, replica.ReceiveOptions{Sender: liar.ID(), Clinic: "kamuga", CheckAuthors: true})
		require.NoError(t, err)
		assert.Equal(t, 1, rec.Applied, "the device's change is taken")
		require.NoError(t, cloud.Forked(), "a device's word does not find the cloud forked")
		register(t, cloud.Replica, "Baraka", "Otieno", "kamuga")
	})
}
