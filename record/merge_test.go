package record_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/record"
)

// replicas forks n copies of base, as n devices that each synced it.
func replicas(t *testing.T, base *record.Chart, n int) []*record.Chart {
	t.Helper()
	out := make([]*record.Chart, n)
	for i := range out {
		out[i] = fork(t, base)
	}
	return out
}

// Rule 1: concurrent additions are all kept.
func TestMergeKeepsConcurrentAdditions(t *testing.T) {
	adds := []struct {
		kind string
		add  func(c *record.Chart, by record.Author, at time.Time) (record.Result, error)
		ids  func(v record.View) []string
	}{
		{record.KindAllergy, func(c *record.Chart, by record.Author, at time.Time) (record.Result, error) {
			return c.Do(by, at, record.AddAllergy{Substance: "Penicillin", Severity: "severe"})
		}, func(v record.View) (ids []string) {
			for _, a := range v.Allergies {
				ids = append(ids, a.ID)
			}
			return ids
		}},
		{record.KindDiagnosis, func(c *record.Chart, by record.Author, at time.Time) (record.Result, error) {
			return c.Do(by, at, record.Diagnose{Code: "B54", Text: "Malaria"})
		}, func(v record.View) (ids []string) {
			for _, d := range v.Diagnoses {
				ids = append(ids, d.ID)
			}
			return ids
		}},
		{record.KindPrescription, func(c *record.Chart, by record.Author, at time.Time) (record.Result, error) {
			return c.Do(by, at, record.Prescribe{Drug: "Amoxicillin", Dose: 500, DoseUnit: "mg", Route: "oral", Frequency: "TDS"})
		}, func(v record.View) (ids []string) {
			for _, p := range v.Prescriptions {
				ids = append(ids, p.ID)
			}
			return ids
		}},
		{record.KindLabResult, func(c *record.Chart, by record.Author, at time.Time) (record.Result, error) {
			return c.Do(by, at, record.RecordLabResult{Test: "Malaria RDT", TextValue: "positive", SpecimenAt: t0})
		}, func(v record.View) (ids []string) {
			for _, l := range v.LabResults {
				ids = append(ids, l.ID)
			}
			return ids
		}},
		{record.KindEncounter, func(c *record.Chart, by record.Author, at time.Time) (record.Result, error) {
			return c.Do(by, at, record.AddEncounter{Complaint: "fever", Note: "seen at home"})
		}, func(v record.View) (ids []string) {
			for _, e := range v.Encounters {
				ids = append(ids, e.ID)
			}
			return ids
		}},
	}
	sectionOf := map[string]record.Section{
		record.KindAllergy: record.SectionAllergies, record.KindDiagnosis: record.SectionDiagnoses,
		record.KindPrescription: record.SectionPrescriptions, record.KindLabResult: record.SectionLabResults,
		record.KindEncounter: record.SectionEncounters,
	}
	for _, a := range adds {
		t.Run(a.kind, func(t *testing.T) {
			authors := staffIn(t, sectionOf[a.kind], 3)
			base := newChart(t)
			baseRes, err := a.add(base, authors[0], t0.Add(time.Minute))
			require.NoError(t, err)
			rs := replicas(t, base, 3)
			want := []string{baseRes.EntryID}
			for i, r := range rs {
				// Every device records the same thing at the same time:
				// still distinct entries.
				res, err := a.add(r, authors[i], t0.Add(time.Hour))
				require.NoError(t, err)
				want = append(want, res.EntryID)
			}
			mergeAll(t, rs...)
			v := converged(t, rs...)
			assert.ElementsMatch(t, want, a.ids(v), "every concurrently recorded %s is kept", a.kind)
			assert.Empty(t, v.Conflicts, "additions are not conflicts")
		})
	}
}

// Rule 2: concurrent edits to different fields of one entry both apply.
func TestMergeDifferentFieldsBothApply(t *testing.T) {
	cases := []struct {
		name  string
		setup func(t *testing.T, c *record.Chart) string
		a, b  func(id string) record.Op
		check func(t *testing.T, v record.View, id string)
	}{
		{"prescription dose and frequency",
			func(t *testing.T, c *record.Chart) string {
				return do(t, c, doctor, t0, record.Prescribe{Drug: "Amoxicillin", Dose: 500, DoseUnit: "mg", Route: "oral", Frequency: "TDS"})
			},
			func(id string) record.Op { return record.ReviseDose{PrescriptionID: id, Dose: 250} },
			func(id string) record.Op { return record.ReviseDose{PrescriptionID: id, Dose: 500, Frequency: "BD"} },
			func(t *testing.T, v record.View, id string) {
				p, ok := findRx(v, id)
				require.True(t, ok)
				assert.Equal(t, 250.0, p.Dose)
				assert.Equal(t, "BD", p.Frequency)
				assert.Equal(t, "mg", p.DoseUnit)
			}},
		{"allergy reaction and severity",
			func(t *testing.T, c *record.Chart) string {
				return do(t, c, nurse, t0, record.AddAllergy{Substance: "Sulfa", Reaction: "rash", Severity: "mild"})
			},
			func(id string) record.Op {
				return record.UpdateAllergy{AllergyID: id, Reaction: record.Ptr("swollen lips")}
			},
			func(id string) record.Op { return record.UpdateAllergy{AllergyID: id, Severity: record.Ptr("severe")} },
			func(t *testing.T, v record.View, id string) {
				a, ok := findAllergy(v, id)
				require.True(t, ok)
				assert.Equal(t, "swollen lips", a.Reaction)
				assert.Equal(t, "severe", a.Severity)
			}},
		{"demographics village and phone",
			func(t *testing.T, c *record.Chart) string { return c.ID() },
			func(string) record.Op { return record.UpdateDemographics{Village: record.Ptr("Gatundu")} },
			func(string) record.Op { return record.UpdateDemographics{Phone: record.Ptr("+254 700 000111")} },
			func(t *testing.T, v record.View, id string) {
				assert.Equal(t, "Gatundu", v.Patient.Village)
				assert.Equal(t, "+254 700 000111", v.Patient.Phone)
				assert.Equal(t, "Wanjiru", v.Patient.GivenName)
			}},
		{"diagnosis clinical and verification status",
			func(t *testing.T, c *record.Chart) string {
				return do(t, c, doctor, t0, record.Diagnose{Text: "Tuberculosis", Code: "A15.0"})
			},
			func(id string) record.Op {
				return record.ChangeDiagnosisStatus{DiagnosisID: id, ClinicalStatus: "remission"}
			},
			func(id string) record.Op {
				return record.ChangeDiagnosisStatus{DiagnosisID: id, VerificationStatus: "confirmed"}
			},
			func(t *testing.T, v record.View, id string) {
				d, ok := findDiagnosis(v, id)
				require.True(t, ok)
				assert.Equal(t, "remission", d.ClinicalStatus)
				assert.Equal(t, "confirmed", d.VerificationStatus)
			}},
	}
	for _, tc := range cases {
		for _, swap := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/swapped=%v", tc.name, swap), func(t *testing.T) {
				base := newChart(t)
				id := tc.setup(t, base)
				rs := replicas(t, base, 2)
				ta, tb := t0.Add(time.Hour), t0.Add(2*time.Hour)
				if swap {
					ta, tb = tb, ta
				}
				do(t, rs[0], as(t, rs[0], nurse, tc.a(id)), ta, tc.a(id))
				do(t, rs[1], as(t, rs[1], doctor, tc.b(id)), tb, tc.b(id))
				mergeAll(t, rs...)
				v := converged(t, rs...)
				tc.check(t, v, id)
				assert.Empty(t, v.Conflicts, "edits of different fields do not conflict")
			})
		}
	}
}

