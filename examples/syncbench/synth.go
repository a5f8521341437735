package main

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/chartsync/chartsync/record"
	"github.com/google/uuid"
)

// Synthetic but realistic charts: a registration and a handful of
// clinical entries, written by a few staff over some months.

var (
	givenNames  = []string{"Amina", "Wanjiru", "Baraka", "Otieno", "Fatuma", "Chinedu", "Ngozi", "Kofi", "Ama", "Thabo", "Lerato", "Sipho", "Priya", "Ravi", "Asha", "Juma", "Halima", "Tendai", "Rudo", "Kwame"}
	familyNames = []string{"Mwangi", "Okafor", "Odhiambo", "Njeri", "Mensah", "Dlamini", "Nkosi", "Patel", "Sharma", "Banda", "Phiri", "Moyo", "Kamau", "Achieng", "Owusu", "Diallo", "Traore", "Mutua", "Wekesa", "Chege"}
	villages    = []string{"Kamuga", "Lwanda", "Nyahera", "Kisian", "Ojola", "Usoma", "Rota", "Kanyakwar", "Mamboleo", "Kogony"}
	drugs       = []struct {
		name, unit, route, freq string
		dose                    float64
	}{
		{"Amoxicillin", "mg", "oral", "TDS", 500}, {"Paracetamol", "mg", "oral", "QID", 1000},
		{"Artemether-lumefantrine", "tablet", "oral", "BD", 4}, {"Metformin", "mg", "oral", "BD", 500},
		{"Amlodipine", "mg", "oral", "OD", 5}, {"Cotrimoxazole", "mg", "oral", "OD", 960},
		{"Ferrous sulphate", "mg", "oral", "OD", 200}, {"ORS", "sachet", "oral", "PRN", 1},
		{"Zinc", "mg", "oral", "OD", 20}, {"Ibuprofen", "mg", "oral", "TDS", 400},
	}
	diagnoses = []struct{ code, text string }{
		{"B54", "Malaria, unspecified"}, {"J18.9", "Pneumonia"}, {"I10", "Essential hypertension"},
		{"E11.9", "Type 2 diabetes mellitus"}, {"A09", "Diarrhoea and gastroenteritis"},
		{"D50.9", "Iron deficiency anaemia"}, {"J06.9", "Upper respiratory infection"},
	}
	complaints = []string{"fever for three days", "cough and fast breathing", "headache and dizziness",
		"follow-up of blood pressure", "diarrhoea", "tiredness", "antenatal visit"}
	staff = []record.Author{
		{UserID: "u-nurse-1", Name: "Nurse Achieng", Role: record.RoleNurse, Device: "tablet-1"},
		{UserID: "u-co-1", Name: "Clinical Officer Mutua", Role: record.RoleClinician, Device: "laptop-1"},
		{UserID: "u-lab-1", Name: "Lab Tech Wekesa", Role: record.RoleLabTechnician, Device: "lab-pc"},
	}
)

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

