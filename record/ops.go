package record

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Op is a typed operation on a chart. The set is closed: the operation
// types of this package are the only writes a chart accepts, and each
// validates its input against the chart before anything is written.
type Op interface {
	plan(s *state, at time.Time) (*plan, error)
}

// set is one field write an operation makes.
type set struct {
	kind, entry, field, value string
}

// plan is what an operation will write, worked out and validated before
// the document is touched.
type plan struct {
	// made lists the writes write put into the document, with their IDs.
	made    []*write
	op      string // machine name, e.g. "prescribe"
	entry   string // the entry created or changed
	summary string // what happened, in words a clinician uses
	sets    []set
	// note operations on the collaborative text of an entry of kind
	// noteKind (an encounter)
	noteKind           string
	newNote            bool
	noteText           string
	splicePos, spliceN int
	splice             bool
}

func (p *plan) put(kind, entry, field, value string) {
	p.sets = append(p.sets, set{kind, entry, field, value})
}

// putChanged writes value unless it is already the field's only value.
func (p *plan) putChanged(s *state, kind, entry, field, value string) {
	if e := s.entries[entry]; e != nil {
		if r := e.fields[field]; r != nil && len(r.current) == 1 && r.current[0].Value == value {
			return
		}
	}
	p.put(kind, entry, field, value)
}

// check validates every value the plan writes.
func (p *plan) check() error {
	for _, w := range p.sets {
		if err := checkField(w.kind, w.field, w.value); err != nil {
			return err
		}
	}
	return nil
}

// ErrNotFound is returned when an operation names an entry the chart does
// not hold (or holds under another kind).
var ErrNotFound = errors.New("record: entry not found")

// ErrTransition is returned when an operation is not allowed in an entry's
// current status, such as resuming a prescription that was stopped.
var ErrTransition = errors.New("record: operation not allowed in the current status")

func transition(what, from string) error {
	return fmt.Errorf("%s: entry is %s: %w", what, from, ErrTransition)
}

// find returns the entry of the given kind, or ErrNotFound.
func (s *state) find(kind, id string) (*entry, error) {
	e := s.entries[id]
	if e == nil || e.kind != kind || id == s.chartID {
		return nil, fmt.Errorf("%s %q: %w", kind, id, ErrNotFound)
	}
	return e, nil
}

func required(field, v string) error {
	if strings.TrimSpace(v) == "" {
		return invalid(field, "is required")
	}
	return nil
}

func newID() string { return uuid.NewString() }

// Ptr returns a pointer to v: a shorthand for the optional fields of
// UpdateDemographics, UpdateAllergy and lab results.
func Ptr[T any](v T) *T { return &v }

// ---- patient ----

// Register creates a chart for a patient. It is given to New, which makes
// it the chart's first change; it is not an Op, so it cannot be applied
// to a chart that exists.
type Register Patient

// Patient is a patient's demographics.
type Patient struct {
	GivenName  string `json:"given_name,omitempty"`
	FamilyName string `json:"family_name,omitempty"`
	// Sex is female, male, other or unknown.
	Sex string `json:"sex"`
	// BirthDate (YYYY-MM-DD) when known; otherwise EstimatedBirthYear.
	BirthDate          string `json:"birth_date,omitempty"`
	EstimatedBirthYear int    `json:"estimated_birth_year,omitempty"`
	Village            string `json:"village,omitempty"`
	Address            string `json:"address,omitempty"`
	Phone              string `json:"phone,omitempty"`
	// NationalID is a national health ID such as an ABHA number.
	NationalID string `json:"national_id,omitempty"`
	Guardian   string `json:"guardian,omitempty"`
	HomeClinic string `json:"home_clinic"`
	// Identifiers are the patient's identifiers (national health IDs,
	// ID cards, clinic numbers, phones), each an entry of the chart,
	// oldest first; those entered in error are left out. Register takes
	// System and Value of each.
	Identifiers []Identifier `json:"identifiers,omitempty"`
}

// FullName is the patient's names joined for display.
func (p Patient) FullName() string {
	return strings.TrimSpace(p.GivenName + " " + p.FamilyName)
}

var patientFields = []struct {
	field string
	get   func(*Patient) *string
}{
	{"given", func(p *Patient) *string { return &p.GivenName }},
	{"family", func(p *Patient) *string { return &p.FamilyName }},
	{"sex", func(p *Patient) *string { return &p.Sex }},
	{"birth_date", func(p *Patient) *string { return &p.BirthDate }},
	{"village", func(p *Patient) *string { return &p.Village }},
	{"address", func(p *Patient) *string { return &p.Address }},
	{"phone", func(p *Patient) *string { return &p.Phone }},
	{"national_id", func(p *Patient) *string { return &p.NationalID }},
	{"guardian", func(p *Patient) *string { return &p.Guardian }},
	{"home_clinic", func(p *Patient) *string { return &p.HomeClinic }},
}

