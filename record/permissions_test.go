package record_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/record"
)

// matrix is the permission table of the package documentation, written
// out again: the test fails if the code and the documented table part.
var matrix = map[record.Role]string{
	//                                    demo allergy diag rx  lab  enc  ref  merge
	record.RoleClinician:             "Y    Y       Y    Y    Y    Y    Y    Y",
	record.RoleNurse:                 "Y    Y       -    Y    Y    Y    Y    -",
	record.RoleLabTechnician:         "-    -       -    -    Y    -    -    -",
	record.RoleRegistrationClerk:     "Y    -       -    -    -    -    Y    -",
	record.RoleCommunityHealthWorker: "Y    Y       -    -    -    Y    -    -",
	record.RoleAdministrator:         "Y    -       -    -    -    -    Y    Y",
}

var matrixSections = []record.Section{record.SectionDemographics, record.SectionAllergies, record.SectionDiagnoses,
	record.SectionPrescriptions, record.SectionLabResults, record.SectionEncounters, record.SectionReferrals,
	record.SectionMerges}

// documented reports what the table above says of role and s.
func documented(role record.Role, s record.Section) bool {
	var cells []string
	for _, r := range matrix[role] {
		if r == 'Y' || r == '-' {
			cells = append(cells, string(r))
		}
	}
	for i, sec := range matrixSections {
		if sec == s {
			return cells[i] == "Y"
		}
	}
	return false
}

func TestPermittedMatchesDocumentedMatrix(t *testing.T) {
	require.Equal(t, matrixSections, record.Sections(), "the sections are the table's columns")
	require.Len(t, record.Roles(), len(matrix), "every role has a row")
	for _, role := range record.Roles() {
		for _, s := range record.Sections() {
			assert.Equal(t, documented(role, s), record.Permitted(role, s), "may a %s change %s?", role, s)
		}
	}
	assert.False(t, record.Permitted("surgeon", record.SectionDemographics), "an unknown role is permitted nothing")
	assert.False(t, record.Permitted(record.RoleClinician, "billing"), "an unknown section is permitted to no one")
}

func TestRegisterNeedsDemographics(t *testing.T) {
	for _, role := range record.Roles() {
		by := record.Author{UserID: "u-1", Role: role}
		_, _, err := record.New(uuid.NewString(), crdt.NewActorID(), by, t0, baseRegister())
		if documented(role, record.SectionDemographics) {
			assert.NoError(t, err, "a %s registers a patient", role)
			continue
		}
		require.ErrorIs(t, err, record.ErrForbidden, "a %s registered a patient", role)
		var fe *record.ForbiddenError
		require.ErrorAs(t, err, &fe)
		assert.Equal(t, record.ForbiddenError{Role: role, Section: record.SectionDemographics}, *fe)
	}
}

