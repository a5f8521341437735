package fhir

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	cpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/codes_go_proto"
	dtpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
	aipb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/allergy_intolerance_go_proto"
	bcrpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
	condpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/condition_go_proto"
	encpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/encounter_go_proto"
	mrpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/medication_request_go_proto"
	obspb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/observation_go_proto"
	patpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/patient_go_proto"
	provpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/provenance_go_proto"

	"github.com/chartsync/chartsync/record"
)

// reID is what FHIR R4 allows as a resource id.
var reID = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)

// vital is one measurement of record.Vitals as a vital-signs Observation.
type vital struct {
	key, loinc, display, unit string
	get                       func(*record.Vitals) *float64
}

var vitals = []vital{
	{"bp-systolic", "8480-6", "Systolic blood pressure", "mm[Hg]", func(v *record.Vitals) *float64 { return &v.BPSystolic }},
	{"bp-diastolic", "8462-4", "Diastolic blood pressure", "mm[Hg]", func(v *record.Vitals) *float64 { return &v.BPDiastolic }},
	{"pulse", "8867-4", "Heart rate", "/min", func(v *record.Vitals) *float64 { return &v.Pulse }},
	{"temperature", "8310-5", "Body temperature", "Cel", func(v *record.Vitals) *float64 { return &v.Temperature }},
	{"weight", "29463-7", "Body weight", "kg", func(v *record.Vitals) *float64 { return &v.Weight }},
	{"height", "8302-2", "Body height", "cm", func(v *record.Vitals) *float64 { return &v.Height }},
	{"spo2", "59408-5", "Oxygen saturation in arterial blood by pulse oximetry", "%", func(v *record.Vitals) *float64 { return &v.SpO2 }},
}

// exporter builds one bundle.
type exporter struct {
	v       record.View
	entries []*bcrpb.Bundle_Entry
	// latest is each entry's latest change, from the history.
	latest map[string]record.HistoryEntry
	// conflicts are the unsettled conflicts of each entry.
	conflicts map[string][]record.Conflict
}

// Export maps a chart's view to a FHIR R4 Bundle of type collection: the
// Patient, then its AllergyIntolerance, Condition, MedicationRequest,
// Observation (lab results and the vital signs of encounters), Encounter
// and Provenance resources, each resource's id the ID of its entry (a
// vital sign's, its encounter's ID and the measurement). The bundle's
// timestamp is the time of the chart's latest change, so a chart exports
// to the same bytes on every replica that has the same heads. Entries
// entered in error are exported with that status and what the view keeps
// of them (see the package doc). A view redacted by a read policy
// (record.ReadPolicy.Redact) exports without what it hides: a hidden
// note or change summary is left out, not exported as its placeholder.
// The bundle passes the library's R4 validation, or Export returns the
// error it gives.
func Export(v record.View) (*bcrpb.Bundle, error) {
	x := &exporter{v: v, latest: map[string]record.HistoryEntry{}, conflicts: map[string][]record.Conflict{}}
	var last time.Time
	for _, h := range v.History {
		if h.EntryID != "" {
			x.latest[h.EntryID] = h
		}
		if h.At.After(last) {
			last = h.At
		}
	}
	for _, c := range v.Conflicts {
		x.conflicts[c.EntryID] = append(x.conflicts[c.EntryID], c)
	}
	if err := x.export(); err != nil {
		return nil, fmt.Errorf("export chart %s: %w", v.ChartID, err)
	}
	b := &bcrpb.Bundle{
		Type:  &bcrpb.Bundle_TypeCode{Value: cpb.BundleTypeCode_COLLECTION},
		Entry: x.entries,
	}
	if !last.IsZero() {
		b.Timestamp = instant(last)
	}
	if err := Validate(b); err != nil {
		return nil, fmt.Errorf("export chart %s: %w", v.ChartID, err)
	}
	return b, nil
}