// checkPatient checks a patient's demographics; now is today's date as
// the checks take it (see today).
func checkPatient(p Patient, now time.Time) error {
	if strings.TrimSpace(p.GivenName) == "" && strings.TrimSpace(p.FamilyName) == "" {
		return invalid("given_name", "a given or family name is required")
	}
	if err := required("sex", p.Sex); err != nil {
		return err
	}
	if err := required("home_clinic", p.HomeClinic); err != nil {
		return err
	}
	if p.BirthDate == "" && p.EstimatedBirthYear == 0 {
		return invalid("birth_date", "a birth date or an estimated birth year is required")
	}
	if p.BirthDate != "" {
		d, err := time.Parse(time.DateOnly, p.BirthDate)
		if err != nil {
			return invalid("birth_date", "%q is not a date (YYYY-MM-DD)", p.BirthDate)
		}
		if d.After(now) || d.Year() < 1880 {
			return invalid("birth_date", "%s is not a plausible birth date", p.BirthDate)
		}
	}
	if y := p.EstimatedBirthYear; y != 0 && (y < 1880 || y > now.Year()) {
		return invalid("estimated_birth_year", "%d is not a plausible birth year", y)
	}
	return nil
}

func (r Register) registerPlan(chartID string, at time.Time) (*plan, error) {
	p := Patient(r)
	now, _ := today(at, time.Time{})
	if err := checkPatient(p, now); err != nil {
		return nil, err
	}
	pl := &plan{op: "register", entry: chartID}
	for _, f := range patientFields {
		if v := *f.get(&p); v != "" {
			pl.put(KindPatient, chartID, f.field, v)
		}
	}
	if p.EstimatedBirthYear != 0 {
		pl.put(KindPatient, chartID, "birth_year", strconv.Itoa(p.EstimatedBirthYear))
	}
	none := &state{chartID: chartID, entries: map[string]*entry{}}
	for _, id := range p.Identifiers {
		if _, err := pl.addIdentifier(none, id); err != nil {
			return nil, err
		}
	}
	born := p.BirthDate
	if born == "" {
		born = fmt.Sprintf("about %d", p.EstimatedBirthYear)
	}
	pl.summary = fmt.Sprintf("Registered %s (%s, born %s), home clinic %s", p.FullName(), p.Sex, born, p.HomeClinic)
	return pl, nil
}

// UpdateDemographics changes some of a patient's details. Nil fields are
// left alone; a non-nil field is written even when it equals the shown
// value if that value is in conflict, which resolves the conflict.
type UpdateDemographics struct {
	GivenName, FamilyName, Sex, BirthDate         *string
	Village, Address, Phone, NationalID, Guardian *string
	HomeClinic                                    *string
	EstimatedBirthYear                            *int
}

func (u UpdateDemographics) plan(s *state, at time.Time) (*plan, error) {
	cur := s.patientView()
	next := cur
	ptrs := map[string]*string{
		"given": u.GivenName, "family": u.FamilyName, "sex": u.Sex, "birth_date": u.BirthDate,
		"village": u.Village, "address": u.Address, "phone": u.Phone, "national_id": u.NationalID,
		"guardian": u.Guardian, "home_clinic": u.HomeClinic,
	}
	for _, f := range patientFields {
		if v := ptrs[f.field]; v != nil {
			*f.get(&next) = *v
		}
	}
	if u.EstimatedBirthYear != nil {
		next.EstimatedBirthYear = *u.EstimatedBirthYear
	}
	now, _ := s.today(at)
	if err := checkPatient(next, now); err != nil {
		return nil, err
	}
	p := &plan{op: "update-demographics", entry: s.chartID}
	var changed []string
	for _, f := range patientFields {
		if v := ptrs[f.field]; v != nil {
			n := len(p.sets)
			p.putChanged(s, KindPatient, s.chartID, f.field, *v)
			if len(p.sets) > n {
				changed = append(changed, strings.ReplaceAll(f.field, "_", " "))
			}
		}
	}
	if u.EstimatedBirthYear != nil {
		v := ""
		if *u.EstimatedBirthYear != 0 {
			v = strconv.Itoa(*u.EstimatedBirthYear)
		}
		n := len(p.sets)
		p.putChanged(s, KindPatient, s.chartID, "birth_year", v)
		if len(p.sets) > n {
			changed = append(changed, "estimated birth year")
		}
	}
	if len(p.sets) == 0 {
		return nil, invalid("demographics", "the update changes nothing")
	}
	p.summary = "Updated " + strings.Join(changed, ", ")
	return p, nil
}

// ---- allergies ----

// AddAllergy records an allergy or intolerance. It also withdraws any
// "no known allergies" statement.
type AddAllergy struct {
	Substance string
	Reaction  string
	// Severity is mild, moderate, severe or life-threatening.
	Severity string
	// ExternalID is the entry's identifier in another system (an imported
	// record's ID), if any; see CanonicalIdentifier.
	ExternalID Identifier
}

func (a AddAllergy) plan(s *state, at time.Time) (*plan, error) {
	if err := required("substance", a.Substance); err != nil {
		return nil, err
	}
	if err := required("severity", a.Severity); err != nil {
		return nil, err
	}
	id := newID()
	p := &plan{op: "add-allergy", entry: id}
	p.put(KindAllergy, id, "substance", strings.TrimSpace(a.Substance))
	if a.Reaction != "" {
		p.put(KindAllergy, id, "reaction", a.Reaction)
	}
	p.put(KindAllergy, id, "severity", a.Severity)
	p.put(KindAllergy, id, "status", StatusActive)
	if err := p.putExternalID(KindAllergy, id, a.ExternalID); err != nil {
		return nil, err
	}
	if r := s.patient().fields["nka"]; r != nil && slices.ContainsFunc(r.current, func(w *write) bool { return w.Value == "true" }) {
		p.put(KindPatient, s.chartID, "nka", "false")
	}
	p.summary = fmt.Sprintf("Recorded allergy to %s (%s)", strings.TrimSpace(a.Substance), a.Severity)
	if a.Reaction != "" {
		p.summary += ": " + a.Reaction
	}
	return p, nil
}