// newChart builds one chart as replica actor would have.
func newChart(r *rand.Rand, actor string, clinic string, base time.Time) (*record.Chart, error) {
	at := base.Add(-time.Duration(r.IntN(180*24)) * time.Hour)
	id := uuid.Must(uuid.NewRandomFromReader(randReader{r})).String()
	c, _, err := record.New(id, actor, staff[0], at, record.Register{
		GivenName: pick(r, givenNames), FamilyName: pick(r, familyNames),
		Sex: pick(r, []string{"female", "male"}), EstimatedBirthYear: 1950 + r.IntN(70),
		Village: pick(r, villages), Phone: fmt.Sprintf("+2547%08d", r.IntN(100000000)), HomeClinic: clinic,
	})
	if err != nil {
		return nil, err
	}
	do := func(by record.Author, op record.Op) (record.Result, error) {
		at = at.Add(time.Duration(1+r.IntN(90)) * time.Minute)
		return c.Do(by, at, op)
	}
	if r.IntN(3) == 0 {
		if _, err := do(staff[0], record.AddAllergy{Substance: pick(r, []string{"Penicillin", "Sulfa drugs", "Peanuts", "Aspirin"}), Severity: pick(r, []string{"mild", "moderate", "severe"}), Reaction: "rash"}); err != nil {
			return nil, err
		}
	} else if _, err := do(staff[0], record.RecordNoKnownAllergies{}); err != nil {
		return nil, err
	}
	for range 1 + r.IntN(2) {
		if _, err := do(staff[1], record.AddEncounter{
			Complaint: pick(r, complaints), Clinician: staff[1].Name,
			Vitals: record.Vitals{BPSystolic: float64(100 + r.IntN(60)), BPDiastolic: float64(60 + r.IntN(30)), Pulse: float64(60 + r.IntN(50)), Temperature: 36 + float64(r.IntN(30))/10, Weight: float64(40 + r.IntN(50))},
			Note:   "Patient seen and examined. Advised to return if symptoms persist.",
		}); err != nil {
			return nil, err
		}
		d := pick(r, diagnoses)
		if _, err := do(staff[1], record.Diagnose{Code: d.code, Text: d.text}); err != nil {
			return nil, err
		}
		dr := pick(r, drugs)
		if _, err := do(staff[1], record.Prescribe{Drug: dr.name, Dose: dr.dose, DoseUnit: dr.unit, Route: dr.route, Frequency: dr.freq, DurationDays: 3 + r.IntN(10)}); err != nil {
			return nil, err
		}
	}
	if r.IntN(2) == 0 {
		if _, err := do(staff[2], record.RecordLabResult{
			Test: "Haemoglobin", LOINC: "718-7", Value: record.Ptr(7 + float64(r.IntN(90))/10), Unit: "g/dL",
			RefLow: record.Ptr(12.0), RefHigh: record.Ptr(16.0), CriticalLow: record.Ptr(7.0), SpecimenAt: at,
		}); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// randReader feeds uuid from the seeded generator, so runs are repeatable.
type randReader struct{ r *rand.Rand }

func (rr randReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(rr.r.Uint32())
	}
	return len(p), nil
}

// clerk keeps the demographics in the long chart.
var clerk = record.Author{UserID: "u-clerk-1", Name: "Clerk Njeri", Role: record.RoleRegistrationClerk, Device: "front-desk"}

// longChart builds one chart, registered to clinic by actor, and edits it
// edits times as a clinic would over years of visits: encounters and
// additions to their notes, diagnoses and their statuses, prescriptions
// with dose revisions and discontinuations, lab results finalised and
// corrected, allergies and demographic updates. Each edit is one change,
// by a role allowed to make it. step, if set, is called every 500 edits;
// cancelled, if set, is asked every 100 edits whether to give up. The
// history starts at start, a few hours apart an edit (10,000 edits span
// about six years), each made with its own time as the device's clock:
// start must be after record.ReleaseDate, or the edits would be made with
// a clock record takes to be wrong.
func longChart(r *rand.Rand, actor, clinic string, start time.Time, edits int, step func(done int), cancelled func() error) (*record.Chart, error) {
	at := start
	id := uuid.Must(uuid.NewRandomFromReader(randReader{r})).String()
	c, _, err := record.New(id, actor, clerk, at, record.Register{
		GivenName: pick(r, givenNames), FamilyName: pick(r, familyNames), Sex: "female", EstimatedBirthYear: 1960,
		Village: pick(r, villages), Phone: "+254700000000", HomeClinic: clinic,
	})
	if err != nil {
		return nil, err
	}
	var (
		active, labsPrelim, labsFinal, diags []string
		notes                                = map[string]int{} // encounter ID → note length
		encounters                           []string
	)
	// take removes a random element of *xs and returns it.
	take := func(xs *[]string) string {
		i := r.IntN(len(*xs))
		x := (*xs)[i]
		*xs = append((*xs)[:i], (*xs)[i+1:]...)
		return x
	}
	for done := 0; done < edits; {
		at = at.Add(time.Duration(10+r.IntN(600)) * time.Minute)
		var (
			by   = staff[1]
			op   record.Op
			keep func(entry string)
		)
		switch k := r.IntN(20); {
		case k < 3 || len(encounters) == 0:
			note := "Seen. " + pick(r, complaints) + "."
			op = record.AddEncounter{Complaint: pick(r, complaints), Clinician: staff[1].Name, Note: note,
				Vitals: record.Vitals{BPSystolic: float64(100 + r.IntN(60)), BPDiastolic: float64(60 + r.IntN(30)), Pulse: float64(60 + r.IntN(50)), Temperature: 36 + float64(r.IntN(30))/10, Weight: float64(40 + r.IntN(50))}}
			keep = func(e string) { encounters = append(encounters, e); notes[e] = len(note) }
		case k < 6:
			enc := encounters[len(encounters)-1-r.IntN(min(3, len(encounters)))]
			add := " Reviewed: " + pick(r, []string{"improving", "no change", "better, continue", "return in a week", "advised fluids and rest"}) + "."
			by, op = staff[0], record.EditNote{EncounterID: enc, Pos: notes[enc], Insert: add}
			notes[enc] += len(add)
		case k < 8:
			d := pick(r, diagnoses)
			op = record.Diagnose{Code: d.code, Text: d.text}
			keep = func(e string) { diags = append(diags, e) }
		case k < 9 && len(diags) > 0:
			op = record.ChangeDiagnosisStatus{DiagnosisID: take(&diags), ClinicalStatus: "resolved", VerificationStatus: "confirmed", Reason: "treated"}
		case k < 11 && len(active) < 8:
			dr := pick(r, drugs)
			op = record.Prescribe{Drug: dr.name, Dose: dr.dose, DoseUnit: dr.unit, Route: dr.route, Frequency: dr.freq, DurationDays: 3 + r.IntN(10)}
			keep = func(e string) { active = append(active, e) }
		case k < 13 && len(active) > 0:
			op = record.ReviseDose{PrescriptionID: active[r.IntN(len(active))], Dose: float64(1 + r.IntN(1000)), Reason: "weight-based adjustment"}
		case k < 14 && len(active) > 0:
			by, op = staff[0], record.Discontinue{PrescriptionID: take(&active), Reason: pick(r, []string{"course finished", "side effects", "no longer needed"})}
		case k < 16:
			op = record.RecordLabResult{Test: "Haemoglobin", LOINC: "718-7", Value: record.Ptr(7 + float64(r.IntN(90))/10), Unit: "g/dL",
				RefLow: record.Ptr(12.0), RefHigh: record.Ptr(16.0), CriticalLow: record.Ptr(7.0), SpecimenAt: at, Status: "preliminary"}
			by, keep = staff[2], func(e string) { labsPrelim = append(labsPrelim, e) }
		case k < 17 && len(labsPrelim) > 0:
			lab := take(&labsPrelim)
			by, op = staff[2], record.FinalizeLabResult{LabResultID: lab}
			labsFinal = append(labsFinal, lab)
			if len(labsFinal) > 20 {
				labsFinal = labsFinal[1:]
			}
		case k < 18 && len(labsFinal) > 0:
			by, op = staff[2], record.CorrectLabResult{LabResultID: labsFinal[r.IntN(len(labsFinal))], Value: record.Ptr(7 + float64(r.IntN(90))/10), Reason: "transcription error"}
		case k < 19:
			phone, village := fmt.Sprintf("+2547%08d", r.IntN(100000000)), pick(r, villages)
			by, op = clerk, record.UpdateDemographics{Phone: &phone, Village: &village}
		default:
			by, op = staff[0], record.AddAllergy{Substance: pick(r, []string{"Penicillin", "Sulfa drugs", "Peanuts", "Aspirin", "Latex"}), Severity: pick(r, []string{"mild", "moderate", "severe"}), Reaction: "rash"}
		}
		res, err := c.Do(by, at, op)
		if err != nil {
			return nil, fmt.Errorf("edit %d (%T): %w", done+1, op, err)
		}
		if keep != nil {
			keep(res.EntryID)
		}
		done++
		if step != nil && done%500 == 0 {
			step(done)
		}
		if cancelled != nil && done%100 == 0 {
			if err := cancelled(); err != nil {
				return nil, err
			}
		}
	}
	return c, nil
}
