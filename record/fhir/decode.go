package fhir

import (
	"fmt"
	"slices"
	"strings"

	cpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/codes_go_proto"
	dtpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
	aipb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/allergy_intolerance_go_proto"
	bcrpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
	condpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/condition_go_proto"
	encpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/encounter_go_proto"
	mrpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/medication_request_go_proto"
	obspb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/observation_go_proto"
	patpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/patient_go_proto"

	"github.com/chartsync/chartsync/record"
)

// Bundle is a FHIR R4 Bundle read and mapped to the chart it describes,
// ready to import (Import). Decode makes one.
type Bundle struct {
	// PatientID is the Patient resource's id (for a bundle this package
	// exported, the chart's ID).
	PatientID string
	// Patient is the patient's demographics and identifiers.
	Patient record.Patient
	// HasPatient is false for a bundle without a Patient resource, which
	// can only be imported into an existing chart.
	HasPatient bool

	nka        bool
	allergies  []item[record.Allergy]
	diagnoses  []item[record.Diagnosis]
	rx         []item[record.Prescription]
	labs       []item[record.LabResult]
	encounters []item[record.Encounter]
	// unknown are the resources of types this mapping does not import,
	// skipped those it read but will not import, with why.
	unknown []string
	skipped []Skipped
}

// item is one resource mapped to the entry it describes.
type item[T any] struct {
	ref string // Type/id
	id  string
	// ids are the resource's identifiers in record's form.
	ids []record.Identifier
	v   T
	// eie is true for a resource whose status is entered-in-error.
	eie bool
}

// Skipped is a resource of a bundle that Import read and did not write,
// or wrote only in part, with the reason.
type Skipped struct {
	Resource string `json:"resource"`
	Reason   string `json:"reason"`
}

// Decode reads a FHIR R4 Bundle (JSON) and maps every resource in it. It
// returns an error matching ErrMalformed for input that is not valid R4
// (the library's validation), a bundle with more than one Patient, a
// resource about another patient, an identifier record refuses, or a
// code outside the value sets mapped here. Resources of other types are
// kept as unknown (see Result.Unknown).
func Decode(data []byte) (*Bundle, error) {
	raw, err := Unmarshal(data)
	if err != nil {
		return nil, err
	}
	return fromBundle(raw)
}

func fromBundle(raw *bcrpb.Bundle) (*Bundle, error) {
	b := &Bundle{}
	// The Patient first: other resources refer to it.
	for i, e := range raw.GetEntry() {
		p := e.GetResource().GetPatient()
		if p == nil {
			continue
		}
		if b.HasPatient {
			return nil, malformed(fmt.Sprintf("entry %d", i), "a second Patient: a bundle imports into one chart")
		}
		if err := b.patient(p); err != nil {
			return nil, err
		}
	}
	vitalsOf := map[string][]*obspb.Observation{}
	for i, e := range raw.GetEntry() {
		cr := e.GetResource()
		full := e.GetFullUrl().GetValue()
		var err error
		switch {
		case cr == nil:
			return nil, malformed(fmt.Sprintf("entry %d", i), "no resource")
		case cr.GetPatient() != nil:
		case cr.GetAllergyIntolerance() != nil:
			err = b.allergy(cr.GetAllergyIntolerance(), full)
		case cr.GetCondition() != nil:
			err = b.condition(cr.GetCondition(), full)
		case cr.GetMedicationRequest() != nil:
			err = b.prescription(cr.GetMedicationRequest(), full)
		case cr.GetObservation() != nil:
			o := cr.GetObservation()
			if enc := o.GetEncounter().GetEncounterId().GetValue(); enc != "" && vitalOf(o) != nil {
				vitalsOf[enc] = append(vitalsOf[enc], o)
				err = b.checkSubject("Observation/"+o.GetId().GetValue(), o.GetSubject())
				break
			}
			err = b.lab(o, full)
		case cr.GetEncounter() != nil:
			err = b.encounter(cr.GetEncounter(), full)
		case cr.GetProvenance() != nil:
			// Provenance says who changed what elsewhere; the import is
			// recorded as the importing user's own change.
		default:
			b.unknown = append(b.unknown, resourceName(cr))
		}
		if err != nil {
			return nil, err
		}
	}
	for enc, obs := range vitalsOf {
		i := slices.IndexFunc(b.encounters, func(it item[record.Encounter]) bool { return it.id == enc })
		if i < 0 {
			for _, o := range obs {
				b.skipped = append(b.skipped, Skipped{"Observation/" + o.GetId().GetValue(), "a vital sign of an encounter the bundle does not hold"})
			}
			continue
		}
		for _, o := range obs {
			f, ok := parseDecimal(o.GetValue().GetQuantity().GetValue())
			if !ok {
				return nil, malformed("Observation/"+o.GetId().GetValue(), "a vital sign without a numeric value")
			}
			*vitalOf(o).get(&b.encounters[i].v.Vitals) = f
		}
	}
	return b, nil
}