// ExportJSON is Export then Marshal.
func ExportJSON(v record.View) ([]byte, error) {
	b, err := Export(v)
	if err != nil {
		return nil, err
	}
	return Marshal(b)
}

func (x *exporter) add(cr *bcrpb.ContainedResource) {
	x.entries = append(x.entries, &bcrpb.Bundle_Entry{Resource: cr})
}

func (x *exporter) export() error {
	v := x.v
	ids := append([]string{v.ChartID}, v.EntryIDs(true)...)
	for _, id := range ids {
		if !reID.MatchString(id) || len(id) > 64-len("-bp-diastolic") {
			return fmt.Errorf("entry ID %q cannot be a FHIR resource id", id)
		}
	}
	x.add(&bcrpb.ContainedResource{OneofResource: &bcrpb.ContainedResource_Patient{Patient: x.patient()}})
	x.provenance("Patient", v.ChartID, time.Time{}, record.Author{})
	if v.NoKnownAllergies {
		x.add(&bcrpb.ContainedResource{OneofResource: &bcrpb.ContainedResource_AllergyIntolerance{AllergyIntolerance: x.noKnownAllergies()}})
	}
	for _, a := range v.Allergies {
		x.add(&bcrpb.ContainedResource{OneofResource: &bcrpb.ContainedResource_AllergyIntolerance{AllergyIntolerance: x.allergy(a)}})
		x.provenance("AllergyIntolerance", a.ID, a.RecordedAt, a.RecordedBy)
	}
	for _, d := range v.Diagnoses {
		x.add(&bcrpb.ContainedResource{OneofResource: &bcrpb.ContainedResource_Condition{Condition: x.condition(d)}})
		x.provenance("Condition", d.ID, d.RecordedAt, d.RecordedBy)
	}
	for _, p := range v.Prescriptions {
		x.add(&bcrpb.ContainedResource{OneofResource: &bcrpb.ContainedResource_MedicationRequest{MedicationRequest: x.prescription(p)}})
		x.provenance("MedicationRequest", p.ID, p.RecordedAt, p.RecordedBy)
	}
	for _, l := range v.LabResults {
		x.add(&bcrpb.ContainedResource{OneofResource: &bcrpb.ContainedResource_Observation{Observation: x.lab(l)}})
		x.provenance("Observation", l.ID, l.RecordedAt, l.RecordedBy)
	}
	for _, e := range v.Encounters {
		x.add(&bcrpb.ContainedResource{OneofResource: &bcrpb.ContainedResource_Encounter{Encounter: x.encounter(e)}})
		for _, o := range x.vitalSigns(e) {
			x.add(&bcrpb.ContainedResource{OneofResource: &bcrpb.ContainedResource_Observation{Observation: o}})
		}
		x.provenance("Encounter", e.ID, e.RecordedAt, e.RecordedBy)
	}
	for _, e := range v.EnteredInError {
		if cr := x.enteredInError(e); cr != nil {
			x.add(cr)
			x.provenance(resourceTypeOf(e.Kind), e.ID, e.At, e.By)
		}
	}
	return nil
}

func patientRef(id string) *dtpb.Reference {
	return &dtpb.Reference{Reference: &dtpb.Reference_PatientId{PatientId: &dtpb.ReferenceId{Value: id}}}
}

// fhirSystem maps an identifier system of record to a FHIR URI.
func fhirSystem(system string) string {
	switch system {
	case record.SystemABHA:
		return SystemABHA
	case record.SystemAadhaar:
		return SystemAadhaar
	}
	if strings.Contains(system, ":") {
		return system
	}
	return IdentifierSystemPrefix + system
}

// recordSystem maps a FHIR identifier system back to record's; ok is
// false for an identifier with no system.
func recordSystem(uri string) (string, bool) {
	switch {
	case uri == "":
		return "", false
	case uri == SystemABHA:
		return record.SystemABHA, true
	case uri == SystemAadhaar:
		return record.SystemAadhaar, true
	case strings.HasPrefix(uri, IdentifierSystemPrefix):
		return strings.TrimPrefix(uri, IdentifierSystemPrefix), true
	}
	scheme, rest, _ := strings.Cut(uri, ":")
	return strings.ToLower(scheme) + ":" + rest, true
}