// fieldCase is a field that three devices set to different values.
type fieldCase struct {
	name   string
	field  string
	setup  func(t *testing.T, c *record.Chart) string
	write  func(id, v string) record.Op
	read   func(t *testing.T, v record.View, id string) string
	values [3]string
	later  string // a value written after the conflict
}

func fieldCases() []fieldCase {
	prescribe := func(t *testing.T, c *record.Chart) string {
		return do(t, c, doctor, t0, record.Prescribe{Drug: "Amoxicillin", Dose: 500, DoseUnit: "mg", Route: "oral", Frequency: "TDS"})
	}
	readRx := func(get func(p record.Prescription) string) func(t *testing.T, v record.View, id string) string {
		return func(t *testing.T, v record.View, id string) string {
			p, ok := findRx(v, id)
			require.True(t, ok)
			return get(p)
		}
	}
	patient := func(t *testing.T, c *record.Chart) string { return c.ID() }
	return []fieldCase{
		{"prescription dose", "dose", prescribe,
			func(id, v string) record.Op {
				d, _ := strconv.ParseFloat(v, 64)
				return record.ReviseDose{PrescriptionID: id, Dose: d}
			},
			readRx(func(p record.Prescription) string { return strconv.FormatFloat(p.Dose, 'g', -1, 64) }),
			[3]string{"250", "750", "1000"}, "125"},
		{"prescription frequency", "frequency", prescribe,
			func(id, v string) record.Op { return record.ReviseDose{PrescriptionID: id, Dose: 500, Frequency: v} },
			readRx(func(p record.Prescription) string { return p.Frequency }),
			[3]string{"BD", "QID", "OD"}, "Q8H"},
		{"allergy severity", "severity",
			func(t *testing.T, c *record.Chart) string {
				return do(t, c, nurse, t0, record.AddAllergy{Substance: "Penicillin", Severity: "moderate"})
			},
			func(id, v string) record.Op { return record.UpdateAllergy{AllergyID: id, Severity: record.Ptr(v)} },
			func(t *testing.T, v record.View, id string) string {
				a, ok := findAllergy(v, id)
				require.True(t, ok)
				return a.Severity
			},
			[3]string{"mild", "severe", "life-threatening"}, "moderate"},
		{"patient village", "village", patient,
			func(id, v string) record.Op { return record.UpdateDemographics{Village: record.Ptr(v)} },
			func(t *testing.T, v record.View, id string) string { return v.Patient.Village },
			[3]string{"Kamuga North", "Kamuga South", "Gatundu"}, "Kamuga"},
		{"patient phone", "phone", patient,
			func(id, v string) record.Op { return record.UpdateDemographics{Phone: record.Ptr(v)} },
			func(t *testing.T, v record.View, id string) string { return v.Patient.Phone },
			[3]string{"+254 700 000001", "+254 700 000002", "0700 000003"}, "+254 712 345678"},
	}
}

// Rule 3: concurrent different values for one field converge, and the
// conflict names every value until a write that saw them all.
func TestMergeSameFieldConflict(t *testing.T) {
	timings := []struct {
		name  string
		times [3]time.Time
	}{
		{"last writer on the first device", [3]time.Time{t0.Add(3 * time.Hour), t0.Add(time.Hour), t0.Add(2 * time.Hour)}},
		{"last writer on the last device", [3]time.Time{t0.Add(time.Hour), t0.Add(2 * time.Hour), t0.Add(3 * time.Hour)}},
		{"same time everywhere", [3]time.Time{t0.Add(time.Hour), t0.Add(time.Hour), t0.Add(time.Hour)}},
	}
	for _, fc := range fieldCases() {
		for _, tm := range timings {
			t.Run(fc.name+"/"+tm.name, func(t *testing.T) {
				base := newChart(t)
				id := fc.setup(t, base)
				authors := staffFor(t, base, fc.write(id, fc.values[0]), 3)
				rs := replicas(t, base, 3)
				for i, r := range rs {
					do(t, r, authors[i], tm.times[i], fc.write(id, fc.values[i]))
				}
				mergeAll(t, rs...)
				v := converged(t, rs...)

				c, ok := findConflict(v, id, fc.field)
				require.True(t, ok, "concurrent values of %s are not reported as a conflict", fc.field)
				require.Len(t, v.Conflicts, 1, "only %s is in conflict: %+v", fc.field, v.Conflicts)
				assert.False(t, c.Automatic, "%s is not resolved by precedence", fc.field)
				assert.NotEmpty(t, c.Entry, "the conflict names the entry for a person")
				type vw struct {
					Value string
					By    record.Author
					At    time.Time
				}
				var got, want []vw
				for i := range rs {
					want = append(want, vw{fc.values[i], authors[i], tm.times[i]})
				}
				for _, w := range c.Values {
					got = append(got, vw{w.Value, w.By, w.At})
					assert.NotEmpty(t, w.WriteID)
				}
				assert.ElementsMatch(t, want, got, "the conflict lists every competing value with author and time")

				// Shown is the latest write, ties broken by write ID.
				latest := c.Values[0]
				for _, w := range c.Values[1:] {
					if w.At.After(latest.At) || (w.At.Equal(latest.At) && w.WriteID > latest.WriteID) {
						latest = w
					}
				}
				assert.Equal(t, latest.Value, c.Shown, "the shown value is not the latest write")
				assert.Equal(t, c.Shown, fc.read(t, v, id), "the chart shows another value than the conflict says")
			})
		}
	}
}

