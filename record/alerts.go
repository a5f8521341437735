package record

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Alerts are computed over every value a field holds, not only the one
// shown: a value competing in a conflict nobody has settled may be the
// right one, so one that would raise an alert raises it, marked
// InConflict, until the conflict is settled. Statuses are the exception:
// concurrent statuses are settled by clinical precedence, and the status
// shown is the one that counts.

// competing returns the current writes of a field with distinct values,
// the one shown first; nil if the field was never written.
func (e *entry) competing(field string) []*write {
	r := e.fields[field]
	if r == nil || len(r.current) == 0 {
		return nil
	}
	out := []*write{e.writeOf(field)}
	for _, w := range r.current {
		if !slices.ContainsFunc(out, func(o *write) bool { return o.Value == w.Value }) {
			out = append(out, w)
		}
	}
	return out
}

// inConflictNote says which competing value of a field an alert comes
// from, and who wrote it.
func inConflictNote(what string, w *write) string {
	return fmt.Sprintf("%s is in a conflict not yet settled: %q was written by %s on %s", what, w.Value, w.author(),
		w.time().Format(time.DateOnly))
}

func alerts(v *View, s *state) []Alert {
	names := drugNames{}
	out := append([]Alert{}, duplicateAlerts(v, s, names)...)
	out = append(out, allergyAlerts(v, s, names)...)
	out = append(out, criticalLabAlerts(v, s)...)
	// "No known allergies" recorded concurrently with an allergy.
	if r := s.patient().fields["nka"]; r != nil && slices.ContainsFunc(r.current, func(w *write) bool { return w.Value == "true" }) {
		var ids, names []string
		for _, a := range v.Allergies {
			if a.Status == StatusActive {
				ids, names = append(ids, a.ID), append(names, a.Substance)
			}
		}
		if len(ids) > 0 {
			out = append(out, Alert{Kind: AlertAllergyStatus, Severity: "warning", Entries: ids,
				Message: fmt.Sprintf("\"No known allergies\" was recorded while an allergy to %s was being recorded; the allergy stands: confirm with the patient",
					strings.Join(names, ", "))})
		}
	}
	for i := range out {
		slices.Sort(out[i].Entries)
	}
	slices.SortFunc(out, func(a, b Alert) int {
		return cmp.Or(strings.Compare(a.Kind, b.Kind), slices.Compare(a.Entries, b.Entries))
	})
	return out
}

// ---- duplicate therapy ----

// rxMatch is an active prescription found under a name (a substance, a
// drug code or a drug class): by the value shown, or only by a value
// competing in a conflict (w).
type rxMatch struct {
	p     Prescription
	shown bool
	w     *write // the value it was found by
	field string // the field w is a value of
}

// rxGroups collects, under each name, the prescriptions found by it,
// each once (by its value shown if it can be).
type rxGroups map[string][]rxMatch

func (g rxGroups) add(name string, m rxMatch) {
	for i, o := range g[name] {
		if o.p.ID == m.p.ID {
			if m.shown && !o.shown {
				g[name][i] = m
			}
			return
		}
	}
	g[name] = append(g[name], m)
}

// rxAlert is a candidate duplicate-therapy alert.
type rxAlert struct {
	ids        []string
	ms         []rxMatch
	inConflict bool
	// whats are the substances, codes or classes the prescriptions
	// share.
	whats []string
}

// what names what the prescriptions share.
func (a rxAlert) what() string { return strings.Join(a.whats, ", ") }

