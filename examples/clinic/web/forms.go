package web

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/chartsync/chartsync/record"
)

// field is one input of a form.
type field struct {
	Name, Label string
	// Type is an HTML input type, "select" or "textarea" (default text).
	Type     string
	Options  []string
	Required bool
	Hint     string
	// Example is a value shown in the message for a number that is not
	// one ("Enter the dose as a number, e.g. 500").
	Example string
	// Aliases are the record package's names for the field, when they
	// differ: a validation error naming one is shown next to this field.
	Aliases []string
}

// formData is a form as a template shows it, in a language.
type formData struct {
	// Lang is the form's language; Key names its fields' messages
	// ("field.KEY.NAME" and "hint.KEY.NAME").
	Lang, Key             string
	Title, Action, Submit string
	Fields                []field
	Values                map[string]string
	Errors                map[string]string
	// Error is a message about the form as a whole.
	Error string
	// Entry is the entry the form acts on, and Context says which.
	Entry, Context string
	// Confirm, when set, is the label of a button that saves what was
	// checked; Notes say what the check found.
	Confirm string
	Notes   []string
	Warn    []string
	Cancel  string
}

func newFormData(lang, key, action, submit string, fs []field, in formValues) *formData {
	if in == nil {
		in = formValues{}
	}
	return &formData{Lang: lang, Key: key, Title: tr(lang, "form."+key+".title"), Action: action, Submit: submit, Fields: fs, Values: in, Errors: map[string]string{}}
}

// L is a field's label in the form's language.
func (f *formData) L(x field) string {
	if m, ok := catalogs[f.Lang]["field."+f.Key+"."+x.Name]; ok {
		return m
	}
	return tr(DefaultLanguage, "field."+f.Key+"."+x.Name)
}

// H is a field's hint in the form's language ("" for none).
func (f *formData) H(x field) string {
	if x.Hint == "" {
		return ""
	}
	return tr(f.Lang, "hint."+f.Key+"."+x.Name)
}

// formValues are a form's submitted values, trimmed.
type formValues map[string]string

func values(r *http.Request, fs []field) formValues {
	in := formValues{}
	for _, f := range fs {
		in[f.Name] = strings.TrimSpace(r.PostFormValue(f.Name))
	}
	return in
}

func (in formValues) get(name string) string { return in[name] }

func (f *formData) field(name string) field {
	for _, x := range f.Fields {
		if x.Name == name {
			return x
		}
	}
	return field{Name: name, Label: name}
}

// float reads an optional number, noting a message for one that is not.
func (in formValues) float(f *formData, name string) (*float64, bool) {
	s := strings.ReplaceAll(in[name], ",", ".")
	if s == "" {
		return nil, false
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		fl := f.field(name)
		f.Errors[name] = tr(f.Lang, "form.number", strings.ToLower(f.L(fl)), fl.Example)
		return nil, false
	}
	return &v, true
}

// int reads an optional whole number.
func (in formValues) int(f *formData, name, msg string) (int, bool) {
	if in[name] == "" {
		return 0, false
	}
	v, err := strconv.Atoi(in[name])
	if err != nil {
		f.Errors[name] = msg + "."
		return 0, false
	}
	return v, true
}

func (in formValues) required(f *formData, names ...string) {
	for _, n := range names {
		if in[n] == "" {
			f.Errors[n] = tr(f.Lang, "form.enter", strings.ToLower(f.L(f.field(n))))
		}
	}
}

// formError shows a validation error of package record next to its
// field, in words; it reports whether err was one.
func (s *Server) formError(f *formData, err error) bool {
	var ve *record.ValidationError
	if !errors.As(err, &ve) {
		return false
	}
	for _, x := range f.Fields {
		if x.Name == ve.Field || slices.Contains(x.Aliases, ve.Field) {
			f.Errors[x.Name] = fmt.Sprintf("%s: %s.", f.L(x), ve.Reason)
			return true
		}
	}
	f.Error = fmt.Sprintf("The %s %s.", strings.ReplaceAll(ve.Field, "_", " "), ve.Reason)
	return true
}

// chartForm is a form that writes one operation to a chart.
type chartForm struct {
	Name, Title string
	// Section is what the form changes: a role that may not change it
	// (or read it) gets no form.
	Section record.Section
	// Entry is the kind of entry the form acts on ("" for a new one).
	Entry  string
	Fields []field
	// Fill gives the form's first values.
	Fill func(s *Server, v record.View, entry string) formValues
	// Build makes the operation from the values, noting errors in f.
	Build func(s *Server, v record.View, entry string, in formValues, f *formData) record.Op
	// Check, when set, is shown before saving: notes and warnings.
	Check func(s *Server, r *http.Request, q *request, v record.View, op record.Op) (notes, warn []string)
	// Refusable: a refusal of the edit as the chart is now
	// (record.ErrTransition) is shown in the form, in the words of
	// message "form.NAME.refused", next to field RefusedAt ("" for the
	// form as a whole), rather than on an error page.
	Refusable bool
	RefusedAt string
	// Offer, when set, says whether the chart page offers a form that
	// acts on no entry, as the chart is now.
	Offer func(v record.View) bool
}