// TestMergeConflictSettledByWriteThatSawAll checks the ways a conflict
// ends: ResolveConflict or any edit of the field by someone who has seen
// every competing value, whatever that device's clock says; a write that
// saw only some of them leaves the conflict open.
func TestMergeConflictSettledByWriteThatSawAll(t *testing.T) {
	for _, fc := range fieldCases() {
		setup := func(t *testing.T) ([]*record.Chart, string) {
			base := newChart(t)
			id := fc.setup(t, base)
			authors := staffFor(t, base, fc.write(id, fc.values[0]), 3)
			rs := replicas(t, base, 3)
			for i, r := range rs {
				do(t, r, authors[i], t0.Add(time.Duration(i+1)*time.Hour), fc.write(id, fc.values[i]))
			}
			return rs, id
		}
		t.Run(fc.name+"/ResolveConflict with a slow clock", func(t *testing.T) {
			rs, id := setup(t)
			mergeAll(t, rs...)
			// Keep the earliest value, on a device whose clock is behind
			// every competing write.
			do(t, rs[2], doctor, t0.Add(time.Minute), record.ResolveConflict{EntryID: id, Field: fc.field, Value: fc.values[0]})
			mergeAll(t, rs...)
			v := converged(t, rs...)
			assert.Empty(t, v.Conflicts)
			assert.Equal(t, fc.values[0], fc.read(t, v, id))
		})
		t.Run(fc.name+"/ordinary edit", func(t *testing.T) {
			rs, id := setup(t)
			mergeAll(t, rs...)
			do(t, rs[1], as(t, rs[1], nurse, fc.write(id, fc.later)), t0.Add(30*time.Minute), fc.write(id, fc.later))
			mergeAll(t, rs...)
			v := converged(t, rs...)
			assert.Empty(t, v.Conflicts)
			assert.Equal(t, fc.later, fc.read(t, v, id))
		})
		t.Run(fc.name+"/edit that saw only some values", func(t *testing.T) {
			rs, id := setup(t)
			merge(t, rs[0], rs[1])
			do(t, rs[0], as(t, rs[0], nurse, fc.write(id, fc.later)), t0.Add(10*time.Hour), fc.write(id, fc.later))
			mergeAll(t, rs...)
			v := converged(t, rs...)
			c, ok := findConflict(v, id, fc.field)
			require.True(t, ok, "a write that had not seen every value settled the conflict")
			var vals []string
			for _, w := range c.Values {
				vals = append(vals, w.Value)
			}
			assert.ElementsMatch(t, []string{fc.later, fc.values[2]}, vals,
				"the edit supersedes what it saw and competes with what it did not")
			assert.Equal(t, fc.later, c.Shown, "the latest write is shown")
		})
	}
}

// statusCase is a status field and how to write each of its values on a
// device that holds the base chart.
type statusCase struct {
	name  string
	field string
	// order is the clinical precedence from the package documentation,
	// winner first.
	order []string
	setup func(t *testing.T, c *record.Chart) string
	reach func(id, status string) []record.Op
	read  func(t *testing.T, v record.View, id string) string
}

func statusCases() []statusCase {
	eie := func(id string) record.Op { return record.MarkEnteredInError{EntryID: id, Reason: "wrong patient"} }
	return []statusCase{
		{
			name: "prescription", field: "status",
			order: []string{"entered-in-error", "stopped", "completed", "on-hold", "active"},
			setup: func(t *testing.T, c *record.Chart) string {
				return do(t, c, doctor, t0, record.Prescribe{Drug: "Metformin", Dose: 500, DoseUnit: "mg", Route: "oral", Frequency: "BD"})
			},
			reach: func(id, s string) []record.Op {
				switch s {
				case "active":
					return []record.Op{record.PutOnHold{PrescriptionID: id}, record.Resume{PrescriptionID: id}}
				case "on-hold":
					return []record.Op{record.PutOnHold{PrescriptionID: id, Reason: "fasting"}}
				case "stopped":
					return []record.Op{record.Discontinue{PrescriptionID: id, Reason: "lactic acidosis risk"}}
				case "completed":
					return []record.Op{record.Complete{PrescriptionID: id}}
				}
				return []record.Op{eie(id)}
			},
			read: func(t *testing.T, v record.View, id string) string {
				if p, ok := findRx(v, id); ok {
					return p.Status
				}
				_, ok := findError(v, id)
				require.True(t, ok, "the prescription vanished")
				return "entered-in-error"
			},
		},
		{
			name: "allergy", field: "status",
			order: []string{"entered-in-error", "active", "inactive", "resolved"},
			setup: func(t *testing.T, c *record.Chart) string {
				return do(t, c, nurse, t0, record.AddAllergy{Substance: "Penicillin", Severity: "severe"})
			},
			reach: func(id, s string) []record.Op {
				switch s {
				case "active":
					return []record.Op{
						record.UpdateAllergy{AllergyID: id, Status: record.Ptr("inactive")},
						record.UpdateAllergy{AllergyID: id, Status: record.Ptr("active")},
					}
				case "inactive", "resolved":
					return []record.Op{record.UpdateAllergy{AllergyID: id, Status: record.Ptr(s)}}
				}
				return []record.Op{eie(id)}
			},
			read: func(t *testing.T, v record.View, id string) string {
				if a, ok := findAllergy(v, id); ok {
					return a.Status
				}
				_, ok := findError(v, id)
				require.True(t, ok, "the allergy vanished")
				return "entered-in-error"
			},
		},
		{
			// A preliminary status is only ever written when the result
			// is recorded, so it never competes.
			name: "lab result", field: "status",
			order: []string{"entered-in-error", "corrected", "final"},
			setup: func(t *testing.T, c *record.Chart) string {
				return do(t, c, labTech, t0, record.RecordLabResult{Test: "Glucose", Value: record.Ptr(5.5), Unit: "mmol/L",
					SpecimenAt: t0, Status: record.StatusPreliminary})
			},
			reach: func(id, s string) []record.Op {
				switch s {
				case "final":
					return []record.Op{record.FinalizeLabResult{LabResultID: id}}
				case "corrected":
					return []record.Op{record.CorrectLabResult{LabResultID: id, Value: record.Ptr(6.1), Reason: "repeat"}}
				}
				return []record.Op{eie(id)}
			},
			read: func(t *testing.T, v record.View, id string) string {
				if l, ok := findLab(v, id); ok {
					return l.Status
				}
				_, ok := findError(v, id)
				require.True(t, ok, "the lab result vanished")
				return "entered-in-error"
			},
		},
		{
			name: "diagnosis clinical status", field: "clinical",
			order: []string{"relapse", "recurrence", "active", "remission", "inactive", "resolved"},
			setup: func(t *testing.T, c *record.Chart) string {
				return do(t, c, doctor, t0, record.Diagnose{Text: "Asthma", Code: "J45.9"})
			},
			reach: func(id, s string) []record.Op {
				if s == "active" { // the base value: leave it and come back
					return []record.Op{
						record.ChangeDiagnosisStatus{DiagnosisID: id, ClinicalStatus: "inactive"},
						record.ChangeDiagnosisStatus{DiagnosisID: id, ClinicalStatus: "active"},
					}
				}
				return []record.Op{record.ChangeDiagnosisStatus{DiagnosisID: id, ClinicalStatus: s}}
			},
			read: func(t *testing.T, v record.View, id string) string {
				d, ok := findDiagnosis(v, id)
				require.True(t, ok)
				return d.ClinicalStatus
			},
		},
		{
			name: "diagnosis verification status", field: "verification",
			order: []string{"entered-in-error", "confirmed", "provisional", "differential", "unconfirmed", "refuted"},
			setup: func(t *testing.T, c *record.Chart) string {
				return do(t, c, doctor, t0, record.Diagnose{Text: "Asthma", Code: "J45.9"})
			},
			reach: func(id, s string) []record.Op {
				switch s {
				case "entered-in-error":
					return []record.Op{eie(id)}
				case "provisional": // the base value
					return []record.Op{
						record.ChangeDiagnosisStatus{DiagnosisID: id, VerificationStatus: "differential"},
						record.ChangeDiagnosisStatus{DiagnosisID: id, VerificationStatus: "provisional"},
					}
				}
				return []record.Op{record.ChangeDiagnosisStatus{DiagnosisID: id, VerificationStatus: s}}
			},
			read: func(t *testing.T, v record.View, id string) string {
				if d, ok := findDiagnosis(v, id); ok {
					return d.VerificationStatus
				}
				_, ok := findError(v, id)
				require.True(t, ok, "the diagnosis vanished")
				return "entered-in-error"
			},
		},
	}
}

