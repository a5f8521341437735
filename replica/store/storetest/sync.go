package storetest

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/store"
)

// Counting is a store.Store that counts what its callers read through
// it: changes with their bytes (Log, LogFor, ChartChanges), and index
// entries (Chart and Grants). It is safe for concurrent use.
type Counting struct {
	store.Store
	rows, entries atomic.Int64
}

// Rows returns the changes read since the last Reset.
func (c *Counting) Rows() int64 { return c.rows.Load() }

// Entries returns the chart index entries and grants read since the last
// Reset.
func (c *Counting) Entries() int64 { return c.entries.Load() }

// Reset sets the counts to zero.
func (c *Counting) Reset() { c.rows.Store(0); c.entries.Store(0) }

// Log implements store.ChangeLog.
func (c *Counting) Log(ctx context.Context, after uint64, limit int) ([]store.Change, error) {
	out, err := c.Store.Log(ctx, after, limit)
	c.rows.Add(int64(len(out)))
	return out, err
}

// LogFor implements store.ChangeLog.
func (c *Counting) LogFor(ctx context.Context, q store.LogQuery) ([]store.Change, error) {
	out, err := c.Store.LogFor(ctx, q)
	c.rows.Add(int64(len(out)))
	return out, err
}

// ChartChanges implements store.ChangeLog.
func (c *Counting) ChartChanges(ctx context.Context, chart string, after uint64) ([]store.Change, error) {
	out, err := c.Store.ChartChanges(ctx, chart, after)
	c.rows.Add(int64(len(out)))
	return out, err
}

// Chart implements store.Index.
func (c *Counting) Chart(ctx context.Context, id string) (store.Chart, error) {
	c.entries.Add(1)
	return c.Store.Chart(ctx, id)
}

// Grants implements store.Index.
func (c *Counting) Grants(ctx context.Context, clinic string, after, upto uint64) ([]store.Grant, error) {
	out, err := c.Store.Grants(ctx, clinic, after, upto)
	c.entries.Add(int64(len(out)))
	return out, err
}

var syncAuthor = record.Author{UserID: "u-1", Name: "Amina", Role: record.RoleClinician, Device: "tablet-1"}

// runSyncReadsOnlyItsClinic checks, with a cloud replica on s, that a
// clinic device's sync reads the changes of its clinic's charts and no
// other, and that a sync with nothing to send reads as much however
// busy the other clinics were.
func runSyncReadsOnlyItsClinic(t *testing.T, s store.Store) {
	ctx := context.Background()
	counted := &Counting{Store: s}
	cloud, err := replica.New(ctx, counted, replica.Config{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = cloud.Close() })
	dev, err := replica.New(ctx, store.NewMem(), replica.Config{Clinic: "north"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = dev.Close() })

	charts := 0
	busy := func(clinic string, n int) []string {
		t.Helper()
		var ids []string
		for range n {
			charts++
			id, err := cloud.Register(ctx, syncAuthor, record.Register{
				GivenName: fmt.Sprint("Patient ", charts), Sex: "female", EstimatedBirthYear: 1990, HomeClinic: clinic,
			})
			require.NoError(t, err)
			_, err = cloud.Edit(ctx, id, syncAuthor, record.AddAllergy{Substance: fmt.Sprint("substance ", charts), Reaction: "rash", Severity: "mild"})
			require.NoError(t, err)
			ids = append(ids, id)
		}
		return ids
	}
	others := func(clinics, each int) {
		t.Helper()
		for i := range clinics {
			busy(fmt.Sprint("clinic-", i), each)
		}
	}
	north := busy("north", 2)
	others(5, 2)
	own, err := s.LogFor(ctx, store.LogQuery{Clinic: "north"})
	require.NoError(t, err)

	counted.Reset()
	down, err := cloud.MakeBundleFor(ctx, dev.ID(), replica.BundleOptions{Clinic: "north"})
	require.NoError(t, err)
	assert.Equal(t, len(own), down.Changes, "a new device of the clinic is sent every change of its charts")
	assert.Equal(t, int64(len(own)), counted.Rows(), "a sync read changes of other clinics' charts")
	assert.LessOrEqual(t, counted.Entries(), int64(len(north)), "a sync read other clinics' index entries")

	// The device takes the bundle, edits, and acknowledges: from then on
	// the cloud has nothing to send it but what other clinics do.
	_, err = dev.Receive(ctx, down.Data)
	require.NoError(t, err)
	_, err = dev.Edit(ctx, north[0], syncAuthor, record.AddAllergy{Substance: "penicillin", Reaction: "rash", Severity: "mild"})
	require.NoError(t, err)
	up, err := dev.MakeBundle(ctx, cloud.ID())
	require.NoError(t, err)
	_, err = cloud.ReceiveFrom(ctx, up.Data, replica.ReceiveOptions{Sender: dev.ID(), Clinic: "north"})
	require.NoError(t, err)

	idle := func() (rows, entries int64) {
		t.Helper()
		counted.Reset()
		out, err := cloud.MakeBundleFor(ctx, dev.ID(), replica.BundleOptions{Clinic: "north"})
		require.NoError(t, err)
		require.Zero(t, out.Changes, "the device has every change of its clinic")
		return counted.Rows(), counted.Entries()
	}
	rows, entries := idle()
	others(20, 3)
	rows2, entries2 := idle()
	assert.Equal(t, rows, rows2, "a sync with nothing to send read more changes because other clinics were busy")
	assert.Equal(t, entries, entries2, "a sync with nothing to send read more index entries because other clinics were busy")
	assert.Zero(t, rows, "a sync with nothing to send read changes (its device's own, or other clinics')")
}