// permOps are one operation of every type, on the fixture, with the
// sections each writes as the package documentation says.
func permOps(f *fixture) []struct {
	name     string
	op       record.Op
	sections []record.Section
} {
	rx := []record.Section{record.SectionPrescriptions}
	lab := []record.Section{record.SectionLabResults}
	return []struct {
		name     string
		op       record.Op
		sections []record.Section
	}{
		{"update demographics", record.UpdateDemographics{Phone: record.Ptr("+254 700 111222")}, []record.Section{record.SectionDemographics}},
		{"resolve conflicting village", record.ResolveConflict{EntryID: f.patient, Field: "village", Value: "Kamuga North"}, []record.Section{record.SectionDemographics}},
		{"add allergy", record.AddAllergy{Substance: "Sulfa", Severity: "severe"}, []record.Section{record.SectionAllergies}},
		{"update allergy", record.UpdateAllergy{AllergyID: f.allergy, Severity: record.Ptr("severe")}, []record.Section{record.SectionAllergies}},
		{"mark allergy entered in error", record.MarkEnteredInError{EntryID: f.allergy, Reason: "other patient"}, []record.Section{record.SectionAllergies}},
		{"diagnose", record.Diagnose{Text: "Pneumonia"}, []record.Section{record.SectionDiagnoses}},
		{"change diagnosis status", record.ChangeDiagnosisStatus{DiagnosisID: f.diagnosis, ClinicalStatus: "resolved"}, []record.Section{record.SectionDiagnoses}},
		{"mark diagnosis entered in error", record.MarkEnteredInError{EntryID: f.diagnosis, Reason: "other patient"}, []record.Section{record.SectionDiagnoses}},
		{"prescribe", record.Prescribe{Drug: "Amoxicillin", Dose: 500, DoseUnit: "mg", Route: "oral", Frequency: "TDS"}, rx},
		{"revise dose", record.ReviseDose{PrescriptionID: f.rxOnHold, Dose: 1000}, rx},
		{"put on hold", record.PutOnHold{PrescriptionID: f.rxActive}, rx},
		{"resume", record.Resume{PrescriptionID: f.rxOnHold}, rx},
		{"discontinue", record.Discontinue{PrescriptionID: f.rxActive, Reason: "rash"}, rx},
		{"complete", record.Complete{PrescriptionID: f.rxActive}, rx},
		{"resolve conflicting dose", record.ResolveConflict{EntryID: f.rxActive, Field: "dose", Value: "250"}, rx},
		{"mark prescription entered in error", record.MarkEnteredInError{EntryID: f.rxActive, Reason: "other patient"}, rx},
		{"record lab result", record.RecordLabResult{Test: "Glucose", Value: record.Ptr(5.4), Unit: "mmol/L", SpecimenAt: t0}, lab},
		{"finalize lab result", record.FinalizeLabResult{LabResultID: f.labPrelim}, lab},
		{"correct lab result", record.CorrectLabResult{LabResultID: f.labFinal, Value: record.Ptr(13.1), Reason: "re-run"}, lab},
		{"mark lab result entered in error", record.MarkEnteredInError{EntryID: f.labFinal, Reason: "haemolysed"}, lab},
		{"add encounter", record.AddEncounter{Complaint: "cough", Note: "dry cough"}, []record.Section{record.SectionEncounters}},
		{"edit note", record.EditNote{EncounterID: f.encounter, Pos: 0, Insert: "Seen with mother. "}, []record.Section{record.SectionEncounters}},
		{"mark encounter entered in error", record.MarkEnteredInError{EntryID: f.encounter, Reason: "other patient"}, []record.Section{record.SectionEncounters}},
		{"refer", record.Refer{ToClinic: "district-hospital", Reason: "x-ray"}, []record.Section{record.SectionReferrals}},
	}
}

// Do makes an operation only for a role that may change every section it
// writes; otherwise it refuses with ErrForbidden and the chart is exactly
// as it was. Whatever Do makes, CheckChange accepts.
func TestDoEnforcesPermissions(t *testing.T) {
	f := newFixture(t)
	for _, tc := range permOps(f) {
		for _, role := range record.Roles() {
			t.Run(tc.name+"/"+string(role), func(t *testing.T) {
				c := fork(t, f.chart)
				at := f.clock.Add(time.Hour)
				got, err := c.Sections(at, tc.op)
				require.NoError(t, err)
				assert.Equal(t, tc.sections, got, "the sections %s writes", tc.name)

				by := record.Author{UserID: "u-" + string(role), Role: role, Device: "dev-1"}
				allowed := true
				for _, s := range tc.sections {
					allowed = allowed && documented(role, s)
				}
				if allowed {
					res, err := c.Do(by, at, tc.op)
					require.NoError(t, err, "a %s may %s", role, tc.name)
					touched, err := checkBoth(t, c.Doc(), res.Change)
					require.NoError(t, err, "CheckChange refused what Do let a %s do", role)
					assert.Equal(t, tc.sections, touched.Sections)
					assert.Equal(t, by, touched.Author)
					return
				}
				err = unchanged(t, c, func() error { _, err := c.Do(by, at, tc.op); return err })
				require.ErrorIs(t, err, record.ErrForbidden, "a %s may not %s", role, tc.name)
				var fe *record.ForbiddenError
				require.ErrorAs(t, err, &fe)
				assert.Equal(t, role, fe.Role)
				assert.Contains(t, tc.sections, fe.Section)
				assert.False(t, documented(role, fe.Section))
			})
		}
	}
}

// "No known allergies" is part of the allergies, though stored on the
// patient: recording an allergy that withdraws it touches only allergies.
func TestNoKnownAllergiesIsAnAllergy(t *testing.T) {
	c := newChart(t)
	ss, err := c.Sections(t0, record.RecordNoKnownAllergies{})
	require.NoError(t, err)
	assert.Equal(t, []record.Section{record.SectionAllergies}, ss)
	_, err = c.Do(registry, t0, record.RecordNoKnownAllergies{})
	require.ErrorIs(t, err, record.ErrForbidden, "a registration clerk recorded no known allergies")
	do(t, c, chw, t0, record.RecordNoKnownAllergies{})
	res, err := c.Do(chw, t0.Add(time.Minute), record.AddAllergy{Substance: "Penicillin", Severity: "severe"})
	require.NoError(t, err)
	touched, err := checkBoth(t, c.Doc(), res.Change)
	require.NoError(t, err)
	assert.Equal(t, []record.Section{record.SectionAllergies}, touched.Sections)
}

