package record_test

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/record"
)

// opKinds are the operations the property test draws.
var opKinds = []string{
	"prescribe", "revise-dose", "put-on-hold", "resume", "discontinue", "complete",
	"add-allergy", "update-allergy", "no-known-allergies",
	"diagnose", "change-diagnosis-status",
	"record-lab-result", "finalize-lab-result", "correct-lab-result",
	"add-encounter", "edit-note",
	"mark-entered-in-error", "resolve-conflict", "update-demographics",
	"add-identifier", "correct-identifier", "remove-identifier",
}

// tally counts, over every case of a property test, how often each
// operation was tried and how often it went through.
type tally struct {
	mu        sync.Mutex
	tried, ok map[string]int
}

func (c *tally) add(kind string, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tried[kind]++
	if ok {
		c.ok[kind]++
	}
}

func ids[T any](xs []T, id func(T) string) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = id(x)
	}
	return out
}

// identifierValues are valid values of some identifier systems, for the
// property tests to add and correct to.
var identifierValues = map[string][]string{
	record.SystemPhone:   {"+254700000001", "+254700000002", "0700 000 003"},
	record.SystemClinic:  {"K-1", "K-2"},
	record.SystemAadhaar: {"234123412346", "2341 2341 2346", "987654321012"},
}

// drawOp draws an operation of the given kind for a device whose chart
// shows v, picking existing entries from v. It returns nil when the chart
// has no entry the operation could name.
func drawOp(t *rapid.T, kind string, v record.View) record.Op {
	pick := func(list []string, label string) (string, bool) {
		if len(list) == 0 {
			return "", false
		}
		return rapid.SampledFrom(list).Draw(t, label), true
	}
	rxs := ids(v.Prescriptions, func(p record.Prescription) string { return p.ID })
	allergies := ids(v.Allergies, func(a record.Allergy) string { return a.ID })
	diagnoses := ids(v.Diagnoses, func(d record.Diagnosis) string { return d.ID })
	labs := ids(v.LabResults, func(l record.LabResult) string { return l.ID })
	encounters := ids(v.Encounters, func(e record.Encounter) string { return e.ID })
	identifiers := ids(v.Patient.Identifiers, func(i record.Identifier) string { return i.ID })
	dose := rapid.SampledFrom([]float64{250, 500, 1000}).Draw
	reason := rapid.SampledFrom([]string{"", "rash", "vomiting", "review"}).Draw

	switch kind {
	case "prescribe":
		return record.Prescribe{
			Drug: rapid.SampledFrom([]string{"Amoxicillin", "Paracetamol", "Co-trimoxazole", "Metformin", "Amoxil", "Tylenol",
				"Septrin", "Ampicillin", "Ferrous sulfate", "Grandmother's tonic"}).Draw(t, "drug"),
			Dose: dose(t, "dose"), DoseUnit: "mg", Route: "oral",
			Frequency: rapid.SampledFrom([]string{"OD", "BD", "TDS"}).Draw(t, "frequency"),
		}
	case "revise-dose", "put-on-hold", "resume", "discontinue", "complete":
		if kind == "resume" && rapid.Bool().Draw(t, "one on hold") {
			// Mostly name one that can be resumed.
			rxs = nil
			for _, p := range v.Prescriptions {
				if p.Status == record.StatusOnHold {
					rxs = append(rxs, p.ID)
				}
			}
		}
		id, ok := pick(rxs, "prescription")
		if !ok {
			return nil
		}
		switch kind {
		case "revise-dose":
			return record.ReviseDose{PrescriptionID: id, Dose: dose(t, "dose"),
				Frequency: rapid.SampledFrom([]string{"", "BD", "QID"}).Draw(t, "frequency")}
		case "put-on-hold":
			return record.PutOnHold{PrescriptionID: id, Reason: reason(t, "reason")}
		case "resume":
			return record.Resume{PrescriptionID: id}
		case "discontinue":
			return record.Discontinue{PrescriptionID: id, Reason: reason(t, "reason")}
		}
		return record.Complete{PrescriptionID: id}
	case "add-allergy":
		return record.AddAllergy{
			Substance: rapid.SampledFrom([]string{"Penicillin", "Sulfa", "Peanuts"}).Draw(t, "substance"),
			Severity:  rapid.SampledFrom([]string{"mild", "severe"}).Draw(t, "severity"),
		}
	case "update-allergy":
		id, ok := pick(allergies, "allergy")
		if !ok {
			return nil
		}
		u := record.UpdateAllergy{AllergyID: id, Reason: reason(t, "reason")}
		switch rapid.IntRange(0, 2).Draw(t, "what") {
		case 0:
			u.Severity = record.Ptr(rapid.SampledFrom([]string{"mild", "moderate", "severe"}).Draw(t, "severity"))
		case 1:
			u.Status = record.Ptr(rapid.SampledFrom([]string{"active", "inactive", "resolved"}).Draw(t, "status"))
		default:
			u.Reaction = record.Ptr(rapid.SampledFrom([]string{"rash", "wheeze"}).Draw(t, "reaction"))
		}
		return u
	case "no-known-allergies":
		return record.RecordNoKnownAllergies{}
	case "diagnose":
		return record.Diagnose{Text: rapid.SampledFrom([]string{"Malaria", "Pneumonia"}).Draw(t, "diagnosis")}
	case "change-diagnosis-status":
		id, ok := pick(diagnoses, "diagnosis")
		if !ok {
			return nil
		}
		return record.ChangeDiagnosisStatus{DiagnosisID: id,
			ClinicalStatus: rapid.SampledFrom([]string{"", "active", "recurrence", "relapse", "inactive", "remission",
				"resolved"}).Draw(t, "clinical"),
			VerificationStatus: rapid.SampledFrom([]string{"", "unconfirmed", "provisional", "differential", "confirmed",
				"refuted"}).Draw(t, "verification")}
	case "record-lab-result":
		if rapid.Bool().Draw(t, "text result") {
			return record.RecordLabResult{Test: "Malaria RDT", TextValue: rapid.SampledFrom([]string{"positive", "negative", "invalid"}).Draw(t, "text"),
				RefText: "negative", AbnormalTexts: []string{"positive"}, CriticalTexts: []string{"invalid"}, LOINC: "70569-9",
				SpecimenAt: t0.Add(-time.Hour), Status: rapid.SampledFrom([]string{"preliminary", "final"}).Draw(t, "status")}
		}
		return record.RecordLabResult{Test: "Potassium", Value: record.Ptr(rapid.SampledFrom([]float64{2.0, 4.0, 7.0}).Draw(t, "value")),
			Unit: "mmol/L", RefLow: record.Ptr(3.5), RefHigh: record.Ptr(5.1), CriticalLow: record.Ptr(2.5), CriticalHigh: record.Ptr(6.5),
			SpecimenAt: t0.Add(-time.Hour), Status: rapid.SampledFrom([]string{"preliminary", "final"}).Draw(t, "status")}
	case "finalize-lab-result":
		if rapid.Bool().Draw(t, "a preliminary one") {
			labs = nil
			for _, l := range v.LabResults {
				if l.Status == record.StatusPreliminary {
					labs = append(labs, l.ID)
				}
			}
		}
		id, ok := pick(labs, "lab result")
		if !ok {
			return nil
		}
		return record.FinalizeLabResult{LabResultID: id}
	case "correct-lab-result":
		id, ok := pick(labs, "lab result")
		if !ok {
			return nil
		}
		reason := rapid.SampledFrom([]string{"repeat", "haemolysed"}).Draw(t, "reason")
		if rapid.Bool().Draw(t, "text correction") {
			return record.CorrectLabResult{LabResultID: id, TextValue: rapid.SampledFrom([]string{"positive", "negative", "invalid"}).Draw(t, "text"),
				Reason: reason}
		}
		return record.CorrectLabResult{LabResultID: id, Value: record.Ptr(rapid.SampledFrom([]float64{3.0, 4.5, 8.0}).Draw(t, "value")),
			Reason: reason}
	case "add-encounter":
		return record.AddEncounter{Complaint: "fever", Note: rapid.SampledFrom([]string{"", "hot", "seen at home"}).Draw(t, "note")}
	case "edit-note":
		id, ok := pick(encounters, "encounter")
		if !ok {
			return nil
		}
		var n int
		for _, e := range v.Encounters {
			if e.ID == id {
				n = utf8.RuneCountInString(e.Note)
			}
		}
		return record.EditNote{EncounterID: id, Pos: rapid.IntRange(0, n+1).Draw(t, "pos"),
			Delete: rapid.IntRange(0, 2).Draw(t, "delete"),
			Insert: rapid.SampledFrom([]string{"", "a", " cough", "ß"}).Draw(t, "insert")}
	case "mark-entered-in-error":
		id, ok := pick(slices.Concat(rxs, allergies, diagnoses, labs, encounters, identifiers), "entry")
		if !ok {
			return nil
		}
		return record.MarkEnteredInError{EntryID: id, Reason: "mistake"}
	case "resolve-conflict":
		if len(v.Conflicts) == 0 {
			return nil
		}
		c := rapid.SampledFrom(v.Conflicts).Draw(t, "conflict")
		return record.ResolveConflict{EntryID: c.EntryID, Field: c.Field,
			Value: rapid.SampledFrom(c.Values).Draw(t, "value").Value}
	case "add-identifier":
		sys := rapid.SampledFrom([]string{record.SystemPhone, record.SystemClinic, record.SystemAadhaar}).Draw(t, "system")
		return record.AddIdentifier{System: sys, Value: rapid.SampledFrom(identifierValues[sys]).Draw(t, "value")}
	case "correct-identifier", "remove-identifier":
		if len(v.Patient.Identifiers) == 0 {
			return nil
		}
		i := rapid.SampledFrom(v.Patient.Identifiers).Draw(t, "identifier")
		if kind == "remove-identifier" {
			return record.RemoveIdentifier{IdentifierID: i.ID, Reason: "no longer used"}
		}
		if len(identifierValues[i.System]) == 0 {
			return nil // a system only a forged change wrote: no value to correct it to
		}
		return record.CorrectIdentifier{IdentifierID: i.ID, Value: rapid.SampledFrom(identifierValues[i.System]).Draw(t, "value")}
	case "update-demographics":
		if rapid.Bool().Draw(t, "village") {
			return record.UpdateDemographics{Village: record.Ptr(rapid.SampledFrom([]string{"Kamuga", "Gatundu", "Asafo"}).Draw(t, "name"))}
		}
		return record.UpdateDemographics{Phone: record.Ptr(rapid.SampledFrom([]string{"+254 700 000001", "+254 700 000002"}).Draw(t, "phone"))}
	}
	panic("unknown op kind " + kind)
}