var (
	severities    = []string{"mild", "moderate", "severe", "life-threatening"}
	clinicals     = []string{"active", "recurrence", "relapse", "inactive", "remission", "resolved"}
	verifs        = []string{"provisional", "unconfirmed", "differential", "confirmed", "refuted"}
	doseUnits     = []string{"mg", "g", "mcg", "ml", "IU", "units", "tablet", "capsule", "drop", "puff", "sachet", "suppository"}
	routes        = []string{"oral", "IV", "IM", "SC", "topical", "inhaled", "rectal", "vaginal", "sublingual", "nasal", "ophthalmic", "otic", "transdermal"}
	frequencies   = []string{"OD", "BD", "TDS", "QID", "Q4H", "Q6H", "Q8H", "Q12H", "NOCTE", "PRN", "STAT", "WEEKLY"}
	keepUnchanged = ""
)

var chartForms = []*chartForm{
	{
		Name: "allergy", Title: "Record an allergy", Section: record.SectionAllergies,
		Fields: []field{
			{Name: "substance", Label: "Substance", Required: true, Hint: "what the patient reacts to, e.g. penicillin"},
			{Name: "severity", Label: "Severity", Type: "select", Options: severities, Required: true},
			{Name: "reaction", Label: "Reaction", Hint: "what happens, e.g. rash"},
		},
		Build: func(s *Server, v record.View, _ string, in formValues, f *formData) record.Op {
			in.required(f, "substance", "severity")
			return record.AddAllergy{Substance: in.get("substance"), Severity: in.get("severity"), Reaction: in.get("reaction")}
		},
	},
	{
		Name: "diagnosis", Title: "Record a diagnosis", Section: record.SectionDiagnoses,
		Fields: []field{
			{Name: "text", Label: "Diagnosis", Required: true, Hint: "in words, e.g. malaria"},
			{Name: "code", Label: "ICD-10 code", Hint: "optional, e.g. B54"},
			{Name: "onset", Label: "Onset", Type: "date"},
			{Name: "clinical", Label: "Clinical status", Type: "select", Options: clinicals},
			{Name: "verification", Label: "Verification status", Type: "select", Options: verifs},
			{Name: "note", Label: "Note", Type: "textarea"},
		},
		Build: func(s *Server, v record.View, _ string, in formValues, f *formData) record.Op {
			in.required(f, "text")
			return record.Diagnose{Text: in.get("text"), Code: strings.ToUpper(in.get("code")), Onset: in.get("onset"),
				ClinicalStatus: in.get("clinical"), VerificationStatus: in.get("verification"), Note: in.get("note")}
		},
	},
	{
		Name: "prescribe", Title: "Prescribe", Section: record.SectionPrescriptions,
		Fields: []field{
			{Name: "drug", Label: "Drug", Required: true, Hint: "generic or brand name; coded from the drug dictionary"},
			{Name: "dose", Label: "Dose", Type: "number", Required: true, Example: "500"},
			{Name: "unit", Label: "Unit", Type: "select", Options: doseUnits, Required: true},
			{Name: "route", Label: "Route", Type: "select", Options: routes, Required: true},
			{Name: "frequency", Label: "Frequency", Type: "select", Options: frequencies, Required: true},
			{Name: "duration_days", Label: "Days", Type: "number", Example: "5"},
			{Name: "instructions", Label: "Instructions for the patient"},
		},
		Fill: func(*Server, record.View, string) formValues { return formValues{"route": "oral"} },
		Build: func(s *Server, v record.View, _ string, in formValues, f *formData) record.Op {
			in.required(f, "drug", "dose", "unit", "frequency")
			rx := record.Prescribe{Drug: in.get("drug"), DoseUnit: in.get("unit"), Route: in.get("route"),
				Frequency: strings.ToUpper(in.get("frequency")), Instructions: in.get("instructions")}
			if d, ok := in.float(f, "dose"); ok {
				rx.Dose = *d
			}
			rx.DurationDays, _ = in.int(f, "duration_days", tr(f.Lang, "form.days"))
			return rx
		},
		Check: checkPrescription,
	},
	{
		Name: "revise-dose", Title: "Revise the dose", Section: record.SectionPrescriptions, Entry: record.KindPrescription,
		Fields: []field{
			{Name: "dose", Label: "New dose", Type: "number", Required: true, Example: "250"},
			{Name: "unit", Label: "Unit", Type: "select", Options: append([]string{keepUnchanged}, doseUnits...), Hint: "blank: unchanged"},
			{Name: "frequency", Label: "Frequency", Type: "select", Options: append([]string{keepUnchanged}, frequencies...), Hint: "blank: unchanged"},
			{Name: "reason", Label: "Reason"},
		},
		Build: func(s *Server, v record.View, entry string, in formValues, f *formData) record.Op {
			in.required(f, "dose")
			rd := record.ReviseDose{PrescriptionID: entry, DoseUnit: in.get("unit"), Frequency: in.get("frequency"), Reason: in.get("reason")}
			if d, ok := in.float(f, "dose"); ok {
				rd.Dose = *d
			}
			return rd
		},
	},
	{
		Name: "discontinue", Title: "Stop the prescription", Section: record.SectionPrescriptions, Entry: record.KindPrescription,
		Fields: []field{{Name: "reason", Label: "Reason", Required: true, Hint: "why it is stopped"}},
		Build: func(s *Server, v record.View, entry string, in formValues, f *formData) record.Op {
			in.required(f, "reason")
			return record.Discontinue{PrescriptionID: entry, Reason: in.get("reason")}
		},
	},
	{
		Name: "lab", Title: "Record a lab result", Section: record.SectionLabResults,
		Fields: []field{
			{Name: "test", Label: "Test", Required: true, Hint: "e.g. Haemoglobin"},
			{Name: "loinc", Label: "LOINC code", Hint: "optional, e.g. 718-7"},
			{Name: "value", Label: "Value", Type: "number", Example: "11.2", Hint: "a number, or a text result below"},
			{Name: "unit", Label: "Unit", Hint: "of a number, e.g. g/dL"},
			{Name: "text", Label: "Text result", Hint: "instead of a number, e.g. positive"},
			{Name: "ref_low", Label: "Normal from", Type: "number", Example: "12"},
			{Name: "ref_high", Label: "Normal up to", Type: "number", Example: "16"},
			{Name: "critical_low", Label: "Critical below", Type: "number", Example: "7"},
			{Name: "critical_high", Label: "Critical above", Type: "number", Example: "20"},
			{Name: "ref_text", Label: "Normal text result", Hint: "e.g. negative"},
			{Name: "abnormal_text", Label: "Abnormal text results", Hint: "comma-separated, e.g. positive"},
			{Name: "critical_text", Label: "Critical text results", Hint: "comma-separated"},
			{Name: "specimen_at", Label: "Specimen taken", Type: "datetime-local", Hint: "blank: now"},
			{Name: "status", Label: "Status", Type: "select", Options: []string{"final", "preliminary"}},
		},
		Build: func(s *Server, v record.View, _ string, in formValues, f *formData) record.Op {
			in.required(f, "test")
			l := record.RecordLabResult{Test: in.get("test"), LOINC: in.get("loinc"), TextValue: in.get("text"), Unit: in.get("unit"),
				RefText: in.get("ref_text"), AbnormalTexts: list(in.get("abnormal_text")), CriticalTexts: list(in.get("critical_text")),
				Status: in.get("status")}
			l.Value, _ = in.float(f, "value")
			l.RefLow, _ = in.float(f, "ref_low")
			l.RefHigh, _ = in.float(f, "ref_high")
			l.CriticalLow, _ = in.float(f, "critical_low")
			l.CriticalHigh, _ = in.float(f, "critical_high")
			if l.Value == nil && l.TextValue == "" && f.Errors["value"] == "" {
				f.Errors["value"] = tr(f.Lang, "form.lab.value")
			}
			if l.Value != nil && l.TextValue != "" {
				f.Errors["text"] = tr(f.Lang, "form.lab.both")
			}
			l.SpecimenAt = s.cfg.Now()
			if t := in.get("specimen_at"); t != "" {
				at, err := time.ParseInLocation("2006-01-02T15:04", t, s.cfg.Location)
				if err != nil {
					f.Errors["specimen_at"] = tr(f.Lang, "form.lab.specimen")
				}
				l.SpecimenAt = at
			}
			return l
		},
	},
	{
		Name: "encounter", Title: "Record a visit", Section: record.SectionEncounters,
		Fields: []field{
			{Name: "complaint", Label: "Complaint", Required: true, Hint: "why the patient came"},
			{Name: "date", Label: "Date", Type: "date"},
			{Name: "clinician", Label: "Seen by"},
			{Name: "bp", Label: "Blood pressure", Hint: "e.g. 120/80"},
			{Name: "pulse", Label: "Pulse", Type: "number", Example: "72"},
			{Name: "temperature", Label: "Temperature (°C)", Type: "number", Example: "37.2"},
			{Name: "weight", Label: "Weight (kg)", Type: "number", Example: "61.5"},
			{Name: "height", Label: "Height (cm)", Type: "number", Example: "164"},
			{Name: "spo2", Label: "Oxygen saturation (%)", Type: "number", Example: "97"},
			{Name: "note", Label: "Note", Type: "textarea"},
		},
		Fill: func(s *Server, _ record.View, _ string) formValues {
			return formValues{"date": s.cfg.Now().In(s.cfg.Location).Format(time.DateOnly)}
		},
		Build: func(s *Server, v record.View, _ string, in formValues, f *formData) record.Op {
			in.required(f, "complaint", "date")
			e := record.AddEncounter{Complaint: in.get("complaint"), Date: in.get("date"), Clinician: in.get("clinician"), Note: in.get("note")}
			if bp := in.get("bp"); bp != "" {
				sys, dia, ok := strings.Cut(bp, "/")
				a, err1 := strconv.ParseFloat(strings.TrimSpace(sys), 64)
				b, err2 := strconv.ParseFloat(strings.TrimSpace(dia), 64)
				if !ok || err1 != nil || err2 != nil {
					f.Errors["bp"] = tr(f.Lang, "form.bp")
				}
				e.Vitals.BPSystolic, e.Vitals.BPDiastolic = a, b
			}
			for _, x := range []struct {
				name string
				v    *float64
			}{{"pulse", &e.Vitals.Pulse}, {"temperature", &e.Vitals.Temperature}, {"weight", &e.Vitals.Weight}, {"height", &e.Vitals.Height}, {"spo2", &e.Vitals.SpO2}} {
				if p, ok := in.float(f, x.name); ok {
					*x.v = *p
				}
			}
			return e
		},
	},
	{
		Name: "note", Title: "Add to the note", Section: record.SectionEncounters, Entry: record.KindEncounter,
		Fields: []field{{Name: "text", Label: "Text to add", Type: "textarea", Required: true, Aliases: []string{"insert"}}},
		Build: func(s *Server, v record.View, entry string, in formValues, f *formData) record.Op {
			in.required(f, "text")
			pos := 0
			for _, e := range v.Encounters {
				if e.ID == entry {
					pos = len([]rune(e.Note))
				}
			}
			text := in.get("text")
			if pos > 0 {
				text = "\n" + text
			}
			return record.EditNote{EncounterID: entry, Pos: pos, Insert: text}
		},
	},
	{
		Name: "demographics", Title: "Correct the patient's details", Section: record.SectionDemographics,
		Fields: registerFields,
		Fill: func(s *Server, v record.View, _ string) formValues {
			p := v.Patient
			in := formValues{"given_name": p.GivenName, "family_name": p.FamilyName, "sex": p.Sex, "birth_date": p.BirthDate,
				"village": p.Village, "address": p.Address, "phone": p.Phone, "national_id": p.NationalID, "guardian": p.Guardian}
			if p.EstimatedBirthYear != 0 {
				in["estimated_birth_year"] = strconv.Itoa(p.EstimatedBirthYear)
			}
			return in
		},
		Build: func(s *Server, v record.View, _ string, in formValues, f *formData) record.Op {
			p := v.Patient
			var u record.UpdateDemographics
			changed := false
			for _, x := range []struct {
				name, now string
				to        **string
			}{
				{"given_name", p.GivenName, &u.GivenName}, {"family_name", p.FamilyName, &u.FamilyName}, {"sex", p.Sex, &u.Sex},
				{"birth_date", p.BirthDate, &u.BirthDate}, {"village", p.Village, &u.Village}, {"address", p.Address, &u.Address},
				{"phone", p.Phone, &u.Phone}, {"national_id", p.NationalID, &u.NationalID}, {"guardian", p.Guardian, &u.Guardian},
			} {
				if in.get(x.name) != x.now {
					*x.to = record.Ptr(in.get(x.name))
					changed = true
				}
			}
			if y, ok := in.int(f, "estimated_birth_year", tr(f.Lang, "form.birthyear")); ok && y != p.EstimatedBirthYear {
				u.EstimatedBirthYear, changed = record.Ptr(y), true
			}
			if !changed && len(f.Errors) == 0 {
				f.Error = tr(f.Lang, "form.nochange")
			}
			return u
		},
	},
	{
		Name: "update-allergy", Title: "Change the allergy", Section: record.SectionAllergies, Entry: record.KindAllergy,
		Fields: []field{
			{Name: "severity", Label: "Severity", Type: "select", Options: severities, Required: true},
			{Name: "reaction", Label: "Reaction", Hint: "what happens, e.g. rash"},
			{Name: "status", Label: "Status", Type: "select", Options: allergyStatuses, Required: true, Hint: "inactive or resolved: no longer a danger"},
			{Name: "reason", Label: "Reason"},
		},
		Fill: func(_ *Server, v record.View, entry string) formValues {
			a := allergyOf(v, entry)
			return formValues{"severity": a.Severity, "reaction": a.Reaction, "status": a.Status}
		},
		Build: func(_ *Server, v record.View, entry string, in formValues, f *formData) record.Op {
			in.required(f, "severity", "status")
			a := allergyOf(v, entry)
			u := record.UpdateAllergy{AllergyID: entry, Reason: in.get("reason")}
			if x := in.get("severity"); x != a.Severity {
				u.Severity = record.Ptr(x)
			}
			if x := in.get("reaction"); x != a.Reaction {
				u.Reaction = record.Ptr(x)
			}
			if x := in.get("status"); x != a.Status {
				u.Status = record.Ptr(x)
			}
			if u.Severity == nil && u.Reaction == nil && u.Status == nil && len(f.Errors) == 0 {
				f.Error = tr(f.Lang, "form.nochange")
			}
			return u
		},
	},
	{
		Name: "no-known-allergies", Title: "No known allergies", Section: record.SectionAllergies, Refusable: true,
		Offer: func(v record.View) bool {
			return !v.NoKnownAllergies && !slices.ContainsFunc(v.Allergies, func(a record.Allergy) bool { return a.Status == record.StatusActive })
		},
		Build: func(*Server, record.View, string, formValues, *formData) record.Op {
			return record.RecordNoKnownAllergies{}
		},
	},
	{
		Name: "diagnosis-status", Title: "Change the diagnosis status", Section: record.SectionDiagnoses, Entry: record.KindDiagnosis,
		Fields: []field{
			{Name: "clinical", Label: "Clinical status", Type: "select", Options: append([]string{keepUnchanged}, clinicals...), Hint: "blank: unchanged"},
			{Name: "verification", Label: "Verification status", Type: "select", Options: append([]string{keepUnchanged}, verifs...), Hint: "blank: unchanged"},
			{Name: "reason", Label: "Reason"},
		},
		Build: func(_ *Server, v record.View, entry string, in formValues, f *formData) record.Op {
			if in.get("clinical") == "" && in.get("verification") == "" {
				f.Errors["clinical"] = tr(f.Lang, "form.diagnosis-status.none")
			}
			return record.ChangeDiagnosisStatus{DiagnosisID: entry, ClinicalStatus: in.get("clinical"),
				VerificationStatus: in.get("verification"), Reason: in.get("reason")}
		},
	},
	{
		Name: "hold", Title: "Put the prescription on hold", Section: record.SectionPrescriptions, Entry: record.KindPrescription,
		Fields: []field{{Name: "reason", Label: "Reason", Required: true, Hint: "why it is paused"}},
		Build: func(_ *Server, _ record.View, entry string, in formValues, f *formData) record.Op {
			in.required(f, "reason")
			return record.PutOnHold{PrescriptionID: entry, Reason: in.get("reason")}
		},
	},
	{
		Name: "resume", Title: "Resume the prescription", Section: record.SectionPrescriptions, Entry: record.KindPrescription,
		Fields: []field{{Name: "reason", Label: "Reason"}},
		Build: func(_ *Server, _ record.View, entry string, in formValues, f *formData) record.Op {
			return record.Resume{PrescriptionID: entry, Reason: in.get("reason")}
		},
	},
	{
		Name: "complete", Title: "The course is finished", Section: record.SectionPrescriptions, Entry: record.KindPrescription,
		Build: func(_ *Server, _ record.View, entry string, _ formValues, _ *formData) record.Op {
			return record.Complete{PrescriptionID: entry}
		},
	},
	{
		Name: "finalize-lab", Title: "Make the result final", Section: record.SectionLabResults, Entry: record.KindLabResult,
		Build: func(_ *Server, _ record.View, entry string, _ formValues, _ *formData) record.Op {
			return record.FinalizeLabResult{LabResultID: entry}
		},
	},
	{
		Name: "correct-lab", Title: "Correct the result", Section: record.SectionLabResults, Entry: record.KindLabResult,
		Fields: []field{
			{Name: "value", Label: "Correct value", Type: "number", Example: "11.2", Hint: "a number, or a text result below"},
			{Name: "unit", Label: "Unit", Hint: "blank: unchanged"},
			{Name: "text", Label: "Text result", Hint: "instead of a number, e.g. positive"},
			{Name: "reason", Label: "Reason", Required: true, Hint: "what was wrong, e.g. wrong sample"},
		},
		Build: func(_ *Server, _ record.View, entry string, in formValues, f *formData) record.Op {
			in.required(f, "reason")
			c := record.CorrectLabResult{LabResultID: entry, TextValue: in.get("text"), Unit: in.get("unit"), Reason: in.get("reason")}
			c.Value, _ = in.float(f, "value")
			if c.Value == nil && c.TextValue == "" && f.Errors["value"] == "" {
				f.Errors["value"] = tr(f.Lang, "form.lab.value")
			}
			if c.Value != nil && c.TextValue != "" {
				f.Errors["text"] = tr(f.Lang, "form.lab.both")
			}
			return c
		},
	},
	{
		Name: "add-identifier", Title: "Add an ID number", Section: record.SectionDemographics, Refusable: true, RefusedAt: "value",
		Fields: []field{
			{Name: "system", Label: "Kind of number", Type: "select", Options: identifierSystems, Required: true},
			{Name: "value", Label: "Number", Required: true, Hint: "as written on the card", Aliases: []string{"identifier", "identifiers"}},
		},
		Build: func(_ *Server, _ record.View, _ string, in formValues, f *formData) record.Op {
			in.required(f, "system", "value")
			return record.AddIdentifier{System: in.get("system"), Value: in.get("value")}
		},
	},
	{
		Name: "correct-identifier", Title: "Correct the ID number", Section: record.SectionDemographics, Entry: record.KindIdentifier,
		Refusable: true, RefusedAt: "value",
		Fields: []field{
			{Name: "value", Label: "Correct number", Required: true, Aliases: []string{"identifier"}},
			{Name: "reason", Label: "Reason"},
		},
		Fill: func(_ *Server, v record.View, entry string) formValues {
			return formValues{"value": identifierOf(v, entry).Value}
		},
		Build: func(_ *Server, _ record.View, entry string, in formValues, f *formData) record.Op {
			in.required(f, "value")
			return record.CorrectIdentifier{IdentifierID: entry, Value: in.get("value"), Reason: in.get("reason")}
		},
	},
	{
		Name: "remove-identifier", Title: "The number is no longer used", Section: record.SectionDemographics, Entry: record.KindIdentifier,
		Fields: []field{{Name: "reason", Label: "Reason", Required: true, Hint: "e.g. new card, phone given up"}},
		Build: func(_ *Server, _ record.View, entry string, in formValues, f *formData) record.Op {
			in.required(f, "reason")
			return record.RemoveIdentifier{IdentifierID: entry, Reason: in.get("reason")}
		},
	},
	{
		Name: "refer", Title: "Refer to another clinic", Section: record.SectionReferrals,
		Fields: []field{
			{Name: "clinic", Label: "Clinic", Required: true, Hint: "the clinic's code, e.g. kisumu-hc", Aliases: []string{"to_clinic"}},
			{Name: "reason", Label: "Reason"},
		},
		Build: func(_ *Server, _ record.View, _ string, in formValues, f *formData) record.Op {
			in.required(f, "clinic")
			return record.Refer{ToClinic: in.get("clinic"), Reason: in.get("reason")}
		},
	},
	{
		Name: "end-referral", Title: "End the referral", Section: record.SectionReferrals, Entry: record.KindReferral,
		Fields: []field{{Name: "reason", Label: "Reason"}},
		Build: func(_ *Server, _ record.View, entry string, in formValues, _ *formData) record.Op {
			return record.EndReferral{ReferralID: entry, Reason: in.get("reason")}
		},
	},
}

