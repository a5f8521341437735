package replica_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/store"
)

// peerRecord returns what r's store holds of peer (zero if nothing).
func peerRecord(t *testing.T, st store.Store, peer string) store.Peer {
	t.Helper()
	ps, err := st.Peers(context.Background())
	require.NoError(t, err)
	for _, p := range ps {
		if p.ID == peer {
			p.LastSync = p.LastSync.UTC()
			return p
		}
	}
	return store.Peer{ID: peer}
}

// A file anyone could write names the cloud as its sender and claims the
// cloud holds every edit of the device (Ack = its head) and has sent its
// whole log (Upto = 2^62). On a replica that checks signatures such
// claims count only from a bundle its sender signed: the device keeps its
// unsent edits pending and its record of the peer is untouched.
func TestUnsignedBundlesCannotMoveSyncPositions(t *testing.T) {
	ctx := context.Background()
	d := newDeployment(t)
	a := d.device(t, "kamuga")
	cloud := d.device(t, "hq")
	chart := register(t, a.Replica, "Wanjiru", "Mwangi", "Kamuga")
	edit(t, a.Replica, chart, allergy(1))
	pending, err := a.Pending(ctx, cloud.ID())
	require.NoError(t, err)
	require.Equal(t, 2, pending)

	aOut, err := a.MakeBundle(ctx, cloud.ID())
	require.NoError(t, err)
	aHead, err := replica.DecodeBundle(aOut.Data)
	require.NoError(t, err)

	before := peerRecord(t, a.st, cloud.ID())
	cases := []struct {
		name string
		b    replica.Bundle
	}{
		{"acknowledges the device's head", replica.Bundle{From: cloud.ID(), To: a.ID(), Ack: aHead.Head}},
		{"claims its log up to 2^62", replica.Bundle{From: cloud.ID(), To: a.ID(), Upto: 1 << 62, Head: 1 << 62}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec, err := a.Receive(ctx, encode(t, tc.b))
			require.NoError(t, err, "its changes (none) are taken; only its positions are not")
			require.ErrorIs(t, rec.PositionsRefused, replica.ErrUnauthenticatedPositions)
			n, err := a.Pending(ctx, cloud.ID())
			require.NoError(t, err)
			assert.Equal(t, 2, n, "the device still knows its edits are unsent")
			got := peerRecord(t, a.st, cloud.ID())
			assert.Equal(t, before.Acked, got.Acked)
			assert.Equal(t, before.Received, got.Received)
		})
	}

	// A signed bundle whose positions were changed after signing is no
	// better than an unsigned one.
	cOut, err := cloud.MakeBundle(ctx, a.ID())
	require.NoError(t, err)
	signed, err := replica.DecodeBundle(cOut.Data)
	require.NoError(t, err)
	require.NotEmpty(t, signed.Auth, "a replica with a signer signs its bundles")
	forged := *signed
	forged.Ack = aHead.Head
	rec, err := a.Receive(ctx, encode(t, forged))
	require.NoError(t, err)
	require.ErrorIs(t, rec.PositionsRefused, replica.ErrUnauthenticatedPositions)
	n, err := a.Pending(ctx, cloud.ID())
	require.NoError(t, err)
	assert.Equal(t, 2, n)

	// The cloud's own signed answer, carried by the same untrusted file
	// courier, counts.
	_, err = cloud.Receive(ctx, aOut.Data)
	require.NoError(t, err)
	cOut, err = cloud.MakeBundle(ctx, a.ID())
	require.NoError(t, err)
	rec, err = a.Receive(ctx, cOut.Data)
	require.NoError(t, err)
	require.NoError(t, rec.PositionsRefused)
	n, err = a.Pending(ctx, cloud.ID())
	require.NoError(t, err)
	assert.Zero(t, n, "the cloud's signed acknowledgement is taken")
}

