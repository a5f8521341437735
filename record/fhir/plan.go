package fhir

import (
	"slices"

	"github.com/chartsync/chartsync/record"
)

// reasonImported is the reason given to status changes an import makes.
const reasonImported = "as in the imported FHIR record"

// singleValued are the identifier systems of which a patient has one
// active identifier (see record.AddIdentifier).
var singleValued = []string{record.SystemAadhaar, record.SystemABHA, record.SystemNationalID}

// planner turns a bundle into the steps that bring a chart to it.
type planner struct {
	res   *Result
	steps []step
	// used are the chart's entries already matched to a resource.
	used map[string]bool
	eie  map[string]bool
}

func (p *planner) add(kind stepKind, after int, build func(created map[int]string) record.Op) int {
	p.steps = append(p.steps, step{build: build, kind: kind, after: after})
	return len(p.steps) - 1
}

func (p *planner) skip(ref, reason string) {
	p.res.Skipped = append(p.res.Skipped, Skipped{Resource: ref, Reason: reason})
}

func op(o record.Op) func(map[int]string) record.Op {
	return func(map[int]string) record.Op { return o }
}

// follow builds an operation on the entry step i created.
func follow(i int, f func(id string) record.Op) func(map[int]string) record.Op {
	return func(created map[int]string) record.Op { return f(created[i]) }
}

// match finds the chart's entry a resource describes: by entry ID, or by
// external ID.
func match[T any](p *planner, it item[T], id string, ext *record.Identifier) bool {
	if p.used[id] {
		return false
	}
	if it.id != "" && it.id == id {
		return true
	}
	if ext == nil {
		return false
	}
	e := record.Identifier{System: ext.System, Value: ext.Value}
	return slices.Contains(it.ids, e) || (e.System == SystemResource && e.Value == it.ref)
}

// find gives the index of the chart's entry an item matches, or -1, and
// whether it is an entry entered in error here.
func find[T, E any](p *planner, it item[T], list []E, key func(E) (string, *record.Identifier)) (int, bool) {
	for i, e := range list {
		id, ext := key(e)
		if match(p, it, id, ext) {
			p.used[id] = true
			return i, false
		}
	}
	return -1, it.id != "" && p.eie[it.id]
}

// newEntry handles an item the chart does not hold: it reports one
// entered in error (nothing to add) and one with no identity, and gives
// its external ID.
func newEntry[T any](p *planner, it item[T], eieHere bool) (record.Identifier, bool) {
	switch {
	case eieHere:
		p.skip(it.ref, "entered in error in this chart")
		return record.Identifier{}, false
	case it.eie:
		p.skip(it.ref, "entered in error, and not in this chart: nothing to add")
		return record.Identifier{}, false
	}
	ext, ok := it.externalID()
	if !ok {
		p.skip(it.ref, "no id or identifier: importing it twice would add it twice")
	}
	return ext, ok
}

func (p *planner) markEIE(id string) {
	p.add(stepUpdate, -1, op(record.MarkEnteredInError{EntryID: id, Reason: "entered in error in the imported FHIR record"}))
}

func planSteps(res *Result, b *Bundle, v record.View, create bool) []step {
	p := &planner{res: res, used: map[string]bool{}, eie: map[string]bool{}}
	for _, e := range v.EnteredInError {
		p.eie[e.ID] = true
	}
	if !create && b.HasPatient {
		p.demographics(b.Patient, v.Patient)
	}
	p.identifiers(b.Patient.Identifiers, v.Patient.Identifiers, create)
	activeAllergy := false
	for _, it := range b.allergies {
		if !it.eie && it.v.Status == record.StatusActive {
			activeAllergy = true
		}
		p.allergy(it, v.Allergies)
	}
	for _, a := range v.Allergies {
		activeAllergy = activeAllergy || a.Status == record.StatusActive
	}
	if b.nka && !v.NoKnownAllergies {
		if activeAllergy {
			p.skip("AllergyIntolerance (no known allergies)", "the chart lists an active allergy")
		} else {
			p.add(stepAdd, -1, op(record.RecordNoKnownAllergies{}))
		}
	}
	for _, it := range b.diagnoses {
		p.diagnosis(it, v.Diagnoses)
	}
	for _, it := range b.rx {
		p.prescription(it, v.Prescriptions)
	}
	for _, it := range b.labs {
		p.lab(it, v.LabResults)
	}
	for _, it := range b.encounters {
		p.encounter(it, v.Encounters)
	}
	return p.steps
}

