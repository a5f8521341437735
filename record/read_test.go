package record_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/record"
)

// TestRedact: under a clinic's read policy a registration clerk's view of
// the fixture chart holds none of the hidden sections' words anywhere
// (lists, conflicts, alerts, history), while the nurse sees it whole.
func TestRedact(t *testing.T) {
	f := newFixture(t)
	do(t, f.chart, nurse, f.tick(), record.Prescribe{Drug: "Amoxicillin", Dose: 500, DoseUnit: "mg", Route: "oral", Frequency: "TDS"})
	do(t, f.chart, nurse, f.tick(), record.AddAllergy{Substance: "Amoxicillin", Severity: "severe"})
	do(t, f.chart, nurse, f.tick(), record.Refer{ToClinic: "hiv-clinic", Reason: "HIV care"})
	v := view(t, f.chart)
	require.NotEmpty(t, v.Alerts, "fixture: an allergy alert")

	cases := []struct {
		name    string
		policy  record.ReadPolicy
		role    record.Role
		secrets []string // words that must not appear
		kept    []string // words that must
	}{
		{"clerks read no clinical section", record.ReadPolicy{record.RoleRegistrationClerk: {
			record.SectionAllergies, record.SectionDiagnoses, record.SectionPrescriptions, record.SectionLabResults, record.SectionEncounters}},
			record.RoleRegistrationClerk,
			[]string{f.encounterNote, "Malaria", "Typhoid", "Paracetamol", "Penicillin", "Haemoglobin", "fever", "tendon pain", "Amoxicillin"},
			[]string{"Kamuga"}},
		{"community health workers read no referrals", record.ReadPolicy{record.RoleCommunityHealthWorker: {record.SectionReferrals}},
			record.RoleCommunityHealthWorker, []string{"hiv-clinic", "HIV care"}, []string{"Malaria", f.encounterNote}},
		{"clerks read no notes", record.ReadPolicy{record.RoleRegistrationClerk: {record.SectionNotes}},
			record.RoleRegistrationClerk, []string{f.encounterNote}, []string{"Malaria", "fever", "Paracetamol"}},
		{"another role's policy leaves the nurse alone", record.ReadPolicy{record.RoleRegistrationClerk: {record.SectionNotes}},
			record.RoleNurse, nil, []string{f.encounterNote, "Malaria"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before, err := json.Marshal(v)
			require.NoError(t, err)
			r := tc.policy.Redact(v, tc.role)
			after, err := json.Marshal(v)
			require.NoError(t, err)
			assert.JSONEq(t, string(before), string(after), "Redact does not modify the view it is given")
			js, err := json.Marshal(r)
			require.NoError(t, err)
			for _, s := range tc.secrets {
				assert.NotContains(t, string(js), s, "the redacted view shows %q", s)
			}
			for _, s := range tc.kept {
				assert.Contains(t, string(js), s)
			}
			assert.Equal(t, v.Patient, r.Patient, "demographics are always shown")
			assert.Len(t, r.History, len(v.History), "the history keeps that each change happened")
			if len(tc.secrets) > 0 {
				assert.NotEmpty(t, r.Hidden, "the view says what it leaves out")
			} else {
				assert.Empty(t, r.Hidden)
			}
		})
	}
}

func TestReadPolicyInTheRoster(t *testing.T) {
	u := newRoster(t)
	_, err := u.SetHidden(nurse, t0, record.RoleRegistrationClerk, []record.Section{record.SectionNotes})
	require.ErrorIs(t, err, record.ErrForbidden, "only an administrator sets the read policy")
	_, err = u.SetHidden(admin, t0, record.RoleRegistrationClerk, []record.Section{record.SectionDemographics})
	require.ErrorIs(t, err, record.ErrInvalid, "demographics cannot be hidden")
	_, err = u.SetHidden(admin, t0, record.RoleRegistrationClerk, []record.Section{"gossip"})
	require.ErrorIs(t, err, record.ErrInvalid)
	res, err := u.SetHidden(admin, t0, record.RoleRegistrationClerk, []record.Section{record.SectionNotes, record.SectionDiagnoses})
	require.NoError(t, err)
	p, err := u.ReadPolicy()
	require.NoError(t, err)
	assert.Equal(t, record.ReadPolicy{record.RoleRegistrationClerk: {record.SectionDiagnoses, record.SectionNotes}}, p)
	assert.True(t, p.Hides(record.RoleRegistrationClerk, record.SectionNotes))
	assert.False(t, p.Hides(record.RoleNurse, record.SectionNotes))

	_, err = record.CheckUsersChange(u.Doc(), res.Change)
	assert.NoError(t, err, "an administrator's policy change passes the check")
	fork, err := u.Doc().Fork(nil, "")
	require.NoError(t, err)
	forged := editRaw(t, fork, nurse, "set-read-policy", func(tx *crdt.Tx) error {
		return tx.Put(nil, "hide/registration-clerk", "")
	})
	_, err = record.CheckUsersChange(u.Doc(), forged)
	assert.ErrorIs(t, err, record.ErrForbidden, "a nurse's policy change is refused")

	_, err = u.SetHidden(admin, t0, record.RoleRegistrationClerk, nil)
	require.NoError(t, err)
	p, err = u.ReadPolicy()
	require.NoError(t, err)
	assert.Empty(t, p, "an empty list lets the role read everything again")
}
