package replica_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/store"
	"github.com/chartsync/chartsync/replica/store/sqlite/faultvfs"
)

// maxGrowths bounds how far into one write the disk may fill: far more
// file growths than an edit or a small bundle makes.
const maxGrowths = 200

// TestFullDiskKeepsEverythingAndWritesAgain fills the disk under a device
// at every growth of its files that an edit, a registration or the
// receive of a peer's bundle makes, in turn: the call fails with an error
// matching replica.ErrDiskFull that does not claim the write may have
// happened, the store is exactly as before, charts still read, and once
// there is room the same call succeeds, survives a crash, and the replica
// syncs and converges with its peer.
func TestFullDiskKeepsEverythingAndWritesAgain(t *testing.T) {
	require.NoError(t, faultvfs.Install())
	base := t.TempDir()
	faultvfs.SkipSyncs(base)
	defer faultvfs.SkipSyncs("")
	calls := []struct {
		name string
		// prepare runs before the disk fills; call is the write.
		prepare func(r *failRig) func() error
	}{
		{"edit", func(r *failRig) func() error {
			return func() error {
				res, err := r.a.Edit(r.ctx, r.charts["a-own"], doctor, prescribe("Amoxicillin", 250))
				if err == nil {
					r.ack(r.charts["a-own"], res.Change.Hash)
				}
				return err
			}
		}},
		{"register", func(r *failRig) func() error {
			return func() error {
				id, err := r.a.Register(r.ctx, nurse, record.Register{
					GivenName: "Akinyi", FamilyName: "Odhiambo", Sex: "female", EstimatedBirthYear: 1990,
					Village: "Asembo", HomeClinic: "kamuga-dispensary",
				})
				if err == nil {
					r.ack(id, r.heads(id)...)
				}
				return err
			}
		}},
		{"receive", func(r *failRig) func() error {
			t := r.t
			added := register(t, r.b, "Nafula", "Wekesa", "Kamuga")
			edit(t, r.b, added, allergy(300))
			edit(t, r.b, r.charts["a-own"], allergy(301))
			edit(t, r.b, r.charts["b-own"], allergy(302))
			out, err := r.b.MakeBundle(r.ctx, r.a.ID())
			require.NoError(t, err)
			return func() error {
				got, err := r.a.Receive(r.ctx, out.Data)
				if err == nil {
					for _, c := range got.Changes {
						r.ack(c.Chart, c.Hash)
					}
				}
				return err
			}
		}},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			refused, stride := 0, 1
			if testing.Short() {
				stride = 3 // every third point where the disk can fill
			}
			for skip := 0; ; skip += stride {
				require.Less(t, skip, maxGrowths, "the write never got past a full disk")
				r := newFailRig(t, base, fmt.Sprintf("full-%s-%d", c.name, skip))
				call := c.prepare(r)
				r.a.Chart(r.ctx, r.charts["a-own"]) // loaded, as on a device in use
				before := dumpStore(t, r.fs.Inner())
				faultvfs.Arm(r.dir, faultvfs.DiskFull(skip)...)
				err := call()
				fired := faultvfs.Fired()
				if fired == 0 {
					// The write made fewer growths than skip: every point
					// where the disk could fill has been tried.
					faultvfs.Disarm()
					require.NoError(t, err, "with room for the whole write it succeeds")
					require.Positive(t, skip, "a full disk from the start stops the write")
					t.Logf("%s: the disk filled at %d of the %d or so growths of its files, each refused", c.name, refused, skip)
					require.NoError(t, r.a.Close())
					return
				}
				refused++
				require.ErrorIs(t, err, replica.ErrDiskFull, "a full disk after %d growths", skip)
				assert.NotErrorIs(t, err, store.ErrOutcomeUnknown, "a full disk leaves no doubt that nothing was written")
				assert.Contains(t, err.Error(), "free space", "the error says what to do")
				assert.Equal(t, before, dumpStore(t, r.fs.Inner()), "a refused write stores nothing")
				_, rerr := r.a.Chart(r.ctx, r.charts["a-own"])
				require.NoError(t, rerr, "charts still read on a full disk")
				q, qerr := r.a.Quarantined(r.ctx)
				require.NoError(t, qerr)
				assert.Empty(t, q, "a bundle not stored for want of space is not quarantined")

				faultvfs.Disarm()
				require.NoError(t, call(), "once there is room the same write succeeds")
				cp, err := faultvfs.CrashCopy(r.path, r.scratch)
				require.NoError(t, err)
				x, err := replica.Open(r.ctx, cp, failpointConfig)
				require.NoError(t, err, "the replica reopens after a crash")
				r.check(x, fmt.Sprintf("after a full disk at growth %d and a crash", skip))
				require.NoError(t, x.Close())
				require.NoError(t, r.a.Close())
			}
		})
	}
}
