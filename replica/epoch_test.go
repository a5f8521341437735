package replica_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/internal/wire"
	"github.com/chartsync/chartsync/replica"
)

// TestRestoredPeerIsSentWhatItLost: a cloud on SQLite is backed up while
// two devices sync with it; the devices go on past the backup (a new
// chart, allergies on an old one); the cloud is lost and its backup put
// back in place under its own ID, its log named anew (NewLogEpoch). A
// third device fills the restored log past the positions the first two
// had reached. Told nothing, each device then syncs as usual: it sends
// the restored cloud what it lost, receives what it took in meanwhile,
// and every replica ends with the same charts, every edit kept, nothing
// left pending. A bundle the old cloud made before it was lost, carried
// late, moves no position.
func TestRestoredPeerIsSentWhatItLost(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cloudPath, backupPath := filepath.Join(dir, "cloud.db"), filepath.Join(dir, "backup", "cloud.db")
	cloud, err := replica.Open(ctx, cloudPath, replica.Config{})
	require.NoError(t, err)
	tablet, _ := newMem(t, replica.Config{})
	laptop, _ := newMem(t, replica.Config{})
	phone, _ := newMem(t, replica.Config{})

	wanjiru := register(t, tablet, "Wanjiru", "Mwangi", "Kamuga")
	edit(t, tablet, wanjiru, allergy(1))
	syncAll(t, [2]*replica.Replica{tablet, cloud}, [2]*replica.Replica{laptop, cloud}, [2]*replica.Replica{phone, cloud})
	require.NoError(t, os.MkdirAll(filepath.Dir(backupPath), 0o700))
	require.NoError(t, replica.Backup(ctx, cloudPath, backupPath))

	// Past the backup.
	otieno := register(t, tablet, "Otieno", "Odhiambo", "Kamuga")
	edit(t, tablet, wanjiru, allergy(2))
	syncAll(t, [2]*replica.Replica{tablet, cloud})
	edit(t, laptop, wanjiru, allergy(3))
	syncAll(t, [2]*replica.Replica{laptop, cloud}, [2]*replica.Replica{tablet, cloud})
	late, err := cloud.MakeBundle(ctx, tablet.ID())
	require.NoError(t, err)
	oldEpoch := cloud.LogEpoch()
	require.NoError(t, cloud.Close())

	// The backup, put back in place: the same replica, its log named
	// anew.
	restored, err := replica.Open(ctx, backupPath, replica.Config{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = restored.Close() })
	require.Equal(t, cloud.ID(), restored.ID())
	require.Equal(t, oldEpoch, restored.LogEpoch(), "a log copied back is not told apart by itself")
	require.NoError(t, restored.NewLogEpoch(ctx))
	require.NotEqual(t, oldEpoch, restored.LogEpoch())

	// The phone fills the restored log past the others' positions.
	var phones []string
	for i := range 8 {
		phones = append(phones, register(t, phone, fmt.Sprintf("Akinyi %d", i), "Atieno", "Kamuga"))
	}
	syncAll(t, [2]*replica.Replica{phone, restored})
	edit(t, tablet, otieno, allergy(4))
	edit(t, laptop, wanjiru, allergy(5))
	for range 2 {
		syncAll(t, [2]*replica.Replica{tablet, restored}, [2]*replica.Replica{laptop, restored}, [2]*replica.Replica{phone, restored})
	}

	requireSameCharts(t, restored, tablet, laptop, phone)
	ids := chartIDs(t, restored)
	for _, id := range append([]string{wanjiru, otieno}, phones...) {
		assert.Contains(t, ids, id)
	}
	assert.Len(t, view(t, restored, wanjiru).Allergies, 4, "every allergy on Wanjiru's chart, from before, across and after the backup")
	assert.Len(t, view(t, restored, otieno).Allergies, 1)
	for _, d := range []*replica.Replica{tablet, laptop, phone} {
		n, err := d.Pending(ctx, restored.ID())
		require.NoError(t, err)
		assert.Zero(t, n, "device %s has nothing left to send", d.ID())
	}

	// The old cloud's bundle, carried late: its changes are held, its
	// positions are of a log the cloud left.
	before, err := tablet.Pending(ctx, restored.ID())
	require.NoError(t, err)
	rec, err := tablet.Receive(ctx, late.Data)
	require.NoError(t, err)
	require.ErrorIs(t, rec.PositionsRefused, replica.ErrStalePositions)
	syncAll(t, [2]*replica.Replica{tablet, restored})
	after, err := tablet.Pending(ctx, restored.ID())
	require.NoError(t, err)
	assert.Equal(t, before, after)
	requireSameCharts(t, restored, tablet, laptop, phone)
}

// A log epoch over MaxEpoch is neither written nor read.
func TestLogEpochOverTheLimitIsRefused(t *testing.T) {
	b := replica.Bundle{From: replica.NewID(), To: replica.NewID(), Epoch: replica.MaxEpoch, AckEpoch: 1}
	data, err := b.Encode()
	require.NoError(t, err)
	got, err := replica.DecodeBundle(data)
	require.NoError(t, err)
	assert.Equal(t, uint64(replica.MaxEpoch), got.Epoch)
	assert.Equal(t, uint64(1), got.AckEpoch)

	for _, over := range []replica.Bundle{{Epoch: replica.MaxEpoch + 1}, {AckEpoch: replica.MaxEpoch + 1}} {
		over.From, over.To = b.From, b.To
		_, err := over.Encode()
		require.ErrorIs(t, err, replica.ErrMalformedBundle)
	}
	// The same bytes with the epoch one over, written by hand.
	max := binary.AppendUvarint(nil, replica.MaxEpoch)
	_, body, err := wire.Decode(data, 'B', replica.BundleVersion, replica.MaxBundleBytes)
	require.NoError(t, err)
	j := bytes.Index(body, max)
	require.Positive(t, j)
	forged := append(append(append([]byte{}, body[:j]...), binary.AppendUvarint(nil, replica.MaxEpoch+1)...), body[j+len(max):]...)
	_, err = replica.DecodeBundle(wire.Encode('B', replica.BundleVersion, forged))
	require.ErrorIs(t, err, replica.ErrMalformedBundle)
}