// errorForms mark an entry of each kind entered in error: one form per
// kind, as each kind is in its own section.
var errorForms = []struct {
	name, kind string
	section    record.Section
}{
	{"allergy-error", record.KindAllergy, record.SectionAllergies},
	{"diagnosis-error", record.KindDiagnosis, record.SectionDiagnoses},
	{"prescription-error", record.KindPrescription, record.SectionPrescriptions},
	{"lab-error", record.KindLabResult, record.SectionLabResults},
	{"visit-error", record.KindEncounter, record.SectionEncounters},
	{"identifier-error", record.KindIdentifier, record.SectionDemographics},
}

func init() {
	for _, e := range errorForms {
		chartForms = append(chartForms, &chartForm{
			Name: e.name, Title: "Entered by mistake", Section: e.section, Entry: e.kind,
			Fields: []field{{Name: "reason", Label: "Reason", Required: true, Hint: "what the mistake was, e.g. wrong patient"}},
			Build: func(_ *Server, _ record.View, entry string, in formValues, f *formData) record.Op {
				in.required(f, "reason")
				return record.MarkEnteredInError{EntryID: entry, Reason: in.get("reason")}
			},
		})
	}
	for _, f := range chartForms {
		formsByName[f.Name] = f
	}
}

var (
	allergyStatuses   = []string{record.StatusActive, record.StatusInactive, record.StatusResolved}
	identifierSystems = []string{record.SystemNationalID, record.SystemClinic, record.SystemPhone, record.SystemAadhaar, record.SystemABHA}
)