// A bundle over a channel that authenticated its sender (a device
// certificate over HTTPS) needs no signature of its own.
func TestAuthenticatedSenderPositionsCount(t *testing.T) {
	ctx := context.Background()
	d := newDeployment(t)
	a := d.device(t, "kamuga")
	cloud := d.device(t, "hq")
	register(t, a.Replica, "Wanjiru", "Mwangi", "Kamuga")
	aOut, err := a.MakeBundleFor(ctx, cloud.ID(), replica.BundleOptions{NoAuth: true})
	require.NoError(t, err)
	b, err := replica.DecodeBundle(aOut.Data)
	require.NoError(t, err)
	require.Empty(t, b.Auth, "NoAuth leaves the bundle unsigned")

	rec, err := cloud.Receive(ctx, aOut.Data)
	require.NoError(t, err)
	require.ErrorIs(t, rec.PositionsRefused, replica.ErrUnauthenticatedPositions)
	assert.Zero(t, peerRecord(t, cloud.st, a.ID()).Received)

	rec, err = cloud.ReceiveFrom(ctx, aOut.Data, replica.ReceiveOptions{Sender: a.ID()})
	require.NoError(t, err)
	require.NoError(t, rec.PositionsRefused)
	assert.Equal(t, b.Upto, peerRecord(t, cloud.st, a.ID()).Received)
}

// An acknowledgement beyond the recipient's log is one no honest sender
// makes of an honest recipient. Alone, signed or not, it proves nothing
// a liar could not write: it is not taken, the bundle's change is, the
// recipient is not found forked (a position check naming a change it
// does not hold is what finds a copy: TestCopiedFolderIsFound), and
// ResetPeer repairs the pair.
func TestImpossibleAcknowledgementIsNotTaken(t *testing.T) {
	ctx := context.Background()
	for _, keys := range []bool{false, true} {
		name := map[bool]string{false: "no keys", true: "signed"}[keys]
		t.Run(name, func(t *testing.T) {
			d := newDeployment(t)
			var (
				a, b     *replica.Replica
				bStore   *store.Mem
				aSigned  signedDevice
				bSignedD signedDevice
			)
			if keys {
				aSigned, bSignedD = d.device(t, "kamuga"), d.device(t, "kamuga")
				a, b, bStore = aSigned.Replica, bSignedD.Replica, bSignedD.st
			} else {
				a, _ = newMem(t, replica.Config{})
				b, bStore = newMem(t, replica.Config{})
			}
			chart := register(t, a, "Wanjiru", "Mwangi", "Kamuga")
			_, err := replica.SyncPair(ctx, a, b)
			require.NoError(t, err)
			edit(t, a, chart, allergy(1))
			edit(t, b, chart, allergy(2))
			bHead, err := bStore.Head(ctx)
			require.NoError(t, err)
			before := peerRecord(t, bStore, a.ID())

			out, err := a.MakeBundle(ctx, b.ID())
			require.NoError(t, err)
			lying, err := replica.DecodeBundle(out.Data)
			require.NoError(t, err)
			lying.Ack = bHead + 1000
			var data []byte
			if keys {
				data, err = lying.EncodeSigned(aSigned.id)
			} else {
				data, err = lying.Encode()
			}
			require.NoError(t, err)

			// Signed or not, an acknowledgement beyond the log alone is
			// not proof that b is a stale copy (a lying or buggy peer
			// would stop it for good): it is not taken, and b goes on.
			rec, err := b.Receive(ctx, data)
			require.NoError(t, err)
			assert.Equal(t, 1, rec.Applied, "the bundle's change is taken")
			require.ErrorIs(t, rec.PositionsRefused, replica.ErrImpossiblePosition)
			assert.Equal(t, before.Acked, peerRecord(t, bStore, a.ID()).Acked, "the impossible acknowledgement is not recorded")
			require.NoError(t, b.Forked(), "b is not found forked")
			require.NoError(t, b.ResetPeer(ctx, a.ID()))
			_, err = replica.SyncPair(ctx, a, b)
			require.NoError(t, err)
			requireSameCharts(t, a, b)
		})
	}
}
