package record_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/record"
)

// A text result is interpreted only by a rule it states: its text equals
// a text listed as critical or abnormal, or its text reference range; any
// other text is left uninterpreted. Numeric results keep their ranges.
func TestLabTextResultInterpretation(t *testing.T) {
	cases := []struct {
		name   string
		lab    record.RecordLabResult
		interp string
		alert  bool
	}{
		{"viral load below the range", record.RecordLabResult{Test: "HIV-1 viral load", LOINC: "20447-9",
			TextValue: "<1000 copies/mL", RefText: "<1000 copies/mL"}, record.InterpretationNormal, false},
		{"positive listed abnormal", record.RecordLabResult{Test: "Malaria RDT", TextValue: "positive", RefText: "negative",
			AbnormalTexts: []string{"positive"}}, record.InterpretationAbnormal, false},
		{"case and spaces do not count", record.RecordLabResult{Test: "Malaria RDT", TextValue: "  Positive ", RefText: "negative",
			AbnormalTexts: []string{"POSITIVE"}}, record.InterpretationAbnormal, false},
		{"negative is the range", record.RecordLabResult{Test: "Malaria RDT", TextValue: "Negative", RefText: "negative",
			AbnormalTexts: []string{"positive"}}, record.InterpretationNormal, false},
		{"listed critical", record.RecordLabResult{Test: "CSF cryptococcal antigen", TextValue: "positive", RefText: "negative",
			CriticalTexts: []string{"positive"}}, record.InterpretationCritical, true},
		{"no rule for the text", record.RecordLabResult{Test: "Malaria RDT", TextValue: "invalid test", RefText: "negative",
			AbnormalTexts: []string{"positive"}}, "", false},
		{"no range at all", record.RecordLabResult{Test: "Urine dipstick", TextValue: "protein ++"}, "", false},
		{"numeric still numeric", record.RecordLabResult{Test: "Haemoglobin", LOINC: "718-7", Value: record.Ptr(6.5), Unit: "g/dL",
			RefLow: record.Ptr(12.0), CriticalLow: record.Ptr(7.0), RefText: "12-16 g/dL"}, record.InterpretationCritical, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newChart(t)
			tc.lab.SpecimenAt = t0
			id := do(t, c, labTech, t0, tc.lab)
			v := view(t, c)
			l, ok := findLab(v, id)
			require.True(t, ok)
			assert.Equal(t, tc.interp, l.Interpretation)
			assert.Equal(t, tc.lab.RefText, l.RefText)
			assert.Equal(t, tc.alert, len(alertsOf(v, record.AlertCriticalLab)) == 1, "critical-lab alert: %+v", v.Alerts)
		})
	}
}

// A text result corrected on two devices to competing texts, one of them
// critical, raises the critical alert in conflict, whichever is shown,
// in both merge orders.
func TestCriticalTextInConflictRaisesAlert(t *testing.T) {
	for _, order := range mergeOrders {
		base := newChart(t)
		id := do(t, base, labTech, t0, record.RecordLabResult{Test: "Blood culture", TextValue: "pending", RefText: "no growth",
			CriticalTexts: []string{"growth of gram-negative rods"}, SpecimenAt: t0, Status: record.StatusPreliminary})
		rs := replicas(t, base, 2)
		do(t, rs[0], labTech, t0.Add(time.Hour), record.CorrectLabResult{LabResultID: id, TextValue: "growth of Gram-negative rods", Reason: "read at 24 h"})
		do(t, rs[1], labTech, t0.Add(2*time.Hour), record.CorrectLabResult{LabResultID: id, TextValue: "no growth", Reason: "read at 48 h"})
		order.merge(t, rs[0], rs[1])
		v := converged(t, rs...)
		l, _ := findLab(v, id)
		assert.Equal(t, "no growth", l.TextValue)
		assert.Equal(t, record.InterpretationNormal, l.Interpretation)
		crit := alertsOf(v, record.AlertCriticalLab)
		require.Len(t, crit, 1, "%s: %+v", order.name, v.Alerts)
		assert.True(t, crit[0].InConflict)
		assert.Contains(t, crit[0].Message, "growth of Gram-negative rods")
	}
}

// Text rules that contradict each other, or apply to a numeric value,
// are refused; a LOINC code must carry its right check digit.
func TestLabTextRulesAndLOINCAreChecked(t *testing.T) {
	lab := func(f func(l *record.RecordLabResult)) record.RecordLabResult {
		l := record.RecordLabResult{Test: "Malaria RDT", TextValue: "positive", SpecimenAt: t0}
		f(&l)
		return l
	}
	for _, tc := range []struct {
		name  string
		op    record.RecordLabResult
		field string
	}{
		{"range listed abnormal", lab(func(l *record.RecordLabResult) { l.RefText = "negative"; l.AbnormalTexts = []string{"Negative"} }), "abnormal_text"},
		{"abnormal and critical", lab(func(l *record.RecordLabResult) {
			l.AbnormalTexts = []string{"positive"}
			l.CriticalTexts = []string{"positive"}
		}), "critical_text"},
		{"text rule for a number", record.RecordLabResult{Test: "Hb", Value: record.Ptr(9.0), Unit: "g/dL", AbnormalTexts: []string{"low"}, SpecimenAt: t0}, "abnormal_text"},
		{"empty text listed", lab(func(l *record.RecordLabResult) { l.AbnormalTexts = []string{" "} }), "abnormal_text"},
		{"LOINC check digit wrong", lab(func(l *record.RecordLabResult) { l.LOINC = "718-8" }), "loinc"},
		{"LOINC check digit wrong (2)", lab(func(l *record.RecordLabResult) { l.LOINC = "2345-1" }), "loinc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newChart(t)
			err := unchanged(t, c, func() error { _, err := c.Do(labTech, t0, tc.op); return err })
			require.ErrorIs(t, err, record.ErrInvalid)
			var ve *record.ValidationError
			require.ErrorAs(t, err, &ve)
			assert.Equal(t, tc.field, ve.Field, "%v", err)
		})
	}
	for _, code := range []string{"718-7", "2345-7", "2160-0", "6690-2", "4548-4", "20447-9", "94500-6"} {
		assert.True(t, record.ValidLOINC(code), code)
		c := newChart(t)
		do(t, c, labTech, t0, lab(func(l *record.RecordLabResult) { l.LOINC = code }))
	}
	for _, code := range []string{"718-8", "2345-1", "718", "7187", "-7", "718-77", "12345678-9"} {
		assert.False(t, record.ValidLOINC(code), code)
	}

	// A received write of a LOINC code with a wrong check digit is refused.
	base := newChart(t)
	id := do(t, base, labTech, t0, lab(func(l *record.RecordLabResult) {}))
	for code, ok := range map[string]bool{"718-7": true, "718-8": false} {
		c := fork(t, base)
		ch := craft(t, c, messageBy(labTech, "resolve-conflict"), putWrites(writeBy(labTech, record.KindLabResult, id, "loinc", code)))
		_, err := checkBoth(t, c.Doc(), ch)
		if ok {
			require.NoError(t, err, code)
		} else {
			require.ErrorIs(t, err, record.ErrInvalid, code)
		}
	}
}