// ---- changes made elsewhere ----

// storedWrite is the JSON of one field write, as the package stores it
// under the document's "w" map.
type storedWrite struct {
	Kind       string   `json:"k"`
	Entry      string   `json:"e"`
	Field      string   `json:"f"`
	Value      string   `json:"v"`
	Supersedes []string `json:"s,omitempty"`
	User       string   `json:"u"`
	Name       string   `json:"n,omitempty"`
	Role       string   `json:"r"`
	Device     string   `json:"d,omitempty"`
	At         int64    `json:"t"`
}

func writeBy(by record.Author, kind, entry, field, value string, supersedes ...string) storedWrite {
	return storedWrite{Kind: kind, Entry: entry, Field: field, Value: value, Supersedes: supersedes,
		User: by.UserID, Name: by.Name, Role: string(by.Role), Device: by.Device, At: t0.Add(time.Hour).UnixMilli()}
}

// messageBy is a change's commit message as the package writes it.
func messageBy(by record.Author, op string) string {
	b, _ := json.Marshal(map[string]any{"op": op, "user": by.UserID, "name": by.Name, "role": by.Role,
		"device": by.Device, "entry": "", "summary": "crafted", "at": t0.Add(time.Hour).UnixMilli()})
	return string(b)
}

// craft makes a change on a copy of c's document by writing to it
// directly, as a modified client could, and returns it (c is unchanged).
func craft(t *testing.T, c *record.Chart, message string, fn func(tx *crdt.Tx) error) crdt.Change {
	t.Helper()
	d, err := c.Doc().Fork(nil, crdt.NewActorID())
	require.NoError(t, err)
	ch, err := d.Edit(message, t0.Add(time.Hour), fn)
	require.NoError(t, err, "crafting a change")
	return ch
}

func putWrites(ws ...storedWrite) func(tx *crdt.Tx) error {
	return func(tx *crdt.Tx) error {
		for _, w := range ws {
			b, err := json.Marshal(w)
			if err != nil {
				return err
			}
			if err := tx.Put([]string{"w"}, uuid.NewString(), string(b)); err != nil {
				return err
			}
		}
		return nil
	}
}

// putKeyed puts w under the key key returns for the change being made.
func putKeyed(key func(actor string, seq uint64) string, w storedWrite) func(tx *crdt.Tx) error {
	return func(tx *crdt.Tx) error {
		actor, seq, err := tx.Change()
		if err != nil {
			return err
		}
		b, err := json.Marshal(w)
		if err != nil {
			return err
		}
		return tx.Put([]string{"w"}, key(actor, seq), string(b))
	}
}

// writeIDs returns the IDs of the stored writes of one field of an entry.
func writeIDs(t tb, c *record.Chart, entry, field string) []string {
	t.Helper()
	all, err := c.Doc().Strings("w")
	require.NoError(t, err)
	var ids []string
	for id, js := range all {
		var w storedWrite
		require.NoError(t, json.Unmarshal([]byte(js), &w))
		if w.Entry == entry && w.Field == field {
			ids = append(ids, id)
		}
	}
	require.NotEmpty(t, ids, "no write of %s of %s", field, entry)
	return ids
}

// checkRefused runs CheckChange on a change to c and checks that c's
// document is left as it was.
func checkRefused(t *testing.T, c *record.Chart, ch crdt.Change) (record.Touched, error) {
	t.Helper()
	heads := c.Doc().Heads()
	touched, err := checkBoth(t, c.Doc(), ch)
	require.Error(t, err, "CheckChange accepted the change")
	require.Equal(t, heads, c.Doc().Heads(), "CheckChange changed the chart")
	return touched, err
}

func requireForbidden(t *testing.T, err error, role record.Role, s record.Section) {
	t.Helper()
	require.ErrorIs(t, err, record.ErrForbidden)
	var fe *record.ForbiddenError
	require.ErrorAs(t, err, &fe)
	assert.Equal(t, record.ForbiddenError{Role: role, Section: s}, *fe)
}

