package replica_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/store/sqlite"
	"github.com/chartsync/chartsync/replica/store/storetest"
)

// clinicCloud is a cloud on SQLite serving clinics clinic-0 … clinic-n,
// each with one device, and a second device of clinic-0 whose syncs are
// measured.
type clinicCloud struct {
	cloud   *replica.Replica
	counted *storetest.Counting
	devices []*replica.Replica // devices[i] edits for clinic-i
	watched *replica.Replica   // clinic-0's device that only syncs
}

func newClinicCloud(b *testing.B, clinics int) *clinicCloud {
	b.Helper()
	st, err := sqlite.Open(context.Background(), tempDB(b, "cloud"))
	require.NoError(b, err)
	c := &clinicCloud{counted: &storetest.Counting{Store: st}}
	c.cloud, err = replica.New(context.Background(), c.counted, replica.Config{})
	require.NoError(b, err)
	b.Cleanup(func() { _ = c.cloud.Close() })
	for i := range clinics {
		dev, _ := newMem(b, replica.Config{Clinic: clinicName(i)})
		c.devices = append(c.devices, dev)
	}
	c.watched, _ = newMem(b, replica.Config{Clinic: clinicName(0)})
	return c
}

func clinicName(i int) string { return fmt.Sprint("clinic-", i) }

// work has each clinic from first on register charts patients, edit each
// twice, and upload it all to the cloud: 3 × charts changes per clinic.
func (c *clinicCloud) work(b *testing.B, first, charts int) {
	b.Helper()
	ctx := context.Background()
	for i := first; i < len(c.devices); i++ {
		dev := c.devices[i]
		for range charts {
			id, err := dev.Register(ctx, nurse, record.Register{GivenName: "Amina", Sex: "female", EstimatedBirthYear: 1990, HomeClinic: clinicName(i)})
			require.NoError(b, err)
			edit(b, dev, id, allergy(i))
			edit(b, dev, id, prescribe("Amoxicillin", 500))
		}
		up, err := dev.MakeBundle(ctx, c.cloud.ID())
		require.NoError(b, err)
		require.True(b, up.Complete)
		_, err = c.cloud.ReceiveFrom(ctx, up.Data, replica.ReceiveOptions{Sender: dev.ID(), Clinic: clinicName(i)})
		require.NoError(b, err)
	}
}

// catchUp brings the watched device up to date and has the cloud take its
// acknowledgement.
func (c *clinicCloud) catchUp(b *testing.B) {
	b.Helper()
	ctx := context.Background()
	for range 100 {
		down, err := c.cloud.MakeBundleFor(ctx, c.watched.ID(), replica.BundleOptions{Clinic: clinicName(0)})
		require.NoError(b, err)
		_, err = c.watched.Receive(ctx, down.Data)
		require.NoError(b, err)
		up, err := c.watched.MakeBundle(ctx, c.cloud.ID())
		require.NoError(b, err)
		_, err = c.cloud.ReceiveFrom(ctx, up.Data, replica.ReceiveOptions{Sender: c.watched.ID(), Clinic: clinicName(0)})
		require.NoError(b, err)
		if down.Complete {
			return
		}
	}
	b.Fatal("the device did not catch up in 100 round trips")
}

// sync measures the cloud's bundle for the watched device.
func (c *clinicCloud) sync(b *testing.B, wantChanges int) {
	b.Helper()
	ctx := context.Background()
	var rows, entries int64
	for b.Loop() {
		c.counted.Reset()
		out, err := c.cloud.MakeBundleFor(ctx, c.watched.ID(), replica.BundleOptions{Clinic: clinicName(0)})
		require.NoError(b, err)
		require.Equal(b, wantChanges, out.Changes)
		rows, entries = c.counted.Rows(), c.counted.Entries()
	}
	b.ReportMetric(float64(rows), "rows/op")
	b.ReportMetric(float64(entries), "entries/op")
}

// BenchmarkClinicSync measures a clinic device's sync with a cloud on
// SQLite where 1 or 100 clinics are active, the device's own clinic doing
// the same in both: rows/op counts the changes the sync read from the
// store, entries/op the chart index entries and grants. "delta": the
// device has everything but its clinic's last round (30 changes of 10
// charts), which every active clinic did too. "nothing to send": the
// device has everything of its clinic, and every other clinic did another
// round since.
func BenchmarkClinicSync(b *testing.B) {
	const charts = 10
	for _, active := range []int{1, 100} {
		c := newClinicCloud(b, active)
		c.work(b, 0, charts)
		c.catchUp(b)
		c.work(b, 0, charts)
		b.Run(fmt.Sprintf("delta/clinics=%d", active), func(b *testing.B) {
			c.sync(b, 3*charts)
		})
		c.catchUp(b)
		c.work(b, 1, charts)
		b.Run(fmt.Sprintf("nothing to send/clinics=%d", active), func(b *testing.B) {
			c.sync(b, 0)
		})
	}
}
