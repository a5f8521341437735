package record

import (
	"cmp"
	"slices"
	"strings"
	"time"

	"github.com/chartsync/chartsync/crdt"
)

// View is a chart as plain Go values, for apps to show. It is
// deterministic: two replicas with the same heads produce equal Views, and
// equal JSON. Lists are ordered oldest first (by recording time, then ID).
type View struct {
	ChartID string     `json:"chart_id"`
	Heads   crdt.Heads `json:"heads"`
	Patient Patient    `json:"patient"`
	// NoKnownAllergies is true when "no known allergies" is recorded and
	// no allergy is active.
	NoKnownAllergies bool `json:"no_known_allergies"`
	// The lists below leave out entries entered in error; those are in
	// EnteredInError. They include inactive, stopped and completed
	// entries, each with its status.
	Allergies     []Allergy      `json:"allergies"`
	Diagnoses     []Diagnosis    `json:"diagnoses"`
	Prescriptions []Prescription `json:"prescriptions"`
	LabResults    []LabResult    `json:"lab_results"`
	Encounters    []Encounter    `json:"encounters"`
	// Referrals are the clinics the chart is shared with besides its home
	// clinic.
	Referrals []Referral `json:"referrals"`
	// MergedInto is the chart this one was merged into (its forwarding
	// pointer as shown), "" if none; a competing value is in Conflicts.
	MergedInto string `json:"merged_into,omitempty"`
	// Merges are the charts merged into this one, whatever their status.
	Merges []Merge `json:"merges,omitempty"`
	// Absorbed, in a view of a merged group (Combine), lists the charts
	// merged into this one whose entries the view shows.
	Absorbed       []AbsorbedChart `json:"absorbed,omitempty"`
	EnteredInError []ErrorEntry    `json:"entered_in_error"`
	// Conflicts lists every field that concurrent edits left with more
	// than one value.
	Conflicts []Conflict `json:"conflicts"`
	// Alerts a clinician must see (duplicate drugs, drug allergies,
	// critical results).
	Alerts  []Alert        `json:"alerts"`
	History []HistoryEntry `json:"history"`
	// Unreadable counts writes in the document that are not well-formed
	// chart data (from a damaged or foreign change); they are ignored.
	Unreadable int `json:"unreadable,omitempty"`
	// Hidden lists the sections left out of this view by a ReadPolicy
	// (ReadPolicy.Redact); empty for a whole chart.
	Hidden []Section `json:"hidden,omitempty"`
}

// EntryIDs returns the IDs of the chart's clinical entries, list by list:
// allergies, diagnoses, prescriptions, lab results, encounters, and with
// inError those entered in error.
func (v View) EntryIDs(inError bool) []string {
	var ids []string
	for _, k := range entryKinds {
		if k.clinical {
			ids = append(ids, k.list.ids(&v)...)
		}
	}
	if inError {
		for _, e := range v.EnteredInError {
			ids = append(ids, e.ID)
		}
	}
	return ids
}

// Recorded says who first recorded an entry, and when.
type Recorded struct {
	RecordedAt time.Time `json:"recorded_at"`
	RecordedBy Author    `json:"recorded_by"`
}

// Allergy is an allergy or intolerance.
type Allergy struct {
	ID        string `json:"id"`
	Substance string `json:"substance"`
	Reaction  string `json:"reaction,omitempty"`
	Severity  string `json:"severity"`
	Status    string `json:"status"`
	// ExternalID is the entry's identifier in another system, if any.
	ExternalID *Identifier `json:"external_id,omitempty"`
	Recorded
}

// Diagnosis is a problem or diagnosis.
type Diagnosis struct {
	ID                 string `json:"id"`
	Code               string `json:"code,omitempty"`
	Text               string `json:"text"`
	Onset              string `json:"onset,omitempty"`
	ClinicalStatus     string `json:"clinical_status"`
	VerificationStatus string `json:"verification_status"`
	Note               string `json:"note,omitempty"`
	// ExternalID is the entry's identifier in another system, if any.
	ExternalID *Identifier `json:"external_id,omitempty"`
	Recorded
}