func TestCheckChangeAcceptsRegistration(t *testing.T) {
	id := uuid.NewString()
	c, res, err := record.New(id, crdt.NewActorID(), chw, t0, baseRegister())
	require.NoError(t, err)
	touched, err := checkBoth(t, c.Doc(), res.Change)
	require.NoError(t, err)
	assert.True(t, touched.Registers)
	assert.Equal(t, []record.Section{record.SectionDemographics}, touched.Sections)
	assert.Equal(t, chw, touched.Author)

	// The same check on a replica that holds nothing else yet.
	d, err := crdt.New(crdt.NewActorID())
	require.NoError(t, err)
	touched, err = checkBoth(t, d, res.Change)
	require.NoError(t, err)
	assert.Equal(t, []record.Section{record.SectionDemographics}, touched.Sections)
}

func TestCheckChangeAcceptsChangesFromOtherDevices(t *testing.T) {
	f := newFixture(t)
	chs, err := f.chart.Doc().Changes(nil)
	require.NoError(t, err)
	for _, ch := range chs {
		_, err := checkBoth(t, f.chart.Doc(), ch)
		require.NoError(t, err, "CheckChange refused change %q of the fixture", ch.Message)
	}
	// Before they are applied: a replica checks on a document holding the
	// dependencies, not the change.
	other := fork(t, f.chart)
	res, err := other.Do(labTech, f.clock.Add(time.Hour), record.CorrectLabResult{LabResultID: f.labFinal, Value: record.Ptr(13.1), Reason: "re-run"})
	require.NoError(t, err)
	touched, err := checkBoth(t, f.chart.Doc(), res.Change)
	require.NoError(t, err)
	assert.Equal(t, []record.Section{record.SectionLabResults}, touched.Sections)
}

// A lab technician's prescription, made by a modified client writing the
// package's own format: refused, whatever the message calls it.
func TestCheckChangeRefusesLabTechnicianPrescription(t *testing.T) {
	c := newChart(t)
	rx := uuid.NewString()
	ch := craft(t, c, messageBy(labTech, "record-lab-result"), putWrites(
		writeBy(labTech, record.KindPrescription, rx, "drug", "Morphine"),
		writeBy(labTech, record.KindPrescription, rx, "dose", "10"),
		writeBy(labTech, record.KindPrescription, rx, "unit", "mg"),
		writeBy(labTech, record.KindPrescription, rx, "route", "oral"),
		writeBy(labTech, record.KindPrescription, rx, "frequency", "Q4H"),
		writeBy(labTech, record.KindPrescription, rx, "status", record.StatusActive),
	))
	touched, err := checkRefused(t, c, ch)
	requireForbidden(t, err, record.RoleLabTechnician, record.SectionPrescriptions)
	assert.Equal(t, []record.Section{record.SectionPrescriptions}, touched.Sections)
	assert.Equal(t, labTech, touched.Author)
}

// A change whose message names a lab technician is judged as a lab
// technician's, whatever role its writes claim.
func TestCheckChangeJudgesTheMessagesRole(t *testing.T) {
	f := newFixture(t)
	// Written as the doctor would, but signed off as the lab technician:
	// the writes do not match the author.
	ch := craft(t, f.chart, messageBy(labTech, "revise-dose"), putWrites(
		writeBy(doctor, record.KindPrescription, f.rxOnHold, "dose", "1000", writeIDs(t, f.chart, f.rxOnHold, "dose")...),
	))
	_, err := checkRefused(t, f.chart, ch)
	require.ErrorIs(t, err, record.ErrInvalid, "a write attributed to someone other than the change's author")

	// Consistently the lab technician's: forbidden.
	ch = craft(t, f.chart, messageBy(labTech, "revise-dose"), putWrites(
		writeBy(labTech, record.KindPrescription, f.rxOnHold, "dose", "1000", writeIDs(t, f.chart, f.rxOnHold, "dose")...),
	))
	_, err = checkRefused(t, f.chart, ch)
	requireForbidden(t, err, record.RoleLabTechnician, record.SectionPrescriptions)

	// The same writes under a clinician's name are fine.
	ch = craft(t, f.chart, messageBy(doctor, "anything at all"), putWrites(
		writeBy(doctor, record.KindPrescription, f.rxOnHold, "dose", "1000", writeIDs(t, f.chart, f.rxOnHold, "dose")...),
	))
	touched, err := checkBoth(t, f.chart.Doc(), ch)
	require.NoError(t, err)
	assert.Equal(t, []record.Section{record.SectionPrescriptions}, touched.Sections)
}

