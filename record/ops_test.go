package record_test

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/record"
)

// requireErr checks that err matches want and, for a validation error,
// that it names field.
func requireErr(t *testing.T, err error, want error, field string) {
	t.Helper()
	require.ErrorIs(t, err, want)
	for _, other := range []error{record.ErrInvalid, record.ErrNotFound, record.ErrTransition} {
		if other != want {
			require.NotErrorIs(t, err, other, "the error matches more than one kind")
		}
	}
	var ve *record.ValidationError
	if want == record.ErrInvalid {
		require.ErrorAs(t, err, &ve)
		assert.Equal(t, field, ve.Field, "the validation error names the wrong field: %v", err)
		assert.NotEmpty(t, ve.Reason)
	} else {
		assert.False(t, errors.As(err, &ve), "a %v error is also a ValidationError: %v", want, err)
	}
}

func TestNewRefusesBadRegistration(t *testing.T) {
	reg := baseRegister
	with := func(fn func(r *record.Register)) record.Register {
		r := reg()
		fn(&r)
		return r
	}
	id := uuid.NewString()
	cases := []struct {
		name    string
		chartID string
		by      record.Author
		reg     record.Register
		field   string
	}{
		{"chart id not a UUID", "patient-1", nurse, reg(), "chart_id"},
		{"chart id upper case", strings.ToUpper(id), nurse, reg(), "chart_id"},
		{"no name", id, nurse, with(func(r *record.Register) { r.GivenName, r.FamilyName = " ", "" }), "given_name"},
		{"no sex", id, nurse, with(func(r *record.Register) { r.Sex = "" }), "sex"},
		{"unknown sex", id, nurse, with(func(r *record.Register) { r.Sex = "f" }), "sex"},
		{"no home clinic", id, nurse, with(func(r *record.Register) { r.HomeClinic = "  " }), "home_clinic"},
		{"no birth date or year", id, nurse, with(func(r *record.Register) { r.EstimatedBirthYear = 0 }), "birth_date"},
		{"malformed birth date", id, nurse, with(func(r *record.Register) { r.BirthDate = "1988-13-01" }), "birth_date"},
		{"birth date in the future", id, nurse, with(func(r *record.Register) { r.BirthDate = "2026-03-03" }), "birth_date"},
		{"birth date before 1880", id, nurse, with(func(r *record.Register) { r.BirthDate = "1850-01-01" }), "birth_date"},
		{"birth year before 1880", id, nurse, with(func(r *record.Register) { r.EstimatedBirthYear = 1700 }), "estimated_birth_year"},
		{"birth year in the future", id, nurse, with(func(r *record.Register) { r.EstimatedBirthYear = 2027 }), "estimated_birth_year"},
		{"phone not a number", id, nurse, with(func(r *record.Register) { r.Phone = "call the chief" }), "phone"},
		{"national id with spaces", id, nurse, with(func(r *record.Register) { r.NationalID = "AB 12" }), "national_id"},
		{"given name too long", id, nurse, with(func(r *record.Register) { r.GivenName = strings.Repeat("a", 101) }), "given"},
		{"village with control character", id, nurse, with(func(r *record.Register) { r.Village = "Kamuga\x00" }), "village"},
		{"guardian not UTF-8", id, nurse, with(func(r *record.Register) { r.Guardian = "\xff\xfe" }), "guardian"},
		{"author without user", id, record.Author{Role: record.RoleNurse}, reg(), "author.user"},
		{"author with unknown role", id, record.Author{UserID: "u1", Role: "doctor"}, reg(), "author.role"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, res, err := record.New(tc.chartID, crdt.NewActorID(), tc.by, t0, tc.reg)
			requireErr(t, err, record.ErrInvalid, tc.field)
			assert.Nil(t, c, "a refused registration made a chart")
			assert.Empty(t, res.Change.Raw, "a refused registration made a change")
		})
	}
	t.Run("bad actor", func(t *testing.T) {
		c, _, err := record.New(id, "not-hex", nurse, t0, reg())
		require.ErrorIs(t, err, crdt.ErrInvalidActor)
		assert.Nil(t, c)
	})
}

func TestNewRegistersPatient(t *testing.T) {
	id := uuid.NewString()
	reg := record.Register{
		GivenName: "Kofi", FamilyName: "Mensah", Sex: "male", BirthDate: "2019-06-30",
		Village: "Asafo", Address: "House 4, behind the school", Phone: "+233 24 123 4567",
		NationalID: "GHA-123456789-0", Guardian: "Ama Mensah (mother)", HomeClinic: "asafo-chps",
	}
	c, res, err := record.New(id, crdt.NewActorID(), registry, t0, reg)
	require.NoError(t, err)
	assert.Equal(t, id, c.ID())
	assert.Equal(t, id, res.EntryID)
	assert.Equal(t, crdt.Heads{res.Change.Hash}, c.Doc().Heads())

	v := view(t, c)
	assert.Equal(t, id, v.ChartID)
	assert.Equal(t, record.Patient(reg), v.Patient, "the view shows what was registered")
	p, err := c.Patient()
	require.NoError(t, err)
	assert.Equal(t, v.Patient, p)
	assert.Equal(t, "Kofi Mensah", p.FullName())
	assert.False(t, v.NoKnownAllergies, "allergies are unknown until someone records them")
	assert.Empty(t, v.Conflicts)
	assert.Empty(t, v.Alerts)
	require.Len(t, v.History, 1)
	h := v.History[0]
	assert.Equal(t, registry, h.By)
	assert.Equal(t, id, h.EntryID)
	assert.True(t, h.At.Equal(t0))
	assert.Equal(t, res.Change.Hash, h.Change)
	assert.Contains(t, h.Summary, "Kofi Mensah")

	// The chart reopens from its saved bytes on another device.
	d, err := crdt.Load(c.Doc().Save(), crdt.NewActorID())
	require.NoError(t, err)
	reopened, err := record.Open(d)
	require.NoError(t, err)
	assert.Equal(t, id, reopened.ID())
	assert.Equal(t, v, view(t, reopened))
}

func TestOpenRefusesDocumentsThatAreNotCharts(t *testing.T) {
	empty, err := crdt.New("")
	require.NoError(t, err)
	other, err := crdt.New("")
	require.NoError(t, err)
	_, err = other.Edit("x", t0, func(tx *crdt.Tx) error {
		if err := tx.PutMap(nil, "chart"); err != nil {
			return err
		}
		return tx.Put([]string{"chart"}, "id", uuid.NewString())
	})
	require.NoError(t, err)
	wrongSchema, err := crdt.New("")
	require.NoError(t, err)
	_, err = wrongSchema.Edit("x", t0, func(tx *crdt.Tx) error {
		for _, k := range []string{"chart", "w", "notes"} {
			if err := tx.PutMap(nil, k); err != nil {
				return err
			}
		}
		if err := tx.Put([]string{"chart"}, "schema", "99"); err != nil {
			return err
		}
		return tx.Put([]string{"chart"}, "id", uuid.NewString())
	})
	require.NoError(t, err)
	for name, d := range map[string]*crdt.Doc{"empty": empty, "no entries map": other, "unknown schema": wrongSchema} {
		_, err := record.Open(d)
		assert.ErrorIs(t, err, record.ErrNotAChart, name)
	}
}

