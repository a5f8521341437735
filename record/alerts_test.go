package record_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/chartsync/chartsync/record"
)

// mergeOrders are the two orders in which two replicas can take each
// other's changes; each scenario runs in both.
var mergeOrders = []struct {
	name  string
	merge func(t *testing.T, a, b *record.Chart)
}{
	{"a then b", func(t *testing.T, a, b *record.Chart) { merge(t, a, b); merge(t, b, a) }},
	{"b then a", func(t *testing.T, a, b *record.Chart) { merge(t, b, a); merge(t, a, b) }},
}

// haemoglobin records Hb 9.1 g/dL (reference 12–16, critical below 7).
func haemoglobin(t *testing.T, c *record.Chart) string {
	t.Helper()
	return do(t, c, labTech, t0, record.RecordLabResult{Test: "Haemoglobin", LOINC: "718-7", Value: record.Ptr(9.1), Unit: "g/dL",
		RefLow: record.Ptr(12.0), RefHigh: record.Ptr(16.0), CriticalLow: record.Ptr(7.0), SpecimenAt: t0})
}

// correctTo returns a correction of lab to value.
func correctTo(lab string, value float64) record.Op {
	return record.CorrectLabResult{LabResultID: lab, Value: record.Ptr(value), Reason: fmt.Sprintf("re-run: %g", value)}
}

// A critical value that loses a conflict to a later, non-critical one is
// still alerted on, saying it is in a conflict, until someone settles
// the conflict: every replica, whatever order it merged in.
func TestCriticalValueInConflictRaisesAlert(t *testing.T) {
	for _, order := range mergeOrders {
		t.Run(order.name, func(t *testing.T) {
			base := newChart(t)
			lab := haemoglobin(t, base)
			rs := replicas(t, base, 2)
			do(t, rs[0], labTech, t0.Add(time.Hour), correctTo(lab, 6.0))
			do(t, rs[1], labTech, t0.Add(2*time.Hour), correctTo(lab, 10.5))
			crit := alertsOf(view(t, rs[0]), record.AlertCriticalLab)
			require.Len(t, crit, 1, "the device that corrected to 6.0 alerts")
			assert.False(t, crit[0].InConflict, "6.0 is the only value that device knows")

			order.merge(t, rs[0], rs[1])
			v := converged(t, rs...)
			l, ok := findLab(v, lab)
			require.True(t, ok)
			require.Equal(t, 10.5, *l.Value, "the later correction is shown")
			require.Equal(t, record.InterpretationLow, l.Interpretation)
			_, ok = findConflict(v, lab, "value")
			require.True(t, ok, "the two corrections are a conflict")

			crit = alertsOf(v, record.AlertCriticalLab)
			require.Len(t, crit, 1, "the critical value hidden in the conflict raises an alert: %+v", v.Alerts)
			a := crit[0]
			assert.Equal(t, []string{lab}, a.Entries)
			assert.Equal(t, "high", a.Severity)
			assert.True(t, a.InConflict, "the alert says it comes from a conflict")
			assert.Contains(t, a.Message, "6 g/dL", "the alert names the critical value")
			assert.Contains(t, a.Message, "10.5 g/dL", "the alert names the value shown")
			assert.Contains(t, a.Message, "conflict")
			assert.Contains(t, a.Message, labTech.Name, "the alert says who wrote the critical value")
		})
	}
}

// Settling the conflict ends the alert, or keeps it (no longer in a
// conflict) when the critical value is the one kept; a correction made
// having seen both values settles it too.
func TestCriticalValueAlertUntilConflictSettled(t *testing.T) {
	cases := []struct {
		name     string
		settle   func(lab string) record.Op
		critical bool
	}{
		{"kept the normal value", func(lab string) record.Op {
			return record.ResolveConflict{EntryID: lab, Field: "value", Value: "10.5"}
		}, false},
		{"kept the critical value", func(lab string) record.Op {
			return record.ResolveConflict{EntryID: lab, Field: "value", Value: "6"}
		}, true},
		{"corrected again having seen both", func(lab string) record.Op { return correctTo(lab, 10.2) }, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			base := newChart(t)
			lab := haemoglobin(t, base)
			rs := replicas(t, base, 2)
			do(t, rs[0], labTech, t0.Add(time.Hour), correctTo(lab, 6.0))
			do(t, rs[1], labTech, t0.Add(2*time.Hour), correctTo(lab, 10.5))
			mergeAll(t, rs...)
			require.Len(t, alertsOf(converged(t, rs...), record.AlertCriticalLab), 1)

			do(t, rs[1], labTech, t0.Add(3*time.Hour), tc.settle(lab))
			mergeAll(t, rs...)
			v := converged(t, rs...)
			_, ok := findConflict(v, lab, "value")
			require.False(t, ok, "the conflict is settled")
			crit := alertsOf(v, record.AlertCriticalLab)
			if !tc.critical {
				assert.Empty(t, crit, "a settled conflict leaves no critical value")
				return
			}
			require.Len(t, crit, 1)
			assert.False(t, crit[0].InConflict, "the critical value is the settled one")
		})
	}
}