// alertsOf returns, for every name under which at least two
// prescriptions are found, an alert for those found by the values shown
// and, when values in conflict add to them, an alert in conflict for all
// of them; one alert for each set of prescriptions, by the values shown
// if it can be.
func (g rxGroups) alerts(what func(name string) string) []rxAlert {
	bySet := map[string]*rxAlert{}
	offer := func(ms []rxMatch, inConflict bool, name string) {
		if len(ms) < 2 {
			return
		}
		ids := make([]string, len(ms))
		for i, m := range ms {
			ids[i] = m.p.ID
		}
		slices.Sort(ids)
		key := strings.Join(ids, " ")
		if o, ok := bySet[key]; ok {
			if o.inConflict == inConflict && !slices.Contains(o.whats, what(name)) {
				o.whats = append(o.whats, what(name)) // one set, found under two names
			}
			if !o.inConflict || inConflict {
				return
			}
		}
		bySet[key] = &rxAlert{ids: ids, ms: ms, inConflict: inConflict, whats: []string{what(name)}}
	}
	for _, name := range slices.Sorted(maps.Keys(g)) {
		all := g[name]
		shown := slices.DeleteFunc(slices.Clone(all), func(m rxMatch) bool { return !m.shown })
		offer(shown, false, name)
		if len(shown) < len(all) {
			offer(all, true, name)
		}
	}
	out := make([]rxAlert, 0, len(bySet))
	for _, a := range bySet {
		out = append(out, *a)
	}
	slices.SortFunc(out, func(a, b rxAlert) int { return slices.Compare(a.ids, b.ids) })
	return out
}

// covers reports whether a holds every prescription of b, and is as
// certain (an alert from the values shown covers any; one in conflict
// only another in conflict).
func (a rxAlert) covers(b rxAlert) bool {
	if a.inConflict && !b.inConflict {
		return false
	}
	for _, id := range b.ids {
		if !slices.Contains(a.ids, id) {
			return false
		}
	}
	return true
}

// rxLines describes each prescription of an alert, with the competing
// value it was found by.
func rxLines(ms []rxMatch) string {
	ms = slices.Clone(ms)
	slices.SortFunc(ms, func(a, b rxMatch) int {
		return cmp.Or(a.p.RecordedAt.Compare(b.p.RecordedAt), strings.Compare(a.p.ID, b.p.ID))
	})
	lines := make([]string, len(ms))
	for i, m := range ms {
		p := m.p
		lines[i] = fmt.Sprintf("%s %s %s %s by %s on %s", p.Drug, fmtFloat(p.Dose), p.DoseUnit, p.Frequency,
			p.RecordedBy, p.RecordedAt.Format(time.DateOnly))
		if !m.shown {
			what := "its drug"
			switch m.field {
			case "drug_code":
				what = "its drug code"
			case "atc":
				what = "its ATC code"
			}
			lines[i] += " (" + inConflictNote(what, m.w) + ")"
		}
	}
	return strings.Join(lines, "; ")
}