// UpdateAllergy changes an allergy's reaction, severity or status
// (active, inactive, resolved). Use MarkEnteredInError for a mistake.
type UpdateAllergy struct {
	AllergyID string
	Reaction  *string
	Severity  *string
	Status    *string
	Reason    string
}

func (u UpdateAllergy) plan(s *state, at time.Time) (*plan, error) {
	e, err := s.find(KindAllergy, u.AllergyID)
	if err != nil {
		return nil, err
	}
	if st := e.value("status"); st == StatusEnteredInError {
		return nil, transition("update allergy", st)
	}
	p := &plan{op: "update-allergy", entry: e.id}
	var what []string
	reactivated := false
	if u.Reaction != nil {
		p.putChanged(s, KindAllergy, e.id, "reaction", *u.Reaction)
		what = append(what, "reaction "+*u.Reaction)
	}
	if u.Severity != nil {
		if err := required("severity", *u.Severity); err != nil {
			return nil, err
		}
		p.putChanged(s, KindAllergy, e.id, "severity", *u.Severity)
		what = append(what, "severity "+*u.Severity)
	}
	if u.Status != nil {
		if *u.Status == StatusEnteredInError {
			return nil, invalid("status", "use MarkEnteredInError for an allergy recorded by mistake")
		}
		n := len(p.sets)
		p.putChanged(s, KindAllergy, e.id, "status", *u.Status)
		what = append(what, "status "+*u.Status)
		reactivated = len(p.sets) > n && *u.Status == StatusActive
	}
	if len(p.sets) == 0 {
		return nil, invalid("allergy", "the update changes nothing")
	}
	// An allergy made active again withdraws "no known allergies", as
	// recording one does.
	if r := s.patient().fields["nka"]; reactivated && r != nil && slices.ContainsFunc(r.current, func(w *write) bool { return w.Value == "true" }) {
		p.put(KindPatient, s.chartID, "nka", "false")
	}
	if u.Reason != "" {
		p.put(KindAllergy, e.id, "status_reason", u.Reason)
	}
	p.summary = fmt.Sprintf("Updated allergy to %s: %s", e.value("substance"), strings.Join(what, ", "))
	return p, nil
}

// RecordNoKnownAllergies states that the patient has no known allergies.
// It is refused while the chart lists an active allergy.
type RecordNoKnownAllergies struct{}

func (RecordNoKnownAllergies) plan(s *state, at time.Time) (*plan, error) {
	for _, e := range s.entriesOf(KindAllergy) {
		if e.value("status") == StatusActive {
			return nil, fmt.Errorf("no known allergies: an allergy to %s is active: %w", e.value("substance"), ErrTransition)
		}
	}
	p := &plan{op: "no-known-allergies", entry: s.chartID, summary: "Recorded no known allergies"}
	p.putChanged(s, KindPatient, s.chartID, "nka", "true")
	if len(p.sets) == 0 {
		return nil, invalid("nka", "no known allergies is already recorded")
	}
	return p, nil
}

// ---- diagnoses ----

// Diagnose records a diagnosis.
type Diagnose struct {
	// Code is an optional ICD-10 code, such as B54 or J18.9.
	Code string
	Text string
	// Onset (YYYY-MM-DD) is optional.
	Onset string
	// ClinicalStatus defaults to active; VerificationStatus to provisional.
	ClinicalStatus     string
	VerificationStatus string
	Note               string
	// ExternalID is the entry's identifier in another system (an imported
	// record's ID), if any; see CanonicalIdentifier.
	ExternalID Identifier
}

func (d Diagnose) plan(s *state, at time.Time) (*plan, error) {
	if err := required("text", d.Text); err != nil {
		return nil, err
	}
	if d.ClinicalStatus == "" {
		d.ClinicalStatus = "active"
	}
	if d.VerificationStatus == "" {
		d.VerificationStatus = "provisional"
	}
	if d.VerificationStatus == StatusEnteredInError {
		return nil, invalid("verification", "a new diagnosis cannot be entered in error")
	}
	if d.Onset != "" {
		now, _ := s.today(at)
		if t, err := time.Parse(time.DateOnly, d.Onset); err == nil && t.After(now) {
			return nil, invalid("onset", "%s is in the future", d.Onset)
		}
	}
	id := newID()
	p := &plan{op: "diagnose", entry: id}
	p.put(KindDiagnosis, id, "text", strings.TrimSpace(d.Text))
	for _, f := range []struct{ field, v string }{{"code", d.Code}, {"onset", d.Onset}, {"note", d.Note}} {
		if f.v != "" {
			p.put(KindDiagnosis, id, f.field, f.v)
		}
	}
	p.put(KindDiagnosis, id, "clinical", d.ClinicalStatus)
	p.put(KindDiagnosis, id, "verification", d.VerificationStatus)
	if err := p.putExternalID(KindDiagnosis, id, d.ExternalID); err != nil {
		return nil, err
	}
	label := strings.TrimSpace(d.Text)
	if d.Code != "" {
		label += " (" + d.Code + ")"
	}
	p.summary = fmt.Sprintf("Diagnosed %s, %s, %s", label, d.ClinicalStatus, d.VerificationStatus)
	return p, nil
}