// TestOperationsRefuseBadInput checks every operation's validation: each
// bad operation is refused with the right kind of error and leaves the
// chart exactly as it was.
func TestOperationsRefuseBadInput(t *testing.T) {
	f := newFixture(t)
	missing := uuid.NewString()
	long := func(n int) string { return strings.Repeat("x", n) }
	specimen := t0
	num := record.Ptr[float64]
	type tc struct {
		name  string
		op    record.Op
		want  error
		field string
	}
	inv := func(name string, op record.Op, field string) tc { return tc{name, op, record.ErrInvalid, field} }
	nf := func(name string, op record.Op) tc { return tc{name, op, record.ErrNotFound, ""} }
	tr := func(name string, op record.Op) tc { return tc{name, op, record.ErrTransition, ""} }

	groups := []struct {
		name  string
		cases []tc
	}{
		{"UpdateDemographics", []tc{
			inv("nothing to update", record.UpdateDemographics{}, "demographics"),
			inv("same sex again", record.UpdateDemographics{Sex: record.Ptr("female")}, "demographics"),
			inv("both names removed", record.UpdateDemographics{GivenName: record.Ptr(""), FamilyName: record.Ptr(" ")}, "given_name"),
			inv("unknown sex", record.UpdateDemographics{Sex: record.Ptr("woman")}, "sex"),
			inv("sex removed", record.UpdateDemographics{Sex: record.Ptr("")}, "sex"),
			inv("home clinic removed", record.UpdateDemographics{HomeClinic: record.Ptr(" ")}, "home_clinic"),
			inv("birth date in the future", record.UpdateDemographics{BirthDate: record.Ptr("2026-04-01")}, "birth_date"),
			inv("malformed birth date", record.UpdateDemographics{BirthDate: record.Ptr("02/03/1988")}, "birth_date"),
			inv("birth year removed with no birth date", record.UpdateDemographics{EstimatedBirthYear: record.Ptr(0)}, "birth_date"),
			inv("implausible birth year", record.UpdateDemographics{EstimatedBirthYear: record.Ptr(1800)}, "estimated_birth_year"),
			inv("phone not a number", record.UpdateDemographics{Phone: record.Ptr("ask at the shop")}, "phone"),
			inv("address too long", record.UpdateDemographics{Address: record.Ptr(long(301))}, "address"),
			inv("guardian with control character", record.UpdateDemographics{Guardian: record.Ptr("Ama\x1b")}, "guardian"),
		}},
		{"AddAllergy", []tc{
			inv("no substance", record.AddAllergy{Severity: "mild"}, "substance"),
			inv("blank substance", record.AddAllergy{Substance: "  ", Severity: "mild"}, "substance"),
			inv("no severity", record.AddAllergy{Substance: "Sulfa"}, "severity"),
			inv("unknown severity", record.AddAllergy{Substance: "Sulfa", Severity: "terrible"}, "severity"),
			inv("reaction too long", record.AddAllergy{Substance: "Sulfa", Severity: "mild", Reaction: long(301)}, "reaction"),
			inv("substance with control character", record.AddAllergy{Substance: "Sul\x07fa", Severity: "mild"}, "substance"),
		}},
		{"UpdateAllergy", []tc{
			nf("unknown allergy", record.UpdateAllergy{AllergyID: missing, Severity: record.Ptr("mild")}),
			nf("a prescription, not an allergy", record.UpdateAllergy{AllergyID: f.rxActive, Severity: record.Ptr("mild")}),
			nf("the patient, not an allergy", record.UpdateAllergy{AllergyID: f.patient, Severity: record.Ptr("mild")}),
			inv("nothing to update", record.UpdateAllergy{AllergyID: f.allergy}, "allergy"),
			inv("same severity again", record.UpdateAllergy{AllergyID: f.allergy, Severity: record.Ptr("moderate")}, "allergy"),
			inv("severity removed", record.UpdateAllergy{AllergyID: f.allergy, Severity: record.Ptr("")}, "severity"),
			inv("unknown severity", record.UpdateAllergy{AllergyID: f.allergy, Severity: record.Ptr("bad")}, "severity"),
			inv("unknown status", record.UpdateAllergy{AllergyID: f.allergy, Status: record.Ptr("gone")}, "status"),
			inv("entered in error through update", record.UpdateAllergy{AllergyID: f.allergy, Status: record.Ptr(record.StatusEnteredInError)}, "status"),
			inv("reaction too long", record.UpdateAllergy{AllergyID: f.allergy, Reaction: record.Ptr(long(301))}, "reaction"),
			inv("reason too long", record.UpdateAllergy{AllergyID: f.allergy, Severity: record.Ptr("severe"), Reason: long(501)}, "status_reason"),
			tr("allergy entered in error", record.UpdateAllergy{AllergyID: f.allergyEIE, Severity: record.Ptr("severe")}),
		}},
		{"RecordNoKnownAllergies", []tc{
			tr("an allergy is active", record.RecordNoKnownAllergies{}),
		}},
		{"Diagnose", []tc{
			inv("no text", record.Diagnose{Code: "B54"}, "text"),
			inv("code not ICD-10", record.Diagnose{Text: "Pneumonia", Code: "pneumonia"}, "code"),
			inv("onset in the future", record.Diagnose{Text: "Pneumonia", Onset: "2026-03-10"}, "onset"),
			inv("onset not a date", record.Diagnose{Text: "Pneumonia", Onset: "2026-02-30"}, "onset"),
			inv("unknown clinical status", record.Diagnose{Text: "Pneumonia", ClinicalStatus: "sick"}, "clinical"),
			inv("unknown verification status", record.Diagnose{Text: "Pneumonia", VerificationStatus: "maybe"}, "verification"),
			inv("new diagnosis entered in error", record.Diagnose{Text: "Pneumonia", VerificationStatus: record.StatusEnteredInError}, "verification"),
			inv("note too long", record.Diagnose{Text: "Pneumonia", Note: long(2001)}, "note"),
		}},
		{"ChangeDiagnosisStatus", []tc{
			nf("unknown diagnosis", record.ChangeDiagnosisStatus{DiagnosisID: missing, ClinicalStatus: "resolved"}),
			nf("an allergy, not a diagnosis", record.ChangeDiagnosisStatus{DiagnosisID: f.allergy, ClinicalStatus: "resolved"}),
			inv("no status", record.ChangeDiagnosisStatus{DiagnosisID: f.diagnosis}, "clinical"),
			inv("same statuses again", record.ChangeDiagnosisStatus{DiagnosisID: f.diagnosis, ClinicalStatus: "active", VerificationStatus: "provisional"}, "clinical"),
			inv("unknown clinical status", record.ChangeDiagnosisStatus{DiagnosisID: f.diagnosis, ClinicalStatus: "better"}, "clinical"),
			inv("unknown verification status", record.ChangeDiagnosisStatus{DiagnosisID: f.diagnosis, VerificationStatus: "sure"}, "verification"),
			inv("entered in error through status change", record.ChangeDiagnosisStatus{DiagnosisID: f.diagnosis, VerificationStatus: record.StatusEnteredInError}, "verification"),
			tr("diagnosis entered in error", record.ChangeDiagnosisStatus{DiagnosisID: f.diagnosisEIE, ClinicalStatus: "resolved"}),
		}},
		{"Prescribe", func() []tc {
			ok := record.Prescribe{Drug: "Amoxicillin", Dose: 500, DoseUnit: "mg", Route: "oral", Frequency: "TDS"}
			with := func(fn func(p *record.Prescribe)) record.Prescribe { p := ok; fn(&p); return p }
			return []tc{
				inv("no drug", with(func(p *record.Prescribe) { p.Drug = " " }), "drug"),
				inv("zero dose", with(func(p *record.Prescribe) { p.Dose = 0 }), "dose"),
				inv("negative dose", with(func(p *record.Prescribe) { p.Dose = -250 }), "dose"),
				inv("NaN dose", with(func(p *record.Prescribe) { p.Dose = math.NaN() }), "dose"),
				inv("infinite dose", with(func(p *record.Prescribe) { p.Dose = math.Inf(1) }), "dose"),
				inv("implausible dose", with(func(p *record.Prescribe) { p.Dose = 200000 }), "dose"),
				inv("no unit", with(func(p *record.Prescribe) { p.DoseUnit = "" }), "unit"),
				inv("unknown unit", with(func(p *record.Prescribe) { p.DoseUnit = "bucket" }), "unit"),
				inv("no route", with(func(p *record.Prescribe) { p.Route = "" }), "route"),
				inv("unknown route", with(func(p *record.Prescribe) { p.Route = "by mouth" }), "route"),
				inv("no frequency", with(func(p *record.Prescribe) { p.Frequency = "" }), "frequency"),
				inv("unknown frequency", with(func(p *record.Prescribe) { p.Frequency = "sometimes" }), "frequency"),
				inv("negative duration", with(func(p *record.Prescribe) { p.DurationDays = -1 }), "duration_days"),
				inv("implausible duration", with(func(p *record.Prescribe) { p.DurationDays = 4000 }), "duration_days"),
				inv("end before start", with(func(p *record.Prescribe) { p.Start, p.End = "2026-03-02", "2026-03-01" }), "end"),
				inv("start not a date", with(func(p *record.Prescribe) { p.Start = "2026/03/02" }), "start"),
				inv("drug code with spaces", with(func(p *record.Prescribe) { p.DrugCode = "RX 723" }), "drug_code"),
				inv("instructions too long", with(func(p *record.Prescribe) { p.Instructions = long(1001) }), "instructions"),
			}
		}()},
		{"ReviseDose", []tc{
			nf("unknown prescription", record.ReviseDose{PrescriptionID: missing, Dose: 250}),
			nf("an allergy, not a prescription", record.ReviseDose{PrescriptionID: f.allergy, Dose: 250}),
			tr("stopped", record.ReviseDose{PrescriptionID: f.rxStopped, Dose: 250}),
			tr("completed", record.ReviseDose{PrescriptionID: f.rxCompleted, Dose: 250}),
			tr("entered in error", record.ReviseDose{PrescriptionID: f.rxEIE, Dose: 250}),
			inv("zero dose", record.ReviseDose{PrescriptionID: f.rxOnHold, Dose: 0}, "dose"),
			inv("NaN dose", record.ReviseDose{PrescriptionID: f.rxOnHold, Dose: math.NaN()}, "dose"),
			inv("same dose", record.ReviseDose{PrescriptionID: f.rxOnHold, Dose: 500}, "dose"),
			inv("same dose, unit and frequency", record.ReviseDose{PrescriptionID: f.rxOnHold, Dose: 500, DoseUnit: "mg", Frequency: "TDS"}, "dose"),
			inv("unknown unit", record.ReviseDose{PrescriptionID: f.rxOnHold, Dose: 1, DoseUnit: "bucket"}, "unit"),
			inv("unknown frequency", record.ReviseDose{PrescriptionID: f.rxOnHold, Dose: 250, Frequency: "hourly"}, "frequency"),
		}},
		{"PutOnHold", []tc{
			nf("unknown prescription", record.PutOnHold{PrescriptionID: missing}),
			nf("a lab result, not a prescription", record.PutOnHold{PrescriptionID: f.labFinal}),
			tr("already on hold", record.PutOnHold{PrescriptionID: f.rxOnHold}),
			tr("stopped", record.PutOnHold{PrescriptionID: f.rxStopped}),
			tr("completed", record.PutOnHold{PrescriptionID: f.rxCompleted}),
			tr("entered in error", record.PutOnHold{PrescriptionID: f.rxEIE}),
			inv("reason with control character", record.PutOnHold{PrescriptionID: f.rxActive, Reason: "\x00"}, "status_reason"),
		}},
		{"Resume", []tc{
			nf("unknown prescription", record.Resume{PrescriptionID: missing}),
			tr("active", record.Resume{PrescriptionID: f.rxActive}),
			tr("stopped", record.Resume{PrescriptionID: f.rxStopped}),
			tr("completed", record.Resume{PrescriptionID: f.rxCompleted}),
			tr("entered in error", record.Resume{PrescriptionID: f.rxEIE}),
		}},
		{"Discontinue", []tc{
			nf("unknown prescription", record.Discontinue{PrescriptionID: missing, Reason: "rash"}),
			inv("no reason", record.Discontinue{PrescriptionID: f.rxActive}, "reason"),
			inv("blank reason", record.Discontinue{PrescriptionID: f.rxOnHold, Reason: "  "}, "reason"),
			inv("reason too long", record.Discontinue{PrescriptionID: f.rxActive, Reason: long(501)}, "status_reason"),
			tr("stopped", record.Discontinue{PrescriptionID: f.rxStopped, Reason: "again"}),
			tr("completed", record.Discontinue{PrescriptionID: f.rxCompleted, Reason: "rash"}),
			tr("entered in error", record.Discontinue{PrescriptionID: f.rxEIE, Reason: "rash"}),
		}},
		{"Complete", []tc{
			nf("unknown prescription", record.Complete{PrescriptionID: missing}),
			nf("an encounter, not a prescription", record.Complete{PrescriptionID: f.encounter}),
			tr("stopped", record.Complete{PrescriptionID: f.rxStopped}),
			tr("completed", record.Complete{PrescriptionID: f.rxCompleted}),
			tr("entered in error", record.Complete{PrescriptionID: f.rxEIE}),
		}},
		{"RecordLabResult", []tc{
			inv("no test", record.RecordLabResult{Value: num(5), Unit: "mmol/L", SpecimenAt: specimen}, "test"),
			inv("no value", record.RecordLabResult{Test: "Glucose", Unit: "mmol/L", SpecimenAt: specimen}, "value"),
			inv("numeric and text value", record.RecordLabResult{Test: "Glucose", Value: num(5), TextValue: "high", Unit: "mmol/L", SpecimenAt: specimen}, "value"),
			inv("numeric value without unit", record.RecordLabResult{Test: "Glucose", Value: num(5), SpecimenAt: specimen}, "unit"),
			inv("reversed reference range", record.RecordLabResult{Test: "Glucose", Value: num(5), Unit: "mmol/L", RefLow: num(7), RefHigh: num(4), SpecimenAt: specimen}, "ref_low"),
			inv("reversed critical range", record.RecordLabResult{Test: "Glucose", Value: num(5), Unit: "mmol/L", CriticalLow: num(30), CriticalHigh: num(2), SpecimenAt: specimen}, "critical_low"),
			inv("no specimen time", record.RecordLabResult{Test: "Glucose", Value: num(5), Unit: "mmol/L"}, "specimen_at"),
			inv("specimen in the future", record.RecordLabResult{Test: "Glucose", Value: num(5), Unit: "mmol/L", SpecimenAt: t0.Add(72 * time.Hour)}, "specimen_at"),
			inv("recorded as corrected", record.RecordLabResult{Test: "Glucose", Value: num(5), Unit: "mmol/L", SpecimenAt: specimen, Status: record.StatusCorrected}, "status"),
			inv("recorded entered in error", record.RecordLabResult{Test: "Glucose", Value: num(5), Unit: "mmol/L", SpecimenAt: specimen, Status: record.StatusEnteredInError}, "status"),
			inv("LOINC malformed", record.RecordLabResult{Test: "Glucose", LOINC: "glucose", Value: num(5), Unit: "mmol/L", SpecimenAt: specimen}, "loinc"),
			inv("NaN value", record.RecordLabResult{Test: "Glucose", Value: num(math.NaN()), Unit: "mmol/L", SpecimenAt: specimen}, "value"),
			inv("implausible value", record.RecordLabResult{Test: "Glucose", Value: num(2e9), Unit: "mmol/L", SpecimenAt: specimen}, "value"),
			inv("infinite reference", record.RecordLabResult{Test: "Glucose", Value: num(5), Unit: "mmol/L", RefHigh: num(math.Inf(1)), SpecimenAt: specimen}, "ref_high"),
			inv("text too long", record.RecordLabResult{Test: "Malaria RDT", TextValue: long(501), SpecimenAt: specimen}, "text"),
			inv("unit too long", record.RecordLabResult{Test: "Glucose", Value: num(5), Unit: long(41), SpecimenAt: specimen}, "unit"),
		}},
		{"FinalizeLabResult", []tc{
			nf("unknown result", record.FinalizeLabResult{LabResultID: missing}),
			nf("a prescription, not a result", record.FinalizeLabResult{LabResultID: f.rxActive}),
			tr("already final", record.FinalizeLabResult{LabResultID: f.labFinal}),
			tr("corrected", record.FinalizeLabResult{LabResultID: f.labCorrected}),
			tr("entered in error", record.FinalizeLabResult{LabResultID: f.labEIE}),
		}},
		{"CorrectLabResult", []tc{
			nf("unknown result", record.CorrectLabResult{LabResultID: missing, Value: num(12), Reason: "re-run"}),
			nf("a diagnosis, not a result", record.CorrectLabResult{LabResultID: f.diagnosis, Value: num(12), Reason: "re-run"}),
			tr("entered in error", record.CorrectLabResult{LabResultID: f.labEIE, Value: num(12), Reason: "re-run"}),
			inv("no reason", record.CorrectLabResult{LabResultID: f.labFinal, Value: num(12)}, "reason"),
			inv("no value", record.CorrectLabResult{LabResultID: f.labFinal, Reason: "re-run"}, "value"),
			inv("numeric and text value", record.CorrectLabResult{LabResultID: f.labFinal, Value: num(12), TextValue: "12", Reason: "re-run"}, "value"),
			inv("numeric value for a result without unit", record.CorrectLabResult{LabResultID: f.labText, Value: num(1), Reason: "re-read"}, "unit"),
			inv("NaN value", record.CorrectLabResult{LabResultID: f.labFinal, Value: num(math.NaN()), Reason: "re-run"}, "value"),
			inv("reason with control character", record.CorrectLabResult{LabResultID: f.labFinal, Value: num(12), Reason: "re\x00run"}, "status_reason"),
		}},
		{"AddEncounter", []tc{
			inv("no complaint", record.AddEncounter{Date: "2026-03-02"}, "complaint"),
			inv("date in the future", record.AddEncounter{Date: "2026-03-10", Complaint: "cough"}, "date"),
			inv("date malformed", record.AddEncounter{Date: "02/03/2026", Complaint: "cough"}, "date"),
			inv("systolic without diastolic", record.AddEncounter{Complaint: "cough", Vitals: record.Vitals{BPSystolic: 120}}, "bp_diastolic"),
			inv("diastolic above systolic", record.AddEncounter{Complaint: "cough", Vitals: record.Vitals{BPSystolic: 80, BPDiastolic: 120}}, "bp_diastolic"),
			inv("implausible temperature", record.AddEncounter{Complaint: "cough", Vitals: record.Vitals{Temperature: 50}}, "temperature"),
			inv("implausible SpO2", record.AddEncounter{Complaint: "cough", Vitals: record.Vitals{SpO2: 101}}, "spo2"),
			inv("implausible pulse", record.AddEncounter{Complaint: "cough", Vitals: record.Vitals{Pulse: 10}}, "pulse"),
			inv("negative weight", record.AddEncounter{Complaint: "cough", Vitals: record.Vitals{Weight: -3}}, "weight"),
			inv("note with control character", record.AddEncounter{Complaint: "cough", Note: "bell\x07"}, "note"),
			inv("note too long", record.AddEncounter{Complaint: "cough", Note: long(20001)}, "note"),
			inv("clinician too long", record.AddEncounter{Complaint: "cough", Clinician: long(201)}, "clinician"),
		}},
		{"EditNote", []tc{
			nf("unknown encounter", record.EditNote{EncounterID: missing, Insert: "x"}),
			nf("an allergy, not an encounter", record.EditNote{EncounterID: f.allergy, Insert: "x"}),
			tr("encounter entered in error", record.EditNote{EncounterID: f.encounterEIE, Insert: "x"}),
			inv("negative position", record.EditNote{EncounterID: f.encounter, Pos: -1, Insert: "x"}, "pos"),
			inv("negative deletion", record.EditNote{EncounterID: f.encounter, Delete: -1, Insert: "x"}, "pos"),
			inv("nothing to do", record.EditNote{EncounterID: f.encounter}, "insert"),
			inv("position past the end", record.EditNote{EncounterID: f.encounter, Pos: len(f.encounterNote) + 1, Insert: "x"}, "pos"),
			inv("deletion past the end", record.EditNote{EncounterID: f.encounter, Pos: 4, Delete: len(f.encounterNote), Insert: "x"}, "pos"),
			inv("insert with control character", record.EditNote{EncounterID: f.encounter, Insert: "\x1b[2J"}, "insert"),
			inv("insert not UTF-8", record.EditNote{EncounterID: f.encounter, Insert: "\xc3\x28"}, "insert"),
		}},
		{"MarkEnteredInError", []tc{
			nf("unknown entry", record.MarkEnteredInError{EntryID: missing, Reason: "wrong patient"}),
			nf("the patient", record.MarkEnteredInError{EntryID: f.patient, Reason: "wrong patient"}),
			inv("no reason", record.MarkEnteredInError{EntryID: f.rxActive}, "reason"),
			inv("reason too long", record.MarkEnteredInError{EntryID: f.rxActive, Reason: long(501)}, "status_reason"),
			tr("allergy already entered in error", record.MarkEnteredInError{EntryID: f.allergyEIE, Reason: "again"}),
			tr("diagnosis already entered in error", record.MarkEnteredInError{EntryID: f.diagnosisEIE, Reason: "again"}),
			tr("prescription already entered in error", record.MarkEnteredInError{EntryID: f.rxEIE, Reason: "again"}),
			tr("lab result already entered in error", record.MarkEnteredInError{EntryID: f.labEIE, Reason: "again"}),
			tr("encounter already entered in error", record.MarkEnteredInError{EntryID: f.encounterEIE, Reason: "again"}),
		}},
		{"ResolveConflict", []tc{
			nf("unknown entry", record.ResolveConflict{EntryID: missing, Field: "dose", Value: "250"}),
			tr("field not in conflict", record.ResolveConflict{EntryID: f.rxActive, Field: "route", Value: "IV"}),
			tr("unknown field", record.ResolveConflict{EntryID: f.rxActive, Field: "colour", Value: "red"}),
			inv("a prescription status", record.ResolveConflict{EntryID: f.rxActive, Field: "status", Value: record.StatusStopped}, "status"),
			inv("a diagnosis clinical status", record.ResolveConflict{EntryID: f.diagnosis, Field: "clinical", Value: "resolved"}, "clinical"),
			inv("a diagnosis verification status", record.ResolveConflict{EntryID: f.diagnosis, Field: "verification", Value: "confirmed"}, "verification"),
			inv("implausible dose", record.ResolveConflict{EntryID: f.rxActive, Field: "dose", Value: "lots"}, "dose"),
			inv("village too long", record.ResolveConflict{EntryID: f.patient, Field: "village", Value: long(101)}, "village"),
			tr("no known allergies while an allergy is active", record.ResolveConflict{EntryID: f.patient, Field: "nka", Value: "true"}),
		}},
		{"Do", []tc{
			inv("no operation", nil, "op"),
		}},
	}

	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			for _, c := range g.cases {
				t.Run(c.name, func(t *testing.T) {
					err := unchanged(t, f.chart, func() error {
						_, err := f.chart.Do(doctor, f.tick(), c.op)
						return err
					})
					requireErr(t, err, c.want, c.field)
				})
			}
		})
	}
}