// One section the role may change and one it may not: refused.
func TestCheckChangeRefusesOneForbiddenSectionOfTwo(t *testing.T) {
	f := newFixture(t)
	lab := uuid.NewString()
	ch := craft(t, f.chart, messageBy(labTech, "record-lab-result"), putWrites(
		writeBy(labTech, record.KindLabResult, lab, "test", "Glucose"),
		writeBy(labTech, record.KindLabResult, lab, "text", "high"),
		writeBy(labTech, record.KindLabResult, lab, "specimen_at", t0.Format(time.RFC3339)),
		writeBy(labTech, record.KindLabResult, lab, "status", record.StatusFinal),
		writeBy(labTech, record.KindPrescription, f.rxActive, "status", record.StatusStopped),
	))
	touched, err := checkRefused(t, f.chart, ch)
	requireForbidden(t, err, record.RoleLabTechnician, record.SectionPrescriptions)
	assert.Equal(t, []record.Section{record.SectionLabResults, record.SectionPrescriptions}, touched.Sections)

	// A note edited alongside a lab result is an encounter change.
	ch = craft(t, f.chart, messageBy(labTech, "record-lab-result"), func(tx *crdt.Tx) error {
		if err := putWrites(writeBy(labTech, record.KindLabResult, lab, "test", "Glucose"))(tx); err != nil {
			return err
		}
		return tx.SpliceText([]string{"notes"}, f.encounter, 0, 0, "Not malaria. ")
	})
	_, err = checkRefused(t, f.chart, ch)
	requireForbidden(t, err, record.RoleLabTechnician, record.SectionEncounters)

	// Both sections permitted: a nurse's allergy and encounter.
	enc := uuid.NewString()
	ch = craft(t, f.chart, messageBy(nurse, "add-allergy"), func(tx *crdt.Tx) error {
		if err := putWrites(
			writeBy(nurse, record.KindAllergy, uuid.NewString(), "substance", "Sulfa"),
			writeBy(nurse, record.KindEncounter, enc, "complaint", "rash"),
		)(tx); err != nil {
			return err
		}
		return tx.PutText([]string{"notes"}, enc, "rash after co-trimoxazole")
	})
	touched, err = checkBoth(t, f.chart.Doc(), ch)
	require.NoError(t, err)
	assert.Equal(t, []record.Section{record.SectionAllergies, record.SectionEncounters}, touched.Sections)
}

// Changes this package would never make are refused as invalid, whoever
// makes them.
func TestCheckChangeRefusesMalformedChanges(t *testing.T) {
	f := newFixture(t)
	dose := writeIDs(t, f.chart, f.rxActive, "dose")
	village := writeIDs(t, f.chart, f.patient, "village")
	cases := []struct {
		name string
		ch   func() crdt.Change
	}{
		{"message not JSON", func() crdt.Change {
			return craft(t, f.chart, "revise dose", putWrites(writeBy(doctor, record.KindPrescription, f.rxActive, "dose", "100", dose...)))
		}},
		{"message without a user", func() crdt.Change {
			return craft(t, f.chart, messageBy(record.Author{Role: record.RoleClinician}, "revise-dose"),
				putWrites(writeBy(record.Author{Role: record.RoleClinician}, record.KindPrescription, f.rxActive, "dose", "100", dose...)))
		}},
		{"unknown role", func() crdt.Change {
			god := record.Author{UserID: "u-x", Role: "superuser"}
			return craft(t, f.chart, messageBy(god, "revise-dose"), putWrites(writeBy(god, record.KindPrescription, f.rxActive, "dose", "100", dose...)))
		}},
		{"unreadable write", func() crdt.Change {
			return craft(t, f.chart, messageBy(doctor, "x"), func(tx *crdt.Tx) error { return tx.Put([]string{"w"}, uuid.NewString(), "{not json") })
		}},
		{"unknown kind", func() crdt.Change {
			return craft(t, f.chart, messageBy(doctor, "x"), putWrites(writeBy(doctor, "billing", uuid.NewString(), "amount", "100")))
		}},
		{"implausible value", func() crdt.Change {
			return craft(t, f.chart, messageBy(doctor, "x"), putWrites(writeBy(doctor, record.KindPrescription, f.rxActive, "dose", "-5", dose...)))
		}},
		{"rewrites a stored write", func() crdt.Change {
			return craft(t, f.chart, messageBy(doctor, "x"), func(tx *crdt.Tx) error {
				b, _ := json.Marshal(writeBy(doctor, record.KindPrescription, f.rxActive, "dose", "100"))
				return tx.Put([]string{"w"}, dose[0], string(b))
			})
		}},
		{"supersedes another field's value", func() crdt.Change {
			// A lab result write that would silently erase the dose.
			return craft(t, f.chart, messageBy(labTech, "x"), putWrites(writeBy(labTech, record.KindLabResult, f.labFinal, "status_reason", "x", dose...)))
		}},
		{"supersedes another entry's value", func() crdt.Change {
			return craft(t, f.chart, messageBy(registry, "x"), putWrites(writeBy(registry, record.KindPatient, f.patient, "phone", "+254 700 000000", village...)))
		}},
		{"names an entry under another kind", func() crdt.Change {
			return craft(t, f.chart, messageBy(labTech, "x"), putWrites(writeBy(labTech, record.KindLabResult, f.rxActive, "status", record.StatusFinal)))
		}},
		{"a second patient", func() crdt.Change {
			return craft(t, f.chart, messageBy(registry, "x"), putWrites(writeBy(registry, record.KindPatient, uuid.NewString(), "given", "Eve")))
		}},
		{"replaces the writes", func() crdt.Change {
			return craft(t, f.chart, messageBy(registry, "x"), func(tx *crdt.Tx) error { return tx.Put(nil, "w", "gone") })
		}},
		{"changes the chart's identity", func() crdt.Change {
			return craft(t, f.chart, messageBy(registry, "x"), func(tx *crdt.Tx) error { return tx.Put([]string{"chart"}, "id", uuid.NewString()) })
		}},
		{"adds to the root", func() crdt.Change {
			return craft(t, f.chart, messageBy(registry, "x"), func(tx *crdt.Tx) error { return tx.Put(nil, "extra", "x") })
		}},
		{"a note for no encounter", func() crdt.Change {
			return craft(t, f.chart, messageBy(nurse, "x"), func(tx *crdt.Tx) error { return tx.PutText([]string{"notes"}, uuid.NewString(), "hello") })
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := checkRefused(t, f.chart, tc.ch())
			assert.ErrorIs(t, err, record.ErrInvalid)
			assert.False(t, errors.Is(err, record.ErrForbidden), "refused as forbidden, not invalid: %v", err)
		})
	}
}