// ChangeDiagnosisStatus changes a diagnosis's clinical or verification
// status (or both).
type ChangeDiagnosisStatus struct {
	DiagnosisID        string
	ClinicalStatus     string
	VerificationStatus string
	Reason             string
}

func (c ChangeDiagnosisStatus) plan(s *state, at time.Time) (*plan, error) {
	e, err := s.find(KindDiagnosis, c.DiagnosisID)
	if err != nil {
		return nil, err
	}
	if v := e.value("verification"); v == StatusEnteredInError {
		return nil, transition("change diagnosis status", v)
	}
	if c.ClinicalStatus == "" && c.VerificationStatus == "" {
		return nil, invalid("clinical", "a clinical or verification status is required")
	}
	if c.VerificationStatus == StatusEnteredInError {
		return nil, invalid("verification", "use MarkEnteredInError for a diagnosis recorded by mistake")
	}
	p := &plan{op: "change-diagnosis-status", entry: e.id}
	var what []string
	if c.ClinicalStatus != "" {
		p.putChanged(s, KindDiagnosis, e.id, "clinical", c.ClinicalStatus)
		what = append(what, c.ClinicalStatus)
	}
	if c.VerificationStatus != "" {
		p.putChanged(s, KindDiagnosis, e.id, "verification", c.VerificationStatus)
		what = append(what, c.VerificationStatus)
	}
	if len(p.sets) == 0 {
		return nil, invalid("clinical", "the diagnosis already has that status")
	}
	if c.Reason != "" {
		p.put(KindDiagnosis, e.id, "status_reason", c.Reason)
	}
	p.summary = fmt.Sprintf("Marked diagnosis %s as %s", e.value("text"), strings.Join(what, " and "))
	return p, nil
}

// ---- prescriptions ----

// Prescribe starts a prescription, which is active until it is put on
// hold, completed, stopped or marked entered in error.
type Prescribe struct {
	Drug string
	// ATC is the drug's WHO ATC code (level 5, such as J01CA04). When
	// empty, it is the code of the drug the dictionary finds by Drug
	// (DrugDictionary().Lookup), if any: a drug it does not know is
	// recorded as written, and shown uncoded. A code given must be well
	// formed and, when the dictionary knows both the code and the name,
	// be a code of the drug named; a well-formed code the dictionary does
	// not know is kept (a newer dictionary may know it).
	ATC string
	// DrugCode is an optional code of another system (RxNorm, a national
	// list), kept as written.
	DrugCode string
	Dose     float64
	// DoseUnit is one of mg, g, mcg, ml, IU, units, tablet, capsule, drop,
	// puff, sachet, suppository.
	DoseUnit string
	// Route is oral, IV, IM, SC, topical, inhaled, rectal, vaginal,
	// sublingual, nasal, ophthalmic, otic or transdermal.
	Route string
	// Frequency is one of OD, BD, TDS, QID, Q4H, Q6H, Q8H, Q12H, NOCTE,
	// PRN, STAT, WEEKLY.
	Frequency    string
	DurationDays int
	// Start and End (YYYY-MM-DD) are optional.
	Start, End   string
	Instructions string
	// ExternalID is the entry's identifier in another system (an imported
	// record's ID), if any; see CanonicalIdentifier.
	ExternalID Identifier
}

func (rx Prescribe) plan(s *state, at time.Time) (*plan, error) {
	if err := required("drug", rx.Drug); err != nil {
		return nil, err
	}
	if rx.Dose <= 0 {
		return nil, invalid("dose", "must be greater than zero")
	}
	for _, f := range []struct{ name, v string }{{"unit", rx.DoseUnit}, {"route", rx.Route}, {"frequency", rx.Frequency}} {
		if err := required(f.name, f.v); err != nil {
			return nil, err
		}
	}
	if rx.DurationDays < 0 {
		return nil, invalid("duration_days", "must not be negative")
	}
	if rx.Start != "" && rx.End != "" && rx.End < rx.Start {
		return nil, invalid("end", "%s is before the start %s", rx.End, rx.Start)
	}
	atc, err := codeOf(rx.Drug, rx.ATC)
	if err != nil {
		return nil, err
	}
	id := newID()
	p := &plan{op: "prescribe", entry: id}
	p.put(KindPrescription, id, "drug", strings.TrimSpace(rx.Drug))
	if atc != "" {
		p.put(KindPrescription, id, "atc", atc)
	}
	p.put(KindPrescription, id, "dose", fmtFloat(rx.Dose))
	p.put(KindPrescription, id, "unit", rx.DoseUnit)
	p.put(KindPrescription, id, "route", rx.Route)
	p.put(KindPrescription, id, "frequency", rx.Frequency)
	for _, f := range []struct{ field, v string }{{"drug_code", rx.DrugCode}, {"start", rx.Start}, {"end", rx.End}, {"instructions", rx.Instructions}} {
		if f.v != "" {
			p.put(KindPrescription, id, f.field, f.v)
		}
	}
	if rx.DurationDays > 0 {
		p.put(KindPrescription, id, "duration_days", strconv.Itoa(rx.DurationDays))
	}
	p.put(KindPrescription, id, "status", StatusActive)
	if err := p.putExternalID(KindPrescription, id, rx.ExternalID); err != nil {
		return nil, err
	}
	p.summary = fmt.Sprintf("Prescribed %s %s %s %s %s", strings.TrimSpace(rx.Drug), fmtFloat(rx.Dose), rx.DoseUnit, rx.Route, words(rx.Frequency))
	if rx.DurationDays > 0 {
		p.summary += fmt.Sprintf(" for %d days", rx.DurationDays)
	}
	return p, nil
}

