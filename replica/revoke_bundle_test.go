package replica_test

import (
	"context"
	"encoding/binary"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/internal/wire"
	"github.com/chartsync/chartsync/replica"
)

// TestLargeRevocationTravelsInABundle: a revocation accepting the
// device's changes in 500 charts (over MaxSignerBytes) travels with a
// bundle like a small one, and the replica that receives it refuses the
// device's later changes.
func TestLargeRevocationTravelsInABundle(t *testing.T) {
	ctx := context.Background()
	d := newDeployment(t)
	tablet := d.device(t, "north")
	cloud, hub := d.checker(t), d.checker(t)
	x := register(t, tablet.Replica, "Wanjiru", "Mwangi", "Kamuga")
	_, err := replica.SyncPair(ctx, tablet.Replica, cloud.Replica)
	require.NoError(t, err)

	accepted, err := cloud.ActorSeqs(ctx, tablet.ID())
	require.NoError(t, err)
	for len(accepted) < 500 {
		accepted[uuid.NewString()] = 3
	}
	rec, err := d.auth.RevokeAccepting(tablet.ID(), "north", d.now.Add(1), accepted)
	require.NoError(t, err)
	require.Greater(t, len(rec), replica.MaxSignerBytes, "the revocation is over the bound of an enrolment in a bundle")
	_, err = cloud.roster.Add(rec)
	require.NoError(t, err)

	out, err := cloud.MakeBundle(ctx, hub.ID())
	require.NoError(t, err)
	b, err := replica.DecodeBundle(out.Data)
	require.NoError(t, err)
	assert.Contains(t, b.Signers, rec, "the bundle carries the revocation")
	_, err = hub.Receive(ctx, out.Data)
	require.NoError(t, err)
	_, err = hub.roster.Lookup(tablet.ID())
	require.ErrorIs(t, err, device.ErrRevoked, "the revocation travelled in the bundle")

	edit(t, tablet.Replica, x, allergy(1))
	_, err = replica.SyncPair(ctx, tablet.Replica, hub.Replica)
	require.ErrorIs(t, err, replica.ErrRevokedChange, "the hub refuses the tablet's change made after its revocation")
}

// TestLargeSignerRecordsAreBoundedPerBundle: records over MaxSignerBytes
// may each be up to MaxRevocationRecordBytes, and together up to
// MaxLargeSignerBytes in one bundle; past that a bundle is neither
// written nor read.
func TestLargeSignerRecordsAreBoundedPerBundle(t *testing.T) {
	from, to := crdt.NewActorID(), crdt.NewActorID()
	big := make([]byte, replica.MaxRevocationRecordBytes)
	for _, tc := range []struct {
		name    string
		signers [][]byte
		err     error
	}{
		{"one record of the largest size", [][]byte{big}, nil},
		{"records up to the bundle's bound", [][]byte{big, big, big, big, make([]byte, 100)}, nil},
		{"a record over the largest size", [][]byte{make([]byte, replica.MaxRevocationRecordBytes+1)}, replica.ErrMalformedBundle},
		{"large records over the bundle's bound", [][]byte{big, big, big, big, make([]byte, replica.MaxSignerBytes+1)}, replica.ErrBundleTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := replica.Bundle{From: from, To: to, Signers: tc.signers}
			data, err := b.Encode()
			if tc.err != nil {
				require.ErrorIs(t, err, tc.err, "the bundle must not be written")
				return
			}
			require.NoError(t, err)
			got, err := replica.DecodeBundle(data)
			require.NoError(t, err)
			assert.Len(t, got.Signers, len(tc.signers))
		})
	}
	// A peer's bundle past the bound, written by hand, is refused when
	// read.
	signers := binary.AppendUvarint(nil, 5)
	for _, rec := range [][]byte{big, big, big, big, make([]byte, replica.MaxSignerBytes+1)} {
		signers = wire.AppendBytes(signers, rec)
	}
	data := wire.Encode('B', replica.BundleVersion, body(from, to, [4]uint64{}, 0, []byte{0}, signers, []byte{0}))
	_, err := replica.DecodeBundle(data)
	require.ErrorIs(t, err, replica.ErrBundleTooLarge)
}