// resourceName gives "Type/id" of any resource.
func resourceName(cr *bcrpb.ContainedResource) string {
	m := cr.ProtoReflect()
	oneof := m.Descriptor().Oneofs().ByName("oneof_resource")
	if oneof == nil {
		return "unknown resource"
	}
	f := m.WhichOneof(oneof)
	if f == nil {
		return "empty resource"
	}
	res := m.Get(f).Message()
	name := string(res.Descriptor().Name())
	if idf := res.Descriptor().Fields().ByName("id"); idf != nil && res.Has(idf) {
		if v := res.Get(idf).Message(); v.IsValid() {
			if vf := v.Descriptor().Fields().ByName("value"); vf != nil {
				return name + "/" + v.Get(vf).String()
			}
		}
	}
	return name
}

func vitalOf(o *obspb.Observation) *vital {
	for _, c := range o.GetCode().GetCoding() {
		if c.GetSystem().GetValue() != SystemLOINC {
			continue
		}
		for i := range vitals {
			if vitals[i].loinc == c.GetCode().GetValue() {
				return &vitals[i]
			}
		}
	}
	return nil
}

func (b *Bundle) checkSubject(res string, ref *dtpb.Reference) error {
	if ref == nil {
		return nil
	}
	id := ref.GetPatientId().GetValue()
	if id == "" && ref.GetUri().GetValue() != "" {
		return malformed(res, "its subject %q is not a Patient of this bundle", ref.GetUri().GetValue())
	}
	if id != "" && b.HasPatient && id != b.PatientID {
		return malformed(res, "it is about Patient/%s, not Patient/%s", id, b.PatientID)
	}
	return nil
}

// identifiers maps FHIR identifiers to record's, in canonical form.
func identifiers(res string, ids []*dtpb.Identifier) ([]record.Identifier, []bool, error) {
	var out []record.Identifier
	var old []bool
	for _, id := range ids {
		system, ok := recordSystem(id.GetSystem().GetValue())
		if !ok || id.GetValue().GetValue() == "" {
			continue
		}
		v, err := record.CanonicalIdentifier(system, id.GetValue().GetValue())
		if err != nil {
			return nil, nil, &MalformedError{Resource: res, Reason: "identifier " + id.GetSystem().GetValue(), Err: err}
		}
		out = append(out, record.Identifier{System: system, Value: v})
		old = append(old, id.GetUse().GetValue() == cpb.IdentifierUseCode_OLD)
	}
	return out, old, nil
}

// newItem starts an item: its reference and identifiers.
func newItem[T any](typ string, id *dtpb.Id, ids []*dtpb.Identifier, full string) (item[T], error) {
	it := item[T]{id: id.GetValue(), ref: typ + "/" + id.GetValue()}
	if it.id == "" {
		it.ref = full
	}
	var err error
	it.ids, _, err = identifiers(it.ref, ids)
	return it, err
}

// externalID is the external ID an imported entry gets: the resource's
// first identifier, or else its reference.
func (it item[T]) externalID() (record.Identifier, bool) {
	if len(it.ids) > 0 {
		return it.ids[0], true
	}
	if it.ref != "" && len(it.ref) <= 100 {
		return record.Identifier{System: SystemResource, Value: it.ref}, true
	}
	return record.Identifier{}, false
}