func words(freq string) string {
	if w, ok := frequencyWords[freq]; ok {
		return w
	}
	return freq
}

// ReviseDose changes the dose (and optionally unit and frequency) of an
// active or on-hold prescription.
type ReviseDose struct {
	PrescriptionID string
	Dose           float64
	DoseUnit       string // unchanged when empty
	Frequency      string // unchanged when empty
	Reason         string
}

func (r ReviseDose) plan(s *state, at time.Time) (*plan, error) {
	e, err := s.find(KindPrescription, r.PrescriptionID)
	if err != nil {
		return nil, err
	}
	if st := e.value("status"); st != StatusActive && st != StatusOnHold {
		return nil, transition("revise dose", st)
	}
	if r.Dose <= 0 {
		return nil, invalid("dose", "must be greater than zero")
	}
	p := &plan{op: "revise-dose", entry: e.id}
	p.putChanged(s, KindPrescription, e.id, "dose", fmtFloat(r.Dose))
	unit, freq := e.value("unit"), e.value("frequency")
	if r.DoseUnit != "" {
		p.putChanged(s, KindPrescription, e.id, "unit", r.DoseUnit)
		unit = r.DoseUnit
	}
	if r.Frequency != "" {
		p.putChanged(s, KindPrescription, e.id, "frequency", r.Frequency)
		freq = r.Frequency
	}
	if len(p.sets) == 0 {
		return nil, invalid("dose", "the prescription already has that dose")
	}
	if r.Reason != "" {
		p.put(KindPrescription, e.id, "status_reason", r.Reason)
	}
	p.summary = fmt.Sprintf("Changed %s to %s %s %s", e.value("drug"), fmtFloat(r.Dose), unit, words(freq))
	return p, nil
}

// rxStatus is the plan of a prescription status change.
func rxStatus(s *state, id, op, to, reason string, from []string, needReason bool, verb string) (*plan, error) {
	e, err := s.find(KindPrescription, id)
	if err != nil {
		return nil, err
	}
	st := e.value("status")
	ok := false
	for _, f := range from {
		ok = ok || st == f
	}
	if !ok {
		return nil, transition(op, st)
	}
	if needReason {
		if err := required("reason", reason); err != nil {
			return nil, err
		}
	}
	p := &plan{op: op, entry: e.id}
	p.put(KindPrescription, e.id, "status", to)
	if reason != "" {
		p.put(KindPrescription, e.id, "status_reason", reason)
	}
	p.summary = fmt.Sprintf("%s %s", verb, e.value("drug"))
	if reason != "" {
		p.summary += ": " + reason
	}
	return p, nil
}

// PutOnHold pauses an active prescription.
type PutOnHold struct {
	PrescriptionID string
	Reason         string
}

func (o PutOnHold) plan(s *state, at time.Time) (*plan, error) {
	return rxStatus(s, o.PrescriptionID, "put-on-hold", StatusOnHold, o.Reason, []string{StatusActive}, false, "Put on hold")
}

// Resume restarts a prescription that is on hold.
type Resume struct {
	PrescriptionID string
	Reason         string
}

func (o Resume) plan(s *state, at time.Time) (*plan, error) {
	return rxStatus(s, o.PrescriptionID, "resume", StatusActive, o.Reason, []string{StatusOnHold}, false, "Resumed")
}

// Discontinue stops an active or on-hold prescription; a reason is
// required.
type Discontinue struct {
	PrescriptionID string
	Reason         string
}

func (o Discontinue) plan(s *state, at time.Time) (*plan, error) {
	return rxStatus(s, o.PrescriptionID, "discontinue", StatusStopped, o.Reason, []string{StatusActive, StatusOnHold}, true, "Discontinued")
}

// Complete marks an active or on-hold prescription as finished as planned.
type Complete struct {
	PrescriptionID string
}

func (o Complete) plan(s *state, at time.Time) (*plan, error) {
	return rxStatus(s, o.PrescriptionID, "complete", StatusCompleted, "", []string{StatusActive, StatusOnHold}, false, "Completed")
}

// ---- lab results ----

// RecordLabResult records a lab result with a numeric value (and unit)
// or a text value. The interpretation (low, normal, high, critical) is
// computed from the reference and critical ranges given.
type RecordLabResult struct {
	Test string
	// LOINC is an optional LOINC code, such as 718-7 for haemoglobin.
	LOINC     string
	Value     *float64
	TextValue string
	Unit      string
	RefLow    *float64
	RefHigh   *float64
	// CriticalLow and CriticalHigh bound values that need action now.
	CriticalLow  *float64
	CriticalHigh *float64
	// RefText is the reference range as text, such as "negative" or
	// "<1000 copies/mL": a text value equal to it is normal.
	RefText string
	// AbnormalTexts and CriticalTexts are the text values that are
	// abnormal ("positive") or need action now. A text value is compared
	// with them and RefText ignoring case and extra spaces; a text value
	// none of them names is not interpreted. They apply to text values
	// only.
	AbnormalTexts []string
	CriticalTexts []string
	SpecimenAt    time.Time
	// Status is preliminary or final (the default).
	Status string
	// ExternalID is the entry's identifier in another system (an imported
	// record's ID), if any; see CanonicalIdentifier.
	ExternalID Identifier
}