func TestDoRefusesBadAuthor(t *testing.T) {
	f := newFixture(t)
	op := record.ReviseDose{PrescriptionID: f.rxOnHold, Dose: 250}
	cases := []struct {
		name  string
		by    record.Author
		field string
	}{
		{"no user", record.Author{Role: record.RoleClinician}, "author.user"},
		{"no role", record.Author{UserID: "u1"}, "author.role"},
		{"unknown role", record.Author{UserID: "u1", Role: "surgeon"}, "author.role"},
		{"role in capitals", record.Author{UserID: "u1", Role: "Clinician"}, "author.role"},
		{"user too long", record.Author{UserID: strings.Repeat("u", 129), Role: record.RoleClinician}, "author.user"},
		{"name with control character", record.Author{UserID: "u1", Name: "Dr\x00Who", Role: record.RoleClinician}, "author.name"},
		{"device not UTF-8", record.Author{UserID: "u1", Role: record.RoleClinician, Device: "\xff"}, "author.device"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := unchanged(t, f.chart, func() error {
				_, err := f.chart.Do(c.by, f.tick(), op)
				return err
			})
			requireErr(t, err, record.ErrInvalid, c.field)
		})
	}
	// The same operation by a valid author goes through.
	f.do(t, doctor, op)
}

func TestRecordNoKnownAllergiesTwiceIsRefused(t *testing.T) {
	c := newChart(t)
	do(t, c, nurse, t0.Add(time.Minute), record.RecordNoKnownAllergies{})
	assert.True(t, view(t, c).NoKnownAllergies)
	err := unchanged(t, c, func() error {
		_, err := c.Do(nurse, t0.Add(2*time.Minute), record.RecordNoKnownAllergies{})
		return err
	})
	requireErr(t, err, record.ErrInvalid, "nka")
	// With no conflict there is nothing to resolve.
	err = unchanged(t, c, func() error {
		_, err := c.Do(nurse, t0.Add(2*time.Minute), record.ResolveConflict{EntryID: c.ID(), Field: "nka", Value: "false"})
		return err
	})
	requireErr(t, err, record.ErrTransition, "")
}