// duplicateAlerts finds active prescriptions of the same substance and
// of the same drug class. A drug the dictionary knows (by its name, ATC
// code or drug code) is one substance whatever its name, and is of its
// ATC level-4 class (unless its members are given together by design)
// and of its groups of cross-reacting drugs; a drug it does not know is
// compared by name (see substance) and the small class table, or by its
// code as written.
func duplicateAlerts(v *View, s *state, names drugNames) []Alert {
	dict := DrugDictionary()
	same, class := rxGroups{}, rxGroups{}
	coded := func(r rxDrug, m rxMatch) {
		same.add("drug:"+dict.drugs[r.drug].Name, m)
		if !dict.TogetherByDesign(r.code) {
			class.add("atc:"+r.code[:5], m)
		}
		for _, g := range dict.groupsOf[r.drug] {
			class.add(dict.groups[g].Name, m)
		}
	}
	for _, p := range v.Prescriptions {
		e := s.entries[p.ID]
		if p.Status != StatusActive || e == nil {
			continue
		}
		for _, field := range []string{"drug", "atc", "drug_code"} {
			for i, w := range e.competing(field) {
				if w.Value == "" {
					continue
				}
				m := rxMatch{p: p, shown: i == 0, w: w, field: field}
				r := names.rxValue(field, w.Value)
				if field != "drug" {
					if field == "drug_code" || r.drug < 0 {
						same.add("code:"+w.Value, m)
					}
					if r.drug >= 0 {
						coded(r, m)
					}
					continue
				}
				if r.drug >= 0 {
					coded(r, m)
					continue
				}
				if r.name.sub == "" {
					continue
				}
				same.add("name:"+r.name.sub, m)
				for _, c := range r.name.subClasses {
					class.add(drugClasses[c].name, m)
				}
			}
		}
	}
	var out []Alert
	dups := same.alerts(func(name string) string {
		if code, ok := strings.CutPrefix(name, "code:"); ok {
			return "drug code " + code
		}
		return strings.TrimPrefix(strings.TrimPrefix(name, "name:"), "drug:")
	})
	for _, d := range dups {
		a := Alert{Kind: AlertDuplicateDrug, Severity: "high", Entries: d.ids, InConflict: d.inConflict,
			Message: fmt.Sprintf("The same drug (%s) is prescribed %d times and all are active: %s: discontinue the ones not wanted",
				d.what(), len(d.ids), rxLines(d.ms))}
		if d.inConflict {
			a.Message = fmt.Sprintf("The same drug (%s) may be prescribed %d times, all active, by a value in a conflict: %s: settle the conflict, and discontinue the ones not wanted",
				d.what(), len(d.ids), rxLines(d.ms))
		}
		out = append(out, a)
	}
	classes := class.alerts(func(name string) string {
		if c, ok := strings.CutPrefix(name, "atc:"); ok {
			return "ATC class " + c
		}
		return name
	})
	for _, c := range classes {
		if slices.ContainsFunc(dups, func(d rxAlert) bool { return d.covers(c) }) {
			continue // the same substance: the duplicate-drug alert says it
		}
		a := Alert{Kind: AlertDuplicateClass, Severity: "warning", Entries: c.ids, InConflict: c.inConflict,
			Message: fmt.Sprintf("%d drugs of one class (%s) are active: %s: check that each is meant",
				len(c.ids), c.what(), rxLines(c.ms))}
		if c.inConflict {
			a.Message = fmt.Sprintf("%d drugs of one class (%s) may be active, by a value in a conflict: %s: settle the conflict, and check that each is meant",
				len(c.ids), c.what(), rxLines(c.ms))
		}
		out = append(out, a)
	}
	return out
}

// ---- allergies ----

// allergyAlerts finds active or on-hold prescriptions for a drug the
// patient is allergic to.
func allergyAlerts(v *View, s *state, names drugNames) []Alert {
	var out []Alert
	for _, a := range v.Allergies {
		ea := s.entries[a.ID]
		if a.Status != StatusActive || ea == nil {
			continue
		}
		for _, p := range v.Prescriptions {
			ep := s.entries[p.ID]
			if (p.Status != StatusActive && p.Status != StatusOnHold) || ep == nil {
				continue
			}
			rx := fmt.Sprintf("%s %s %s %s", p.Drug, fmtFloat(p.Dose), p.DoseUnit, p.Frequency)
			if names.allergicToShown(a.Substance, p) {
				out = append(out, Alert{Kind: AlertAllergyDrug, Severity: "high", Entries: []string{a.ID, p.ID},
					Message: fmt.Sprintf("%s is prescribed but the patient is allergic to %s (%s): review before giving it",
						rx, a.Substance, a.Severity)})
				continue
			}
			if note, ok := names.allergicInConflict(ea, ep); ok {
				out = append(out, Alert{Kind: AlertAllergyDrug, Severity: "high", Entries: []string{a.ID, p.ID}, InConflict: true,
					Message: fmt.Sprintf("%s is prescribed and the patient may be allergic to it (allergy to %s, %s): %s: settle the conflict, and review before giving it",
						rx, a.Substance, a.Severity, note)})
			}
		}
	}
	return out
}

// rxFields are the fields of a prescription that name its drug.
var rxFields = []string{"drug", "atc", "drug_code"}

// allergicToShown reports whether an allergy to substance rules out the
// drug of p as shown (by its name, ATC code or drug code).
func (n drugNames) allergicToShown(substance string, p Prescription) bool {
	for i, v := range []string{p.Drug, p.ATC, p.DrugCode} {
		if v != "" && n.allergic(substance, n.rxValue(rxFields[i], v)) {
			return true
		}
	}
	return false
}

