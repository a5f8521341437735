package replica_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/internal/forge"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
)

// TestLongHistoryIsCheckedOnce: a chart with 700 changes reaches a
// checking replica in several bundles (a small bundle size cuts its
// history). The Checker that judged one bundle's part judges the next,
// so the chart is read for checking once, not once a bundle; the chart
// itself is kept from one bundle to the next, never read back from the
// store; and a change its author may not make, in a later bundle, is
// still refused.
func TestLongHistoryIsCheckedOnce(t *testing.T) {
	ctx := context.Background()
	device, _ := newMem(t, replica.Config{BundleBytes: 96 << 10})
	cloud, _ := newMem(t, replica.Config{CheckAuthors: true})
	chart := register(t, device, "Wanjiru", "Mwangi", "Kamuga")
	for i := range 700 {
		edit(t, device, chart, allergy(i))
	}
	loads := cloud.ChartsLoaded()
	st, err := replica.SyncPair(ctx, device, cloud)
	require.NoError(t, err)
	require.True(t, st.ConvergedAll)
	require.Greater(t, st.BundlesAToB, 3, "the history comes in several bundles")
	assert.Equal(t, int64(1), cloud.CheckersMade(), "one Checker for the whole history")
	assert.Equal(t, loads, cloud.ChartsLoaded(), "the chart received so far is kept for its next bundle, not read back from the store")
	assert.Zero(t, cloud.ChartsCopied(), "each next bundle is planned on the chart kept, not on a copy of it")
	requireSameCharts(t, device, cloud)

	// A long history made by a modified client, with a lab technician's
	// prescription (a change a lab technician may not make) at its end,
	// in the last of its bundles.
	at := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	forged, _, err := record.New(uuid.NewString(), crdt.NewActorID(), nurse, at, record.Register{GivenName: "Amina", Sex: "female", EstimatedBirthYear: 1990, HomeClinic: "kamuga"})
	require.NoError(t, err)
	for i := range 600 {
		_, err := forged.Do(nurse, at.Add(time.Duration(i)*time.Second), allergy(i))
		require.NoError(t, err)
	}
	lab := record.Author{UserID: "u-chege", Name: "Chege", Role: record.RoleLabTechnician}
	require.NoError(t, forge.PrescriptionOn(forged, lab, at.Add(time.Hour)))
	rogue, _ := newMem(t, replica.Config{BundleBytes: 96 << 10})
	require.NoError(t, rogue.Import(ctx, []*record.Chart{forged}))
	made := cloud.CheckersMade()
	_, err = replica.SyncPair(ctx, rogue, cloud)
	require.ErrorIs(t, err, replica.ErrUnauthorizedChange, "the kept Checker refuses what a new one refuses")
	assert.Equal(t, made+1, cloud.CheckersMade(), "the forged history too was checked by one Checker")
	v := view(t, cloud, forged.ID())
	n := len(v.Allergies)
	assert.True(t, n > 0 && n < 600, "the bundles before the forged one were taken, the forged one not: %d allergies", n)
	assert.Zero(t, len(v.Prescriptions), "the forged prescription is refused")
}

// A chart a receive takes from the cache and leaves as it was (its one
// change waits for another) goes back to the cache: the next bundle does
// not read it from the store again.
func TestAChartABundleLeavesAsItWasStaysCached(t *testing.T) {
	ctx := context.Background()
	a, _ := newMem(t, replica.Config{})
	b, _ := newMem(t, replica.Config{})
	chart := register(t, a, "Wanjiru", "Mwangi", "Kamuga")
	_, err := replica.SyncPair(ctx, a, b)
	require.NoError(t, err)
	edit(t, a, chart, allergy(1))
	_, err = replica.SyncPair(ctx, a, b) // b keeps the chart it changed open
	require.NoError(t, err)
	second := edit(t, a, chart, allergy(2)).Change
	third := edit(t, a, chart, allergy(3)).Change
	only := func(c crdt.Change) []byte {
		return encode(t, replica.Bundle{From: a.ID(), To: b.ID(), Changes: []replica.BundleChange{{Chart: chart, Raw: c.Raw}}})
	}
	loads := b.ChartsLoaded()
	rec, err := b.Receive(ctx, only(third))
	require.NoError(t, err)
	require.Equal(t, 1, rec.Held, "the third change waits for the second")
	rec, err = b.Receive(ctx, only(second))
	require.NoError(t, err)
	assert.Equal(t, 2, rec.Applied, "the second change, and the third it released")
	assert.Equal(t, loads, b.ChartsLoaded(), "the chart stayed cached through the bundle that left it as it was")
	assert.Equal(t, view(t, a, chart), view(t, b, chart))
}
