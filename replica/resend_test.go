package replica_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
)

// importCharts builds n charts of the clinic as r's own (each with
// several changes) and imports them in groups, as a migration or a bulk
// registration does: one batch, one grant position per group.
func importCharts(t *testing.T, r *replica.Replica, clinic string, n, group int) {
	t.Helper()
	ctx := context.Background()
	var charts []*record.Chart
	flush := func() {
		if len(charts) > 0 {
			require.NoError(t, r.Import(ctx, charts), "import %d charts", len(charts))
			charts = nil
		}
	}
	for i := range n {
		c, _, err := record.New(uuid.NewString(), r.ID(), nurse, frozenAt, record.Register{
			GivenName: fmt.Sprintf("Patient %d", i), Sex: "female", EstimatedBirthYear: 1980, HomeClinic: clinic,
		})
		require.NoError(t, err)
		for j := range 4 {
			_, err := c.Do(doctor, frozenAt, prescribe(fmt.Sprintf("Drug %d", j), float64(100+j)))
			require.NoError(t, err)
		}
		charts = append(charts, c)
		if len(charts) == group {
			flush()
		}
	}
	flush()
}

// sent tallies a one-way transfer: changes carried, and what the
// recipient found new or already held.
type sent struct{ carried, applied, duplicates, rounds int }

// scopedTransfer sends from→to until from has nothing more, as a device
// and the cloud do under clinic scope, and counts what travelled.
func scopedTransfer(t *testing.T, from, to *replica.Replica, clinic string, tally *sent) {
	t.Helper()
	ctx := context.Background()
	for range 1000 {
		out, err := from.MakeBundleFor(ctx, to.ID(), replica.BundleOptions{Clinic: clinic})
		require.NoError(t, err)
		got, err := to.ReceiveFrom(ctx, out.Data, replica.ReceiveOptions{Sender: from.ID(), Clinic: clinic})
		require.NoError(t, err)
		back, err := to.MakeBundleFor(ctx, from.ID(), replica.BundleOptions{Clinic: clinic})
		require.NoError(t, err)
		_, err = from.Receive(ctx, back.Data) // the acknowledgement
		require.NoError(t, err)
		tally.carried += out.Changes
		tally.applied += got.Applied
		tally.duplicates += got.Duplicates
		tally.rounds++
		if out.Complete {
			return
		}
	}
	t.Fatal("transfer did not finish in 1000 rounds")
}

func TestNoChangeIsSentTwiceInAMultiRoundSync(t *testing.T) {
	ctx := context.Background()
	const clinic = "kamuga"
	for _, tc := range []struct {
		name        string
		sqlite      bool
		charts      int
		group       int // charts per import batch (0: registered one by one)
		bundleBytes int
	}{
		{"imported in groups, small bundles", false, 60, 25, 4 << 10},
		{"imported in groups, tiny bundles", false, 40, 40, 700},
		{"imported in groups, SQLite", true, 60, 25, 3 << 10},
		{"registered one by one", false, 30, 0, 2 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := replica.Config{BundleBytes: tc.bundleBytes, Now: frozen}
			open := func(name string) *replica.Replica {
				if tc.sqlite {
					r, _ := openSQLite(t, tempDB(t, name), cfg)
					return r
				}
				r, _ := newMem(t, cfg)
				return r
			}
			dev, cloud, dev2 := open("device"), open("cloud"), open("device2")
			if tc.group > 0 {
				importCharts(t, dev, clinic, tc.charts, tc.group)
			} else {
				for i := range tc.charts {
					id := registerAt(t, dev, fmt.Sprintf("Patient %d", i), clinic)
					edit(t, dev, id, prescribe("Amoxicillin", 250))
				}
			}
			held, err := dev.Pending(ctx, cloud.ID())
			require.NoError(t, err)

			var up sent
			scopedTransfer(t, dev, cloud, clinic, &up)
			assert.Greater(t, up.rounds, 2, "the limit makes the upload take several rounds")
			assert.Equal(t, held, up.applied, "the cloud received every change of the device")
			assert.Zero(t, up.duplicates, "the device resent changes the cloud had acknowledged")
			assert.Equal(t, held, up.carried, "changes sent (%d) against distinct changes needed (%d)", up.carried, held)

			// A new tablet of the same clinic joins: the cloud sends it
			// everything in several rounds, each change once.
			var down sent
			scopedTransfer(t, cloud, dev2, clinic, &down)
			assert.Equal(t, held, down.applied, "the new tablet received every change of its clinic")
			assert.Zero(t, down.duplicates, "the cloud resent changes the tablet had acknowledged")
			assert.Equal(t, held, down.carried, "changes sent (%d) against distinct changes needed (%d)", down.carried, held)
			requireSameCharts(t, dev, cloud, dev2)
		})
	}
}