// rxIn returns a new prescription brought to status.
func rxIn(t *testing.T, f *fixture, status string) string {
	t.Helper()
	id := f.do(t, doctor, record.Prescribe{Drug: "Amoxicillin " + uuid.NewString()[:4], Dose: 500, DoseUnit: "mg", Route: "oral", Frequency: "TDS"})
	switch status {
	case record.StatusActive:
	case record.StatusOnHold:
		f.do(t, doctor, record.PutOnHold{PrescriptionID: id})
	case record.StatusStopped:
		f.do(t, doctor, record.Discontinue{PrescriptionID: id, Reason: "rash"})
	case record.StatusCompleted:
		f.do(t, doctor, record.Complete{PrescriptionID: id})
	case record.StatusEnteredInError:
		f.do(t, doctor, record.MarkEnteredInError{EntryID: id, Reason: "wrong patient"})
	default:
		t.Fatalf("no way to reach prescription status %q", status)
	}
	return id
}

func rxStatus(t *testing.T, c *record.Chart, id string) string {
	t.Helper()
	v := view(t, c)
	if p, ok := findRx(v, id); ok {
		return p.Status
	}
	if _, ok := findError(v, id); ok {
		return record.StatusEnteredInError
	}
	t.Fatalf("prescription %s is not in the chart", id)
	return ""
}