func (l RecordLabResult) plan(s *state, at time.Time) (*plan, error) {
	if err := required("test", l.Test); err != nil {
		return nil, err
	}
	if err := checkLabValue(l.Value, l.TextValue, l.Unit); err != nil {
		return nil, err
	}
	if l.RefLow != nil && l.RefHigh != nil && *l.RefLow > *l.RefHigh {
		return nil, invalid("ref_low", "the reference range %g–%g is reversed", *l.RefLow, *l.RefHigh)
	}
	if l.CriticalLow != nil && l.CriticalHigh != nil && *l.CriticalLow > *l.CriticalHigh {
		return nil, invalid("critical_low", "the critical range %g–%g is reversed", *l.CriticalLow, *l.CriticalHigh)
	}
	abnormal, critical, err := checkTextRules(l.Value != nil, l.RefText, l.AbnormalTexts, l.CriticalTexts)
	if err != nil {
		return nil, err
	}
	if l.SpecimenAt.IsZero() {
		return nil, invalid("specimen_at", "the specimen time is required")
	}
	if now, _ := s.today(at); l.SpecimenAt.After(now.Add(24 * time.Hour)) {
		return nil, invalid("specimen_at", "%s is in the future", l.SpecimenAt.Format(time.RFC3339))
	}
	if l.Status == "" {
		l.Status = StatusFinal
	}
	if l.Status != StatusPreliminary && l.Status != StatusFinal {
		return nil, invalid("status", "a new lab result is preliminary or final, not %q", l.Status)
	}
	id := newID()
	p := &plan{op: "record-lab-result", entry: id}
	p.put(KindLabResult, id, "test", strings.TrimSpace(l.Test))
	for _, f := range []struct {
		field string
		v     *float64
	}{{"value", l.Value}, {"ref_low", l.RefLow}, {"ref_high", l.RefHigh}, {"critical_low", l.CriticalLow}, {"critical_high", l.CriticalHigh}} {
		if f.v != nil {
			p.put(KindLabResult, id, f.field, fmtFloat(*f.v))
		}
	}
	for _, f := range []struct{ field, v string }{{"loinc", l.LOINC}, {"text", l.TextValue}, {"unit", l.Unit},
		{"ref_text", strings.TrimSpace(l.RefText)}, {"abnormal_text", abnormal}, {"critical_text", critical}} {
		if f.v != "" {
			p.put(KindLabResult, id, f.field, f.v)
		}
	}
	p.put(KindLabResult, id, "specimen_at", l.SpecimenAt.UTC().Format(time.RFC3339))
	p.put(KindLabResult, id, "status", l.Status)
	if err := p.putExternalID(KindLabResult, id, l.ExternalID); err != nil {
		return nil, err
	}
	p.summary = fmt.Sprintf("Recorded %s result %s (%s)", strings.TrimSpace(l.Test), labValue(l.Value, l.TextValue, l.Unit), l.Status)
	return p, nil
}

// checkTextRules checks the text rules of a lab result and returns the
// abnormal and critical texts as stored (one a line).
func checkTextRules(numeric bool, ref string, abnormal, critical []string) (string, string, error) {
	if numeric && len(abnormal)+len(critical) > 0 {
		field := "abnormal_text"
		if len(abnormal) == 0 {
			field = "critical_text"
		}
		return "", "", invalid(field, "text rules apply to text values, not to a numeric value")
	}
	seen := map[string]string{}
	if r := foldText(ref); r != "" {
		seen[r] = "ref_text"
	}
	for _, l := range []struct {
		field string
		texts []string
	}{{"abnormal_text", abnormal}, {"critical_text", critical}} {
		for _, t := range l.texts {
			k := foldText(t)
			if k == "" {
				return "", "", invalid(l.field, "lists an empty text")
			}
			if o, ok := seen[k]; ok && o != l.field {
				return "", "", invalid(l.field, "%q is also given as %s", strings.TrimSpace(t), strings.ReplaceAll(o, "_", " "))
			}
			seen[k] = l.field
		}
	}
	trimmed := func(ts []string) string {
		out := make([]string, len(ts))
		for i, t := range ts {
			out[i] = strings.TrimSpace(t)
		}
		return strings.Join(out, "\n")
	}
	return trimmed(abnormal), trimmed(critical), nil
}

// foldText is what text results are compared by: lower case, spaces
// collapsed.
func foldText(s string) string { return strings.Join(strings.Fields(strings.ToLower(s)), " ") }

func checkLabValue(v *float64, text, unit string) error {
	switch {
	case v == nil && strings.TrimSpace(text) == "":
		return invalid("value", "a numeric or text value is required")
	case v != nil && text != "":
		return invalid("value", "give a numeric or a text value, not both")
	case v != nil && strings.TrimSpace(unit) == "":
		return invalid("unit", "a numeric value needs a unit")
	}
	return nil
}

func labValue(v *float64, text, unit string) string {
	if v != nil {
		return strings.TrimSpace(fmtFloat(*v) + " " + unit)
	}
	return text
}

// FinalizeLabResult marks a preliminary lab result final.
type FinalizeLabResult struct {
	LabResultID string
}

