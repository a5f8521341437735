package record_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/record"
)

// fixture is a chart holding an entry in every status an operation cares
// about, and two fields left in conflict by concurrent edits.
type fixture struct {
	chart *record.Chart
	clock time.Time

	patient                                  string
	allergy, allergyResolved, allergyEIE     string
	diagnosis, diagnosisEIE                  string
	rxActive, rxOnHold, rxStopped            string
	rxCompleted, rxEIE                       string
	labPrelim, labFinal, labCorrected        string
	labEIE, labText                          string
	encounter, encounterEIE                  string
	encounterNote                            string
	conflictedDose, conflictedVillageOptions []string
}

// tick advances the fixture's clock by a minute and returns it.
func (f *fixture) tick() time.Time {
	f.clock = f.clock.Add(time.Minute)
	return f.clock
}

func (f *fixture) do(t testing.TB, by record.Author, op record.Op) string {
	t.Helper()
	return do(t, f.chart, by, f.tick(), op)
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{chart: newChart(t), clock: t0}
	f.patient = f.chart.ID()
	eie := func(id string) {
		f.do(t, doctor, record.MarkEnteredInError{EntryID: id, Reason: "wrong patient"})
	}

	f.allergy = f.do(t, nurse, record.AddAllergy{Substance: "Penicillin", Reaction: "rash", Severity: "moderate"})
	f.allergyResolved = f.do(t, nurse, record.AddAllergy{Substance: "Peanuts", Severity: "mild"})
	f.do(t, doctor, record.UpdateAllergy{AllergyID: f.allergyResolved, Status: record.Ptr(record.StatusResolved), Reason: "outgrown"})
	f.allergyEIE = f.do(t, nurse, record.AddAllergy{Substance: "Latex", Severity: "mild"})
	eie(f.allergyEIE)

	f.diagnosis = f.do(t, doctor, record.Diagnose{Code: "B54", Text: "Malaria", Onset: "2026-02-27"})
	f.diagnosisEIE = f.do(t, doctor, record.Diagnose{Text: "Typhoid"})
	eie(f.diagnosisEIE)

	rx := func(drug string) string {
		return f.do(t, doctor, record.Prescribe{Drug: drug, Dose: 500, DoseUnit: "mg", Route: "oral", Frequency: "TDS", DurationDays: 5})
	}
	f.rxActive = rx("Paracetamol")
	f.rxOnHold = rx("Metformin")
	f.do(t, doctor, record.PutOnHold{PrescriptionID: f.rxOnHold, Reason: "vomiting"})
	f.rxStopped = rx("Ciprofloxacin")
	f.do(t, doctor, record.Discontinue{PrescriptionID: f.rxStopped, Reason: "tendon pain"})
	f.rxCompleted = rx("Albendazole")
	f.do(t, doctor, record.Complete{PrescriptionID: f.rxCompleted})
	f.rxEIE = rx("Ibuprofen")
	eie(f.rxEIE)

	lab := func(status string) string {
		return f.do(t, labTech, record.RecordLabResult{
			Test: "Haemoglobin", LOINC: "718-7", Value: record.Ptr(11.5), Unit: "g/dL",
			RefLow: record.Ptr(12.0), RefHigh: record.Ptr(16.0), SpecimenAt: t0, Status: status,
		})
	}
	f.labPrelim = lab(record.StatusPreliminary)
	f.labFinal = lab(record.StatusFinal)
	f.labCorrected = lab(record.StatusFinal)
	f.do(t, labTech, record.CorrectLabResult{LabResultID: f.labCorrected, Value: record.Ptr(12.5), Reason: "re-run"})
	f.labEIE = lab(record.StatusFinal)
	eie(f.labEIE)
	f.labText = f.do(t, labTech, record.RecordLabResult{Test: "Malaria RDT", TextValue: "positive", SpecimenAt: t0})

	f.encounterNote = "Fever for 3 days."
	f.encounter = f.do(t, nurse, record.AddEncounter{Date: "2026-03-02", Complaint: "fever", Note: f.encounterNote,
		Vitals: record.Vitals{Temperature: 38.6, Pulse: 102}})
	f.encounterEIE = f.do(t, nurse, record.AddEncounter{Complaint: "cough"})
	eie(f.encounterEIE)

	// Two devices change the active prescription's dose and the village
	// concurrently, leaving both in conflict.
	other := fork(t, f.chart)
	do(t, f.chart, doctor, f.tick(), record.ReviseDose{PrescriptionID: f.rxActive, Dose: 250})
	do(t, other, nurse, f.tick(), record.ReviseDose{PrescriptionID: f.rxActive, Dose: 1000})
	do(t, f.chart, registry, f.tick(), record.UpdateDemographics{Village: record.Ptr("Kamuga North")})
	do(t, other, chw, f.tick(), record.UpdateDemographics{Village: record.Ptr("Kamuga South")})
	merge(t, f.chart, other)
	f.conflictedDose = []string{"250", "1000"}
	f.conflictedVillageOptions = []string{"Kamuga North", "Kamuga South"}

	v := view(t, f.chart)
	_, ok := findConflict(v, f.rxActive, "dose")
	require.True(t, ok, "fixture: the dose is in conflict")
	_, ok = findConflict(v, f.patient, "village")
	require.True(t, ok, "fixture: the village is in conflict")
	return f
}