func (p *planner) demographics(want, have record.Patient) {
	var u record.UpdateDemographics
	changed := false
	set := func(dst **string, w, h string) {
		if w != "" && w != h {
			*dst = record.Ptr(w)
			changed = true
		}
	}
	set(&u.GivenName, want.GivenName, have.GivenName)
	set(&u.FamilyName, want.FamilyName, have.FamilyName)
	set(&u.Sex, want.Sex, have.Sex)
	set(&u.BirthDate, want.BirthDate, have.BirthDate)
	set(&u.Village, want.Village, have.Village)
	set(&u.Address, want.Address, have.Address)
	set(&u.Phone, want.Phone, have.Phone)
	set(&u.NationalID, want.NationalID, have.NationalID)
	set(&u.Guardian, want.Guardian, have.Guardian)
	if want.BirthDate == "" && have.BirthDate == "" && want.EstimatedBirthYear != 0 && want.EstimatedBirthYear != have.EstimatedBirthYear {
		u.EstimatedBirthYear = record.Ptr(want.EstimatedBirthYear)
		changed = true
	}
	if want.HomeClinic != "" && want.HomeClinic != have.HomeClinic {
		p.skip("Patient", "its managing organization "+want.HomeClinic+" is not this chart's home clinic "+have.HomeClinic+"; the home clinic is not changed by an import")
	}
	if changed {
		p.add(stepUpdate, -1, op(u))
	}
}

func (p *planner) identifiers(want, have []record.Identifier, create bool) {
	for _, w := range want {
		i := slices.IndexFunc(have, func(h record.Identifier) bool { return h.System == w.System && h.Value == w.Value })
		inactive := w.Status == record.StatusInactive
		switch {
		case i >= 0:
			if inactive && have[i].Status == record.StatusActive {
				p.add(stepUpdate, -1, op(record.RemoveIdentifier{IdentifierID: have[i].ID, Reason: "no longer in use " + reasonImported}))
			}
		case create && !inactive:
			// Registered with the patient.
		default:
			if !inactive && slices.Contains(singleValued, w.System) && slices.ContainsFunc(have, func(h record.Identifier) bool {
				return h.System == w.System && h.Status == record.StatusActive
			}) {
				p.skip("Patient", "identifier "+w.String()+": the chart has another active "+w.System+" number; correct it by hand if this one is right")
				continue
			}
			w := w
			step := p.add(stepAdd, -1, op(record.AddIdentifier{System: w.System, Value: w.Value}))
			if inactive {
				p.add(stepFollow, step, follow(step, func(id string) record.Op {
					return record.RemoveIdentifier{IdentifierID: id, Reason: "no longer in use " + reasonImported}
				}))
			}
		}
	}
}