// Rule 4: concurrent status changes resolve by clinical precedence,
// whichever device made which change, whatever their clocks said, and in
// whichever order the devices merged.
func TestMergeStatusPrecedence(t *testing.T) {
	for _, sc := range statusCases() {
		t.Run(sc.name, func(t *testing.T) {
			for i, winner := range sc.order {
				for _, loser := range sc.order[i+1:] {
					for _, swapDevices := range []bool{false, true} {
						for _, swapTimes := range []bool{false, true} {
							for _, order := range mergeOrders {
								name := fmt.Sprintf("%s beats %s/devices swapped=%v/times swapped=%v/%s", winner, loser, swapDevices, swapTimes, order.name)
								t.Run(name, func(t *testing.T) {
									base := newChart(t)
									id := sc.setup(t, base)
									rs := replicas(t, base, 2)
									statuses := [2]string{winner, loser}
									if swapDevices {
										statuses[0], statuses[1] = statuses[1], statuses[0]
									}
									start := [2]time.Time{t0.Add(time.Hour), t0.Add(2 * time.Hour)}
									if swapTimes {
										start[0], start[1] = start[1], start[0]
									}
									by := [2]record.Author{nurse, doctor}
									for d, r := range rs {
										for k, op := range sc.reach(id, statuses[d]) {
											do(t, r, as(t, r, by[d], op), start[d].Add(time.Duration(k)*time.Minute), op)
										}
										require.Equal(t, statuses[d], sc.read(t, view(t, r), id), "device %d did not reach %s", d, statuses[d])
									}
									order.merge(t, rs[0], rs[1])
									v := converged(t, rs...)
									assert.Equal(t, winner, sc.read(t, v, id), "%s must win over %s", winner, loser)
									c, ok := findConflict(v, id, sc.field)
									require.True(t, ok, "the competing statuses are not listed")
									assert.True(t, c.Automatic, "a status conflict is settled automatically")
									assert.Equal(t, winner, c.Shown)
									var vals []string
									for _, w := range c.Values {
										vals = append(vals, w.Value)
									}
									assert.ElementsMatch(t, []string{winner, loser}, vals)
								})
							}
						}
					}
				}
			}
		})
	}
}

// A status change made after seeing a precedence conflict supersedes it,
// even to a status of lower precedence.
func TestMergeStatusConflictSupersededByLaterChange(t *testing.T) {
	base := newChart(t)
	id := do(t, base, doctor, t0, record.Diagnose{Text: "Asthma"})
	rs := replicas(t, base, 2)
	do(t, rs[0], doctor, t0.Add(time.Hour), record.ChangeDiagnosisStatus{DiagnosisID: id, ClinicalStatus: "resolved"})
	do(t, rs[1], officer, t0.Add(time.Hour), record.ChangeDiagnosisStatus{DiagnosisID: id, ClinicalStatus: "relapse"})
	mergeAll(t, rs...)
	d, _ := findDiagnosis(converged(t, rs...), id)
	require.Equal(t, "relapse", d.ClinicalStatus)

	do(t, rs[0], doctor, t0.Add(2*time.Hour), record.ChangeDiagnosisStatus{DiagnosisID: id, ClinicalStatus: "resolved", Reason: "reviewed both"})
	mergeAll(t, rs...)
	v := converged(t, rs...)
	d, _ = findDiagnosis(v, id)
	assert.Equal(t, "resolved", d.ClinicalStatus)
	_, ok := findConflict(v, id, "clinical")
	assert.False(t, ok, "the conflict is settled")
}