func (b *Bundle) patient(p *patpb.Patient) error {
	res := "Patient/" + p.GetId().GetValue()
	b.HasPatient, b.PatientID = true, p.GetId().GetValue()
	ids, old, err := identifiers(res, p.GetIdentifier())
	if err != nil {
		return err
	}
	pt := &b.Patient
	for i, id := range ids {
		if old[i] {
			id.Status = record.StatusInactive
		} else {
			id.Status = record.StatusActive
		}
		pt.Identifiers = append(pt.Identifiers, id)
	}
	if n := p.GetName(); len(n) > 0 {
		pt.FamilyName = n[0].GetFamily().GetValue()
		if g := n[0].GetGiven(); len(g) > 0 {
			var given []string
			for _, s := range g {
				given = append(given, s.GetValue())
			}
			pt.GivenName = strings.Join(given, " ")
		}
		if pt.GivenName == "" && pt.FamilyName == "" {
			pt.GivenName = n[0].GetText().GetValue()
		}
	}
	if g := p.GetGender(); g != nil {
		pt.Sex = codeName(g.GetValue().String())
	}
	if d := p.GetBirthDate(); d != nil {
		t := inZone(d.GetValueUs(), d.GetTimezone())
		switch d.GetPrecision() {
		case dtpb.Date_DAY:
			pt.BirthDate = t.Format("2006-01-02")
		default:
			pt.EstimatedBirthYear = t.Year()
		}
	}
	for _, t := range p.GetTelecom() {
		if t.GetSystem().GetValue() == cpb.ContactPointSystemCode_PHONE && pt.Phone == "" {
			pt.Phone = t.GetValue().GetValue()
		}
	}
	if a := p.GetAddress(); len(a) > 0 {
		pt.Village = a[0].GetCity().GetValue()
		var lines []string
		for _, l := range a[0].GetLine() {
			lines = append(lines, l.GetValue())
		}
		pt.Address = strings.Join(lines, ", ")
	}
	for _, c := range p.GetContact() {
		rel := ""
		for _, r := range c.GetRelationship() {
			rel += r.GetText().GetValue()
		}
		if name := c.GetName().GetText().GetValue(); name != "" && (pt.Guardian == "" || strings.EqualFold(rel, "guardian")) {
			pt.Guardian = name
		}
	}
	pt.NationalID = extFirst(p.GetExtension(), extNationalID)
	if o := p.GetManagingOrganization(); o != nil {
		if o.GetIdentifier().GetSystem().GetValue() == SystemClinic {
			pt.HomeClinic = o.GetIdentifier().GetValue().GetValue()
		}
	}
	return nil
}

// codeIn gives the code of the first coding of a concept in a system.
func codeIn(c *dtpb.CodeableConcept, system string) string {
	for _, cd := range c.GetCoding() {
		if cd.GetSystem().GetValue() == system {
			return cd.GetCode().GetValue()
		}
	}
	return ""
}

// text gives a concept's text, or else its first coding's display or
// code.
func text(c *dtpb.CodeableConcept) string {
	if t := c.GetText().GetValue(); t != "" {
		return t
	}
	for _, cd := range c.GetCoding() {
		if d := cd.GetDisplay().GetValue(); d != "" {
			return d
		}
	}
	for _, cd := range c.GetCoding() {
		if d := cd.GetCode().GetValue(); d != "" {
			return d
		}
	}
	return ""
}

// allergySeverity is record's severity of an AllergyIntolerance: the
// extension if present, else the worst reaction severity, else its
// criticality.
func allergySeverity(a *aipb.AllergyIntolerance) string {
	if s := extFirst(a.GetExtension(), extSeverity); s != "" {
		return s
	}
	worst := ""
	for _, r := range a.GetReaction() {
		if r.GetSeverity() == nil {
			continue
		}
		s := codeName(r.GetSeverity().GetValue().String())
		if rank(s) > rank(worst) {
			worst = s
		}
	}
	if worst != "" {
		return worst
	}
	switch a.GetCriticality().GetValue() {
	case cpb.AllergyIntoleranceCriticalityCode_HIGH:
		return "severe"
	case cpb.AllergyIntoleranceCriticalityCode_LOW:
		return "mild"
	}
	return ""
}

