package record_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/record"
)

func scope(t *testing.T, c *record.Chart) []string {
	t.Helper()
	s, err := c.Scope()
	require.NoError(t, err)
	return s
}

func TestReferralScope(t *testing.T) {
	c := newChart(t)
	assert.Equal(t, []string{"kamuga-dispensary"}, scope(t, c), "a new chart is in its home clinic's scope only")

	ref := do(t, c, doctor, t0.Add(time.Hour), record.Refer{ToClinic: "lwanda-health-centre", Reason: "antenatal care"})
	assert.Equal(t, []string{"kamuga-dispensary", "lwanda-health-centre"}, scope(t, c))
	v := view(t, c)
	require.Len(t, v.Referrals, 1)
	assert.Equal(t, record.Referral{ID: ref, Clinic: "lwanda-health-centre", Reason: "antenatal care", Status: record.StatusActive,
		Recorded: record.Recorded{RecordedAt: t0.Add(time.Hour), RecordedBy: doctor}}, v.Referrals[0])

	for name, op := range map[string]record.Op{
		"refer to the home clinic":      record.Refer{ToClinic: "kamuga-dispensary"},
		"refer again to the same place": record.Refer{ToClinic: "lwanda-health-centre"},
	} {
		err := unchanged(t, c, func() error { _, err := c.Do(doctor, t0.Add(2*time.Hour), op); return err })
		assert.ErrorIs(t, err, record.ErrTransition, name)
	}
	err := unchanged(t, c, func() error { _, err := c.Do(doctor, t0.Add(2*time.Hour), record.Refer{}); return err })
	assert.ErrorIs(t, err, record.ErrInvalid, "a referral names a clinic")

	do(t, c, doctor, t0.Add(3*time.Hour), record.EndReferral{ReferralID: ref, Reason: "delivered"})
	assert.Equal(t, []string{"kamuga-dispensary"}, scope(t, c), "an ended referral leaves the scope")
	assert.Equal(t, record.StatusEnded, view(t, c).Referrals[0].Status, "an ended referral stays on the chart")
	err = unchanged(t, c, func() error {
		_, err := c.Do(doctor, t0.Add(4*time.Hour), record.EndReferral{ReferralID: ref})
		return err
	})
	assert.ErrorIs(t, err, record.ErrTransition)
	err = unchanged(t, c, func() error {
		_, err := c.Do(doctor, t0.Add(4*time.Hour), record.EndReferral{ReferralID: c.ID()})
		return err
	})
	assert.ErrorIs(t, err, record.ErrNotFound)
}

func TestReferralScopeMerges(t *testing.T) {
	a := newChart(t)
	b := fork(t, a)
	do(t, a, doctor, t0.Add(time.Hour), record.Refer{ToClinic: "lwanda"})
	do(t, b, nurse, t0.Add(time.Hour), record.Refer{ToClinic: "rota"})
	// A concurrent change of home clinic keeps both clinics in scope
	// until someone settles it.
	do(t, b, nurse, t0.Add(2*time.Hour), record.UpdateDemographics{HomeClinic: record.Ptr("usoma")})
	do(t, a, doctor, t0.Add(2*time.Hour), record.UpdateDemographics{HomeClinic: record.Ptr("ojola")})
	mergeAll(t, a, b)
	converged(t, a, b)
	want := []string{"lwanda", "ojola", "rota", "usoma"}
	assert.Equal(t, want, scope(t, a), "concurrent referrals are both kept, and both home clinics stay in scope")
	assert.Equal(t, want, scope(t, b))
}

func TestDoRefusesNilOperation(t *testing.T) {
	c := newChart(t)
	for name, op := range map[string]record.Op{"nil": nil, "typed nil": (*record.Prescribe)(nil)} {
		err := unchanged(t, c, func() error { _, err := c.Do(nurse, t0, op); return err })
		assert.ErrorIs(t, err, record.ErrInvalid, name)
	}
}

func TestEditNoteThatChangesNothingIsRefused(t *testing.T) {
	c := newChart(t)
	enc := do(t, c, nurse, t0, record.AddEncounter{Complaint: "fever", Note: "Straße"})
	err := unchanged(t, c, func() error {
		_, err := c.Do(nurse, t0, record.EditNote{EncounterID: enc, Pos: 4, Delete: 1, Insert: "ß"})
		return err
	})
	assert.ErrorIs(t, err, record.ErrInvalid, "replacing a character by itself changes nothing")
	do(t, c, nurse, t0, record.EditNote{EncounterID: enc, Pos: 4, Delete: 1, Insert: "ss"})
	assert.Equal(t, "Strasse", view(t, c).Encounters[0].Note)
}