// allergyOf is the chart's allergy id (zero if none).
func allergyOf(v record.View, id string) record.Allergy {
	for _, a := range v.Allergies {
		if a.ID == id {
			return a
		}
	}
	return record.Allergy{}
}

// identifierOf is the patient's identifier id (zero if none).
func identifierOf(v record.View, id string) record.Identifier {
	for _, x := range v.Patient.Identifiers {
		if x.ID == id {
			return x
		}
	}
	return record.Identifier{}
}

var formsByName = func() map[string]*chartForm {
	m := map[string]*chartForm{}
	for _, f := range chartForms {
		m[f.Name] = f
	}
	return m
}()

// list splits a comma-separated list.
func list(s string) []string {
	var out []string
	for _, t := range strings.Split(s, ",") {
		if t = strings.TrimSpace(t); t != "" {
			out = append(out, t)
		}
	}
	return out
}

// mayUse reports whether the user may see and send form f: change its
// section, and read it.
func (s *Server) mayUse(q *request, f *chartForm) bool {
	return record.Permitted(q.author.Role, f.Section) && !q.policy.Hides(q.author.Role, f.Section)
}

// checkPrescription says how the dictionary codes a drug, and shows the
// alerts the prescription would raise (an allergy, a duplicate drug or
// class) before it is saved: the library's own, from a preview of the
// edit (Replica.Preview), so the page and the chart always agree.
func checkPrescription(s *Server, r *http.Request, q *request, v record.View, op record.Op) (notes, warn []string) {
	rx := op.(record.Prescribe)
	if d, coded := record.DrugDictionary().Lookup(rx.Drug); coded {
		notes = append(notes, fmt.Sprintf("%s is coded as %s (%s).", rx.Drug, d.Code(), d.Name))
	} else {
		notes = append(notes, fmt.Sprintf("%q is not in the drug dictionary: it will be recorded uncoded, and checked for allergies and duplicates by its name only.", rx.Drug))
	}
	after, err := s.r.Preview(r.Context(), v.ChartID, q.author, op)
	if err != nil {
		// Saving will say what is wrong; the preview only warns.
		return notes, nil
	}
	shown := map[string]bool{}
	for _, a := range v.Alerts {
		shown[a.Kind+"\x00"+a.Message] = true
	}
	for _, a := range after.Alerts {
		if !shown[a.Kind+"\x00"+a.Message] {
			warn = append(warn, a.Message)
		}
	}
	return notes, warn
}