func identifier(id record.Identifier) *dtpb.Identifier {
	out := &dtpb.Identifier{System: furi(fhirSystem(id.System)), Value: fstr(id.Value)}
	if id.Status == record.StatusInactive {
		out.Use = &dtpb.Identifier_UseCode{Value: cpb.IdentifierUseCode_OLD}
	}
	return out
}

// externalID gives an entry's identifiers: its external ID, if any.
func externalID(id *record.Identifier) []*dtpb.Identifier {
	if id == nil {
		return nil
	}
	if id.System == SystemResource {
		return []*dtpb.Identifier{{System: furi(SystemResource), Value: fstr(id.Value)}}
	}
	return []*dtpb.Identifier{identifier(*id)}
}

func (x *exporter) patient() *patpb.Patient {
	p := x.v.Patient
	out := &patpb.Patient{Id: fid(x.v.ChartID)}
	for _, id := range p.Identifiers {
		out.Identifier = append(out.Identifier, identifier(id))
	}
	if p.GivenName != "" || p.FamilyName != "" {
		n := &dtpb.HumanName{Family: fstr(p.FamilyName)}
		if p.GivenName != "" {
			n.Given = []*dtpb.String{fstr(p.GivenName)}
		}
		out.Name = []*dtpb.HumanName{n}
	}
	if g, ok := enum[cpb.AdministrativeGenderCode_Value](cpb.AdministrativeGenderCode_Value_value, p.Sex); ok {
		out.Gender = &patpb.Patient_GenderCode{Value: g}
	}
	if t, ok := day(p.BirthDate); ok {
		out.BirthDate = &dtpb.Date{ValueUs: t.UnixMicro(), Timezone: "UTC", Precision: dtpb.Date_DAY}
	} else if p.EstimatedBirthYear > 0 {
		t := time.Date(p.EstimatedBirthYear, 1, 1, 0, 0, 0, 0, time.UTC)
		out.BirthDate = &dtpb.Date{ValueUs: t.UnixMicro(), Timezone: "UTC", Precision: dtpb.Date_YEAR}
	}
	if p.Phone != "" {
		out.Telecom = []*dtpb.ContactPoint{{
			System: &dtpb.ContactPoint_SystemCode{Value: cpb.ContactPointSystemCode_PHONE},
			Value:  fstr(p.Phone),
		}}
	}
	if p.Address != "" || p.Village != "" {
		a := &dtpb.Address{City: fstr(p.Village)}
		if p.Address != "" {
			a.Line = []*dtpb.String{fstr(p.Address)}
		}
		out.Address = []*dtpb.Address{a}
	}
	if p.Guardian != "" {
		out.Contact = []*patpb.Patient_Contact{{
			Relationship: []*dtpb.CodeableConcept{concept("guardian")},
			Name:         &dtpb.HumanName{Text: fstr(p.Guardian)},
		}}
	}
	if p.NationalID != "" {
		out.Extension = append(out.Extension, extString(extNationalID, p.NationalID))
	}
	if p.HomeClinic != "" {
		out.ManagingOrganization = &dtpb.Reference{
			Identifier: &dtpb.Identifier{System: furi(SystemClinic), Value: fstr(p.HomeClinic)},
			Display:    fstr(p.HomeClinic),
		}
	}
	out.Extension = append(out.Extension, x.conflictExts(x.v.ChartID)...)
	return out
}

func (x *exporter) noKnownAllergies() *aipb.AllergyIntolerance {
	return &aipb.AllergyIntolerance{
		Id:             fid(x.v.ChartID + "-nka"),
		ClinicalStatus: concept("", coding(systemAllergyClinical, "active", "Active")),
		Code:           concept("No known allergies", coding(systemSNOMED, codeNoKnownAllergy, "No known allergy")),
		Patient:        patientRef(x.v.ChartID),
	}
}