func rank(sev string) int {
	return slices.Index([]string{"mild", "moderate", "severe", "life-threatening"}, sev) + 1
}

func (b *Bundle) allergy(a *aipb.AllergyIntolerance, full string) error {
	it, err := newItem[record.Allergy]("AllergyIntolerance", a.GetId(), a.GetIdentifier(), full)
	if err != nil {
		return err
	}
	if err := b.checkSubject(it.ref, a.GetPatient()); err != nil {
		return err
	}
	if codeIn(a.GetCode(), systemSNOMED) == codeNoKnownAllergy {
		b.nka = true
		return nil
	}
	switch ver := codeIn(a.GetVerificationStatus(), systemAllergyVer); ver {
	case "entered-in-error":
		it.eie = true
	case "refuted":
		b.skipped = append(b.skipped, Skipped{it.ref, "a refuted allergy: the chart records only allergies held to be present"})
		return nil
	}
	it.v = record.Allergy{Substance: text(a.GetCode()), Severity: allergySeverity(a), Status: record.StatusActive}
	if len(a.GetReaction()) > 0 && len(a.GetReaction()[0].GetManifestation()) > 0 {
		it.v.Reaction = text(a.GetReaction()[0].GetManifestation()[0])
	}
	if st := codeIn(a.GetClinicalStatus(), systemAllergyClinical); st != "" {
		if !slices.Contains([]string{record.StatusActive, record.StatusInactive, record.StatusResolved}, st) {
			return malformed(it.ref, "clinical status %q", st)
		}
		it.v.Status = st
	}
	b.allergies = append(b.allergies, it)
	return nil
}

func (b *Bundle) condition(c *condpb.Condition, full string) error {
	it, err := newItem[record.Diagnosis]("Condition", c.GetId(), c.GetIdentifier(), full)
	if err != nil {
		return err
	}
	if err := b.checkSubject(it.ref, c.GetSubject()); err != nil {
		return err
	}
	d := record.Diagnosis{
		Text:               text(c.GetCode()),
		ClinicalStatus:     codeIn(c.GetClinicalStatus(), systemConditionClinical),
		VerificationStatus: codeIn(c.GetVerificationStatus(), systemConditionVer),
	}
	for _, cd := range c.GetCode().GetCoding() {
		if strings.HasPrefix(cd.GetSystem().GetValue(), SystemICD10) {
			d.Code = cd.GetCode().GetValue()
			break
		}
	}
	if c.GetCode().GetText() == nil && d.Code != "" {
		// A coded condition without text: its display, not its code.
		for _, cd := range c.GetCode().GetCoding() {
			if cd.GetDisplay().GetValue() != "" {
				d.Text = cd.GetDisplay().GetValue()
				break
			}
		}
	}
	if o := c.GetOnset().GetDateTime(); o != nil {
		d.Onset = dayOf(o)
	}
	if n := c.GetNote(); len(n) > 0 {
		d.Note = n[0].GetText().GetValue()
	}
	if d.VerificationStatus == "entered-in-error" {
		it.eie = true
	}
	it.v = d
	b.diagnoses = append(b.diagnoses, it)
	return nil
}

// frequencies maps FHIR's timing abbreviations (v3 GTSAbbreviation) to
// record's frequencies.
var frequencies = map[string]string{
	"QD": "OD", "BID": "BD", "TID": "TDS", "QID": "QID", "Q4H": "Q4H", "Q6H": "Q6H",
	"Q8H": "Q8H", "Q12H": "Q12H", "HS": "NOCTE", "WK": "WEEKLY",
}