// formFor finds the form a request names and checks the user may use it
// on the entry it names.
func (s *Server) formFor(w http.ResponseWriter, r *http.Request, q *request) (*chartForm, record.View, string, string, bool) {
	f := formsByName[r.PathValue("form")]
	if f == nil {
		s.errorPage(w, r, q, http.StatusNotFound, tr(q.lang, "error.noform"))
		return nil, record.View{}, "", "", false
	}
	if !s.mayUse(q, f) {
		s.forbidden(w, r, q, f.Section)
		return nil, record.View{}, "", "", false
	}
	id := r.PathValue("id")
	v, err := s.view(r, q, id)
	if err != nil {
		s.notFound(w, r, q, err)
		return nil, record.View{}, "", "", false
	}
	entry := r.FormValue("entry")
	what := ""
	if f.Entry != "" {
		what = describe(v, f.Entry, entry)
		if what == "" {
			s.errorPage(w, r, q, http.StatusNotFound, tr(q.lang, "error.noentry"))
			return nil, record.View{}, "", "", false
		}
	}
	return f, v, entry, what, true
}

// describe names an entry of a kind for the form's heading, or "" when
// the chart has no such entry.
func describe(v record.View, kind, id string) string {
	switch kind {
	case record.KindPrescription:
		for _, p := range v.Prescriptions {
			if p.ID == id {
				return fmt.Sprintf("%s %g %s %s %s (%s)", p.Drug, p.Dose, p.DoseUnit, p.Route, p.Frequency, p.Status)
			}
		}
	case record.KindEncounter:
		for _, e := range v.Encounters {
			if e.ID == id {
				return fmt.Sprintf("Visit of %s: %s", e.Date, e.Complaint)
			}
		}
	case record.KindAllergy:
		if a := allergyOf(v, id); a.ID != "" {
			return fmt.Sprintf("Allergy to %s (%s, %s)", a.Substance, a.Severity, a.Status)
		}
	case record.KindDiagnosis:
		for _, d := range v.Diagnoses {
			if d.ID == id {
				return fmt.Sprintf("%s (%s, %s)", d.Text, d.ClinicalStatus, d.VerificationStatus)
			}
		}
	case record.KindLabResult:
		for _, l := range v.LabResults {
			if l.ID == id {
				value := l.TextValue
				if l.Value != nil {
					value = strings.TrimSpace(strconv.FormatFloat(*l.Value, 'g', -1, 64) + " " + l.Unit)
				}
				return fmt.Sprintf("%s: %s (%s)", l.Test, value, l.Status)
			}
		}
	case record.KindIdentifier:
		if x := identifierOf(v, id); x.ID != "" {
			return fmt.Sprintf("%s %s (%s)", x.System, x.Value, x.Status)
		}
	case record.KindReferral:
		for _, r := range v.Referrals {
			if r.ID == id {
				return fmt.Sprintf("Referral to %s (%s)", r.Clinic, r.Status)
			}
		}
	}
	return ""
}