// allergicInConflict reports whether some substance of allergy ea rules
// out some drug of prescription ep, counting values competing in a
// conflict, and says which.
func (n drugNames) allergicInConflict(ea, ep *entry) (string, bool) {
	subs := ea.competing("substance")
	for _, field := range rxFields {
		drugs := ep.competing(field)
		for i, sw := range subs {
			for j, dw := range drugs {
				if (i > 0 || j > 0) && dw.Value != "" && n.allergic(sw.Value, n.rxValue(field, dw.Value)) {
					var notes []string
					if i > 0 {
						notes = append(notes, inConflictNote("the allergy's substance", sw))
					}
					if j > 0 {
						what := map[string]string{"drug": "the prescription's drug", "atc": "the prescription's ATC code",
							"drug_code": "the prescription's drug code"}[field]
						notes = append(notes, inConflictNote(what, dw))
					}
					return strings.Join(notes, "; "), true
				}
			}
		}
	}
	return "", false
}

// ---- lab results ----

// criticalLabAlerts finds lab results with a critical value: the value
// shown, or one competing in a conflict (against any critical limit the
// result holds, shown or competing).
func criticalLabAlerts(v *View, s *state) []Alert {
	var out []Alert
	for _, l := range v.LabResults {
		if l.Interpretation == InterpretationCritical {
			out = append(out, Alert{Kind: AlertCriticalLab, Severity: "high", Entries: []string{l.ID},
				Message: fmt.Sprintf("%s is critical: %s (specimen %s)", l.Test, labValue(l.Value, l.TextValue, l.Unit),
					l.SpecimenAt.Format(time.DateOnly))})
			continue
		}
		e := s.entries[l.ID]
		if e == nil {
			continue
		}
		var found []string
		for i, w := range e.competing("value") {
			x, ok := parseFloat(w.Value)
			if !ok || !criticalAgainst(x, e.competing("critical_low"), e.competing("critical_high")) {
				continue
			}
			what := fmt.Sprintf("%s %s by %s on %s", fmtFloat(x), l.Unit, w.author(), w.time().Format(time.DateOnly))
			if i == 0 {
				what += " against a critical limit in the conflict"
			}
			found = append(found, what)
		}
		for i, w := range e.competing("text") {
			if w.Value == "" || !criticalText(w.Value, e.competing("critical_text")) {
				continue
			}
			what := fmt.Sprintf("%q by %s on %s", w.Value, w.author(), w.time().Format(time.DateOnly))
			if i == 0 {
				what += " against a critical text in the conflict"
			}
			found = append(found, what)
		}
		if len(found) == 0 {
			continue
		}
		out = append(out, Alert{Kind: AlertCriticalLab, Severity: "high", Entries: []string{l.ID}, InConflict: true,
			Message: fmt.Sprintf("%s has a critical value in a conflict not yet settled: %s, while %s is shown (specimen %s): settle the conflict before acting on the result",
				l.Test, strings.Join(found, "; "), labValue(l.Value, l.TextValue, l.Unit), l.SpecimenAt.Format(time.DateOnly))})
	}
	return out
}

// criticalText reports whether a text value is listed critical by one of
// the critical text lists written.
func criticalText(v string, lists []*write) bool {
	for _, w := range lists {
		if interpretText(v, "", nil, lines(w.Value)) == InterpretationCritical {
			return true
		}
	}
	return false
}

// criticalAgainst reports whether x is below a critical low limit or
// above a critical high limit among those written.
func criticalAgainst(x float64, lows, highs []*write) bool {
	for _, w := range lows {
		if lo, ok := parseFloat(w.Value); ok && x < lo {
			return true
		}
	}
	for _, w := range highs {
		if hi, ok := parseFloat(w.Value); ok && x > hi {
			return true
		}
	}
	return false
}
