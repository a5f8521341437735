package record_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/record"
)

// TestPreviewShowsAlertsAndChangesNothing: a prescription previewed on a
// chart with an allergy of its class shows the allergy alert the edit
// would raise, and the chart itself is unchanged; an operation Do would
// refuse is refused by Preview too.
func TestPreviewShowsAlertsAndChangesNothing(t *testing.T) {
	c := newChart(t)
	_, err := c.Do(doctor, t0, record.AddAllergy{Substance: "Penicillin", Severity: "severe", Reaction: "rash"})
	require.NoError(t, err)
	before, err := c.View()
	require.NoError(t, err)
	heads := c.Doc().Heads()

	v, err := c.Preview(doctor, t0, record.Prescribe{Drug: "Amoxil", Dose: 500, DoseUnit: "mg", Route: "oral", Frequency: "TDS", DurationDays: 5})
	require.NoError(t, err)
	require.Len(t, v.Prescriptions, 1)
	var allergy bool
	for _, a := range v.Alerts {
		allergy = allergy || a.Kind == "allergy-drug"
	}
	assert.True(t, allergy, "the preview raises the allergy alert the prescription would: %+v", v.Alerts)

	after, err := c.View()
	require.NoError(t, err)
	assert.Equal(t, before, after, "the chart is unchanged")
	assert.Equal(t, heads, c.Doc().Heads())

	_, err = c.Preview(labTech, t0, record.Prescribe{Drug: "Amoxil", Dose: 500, DoseUnit: "mg", Route: "oral", Frequency: "TDS", DurationDays: 5})
	assert.ErrorIs(t, err, record.ErrForbidden, "a role that may not prescribe may not preview a prescription")
}