// Rule 4, last bullet: an allergy recorded concurrently with "no known
// allergies" wins, and an alert asks the clinician to confirm.
func TestMergeNoKnownAllergiesAgainstAllergy(t *testing.T) {
	for _, swapTimes := range []bool{false, true} {
		t.Run(fmt.Sprintf("times swapped=%v", swapTimes), func(t *testing.T) {
			base := newChart(t)
			rs := replicas(t, base, 2)
			ta, tb := t0.Add(time.Hour), t0.Add(2*time.Hour)
			if swapTimes {
				ta, tb = tb, ta
			}
			do(t, rs[0], nurse, ta, record.RecordNoKnownAllergies{})
			allergy := do(t, rs[1], doctor, tb, record.AddAllergy{Substance: "Cotrimoxazole", Severity: "severe"})
			mergeAll(t, rs...)
			v := converged(t, rs...)
			assert.False(t, v.NoKnownAllergies, "no known allergies while an allergy is active")
			a, ok := findAllergy(v, allergy)
			require.True(t, ok)
			assert.Equal(t, record.StatusActive, a.Status)
			alerts := alertsOf(v, record.AlertAllergyStatus)
			require.Len(t, alerts, 1, "the clinician is asked to confirm")
			assert.Equal(t, []string{allergy}, alerts[0].Entries)
			assert.Equal(t, "warning", alerts[0].Severity)
			assert.Contains(t, alerts[0].Message, "Cotrimoxazole")

			// NKA cannot be re-recorded over an active allergy.
			_, err := rs[0].Do(nurse, t0.Add(3*time.Hour), record.RecordNoKnownAllergies{})
			require.ErrorIs(t, err, record.ErrTransition)
			_, err = rs[0].Do(nurse, t0.Add(3*time.Hour), record.ResolveConflict{EntryID: rs[0].ID(), Field: "nka", Value: "true"})
			require.ErrorIs(t, err, record.ErrTransition)
		})
	}

	t.Run("confirming the allergy clears the alert", func(t *testing.T) {
		base := newChart(t)
		rs := replicas(t, base, 2)
		do(t, rs[0], nurse, t0.Add(time.Hour), record.RecordNoKnownAllergies{})
		do(t, rs[1], doctor, t0.Add(time.Hour), record.AddAllergy{Substance: "Cotrimoxazole", Severity: "severe"})
		mergeAll(t, rs...)
		require.Len(t, alertsOf(converged(t, rs...), record.AlertAllergyStatus), 1)
		do(t, rs[0], doctor, t0.Add(2*time.Hour), record.ResolveConflict{EntryID: rs[0].ID(), Field: "nka", Value: "false"})
		mergeAll(t, rs...)
		v := converged(t, rs...)
		assert.Empty(t, alertsOf(v, record.AlertAllergyStatus), "the confirmed allergy still raises the alert")
		assert.False(t, v.NoKnownAllergies)
		assert.Len(t, v.Allergies, 1)
	})

	t.Run("the allergy entered in error restores no known allergies", func(t *testing.T) {
		base := newChart(t)
		rs := replicas(t, base, 2)
		do(t, rs[0], nurse, t0.Add(time.Hour), record.RecordNoKnownAllergies{})
		allergy := do(t, rs[1], doctor, t0.Add(time.Hour), record.AddAllergy{Substance: "Cotrimoxazole", Severity: "severe"})
		do(t, rs[1], doctor, t0.Add(2*time.Hour), record.MarkEnteredInError{EntryID: allergy, Reason: "other patient"})
		mergeAll(t, rs...)
		v := converged(t, rs...)
		assert.True(t, v.NoKnownAllergies)
		assert.Empty(t, v.Alerts)
	})

	t.Run("an allergy added after no known allergies withdraws it", func(t *testing.T) {
		base := newChart(t)
		do(t, base, nurse, t0, record.RecordNoKnownAllergies{})
		rs := replicas(t, base, 2)
		do(t, rs[0], doctor, t0.Add(time.Hour), record.AddAllergy{Substance: "Aspirin", Severity: "moderate"})
		do(t, rs[1], registry, t0.Add(2*time.Hour), record.UpdateDemographics{Village: record.Ptr("Gatundu")})
		mergeAll(t, rs...)
		v := converged(t, rs...)
		assert.False(t, v.NoKnownAllergies)
		assert.Empty(t, v.Alerts, "the allergy was recorded by someone who saw the statement: nothing to confirm")
		assert.Empty(t, v.Conflicts)
	})
}

// Rule 5: an entry marked entered in error on one device while edited on
// another stays out of the lists, in EnteredInError and in the history.
func TestMergeEnteredInErrorKeepsEntry(t *testing.T) {
	cases := []struct {
		kind  string
		setup func(t *testing.T, c *record.Chart) string
		edit  func(id string) record.Op
		in    func(v record.View, id string) bool
	}{
		{record.KindPrescription,
			func(t *testing.T, c *record.Chart) string {
				return do(t, c, doctor, t0, record.Prescribe{Drug: "Amoxicillin", Dose: 500, DoseUnit: "mg", Route: "oral", Frequency: "TDS"})
			},
			func(id string) record.Op { return record.ReviseDose{PrescriptionID: id, Dose: 250} },
			func(v record.View, id string) bool { _, ok := findRx(v, id); return ok }},
		{record.KindAllergy,
			func(t *testing.T, c *record.Chart) string {
				return do(t, c, nurse, t0, record.AddAllergy{Substance: "Latex", Severity: "mild"})
			},
			func(id string) record.Op { return record.UpdateAllergy{AllergyID: id, Severity: record.Ptr("severe")} },
			func(v record.View, id string) bool { _, ok := findAllergy(v, id); return ok }},
		{record.KindDiagnosis,
			func(t *testing.T, c *record.Chart) string {
				return do(t, c, doctor, t0, record.Diagnose{Text: "Typhoid"})
			},
			func(id string) record.Op {
				return record.ChangeDiagnosisStatus{DiagnosisID: id, VerificationStatus: "confirmed"}
			},
			func(v record.View, id string) bool { _, ok := findDiagnosis(v, id); return ok }},
		{record.KindLabResult,
			func(t *testing.T, c *record.Chart) string {
				return do(t, c, labTech, t0, record.RecordLabResult{Test: "Widal", TextValue: "1:160", SpecimenAt: t0})
			},
			func(id string) record.Op {
				return record.CorrectLabResult{LabResultID: id, TextValue: "1:320", Reason: "misread"}
			},
			func(v record.View, id string) bool { _, ok := findLab(v, id); return ok }},
		{record.KindEncounter,
			func(t *testing.T, c *record.Chart) string {
				return do(t, c, nurse, t0, record.AddEncounter{Complaint: "fever", Note: "hot"})
			},
			func(id string) record.Op { return record.EditNote{EncounterID: id, Pos: 3, Insert: " to touch"} },
			func(v record.View, id string) bool { _, ok := findEncounter(v, id); return ok }},
	}
	for _, tc := range cases {
		t.Run(tc.kind, func(t *testing.T) {
			base := newChart(t)
			id := tc.setup(t, base)
			rs := replicas(t, base, 2)
			mark, err := rs[0].Do(doctor, t0.Add(time.Hour), record.MarkEnteredInError{EntryID: id, Reason: "wrong patient"})
			require.NoError(t, err)
			// The edit is the later one by the clock: it still does not
			// bring the entry back.
			edit, err := rs[1].Do(as(t, rs[1], nurse, tc.edit(id)), t0.Add(2*time.Hour), tc.edit(id))
			require.NoError(t, err)
			edited := view(t, rs[1])
			mergeAll(t, rs...)
			v := converged(t, rs...)

			assert.False(t, tc.in(v, id), "an entry entered in error is listed")
			e, ok := findError(v, id)
			require.True(t, ok, "the entry is not in EnteredInError")
			assert.Equal(t, tc.kind, e.Kind)
			assert.Equal(t, "wrong patient", e.Reason)
			assert.Equal(t, doctor, e.By)
			var hashes []crdt.Hash
			for _, h := range v.History {
				if h.EntryID == id {
					hashes = append(hashes, h.Change)
				}
			}
			assert.Len(t, hashes, 3, "creation, marking and edit are all in the history")
			assert.Contains(t, hashes, mark.Change.Hash)
			assert.Contains(t, hashes, edit.Change.Hash)

			old, err := rs[0].ViewAt(edited.Heads)
			require.NoError(t, err)
			assert.True(t, tc.in(old, id), "the edited version is still readable")
			assert.Equal(t, edited, old)
		})
	}
}