func (x *exporter) allergy(a record.Allergy) *aipb.AllergyIntolerance {
	out := &aipb.AllergyIntolerance{
		Id:           fid(a.ID),
		Identifier:   externalID(a.ExternalID),
		Code:         concept(a.Substance),
		Patient:      patientRef(x.v.ChartID),
		RecordedDate: dateTime(a.RecordedAt),
		Extension:    []*dtpb.Extension{extString(extSeverity, a.Severity)},
	}
	out.ClinicalStatus = concept("", coding(systemAllergyClinical, a.Status, ""))
	switch a.Severity {
	case "severe", "life-threatening":
		out.Criticality = &aipb.AllergyIntolerance_CriticalityCode{Value: cpb.AllergyIntoleranceCriticalityCode_HIGH}
	case "mild", "moderate":
		out.Criticality = &aipb.AllergyIntolerance_CriticalityCode{Value: cpb.AllergyIntoleranceCriticalityCode_LOW}
	}
	if a.Reaction != "" {
		r := &aipb.AllergyIntolerance_Reaction{Manifestation: []*dtpb.CodeableConcept{concept(a.Reaction)}}
		sev := a.Severity
		if sev == "life-threatening" {
			sev = "severe"
		}
		if s, ok := enum[cpb.AllergyIntoleranceSeverityCode_Value](cpb.AllergyIntoleranceSeverityCode_Value_value, sev); ok {
			r.Severity = &aipb.AllergyIntolerance_Reaction_SeverityCode{Value: s}
		}
		out.Reaction = []*aipb.AllergyIntolerance_Reaction{r}
	}
	out.Extension = append(out.Extension, x.conflictExts(a.ID)...)
	return out
}

func (x *exporter) condition(d record.Diagnosis) *condpb.Condition {
	out := &condpb.Condition{
		Id:                 fid(d.ID),
		Identifier:         externalID(d.ExternalID),
		VerificationStatus: concept("", coding(systemConditionVer, d.VerificationStatus, "")),
		Subject:            patientRef(x.v.ChartID),
		RecordedDate:       dateTime(d.RecordedAt),
		Extension:          x.conflictExts(d.ID),
	}
	if d.ClinicalStatus != "" {
		out.ClinicalStatus = concept("", coding(systemConditionClinical, d.ClinicalStatus, ""))
	}
	code := concept(d.Text)
	if d.Code != "" {
		code.Coding = []*dtpb.Coding{coding(SystemICD10, d.Code, "")}
	}
	out.Code = code
	if o := dateTimeDay(d.Onset); o != nil {
		out.Onset = &condpb.Condition_OnsetX{Choice: &condpb.Condition_OnsetX_DateTime{DateTime: o}}
	}
	if d.Note != "" {
		out.Note = []*dtpb.Annotation{{Text: &dtpb.Markdown{Value: d.Note}}}
	}
	return out
}