// deliver gives dst a random subset of src's changes, as bytes, in random
// order, as an unreliable courier would; changes whose dependencies are
// missing are held by dst until they arrive.
func deliver(t *rapid.T, dst, src *record.Chart) {
	chs, err := src.Doc().Changes(nil)
	require.NoError(t, err)
	var pick []crdt.Change
	for i, c := range chs {
		if rapid.Bool().Draw(t, fmt.Sprintf("send %d", i)) {
			pick = append(pick, c)
		}
	}
	if len(pick) == 0 {
		return
	}
	order := rapid.Permutation(pick).Draw(t, "order")
	parsed, err := crdt.ParseChanges(crdt.SaveChanges(order))
	require.NoError(t, err)
	_, err = dst.Doc().Apply(parsed...)
	require.NoError(t, err)
}

// TestPropertyReplicasConverge: devices holding one chart apply random
// operations offline and exchange changes in random orders and groupings;
// once all have everything they show the same chart, and nothing any of
// them recorded is lost.
func TestPropertyReplicasConverge(t *testing.T) {
	counts := &tally{tried: map[string]int{}, ok: map[string]int{}}
	forbidden := 0
	rapid.Check(t, func(t *rapid.T) {
		base := newChart(t)
		n := rapid.IntRange(2, 5).Draw(t, "devices")
		rs := make([]*record.Chart, n)
		for i := range rs {
			rs[i] = fork(t, base)
		}
		created := map[string]bool{}
		steps := rapid.IntRange(20, 80).Draw(t, "steps")
		for s := 0; s < steps; s++ {
			switch rapid.IntRange(0, 9).Draw(t, "action") {
			case 0, 1: // sync two devices, one way or both
				a := rapid.IntRange(0, n-1).Draw(t, "to")
				b := rapid.IntRange(0, n-1).Draw(t, "from")
				if a == b {
					continue
				}
				if rapid.Bool().Draw(t, "partial") {
					deliver(t, rs[a], rs[b])
				} else {
					merge(t, rs[a], rs[b])
				}
				if rapid.Bool().Draw(t, "both ways") {
					merge(t, rs[b], rs[a])
				}
			default:
				d := rapid.IntRange(0, n-1).Draw(t, "device")
				kind := rapid.SampledFrom(opKinds).Draw(t, "op")
				v := view(t, rs[d])
				op := drawOp(t, kind, v)
				if op == nil {
					continue
				}
				at := t0.Add(time.Duration(rapid.IntRange(0, 15).Draw(t, "minute")) * time.Minute)
				// The author is someone the permission matrix allows,
				// or now and then someone it does not, who is refused.
				sections, err := rs[d].Sections(at, op)
				var allowed, refused []record.Author
				for _, a := range staff {
					if err == nil && !permittedFor(t, rs[d], a, at, op) {
						refused = append(refused, a)
					} else {
						allowed = append(allowed, a)
					}
				}
				if len(refused) > 0 && rapid.IntRange(0, 4).Draw(t, "forbidden") == 0 {
					by := rapid.SampledFrom(refused).Draw(t, "refused author")
					heads, before := rs[d].Doc().Heads(), view(t, rs[d])
					_, err := rs[d].Do(by, at, op)
					require.ErrorIs(t, err, record.ErrForbidden, "a %s made %s, which writes %v", by.Role, kind, sections)
					var fe *record.ForbiddenError
					require.ErrorAs(t, err, &fe)
					require.Equal(t, by.Role, fe.Role)
					require.Contains(t, sections, fe.Section, "refused for a section the operation does not write")
					require.False(t, record.Permitted(by.Role, fe.Section))
					require.Equal(t, heads, rs[d].Doc().Heads(), "a refused operation changed the chart")
					require.Equal(t, before, view(t, rs[d]), "a refused operation changed the view")
					forbidden++
					continue
				}
				by := rapid.SampledFrom(allowed).Draw(t, "author")
				res, err := rs[d].Do(by, at, op)
				counts.add(kind, err == nil)
				if err != nil {
					if !errors.Is(err, record.ErrTransition) && !errors.Is(err, record.ErrInvalid) {
						t.Fatalf("%s %+v by a %s on device %d: unexpected error %v", kind, op, by.Role, d, err)
					}
					continue
				}
				// Do keeps the chart's state over its own change: it
				// reads as the chart read afresh.
				require.Equal(t, view(t, fork(t, rs[d])), view(t, rs[d]), "the state kept over %s reads otherwise than the chart read afresh", kind)
				// What the change is checked for elsewhere agrees with
				// what Do wrote and allowed.
				touched, err := checkBoth(t, rs[d].Doc(), res.Change)
				require.NoError(t, err, "CheckChange refused %s by a %s", kind, by.Role)
				require.Equal(t, sections, touched.Sections, "CheckChange found other sections than %s writes", kind)
				require.Equal(t, by, touched.Author)
				switch kind {
				case "prescribe", "add-allergy", "diagnose", "record-lab-result", "add-encounter", "add-identifier":
					require.False(t, created[res.EntryID], "entry ID %s reused", res.EntryID)
					created[res.EntryID] = true
				}
			}
		}
		// Everyone meets: every device gets every change.
		mergeAll(t, rs...)
		for i, r := range rs {
			require.Empty(t, r.Doc().Pending(), "device %d still holds changes whose dependencies arrived", i)
		}
		v := converged(t, rs...)

		shown := listed(v)
		for id := range created {
			require.True(t, shown[id], "entry %s recorded on some device is missing from the merged chart", id)
		}
		count := len(v.Allergies) + len(v.Diagnoses) + len(v.Prescriptions) + len(v.LabResults) + len(v.Encounters) +
			len(v.Patient.Identifiers) + len(v.EnteredInError)
		require.Equal(t, len(shown), count, "an entry is listed twice")
		require.Equal(t, len(created), count, "the chart lists entries nobody recorded")
		for _, c := range v.Conflicts {
			require.GreaterOrEqual(t, len(c.Values), 2, "conflict %+v has one value", c)
			require.True(t, slices.ContainsFunc(c.Values, func(w record.Written) bool { return w.Value == c.Shown }),
				"conflict on %s shows %q, which is none of its values", c.Field, c.Shown)
		}
		for _, a := range v.Alerts {
			for _, id := range a.Entries {
				require.True(t, shown[id], "alert %s names unknown entry %s", a.Kind, id)
			}
			if a.InConflict {
				require.True(t, slices.ContainsFunc(v.Conflicts, func(c record.Conflict) bool { return slices.Contains(a.Entries, c.EntryID) }),
					"alert %s says it comes from a conflict, but its entries have none: %s", a.Kind, a.Message)
			}
		}
		// A critical value, shown or competing in a conflict, is alerted.
		for _, l := range v.LabResults {
			values := []string{}
			if l.Value != nil {
				values = append(values, strconv.FormatFloat(*l.Value, 'g', -1, 64))
			}
			if c, ok := findConflict(v, l.ID, "value"); ok {
				for _, w := range c.Values {
					values = append(values, w.Value)
				}
			}
			critical := slices.ContainsFunc(values, func(s string) bool {
				x, err := strconv.ParseFloat(s, 64)
				return err == nil && ((l.CriticalLow != nil && x < *l.CriticalLow) || (l.CriticalHigh != nil && x > *l.CriticalHigh))
			})
			// And a text listed critical, shown or competing.
			texts := []string{l.TextValue}
			if c, ok := findConflict(v, l.ID, "text"); ok {
				for _, w := range c.Values {
					texts = append(texts, w.Value)
				}
			}
			critical = critical || slices.ContainsFunc(texts, func(s string) bool {
				return s != "" && slices.ContainsFunc(l.CriticalTexts, func(c string) bool { return strings.EqualFold(strings.TrimSpace(s), c) })
			})
			values = append(values, texts...)
			alerted := slices.ContainsFunc(alertsOf(v, record.AlertCriticalLab), func(a record.Alert) bool { return slices.Equal(a.Entries, []string{l.ID}) })
			require.Equal(t, critical, alerted, "%s %s (values %q, shown first): is a critical value alerted?", l.Test, l.ID, values)
		}
		require.True(t, sort.SliceIsSorted(v.History, func(i, j int) bool { return v.History[i].At.Before(v.History[j].At) }))

		// The merged chart survives a save and load unchanged.
		d, err := crdt.Load(rs[0].Doc().Save(), crdt.NewActorID())
		require.NoError(t, err)
		reopened, err := record.Open(d)
		require.NoError(t, err)
		require.Equal(t, v, view(t, reopened), "the saved chart reads back differently")
	})
	if t.Failed() {
		return
	}
	// The generator must exercise the operations, not just be refused.
	var tried, ok int
	for _, k := range opKinds {
		tried += counts.tried[k]
		ok += counts.ok[k]
		t.Logf("%-24s tried %4d, succeeded %4d", k, counts.tried[k], counts.ok[k])
		// Enough tries that a working operation cannot fail them all.
		if counts.tried[k] >= 30 {
			assert.Positive(t, counts.ok[k], "%s was tried %d times and never succeeded", k, counts.tried[k])
		}
	}
	assert.Greater(t, ok*2, tried, "fewer than half the operations succeeded")
	assert.Positive(t, forbidden, "no forbidden operation was tried")
}
