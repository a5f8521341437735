package fhir_test

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/record"
)

var (
	t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

	nurse    = record.Author{UserID: "u-amina", Name: "Amina Okafor", Role: record.RoleNurse, Device: "tablet-1"}
	doctor   = record.Author{UserID: "u-baraka", Name: "Dr Baraka", Role: record.RoleClinician, Device: "laptop-2"}
	labTech  = record.Author{UserID: "u-chege", Name: "Chege", Role: record.RoleLabTechnician, Device: "lab-pc"}
	registry = record.Author{UserID: "u-esi", Name: "Esi", Role: record.RoleRegistrationClerk, Device: "desk-1"}
	importer = record.Author{UserID: "u-ifeoma", Name: "Dr Ifeoma", Role: record.RoleClinician, Device: "laptop-9"}
)

// seeded makes the IDs record gives entries deterministic while fn runs,
// so that a sample chart exports to the same bytes on every run.
func seeded(seed uint64, fn func()) {
	var key [32]byte
	key[0] = byte(seed)
	uuid.SetRand(rand.NewChaCha8(key))
	defer uuid.SetRand(nil)
	fn()
}

type sample struct {
	name  string
	chart func(t *testing.T) *record.Chart
}

// samples are the charts of the golden files.
var samples = []sample{
	{"registration", registrationChart},
	{"clinical", clinicalChart},
	{"merged", mergedChart},
}

type builder struct {
	t     *testing.T
	chart *record.Chart
	clock time.Time
}

func (b *builder) do(by record.Author, op record.Op) string {
	b.t.Helper()
	b.clock = b.clock.Add(time.Minute)
	res, err := b.chart.Do(by, b.clock, op)
	require.NoError(b.t, err, "sample chart: %T %+v refused", op, op)
	return res.EntryID
}

func newBuilder(t *testing.T, seed uint64, reg record.Register) *builder {
	t.Helper()
	var c *record.Chart
	seeded(seed, func() {
		var err error
		c, _, err = record.New(uuid.NewString(), "aa01", registry, t0, reg)
		require.NoError(t, err, "registering the sample patient")
	})
	return &builder{t: t, chart: c, clock: t0}
}

// registrationChart is a patient just registered: identifiers, "no known
// allergies" and a first visit with vital signs.
func registrationChart(t *testing.T) *record.Chart {
	b := newBuilder(t, 1, record.Register{
		GivenName: "Wanjiru", FamilyName: "Mwangi", Sex: "female", EstimatedBirthYear: 1988,
		Village: "Kamuga", Phone: "+254712345678", HomeClinic: "kamuga-dispensary", Guardian: "Njeri Mwangi",
		Identifiers: []record.Identifier{
			{System: record.SystemABHA, Value: "12345678901234"},
			{System: record.SystemClinic, Value: "KMG-0042"},
		},
	})
	seeded(11, func() {
		b.do(registry, record.AddIdentifier{System: record.SystemPhone, Value: "+254700000001"})
		id := b.chart
		v, err := id.View()
		require.NoError(t, err)
		b.do(registry, record.RemoveIdentifier{IdentifierID: v.Patient.Identifiers[2].ID, Reason: "number given up"})
		b.do(nurse, record.RecordNoKnownAllergies{})
		b.do(nurse, record.AddEncounter{Date: "2026-03-02", Clinician: "Amina Okafor", Complaint: "antenatal booking",
			Vitals: record.Vitals{BPSystolic: 118, BPDiastolic: 76, Pulse: 84, Weight: 61.5, Height: 162}})
	})
	return b.chart
}

