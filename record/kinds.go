package record

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Entry kinds, as stored in writes and shown in views.
const (
	KindPatient      = "patient"
	KindAllergy      = "allergy"
	KindDiagnosis    = "diagnosis"
	KindPrescription = "prescription"
	KindLabResult    = "lab-result"
	KindEncounter    = "encounter"
	// KindReferral is a referral: the chart is shared with another
	// clinic.
	KindReferral = "referral"
	// KindIdentifier is one of a patient's identifiers (a national health
	// ID, an ID card, a clinic number, a phone): an entry of its own, so
	// that identifiers added on two devices are both kept.
	KindIdentifier = "identifier"
	// KindMerge is a merge entry of a surviving chart: a chart merged into
	// it (see "Merging duplicate charts" in the package documentation).
	KindMerge = "merge"
)

// A kindSpec declares one kind of chart entry: everything the package
// knows of the kind apart from the operations that write it. The state,
// views, permissions, validation, read policies and the judging of
// received changes all read it from entryKinds; nothing else lists kinds.
type kindSpec struct {
	// name is the kind as stored in every write ("allergy"): never
	// change it, charts hold it.
	name string
	// section is the section every field of the kind belongs to, but
	// those in fieldSections; a role changes the kind's entries only
	// if Permitted to change it (see Section).
	section       Section
	fieldSections map[string]Section
	// fields lists every field an entry of the kind may have, with the
	// check of its stored value. A write to any other field is refused,
	// by Chart.Do and in received changes (CheckChange, Checker).
	fields map[string]fieldSpec
	// externalID adds the field external_id, the entry's identifier in
	// another system ("system|value", see CanonicalIdentifier).
	externalID bool
	// precedence lists, for each status-like field, its values from the
	// one that wins a concurrent change to the one that loses: concurrent
	// values of such a field resolve by it, never by who wrote a value or
	// when (see the package documentation), and ResolveConflict leaves
	// it alone. Every value the field's check accepts is listed.
	precedence map[string][]string
	// errorField is the field MarkEnteredInError sets to
	// entered-in-error (a diagnosis's verification status), and whose
	// value entered-in-error moves an entry from its View list to
	// View.EnteredInError; "" for a kind that cannot be entered in error.
	errorField string
	// note is true for a kind whose entries carry a collaborative note
	// (notes/<entry ID>), which belongs to the kind's section.
	note bool
	// label names an entry in conflicts, entered-in-error lists and
	// history summaries.
	label func(e *entry) string
	// view adds an entry that is not entered in error to a View being
	// built (notes are the chart's notes, by entry ID). nil for the
	// patient, which is the View's Patient rather than an entry listed.
	view func(v *View, e *entry, notes map[string]string)
	// list is the View list view adds to, if the kind has one of its
	// own: a view starts with it empty, not nil.
	list entryList
	// clinical is true for the clinical kinds: listed by View.EntryIDs,
	// and shown in a combined view from every chart merged (Combine),
	// where other kinds are the surviving chart's alone.
	clinical bool
	// redact applies a read policy to a view (a copy, out) as far as the
	// kind goes: it removes what hides says a role may not read, and
	// returns the IDs of the entries it hid, whose conflicts, alerts,
	// history and entered-in-error entries then keep only that they
	// exist (see ReadPolicy.Redact).
	redact func(k *kindSpec, out *View, hides func(Section) bool) []string
}