// Every competing value counts, whichever is shown: one alert for a
// result however many of its values are critical, and none when no
// value is.
func TestCriticalLabAlertOverCompetingValues(t *testing.T) {
	cases := []struct {
		name string
		// values are written on two devices, the second an hour later
		// (and shown): a number, or a text value.
		values     [2]any
		alert      bool
		inConflict bool
	}{
		{"critical hidden", [2]any{6.0, 10.5}, true, true},
		{"critical shown, normal hidden", [2]any{10.5, 6.0}, true, false},
		{"both critical", [2]any{6.0, 5.5}, true, false},
		{"neither critical", [2]any{10.5, 11.0}, false, false},
		{"critical hidden behind a text value", [2]any{6.0, "clotted: repeat"}, true, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, order := range mergeOrders {
				base := newChart(t)
				lab := haemoglobin(t, base)
				rs := replicas(t, base, 2)
				for i, x := range tc.values {
					var op record.Op
					switch x := x.(type) {
					case float64:
						op = correctTo(lab, x)
					case string:
						op = record.CorrectLabResult{LabResultID: lab, TextValue: x, Reason: "specimen"}
					}
					do(t, rs[i], labTech, t0.Add(time.Duration(i+1)*time.Hour), op)
				}
				order.merge(t, rs[0], rs[1])
				v := converged(t, rs...)
				crit := alertsOf(v, record.AlertCriticalLab)
				if !tc.alert {
					assert.Empty(t, crit, "%s: no value is critical", order.name)
					continue
				}
				require.Len(t, crit, 1, "%s: one alert for the result: %+v", order.name, v.Alerts)
				assert.Equal(t, tc.inConflict, crit[0].InConflict, "%s: %s", order.name, crit[0].Message)
			}
		})
	}
}

// prescribe prescribes drug on c, by the doctor.
func prescribe(t *testing.T, c *record.Chart, at time.Time, drug string) string {
	t.Helper()
	return do(t, c, doctor, at, record.Prescribe{Drug: drug, Dose: 500, DoseUnit: "mg", Route: "oral", Frequency: "TDS"})
}

// Duplicate therapy is the same substance whatever the spelling, case,
// accents, strength, dose form or salt, or the same drug class as the
// allergy check knows it; a pair of different substances of no shared
// class raises nothing.
func TestDuplicateTherapyMatchesSubstanceAndClass(t *testing.T) {
	cases := []struct {
		a, b string
		want string // the alert kind, or "" for none
	}{
		{"Amoxicillin", "Amoxicillin 500mg caps", record.AlertDuplicateDrug},
		{"amoxicillin", "AMOXICILLIN", record.AlertDuplicateDrug},
		{"Amoxicillin 500 mg capsules", "Amoxicillin 250mg/5ml susp", record.AlertDuplicateDrug},
		{"Amoxicillin trihydrate 250 mg dispersible tablets", "amoxicillin", record.AlertDuplicateDrug},
		{"Paracétamol", "Paracetamol 500 mg tab", record.AlertDuplicateDrug},
		{"Metformin hydrochloride 500mg tablets", "Metformin", record.AlertDuplicateDrug},
		{"Diclofenac sodium 50 mg", "Diclofenac potassium", record.AlertDuplicateDrug},
		{"Co-amoxiclav", "Augmentin 625mg", record.AlertDuplicateDrug},
		{"Co-trimoxazole 960 mg", "Septrin DS tablet", record.AlertDuplicateDrug},
		{"cotrimoxazole", "Co trimoxazole syrup", record.AlertDuplicateDrug},
		{"Artemether/Lumefantrine 20/120", "Coartem", record.AlertDuplicateDrug},
		{"Cephalexin", "Cefalexin 250mg caps", record.AlertDuplicateDrug},
		{"Amoxicillin", "Ampicillin", record.AlertDuplicateClass},
		{"Amoxicillin", "Co-amoxiclav", record.AlertDuplicateClass},
		{"Penicillin V", "Benzathine benzylpenicillin inj", record.AlertDuplicateClass},
		{"Ibuprofen 400mg", "Aspirin 75 mg", record.AlertDuplicateClass},
		{"Ceftriaxone 1g injection", "Cefalexin", record.AlertDuplicateClass},
		{"Artesunate", "Coartem", record.AlertDuplicateClass},
		{"Paracetamol", "Metformin", ""},
		{"Amoxicillin", "Paracetamol", ""},
		{"Sodium chloride 0.9%", "Potassium chloride", ""},
		{"Ferrous sulfate", "Co-trimoxazole", ""},
		{"Vitamin B12", "Vitamin D3", ""},
		{"Quinine", "Artesunate", ""},
	}
	for _, tc := range cases {
		t.Run(tc.a+" and "+tc.b, func(t *testing.T) {
			for _, order := range mergeOrders {
				rs := replicas(t, newChart(t), 2)
				idA := prescribe(t, rs[0], t0.Add(time.Hour), tc.a)
				idB := prescribe(t, rs[1], t0.Add(time.Hour), tc.b)
				order.merge(t, rs[0], rs[1])
				v := converged(t, rs...)
				if tc.want == "" {
					assert.Empty(t, v.Alerts, "%s: %s and %s are not duplicate therapy", order.name, tc.a, tc.b)
					continue
				}
				require.Len(t, v.Alerts, 1, "%s: alerts: %+v", order.name, v.Alerts)
				a := v.Alerts[0]
				assert.Equal(t, tc.want, a.Kind, "%s: %s", order.name, a.Message)
				assert.ElementsMatch(t, []string{idA, idB}, a.Entries)
				assert.False(t, a.InConflict)
				assert.Contains(t, a.Message, tc.a)
				assert.Contains(t, a.Message, tc.b)
				if tc.want == record.AlertDuplicateClass {
					assert.Equal(t, "warning", a.Severity, "the same class may be intended")
				} else {
					assert.Equal(t, "high", a.Severity)
				}
			}
		})
	}
}

