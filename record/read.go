package record

import (
	"fmt"
	"slices"
	"strings"
)

// SectionNotes is a read-only part of the encounters section: the free
// text of encounter notes. A ReadPolicy may hide it alone, so a role sees
// that a visit happened (date, complaint, vitals) but not what the
// clinician wrote.
const SectionNotes Section = "notes"

// ReadPolicy is what each role may not read of a chart: a clinic's choice
// (kept in its user roster, see Users.SetHidden), for example that
// registration clerks read no clinical notes. The zero value hides
// nothing. It is applied where a chart is shown (Redact); the data stays
// on the device, whose store is the device's to protect.
type ReadPolicy map[Role][]Section

// readable lists what a ReadPolicy may hide.
var readable = append(slices.Clone(sections), SectionNotes)

// Hides reports whether role may not read s.
func (p ReadPolicy) Hides(role Role, s Section) bool {
	return slices.Contains(p[role], s) || (s == SectionNotes && slices.Contains(p[role], SectionEncounters))
}

// checkHidden validates a list of sections to hide.
func checkHidden(ss []Section) error {
	for _, s := range ss {
		if !slices.Contains(readable, s) {
			return invalid("sections", "%q is not a chart section (use %s)", s, joinSections(readable))
		}
		if s == SectionDemographics {
			return invalid("sections", "demographics cannot be hidden: every role must know whose chart it is")
		}
	}
	return nil
}

func joinSections(ss []Section) string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = string(s)
	}
	return strings.Join(out, ", ")
}

// encodeHidden and decodeHidden store a list of sections as one register.
func encodeHidden(ss []Section) string {
	out := make([]string, 0, len(ss))
	for _, s := range ss {
		out = append(out, string(s))
	}
	slices.Sort(out)
	return strings.Join(slices.Compact(out), ",")
}

func decodeHidden(v string) ([]Section, error) {
	if v == "" {
		return nil, nil
	}
	var out []Section
	for _, s := range strings.Split(v, ",") {
		out = append(out, Section(s))
	}
	if err := checkHidden(out); err != nil {
		return nil, err
	}
	return out, nil
}

// Redacted is the placeholder shown for what a role may not read.
const Redacted = "[hidden]"

// Redact returns v as role may read it under p: the lists of hidden
// sections are emptied (encounter notes blanked when only notes are
// hidden), and the conflicts, alerts, history entries and entered-in-error
// entries about hidden entries keep only that they exist. View.Hidden
// lists what was left out. v is not modified.
func (p ReadPolicy) Redact(v View, role Role) View {
	if len(p[role]) == 0 {
		return v
	}
	out := v
	hides := func(s Section) bool { return p.Hides(role, s) }
	hidden := map[string]bool{} // IDs of the entries of hidden sections
	for _, k := range entryKinds {
		for _, id := range k.redact(k, &out, hides) {
			hidden[id] = true
		}
	}
	for _, e := range v.EnteredInError {
		if s, ok := sectionOf(e.Kind, ""); ok && hides(s) {
			hidden[e.ID] = true
		}
	}
	hiddenEntry := func(id string) bool { return hidden[id] }
	out.EnteredInError = nil
	for _, e := range v.EnteredInError {
		if hiddenEntry(e.ID) {
			e.Label = Redacted
		}
		out.EnteredInError = append(out.EnteredInError, e)
	}
	out.Conflicts = nil
	for _, c := range v.Conflicts {
		if hiddenEntry(c.EntryID) {
			c.Entry, c.Shown, c.Values = Redacted, Redacted, nil
		}
		out.Conflicts = append(out.Conflicts, c)
	}
	out.Alerts = nil
	for _, a := range v.Alerts {
		if slices.ContainsFunc(a.Entries, hiddenEntry) {
			a.Message = fmt.Sprintf("%s alert about entries this role may not read: ask a clinician", a.Kind)
		}
		out.Alerts = append(out.Alerts, a)
	}
	out.History = nil
	for _, h := range v.History {
		if hiddenEntry(h.EntryID) || (h.Op == "edit-note" || h.Op == "add-encounter") && hides(SectionNotes) ||
			h.Op == "no-known-allergies" && hides(SectionAllergies) {
			h.Summary = Redacted
		}
		out.History = append(out.History, h)
	}
	for _, s := range readable {
		if hides(s) {
			out.Hidden = append(out.Hidden, s)
		}
	}
	return out
}