// entryKinds declares every kind of entry a chart holds, in the order
// views list them (conflicts, entries entered in error) and of the
// sections of the permission table.
//
// To add a kind: declare its Kind constant above and its kindSpec here
// (fields and checks, section, statuses and their precedence, the field
// marking it entered in error, label, view, list and redaction), with
// the type a View shows it as (a list field of View, its type with an
// entryID method). TestKindsDeclaredCompletely checks the declaration.
// A kind in a new section needs the section's constant and its row of
// the permission table (permissions, doc.go). Then write the operations
// that add and change its entries (ops.go); nothing else lists kinds.
var entryKinds = []*kindSpec{
	{
		// The chart's own entry, whose ID is the chart's.
		name: KindPatient, section: SectionDemographics,
		fieldSections: map[string]Section{
			// "No known allergies" is a statement about allergies.
			"nka": SectionAllergies,
			// The forwarding pointer of a merged chart.
			fieldMergedInto: SectionMerges,
		},
		fields: map[string]fieldSpec{
			"given": text(100), "family": text(100), "sex": oneOf(sexes...),
			"birth_date": optional(date), "birth_year": optional(number(1880, 2200)),
			"village": text(100), "address": text(300), "phone": optional(pattern(rePhone, "a phone number")),
			"national_id": optional(pattern(reCode, "an identifier")), "guardian": text(200),
			"home_clinic": text(100), "nka": oneOf("true", "false"),
			fieldMergedInto: optional(pattern(reID, "a chart ID")),
		},
		// An allergy recorded concurrently with "no known allergies" wins.
		precedence: map[string][]string{"nka": {"false", "true"}},
		label: func(e *entry) string {
			return strings.TrimSpace(e.value("given") + " " + e.value("family"))
		},
		// Demographics cannot be hidden (checkHidden); "no known
		// allergies" goes with the allergies. Where a merged chart
		// forwards (View.MergedInto) is shown whatever the policy.
		redact: func(k *kindSpec, out *View, hides func(Section) bool) []string {
			if hides(k.fieldSections["nka"]) {
				out.NoKnownAllergies = false
			}
			return nil
		},
	},
	{
		name: KindIdentifier, section: SectionDemographics,
		fields: map[string]fieldSpec{
			"identifier": identifierSpec,
			"status":     oneOf(StatusActive, StatusInactive, StatusEnteredInError), "status_reason": text(500),
		},
		precedence: map[string][]string{"status": {StatusEnteredInError, StatusInactive, StatusActive}},
		errorField: "status",
		label: func(e *entry) string {
			if id, ok := parseIdentifier(e.value("identifier")); ok {
				return id.System + " " + id.Value
			}
			return e.id
		},
		// Shown with the patient (Patient.Identifiers).
		view: func(v *View, e *entry, _ map[string]string) {
			if id, ok := identifierOf(e); ok {
				v.Patient.Identifiers = append(v.Patient.Identifiers, id)
			}
		},
		redact: neverHidden,
	},
	{
		name: KindAllergy, section: SectionAllergies, externalID: true,
		fields: map[string]fieldSpec{
			"substance": text(200), "reaction": text(300), "severity": oneOf(severities...),
			"status": oneOf(StatusActive, StatusInactive, StatusResolved, StatusEnteredInError), "status_reason": text(500),
		},
		precedence: map[string][]string{"status": {StatusEnteredInError, StatusActive, StatusInactive, StatusResolved}},
		errorField: "status",
		label:      fieldLabel("substance"),
		view: func(v *View, e *entry, _ map[string]string) {
			v.Allergies = append(v.Allergies, Allergy{
				ID: e.id, Substance: e.value("substance"), Reaction: e.value("reaction"),
				Severity: e.value("severity"), Status: e.value("status"), ExternalID: e.externalID(), Recorded: e.recorded(),
			})
		},
		list:     listOf[Allergy](func(v *View) *[]Allergy { return &v.Allergies }),
		clinical: true,
		redact:   hideEntries,
	},
	{
		name: KindDiagnosis, section: SectionDiagnoses, externalID: true,
		fields: map[string]fieldSpec{
			"code": optional(pattern(reICD10, "an ICD-10 code such as J18.9")), "text": text(300), "onset": optional(date),
			"clinical": oneOf(clinicals...), "verification": oneOf(append(verifs, StatusEnteredInError)...),
			"note": text(2000), "status_reason": text(500),
		},
		precedence: map[string][]string{
			"clinical": {ClinicalRelapse, ClinicalRecurrence, ClinicalActive, ClinicalRemission, ClinicalInactive,
				ClinicalResolved},
			"verification": {StatusEnteredInError, VerificationConfirmed, VerificationProvisional,
				VerificationDifferential, VerificationUnconfirmed, VerificationRefuted},
		},
		// FHIR gives a Condition entered in error no clinical status.
		errorField: "verification",
		label:      fieldLabel("text"),
		view: func(v *View, e *entry, _ map[string]string) {
			v.Diagnoses = append(v.Diagnoses, Diagnosis{
				ID: e.id, Code: e.value("code"), Text: e.value("text"), Onset: e.value("onset"),
				ClinicalStatus: e.value("clinical"), VerificationStatus: e.value("verification"),
				Note: e.value("note"), ExternalID: e.externalID(), Recorded: e.recorded(),
			})
		},
		list:     listOf[Diagnosis](func(v *View) *[]Diagnosis { return &v.Diagnoses }),
		clinical: true,
		redact:   hideEntries,
	},
	{
		name: KindPrescription, section: SectionPrescriptions, externalID: true,
		fields: map[string]fieldSpec{
			"drug": text(200), "drug_code": optional(pattern(reCode, "a drug code")),
			"atc":  optional(pattern(reATC, "a level-5 ATC code such as J01CA04")),
			"dose": number(0.0001, 100000), "unit": oneOf(doseUnits...), "route": oneOf(routes...),
			"frequency": oneOf(frequencies...), "duration_days": optional(number(1, 3650)),
			"start": optional(date), "end": optional(date), "instructions": text(1000),
			"status": oneOf(StatusActive, StatusOnHold, StatusCompleted, StatusStopped, StatusEnteredInError), "status_reason": text(500),
		},
		precedence: map[string][]string{
			"status": {StatusEnteredInError, StatusStopped, StatusCompleted, StatusOnHold, StatusActive},
		},
		errorField: "status",
		label:      fieldLabel("drug"),
		view: func(v *View, e *entry, _ map[string]string) {
			dose, _ := parseFloat(e.value("dose"))
			days, _ := strconv.Atoi(e.value("duration_days"))
			rx := Prescription{
				ID: e.id, Drug: e.value("drug"), ATC: e.value("atc"), DrugCode: e.value("drug_code"), Dose: dose,
				DoseUnit: e.value("unit"), Route: e.value("route"), Frequency: e.value("frequency"),
				DurationDays: days, Start: e.value("start"), End: e.value("end"),
				Instructions: e.value("instructions"), Status: e.value("status"),
				StatusReason: e.statusReason("status"), ExternalID: e.externalID(), Recorded: e.recorded(),
			}
			if d, ok := DrugDictionary().Code(rx.ATC); ok {
				rx.Substance = d.Name
			}
			rx.Uncoded = rx.ATC == ""
			v.Prescriptions = append(v.Prescriptions, rx)
		},
		list:     listOf[Prescription](func(v *View) *[]Prescription { return &v.Prescriptions }),
		clinical: true,
		redact:   hideEntries,
	},
	{
		name: KindLabResult, section: SectionLabResults, externalID: true,
		fields: map[string]fieldSpec{
			"test": text(200), "loinc": optional(loinc),
			"value": optional(number(-1e9, 1e9)), "text": text(500), "unit": text(40),
			"ref_text": text(200), "abnormal_text": textList(20, 200), "critical_text": textList(20, 200),
			"ref_low": optional(number(-1e9, 1e9)), "ref_high": optional(number(-1e9, 1e9)),
			"critical_low": optional(number(-1e9, 1e9)), "critical_high": optional(number(-1e9, 1e9)),
			"specimen_at": timestamp,
			"status":      oneOf(StatusPreliminary, StatusFinal, StatusCorrected, StatusEnteredInError), "status_reason": text(500),
		},
		precedence: map[string][]string{
			"status": {StatusEnteredInError, StatusCorrected, StatusFinal, StatusPreliminary},
		},
		errorField: "status",
		label:      fieldLabel("test"),
		view: func(v *View, e *entry, _ map[string]string) {
			v.LabResults = append(v.LabResults, labResult(e))
		},
		list:     listOf[LabResult](func(v *View) *[]LabResult { return &v.LabResults }),
		clinical: true,
		redact:   hideEntries,
	},
	{
		name: KindEncounter, section: SectionEncounters, externalID: true, note: true,
		fields: map[string]fieldSpec{
			"date": date, "clinician": text(200), "complaint": text(1000),
			"bp_systolic": optional(number(40, 300)), "bp_diastolic": optional(number(20, 200)),
			"pulse": optional(number(20, 300)), "temperature": optional(number(25, 45)),
			"weight": optional(number(0.3, 400)), "height": optional(number(20, 260)), "spo2": optional(number(50, 100)),
			"status": oneOf(StatusRecorded, StatusEnteredInError), "status_reason": text(500),
		},
		precedence: map[string][]string{"status": {StatusEnteredInError, StatusRecorded}},
		errorField: "status",
		label: func(e *entry) string {
			return e.value("date") + " " + e.value("complaint")
		},
		view: func(v *View, e *entry, notes map[string]string) {
			enc := Encounter{
				ID: e.id, Date: e.value("date"), Clinician: e.value("clinician"),
				Complaint: e.value("complaint"), Note: notes[e.id], ExternalID: e.externalID(), Recorded: e.recorded(),
			}
			for _, f := range enc.Vitals.fields() {
				*f.v, _ = parseFloat(e.value(f.field))
			}
			v.Encounters = append(v.Encounters, enc)
		},
		list:     listOf[Encounter](func(v *View) *[]Encounter { return &v.Encounters }),
		clinical: true,
		// A policy may hide the notes alone (SectionNotes): the visits
		// stay listed, their notes blanked.
		redact: func(k *kindSpec, out *View, hides func(Section) bool) []string {
			if hides(k.section) {
				return hideEntries(k, out, hides)
			}
			if hides(SectionNotes) {
				out.Encounters = slices.Clone(out.Encounters)
				for i := range out.Encounters {
					if out.Encounters[i].Note != "" {
						out.Encounters[i].Note = Redacted
					}
				}
			}
			return nil
		},
	},
	{
		name: KindReferral, section: SectionReferrals, externalID: true,
		fields: map[string]fieldSpec{
			"clinic": text(100), "reason": text(500),
			"status": oneOf(StatusActive, StatusEnded, StatusEnteredInError), "status_reason": text(500),
		},
		precedence: map[string][]string{"status": {StatusEnteredInError, StatusEnded, StatusActive}},
		errorField: "status",
		label: func(e *entry) string {
			return "referral to " + e.value("clinic")
		},
		view: func(v *View, e *entry, _ map[string]string) {
			v.Referrals = append(v.Referrals, Referral{
				ID: e.id, Clinic: e.value("clinic"), Reason: e.value("reason"), Status: e.value("status"),
				StatusReason: e.value("status_reason"), ExternalID: e.externalID(), Recorded: e.recorded(),
			})
		},
		list:   listOf[Referral](func(v *View) *[]Referral { return &v.Referrals }),
		redact: hideEntries,
	},
	{
		name: KindMerge, section: SectionMerges,
		fields: map[string]fieldSpec{
			"chart": pattern(reID, "a chart ID"), "reason": text(500),
			"status": oneOf(StatusActive, StatusUnmerged), "status_reason": text(500),
		},
		// An unmerge is an explicit act of someone who saw the merge;
		// which charts are shown together follows the forwarding
		// pointers anyway.
		precedence: map[string][]string{"status": {StatusUnmerged, StatusActive}},
		// A merge entry is released, not entered in error: marking it so
		// fails the status's check.
		errorField: "status",
		label:      func(e *entry) string { return e.id },
		// Listed in View.Merges, which stays nil when there are none.
		view: func(v *View, e *entry, _ map[string]string) {
			v.Merges = append(v.Merges, Merge{
				ID: e.id, ChartID: e.value("chart"), Reason: e.value("reason"), Status: e.value("status"),
				StatusReason: e.statusReason("status"), Recorded: e.recorded(),
			})
		},
		// Which charts a view shows together is shown whatever the
		// policy.
		redact: neverHidden,
	},
}

