package replica_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/internal/wire"
	"github.com/chartsync/chartsync/replica"
)

// TestBundleLeavesOutCarriedDependencies: a bundle does not carry the
// hash of a change its other changes depend on when it carries that
// change too (the recipient puts the hash back), nor any change's checksum
// (the start of its hash), and carries every other dependency hash; the changes decode to exactly the bytes sent, and a
// recipient applies them.
func TestBundleLeavesOutCarriedDependencies(t *testing.T) {
	ctx := context.Background()
	a, _ := newMem(t, replica.Config{Now: frozen})
	b, _ := newMem(t, replica.Config{Now: frozen})
	first := register(t, a, "Wanjiru", "Mwangi", "Kamuga")
	_, err := replica.SyncPair(ctx, a, b)
	require.NoError(t, err)

	// After the sync, a's new changes depend on the registration, which
	// b holds and the next bundle does not carry.
	var made []crdt.Change
	for i := range 4 {
		made = append(made, edit(t, a, first, allergy(i)).Change)
	}
	second := register(t, a, "Baraka", "Otieno", "Siaya")
	made = append(made, edit(t, a, second, allergy(9)).Change)

	out, err := a.MakeBundle(ctx, b.ID())
	require.NoError(t, err)
	_, body, err := wire.Decode(out.Data, 'B', replica.BundleVersion, replica.MaxBundleBytes)
	require.NoError(t, err)
	bundle, err := replica.DecodeBundle(out.Data)
	require.NoError(t, err)

	carried := map[crdt.Hash]bool{}
	sent := map[crdt.Hash][]byte{}
	for _, c := range bundle.Changes {
		ch, err := crdt.ReadChange(c.Raw)
		require.NoError(t, err, "a change as decoded is whole: its checksum holds")
		carried[ch.Hash] = true
		sent[ch.Hash] = c.Raw
	}
	for _, m := range made {
		require.Contains(t, sent, m.Hash)
		assert.Equal(t, m.Raw, sent[m.Hash], "the change decodes to the bytes made")
		// The checksum, the first 4 bytes of the change's hash, is left
		// out too: the change's magic is followed by what follows it.
		assert.False(t, bytes.Contains(body, m.Raw[:8]), "the checksum of %s is left out", m.Hash)
		assert.True(t, bytes.Contains(body, append(bytes.Clone(m.Raw[:4]), m.Raw[8:12]...)), "%s is sent without its checksum", m.Hash)
	}
	left, kept := 0, 0
	for _, c := range bundle.Changes {
		ch, err := crdt.ReadChange(c.Raw)
		require.NoError(t, err)
		for _, d := range ch.Deps {
			if carried[d] {
				left++
				assert.False(t, bytes.Contains(body, d[:]), "the hash of %s, which the bundle carries, is left out", d)
			} else {
				kept++
				assert.True(t, bytes.Contains(body, d[:]), "the hash of %s, which the bundle does not carry, is sent", d)
			}
		}
	}
	assert.GreaterOrEqual(t, left, 4, "dependencies on changes the bundle carries")
	assert.Equal(t, 1, kept, "the first edit depends on the registration b holds")

	got, err := b.Receive(ctx, out.Data)
	require.NoError(t, err)
	assert.Equal(t, out.Changes, got.Applied)
	requireSameCharts(t, a, b)
}

// TestShortChangesTravelWhole: a change too short to lose its checksum
// (11 bytes, a header and nothing else) is sent with it, and comes back
// as it was sent.
func TestShortChangesTravelWhole(t *testing.T) {
	raw := []byte{0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, 0x01, 0x01, 0x00}
	h := sha256.Sum256(raw[8:])
	copy(raw[4:8], h[:4])
	_, n, err := crdt.DepsSpan(raw)
	require.NoError(t, err, "its header reads")
	require.Zero(t, n)
	b := replica.Bundle{From: crdt.NewActorID(), To: crdt.NewActorID(), Changes: []replica.BundleChange{{Chart: uuid.NewString(), Raw: raw}}}
	data, err := b.Encode()
	require.NoError(t, err)
	got, err := replica.DecodeBundle(data)
	require.NoError(t, err)
	assert.Equal(t, raw, got.Changes[0].Raw)
}