func (b *Bundle) prescription(m *mrpb.MedicationRequest, full string) error {
	it, err := newItem[record.Prescription]("MedicationRequest", m.GetId(), m.GetIdentifier(), full)
	if err != nil {
		return err
	}
	if err := b.checkSubject(it.ref, m.GetSubject()); err != nil {
		return err
	}
	status := codeName(m.GetStatus().GetValue().String())
	switch status {
	case "entered-in-error":
		it.eie = true
	case "active", "on-hold", "completed", "stopped":
	default:
		b.skipped = append(b.skipped, Skipped{it.ref, fmt.Sprintf("status %s: the chart records only active, on-hold, completed and stopped prescriptions", status)})
		return nil
	}
	med := m.GetMedication().GetCodeableConcept()
	if med == nil && !it.eie {
		b.skipped = append(b.skipped, Skipped{it.ref, "its medication is a reference to a Medication resource, which is not imported"})
		return nil
	}
	p := record.Prescription{Drug: text(med), ATC: codeIn(med, SystemATC), Status: status,
		DrugCode: extFirst(med.GetExtension(), extDrugCode), StatusReason: text(m.GetStatusReason())}
	if p.Drug == "" && p.ATC != "" {
		p.Drug = p.ATC
	}
	if ds := m.GetDosageInstruction(); len(ds) > 0 {
		d := ds[0]
		p.Instructions = d.GetPatientInstruction().GetValue()
		p.Route = text(d.GetRoute())
		if dr := d.GetDoseAndRate(); len(dr) > 0 {
			q := dr[0].GetDose().GetQuantity()
			if f, ok := parseDecimal(q.GetValue()); ok {
				p.Dose = f
			}
			p.DoseUnit = q.GetUnit().GetValue()
			if p.DoseUnit == "" {
				p.DoseUnit = q.GetCode().GetValue()
			}
		}
		tc := d.GetTiming().GetCode()
		p.Frequency = tc.GetText().GetValue()
		if p.Frequency == "" {
			for _, c := range tc.GetCoding() {
				if f, ok := frequencies[c.GetCode().GetValue()]; ok {
					p.Frequency = f
					break
				}
			}
		}
		if per := d.GetTiming().GetRepeat().GetBounds().GetPeriod(); per != nil {
			p.Start, p.End = dayOf(per.GetStart()), dayOf(per.GetEnd())
		}
	}
	if dur := m.GetDispenseRequest().GetExpectedSupplyDuration(); dur != nil {
		f, ok := parseDecimal(dur.GetValue())
		mult := map[string]float64{"d": 1, "wk": 7, "mo": 30}[dur.GetCode().GetValue()]
		if dur.GetCode() == nil && strings.HasPrefix(dur.GetUnit().GetValue(), "day") {
			mult = 1
		}
		if !ok || mult == 0 || f*mult > 100000 || f < 0 {
			return malformed(it.ref, "expected supply duration %q %s", dur.GetValue().GetValue(), dur.GetCode().GetValue())
		}
		p.DurationDays = int(f * mult)
	}
	it.v = p
	b.rx = append(b.rx, it)
	return nil
}