func (f FinalizeLabResult) plan(s *state, at time.Time) (*plan, error) {
	e, err := s.find(KindLabResult, f.LabResultID)
	if err != nil {
		return nil, err
	}
	if st := e.value("status"); st != StatusPreliminary {
		return nil, transition("finalize lab result", st)
	}
	p := &plan{op: "finalize-lab-result", entry: e.id, summary: fmt.Sprintf("Finalised %s result", e.value("test"))}
	p.put(KindLabResult, e.id, "status", StatusFinal)
	return p, nil
}

// CorrectLabResult replaces a lab result's value; the earlier value stays
// in the chart's history and in LabResult.Previous. A reason is required.
type CorrectLabResult struct {
	LabResultID string
	Value       *float64
	TextValue   string
	Unit        string // unchanged when empty
	Reason      string
}

func (c CorrectLabResult) plan(s *state, at time.Time) (*plan, error) {
	e, err := s.find(KindLabResult, c.LabResultID)
	if err != nil {
		return nil, err
	}
	if st := e.value("status"); st == StatusEnteredInError {
		return nil, transition("correct lab result", st)
	}
	unit := c.Unit
	if unit == "" {
		unit = e.value("unit")
	}
	if err := checkLabValue(c.Value, c.TextValue, unit); err != nil {
		return nil, err
	}
	if err := required("reason", c.Reason); err != nil {
		return nil, err
	}
	p := &plan{op: "correct-lab-result", entry: e.id}
	if c.Value != nil {
		p.put(KindLabResult, e.id, "value", fmtFloat(*c.Value))
		if e.value("text") != "" {
			p.put(KindLabResult, e.id, "text", "")
		}
	} else {
		p.put(KindLabResult, e.id, "text", c.TextValue)
		if e.value("value") != "" {
			p.put(KindLabResult, e.id, "value", "")
		}
	}
	if c.Unit != "" {
		p.putChanged(s, KindLabResult, e.id, "unit", c.Unit)
	}
	p.put(KindLabResult, e.id, "status", StatusCorrected)
	p.put(KindLabResult, e.id, "status_reason", c.Reason)
	p.summary = fmt.Sprintf("Corrected %s result from %s to %s: %s", e.value("test"),
		labValueOf(e), labValue(c.Value, c.TextValue, unit), c.Reason)
	return p, nil
}

func labValueOf(e *entry) string {
	if v := e.value("value"); v != "" {
		return strings.TrimSpace(v + " " + e.value("unit"))
	}
	return e.value("text")
}

// ---- encounters ----

// Vitals are the measurements taken at an encounter; zero means not
// measured.
type Vitals struct {
	BPSystolic  float64 `json:"bp_systolic,omitempty"`  // mmHg
	BPDiastolic float64 `json:"bp_diastolic,omitempty"` // mmHg
	Pulse       float64 `json:"pulse,omitempty"`        // beats per minute
	Temperature float64 `json:"temperature,omitempty"`  // °C
	Weight      float64 `json:"weight,omitempty"`       // kg
	Height      float64 `json:"height,omitempty"`       // cm
	SpO2        float64 `json:"spo2,omitempty"`         // %
}

func (v *Vitals) fields() []struct {
	field string
	v     *float64
} {
	return []struct {
		field string
		v     *float64
	}{
		{"bp_systolic", &v.BPSystolic}, {"bp_diastolic", &v.BPDiastolic}, {"pulse", &v.Pulse},
		{"temperature", &v.Temperature}, {"weight", &v.Weight}, {"height", &v.Height}, {"spo2", &v.SpO2},
	}
}

// AddEncounter records a visit: when, who saw the patient, the complaint,
// vitals, and a free-text note that several people may edit at once (see
// EditNote).
type AddEncounter struct {
	// Date (YYYY-MM-DD); today when empty.
	Date      string
	Clinician string
	Complaint string
	Vitals    Vitals
	Note      string
	// ExternalID is the entry's identifier in another system (an imported
	// record's ID), if any; see CanonicalIdentifier.
	ExternalID Identifier
}

func (a AddEncounter) plan(s *state, at time.Time) (*plan, error) {
	now, clock := s.today(at)
	if a.Date == "" {
		if clock != nil {
			// Today, by a wrong clock, would be a wrong date.
			return nil, invalid("date", "the encounter's date is required while the device's clock is wrong")
		}
		a.Date = at.UTC().Format(time.DateOnly)
	}
	if d, err := time.Parse(time.DateOnly, a.Date); err == nil && d.After(now.Add(24*time.Hour)) {
		return nil, invalid("date", "%s is in the future", a.Date)
	}
	if err := required("complaint", a.Complaint); err != nil {
		return nil, err
	}
	if (a.Vitals.BPSystolic == 0) != (a.Vitals.BPDiastolic == 0) {
		return nil, invalid("bp_diastolic", "blood pressure needs both systolic and diastolic values")
	}
	if a.Vitals.BPSystolic != 0 && a.Vitals.BPDiastolic >= a.Vitals.BPSystolic {
		return nil, invalid("bp_diastolic", "diastolic %g is not below systolic %g", a.Vitals.BPDiastolic, a.Vitals.BPSystolic)
	}
	if err := text(20000)(a.Note); err != nil {
		return nil, invalid("note", "%v", err)
	}
	id := newID()
	p := &plan{op: "add-encounter", entry: id, noteKind: KindEncounter, newNote: true, noteText: a.Note}
	p.put(KindEncounter, id, "date", a.Date)
	if a.Clinician != "" {
		p.put(KindEncounter, id, "clinician", a.Clinician)
	}
	p.put(KindEncounter, id, "complaint", a.Complaint)
	for _, f := range a.Vitals.fields() {
		if *f.v != 0 {
			p.put(KindEncounter, id, f.field, fmtFloat(*f.v))
		}
	}
	p.put(KindEncounter, id, "status", StatusRecorded)
	if err := p.putExternalID(KindEncounter, id, a.ExternalID); err != nil {
		return nil, err
	}
	p.summary = fmt.Sprintf("Saw the patient on %s for %s", a.Date, a.Complaint)
	return p, nil
}