// A class alert adds what the duplicate-drug alerts do not already say:
// two prescriptions of one substance raise one duplicate-drug alert and
// no class alert; a third drug of the class raises a class alert naming
// all three. Stopped and on-hold prescriptions are not duplicates.
func TestDuplicateClassAddsToDuplicateDrug(t *testing.T) {
	c := newChart(t)
	a1 := prescribe(t, c, t0, "Amoxicillin")
	a2 := prescribe(t, c, t0.Add(time.Minute), "Amoxicillin 500mg caps")
	v := view(t, c)
	require.Len(t, v.Alerts, 1, "alerts: %+v", v.Alerts)
	assert.Equal(t, record.AlertDuplicateDrug, v.Alerts[0].Kind)

	amp := prescribe(t, c, t0.Add(2*time.Minute), "Ampicillin")
	v = view(t, c)
	require.Len(t, alertsOf(v, record.AlertDuplicateDrug), 1)
	assert.ElementsMatch(t, []string{a1, a2}, alertsOf(v, record.AlertDuplicateDrug)[0].Entries)
	class := alertsOf(v, record.AlertDuplicateClass)
	require.Len(t, class, 1)
	assert.ElementsMatch(t, []string{a1, a2, amp}, class[0].Entries)
	assert.Contains(t, class[0].Message, "penicillin")

	do(t, c, doctor, t0.Add(3*time.Minute), record.Discontinue{PrescriptionID: a2, Reason: "duplicate order"})
	do(t, c, doctor, t0.Add(4*time.Minute), record.PutOnHold{PrescriptionID: amp, Reason: "vomiting"})
	assert.Empty(t, view(t, c).Alerts, "one active penicillin is not duplicate therapy")
}

// putField applies to c a change writing value to a field of entry, as
// a peer may (no operation of this package changes a drug's name or an
// allergy's substance, but a peer's change writing one is well formed
// and accepted), superseding the values c holds.
func putField(t *testing.T, c *record.Chart, by record.Author, at time.Time, kind, entry, field, value string) {
	t.Helper()
	w := writeBy(by, kind, entry, field, value, writeIDs(t, c, entry, field)...)
	w.At = at.UnixMilli()
	ch := craft(t, c, messageBy(by, "resolve-conflict"), putWrites(w))
	_, err := checkBoth(t, c.Doc(), ch)
	require.NoError(t, err, "a peer's change writing %s is accepted", field)
	_, err = c.Doc().Apply(ch)
	require.NoError(t, err)
}