func (b *Bundle) lab(o *obspb.Observation, full string) error {
	it, err := newItem[record.LabResult]("Observation", o.GetId(), o.GetIdentifier(), full)
	if err != nil {
		return err
	}
	if err := b.checkSubject(it.ref, o.GetSubject()); err != nil {
		return err
	}
	status := codeName(o.GetStatus().GetValue().String())
	switch status {
	case "entered-in-error":
		it.eie = true
	case "amended":
		status = record.StatusCorrected
	case "preliminary", "final", "corrected":
	default:
		b.skipped = append(b.skipped, Skipped{it.ref, fmt.Sprintf("status %s: the chart records only preliminary, final and corrected results", status)})
		return nil
	}
	l := record.LabResult{Test: text(o.GetCode()), LOINC: codeIn(o.GetCode(), SystemLOINC), Status: status,
		StatusReason: extFirst(o.GetExtension(), extStatusReason)}
	switch v := o.GetValue(); {
	case v.GetQuantity() != nil:
		f, ok := parseDecimal(v.GetQuantity().GetValue())
		if !ok {
			return malformed(it.ref, "value %q is not a number", v.GetQuantity().GetValue().GetValue())
		}
		l.Value = &f
		l.Unit = v.GetQuantity().GetUnit().GetValue()
		if l.Unit == "" {
			l.Unit = v.GetQuantity().GetCode().GetValue()
		}
	case v.GetStringValue() != nil:
		l.TextValue = v.GetStringValue().GetValue()
	case v.GetCodeableConcept() != nil:
		l.TextValue = text(v.GetCodeableConcept())
	case v.GetInteger() != nil:
		f := float64(v.GetInteger().GetValue())
		l.Value = &f
	case !it.eie:
		b.skipped = append(b.skipped, Skipped{it.ref, "no value the chart can hold (a number, a text or a coded value)"})
		return nil
	}
	if e := o.GetEffective(); e.GetDateTime() != nil {
		l.SpecimenAt = fromDateTime(e.GetDateTime())
	} else if o.GetIssued() != nil {
		l.SpecimenAt = fromDateTime(&dtpb.DateTime{ValueUs: o.GetIssued().GetValueUs()})
	}
	for _, r := range o.GetReferenceRange() {
		low, lok := parseDecimal(r.GetLow().GetValue())
		high, hok := parseDecimal(r.GetHigh().GetValue())
		if strings.EqualFold(r.GetType().GetText().GetValue(), "critical") {
			if lok {
				l.CriticalLow = &low
			}
			if hok {
				l.CriticalHigh = &high
			}
			continue
		}
		if ty := codeIn(r.GetType(), "http://terminology.hl7.org/CodeSystem/referencerange-meaning"); ty != "" && ty != "normal" {
			continue
		}
		if lok && l.RefLow == nil {
			l.RefLow = &low
		}
		if hok && l.RefHigh == nil {
			l.RefHigh = &high
		}
		if t := r.GetText().GetValue(); t != "" && l.RefText == "" {
			l.RefText = t
		}
	}
	l.AbnormalTexts = extStrings(o.GetExtension(), extAbnormalText)
	l.CriticalTexts = extStrings(o.GetExtension(), extCriticalText)
	it.v = l
	b.labs = append(b.labs, it)
	return nil
}

func (b *Bundle) encounter(e *encpb.Encounter, full string) error {
	it, err := newItem[record.Encounter]("Encounter", e.GetId(), e.GetIdentifier(), full)
	if err != nil {
		return err
	}
	if err := b.checkSubject(it.ref, e.GetSubject()); err != nil {
		return err
	}
	switch e.GetStatus().GetValue() {
	case cpb.EncounterStatusCode_ENTERED_IN_ERROR:
		it.eie = true
	case cpb.EncounterStatusCode_CANCELLED, cpb.EncounterStatusCode_PLANNED:
		b.skipped = append(b.skipped, Skipped{it.ref, "a planned or cancelled encounter: the chart records visits that took place"})
		return nil
	}
	enc := record.Encounter{Date: dayOf(e.GetPeriod().GetStart()), Note: extFirst(e.GetExtension(), extNote)}
	if r := e.GetReasonCode(); len(r) > 0 {
		enc.Complaint = text(r[0])
	}
	if p := e.GetParticipant(); len(p) > 0 {
		enc.Clinician = p[0].GetIndividual().GetDisplay().GetValue()
	}
	it.v = enc
	b.encounters = append(b.encounters, it)
	return nil
}

// Identifiers lists the patient's identifiers in the bundle, to find the
// chart it belongs to: those of the Patient resource, then its reference
// "Patient/id" in SystemResource, which a chart Import created from the
// bundle carries.
func (b *Bundle) Identifiers() []record.Identifier {
	out := slices.Clone(b.Patient.Identifiers)
	if id, ok := b.patientResourceID(); ok && !slices.ContainsFunc(out, func(o record.Identifier) bool {
		return o.System == id.System && o.Value == id.Value
	}) {
		id.Status = record.StatusActive
		out = append(out, id)
	}
	return out
}

// patientResourceID is the identifier naming the bundle's Patient
// resource.
func (b *Bundle) patientResourceID() (record.Identifier, bool) {
	ref := "Patient/" + b.PatientID
	if !b.HasPatient || b.PatientID == "" || len(ref) > 100 {
		return record.Identifier{}, false
	}
	return record.Identifier{System: SystemResource, Value: ref}, true
}
