package record

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
)

// statusValues is every status-like value the package knows: those its
// declarations rank and those it exports.
func statusValues(ks []*kindSpec) []string {
	out := []string{StatusActive, StatusOnHold, StatusCompleted, StatusStopped, StatusEnteredInError, StatusInactive,
		StatusResolved, StatusPreliminary, StatusFinal, StatusCorrected, StatusRecorded, StatusEnded, StatusUnmerged,
		ClinicalActive, ClinicalRecurrence, ClinicalRelapse, ClinicalInactive, ClinicalRemission, ClinicalResolved,
		VerificationUnconfirmed, VerificationProvisional, VerificationDifferential, VerificationConfirmed,
		VerificationRefuted, "true", "false"}
	for _, k := range ks {
		for _, order := range k.precedence {
			out = append(out, order...)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// declarationProblems returns what is missing from, or inconsistent in,
// the kind declarations ks (as init leaves them), in words.
func declarationProblems(ks []*kindSpec) []string {
	var out []string
	bad := func(k *kindSpec, format string, args ...any) {
		out = append(out, fmt.Sprintf("%s: %s", k.name, fmt.Sprintf(format, args...)))
	}
	statuses := statusValues(ks)
	seen := map[string]bool{}
	for _, k := range ks {
		if k.name == "" || seen[k.name] {
			bad(k, "no name, or the name of another kind")
		}
		seen[k.name] = true
		if !slices.Contains(Sections(), k.section) {
			bad(k, "its section %q is not a column of the permission table", k.section)
		} else if !slices.ContainsFunc(Roles(), func(r Role) bool { return Permitted(r, k.section) }) {
			bad(k, "no role may change its section %q", k.section)
		}
		if len(k.fields) == 0 {
			bad(k, "declares no fields")
		}
		for f, check := range k.fields {
			if check == nil {
				bad(k, "field %s has no check", f)
			}
		}
		for _, f := range slices.Sorted(maps.Keys(k.fieldSections)) {
			if k.fields[f] == nil {
				bad(k, "gives a section to %s, which is not one of its fields", f)
			}
			if s := k.fieldSections[f]; !slices.Contains(Sections(), s) {
				bad(k, "the section %q of its field %s is not a column of the permission table", s, f)
			}
		}
		if _, ok := k.fields["external_id"]; ok != k.externalID {
			bad(k, "external_id is a field (%t) but externalID is %t", ok, k.externalID)
		}
		for _, f := range slices.Sorted(maps.Keys(k.precedence)) {
			order, check := k.precedence[f], k.fields[f]
			if check == nil {
				bad(k, "ranks the values of %s, which is not one of its fields", f)
				continue
			}
			for i, v := range order {
				if check(v) != nil {
					bad(k, "ranks %q for %s, which the field's check refuses", v, f)
				}
				if slices.Contains(order[:i], v) {
					bad(k, "ranks %q twice for %s", v, f)
				}
			}
			for _, v := range statuses {
				if check(v) == nil && !slices.Contains(order, v) {
					bad(k, "%s accepts %q, which its precedence does not rank", f, v)
				}
			}
		}
		if f := k.errorField; f != "" {
			check := k.fields[f]
			switch {
			case check == nil:
				bad(k, "marks entries entered in error in %s, which is not one of its fields", f)
			case check(StatusEnteredInError) == nil && (len(k.precedence[f]) == 0 || k.precedence[f][0] != StatusEnteredInError):
				bad(k, "entered-in-error does not win every concurrent change of %s", f)
			}
			if k.fields["status_reason"] == nil {
				bad(k, "has no status_reason, which MarkEnteredInError writes")
			}
		}
		if k.label == nil {
			bad(k, "has no label")
		}
		if k.redact == nil {
			bad(k, "has no redaction rule for read policies")
		}
		if k.clinical && k.list == nil {
			bad(k, "is clinical but has no View list of its own")
		}
		if k.view == nil {
			if k.name != KindPatient {
				bad(k, "has no view")
			}
			continue
		}
		// The view of an entry of a kind with a list of its own lists it
		// there (TestEveryKindWrittenAndShown finds every entry a View
		// shows).
		if k.list != nil {
			e := &entry{id: "entry-1", kind: k.name, fields: map[string]*register{}, created: &write{}}
			var v View
			k.view(&v, e, map[string]string{})
			if ids := k.list.ids(&v); !slices.Equal(ids, []string{e.id}) {
				bad(k, "its view lists %q, not the entry, in the kind's list", ids)
			}
		}
	}
	return out
}

// TestKindsDeclaredCompletely checks every kind's declaration (its
// section, fields, precedence, entered-in-error field, label, view,
// list and redaction rule), and that the check finds what an incomplete
// declaration lacks.
func TestKindsDeclaredCompletely(t *testing.T) {
	require.Empty(t, declarationProblems(entryKinds), "the entry kinds as declared")

	// Copies of the declarations, each spoilt in one way.
	spoil := func(name string, f func(k *kindSpec)) []*kindSpec {
		out := make([]*kindSpec, len(entryKinds))
		for i, k := range entryKinds {
			c := *k
			c.fields, c.precedence = maps.Clone(k.fields), maps.Clone(k.precedence)
			if c.name == name {
				f(&c)
			}
			out[i] = &c
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		kinds []*kindSpec
		want  string
	}{
		{"a kind without a section", spoil(KindReferral, func(k *kindSpec) { k.section = "" }),
			`referral: its section "" is not a column`},
		{"a kind in the read-only notes section", spoil(KindReferral, func(k *kindSpec) { k.section = SectionNotes }),
			`referral: its section "notes" is not a column`},
		{"a kind without fields", spoil(KindMerge, func(k *kindSpec) { k.fields = nil; k.precedence = nil; k.errorField = "" }),
			"merge: declares no fields"},
		{"a status accepted but not ranked", spoil(KindPrescription, func(k *kindSpec) {
			k.fields["status"] = oneOf(StatusActive, StatusOnHold, StatusCompleted, StatusStopped, StatusEnteredInError, StatusInactive)
		}), `prescription: status accepts "inactive", which its precedence does not rank`},
		{"a status ranked but refused", spoil(KindEncounter, func(k *kindSpec) {
			k.precedence["status"] = []string{StatusEnteredInError, StatusRecorded, StatusFinal}
		}), `encounter: ranks "final" for status, which the field's check refuses`},
		{"a status field without precedence", spoil(KindAllergy, func(k *kindSpec) { delete(k.precedence, "status") }),
			"allergy: entered-in-error does not win every concurrent change of status"},
		{"entered in error not winning", spoil(KindLabResult, func(k *kindSpec) {
			k.precedence["status"] = []string{StatusCorrected, StatusEnteredInError, StatusFinal, StatusPreliminary}
		}), "lab-result: entered-in-error does not win"},
		{"an entered-in-error field not declared", spoil(KindDiagnosis, func(k *kindSpec) { k.errorField = "status" }),
			"diagnosis: marks entries entered in error in status, which is not one of its fields"},
		{"no label", spoil(KindAllergy, func(k *kindSpec) { k.label = nil }), "allergy: has no label"},
		{"no view", spoil(KindMerge, func(k *kindSpec) { k.view = nil }), "merge: has no view"},
		{"no redaction rule", spoil(KindIdentifier, func(k *kindSpec) { k.redact = nil }),
			"identifier: has no redaction rule"},
		{"a clinical kind without a list", spoil(KindEncounter, func(k *kindSpec) { k.list = nil }),
			"encounter: is clinical but has no View list"},
		{"a view that lists the entry elsewhere", spoil(KindReferral, func(k *kindSpec) {
			k.list = listOf[Encounter](func(v *View) *[]Encounter { return &v.Encounters })
		}), "referral: its view lists [], not the entry"},
		{"external_id without externalID", spoil(KindReferral, func(k *kindSpec) { k.externalID = false }),
			"referral: external_id is a field (true) but externalID is false"},
		{"a field in a section that is no column", spoil(KindPatient, func(k *kindSpec) {
			k.fieldSections = map[string]Section{"nka": "allergy"}
		}), `patient: the section "allergy" of its field nka is not a column`},
		{"two kinds of one name", spoil(KindMerge, func(k *kindSpec) { k.name = KindReferral }),
			"referral: no name, or the name of another kind"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			problems := declarationProblems(tc.kinds)
			assert.True(t, slices.ContainsFunc(problems, func(p string) bool { return strings.HasPrefix(p, tc.want) }),
				"the check should find %q; it found %q", tc.want, problems)
		})
	}
}

// TestEveryKindWrittenAndShown makes, through the operations, an entry of
// every kind with every field each kind declares and every status it
// ranks (so the fields' checks accept every value the package writes
// there: Do refuses any other), and checks that every entry is shown by
// the View (by its ID) and, marked entered in error, listed there.
func TestEveryKindWrittenAndShown(t *testing.T) {
	by := Author{UserID: "u-baraka", Name: "Dr Baraka", Role: RoleClinician, Device: "laptop-2"}
	at := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	aadhaar := "234123412346"
	c, _, err := New(uuid.NewString(), crdt.NewActorID(), by, at, Register{
		GivenName: "Wanjiru", FamilyName: "Mwangi", Sex: "female", EstimatedBirthYear: 1988, Village: "Kamuga",
		Address: "Plot 7", Phone: "+254 712 345678", NationalID: "A1234567", Guardian: "Njeri Mwangi",
		HomeClinic: "kamuga-dispensary", Identifiers: []Identifier{{System: SystemAadhaar, Value: aadhaar}},
	})
	require.NoError(t, err, "register")
	ext := func(n int) Identifier {
		return Identifier{System: "http://hospital.example/id", Value: fmt.Sprint("X-", n)}
	}
	do := func(op Op) string {
		t.Helper()
		at = at.Add(time.Minute)
		res, err := c.Do(by, at, op)
		require.NoError(t, err, "%T", op)
		return res.EntryID
	}
	do(UpdateDemographics{BirthDate: Ptr("1988-05-01")})
	do(RecordNoKnownAllergies{})
	allergy := do(AddAllergy{Substance: "Penicillin", Reaction: "rash", Severity: "moderate", ExternalID: ext(1)})
	for _, st := range []string{StatusInactive, StatusResolved, StatusActive} {
		do(UpdateAllergy{AllergyID: allergy, Status: Ptr(st), Reason: "reviewed"})
	}
	diagnosis := do(Diagnose{Code: "B54", Text: "Malaria", Onset: "2026-02-27", Note: "RDT positive", ExternalID: ext(2)})
	for _, st := range kindSpecs[KindDiagnosis].precedence["clinical"] {
		do(ChangeDiagnosisStatus{DiagnosisID: diagnosis, ClinicalStatus: st, Reason: "reviewed"})
	}
	for _, st := range kindSpecs[KindDiagnosis].precedence["verification"][1:] {
		do(ChangeDiagnosisStatus{DiagnosisID: diagnosis, VerificationStatus: st, Reason: "reviewed"})
	}
	rx := func() string {
		return do(Prescribe{Drug: "Amoxicillin", Dose: 500, DoseUnit: "mg", Route: "oral", Frequency: "TDS", DurationDays: 5,
			DrugCode: "RX-723", Start: "2026-03-02", End: "2026-03-07", Instructions: "after food", ExternalID: ext(3)})
	}
	held, stopped, completed := rx(), rx(), rx()
	do(PutOnHold{PrescriptionID: held, Reason: "vomiting"})
	do(Discontinue{PrescriptionID: stopped, Reason: "rash"})
	do(Complete{PrescriptionID: completed})
	lab := do(RecordLabResult{Test: "Haemoglobin", LOINC: "718-7", Value: Ptr(9.1), Unit: "g/dL", RefLow: Ptr(12.0),
		RefHigh: Ptr(16.0), CriticalLow: Ptr(7.0), CriticalHigh: Ptr(20.0), SpecimenAt: at, Status: StatusPreliminary,
		ExternalID: ext(4)})
	do(FinalizeLabResult{LabResultID: lab})
	do(CorrectLabResult{LabResultID: lab, Value: Ptr(9.4), Reason: "re-run"})
	textLab := do(RecordLabResult{Test: "HIV viral load", TextValue: "<1000 copies/mL", RefText: "<1000 copies/mL",
		AbnormalTexts: []string{"detected"}, CriticalTexts: []string{">100000 copies/mL"}, SpecimenAt: at})
	encounter := do(AddEncounter{Date: "2026-03-02", Clinician: "Dr Baraka", Complaint: "fever", Note: "Fever for 3 days.",
		Vitals:     Vitals{BPSystolic: 120, BPDiastolic: 80, Pulse: 90, Temperature: 38.2, Weight: 61, Height: 162, SpO2: 97},
		ExternalID: ext(5)})
	referral := do(Refer{ToClinic: "district-hospital", Reason: "x-ray", ExternalID: ext(6)})
	do(EndReferral{ReferralID: referral, Reason: "seen"})
	phone := do(AddIdentifier{System: SystemPhone, Value: "+254 700 000001"})
	do(CorrectIdentifier{IdentifierID: phone, Value: "+254 700 000002", Reason: "mistyped"})
	do(RemoveIdentifier{IdentifierID: phone, Reason: "number given up"})
	absorbed := uuid.NewString()
	merge := do(Absorb{ChartID: absorbed, Reason: "same patient"})
	do(Release{ChartID: absorbed, Reason: "not the same patient"})
	do(MergeInto{Survivor: uuid.NewString(), Reason: "registered twice"})
	do(Unmerge{Reason: "not the same patient"})

	// Every entry is shown (not only named by its history, conflicts or
	// alerts).
	v, err := c.View()
	require.NoError(t, err)
	v.History, v.Conflicts, v.Alerts = nil, nil, nil
	js, err := json.Marshal(v)
	require.NoError(t, err)
	s, err := readState(c.doc)
	require.NoError(t, err)
	for _, k := range entryKinds {
		entries := s.entriesOf(k.name)
		require.NotEmpty(t, entries, "no operation made a %s", k.name)
		for _, e := range entries {
			assert.Contains(t, string(js), e.id, "the view does not show %s %s", k.name, e.id)
		}
	}

	// Marked entered in error, every entry that can be is listed so.
	for _, id := range []string{allergy, diagnosis, held, lab, textLab, encounter, referral, phone} {
		do(MarkEnteredInError{EntryID: id, Reason: "wrong patient"})
	}
	_, err = c.Do(by, at.Add(time.Hour), MarkEnteredInError{EntryID: merge, Reason: "wrong patient"})
	require.ErrorIs(t, err, ErrInvalid, "a merge entry is released, not entered in error")

	// Every field and every status ranked is written, and passes its
	// check.
	s, err = readState(c.doc)
	require.NoError(t, err)
	for _, k := range entryKinds {
		written := map[string][]string{} // field → values written
		for _, e := range s.entriesOf(k.name) {
			for f, r := range e.fields {
				for _, w := range r.all {
					written[f] = append(written[f], w.Value)
				}
			}
		}
		for _, f := range slices.Sorted(maps.Keys(k.fields)) {
			assert.Contains(t, written, f, "no operation writes the %s of a %s", f, k.name)
			for _, w := range written[f] {
				assert.NoError(t, checkField(k.name, f, w), "%s of a %s", f, k.name)
			}
		}
		for _, f := range slices.Sorted(maps.Keys(k.precedence)) {
			for _, st := range k.precedence[f] {
				if k.fields[f](st) == nil {
					assert.Contains(t, written[f], st, "no operation sets the %s of a %s to %s", f, k.name, st)
				}
			}
		}
	}

	// The kinds listed entered in error.
	v, err = c.View()
	require.NoError(t, err)
	var inError []string
	for _, e := range v.EnteredInError {
		inError = append(inError, e.Kind)
	}
	slices.Sort(inError)
	var want []string
	for _, k := range entryKinds {
		if k.errorField != "" && k.fields[k.errorField](StatusEnteredInError) == nil {
			want = append(want, k.name)
		}
	}
	slices.Sort(want)
	assert.Equal(t, want, slices.Compact(inError), "the kinds listed entered in error")
}