// Prescription is a medication order.
type Prescription struct {
	ID   string `json:"id"`
	Drug string `json:"drug"`
	// ATC is the drug's WHO ATC code, and Substance the name the drug
	// dictionary gives it when it knows the code. Uncoded is true for a
	// drug recorded as free text, with no ATC code: its checks for
	// duplicate therapy and allergies go by its name alone.
	ATC          string  `json:"atc,omitempty"`
	Substance    string  `json:"substance,omitempty"`
	Uncoded      bool    `json:"uncoded,omitempty"`
	DrugCode     string  `json:"drug_code,omitempty"`
	Dose         float64 `json:"dose"`
	DoseUnit     string  `json:"dose_unit"`
	Route        string  `json:"route"`
	Frequency    string  `json:"frequency"`
	DurationDays int     `json:"duration_days,omitempty"`
	Start        string  `json:"start,omitempty"`
	End          string  `json:"end,omitempty"`
	Instructions string  `json:"instructions,omitempty"`
	Status       string  `json:"status"`
	StatusReason string  `json:"status_reason,omitempty"`
	// ExternalID is the entry's identifier in another system, if any.
	ExternalID *Identifier `json:"external_id,omitempty"`
	Recorded
}

// LabResult is one test result.
type LabResult struct {
	ID           string   `json:"id"`
	Test         string   `json:"test"`
	LOINC        string   `json:"loinc,omitempty"`
	Value        *float64 `json:"value,omitempty"`
	TextValue    string   `json:"text_value,omitempty"`
	Unit         string   `json:"unit,omitempty"`
	RefLow       *float64 `json:"ref_low,omitempty"`
	RefHigh      *float64 `json:"ref_high,omitempty"`
	CriticalLow  *float64 `json:"critical_low,omitempty"`
	CriticalHigh *float64 `json:"critical_high,omitempty"`
	// RefText is the reference range as text ("negative"); AbnormalTexts
	// and CriticalTexts the text values that are abnormal or critical.
	RefText       string   `json:"ref_text,omitempty"`
	AbnormalTexts []string `json:"abnormal_texts,omitempty"`
	CriticalTexts []string `json:"critical_texts,omitempty"`
	// Interpretation is low, normal, high or critical for a numeric
	// value, computed from the ranges; for a text value, critical or
	// abnormal when its text is listed so, normal when it equals the
	// text reference range; empty when no range or rule applies.
	Interpretation string    `json:"interpretation,omitempty"`
	SpecimenAt     time.Time `json:"specimen_at"`
	Status         string    `json:"status"`
	StatusReason   string    `json:"status_reason,omitempty"`
	// Previous holds the values this result had before corrections,
	// oldest first.
	Previous []Written `json:"previous,omitempty"`
	// ExternalID is the entry's identifier in another system, if any.
	ExternalID *Identifier `json:"external_id,omitempty"`
	Recorded
}

// Encounter is a visit.
type Encounter struct {
	ID        string `json:"id"`
	Date      string `json:"date"`
	Clinician string `json:"clinician,omitempty"`
	Complaint string `json:"complaint"`
	Vitals    Vitals `json:"vitals"`
	Note      string `json:"note,omitempty"`
	// ExternalID is the entry's identifier in another system, if any.
	ExternalID *Identifier `json:"external_id,omitempty"`
	Recorded
}

// ErrorEntry is an entry marked entered in error: hidden from the lists
// above, kept here and in the history.
type ErrorEntry struct {
	Kind   string    `json:"kind"`
	ID     string    `json:"id"`
	Label  string    `json:"label"`
	Reason string    `json:"reason,omitempty"`
	By     Author    `json:"by"`
	At     time.Time `json:"at"`
}

// Written is one value written to a field, by whom and when.
type Written struct {
	Value   string    `json:"value"`
	By      Author    `json:"by"`
	At      time.Time `json:"at"`
	WriteID string    `json:"write_id"`
}

// Conflict is a field that concurrent edits left with several values.
// Every replica shows the same value (Shown): for a status the one that
// wins by clinical precedence (Automatic is then true), otherwise the
// latest write. The conflict stays until someone writes a value having
// seen all of these (any edit of the field, or ResolveConflict).
type Conflict struct {
	Kind      string    `json:"kind"`
	EntryID   string    `json:"entry_id"`
	Entry     string    `json:"entry"`
	Field     string    `json:"field"`
	Shown     string    `json:"shown"`
	Automatic bool      `json:"automatic,omitempty"`
	Values    []Written `json:"values"`
}