func (x *exporter) prescription(p record.Prescription) *mrpb.MedicationRequest {
	status, _ := enum[cpb.MedicationrequestStatusCode_Value](cpb.MedicationrequestStatusCode_Value_value, p.Status)
	med := concept(p.Drug)
	if p.ATC != "" {
		med.Coding = append(med.Coding, coding(SystemATC, p.ATC, p.Substance))
	}
	if p.DrugCode != "" {
		med.Extension = append(med.Extension, extString(extDrugCode, p.DrugCode))
	}
	dose := &dtpb.Dosage{
		Text:               fstr(fmt.Sprintf("%s %s %s %s", formatNumber(p.Dose), p.DoseUnit, p.Route, p.Frequency)),
		PatientInstruction: fstr(p.Instructions),
		Route:              concept(p.Route),
		Timing:             &dtpb.Timing{Code: concept(p.Frequency)},
		DoseAndRate: []*dtpb.Dosage_DoseAndRate{{Dose: &dtpb.Dosage_DoseAndRate_DoseX{
			Choice: &dtpb.Dosage_DoseAndRate_DoseX_Quantity{Quantity: &dtpb.SimpleQuantity{Value: decimal(p.Dose), Unit: fstr(p.DoseUnit)}}}}},
	}
	if p.Start != "" || p.End != "" {
		dose.Timing.Repeat = &dtpb.Timing_Repeat{Bounds: &dtpb.Timing_Repeat_BoundsX{
			Choice: &dtpb.Timing_Repeat_BoundsX_Period{Period: &dtpb.Period{Start: dateTimeDay(p.Start), End: dateTimeDay(p.End)}}}}
	}
	out := &mrpb.MedicationRequest{
		Id:                fid(p.ID),
		Identifier:        externalID(p.ExternalID),
		Status:            &mrpb.MedicationRequest_StatusCode{Value: status},
		Intent:            &mrpb.MedicationRequest_IntentCode{Value: cpb.MedicationRequestIntentCode_ORDER},
		Medication:        &mrpb.MedicationRequest_MedicationX{Choice: &mrpb.MedicationRequest_MedicationX_CodeableConcept{CodeableConcept: med}},
		Subject:           patientRef(x.v.ChartID),
		AuthoredOn:        dateTime(p.RecordedAt),
		DosageInstruction: []*dtpb.Dosage{dose},
		Extension:         x.conflictExts(p.ID),
	}
	if p.StatusReason != "" && p.Status != record.StatusActive {
		// An active prescription's reason is that of its last change (a
		// dose revision, a resumption), which is no status reason.
		out.StatusReason = concept(p.StatusReason)
	}
	if p.DurationDays > 0 {
		out.DispenseRequest = &mrpb.MedicationRequest_DispenseRequest{ExpectedSupplyDuration: &dtpb.Duration{
			Value: decimal(float64(p.DurationDays)), Unit: fstr("days"), System: furi(systemUCUM), Code: fcode("d")}}
	}
	return out
}

func formatNumber(f float64) string { return decimal(f).GetValue() }

// interpretation maps record's interpretation of a result to
// v3-ObservationInterpretation.
func interpretation(l record.LabResult) *dtpb.CodeableConcept {
	code, display := "", ""
	switch l.Interpretation {
	case record.InterpretationLow:
		code, display = "L", "Low"
	case record.InterpretationNormal:
		code, display = "N", "Normal"
	case record.InterpretationHigh:
		code, display = "H", "High"
	case record.InterpretationCritical:
		switch {
		case l.Value != nil && l.CriticalLow != nil && *l.Value <= *l.CriticalLow:
			code, display = "LL", "Critical low"
		case l.Value != nil:
			code, display = "HH", "Critical high"
		default:
			code, display = "AA", "Critical abnormal"
		}
	case record.InterpretationAbnormal:
		code, display = "A", "Abnormal"
	default:
		return nil
	}
	return concept("", coding(systemInterpretation, code, display))
}

func simpleQuantity(f *float64, unit string) *dtpb.SimpleQuantity {
	if f == nil {
		return nil
	}
	return &dtpb.SimpleQuantity{Value: decimal(*f), Unit: fstr(unit)}
}

