package replica_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/replica"
)

// TestOutOfScopeBundlesAreQuarantined: a bundle a device of clinic north
// sends with changes outside north's scope is refused with ErrOutOfScope,
// changes nothing, and is kept in the quarantine for review, as a forged
// one is.
func TestOutOfScopeBundlesAreQuarantined(t *testing.T) {
	for _, tc := range []struct {
		name string
		// rogue makes the out-of-scope changes on a replica that does
		// not enforce a clinic, holding what the cloud holds.
		rogue func(t *testing.T, rogue *replica.Replica, south string)
	}{
		{"a new chart of another clinic", func(t *testing.T, rogue *replica.Replica, _ string) {
			registerAt(t, rogue, "Asha", "south")
		}},
		{"an edit of another clinic's chart", func(t *testing.T, rogue *replica.Replica, south string) {
			edit(t, rogue, south, allergy(7))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			cloud, cloudStore := newMem(t, replica.Config{})
			south := registerAt(t, cloud, "Wanjiru", "south")
			rogue, _ := newMem(t, replica.Config{})
			_, err := replica.SyncPair(ctx, rogue, cloud)
			require.NoError(t, err)
			tc.rogue(t, rogue, south)

			before := dumpStore(t, cloudStore)
			up, err := rogue.MakeBundle(ctx, cloud.ID())
			require.NoError(t, err)
			_, err = cloud.ReceiveFrom(ctx, up.Data, replica.ReceiveOptions{Sender: rogue.ID(), Clinic: "north", CheckAuthors: true})
			require.ErrorIs(t, err, replica.ErrOutOfScope)
			assert.Equal(t, before, dumpStore(t, cloudStore), "nothing of the bundle is taken")
			q, err := cloud.Quarantined(ctx)
			require.NoError(t, err)
			require.Len(t, q, 1, "the refused bundle is kept for review")
			assert.Equal(t, rogue.ID(), q[0].From)
			assert.Contains(t, q[0].Reason, "scope")
		})
	}
}