// TestPrescriptionTransitions checks every prescription operation from
// every status: the legal ones move the prescription to the documented
// status, the others are refused with ErrTransition.
func TestPrescriptionTransitions(t *testing.T) {
	f := newFixture(t)
	statuses := []string{record.StatusActive, record.StatusOnHold, record.StatusStopped, record.StatusCompleted, record.StatusEnteredInError}
	ops := []struct {
		name string
		op   func(id string) record.Op
		// to is the status after the operation, by status before; a
		// status missing here must be refused.
		to map[string]string
	}{
		{"PutOnHold", func(id string) record.Op { return record.PutOnHold{PrescriptionID: id, Reason: "vomiting"} },
			map[string]string{record.StatusActive: record.StatusOnHold}},
		{"Resume", func(id string) record.Op { return record.Resume{PrescriptionID: id} },
			map[string]string{record.StatusOnHold: record.StatusActive}},
		{"Discontinue", func(id string) record.Op { return record.Discontinue{PrescriptionID: id, Reason: "rash"} },
			map[string]string{record.StatusActive: record.StatusStopped, record.StatusOnHold: record.StatusStopped}},
		{"Complete", func(id string) record.Op { return record.Complete{PrescriptionID: id} },
			map[string]string{record.StatusActive: record.StatusCompleted, record.StatusOnHold: record.StatusCompleted}},
		{"ReviseDose", func(id string) record.Op { return record.ReviseDose{PrescriptionID: id, Dose: 250} },
			map[string]string{record.StatusActive: record.StatusActive, record.StatusOnHold: record.StatusOnHold}},
		{"MarkEnteredInError", func(id string) record.Op { return record.MarkEnteredInError{EntryID: id, Reason: "duplicate"} },
			map[string]string{record.StatusActive: record.StatusEnteredInError, record.StatusOnHold: record.StatusEnteredInError,
				record.StatusStopped: record.StatusEnteredInError, record.StatusCompleted: record.StatusEnteredInError}},
	}
	for _, o := range ops {
		for _, from := range statuses {
			t.Run(o.name+" from "+from, func(t *testing.T) {
				id := rxIn(t, f, from)
				require.Equal(t, from, rxStatus(t, f.chart, id))
				to, legal := o.to[from]
				if !legal {
					err := unchanged(t, f.chart, func() error {
						_, err := f.chart.Do(doctor, f.tick(), o.op(id))
						return err
					})
					requireErr(t, err, record.ErrTransition, "")
					return
				}
				res, err := f.chart.Do(doctor, f.tick(), o.op(id))
				require.NoError(t, err)
				assert.Equal(t, id, res.EntryID)
				assert.Equal(t, to, rxStatus(t, f.chart, id))
			})
		}
	}
}

// TestLabResultTransitions does the same for lab results.
func TestLabResultTransitions(t *testing.T) {
	f := newFixture(t)
	labIn := func(status string) string {
		st := record.StatusFinal
		if status == record.StatusPreliminary {
			st = status
		}
		id := f.do(t, labTech, record.RecordLabResult{Test: "Creatinine", Value: record.Ptr(80.0), Unit: "umol/L", SpecimenAt: t0, Status: st})
		switch status {
		case record.StatusCorrected:
			f.do(t, labTech, record.CorrectLabResult{LabResultID: id, Value: record.Ptr(90.0), Reason: "haemolysed"})
		case record.StatusEnteredInError:
			f.do(t, labTech, record.MarkEnteredInError{EntryID: id, Reason: "wrong sample"})
		}
		return id
	}
	statusOf := func(id string) string {
		v := view(t, f.chart)
		if l, ok := findLab(v, id); ok {
			return l.Status
		}
		_, ok := findError(v, id)
		require.True(t, ok, "lab result %s vanished", id)
		return record.StatusEnteredInError
	}
	statuses := []string{record.StatusPreliminary, record.StatusFinal, record.StatusCorrected, record.StatusEnteredInError}
	ops := []struct {
		name string
		op   func(id string) record.Op
		to   map[string]string
	}{
		{"FinalizeLabResult", func(id string) record.Op { return record.FinalizeLabResult{LabResultID: id} },
			map[string]string{record.StatusPreliminary: record.StatusFinal}},
		{"CorrectLabResult", func(id string) record.Op {
			return record.CorrectLabResult{LabResultID: id, Value: record.Ptr(95.0), Reason: "calibration"}
		}, map[string]string{record.StatusPreliminary: record.StatusCorrected, record.StatusFinal: record.StatusCorrected, record.StatusCorrected: record.StatusCorrected}},
		{"MarkEnteredInError", func(id string) record.Op { return record.MarkEnteredInError{EntryID: id, Reason: "wrong sample"} },
			map[string]string{record.StatusPreliminary: record.StatusEnteredInError, record.StatusFinal: record.StatusEnteredInError, record.StatusCorrected: record.StatusEnteredInError}},
	}
	for _, o := range ops {
		for _, from := range statuses {
			t.Run(o.name+" from "+from, func(t *testing.T) {
				id := labIn(from)
				require.Equal(t, from, statusOf(id))
				to, legal := o.to[from]
				if !legal {
					err := unchanged(t, f.chart, func() error {
						_, err := f.chart.Do(labTech, f.tick(), o.op(id))
						return err
					})
					requireErr(t, err, record.ErrTransition, "")
					return
				}
				f.do(t, labTech, o.op(id))
				assert.Equal(t, to, statusOf(id))
			})
		}
	}
}

func TestAllergyTransitions(t *testing.T) {
	f := newFixture(t)
	for _, from := range []string{record.StatusActive, record.StatusInactive, record.StatusResolved} {
		for _, to := range []string{record.StatusActive, record.StatusInactive, record.StatusResolved} {
			t.Run(from+" to "+to, func(t *testing.T) {
				id := f.do(t, nurse, record.AddAllergy{Substance: "Dust", Severity: "mild"})
				if from != record.StatusActive {
					f.do(t, nurse, record.UpdateAllergy{AllergyID: id, Status: record.Ptr(from)})
				}
				op := record.UpdateAllergy{AllergyID: id, Status: record.Ptr(to), Reason: "reviewed"}
				if from == to {
					err := unchanged(t, f.chart, func() error { _, err := f.chart.Do(nurse, f.tick(), op); return err })
					requireErr(t, err, record.ErrInvalid, "allergy")
					return
				}
				f.do(t, nurse, op)
				a, ok := findAllergy(view(t, f.chart), id)
				require.True(t, ok)
				assert.Equal(t, to, a.Status)
			})
		}
	}
}