func (x *exporter) lab(l record.LabResult) *obspb.Observation {
	status, _ := enum[cpb.ObservationStatusCode_Value](cpb.ObservationStatusCode_Value_value, l.Status)
	code := concept(l.Test)
	if l.LOINC != "" {
		code.Coding = []*dtpb.Coding{coding(SystemLOINC, l.LOINC, "")}
	}
	out := &obspb.Observation{
		Id:         fid(l.ID),
		Identifier: externalID(l.ExternalID),
		Status:     &obspb.Observation_StatusCode{Value: status},
		Category:   []*dtpb.CodeableConcept{concept("", coding(systemObsCategory, "laboratory", "Laboratory"))},
		Code:       code,
		Subject:    patientRef(x.v.ChartID),
		Issued:     instant(l.RecordedAt),
		Extension:  x.conflictExts(l.ID),
	}
	if !l.SpecimenAt.IsZero() {
		out.Effective = &obspb.Observation_EffectiveX{Choice: &obspb.Observation_EffectiveX_DateTime{DateTime: dateTime(l.SpecimenAt)}}
	}
	switch {
	case l.Value != nil:
		out.Value = &obspb.Observation_ValueX{Choice: &obspb.Observation_ValueX_Quantity{Quantity: &dtpb.Quantity{Value: decimal(*l.Value), Unit: fstr(l.Unit)}}}
	case l.TextValue != "":
		out.Value = &obspb.Observation_ValueX{Choice: &obspb.Observation_ValueX_StringValue{StringValue: &dtpb.String{Value: l.TextValue}}}
	}
	if i := interpretation(l); i != nil {
		out.Interpretation = []*dtpb.CodeableConcept{i}
	}
	if l.RefLow != nil || l.RefHigh != nil || l.RefText != "" {
		out.ReferenceRange = append(out.ReferenceRange, &obspb.Observation_ReferenceRange{
			Low: simpleQuantity(l.RefLow, l.Unit), High: simpleQuantity(l.RefHigh, l.Unit), Text: fstr(l.RefText),
			Type: concept("", coding("http://terminology.hl7.org/CodeSystem/referencerange-meaning", "normal", "Normal Range")),
		})
	}
	if l.CriticalLow != nil || l.CriticalHigh != nil {
		out.ReferenceRange = append(out.ReferenceRange, &obspb.Observation_ReferenceRange{
			Low: simpleQuantity(l.CriticalLow, l.Unit), High: simpleQuantity(l.CriticalHigh, l.Unit),
			Type: concept("critical"),
		})
	}
	for _, t := range l.AbnormalTexts {
		out.Extension = append(out.Extension, extString(extAbnormalText, t))
	}
	for _, t := range l.CriticalTexts {
		out.Extension = append(out.Extension, extString(extCriticalText, t))
	}
	if l.StatusReason != "" {
		out.Extension = append(out.Extension, extString(extStatusReason, l.StatusReason))
	}
	return out
}

func (x *exporter) encounter(e record.Encounter) *encpb.Encounter {
	out := &encpb.Encounter{
		Id:         fid(e.ID),
		Identifier: externalID(e.ExternalID),
		Status:     &encpb.Encounter_StatusCode{Value: cpb.EncounterStatusCode_FINISHED},
		ClassValue: coding(systemActCode, "AMB", "ambulatory"),
		Subject:    patientRef(x.v.ChartID),
		Extension:  x.conflictExts(e.ID),
	}
	if d := dateTimeDay(e.Date); d != nil {
		out.Period = &dtpb.Period{Start: d}
	}
	if e.Complaint != "" {
		out.ReasonCode = []*dtpb.CodeableConcept{concept(e.Complaint)}
	}
	if e.Clinician != "" {
		out.Participant = []*encpb.Encounter_Participant{{Individual: &dtpb.Reference{Display: fstr(e.Clinician)}}}
	}
	if e.Note != "" && e.Note != record.Redacted {
		out.Extension = append(out.Extension, extString(extNote, e.Note))
	}
	return out
}