// EditNote edits an encounter's note in place: it deletes Delete
// characters at Pos and inserts Insert there. Concurrent edits by others
// merge character by character.
type EditNote struct {
	EncounterID string
	Pos         int
	Delete      int
	Insert      string
}

func (n EditNote) plan(s *state, at time.Time) (*plan, error) {
	e, err := s.find(KindEncounter, n.EncounterID)
	if err != nil {
		return nil, err
	}
	if st := e.value("status"); st == StatusEnteredInError {
		return nil, transition("edit note", st)
	}
	if n.Pos < 0 || n.Delete < 0 {
		return nil, invalid("pos", "position and deletion must not be negative")
	}
	if n.Delete == 0 && n.Insert == "" {
		return nil, invalid("insert", "the edit changes nothing")
	}
	if err := text(20000)(n.Insert); err != nil {
		return nil, invalid("insert", "%v", err)
	}
	p := &plan{op: "edit-note", entry: e.id, noteKind: KindEncounter, splice: true, splicePos: n.Pos, spliceN: n.Delete, noteText: n.Insert}
	p.summary = fmt.Sprintf("Edited the note of the %s encounter", e.value("date"))
	return p, nil
}

// ---- corrections ----

// MarkEnteredInError hides an entry recorded by mistake from the active
// view. Nothing is deleted: the entry stays in the chart's history and in
// View.EnteredInError. A reason is required.
type MarkEnteredInError struct {
	EntryID string
	Reason  string
}

func (m MarkEnteredInError) plan(s *state, at time.Time) (*plan, error) {
	e := s.entries[m.EntryID]
	if e == nil || kindSpecs[e.kind].errorField == "" {
		return nil, fmt.Errorf("entry %q: %w", m.EntryID, ErrNotFound)
	}
	if err := required("reason", m.Reason); err != nil {
		return nil, err
	}
	field := kindSpecs[e.kind].errorField
	if st := e.value(field); st == StatusEnteredInError {
		return nil, transition("mark entered in error", st)
	}
	p := &plan{op: "mark-entered-in-error", entry: e.id}
	p.put(e.kind, e.id, field, StatusEnteredInError)
	p.put(e.kind, e.id, "status_reason", m.Reason)
	p.summary = fmt.Sprintf("Marked %s %s as entered in error: %s", strings.ReplaceAll(e.kind, "-", " "), label(e), m.Reason)
	return p, nil
}

// ResolveConflict settles a field that concurrent edits left with several
// values, by writing the value to keep (one of the competing values or a
// new one). Statuses are not resolved this way: they follow the clinical
// precedence, and the status operations change them. The exception is the
// patient's "nka" field: Value "false" confirms an allergy recorded
// concurrently with "no known allergies" and clears the allergy-status
// alert.
type ResolveConflict struct {
	EntryID string
	Field   string
	Value   string
}

func (r ResolveConflict) plan(s *state, at time.Time) (*plan, error) {
	e := s.entries[r.EntryID]
	if e == nil {
		return nil, fmt.Errorf("entry %q: %w", r.EntryID, ErrNotFound)
	}
	nka := e.kind == KindPatient && r.Field == "nka"
	if nka && r.Value == "true" && slices.ContainsFunc(s.entriesOf(KindAllergy), func(a *entry) bool { return a.value("status") == StatusActive }) {
		return nil, fmt.Errorf("resolve no known allergies: an allergy is active: %w", ErrTransition)
	}
	if precedenceOf(e.kind, r.Field) != nil && !nka {
		return nil, invalid(r.Field, "a status follows clinical precedence; use the status operations to change it")
	}
	reg := e.fields[r.Field]
	// "No known allergies" recorded concurrently with an allergy is not a
	// conflict of values (the allergy wrote none) but raises the
	// allergy-status alert; confirming the allergy (false) settles it.
	nkaAlert := nka && r.Value == "false" && reg != nil &&
		slices.ContainsFunc(reg.current, func(w *write) bool { return w.Value == "true" }) &&
		slices.ContainsFunc(s.entriesOf(KindAllergy), func(a *entry) bool { return a.value("status") == StatusActive })
	if (reg == nil || !reg.inConflict()) && !nkaAlert {
		return nil, fmt.Errorf("resolve %s of %s: the field is not in conflict: %w", r.Field, label(e), ErrTransition)
	}
	p := &plan{op: "resolve-conflict", entry: e.id}
	p.put(e.kind, e.id, r.Field, r.Value)
	p.summary = fmt.Sprintf("Resolved conflicting %s of %s: kept %q", strings.ReplaceAll(r.Field, "_", " "), label(e), r.Value)
	return p, nil
}