// Rule 6: after a merge the view raises alerts.
func TestMergeRaisesAlerts(t *testing.T) {
	rx := func(drug string) func(t *testing.T, c *record.Chart, at time.Time) string {
		return func(t *testing.T, c *record.Chart, at time.Time) string {
			return do(t, c, doctor, at, record.Prescribe{Drug: drug, Dose: 1, DoseUnit: "tablet", Route: "oral", Frequency: "BD"})
		}
	}
	rxCode := func(drug, code string) func(t *testing.T, c *record.Chart, at time.Time) string {
		return func(t *testing.T, c *record.Chart, at time.Time) string {
			return do(t, c, doctor, at, record.Prescribe{Drug: drug, DrugCode: code, Dose: 1, DoseUnit: "tablet", Route: "oral", Frequency: "BD"})
		}
	}
	then := func(first func(t *testing.T, c *record.Chart, at time.Time) string, op func(id string) record.Op) func(t *testing.T, c *record.Chart, at time.Time) string {
		return func(t *testing.T, c *record.Chart, at time.Time) string {
			id := first(t, c, at)
			do(t, c, doctor, at.Add(time.Minute), op(id))
			return id
		}
	}
	allergy := func(substance string) func(t *testing.T, c *record.Chart, at time.Time) string {
		return func(t *testing.T, c *record.Chart, at time.Time) string {
			return do(t, c, nurse, at, record.AddAllergy{Substance: substance, Severity: "severe"})
		}
	}
	potassium := func(value float64) func(t *testing.T, c *record.Chart, at time.Time) string {
		return func(t *testing.T, c *record.Chart, at time.Time) string {
			return do(t, c, labTech, at, record.RecordLabResult{Test: "Potassium", Value: record.Ptr(value), Unit: "mmol/L",
				RefLow: record.Ptr(3.5), RefHigh: record.Ptr(5.1), CriticalLow: record.Ptr(2.5), CriticalHigh: record.Ptr(6.5), SpecimenAt: t0})
		}
	}
	hold := func(id string) record.Op { return record.PutOnHold{PrescriptionID: id} }
	stop := func(id string) record.Op { return record.Discontinue{PrescriptionID: id, Reason: "allergy"} }
	eie := func(id string) record.Op { return record.MarkEnteredInError{EntryID: id, Reason: "duplicate"} }

	cases := []struct {
		name string
		a, b func(t *testing.T, c *record.Chart, at time.Time) string
		// alert is the kind expected for the two entries, or "" for none.
		alert string
	}{
		{"same drug prescribed on two devices", rx("Amoxicillin"), rx(" amoxicillin"), record.AlertDuplicateDrug},
		{"same drug, one with a drug code", rx("Amoxicillin"), rxCode("Amoxicillin", "RX:723"), record.AlertDuplicateDrug},
		{"same drug code, different names", rxCode("Amoxil", "RX:723"), rxCode("Amoxicillin", "RX:723"), record.AlertDuplicateDrug},
		{"same drug, one on hold", rx("Amoxicillin"), then(rx("Amoxicillin"), hold), ""},
		{"same drug, one entered in error", rx("Amoxicillin"), then(rx("Amoxicillin"), eie), ""},
		{"different drugs", rx("Amoxicillin"), rx("Paracetamol"), ""},
		{"allergy to the drug prescribed", allergy("Cotrimoxazole"), rx("Cotrimoxazole"), record.AlertAllergyDrug},
		{"penicillin allergy, amoxicillin prescribed", allergy("Penicillin"), rx("Amoxicillin 500mg"), record.AlertAllergyDrug},
		{"penicillin allergy, co-amoxiclav prescribed", allergy("penicillins"), rx("Co-amoxiclav"), record.AlertAllergyDrug},
		{"sulfa allergy, co-trimoxazole prescribed", allergy("Sulfa drugs"), rx("Co-trimoxazole"), record.AlertAllergyDrug},
		{"aspirin allergy, ibuprofen prescribed", allergy("Aspirin"), rx("Ibuprofen"), record.AlertAllergyDrug},
		{"allergy, drug on hold", allergy("Penicillin"), then(rx("Amoxicillin"), hold), record.AlertAllergyDrug},
		{"allergy, drug stopped", allergy("Penicillin"), then(rx("Amoxicillin"), stop), ""},
		{"allergy entered in error", then(allergy("Penicillin"), eie), rx("Amoxicillin"), ""},
		{"penicillin allergy, paracetamol prescribed", allergy("Penicillin"), rx("Paracetamol"), ""},
		{"critical potassium", potassium(7.1), rx("Paracetamol"), record.AlertCriticalLab},
		{"high but not critical potassium", potassium(5.9), rx("Paracetamol"), ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			base := newChart(t)
			rs := replicas(t, base, 2)
			idA := tc.a(t, rs[0], t0.Add(time.Hour))
			idB := tc.b(t, rs[1], t0.Add(time.Hour))
			for _, r := range rs {
				if tc.alert == record.AlertDuplicateDrug || tc.alert == record.AlertAllergyDrug {
					assert.Empty(t, view(t, r).Alerts, "one device alone has nothing to alert")
				}
			}
			mergeAll(t, rs...)
			v := converged(t, rs...)
			if tc.alert == "" {
				assert.Empty(t, v.Alerts)
				return
			}
			require.Len(t, v.Alerts, 1, "alerts: %+v", v.Alerts)
			a := v.Alerts[0]
			assert.Equal(t, tc.alert, a.Kind)
			assert.Equal(t, "high", a.Severity)
			assert.NotEmpty(t, a.Message)
			want := []string{idA, idB}
			if tc.alert == record.AlertCriticalLab {
				want = []string{idA}
			}
			assert.ElementsMatch(t, want, a.Entries)
		})
	}
}

func TestAlertsClearWhenActedOn(t *testing.T) {
	base := newChart(t)
	lab := do(t, base, labTech, t0, record.RecordLabResult{Test: "Potassium", Value: record.Ptr(4.0), Unit: "mmol/L",
		CriticalHigh: record.Ptr(6.5), SpecimenAt: t0, Status: record.StatusPreliminary})
	rs := replicas(t, base, 2)
	rxA := do(t, rs[0], doctor, t0.Add(time.Hour), record.Prescribe{Drug: "Amoxicillin", Dose: 500, DoseUnit: "mg", Route: "oral", Frequency: "TDS"})
	do(t, rs[0], labTech, t0.Add(time.Hour), record.CorrectLabResult{LabResultID: lab, Value: record.Ptr(7.4), Reason: "recalibrated"})
	rxB := do(t, rs[1], nurse, t0.Add(time.Hour), record.Prescribe{Drug: "Amoxicillin", Dose: 250, DoseUnit: "mg", Route: "oral", Frequency: "BD"})
	do(t, rs[1], labTech, t0.Add(2*time.Hour), record.FinalizeLabResult{LabResultID: lab})
	mergeAll(t, rs...)
	v := converged(t, rs...)
	l, _ := findLab(v, lab)
	require.Equal(t, record.StatusCorrected, l.Status, "a correction beats a concurrent finalisation")
	require.Len(t, alertsOf(v, record.AlertCriticalLab), 1, "the concurrently corrected value is critical")
	dup := alertsOf(v, record.AlertDuplicateDrug)
	require.Len(t, dup, 1)
	assert.ElementsMatch(t, []string{rxA, rxB}, dup[0].Entries)

	do(t, rs[1], doctor, t0.Add(3*time.Hour), record.Discontinue{PrescriptionID: rxB, Reason: "duplicate order"})
	do(t, rs[0], labTech, t0.Add(3*time.Hour), record.CorrectLabResult{LabResultID: lab, Value: record.Ptr(4.1), Reason: "repeat sample"})
	mergeAll(t, rs...)
	assert.Empty(t, converged(t, rs...).Alerts)
}