func (x *exporter) vitalSigns(e record.Encounter) []*obspb.Observation {
	var out []*obspb.Observation
	vs := e.Vitals
	for _, m := range vitals {
		f := *m.get(&vs)
		if f == 0 {
			continue
		}
		o := &obspb.Observation{
			Id:       fid(e.ID + "-" + m.key),
			Status:   &obspb.Observation_StatusCode{Value: cpb.ObservationStatusCode_FINAL},
			Category: []*dtpb.CodeableConcept{concept("", coding(systemObsCategory, "vital-signs", "Vital Signs"))},
			Code:     concept(m.display, coding(SystemLOINC, m.loinc, m.display)),
			Subject:  patientRef(x.v.ChartID),
			Encounter: &dtpb.Reference{Reference: &dtpb.Reference_EncounterId{
				EncounterId: &dtpb.ReferenceId{Value: e.ID}}},
			Value: &obspb.Observation_ValueX{Choice: &obspb.Observation_ValueX_Quantity{Quantity: &dtpb.Quantity{
				Value: decimal(f), Unit: fstr(m.unit), System: furi(systemUCUM), Code: fcode(m.unit)}}},
		}
		if d := dateTimeDay(e.Date); d != nil {
			o.Effective = &obspb.Observation_EffectiveX{Choice: &obspb.Observation_EffectiveX_DateTime{DateTime: d}}
		}
		out = append(out, o)
	}
	return out
}

// resourceTypeOf names the FHIR resource type of an entry kind.
func resourceTypeOf(kind string) string {
	switch kind {
	case record.KindAllergy:
		return "AllergyIntolerance"
	case record.KindDiagnosis:
		return "Condition"
	case record.KindPrescription:
		return "MedicationRequest"
	case record.KindLabResult:
		return "Observation"
	case record.KindEncounter:
		return "Encounter"
	}
	return ""
}

// enteredInError exports what the view keeps of an entry marked entered
// in error: its kind, label and the status entered-in-error.
func (x *exporter) enteredInError(e record.ErrorEntry) *bcrpb.ContainedResource {
	subject := patientRef(x.v.ChartID)
	switch e.Kind {
	case record.KindAllergy:
		return &bcrpb.ContainedResource{OneofResource: &bcrpb.ContainedResource_AllergyIntolerance{AllergyIntolerance: &aipb.AllergyIntolerance{
			Id: fid(e.ID), Code: concept(e.Label), Patient: subject,
			VerificationStatus: concept("", coding(systemAllergyVer, "entered-in-error", "Entered in Error")),
		}}}
	case record.KindDiagnosis:
		return &bcrpb.ContainedResource{OneofResource: &bcrpb.ContainedResource_Condition{Condition: &condpb.Condition{
			Id: fid(e.ID), Code: concept(e.Label), Subject: subject,
			VerificationStatus: concept("", coding(systemConditionVer, "entered-in-error", "Entered in Error")),
		}}}
	case record.KindPrescription:
		return &bcrpb.ContainedResource{OneofResource: &bcrpb.ContainedResource_MedicationRequest{MedicationRequest: &mrpb.MedicationRequest{
			Id: fid(e.ID), Subject: subject,
			Status:       &mrpb.MedicationRequest_StatusCode{Value: cpb.MedicationrequestStatusCode_ENTERED_IN_ERROR},
			Intent:       &mrpb.MedicationRequest_IntentCode{Value: cpb.MedicationRequestIntentCode_ORDER},
			Medication:   &mrpb.MedicationRequest_MedicationX{Choice: &mrpb.MedicationRequest_MedicationX_CodeableConcept{CodeableConcept: concept(e.Label)}},
			StatusReason: reasonConcept(e.Reason),
		}}}
	case record.KindLabResult:
		return &bcrpb.ContainedResource{OneofResource: &bcrpb.ContainedResource_Observation{Observation: &obspb.Observation{
			Id: fid(e.ID), Code: concept(e.Label), Subject: subject,
			Status: &obspb.Observation_StatusCode{Value: cpb.ObservationStatusCode_ENTERED_IN_ERROR},
		}}}
	case record.KindEncounter:
		return &bcrpb.ContainedResource{OneofResource: &bcrpb.ContainedResource_Encounter{Encounter: &encpb.Encounter{
			Id: fid(e.ID), Subject: subject,
			Status:     &encpb.Encounter_StatusCode{Value: cpb.EncounterStatusCode_ENTERED_IN_ERROR},
			ClassValue: coding(systemActCode, "AMB", "ambulatory"),
		}}}
	}
	return nil
}

func reasonConcept(s string) *dtpb.CodeableConcept {
	if s == "" {
		return nil
	}
	return concept(s)
}