type formPageData struct {
	Chart record.View
	Form  *formData
}

func (s *Server) newChartForm(q *request, f *chartForm, v record.View, entry, what string, in formValues) *formData {
	key := f.Name
	if f.Name == "demographics" {
		key = "register" // the same fields
	}
	fd := newFormData(q.lang, key, "/chart/"+v.ChartID+"/"+f.Name, tr(q.lang, "form.save"), f.Fields, in)
	fd.Title = tr(q.lang, "form."+f.Name+".title")
	fd.Entry, fd.Context, fd.Cancel = entry, what, "/chart/"+v.ChartID
	return fd
}

func (s *Server) formPage(w http.ResponseWriter, r *http.Request, q *request) {
	f, v, entry, what, ok := s.formFor(w, r, q)
	if !ok {
		return
	}
	var in formValues
	if f.Fill != nil {
		in = f.Fill(s, v, entry)
	}
	fd := s.newChartForm(q, f, v, entry, what, in)
	s.render(w, r, q, http.StatusOK, "form", fd.Title, formPageData{Chart: v, Form: fd})
}

func (s *Server) formPost(w http.ResponseWriter, r *http.Request, q *request) {
	f, v, entry, what, ok := s.formFor(w, r, q)
	if !ok {
		return
	}
	in := values(r, f.Fields)
	fd := s.newChartForm(q, f, v, entry, what, in)
	op := f.Build(s, v, entry, in, fd)
	again := func() {
		s.render(w, r, q, http.StatusUnprocessableEntity, "form", fd.Title, formPageData{Chart: v, Form: fd})
	}
	if len(fd.Errors) > 0 || fd.Error != "" {
		again()
		return
	}
	if f.Check != nil && r.PostFormValue("confirm") == "" {
		fd.Notes, fd.Warn = f.Check(s, r, q, v, op)
		fd.Confirm = tr(q.lang, "form.confirm")
		s.render(w, r, q, http.StatusOK, "form", fd.Title, formPageData{Chart: v, Form: fd})
		return
	}
	res, err := s.r.Edit(r.Context(), v.ChartID, q.author, op)
	if err != nil {
		if s.formError(fd, err) {
			again()
			return
		}
		if f.Refusable && errors.Is(err, record.ErrTransition) {
			if msg := tr(q.lang, "form."+f.Name+".refused"); f.RefusedAt != "" {
				fd.Errors[f.RefusedAt] = msg
			} else {
				fd.Error = msg
			}
			again()
			return
		}
		s.writeFailed(w, r, q, err)
		return
	}
	s.setFlash(q.sess, s.saved(r, q, v, res))
	http.Redirect(w, r, "/chart/"+v.ChartID, http.StatusSeeOther)
}

// saved says what a write did, and the alerts it raised.
func (s *Server) saved(r *http.Request, q *request, before record.View, res record.Result) string {
	after, err := s.view(r, q, before.ChartID)
	if err != nil {
		return tr(q.lang, "saved")
	}
	msg := tr(q.lang, "saved")
	for _, h := range after.History {
		if h.Change == res.Change.Hash {
			msg = tr(q.lang, "saved.what", h.Summary)
		}
	}
	for _, p := range after.Prescriptions {
		if p.ID == res.EntryID && before.ChartID != "" {
			if p.ATC != "" {
				msg += fmt.Sprintf(" Drug coded as %s %s.", p.ATC, p.Substance)
			} else if p.Uncoded {
				msg += " Drug not in the dictionary: recorded uncoded."
			}
		}
	}
	for _, a := range after.Alerts {
		if !slices.ContainsFunc(before.Alerts, func(b record.Alert) bool {
			return b.Kind == a.Kind && slices.Equal(b.Entries, a.Entries)
		}) {
			msg += " NEW ALERT: " + a.Message
		}
	}
	return msg
}