func TestCheckChangeNeedsDependencies(t *testing.T) {
	f := newFixture(t)
	other := fork(t, f.chart)
	first := do(t, other, doctor, f.clock.Add(time.Hour), record.Diagnose{Text: "Asthma"})
	res, err := other.Do(doctor, f.clock.Add(2*time.Hour), record.ChangeDiagnosisStatus{DiagnosisID: first, ClinicalStatus: "resolved"})
	require.NoError(t, err)
	_, err = checkRefused(t, f.chart, res.Change)
	assert.ErrorIs(t, err, crdt.ErrNotFound, "the change's dependency is not held")

	// A change not made on a chart at all.
	d, err := crdt.New(crdt.NewActorID())
	require.NoError(t, err)
	_, err = d.Edit(messageBy(doctor, "x"), t0, func(tx *crdt.Tx) error { return tx.Put(nil, "x", "y") })
	require.NoError(t, err)
	ch, err := d.Edit(messageBy(doctor, "x"), t0, func(tx *crdt.Tx) error { return tx.Put(nil, "x", "z") })
	require.NoError(t, err)
	_, err = checkBoth(t, d, ch)
	assert.ErrorIs(t, err, record.ErrNotAChart)
}

func ExampleCheckChange() {
	nurse := record.Author{UserID: "u-amina", Role: record.RoleNurse, Device: "tablet-1"}
	lab := record.Author{UserID: "u-chege", Role: record.RoleLabTechnician, Device: "lab-pc"}
	chart, _, _ := record.New(uuid.NewString(), crdt.NewActorID(), nurse, t0, record.Register{
		GivenName: "Wanjiru", Sex: "female", EstimatedBirthYear: 1988, HomeClinic: "kamuga-dispensary"})
	res, _ := chart.Do(lab, t0, record.RecordLabResult{Test: "Malaria RDT", TextValue: "positive", SpecimenAt: t0})
	touched, err := record.CheckChange(chart.Doc(), res.Change)
	fmt.Println(touched.Author.Role, touched.Sections, err)

	_, err = chart.Do(lab, t0, record.Prescribe{Drug: "Artemether-lumefantrine", Dose: 4, DoseUnit: "tablet", Route: "oral", Frequency: "BD"})
	fmt.Println(err, errors.Is(err, record.ErrForbidden))
	// Output:
	// lab-technician [lab-results] <nil>
	// record: a lab-technician may not change prescriptions true
}