// provenance adds the Provenance of a resource's latest change: who
// (user, role), which device, when. Entries with no history entry of
// their own fall back to when and by whom they were recorded.
func (x *exporter) provenance(typ, id string, at time.Time, by record.Author) {
	h, ok := x.latest[id]
	if ok {
		at, by = h.At, h.By
	}
	if at.IsZero() || by.UserID == "" {
		return
	}
	target := &dtpb.Reference{Reference: &dtpb.Reference_Uri{Uri: &dtpb.String{Value: typ + "/" + id}}}
	switch typ {
	case "Patient":
		target = patientRef(id)
	case "Encounter":
		target = &dtpb.Reference{Reference: &dtpb.Reference_EncounterId{EncounterId: &dtpb.ReferenceId{Value: id}}}
	}
	p := &provpb.Provenance{
		Id:       fid(id + "-prov"),
		Target:   []*dtpb.Reference{target},
		Recorded: instant(at),
		Occurred: &provpb.Provenance_OccurredX{Choice: &provpb.Provenance_OccurredX_DateTime{DateTime: dateTime(at)}},
		Agent: []*provpb.Provenance_Agent{{
			Type: concept("", coding(systemParticipantType, "author", "Author")),
			Role: []*dtpb.CodeableConcept{concept(string(by.Role))},
			Who: &dtpb.Reference{
				Identifier: &dtpb.Identifier{System: furi(SystemUser), Value: fstr(by.UserID)},
				Display:    fstr(by.Name),
			},
		}},
	}
	if ok && h.Summary != record.Redacted {
		p.Activity = concept(h.Summary)
	}
	if typ == "Encounter" {
		for _, m := range vitals {
			if slices.ContainsFunc(x.v.Encounters, func(e record.Encounter) bool { return e.ID == id && *m.get(&e.Vitals) != 0 }) {
				p.Target = append(p.Target, &dtpb.Reference{Reference: &dtpb.Reference_Uri{Uri: &dtpb.String{Value: "Observation/" + id + "-" + m.key}}})
			}
		}
	}
	if by.Device != "" {
		p.Agent = append(p.Agent, &provpb.Provenance_Agent{
			Type: concept("", coding(systemParticipantType, "assembler", "Assembler")),
			Who: &dtpb.Reference{
				Type:       furi("Device"),
				Identifier: &dtpb.Identifier{System: furi(SystemDevice), Value: fstr(by.Device)},
			},
		})
	}
	x.entries = append(x.entries, &bcrpb.Bundle_Entry{Resource: &bcrpb.ContainedResource{
		OneofResource: &bcrpb.ContainedResource_Provenance{Provenance: p}}})
}

// conflictExts gives one ExtConflict extension per value competing in an
// unsettled conflict of the entry.
func (x *exporter) conflictExts(entryID string) []*dtpb.Extension {
	var out []*dtpb.Extension
	for _, c := range x.conflicts[entryID] {
		for _, w := range c.Values {
			e := &dtpb.Extension{Url: furi(ExtConflict), Extension: []*dtpb.Extension{
				extString("field", c.Field),
				extString("value", w.Value),
				extString("author", w.By.UserID),
				extString("role", string(w.By.Role)),
			}}
			if w.By.Device != "" {
				e.Extension = append(e.Extension, extString("device", w.By.Device))
			}
			e.Extension = append(e.Extension, &dtpb.Extension{Url: furi("at"), Value: &dtpb.Extension_ValueX{
				Choice: &dtpb.Extension_ValueX_DateTime{DateTime: dateTime(w.At)}}})
			e.Extension = append(e.Extension, &dtpb.Extension{Url: furi("shown"), Value: &dtpb.Extension_ValueX{
				Choice: &dtpb.Extension_ValueX_Boolean{Boolean: &dtpb.Boolean{Value: w.Value == c.Shown}}}})
			out = append(out, e)
		}
	}
	return out
}