// clinicalChart holds an entry of every kind in several statuses, coded
// and uncoded drugs, numeric and text lab results.
func clinicalChart(t *testing.T) *record.Chart {
	b := newBuilder(t, 2, record.Register{
		GivenName: "Baraka", FamilyName: "Otieno", Sex: "male", BirthDate: "1975-06-14",
		Village: "Siaya", Address: "Plot 7, Market Road", HomeClinic: "siaya-health-centre",
		NationalID:  "23456789",
		Identifiers: []record.Identifier{{System: record.SystemNationalID, Value: "23456789"}},
	})
	seeded(12, func() {
		b.do(nurse, record.AddAllergy{Substance: "Penicillin", Reaction: "rash", Severity: "moderate"})
		peanut := b.do(nurse, record.AddAllergy{Substance: "Sulfonamides", Reaction: "anaphylaxis", Severity: "life-threatening"})
		b.do(doctor, record.UpdateAllergy{AllergyID: peanut, Status: record.Ptr(record.StatusInactive), Reason: "tolerated since"})
		b.do(doctor, record.Diagnose{Code: "E11.9", Text: "Type 2 diabetes", Onset: "2019-04-01", ClinicalStatus: record.ClinicalActive,
			VerificationStatus: "confirmed", Note: "diet and metformin"})
		b.do(doctor, record.Diagnose{Code: "B54", Text: "Malaria", ClinicalStatus: "resolved", VerificationStatus: "confirmed"})
		b.do(doctor, record.Diagnose{Text: "Hypertension", ClinicalStatus: "active", VerificationStatus: "provisional"})
		b.do(doctor, record.Prescribe{Drug: "Metformin", Dose: 500, DoseUnit: "mg", Route: "oral", Frequency: "BD",
			Start: "2026-03-02", Instructions: "with food"})
		hold := b.do(doctor, record.Prescribe{Drug: "Panadol", Dose: 1, DoseUnit: "g", Route: "oral", Frequency: "PRN", DurationDays: 5})
		b.do(doctor, record.PutOnHold{PrescriptionID: hold, Reason: "liver tests pending"})
		stop := b.do(doctor, record.Prescribe{Drug: "Ciprofloxacin", Dose: 500, DoseUnit: "mg", Route: "oral", Frequency: "BD", DurationDays: 7})
		b.do(doctor, record.Discontinue{PrescriptionID: stop, Reason: "tendon pain"})
		done := b.do(doctor, record.Prescribe{Drug: "Albendazole", Dose: 400, DoseUnit: "mg", Route: "oral", Frequency: "STAT"})
		b.do(doctor, record.Complete{PrescriptionID: done})
		b.do(doctor, record.Prescribe{Drug: "Moringa leaf tea", Dose: 1, DoseUnit: "sachet", Route: "oral", Frequency: "OD"})
		b.do(labTech, record.RecordLabResult{Test: "Haemoglobin", LOINC: "718-7", Value: record.Ptr(9.1), Unit: "g/dL",
			RefLow: record.Ptr(12.0), RefHigh: record.Ptr(16.0), CriticalLow: record.Ptr(7.0), SpecimenAt: t0})
		b.do(labTech, record.RecordLabResult{Test: "HIV viral load", LOINC: "25836-8", TextValue: "<1000 copies/mL",
			RefText: "<1000 copies/mL", SpecimenAt: t0, Status: record.StatusPreliminary})
		b.do(labTech, record.RecordLabResult{Test: "Malaria RDT", TextValue: "positive", RefText: "negative",
			AbnormalTexts: []string{"positive"}, CriticalTexts: []string{"severe"}, SpecimenAt: t0})
		b.do(nurse, record.AddEncounter{Date: "2026-03-02", Clinician: "Dr Baraka", Complaint: "fever and joint pain",
			Vitals: record.Vitals{Temperature: 38.6, Pulse: 102, SpO2: 97}, Note: "Fever for 3 days. RDT positive."})
	})
	return b.chart
}

// mergedChart holds what two devices left: fields in conflict, entries
// entered in error, a corrected result, entries imported from elsewhere.
func mergedChart(t *testing.T) *record.Chart {
	b := newBuilder(t, 3, record.Register{
		GivenName: "Amina", FamilyName: "Hassan", Sex: "female", EstimatedBirthYear: 2001,
		Village: "Kamuga", HomeClinic: "kamuga-dispensary",
		Identifiers: []record.Identifier{{System: record.SystemAadhaar, Value: "234567890124"}},
	})
	var rx string
	seeded(13, func() {
		rx = b.do(doctor, record.Prescribe{Drug: "Amoxicillin", Dose: 500, DoseUnit: "mg", Route: "oral", Frequency: "TDS",
			DurationDays: 5, ExternalID: record.Identifier{System: "https://emr.example.org/orders", Value: "RX-981"}})
		wrong := b.do(doctor, record.Prescribe{Drug: "Ibuprofen", Dose: 400, DoseUnit: "mg", Route: "oral", Frequency: "TDS"})
		b.do(doctor, record.MarkEnteredInError{EntryID: wrong, Reason: "wrong patient"})
		hb := b.do(labTech, record.RecordLabResult{Test: "Haemoglobin", LOINC: "718-7", Value: record.Ptr(9.1), Unit: "g/dL",
			RefLow: record.Ptr(12.0), RefHigh: record.Ptr(16.0), CriticalLow: record.Ptr(7.0), SpecimenAt: t0})
		b.do(labTech, record.CorrectLabResult{LabResultID: hb, Value: record.Ptr(10.5), Reason: "re-run"})
		b.do(nurse, record.AddAllergy{Substance: "Latex", Severity: "mild", ExternalID: record.Identifier{System: "clinic", Value: "A17"}})
	})
	var other *record.Chart
	seeded(14, func() {
		d, err := b.chart.Doc().Fork(nil, "bb02")
		require.NoError(t, err)
		other, err = record.Open(d)
		require.NoError(t, err)
		b.do(doctor, record.ReviseDose{PrescriptionID: rx, Dose: 250, Reason: "renal function"})
		b.do(registry, record.UpdateDemographics{Village: record.Ptr("Kamuga North")})
		b.clock = b.clock.Add(time.Minute)
		_, err = other.Do(nurse, b.clock, record.ReviseDose{PrescriptionID: rx, Dose: 1000, Reason: "severe infection"})
		require.NoError(t, err)
		b.clock = b.clock.Add(time.Minute)
		_, err = other.Do(nurse, b.clock, record.UpdateDemographics{Village: record.Ptr("Kamuga South")})
		require.NoError(t, err)
		_, err = b.chart.Doc().Merge(other.Doc())
		require.NoError(t, err)
	})
	v, err := b.chart.View()
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(v.Conflicts), 2, "sample: the dose and the village are in conflict")
	return b.chart
}