// kindSpecs indexes entryKinds by name. It is filled by init, so that
// the functions entryKinds declares may read it.
var kindSpecs map[string]*kindSpec

func init() {
	kindSpecs = make(map[string]*kindSpec, len(entryKinds))
	for _, k := range entryKinds {
		if k.externalID {
			k.fields["external_id"] = identifierSpec
		}
		kindSpecs[k.name] = k
	}
}

// knownKind reports whether k is a kind entryKinds declares.
func knownKind(k string) bool { return kindSpecs[k] != nil }

// precedenceOf returns the precedence of a field of a kind, nil if its
// competing values are not ranked.
func precedenceOf(kind, field string) []string {
	if k := kindSpecs[kind]; k != nil {
		return k.precedence[field]
	}
	return nil
}

// sectionOf returns the section a field of an entry kind belongs to.
func sectionOf(kind, field string) (Section, bool) {
	k := kindSpecs[kind]
	if k == nil {
		return "", false
	}
	if s, ok := k.fieldSections[field]; ok {
		return s, true
	}
	return k.section, true
}

// noteSection returns the section of the note of an entry of the kind,
// false if the kind's entries carry no note.
func noteSection(kind string) (Section, bool) {
	if k := kindSpecs[kind]; k != nil && k.note {
		return k.section, true
	}
	return "", false
}

