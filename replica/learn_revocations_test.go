package replica_test

import (
	"context"
	"encoding/base64"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/replica"
)

// TestRefusedReplicaLearnsTheRevocationsItNeeds: a peer's refusal names
// the revoked device (RevokedChangeError); the refusing replica gives the
// revocations the refused one needs (RevocationsFor), with the refused
// device's, even of a device of another clinic; once the refused replica learns them
// (LearnRevocations) its bundles leave the refused changes out and are
// taken, and the revocation is stored with the device's signer records.
func TestRefusedReplicaLearnsTheRevocationsItNeeds(t *testing.T) {
	ctx := context.Background()
	d := newDeployment(t)
	tablet := d.device(t, "north")
	id, own := d.enrol(t, "south")
	bRoster := d.roster(t)
	_, err := bRoster.Add(own)
	require.NoError(t, err)
	bRep, bStore := newMem(t, replica.Config{Signer: id, Keys: bRoster})
	b := signedDevice{Replica: bRep, st: bStore, id: id, rec: own}
	cloud := d.checker(t)
	x := register(t, tablet.Replica, "Wanjiru", "Mwangi", "Kamuga")
	_, err = replica.SyncPair(ctx, tablet.Replica, cloud.Replica)
	require.NoError(t, err)
	rec, _ := d.revoke(t, cloud.Replica, tablet)
	_, err = cloud.roster.Add(rec)
	require.NoError(t, err)
	edit(t, tablet.Replica, x, allergy(1))
	_, err = replica.SyncPair(ctx, tablet.Replica, b.Replica)
	require.NoError(t, err, "b has not learnt of the revocation")

	up, err := b.MakeBundle(ctx, cloud.ID())
	require.NoError(t, err)
	_, err = cloud.Receive(ctx, up.Data)
	var rce *replica.RevokedChangeError
	require.ErrorAs(t, err, &rce)
	assert.ErrorIs(t, err, replica.ErrRevokedChange)
	assert.ErrorIs(t, err, replica.ErrForgedChange)
	assert.Equal(t, tablet.ID(), rce.Device)
	assert.Equal(t, x, rce.Chart)
	assert.Equal(t, uint64(2), rce.Seq)
	assert.Equal(t, uint64(1), rce.Accepted)

	_, err = cloud.roster.Add(own)
	require.NoError(t, err)
	assert.Empty(t, cloud.RevocationsFor(b.ID()), "b is of another clinic than the tablet")
	recs := cloud.RevocationsFor(b.ID(), rce.Device)
	require.Equal(t, [][]byte{rec}, recs, "the refused device's revocation, once")

	// A forged record teaches nothing.
	forged := append([]byte(nil), rec...)
	forged[len(forged)-1] ^= 1
	ids, err := b.LearnRevocations(ctx, [][]byte{forged})
	assert.ErrorIs(t, err, replica.ErrForgedChange)
	assert.Empty(t, ids)
	_, revoked := bRoster.AcceptedUpTo(tablet.ID(), x)
	require.False(t, revoked, "a forged revocation is not learnt")

	ids, err = b.LearnRevocations(ctx, recs)
	require.NoError(t, err)
	assert.Equal(t, []string{tablet.ID()}, ids)
	_, err = replica.SyncPair(ctx, b.Replica, cloud.Replica)
	require.NoError(t, err, "b leaves the refused change out and is taken")
	assert.Len(t, actorChanges(t, cloud.st, tablet.ID())[x], 1, "the cloud holds the tablet's accepted change only")

	signers, err := b.st.Meta(ctx, "signer/"+tablet.ID())
	require.NoError(t, err)
	assert.Contains(t, signers, encodeRecord(rec), "the revocation is stored with the tablet's signer records")
}

// encodeRecord is a signer record as the replica stores it.
func encodeRecord(rec []byte) string { return base64.StdEncoding.EncodeToString(rec) }