func (p *planner) allergy(it item[record.Allergy], have []record.Allergy) {
	i, eieHere := find(p, it, have, func(a record.Allergy) (string, *record.Identifier) { return a.ID, a.ExternalID })
	w := it.v
	if i >= 0 {
		h := have[i]
		if it.eie {
			p.markEIE(h.ID)
			return
		}
		u := record.UpdateAllergy{AllergyID: h.ID, Reason: reasonImported}
		changed := false
		if w.Reaction != "" && w.Reaction != h.Reaction {
			u.Reaction, changed = record.Ptr(w.Reaction), true
		}
		if w.Severity != "" && w.Severity != h.Severity {
			u.Severity, changed = record.Ptr(w.Severity), true
		}
		if w.Status != h.Status {
			u.Status, changed = record.Ptr(w.Status), true
		}
		if changed {
			p.add(stepUpdate, -1, op(u))
		}
		return
	}
	ext, ok := newEntry(p, it, eieHere)
	if !ok {
		return
	}
	s := p.add(stepAdd, -1, op(record.AddAllergy{Substance: w.Substance, Reaction: w.Reaction, Severity: w.Severity, ExternalID: ext}))
	if w.Status != record.StatusActive {
		p.add(stepFollow, s, follow(s, func(id string) record.Op {
			return record.UpdateAllergy{AllergyID: id, Status: record.Ptr(w.Status), Reason: reasonImported}
		}))
	}
}

func (p *planner) diagnosis(it item[record.Diagnosis], have []record.Diagnosis) {
	i, eieHere := find(p, it, have, func(d record.Diagnosis) (string, *record.Identifier) { return d.ID, d.ExternalID })
	w := it.v
	if i >= 0 {
		h := have[i]
		if it.eie {
			p.markEIE(h.ID)
			return
		}
		c := record.ChangeDiagnosisStatus{DiagnosisID: h.ID, Reason: reasonImported}
		if w.ClinicalStatus != "" && w.ClinicalStatus != h.ClinicalStatus {
			c.ClinicalStatus = w.ClinicalStatus
		}
		if w.VerificationStatus != "" && w.VerificationStatus != h.VerificationStatus {
			c.VerificationStatus = w.VerificationStatus
		}
		if c.ClinicalStatus != "" || c.VerificationStatus != "" {
			p.add(stepUpdate, -1, op(c))
		}
		return
	}
	ext, ok := newEntry(p, it, eieHere)
	if !ok {
		return
	}
	p.add(stepAdd, -1, op(record.Diagnose{Code: w.Code, Text: w.Text, Onset: w.Onset, ClinicalStatus: w.ClinicalStatus,
		VerificationStatus: w.VerificationStatus, Note: w.Note, ExternalID: ext}))
}

// statusOp is the operation that moves a prescription from one status to
// another, or nil when record has none (a stopped or completed
// prescription does not restart).
func statusOp(id, from, to, reason string) record.Op {
	if reason == "" {
		reason = reasonImported
	}
	live := from == record.StatusActive || from == record.StatusOnHold
	switch {
	case !live:
		return nil
	case to == record.StatusOnHold && from == record.StatusActive:
		return record.PutOnHold{PrescriptionID: id, Reason: reason}
	case to == record.StatusActive && from == record.StatusOnHold:
		return record.Resume{PrescriptionID: id, Reason: reason}
	case to == record.StatusCompleted:
		return record.Complete{PrescriptionID: id}
	case to == record.StatusStopped:
		return record.Discontinue{PrescriptionID: id, Reason: reason}
	}
	return nil
}