// Alert kinds.
const (
	// AlertDuplicateDrug: one substance (or drug code) in two or more
	// active prescriptions, whatever the spelling of its name.
	AlertDuplicateDrug = "duplicate-drug"
	// AlertDuplicateClass: two or more active prescriptions of different
	// substances of one drug class (a warning: it may be meant).
	AlertDuplicateClass = "duplicate-class"
	// AlertAllergyDrug: an active or on-hold prescription of a drug the
	// patient is allergic to, by name or drug class.
	AlertAllergyDrug = "allergy-drug"
	// AlertCriticalLab: a lab value beyond its critical limits.
	AlertCriticalLab = "critical-lab"
	// AlertAllergyStatus: "no known allergies" recorded concurrently with
	// an allergy.
	AlertAllergyStatus = "allergy-status"
)

// Alert is something a clinician must see.
type Alert struct {
	Kind string `json:"kind"`
	// Severity is "high" (act before giving a drug) or "warning".
	Severity string   `json:"severity"`
	Message  string   `json:"message"`
	Entries  []string `json:"entries"`
	// InConflict is true when the alert comes from a value competing in
	// a conflict that is not settled (see Conflict), not from the values
	// shown: it stays until someone settles the conflict.
	InConflict bool `json:"in_conflict,omitempty"`
}

// HistoryEntry is one change to the chart, in words.
type HistoryEntry struct {
	At      time.Time `json:"at"`
	By      Author    `json:"by"`
	Op      string    `json:"op"`
	EntryID string    `json:"entry_id,omitempty"`
	Summary string    `json:"summary"`
	Change  crdt.Hash `json:"change"`
	// Chart, in a view of a merged group (Combine), is the absorbed
	// chart the change was made to; "" for the survivor's own.
	Chart string `json:"chart,omitempty"`
}

func buildView(doc *crdt.Doc, s *state, heads crdt.Heads) (View, error) {
	v := View{
		ChartID: s.chartID, Heads: heads, Patient: s.patient().demographics(), Unreadable: s.unreadable,
		EnteredInError: []ErrorEntry{}, Conflicts: []Conflict{}, Alerts: []Alert{},
	}
	for _, k := range entryKinds {
		if k.list != nil {
			k.list.reset(&v)
		}
	}
	notes, err := readNotes(doc)
	if err != nil {
		return View{}, err
	}
	for _, k := range entryKinds {
		for _, e := range s.entriesOf(k.name) {
			v.Conflicts = append(v.Conflicts, conflicts(e)...)
			if k.view == nil {
				continue
			}
			if eie := errorEntry(e); eie != nil {
				v.EnteredInError = append(v.EnteredInError, *eie)
				continue
			}
			k.view(&v, e, notes)
		}
	}
	v.MergedInto = s.patient().value(fieldMergedInto)
	nka := s.patient().value("nka") == "true"
	v.NoKnownAllergies = nka && !slices.ContainsFunc(v.Allergies, func(a Allergy) bool { return a.Status == StatusActive })
	v.Alerts = alerts(&v, s)
	h, err := history(doc)
	if err != nil {
		return View{}, err
	}
	v.History = h
	return v, nil
}

func readNotes(doc *crdt.Doc) (map[string]string, error) {
	keys, err := doc.Keys(pathNotes...)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(keys))
	for _, k := range keys {
		t, err := doc.Text(pathNotes, k)
		if err != nil {
			continue // not text: not written by this package
		}
		out[k] = t
	}
	return out, nil
}

func written(w *write) Written {
	return Written{Value: w.Value, By: w.author(), At: w.time(), WriteID: w.ID}
}

func conflicts(e *entry) []Conflict {
	var out []Conflict
	names := make([]string, 0, len(e.fields))
	for f := range e.fields {
		names = append(names, f)
	}
	slices.Sort(names)
	for _, f := range names {
		r := e.fields[f]
		if !r.inConflict() {
			continue
		}
		c := Conflict{Kind: e.kind, EntryID: e.id, Entry: label(e), Field: f, Shown: e.value(f),
			Automatic: precedenceOf(e.kind, f) != nil}
		for _, w := range r.current {
			c.Values = append(c.Values, written(w))
		}
		out = append(out, c)
	}
	return out
}

// errorEntry returns the entry as View.EnteredInError lists it, nil if
// it is not entered in error.
func errorEntry(e *entry) *ErrorEntry {
	k := kindSpecs[e.kind]
	if k == nil || k.errorField == "" {
		return nil
	}
	field := k.errorField
	w := e.writeOf(field)
	if w == nil || w.Value != StatusEnteredInError {
		return nil
	}
	return &ErrorEntry{Kind: e.kind, ID: e.id, Label: label(e), Reason: e.statusReason(field), By: w.author(), At: w.time()}
}