// Concurrent edits of one encounter note merge both.
func TestMergeConcurrentNoteEdits(t *testing.T) {
	const note = "Fever for three days. No rash."
	cases := []struct {
		name    string
		edits   []record.EditNote // one per device
		present []string
		absent  []string
	}{
		{"start and end", []record.EditNote{{Pos: 0, Insert: "Day 3. "}, {Pos: len(note), Insert: " ORS given."}},
			[]string{"Day 3. Fever", "rash. ORS given."}, nil},
		{"insert and delete elsewhere", []record.EditNote{{Pos: 22, Delete: 8, Insert: "Rash on arms."}, {Pos: 6, Insert: "(39.2 °C) "}},
			[]string{"Rash on arms.", "Fever (39.2 °C) for three days."}, []string{"No rash."}},
		{"same position", []record.EditNote{{Pos: 21, Insert: " Cough."}, {Pos: 21, Insert: " Vomiting."}},
			[]string{" Cough.", " Vomiting.", "No rash."}, nil},
		{"three devices", []record.EditNote{{Pos: 0, Insert: "A: "}, {Pos: 10, Insert: "(maybe 4) "}, {Pos: len(note), Insert: " Plan: RDT."}},
			[]string{"A: Fever", "(maybe 4) three", "Plan: RDT."}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			base := newChart(t)
			id := do(t, base, nurse, t0, record.AddEncounter{Complaint: "fever", Note: note})
			rs := replicas(t, base, len(tc.edits))
			for i, e := range tc.edits {
				e.EncounterID = id
				do(t, rs[i], []record.Author{nurse, doctor, chw}[i], t0.Add(time.Hour), e)
			}
			mergeAll(t, rs...)
			v := converged(t, rs...)
			enc, ok := findEncounter(v, id)
			require.True(t, ok)
			for _, p := range tc.present {
				assert.Contains(t, enc.Note, p)
			}
			for _, p := range tc.absent {
				assert.NotContains(t, enc.Note, p)
			}
			want := len(note)
			for _, e := range tc.edits {
				want += len(e.Insert) - e.Delete
			}
			assert.Len(t, enc.Note, want, "every character inserted is kept once: %q", enc.Note)
			assert.Empty(t, v.Conflicts, "text merges without conflicts")
		})
	}
}

// busyReplicas builds three devices that edited one chart in every way.
func busyReplicas(t *testing.T) (base *record.Chart, rs []*record.Chart) {
	f := newFixture(t)
	base = f.chart
	rs = replicas(t, base, 3)
	do(t, rs[0], doctor, t0.Add(time.Hour), record.ReviseDose{PrescriptionID: f.rxOnHold, Dose: 850})
	do(t, rs[1], nurse, t0.Add(time.Hour), record.ReviseDose{PrescriptionID: f.rxOnHold, Dose: 1000})
	do(t, rs[2], doctor, t0.Add(time.Hour), record.Discontinue{PrescriptionID: f.rxOnHold, Reason: "switched"})
	do(t, rs[0], nurse, t0.Add(2*time.Hour), record.AddAllergy{Substance: "Sulfa", Severity: "severe"})
	do(t, rs[1], doctor, t0.Add(2*time.Hour), record.Prescribe{Drug: "Co-trimoxazole", Dose: 960, DoseUnit: "mg", Route: "oral", Frequency: "BD"})
	do(t, rs[2], nurse, t0.Add(2*time.Hour), record.EditNote{EncounterID: f.encounter, Pos: 0, Insert: "Seen with mother. "})
	do(t, rs[0], nurse, t0.Add(3*time.Hour), record.EditNote{EncounterID: f.encounter, Pos: len(f.encounterNote), Insert: " Drinking well."})
	do(t, rs[1], labTech, t0.Add(3*time.Hour), record.FinalizeLabResult{LabResultID: f.labPrelim})
	do(t, rs[2], labTech, t0.Add(3*time.Hour), record.MarkEnteredInError{EntryID: f.labPrelim, Reason: "wrong tube"})
	return base, rs
}

func TestViewJSONIsDeterministic(t *testing.T) {
	_, rs := busyReplicas(t)
	// Two fresh devices receive the same changes in opposite orders.
	x, y := fork(t, rs[0]), fork(t, rs[2])
	merge(t, x, rs[1])
	merge(t, x, rs[2])
	merge(t, y, rs[1])
	merge(t, y, rs[0])
	v := converged(t, x, y)
	assert.NotEmpty(t, v.Conflicts)
	assert.NotEmpty(t, v.Alerts)
	assert.NotEmpty(t, v.EnteredInError)
	a, err := json.Marshal(v)
	require.NoError(t, err)
	b, err := json.Marshal(view(t, x))
	require.NoError(t, err)
	assert.Equal(t, string(a), string(b), "the same chart encodes the same way twice")

	// The encoding is what an app needs: hex change hashes in the
	// history, and empty lists rather than null.
	var m map[string]any
	require.NoError(t, json.Unmarshal(a, &m))
	for _, key := range []string{"allergies", "diagnoses", "prescriptions", "lab_results", "encounters", "entered_in_error", "conflicts", "alerts", "history"} {
		assert.IsType(t, []any{}, m[key], "%s is not a JSON list", key)
	}
	h := m["history"].([]any)[0].(map[string]any)
	assert.Equal(t, v.History[0].Change.String(), h["change"])

	// An empty chart encodes its lists as [] too.
	b, err = json.Marshal(view(t, newChart(t)))
	require.NoError(t, err)
	assert.NotContains(t, string(b), "null")
}

