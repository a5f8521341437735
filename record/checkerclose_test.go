package record_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/record"
)

// TestCheckerClose: Close releases the Checker's copy of the chart, so
// that a receive releases it at once instead of leaving it to a
// finalizer: the chart checked is untouched, and the Checker judges
// nothing more.
func TestCheckerClose(t *testing.T) {
	held := newChart(t)
	elsewhere, err := held.Doc().Fork(nil, crdt.NewActorID())
	require.NoError(t, err)
	copyOf, err := record.Open(elsewhere)
	require.NoError(t, err)
	var made []crdt.Change
	for i, s := range []string{"Sulfa", "Latex"} {
		res, err := copyOf.Do(nurse, t0.Add(time.Duration(i+1)*time.Minute), record.AddAllergy{Substance: s, Severity: "mild"})
		require.NoError(t, err)
		made = append(made, res.Change)
	}
	k, err := record.NewChecker(held.Doc())
	require.NoError(t, err)
	_, err = k.Check(made[0])
	require.NoError(t, err)
	require.NoError(t, k.Close())
	_, err = k.Check(made[1])
	assert.Error(t, err, "a closed Checker judges nothing")
	v := view(t, held)
	assert.Empty(t, v.Allergies, "the chart checked is untouched")
}