func optFloat(s string) *float64 {
	if f, ok := parseFloat(s); ok {
		return &f
	}
	return nil
}

func labResult(e *entry) LabResult {
	l := LabResult{
		ID: e.id, Test: e.value("test"), LOINC: e.value("loinc"), Value: optFloat(e.value("value")),
		TextValue: e.value("text"), Unit: e.value("unit"),
		RefLow: optFloat(e.value("ref_low")), RefHigh: optFloat(e.value("ref_high")),
		CriticalLow: optFloat(e.value("critical_low")), CriticalHigh: optFloat(e.value("critical_high")),
		RefText: e.value("ref_text"), AbnormalTexts: lines(e.value("abnormal_text")), CriticalTexts: lines(e.value("critical_text")),
		Status: e.value("status"), StatusReason: e.statusReason("status"), ExternalID: e.externalID(), Recorded: e.recorded(),
	}
	l.SpecimenAt, _ = time.Parse(time.RFC3339, e.value("specimen_at"))
	l.Interpretation = interpret(l)
	// Every value or text write that is no longer current is a value the
	// result had before a correction.
	for _, f := range []string{"value", "text"} {
		r := e.fields[f]
		if r == nil {
			continue
		}
		for _, w := range r.all {
			if w.Value != "" && !slices.Contains(r.current, w) {
				l.Previous = append(l.Previous, written(w))
			}
		}
	}
	slices.SortFunc(l.Previous, func(a, b Written) int {
		return cmp.Or(a.At.Compare(b.At), strings.Compare(a.WriteID, b.WriteID))
	})
	return l
}

// Interpretations of a lab result.
const (
	InterpretationLow      = "low"
	InterpretationNormal   = "normal"
	InterpretationHigh     = "high"
	InterpretationCritical = "critical"
	// InterpretationAbnormal is a text value listed as abnormal.
	InterpretationAbnormal = "abnormal"
)

// lines splits a stored list of texts.
func lines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// interpretText interprets a text value by the rules stated: listed
// critical, listed abnormal, or equal to the text reference range.
func interpretText(text, ref string, abnormal, critical []string) string {
	t := foldText(text)
	if t == "" {
		return ""
	}
	has := func(list []string) bool {
		return slices.ContainsFunc(list, func(s string) bool { return foldText(s) == t })
	}
	switch {
	case has(critical):
		return InterpretationCritical
	case has(abnormal):
		return InterpretationAbnormal
	case foldText(ref) == t:
		return InterpretationNormal
	}
	return ""
}

func interpret(l LabResult) string {
	if l.Value == nil {
		return interpretText(l.TextValue, l.RefText, l.AbnormalTexts, l.CriticalTexts)
	}
	v := *l.Value
	switch {
	case l.CriticalLow != nil && v < *l.CriticalLow, l.CriticalHigh != nil && v > *l.CriticalHigh:
		return InterpretationCritical
	case l.RefLow != nil && v < *l.RefLow:
		return InterpretationLow
	case l.RefHigh != nil && v > *l.RefHigh:
		return InterpretationHigh
	case l.RefLow != nil || l.RefHigh != nil:
		return InterpretationNormal
	}
	return ""
}

func history(doc *crdt.Doc) ([]HistoryEntry, error) {
	chs, err := doc.Changes(nil)
	if err != nil {
		return nil, err
	}
	out := make([]HistoryEntry, 0, len(chs))
	for _, ch := range chs {
		h := HistoryEntry{At: ch.Time.UTC(), Change: ch.Hash}
		if m, err := parseMessage(ch.Message); err == nil && m.Op != "" {
			h.Op, h.EntryID, h.Summary = m.Op, m.Entry, m.Summary
			h.By = Author{UserID: m.User, Name: m.Name, Role: m.Role, Device: m.Device}
			if m.At != 0 {
				h.At = time.UnixMilli(m.At).UTC()
			}
		} else {
			h.Op, h.Summary = "unknown", "A change not made through the chart's operations"
		}
		out = append(out, h)
	}
	slices.SortFunc(out, func(a, b HistoryEntry) int {
		return cmp.Or(a.At.Compare(b.At), strings.Compare(a.Change.String(), b.Change.String()))
	})
	return out, nil
}