func TestDemographicsUpdate(t *testing.T) {
	c := newChart(t)
	before := view(t, c)
	res, err := c.Do(registry, t0.Add(time.Hour), record.UpdateDemographics{
		Village: record.Ptr("Kamuga North"), BirthDate: record.Ptr("1988-05-14"), Phone: record.Ptr(""),
	})
	require.NoError(t, err)
	assert.Equal(t, c.ID(), res.EntryID)
	v := view(t, c)
	want := before.Patient
	want.Village, want.BirthDate, want.Phone = "Kamuga North", "1988-05-14", ""
	assert.Equal(t, want, v.Patient, "only the fields given change")
	require.Len(t, v.History, 2)
	last := v.History[1]
	assert.Equal(t, registry, last.By)
	assert.Equal(t, res.Change.Hash, last.Change)
	assert.Contains(t, last.Summary, "village")
	assert.NotContains(t, last.Summary, "given", "the summary lists only what changed")

	// The estimated birth year can be dropped once a birth date is known.
	do(t, c, registry, t0.Add(2*time.Hour), record.UpdateDemographics{EstimatedBirthYear: record.Ptr(0)})
	assert.Zero(t, view(t, c).Patient.EstimatedBirthYear)
}

func TestAllergiesAndNoKnownAllergies(t *testing.T) {
	c := newChart(t)
	do(t, c, nurse, t0.Add(time.Minute), record.RecordNoKnownAllergies{})
	v := view(t, c)
	assert.True(t, v.NoKnownAllergies)
	assert.Empty(t, v.Allergies)

	at := t0.Add(2 * time.Minute)
	id := do(t, c, nurse, at, record.AddAllergy{Substance: " Sulfa drugs ", Reaction: "hives", Severity: "severe"})
	v = view(t, c)
	assert.False(t, v.NoKnownAllergies, "recording an allergy withdraws no known allergies")
	require.Len(t, v.Allergies, 1)
	assert.Equal(t, record.Allergy{ID: id, Substance: "Sulfa drugs", Reaction: "hives", Severity: "severe", Status: record.StatusActive,
		Recorded: record.Recorded{RecordedAt: at, RecordedBy: nurse}}, v.Allergies[0])
	assert.Empty(t, v.Alerts, "a withdrawn statement raises no alert")

	do(t, c, doctor, t0.Add(3*time.Minute), record.UpdateAllergy{AllergyID: id, Severity: record.Ptr("life-threatening"), Reaction: record.Ptr("anaphylaxis")})
	a, _ := findAllergy(view(t, c), id)
	assert.Equal(t, "life-threatening", a.Severity)
	assert.Equal(t, "anaphylaxis", a.Reaction)
	assert.Equal(t, nurse, a.RecordedBy, "the entry is still credited to whoever recorded it")

	do(t, c, doctor, t0.Add(4*time.Minute), record.UpdateAllergy{AllergyID: id, Status: record.Ptr(record.StatusResolved), Reason: "desensitised"})
	assert.False(t, view(t, c).NoKnownAllergies, "a resolved allergy does not restore the old statement")
	do(t, c, doctor, t0.Add(5*time.Minute), record.RecordNoKnownAllergies{})
	v = view(t, c)
	assert.True(t, v.NoKnownAllergies, "no known allergies may be recorded when no allergy is active")
	require.Len(t, v.Allergies, 1, "the resolved allergy stays listed")
}

func TestDiagnoses(t *testing.T) {
	c := newChart(t)
	at := t0.Add(time.Minute)
	id := do(t, c, doctor, at, record.Diagnose{Code: "J18.9", Text: "Pneumonia", Onset: "2026-02-28", Note: "right lower lobe"})
	d, ok := findDiagnosis(view(t, c), id)
	require.True(t, ok)
	assert.Equal(t, record.Diagnosis{ID: id, Code: "J18.9", Text: "Pneumonia", Onset: "2026-02-28",
		ClinicalStatus: "active", VerificationStatus: "provisional", Note: "right lower lobe",
		Recorded: record.Recorded{RecordedAt: at, RecordedBy: doctor}}, d, "defaults: active and provisional")

	do(t, c, doctor, t0.Add(2*time.Minute), record.ChangeDiagnosisStatus{DiagnosisID: id, VerificationStatus: "confirmed", Reason: "x-ray"})
	d, _ = findDiagnosis(view(t, c), id)
	assert.Equal(t, "active", d.ClinicalStatus)
	assert.Equal(t, "confirmed", d.VerificationStatus)
	do(t, c, doctor, t0.Add(3*time.Minute), record.ChangeDiagnosisStatus{DiagnosisID: id, ClinicalStatus: "resolved"})
	d, _ = findDiagnosis(view(t, c), id)
	assert.Equal(t, "resolved", d.ClinicalStatus)
	assert.Equal(t, "confirmed", d.VerificationStatus)
}

func TestPrescriptionLifecycle(t *testing.T) {
	c := newChart(t)
	at := t0.Add(time.Minute)
	id := do(t, c, doctor, at, record.Prescribe{Drug: "Artemether/lumefantrine", DrugCode: "ATC:P01BF01", Dose: 4, DoseUnit: "tablet",
		Route: "oral", Frequency: "BD", DurationDays: 3, Start: "2026-03-02", End: "2026-03-04", Instructions: "with food"})
	p, ok := findRx(view(t, c), id)
	require.True(t, ok)
	assert.Equal(t, record.Prescription{ID: id, Drug: "Artemether/lumefantrine", ATC: "P01BF01", Substance: "artemether + lumefantrine",
		DrugCode: "ATC:P01BF01", Dose: 4, DoseUnit: "tablet",
		Route: "oral", Frequency: "BD", DurationDays: 3, Start: "2026-03-02", End: "2026-03-04", Instructions: "with food",
		Status: record.StatusActive, Recorded: record.Recorded{RecordedAt: at, RecordedBy: doctor}}, p)

	do(t, c, nurse, t0.Add(2*time.Minute), record.ReviseDose{PrescriptionID: id, Dose: 0.5, DoseUnit: "g", Frequency: "TDS", Reason: "weight"})
	p, _ = findRx(view(t, c), id)
	assert.Equal(t, 0.5, p.Dose)
	assert.Equal(t, "g", p.DoseUnit)
	assert.Equal(t, "TDS", p.Frequency)
	assert.Equal(t, "oral", p.Route, "fields not revised keep their values")

	do(t, c, doctor, t0.Add(3*time.Minute), record.PutOnHold{PrescriptionID: id, Reason: "vomiting"})
	p, _ = findRx(view(t, c), id)
	assert.Equal(t, record.StatusOnHold, p.Status)
	assert.Equal(t, "vomiting", p.StatusReason)
	do(t, c, doctor, t0.Add(4*time.Minute), record.Resume{PrescriptionID: id})
	do(t, c, doctor, t0.Add(5*time.Minute), record.Discontinue{PrescriptionID: id, Reason: "finished early, afebrile"})
	v := view(t, c)
	p, _ = findRx(v, id)
	assert.Equal(t, record.StatusStopped, p.Status)
	assert.Equal(t, "finished early, afebrile", p.StatusReason)
	assert.Equal(t, []string{"register", "prescribe", "revise-dose", "put-on-hold", "resume", "discontinue"}, historyOps(v))
	for _, h := range v.History[1:] {
		assert.Equal(t, id, h.EntryID, "history entry %q names the prescription", h.Op)
		assert.NotEmpty(t, h.Summary)
	}
}