// Allergy and duplicate-drug alerts count every competing value of a
// drug's name or an allergy's substance, as the critical-lab alert does
// a result's: a competing value that would trigger one raises it, in a
// conflict, until the conflict is settled.
func TestAllergyAndDuplicateAlertsOverCompetingValues(t *testing.T) {
	type scenario struct {
		name string
		// setup records the entries on base and returns the entry and
		// field two devices then write concurrently, and the values
		// they write (the second is written later, and shown).
		setup  func(t *testing.T, base *record.Chart) (kind, entry, field string, values [2]string)
		kind   string
		settle string // the value kept to settle the conflict, which ends the alert
	}
	scenarios := []scenario{
		{"competing drug of an allergy", func(t *testing.T, base *record.Chart) (string, string, string, [2]string) {
			do(t, base, nurse, t0, record.AddAllergy{Substance: "Penicillin", Severity: "severe"})
			rx := prescribe(t, base, t0, "Paracetamol")
			return record.KindPrescription, rx, "drug", [2]string{"Amoxicillin", "Paracetamol 1g"}
		}, record.AlertAllergyDrug, "Paracetamol 1g"},
		{"competing substance of an allergy", func(t *testing.T, base *record.Chart) (string, string, string, [2]string) {
			a := do(t, base, nurse, t0, record.AddAllergy{Substance: "Peanuts", Severity: "severe"})
			prescribe(t, base, t0, "Co-trimoxazole")
			return record.KindAllergy, a, "substance", [2]string{"Sulfa drugs", "Peanut butter"}
		}, record.AlertAllergyDrug, "Peanut butter"},
		{"competing drug of a duplicate", func(t *testing.T, base *record.Chart) (string, string, string, [2]string) {
			prescribe(t, base, t0, "Amoxicillin")
			rx := prescribe(t, base, t0, "Paracetamol")
			return record.KindPrescription, rx, "drug", [2]string{"Amoxicillin 250mg caps", "Paracetamol"}
		}, record.AlertDuplicateDrug, "Paracetamol"},
		{"competing drug code of a duplicate", func(t *testing.T, base *record.Chart) (string, string, string, [2]string) {
			do(t, base, doctor, t0, record.Prescribe{Drug: "Amoxil", DrugCode: "J01CA04", Dose: 500, DoseUnit: "mg", Route: "oral", Frequency: "TDS"})
			rx := do(t, base, doctor, t0, record.Prescribe{Drug: "Flagyl", DrugCode: "P01AB01", Dose: 400, DoseUnit: "mg", Route: "oral", Frequency: "TDS"})
			return record.KindPrescription, rx, "drug_code", [2]string{"J01CA04", "J01XD01"}
		}, record.AlertDuplicateDrug, "J01XD01"},
		{"competing drug of a duplicate class", func(t *testing.T, base *record.Chart) (string, string, string, [2]string) {
			prescribe(t, base, t0, "Amoxicillin")
			rx := prescribe(t, base, t0, "Paracetamol")
			return record.KindPrescription, rx, "drug", [2]string{"Flucloxacillin", "Paracetamol"}
		}, record.AlertDuplicateClass, "Paracetamol"},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			for _, order := range mergeOrders {
				base := newChart(t)
				kind, entry, field, values := sc.setup(t, base)
				require.Empty(t, view(t, base).Alerts, "nothing to alert before the conflict")
				rs := replicas(t, base, 2)
				putField(t, rs[0], doctor, t0.Add(time.Hour), kind, entry, field, values[0])
				putField(t, rs[1], doctor, t0.Add(2*time.Hour), kind, entry, field, values[1])
				order.merge(t, rs[0], rs[1])
				v := converged(t, rs...)
				_, ok := findConflict(v, entry, field)
				require.True(t, ok, "%s: the two values are a conflict", order.name)
				got := alertsOf(v, sc.kind)
				require.Len(t, got, 1, "%s: the competing %q raises an alert: %+v", order.name, values[0], v.Alerts)
				assert.Len(t, v.Alerts, 1, "%s: only that alert: %+v", order.name, v.Alerts)
				assert.True(t, got[0].InConflict, "%s: %s", order.name, got[0].Message)
				assert.Contains(t, got[0].Entries, entry)
				assert.Contains(t, got[0].Message, values[0], "the alert names the competing value")
				assert.Contains(t, got[0].Message, "conflict")

				do(t, rs[0], doctor, t0.Add(3*time.Hour), record.ResolveConflict{EntryID: entry, Field: field, Value: sc.settle})
				merge(t, rs[1], rs[0])
				assert.Empty(t, converged(t, rs...).Alerts, "%s: the settled conflict leaves nothing to alert", order.name)
			}
		})
	}
}

// A drug's substance does not depend on the case of its name, nor on a
// strength and dose form written after it.
func TestSubstanceIgnoresStrengthFormAndCase(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		words := rapid.SliceOfN(rapid.StringMatching(`[a-z]{1,12}`), 1, 4).Draw(t, "words")
		name := strings.Join(words, " ")
		sub := record.Substance(name)
		suffix := rapid.SampledFrom([]string{" 500mg caps", " 250 mg/5 ml susp", " 1 g injection", " 100mg tablets", " 0.5%"}).Draw(t, "suffix")
		require.Equal(t, sub, record.Substance(strings.ToUpper(name)+suffix), "%q and %q", name, strings.ToUpper(name)+suffix)
		require.Equal(t, sub, record.Substance(" "+name+" "), "spaces around %q", name)
		record.Substance(rapid.String().Draw(t, "any name")) // whatever a peer wrote: no panic
	})
}