func TestViewAtShowsEarlierVersions(t *testing.T) {
	base, rs := busyReplicas(t)
	baseView := view(t, base)
	before := make([]record.View, len(rs))
	for i, r := range rs {
		before[i] = view(t, r)
	}
	mergeAll(t, rs...)
	now := converged(t, rs...)
	require.NotEqual(t, baseView.Heads, now.Heads)

	for _, r := range rs {
		old, err := r.ViewAt(baseView.Heads)
		require.NoError(t, err)
		assert.Equal(t, baseView, old, "the base version as it was")
		// Each device's own version before the merge, readable on every
		// device after it.
		for i, b := range before {
			old, err := r.ViewAt(b.Heads)
			require.NoError(t, err)
			assert.Equal(t, b, old, "device %d's version before the merge", i)
		}
		// A version named by a history entry.
		h := now.History[len(now.History)/2]
		old, err = r.ViewAt(crdt.Heads{h.Change})
		require.NoError(t, err)
		assert.Less(t, len(old.History), len(now.History))
		assert.Equal(t, crdt.Heads{h.Change}, old.Heads)
	}
	again := view(t, rs[0])
	assert.Equal(t, now, again, "reading old versions does not change the chart")

	_, err := rs[0].ViewAt(crdt.Heads{crdt.Hash{1, 2, 3}})
	assert.ErrorIs(t, err, crdt.ErrNotFound)
	_, err = rs[0].ViewAt(nil)
	assert.ErrorIs(t, err, record.ErrInvalid)
}

// History lists every change of every device, in time order, in words.
func TestMergedHistory(t *testing.T) {
	_, rs := busyReplicas(t)
	baseLen := len(view(t, rs[0]).History) - 3 // each device made 3 changes
	mergeAll(t, rs...)
	v := converged(t, rs...)
	assert.Len(t, v.History, baseLen+9)
	assert.True(t, slices.IsSortedFunc(v.History, func(a, b record.HistoryEntry) int { return a.At.Compare(b.At) }), "history is in time order")
	seen := map[crdt.Hash]bool{}
	for _, h := range v.History {
		assert.False(t, seen[h.Change], "change %s listed twice", h.Change)
		seen[h.Change] = true
		assert.NotEmpty(t, h.Summary)
		assert.NotEqual(t, "unknown", h.Op)
		assert.NoError(t, h.By.Validate(), "history entry %q has no valid author", h.Summary)
	}
	var summaries []string
	for _, h := range v.History {
		summaries = append(summaries, h.Summary)
	}
	all := strings.Join(summaries, "\n")
	assert.Contains(t, all, "Co-trimoxazole")
	assert.Contains(t, all, "wrong tube")
}

// The reason shown with a status is the one given with the status that
// won, not the latest reason given with a status that lost.
func TestMergeStatusReasonFollowsShownStatus(t *testing.T) {
	base := newChart(t)
	rx := do(t, base, doctor, t0, record.Prescribe{Drug: "Metformin", Dose: 500, DoseUnit: "mg", Route: "oral", Frequency: "BD"})
	lab := do(t, base, labTech, t0, record.RecordLabResult{Test: "Glucose", Value: record.Ptr(5.5), Unit: "mmol/L", SpecimenAt: t0})
	rs := replicas(t, base, 2)
	do(t, rs[0], doctor, t0.Add(time.Hour), record.Discontinue{PrescriptionID: rx, Reason: "lactic acidosis"})
	do(t, rs[1], nurse, t0.Add(2*time.Hour), record.PutOnHold{PrescriptionID: rx, Reason: "fasting for surgery"})
	do(t, rs[0], labTech, t0.Add(time.Hour), record.MarkEnteredInError{EntryID: lab, Reason: "sample of another patient"})
	do(t, rs[1], labTech, t0.Add(2*time.Hour), record.CorrectLabResult{LabResultID: lab, Value: record.Ptr(6.0), Reason: "recalibrated"})
	mergeAll(t, rs...)
	v := converged(t, rs...)
	p, _ := findRx(v, rx)
	assert.Equal(t, record.StatusStopped, p.Status)
	assert.Equal(t, "lactic acidosis", p.StatusReason)
	e, ok := findError(v, lab)
	require.True(t, ok)
	assert.Equal(t, "sample of another patient", e.Reason)
	// Both reasons are still in the chart, as a conflict.
	c, ok := findConflict(v, rx, "status_reason")
	require.True(t, ok)
	assert.Len(t, c.Values, 2)
}

// Merging another patient's chart into this one (a misrouted bundle) must
// never show or edit that patient's data under this chart: either this
// chart's data stays what it was, or the chart refuses to be read or
// written with ErrNotAChart. Which of the two happens depends on the
// actor IDs, so the test tries until it has seen both.
func TestMergingAnotherChartNeverShowsItAsThisOne(t *testing.T) {
	var refused, kept int
	for i := 0; i < 40 && (refused == 0 || kept == 0); i++ {
		c := seedChart(t)
		before := view(t, c)
		merge(t, c, newChart(t))
		v, err := c.View()
		if err != nil {
			require.ErrorIs(t, err, record.ErrNotAChart)
			_, err = c.Do(nurse, t0.Add(time.Hour), record.AddAllergy{Substance: "Latex", Severity: "mild"})
			require.ErrorIs(t, err, record.ErrNotAChart, "a write went into another patient's chart")
			_, err = c.Patient()
			require.ErrorIs(t, err, record.ErrNotAChart)
			refused++
			continue
		}
		kept++
		require.Equal(t, c.ID(), v.ChartID)
		assert.Equal(t, before.Patient, v.Patient)
		assert.Equal(t, before.Prescriptions, v.Prescriptions)
		assert.Equal(t, before.Allergies, v.Allergies)
		assert.Equal(t, before.Encounters, v.Encounters)
	}
	assert.Positive(t, refused, "never saw the other chart's containers win")
	assert.Positive(t, kept, "never saw this chart's containers win")
}

// Devices that concurrently write the same value agree: that is not a
// conflict for a clinician to settle.
func TestMergeSameValueIsNoConflict(t *testing.T) {
	for _, fc := range fieldCases() {
		t.Run(fc.name, func(t *testing.T) {
			base := newChart(t)
			id := fc.setup(t, base)
			rs := replicas(t, base, 2)
			do(t, rs[0], nurse, t0.Add(time.Hour), fc.write(id, fc.values[0]))
			do(t, rs[1], doctor, t0.Add(2*time.Hour), fc.write(id, fc.values[0]))
			mergeAll(t, rs...)
			v := converged(t, rs...)
			assert.Empty(t, v.Conflicts)
			assert.Equal(t, fc.values[0], fc.read(t, v, id))
		})
	}
	t.Run("both record no known allergies", func(t *testing.T) {
		rs := replicas(t, newChart(t), 2)
		do(t, rs[0], nurse, t0.Add(time.Hour), record.RecordNoKnownAllergies{})
		do(t, rs[1], doctor, t0.Add(time.Hour), record.RecordNoKnownAllergies{})
		mergeAll(t, rs...)
		v := converged(t, rs...)
		assert.True(t, v.NoKnownAllergies)
		assert.Empty(t, v.Conflicts)
	})
}