func (p *planner) prescription(it item[record.Prescription], have []record.Prescription) {
	i, eieHere := find(p, it, have, func(r record.Prescription) (string, *record.Identifier) { return r.ID, r.ExternalID })
	w := it.v
	if i >= 0 {
		h := have[i]
		if it.eie {
			p.markEIE(h.ID)
			return
		}
		live := h.Status == record.StatusActive || h.Status == record.StatusOnHold
		// What the bundle leaves out is not a change.
		r := record.ReviseDose{PrescriptionID: h.ID, Dose: h.Dose, Reason: reasonImported}
		changed := false
		if w.Dose > 0 && w.Dose != h.Dose {
			r.Dose, changed = w.Dose, true
		}
		if w.DoseUnit != "" && w.DoseUnit != h.DoseUnit {
			r.DoseUnit, changed = w.DoseUnit, true
		}
		if w.Frequency != "" && w.Frequency != h.Frequency {
			r.Frequency, changed = w.Frequency, true
		}
		if live && changed {
			p.add(stepUpdate, -1, op(r))
		}
		if w.Status != h.Status {
			if o := statusOp(h.ID, h.Status, w.Status, w.StatusReason); o != nil {
				p.add(stepUpdate, -1, op(o))
			} else {
				p.skip(it.ref, "status "+w.Status+" here is "+h.Status+", which no operation changes to "+w.Status)
			}
		}
		return
	}
	ext, ok := newEntry(p, it, eieHere)
	if !ok {
		return
	}
	s := p.add(stepAdd, -1, op(record.Prescribe{Drug: w.Drug, ATC: w.ATC, DrugCode: w.DrugCode, Dose: w.Dose, DoseUnit: w.DoseUnit,
		Route: w.Route, Frequency: w.Frequency, DurationDays: w.DurationDays, Start: w.Start, End: w.End,
		Instructions: w.Instructions, ExternalID: ext}))
	if w.Status != record.StatusActive {
		p.add(stepFollow, s, follow(s, func(id string) record.Op {
			return statusOp(id, record.StatusActive, w.Status, w.StatusReason)
		}))
	}
}

func sameValue(w, h record.LabResult) bool {
	if (w.Value == nil) != (h.Value == nil) || w.TextValue != h.TextValue {
		return false
	}
	return w.Value == nil || *w.Value == *h.Value
}

func (p *planner) lab(it item[record.LabResult], have []record.LabResult) {
	i, eieHere := find(p, it, have, func(l record.LabResult) (string, *record.Identifier) { return l.ID, l.ExternalID })
	w := it.v
	if i >= 0 {
		h := have[i]
		switch {
		case it.eie:
			p.markEIE(h.ID)
		case !sameValue(w, h):
			reason := w.StatusReason
			if reason == "" {
				reason = "corrected " + reasonImported
			}
			unit := ""
			if w.Unit != h.Unit {
				unit = w.Unit
			}
			p.add(stepUpdate, -1, op(record.CorrectLabResult{LabResultID: h.ID, Value: w.Value, TextValue: w.TextValue, Unit: unit, Reason: reason}))
		case h.Status == record.StatusPreliminary && w.Status != record.StatusPreliminary:
			p.add(stepUpdate, -1, op(record.FinalizeLabResult{LabResultID: h.ID}))
		}
		return
	}
	ext, ok := newEntry(p, it, eieHere)
	if !ok {
		return
	}
	status := w.Status
	if status == record.StatusCorrected {
		status = record.StatusFinal // its earlier values are not in the bundle
	}
	p.add(stepAdd, -1, op(record.RecordLabResult{Test: w.Test, LOINC: w.LOINC, Value: w.Value, TextValue: w.TextValue, Unit: w.Unit,
		RefLow: w.RefLow, RefHigh: w.RefHigh, CriticalLow: w.CriticalLow, CriticalHigh: w.CriticalHigh, RefText: w.RefText,
		AbnormalTexts: w.AbnormalTexts, CriticalTexts: w.CriticalTexts, SpecimenAt: w.SpecimenAt, Status: status, ExternalID: ext}))
}

func (p *planner) encounter(it item[record.Encounter], have []record.Encounter) {
	i, eieHere := find(p, it, have, func(e record.Encounter) (string, *record.Identifier) { return e.ID, e.ExternalID })
	w := it.v
	if i >= 0 {
		if it.eie {
			p.markEIE(have[i].ID)
		}
		return
	}
	ext, ok := newEntry(p, it, eieHere)
	if !ok {
		return
	}
	p.add(stepAdd, -1, op(record.AddEncounter{Date: w.Date, Clinician: w.Clinician, Complaint: w.Complaint, Vitals: w.Vitals,
		Note: w.Note, ExternalID: ext}))
}
