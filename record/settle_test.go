package record_test

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/record"
)

// settleCase is a conflict in one section of a chart, made by two
// devices whose users may change that section, and an ordinary write of
// the same section to compare settling it with.
type settleCase struct {
	name    string
	section record.Section
	// conflict returns a chart holding the conflict, its entry's kind,
	// the entry and field in conflict, and the value to keep.
	conflict func(t *testing.T) (c *record.Chart, kind, entry, field, keep string)
	// write is an operation writing the section on the chart conflict
	// made.
	write func(entry string) record.Op
}

// concurrently runs a on one copy of base and b on another, each by its
// own user of the section, and returns base with both merged in.
func concurrently(t *testing.T, base *record.Chart, s record.Section, a, b record.Op) *record.Chart {
	t.Helper()
	by := staffIn(t, s, 2)
	rs := replicas(t, base, 2)
	do(t, rs[0], by[0], t0.Add(time.Hour), a)
	do(t, rs[1], by[1], t0.Add(2*time.Hour), b)
	merge(t, base, rs[0])
	merge(t, base, rs[1])
	return base
}

// settleCases are a conflict in every section where one can arise.
func settleCases() []settleCase {
	return []settleCase{
		{"conflicting village", record.SectionDemographics, func(t *testing.T) (*record.Chart, string, string, string, string) {
			c := concurrently(t, newChart(t), record.SectionDemographics,
				record.UpdateDemographics{Village: record.Ptr("Kamuga North")}, record.UpdateDemographics{Village: record.Ptr("Kamuga South")})
			return c, record.KindPatient, c.ID(), "village", "Kamuga North"
		}, func(string) record.Op { return record.UpdateDemographics{Village: record.Ptr("Kamuga East")} }},
		{"conflicting allergy severity", record.SectionAllergies, func(t *testing.T) (*record.Chart, string, string, string, string) {
			c := newChart(t)
			a := do(t, c, nurse, t0, record.AddAllergy{Substance: "Penicillin", Severity: "mild"})
			concurrently(t, c, record.SectionAllergies,
				record.UpdateAllergy{AllergyID: a, Severity: record.Ptr("severe")}, record.UpdateAllergy{AllergyID: a, Severity: record.Ptr("moderate")})
			return c, record.KindAllergy, a, "severity", "severe"
		}, func(a string) record.Op {
			return record.UpdateAllergy{AllergyID: a, Severity: record.Ptr("life-threatening")}
		}},
		{"no known allergies recorded with an allergy", record.SectionAllergies, func(t *testing.T) (*record.Chart, string, string, string, string) {
			c := newChart(t)
			concurrently(t, c, record.SectionAllergies,
				record.RecordNoKnownAllergies{}, record.AddAllergy{Substance: "Sulfa", Severity: "severe"})
			return c, record.KindPatient, c.ID(), "nka", "false"
		}, func(string) record.Op { return record.AddAllergy{Substance: "Latex", Severity: "mild"} }},
		{"conflicting reasons for a diagnosis status", record.SectionDiagnoses, func(t *testing.T) (*record.Chart, string, string, string, string) {
			c := newChart(t)
			d := do(t, c, doctor, t0, record.Diagnose{Text: "Malaria"})
			concurrently(t, c, record.SectionDiagnoses,
				record.ChangeDiagnosisStatus{DiagnosisID: d, ClinicalStatus: "resolved", Reason: "treated"},
				record.ChangeDiagnosisStatus{DiagnosisID: d, ClinicalStatus: "inactive", Reason: "no fever"})
			return c, record.KindDiagnosis, d, "status_reason", "treated"
		}, func(d string) record.Op {
			return record.ChangeDiagnosisStatus{DiagnosisID: d, ClinicalStatus: "active", Reason: "fever again"}
		}},
		{"conflicting dose", record.SectionPrescriptions, func(t *testing.T) (*record.Chart, string, string, string, string) {
			c := newChart(t)
			rx := prescribe(t, c, t0, "Amoxicillin")
			concurrently(t, c, record.SectionPrescriptions,
				record.ReviseDose{PrescriptionID: rx, Dose: 250}, record.ReviseDose{PrescriptionID: rx, Dose: 1000})
			return c, record.KindPrescription, rx, "dose", "250"
		}, func(rx string) record.Op { return record.ReviseDose{PrescriptionID: rx, Dose: 750} }},
		{"conflicting lab value", record.SectionLabResults, func(t *testing.T) (*record.Chart, string, string, string, string) {
			c := newChart(t)
			lab := haemoglobin(t, c)
			concurrently(t, c, record.SectionLabResults, correctTo(lab, 6.0), correctTo(lab, 10.5))
			return c, record.KindLabResult, lab, "value", "10.5"
		}, func(lab string) record.Op { return correctTo(lab, 11) }},
		{"conflicting reasons an encounter was entered in error", record.SectionEncounters, func(t *testing.T) (*record.Chart, string, string, string, string) {
			c := newChart(t)
			enc := do(t, c, nurse, t0, record.AddEncounter{Complaint: "cough"})
			concurrently(t, c, record.SectionEncounters,
				record.MarkEnteredInError{EntryID: enc, Reason: "other patient"}, record.MarkEnteredInError{EntryID: enc, Reason: "recorded twice"})
			return c, record.KindEncounter, enc, "status_reason", "other patient"
		}, func(string) record.Op { return record.AddEncounter{Complaint: "fever"} }},
		{"conflicting reasons a referral ended", record.SectionReferrals, func(t *testing.T) (*record.Chart, string, string, string, string) {
			c := newChart(t)
			ref := do(t, c, registry, t0, record.Refer{ToClinic: "district-hospital", Reason: "x-ray"})
			concurrently(t, c, record.SectionReferrals,
				record.EndReferral{ReferralID: ref, Reason: "x-ray done"}, record.EndReferral{ReferralID: ref, Reason: "moved away"})
			return c, record.KindReferral, ref, "status_reason", "x-ray done"
		}, func(string) record.Op { return record.Refer{ToClinic: "mission-hospital"} }},
		{"a chart merged into two charts at once", record.SectionMerges, func(t *testing.T) (*record.Chart, string, string, string, string) {
			c := newChart(t)
			a, b := uuid.NewString(), uuid.NewString()
			concurrently(t, c, record.SectionMerges, record.MergeInto{Survivor: a}, record.MergeInto{Survivor: b})
			return c, record.KindPatient, c.ID(), "merged_into", a
		}, func(string) record.Op { return record.Absorb{ChartID: uuid.NewString()} }},
	}
}