func TestLabResultInterpretation(t *testing.T) {
	num := record.Ptr[float64]
	cases := []struct {
		name                 string
		value                *float64
		text                 string
		refLo, refHi         *float64
		critLo, critHi       *float64
		want                 string
		wantCriticalLabAlert bool
	}{
		{"within range", num(13), "", num(12), num(16), nil, nil, record.InterpretationNormal, false},
		{"on the lower bound", num(12), "", num(12), num(16), nil, nil, record.InterpretationNormal, false},
		{"on the upper bound", num(16), "", num(12), num(16), nil, nil, record.InterpretationNormal, false},
		{"below range", num(10.2), "", num(12), num(16), num(7), nil, record.InterpretationLow, false},
		{"above range", num(17), "", num(12), num(16), nil, num(20), record.InterpretationHigh, false},
		{"below critical", num(6.5), "", num(12), num(16), num(7), num(20), record.InterpretationCritical, true},
		{"above critical", num(7.1), "", num(3.5), num(5.1), num(2.5), num(6.5), record.InterpretationCritical, true},
		{"critical without reference range", num(1.9), "", nil, nil, num(2.2), nil, record.InterpretationCritical, true},
		{"only an upper limit, below it", num(3), "", nil, num(5), nil, nil, record.InterpretationNormal, false},
		{"only a lower limit, below it", num(3), "", num(5), nil, nil, nil, record.InterpretationLow, false},
		{"no range", num(42), "", nil, nil, nil, nil, "", false},
		{"negative value below range", num(-3), "", num(-2), num(2), nil, nil, record.InterpretationLow, false},
		{"text value", nil, "positive", nil, nil, nil, nil, "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newChart(t)
			unit := ""
			if tc.value != nil {
				unit = "mmol/L"
			}
			id := do(t, c, labTech, t0.Add(time.Minute), record.RecordLabResult{Test: "Test", Value: tc.value, TextValue: tc.text, Unit: unit,
				RefLow: tc.refLo, RefHigh: tc.refHi, CriticalLow: tc.critLo, CriticalHigh: tc.critHi, SpecimenAt: t0.Add(-time.Hour)})
			v := view(t, c)
			l, ok := findLab(v, id)
			require.True(t, ok)
			assert.Equal(t, tc.want, l.Interpretation)
			assert.Equal(t, tc.value, l.Value)
			assert.Equal(t, tc.text, l.TextValue)
			assert.Equal(t, tc.refLo, l.RefLow)
			assert.Equal(t, tc.critHi, l.CriticalHigh)
			assert.True(t, l.SpecimenAt.Equal(t0.Add(-time.Hour)))
			assert.Equal(t, record.StatusFinal, l.Status, "a result is final unless said otherwise")
			alerts := alertsOf(v, record.AlertCriticalLab)
			if tc.wantCriticalLabAlert {
				require.Len(t, alerts, 1)
				assert.Equal(t, []string{id}, alerts[0].Entries)
				assert.Equal(t, "high", alerts[0].Severity)
			} else {
				assert.Empty(t, alerts)
			}
		})
	}
}

func TestLabResultCorrectionKeepsEarlierValues(t *testing.T) {
	c := newChart(t)
	recAt := t0.Add(time.Minute)
	id := do(t, c, labTech, recAt, record.RecordLabResult{Test: "Potassium", Value: record.Ptr(7.2), Unit: "mmol/L",
		RefLow: record.Ptr(3.5), RefHigh: record.Ptr(5.1), CriticalHigh: record.Ptr(6.5), SpecimenAt: t0, Status: record.StatusPreliminary})
	l, _ := findLab(view(t, c), id)
	assert.Equal(t, record.InterpretationCritical, l.Interpretation)
	assert.Empty(t, l.Previous)

	do(t, c, labTech, t0.Add(2*time.Minute), record.FinalizeLabResult{LabResultID: id})
	corrAt := t0.Add(3 * time.Minute)
	do(t, c, doctor, corrAt, record.CorrectLabResult{LabResultID: id, Value: record.Ptr(4.4), Reason: "haemolysed sample, redrawn"})
	v := view(t, c)
	l, ok := findLab(v, id)
	require.True(t, ok)
	assert.Equal(t, 4.4, *l.Value)
	assert.Equal(t, record.StatusCorrected, l.Status)
	assert.Equal(t, "haemolysed sample, redrawn", l.StatusReason)
	assert.Equal(t, record.InterpretationNormal, l.Interpretation, "the interpretation follows the corrected value")
	assert.Empty(t, alertsOf(v, record.AlertCriticalLab), "the corrected value is not critical")
	require.Len(t, l.Previous, 1)
	assert.Equal(t, "7.2", l.Previous[0].Value)
	assert.Equal(t, labTech, l.Previous[0].By)
	assert.True(t, l.Previous[0].At.Equal(recAt))
	assert.Equal(t, labTech, l.RecordedBy)

	// A second correction, to a text value, keeps both earlier values in order.
	do(t, c, doctor, t0.Add(4*time.Minute), record.CorrectLabResult{LabResultID: id, TextValue: "sample lost", Reason: "tube broke"})
	l, _ = findLab(view(t, c), id)
	assert.Nil(t, l.Value)
	assert.Equal(t, "sample lost", l.TextValue)
	assert.Empty(t, l.Interpretation)
	require.Len(t, l.Previous, 2)
	assert.Equal(t, []string{"7.2", "4.4"}, []string{l.Previous[0].Value, l.Previous[1].Value})
	assert.Equal(t, doctor, l.Previous[1].By)
	assert.True(t, l.Previous[1].At.Equal(corrAt))
	assert.Equal(t, "mmol/L", l.Unit, "a correction without a unit keeps the unit")
}

func TestEncountersAndNotes(t *testing.T) {
	c := newChart(t)
	at := time.Date(2026, 3, 5, 22, 30, 0, 0, time.UTC)
	id := do(t, c, nurse, at, record.AddEncounter{Clinician: "Amina Okafor", Complaint: "diarrhoea",
		Vitals: record.Vitals{BPSystolic: 100, BPDiastolic: 60, Pulse: 110, Temperature: 37.9, Weight: 14.2, Height: 96, SpO2: 97},
		Note:   "Three loose stools today."})
	e, ok := findEncounter(view(t, c), id)
	require.True(t, ok)
	assert.Equal(t, record.Encounter{ID: id, Date: "2026-03-05", Clinician: "Amina Okafor", Complaint: "diarrhoea",
		Vitals: record.Vitals{BPSystolic: 100, BPDiastolic: 60, Pulse: 110, Temperature: 37.9, Weight: 14.2, Height: 96, SpO2: 97},
		Note:   "Three loose stools today.", Recorded: record.Recorded{RecordedAt: at, RecordedBy: nurse}}, e, "an encounter without a date is dated the day it is recorded")

	do(t, c, nurse, at.Add(time.Minute), record.EditNote{EncounterID: id, Pos: 0, Delete: 5, Insert: "Four"})
	do(t, c, doctor, at.Add(2*time.Minute), record.EditNote{EncounterID: id, Pos: utf8.RuneCountInString("Four loose stools today."), Insert: " ORS given — 500 ml."})
	do(t, c, doctor, at.Add(3*time.Minute), record.EditNote{EncounterID: id, Pos: utf8.RuneCountInString("Four loose stools today. ORS given — 500 ml."), Insert: " Review in 24 h."})
	e, _ = findEncounter(view(t, c), id)
	assert.Equal(t, "Four loose stools today. ORS given — 500 ml. Review in 24 h.", e.Note,
		"positions count characters, not bytes: the em dash is one")
}

