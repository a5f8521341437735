// Package chartfmt prints a chart view for a person at a terminal: the
// example programs share it.
package chartfmt

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/chartsync/chartsync/record"
)

// Short returns the first 8 characters of an ID, enough to name it at a
// prompt.
func Short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// Print writes a chart: demographics, each clinical list with entry IDs,
// then conflicts and alerts, clearly marked. Every line starts with indent.
func Print(w io.Writer, v record.View, indent string) {
	p := v.Patient
	born := p.BirthDate
	if born == "" && p.EstimatedBirthYear != 0 {
		born = fmt.Sprintf("about %d", p.EstimatedBirthYear)
	}
	line := func(format string, args ...any) { fmt.Fprintf(w, indent+format+"\n", args...) }
	line("%s  [chart %s]", p.FullName(), Short(v.ChartID))
	line("  %s, born %s; %s; home clinic %s", p.Sex, born, join(p.Village, p.Address, p.Phone), p.HomeClinic)
	if p.NationalID != "" || p.Guardian != "" {
		line("  national ID %s; guardian %s", or(p.NationalID, "-"), or(p.Guardian, "-"))
	}
	if len(v.Hidden) > 0 {
		hidden := make([]string, len(v.Hidden))
		for i, s := range v.Hidden {
			hidden[i] = string(s)
		}
		line("  (not shown to your role at this clinic: %s)", strings.Join(hidden, ", "))
	}
	line("Allergies:")
	if v.NoKnownAllergies {
		line("  no known allergies")
	}
	for _, a := range v.Allergies {
		line("  %s %s (%s, %s) %s", Short(a.ID), a.Substance, a.Severity, a.Status, a.Reaction)
	}
	line("Diagnoses:")
	for _, d := range v.Diagnoses {
		line("  %s %s %s [%s, %s]", Short(d.ID), d.Text, d.Code, d.ClinicalStatus, d.VerificationStatus)
	}
	line("Prescriptions:")
	for _, rx := range v.Prescriptions {
		days := ""
		if rx.DurationDays > 0 {
			days = fmt.Sprintf(" for %d days", rx.DurationDays)
		}
		code := " [uncoded]"
		switch {
		case rx.ATC != "" && rx.Substance != "":
			code = fmt.Sprintf(" (%s %s)", rx.ATC, rx.Substance)
		case rx.ATC != "":
			code = fmt.Sprintf(" (%s)", rx.ATC)
		case !rx.Uncoded:
			code = ""
		}
		line("  %s %s%s %g %s %s %s%s [%s] by %s", Short(rx.ID), rx.Drug, code, rx.Dose, rx.DoseUnit, rx.Route, rx.Frequency, days, rx.Status, rx.RecordedBy)
	}
	line("Lab results:")
	for _, l := range v.LabResults {
		val := l.TextValue
		if l.Value != nil {
			val = fmt.Sprintf("%g %s", *l.Value, l.Unit)
		}
		interp := ""
		if l.Interpretation != "" {
			interp = ", " + strings.ToUpper(l.Interpretation)
		}
		line("  %s %s %s [%s%s] specimen %s", Short(l.ID), l.Test, val, l.Status, interp, l.SpecimenAt.Format(time.DateOnly))
		for _, prev := range l.Previous {
			line("      earlier value %s, by %s at %s", prev.Value, prev.By, prev.At.Format(time.DateTime))
		}
	}
	line("Encounters:")
	for _, e := range v.Encounters {
		line("  %s %s %s%s", Short(e.ID), e.Date, e.Complaint, vitals(e.Vitals))
		if e.Note != "" {
			line("      note: %s", e.Note)
		}
	}
	if len(v.Referrals) > 0 {
		line("Referrals:")
		for _, r := range v.Referrals {
			line("  %s to %s [%s] %s", Short(r.ID), r.Clinic, r.Status, r.Reason)
		}
	}
	if len(v.EnteredInError) > 0 {
		line("Entered in error (kept for the record):")
		for _, e := range v.EnteredInError {
			line("  %s %s %s: %s (by %s)", Short(e.ID), e.Kind, e.Label, e.Reason, e.By)
		}
	}
	if len(v.Conflicts) > 0 {
		line("!! CONFLICTS: concurrent edits a clinician must settle")
		for _, c := range v.Conflicts {
			auto := ""
			if c.Automatic {
				auto = " (settled by clinical precedence)"
			}
			line("  * %s %s %s: showing %q%s; values written:", Short(c.EntryID), c.Entry, c.Field, c.Shown, auto)
			for _, wr := range c.Values {
				line("      %q by %s at %s", wr.Value, wr.By, wr.At.Format(time.DateTime))
			}
		}
	}
	if len(v.Alerts) > 0 {
		line("!! ALERTS")
		for _, a := range v.Alerts {
			line("  ! [%s] %s", strings.ToUpper(a.Severity), a.Message)
		}
	}
}

func vitals(v record.Vitals) string {
	var parts []string
	if v.BPSystolic != 0 {
		parts = append(parts, fmt.Sprintf("BP %g/%g", v.BPSystolic, v.BPDiastolic))
	}
	for _, f := range []struct {
		name, unit string
		v          float64
	}{{"pulse", "/min", v.Pulse}, {"T", "°C", v.Temperature}, {"weight", "kg", v.Weight}, {"height", "cm", v.Height}, {"SpO2", "%", v.SpO2}} {
		if f.v != 0 {
			parts = append(parts, fmt.Sprintf("%s %g%s", f.name, f.v, f.unit))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return "; " + strings.Join(parts, ", ")
}

func join(parts ...string) string {
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, ", ")
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// History writes a chart's history, oldest first.
func History(w io.Writer, v record.View, indent string) {
	for _, h := range v.History {
		fmt.Fprintf(w, "%s%s  %-40s %s\n", indent, h.At.Format(time.DateTime), h.By.String(), h.Summary)
	}
}