// Settling a conflict is a write of the field in conflict: only a role
// that may change the field's section may settle it, in every section.
// Another role is refused with the error a write of that section gives
// it (ErrForbidden, a *ForbiddenError naming the role and section), and
// the chart is unchanged; a settlement a role made that way anyway, as a
// modified client could, is refused on receipt by CheckChange and by a
// Checker alike.
func TestSettlingAConflictNeedsTheFieldsSection(t *testing.T) {
	require.Len(t, settleCases(), len(record.Sections())+1, "a conflict in every section (two in allergies)")
	for _, sc := range settleCases() {
		for _, role := range record.Roles() {
			t.Run(sc.name+"/"+string(role), func(t *testing.T) {
				c, kind, entry, field, keep := sc.conflict(t)
				_, ok := findConflict(view(t, c), entry, field)
				if field == "nka" {
					ok = len(alertsOf(view(t, c), record.AlertAllergyStatus)) == 1
				}
				require.True(t, ok, "the scenario leaves %s of %s to settle", field, kind)
				by := record.Author{UserID: "u-" + string(role), Name: string(role), Role: role, Device: "dev-9"}
				at := t0.Add(3 * time.Hour)
				settle := record.ResolveConflict{EntryID: entry, Field: field, Value: keep}
				ss, err := c.Sections(at, settle)
				require.NoError(t, err)
				assert.Equal(t, []record.Section{sc.section}, ss, "settling %s writes %s", field, sc.section)

				// A settlement as a modified client would make it,
				// whatever the role: the write superseding every
				// competing value.
				crafted := craft(t, c, messageBy(by, "resolve-conflict"), putWrites(writeBy(by, kind, entry, field, keep, current(t, c, entry, field)...)))

				if record.Permitted(role, sc.section) {
					res, err := fork(t, c).Do(by, at, settle)
					require.NoError(t, err, "a %s may settle %s", role, field)
					for name, ch := range map[string]crdt.Change{"made by Do": res.Change, "crafted": crafted} {
						touched, err := checkBoth(t, c.Doc(), ch)
						require.NoError(t, err, "%s: a %s's settlement is accepted on receipt", name, role)
						assert.Equal(t, []record.Section{sc.section}, touched.Sections)
					}
					return
				}

				settleErr := unchanged(t, c, func() error { _, err := c.Do(by, at, settle); return err })
				requireForbidden(t, settleErr, role, sc.section)
				_, writeErr := fork(t, c).Do(by, at, sc.write(entry))
				require.Error(t, writeErr, "a %s may not write %s", role, sc.section)
				assert.Equal(t, writeErr, settleErr, "settling is refused as writing the section is")

				touched, err := checkRefused(t, c, crafted)
				requireForbidden(t, err, role, sc.section)
				assert.Equal(t, []record.Section{sc.section}, touched.Sections)
				assert.Equal(t, by, touched.Author)
			})
		}
	}
}

// current returns the IDs of the current writes of a field: those a
// settlement supersedes.
func current(t *testing.T, c *record.Chart, entry, field string) []string {
	t.Helper()
	v := view(t, c)
	if cf, ok := findConflict(v, entry, field); ok {
		ids := make([]string, len(cf.Values))
		for i, w := range cf.Values {
			ids[i] = w.WriteID
		}
		return ids
	}
	return writeIDs(t, c, entry, field) // "no known allergies" against an allergy: every value written
}