// kindSections returns the sections of the kinds, in the order of
// entryKinds: the columns of the permission table.
func kindSections() []Section {
	var out []Section
	for _, k := range entryKinds {
		if !slices.Contains(out, k.section) {
			out = append(out, k.section)
		}
	}
	return out
}

// fieldLabel labels an entry by the value of one of its fields.
func fieldLabel(field string) func(e *entry) string {
	return func(e *entry) string { return e.value(field) }
}

// label names an entry in words (see kindSpec.label).
func label(e *entry) string {
	if k := kindSpecs[e.kind]; k != nil {
		return k.label(e)
	}
	return e.id
}

// recorded says who first recorded the entry, and when.
func (e *entry) recorded() Recorded {
	return Recorded{RecordedAt: e.created.time(), RecordedBy: e.created.author()}
}

// hideEntries is the redaction of a kind listed in a View of its own:
// a role that may not read the kind's section sees the list empty.
func hideEntries(k *kindSpec, out *View, hides func(Section) bool) []string {
	if !hides(k.section) {
		return nil
	}
	ids := k.list.ids(out)
	k.list.reset(out)
	return ids
}

// neverHidden is the redaction of a kind a read policy leaves alone.
func neverHidden(*kindSpec, *View, func(Section) bool) []string { return nil }