// TestEnteredInError marks one entry of every kind entered in error: it
// leaves its list, appears in EnteredInError with who, when and why, and
// stays in the history and in earlier versions.
func TestEnteredInError(t *testing.T) {
	f := newFixture(t)
	cases := []struct {
		kind string
		id   string
		in   func(v record.View, id string) bool
	}{
		{record.KindAllergy, f.allergy, func(v record.View, id string) bool { _, ok := findAllergy(v, id); return ok }},
		{record.KindDiagnosis, f.diagnosis, func(v record.View, id string) bool { _, ok := findDiagnosis(v, id); return ok }},
		{record.KindPrescription, f.rxOnHold, func(v record.View, id string) bool { _, ok := findRx(v, id); return ok }},
		{record.KindLabResult, f.labPrelim, func(v record.View, id string) bool { _, ok := findLab(v, id); return ok }},
		{record.KindEncounter, f.encounter, func(v record.View, id string) bool { _, ok := findEncounter(v, id); return ok }},
	}
	for _, tc := range cases {
		t.Run(tc.kind, func(t *testing.T) {
			before := view(t, f.chart)
			require.True(t, tc.in(before, tc.id))
			at := f.tick()
			res, err := f.chart.Do(doctor, at, record.MarkEnteredInError{EntryID: tc.id, Reason: "recorded on the wrong chart"})
			require.NoError(t, err)
			require.Equal(t, tc.id, res.EntryID)
			v := view(t, f.chart)
			assert.False(t, tc.in(v, tc.id), "the entry is still listed")
			e, ok := findError(v, tc.id)
			require.True(t, ok, "the entry is not in EnteredInError")
			assert.Equal(t, tc.kind, e.Kind)
			assert.Equal(t, "recorded on the wrong chart", e.Reason)
			assert.Equal(t, doctor, e.By)
			assert.True(t, e.At.Equal(at))
			assert.NotEmpty(t, e.Label)
			assert.Len(t, v.History, len(before.History)+1, "marking adds to the history and removes nothing")
			var created, marked bool
			for _, h := range v.History {
				created = created || (h.EntryID == tc.id && h.Op != "mark-entered-in-error")
				marked = marked || (h.EntryID == tc.id && h.Change == res.Change.Hash)
			}
			assert.True(t, created, "the entry's creation left the history")
			assert.True(t, marked, "the marking is not in the history")
			old, err := f.chart.ViewAt(before.Heads)
			require.NoError(t, err)
			assert.Equal(t, before, old, "the version before the marking still shows the entry")
		})
	}
}

func TestResolveConflict(t *testing.T) {
	f := newFixture(t)
	v := view(t, f.chart)
	dose, _ := findConflict(v, f.rxActive, "dose")
	require.Len(t, dose.Values, 2)
	assert.False(t, dose.Automatic)

	res := f.do(t, doctor, record.ResolveConflict{EntryID: f.rxActive, Field: "dose", Value: "750"})
	assert.Equal(t, f.rxActive, res)
	v = view(t, f.chart)
	_, ok := findConflict(v, f.rxActive, "dose")
	assert.False(t, ok, "the dose conflict is settled")
	p, _ := findRx(v, f.rxActive)
	assert.Equal(t, 750.0, p.Dose)
	_, ok = findConflict(v, f.patient, "village")
	assert.True(t, ok, "the other conflict is untouched")

	// Keeping a value that is not the one shown is allowed too.
	village, _ := findConflict(v, f.patient, "village")
	keep := f.conflictedVillageOptions[0]
	if keep == village.Shown {
		keep = f.conflictedVillageOptions[1]
	}
	f.do(t, registry, record.ResolveConflict{EntryID: f.patient, Field: "village", Value: keep})
	v = view(t, f.chart)
	assert.Empty(t, v.Conflicts)
	assert.Equal(t, keep, v.Patient.Village)
	assert.Equal(t, "resolve-conflict", v.History[len(v.History)-1].Op)
}

// Writes that this package did not make (a damaged or foreign change) are
// ignored and counted, and the chart around them still reads.
func TestForeignWritesAreCountedNotShown(t *testing.T) {
	c := newChart(t)
	rx := do(t, c, doctor, t0.Add(time.Minute), record.Prescribe{Drug: "Amoxicillin", Dose: 500, DoseUnit: "mg", Route: "oral", Frequency: "TDS"})
	before := view(t, c)
	foreign := map[string]string{
		"junk-1": "not json",
		"junk-2": `{"k":"martian","e":"` + uuid.NewString() + `","f":"colour","v":"green","t":1}`,
		"junk-3": `{"k":"prescription","e":"","f":"dose","v":"1","t":1}`,
		"junk-4": `{"k":"allergy","e":"` + rx + `","f":"substance","v":"Peanut","t":9999999999999}`,
		"junk-5": `[1,2,3]`,
	}
	ch, err := c.Doc().Edit("written by another program", t0.Add(time.Hour), func(tx *crdt.Tx) error {
		for k, v := range foreign {
			if err := tx.Put([]string{"w"}, k, v); err != nil {
				return err
			}
		}
		return tx.Put([]string{"notes"}, "stray", "a string, not text")
	})
	require.NoError(t, err)
	v := view(t, c)
	assert.Equal(t, len(foreign), v.Unreadable)
	assert.Equal(t, before.Prescriptions, v.Prescriptions, "foreign writes changed the prescriptions")
	assert.Equal(t, before.Patient, v.Patient)
	assert.Empty(t, v.Allergies)
	last := v.History[len(v.History)-1]
	assert.Equal(t, ch.Hash, last.Change)
	assert.Equal(t, "unknown", last.Op, "a change without a chart message is listed as unknown")

	// The chart still takes operations.
	do(t, c, doctor, t0.Add(2*time.Hour), record.ReviseDose{PrescriptionID: rx, Dose: 250})
	p, _ := findRx(view(t, c), rx)
	assert.Equal(t, 250.0, p.Dose)
}

// A Chart is safe for concurrent use: operations, views and a sync engine
// applying changes to its document at once.
func TestChartIsSafeForConcurrentUse(t *testing.T) {
	c := newChart(t)
	peer := fork(t, c)
	rx := do(t, peer, doctor, t0.Add(time.Minute), record.Prescribe{Drug: "Amoxicillin", Dose: 500, DoseUnit: "mg", Route: "oral", Frequency: "TDS"})
	peerChanges, err := peer.Doc().Changes(c.Doc().Heads())
	require.NoError(t, err)

	const writers, each = 4, 5
	var wg sync.WaitGroup
	errs := make(chan error, writers*each+10+1)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				_, err := c.Do(nurse, t0.Add(time.Duration(w*each+i)*time.Second), record.AddEncounter{Complaint: fmt.Sprintf("visit %d-%d", w, i)})
				errs <- err
			}
		}()
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		for range 10 {
			_, err := c.View()
			errs <- err
		}
	}()
	go func() {
		defer wg.Done()
		_, err := c.Doc().Apply(peerChanges...)
		errs <- err
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	v := view(t, c)
	assert.Len(t, v.Encounters, writers*each, "every concurrent write is kept")
	_, ok := findRx(v, rx)
	assert.True(t, ok, "the change applied meanwhile is shown")
	assert.Len(t, v.History, 1+1+writers*each)
}

// Reactivating an allergy after "no known allergies" was recorded
// withdraws the statement, as recording a new allergy does: nothing was
// concurrent, so there is nothing for a clinician to confirm.
func TestReactivatedAllergyWithdrawsNoKnownAllergies(t *testing.T) {
	c := newChart(t)
	id := do(t, c, nurse, t0.Add(time.Minute), record.AddAllergy{Substance: "Penicillin", Severity: "mild"})
	do(t, c, doctor, t0.Add(2*time.Minute), record.UpdateAllergy{AllergyID: id, Status: record.Ptr(record.StatusResolved)})
	do(t, c, doctor, t0.Add(3*time.Minute), record.RecordNoKnownAllergies{})
	require.True(t, view(t, c).NoKnownAllergies)

	do(t, c, doctor, t0.Add(4*time.Minute), record.UpdateAllergy{AllergyID: id, Status: record.Ptr(record.StatusActive), Reason: "rash again"})
	v := view(t, c)
	assert.False(t, v.NoKnownAllergies)
	assert.Empty(t, v.Alerts, "a sequential reactivation raised an alert meant for concurrent edits")
	assert.Empty(t, v.Conflicts)
	// With the allergy resolved again, the statement does not come back.
	do(t, c, doctor, t0.Add(5*time.Minute), record.UpdateAllergy{AllergyID: id, Status: record.Ptr(record.StatusResolved)})
	assert.False(t, view(t, c).NoKnownAllergies)
}