// entryList is the list of a View that shows the entries of one kind.
type entryList interface {
	// reset makes the list empty (not nil).
	reset(v *View)
	// ids returns the IDs of the entries listed.
	ids(v *View) []string
	// appendFrom adds the entries of src's list to dst's.
	appendFrom(dst, src *View)
	// sort orders the list oldest first (by recording time, then ID),
	// keeping the order of equal entries.
	sort(v *View)
}

// shownEntry is an entry as a View lists it.
type shownEntry interface {
	entryID() string
	recordedAt() time.Time
}

// listOf is the entryList at the field of a View that it returns.
type listOf[T shownEntry] func(v *View) *[]T

func (l listOf[T]) reset(v *View) { *l(v) = []T{} }

func (l listOf[T]) ids(v *View) []string {
	var out []string
	for _, x := range *l(v) {
		out = append(out, x.entryID())
	}
	return out
}

func (l listOf[T]) appendFrom(dst, src *View) { *l(dst) = append(*l(dst), *l(src)...) }

func (l listOf[T]) sort(v *View) {
	slices.SortStableFunc(*l(v), func(a, b T) int {
		return cmp.Or(a.recordedAt().Compare(b.recordedAt()), strings.Compare(a.entryID(), b.entryID()))
	})
}

func (r Recorded) recordedAt() time.Time { return r.RecordedAt }

func (a Allergy) entryID() string      { return a.ID }
func (d Diagnosis) entryID() string    { return d.ID }
func (p Prescription) entryID() string { return p.ID }
func (l LabResult) entryID() string    { return l.ID }
func (e Encounter) entryID() string    { return e.ID }
func (r Referral) entryID() string     { return r.ID }
