package record

import (
	"encoding/json"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/chartsync/chartsync/crdt"
)

// linearRun returns a chart's history of n changes made by one device,
// each the previous one's successor: a registration, then a rotation of
// real operations (prescribing, dose revisions, allergies, encounters
// with notes and note edits, diagnoses, lab results, demographics).
// Each operation is planned as Chart.Do plans it, against a state kept
// up to date change by change (Do reads the whole chart again after each
// change, which would make building a long history quadratic).
func linearRun(tb testing.TB, n int) []crdt.Change {
	tb.Helper()
	fail := func(err error) {
		if err != nil {
			tb.Fatal(err)
		}
	}
	by := Author{UserID: "u-baraka", Name: "Dr Baraka", Role: RoleClinician, Device: "laptop-2"}
	at := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	c, res, err := New(uuid.NewString(), crdt.NewActorID(), by, at, Register{GivenName: "Wanjiru", FamilyName: "Mwangi",
		Sex: "female", EstimatedBirthYear: 1988, Village: "Kamuga", Phone: "+254 712 345678", HomeClinic: "kamuga-dispensary"})
	fail(err)
	chs := []crdt.Change{res.Change}
	st, err := readState(c.doc)
	fail(err)
	st.indexWrites()
	reg, err := crdt.ChangeOps(res.Change.Raw)
	fail(err)
	var wObj crdt.OpID
	for _, op := range reg.Ops {
		if op.Obj.IsRoot() && op.Key.Prop == "w" {
			wObj = op.ID
		}
	}
	var rxs, allergies, encounters []string
	for i := 1; len(chs) < n; i++ {
		at = at.Add(time.Minute)
		var op Op
		switch i % 10 {
		case 0, 7:
			if len(rxs) > 0 {
				op = ReviseDose{PrescriptionID: rxs[i%len(rxs)], Dose: float64(100 + i%900)}
				break
			}
			fallthrough
		case 1:
			op = Prescribe{Drug: fmt.Sprintf("Drug %d", i), Dose: 500, DoseUnit: "mg", Route: "oral", Frequency: "TDS"}
		case 2:
			op = AddAllergy{Substance: fmt.Sprintf("Substance %d", i), Severity: "mild"}
		case 3:
			op = AddEncounter{Complaint: "review", Note: "Seen."}
		case 4:
			if len(encounters) > 0 {
				op = EditNote{EncounterID: encounters[len(encounters)-1], Pos: 0, Insert: "Better. "}
				break
			}
			op = Diagnose{Text: "Malaria"}
		case 5:
			op = Diagnose{Text: fmt.Sprintf("Problem %d", i)}
		case 6:
			op = RecordLabResult{Test: "Potassium", Value: Ptr(float64(i%7) + 2), Unit: "mmol/L", SpecimenAt: at}
		case 8:
			if len(allergies) > 0 {
				a := allergies[i%len(allergies)]
				sev := map[string]string{"mild": "severe", "severe": "mild"}[st.entries[a].value("severity")]
				op = UpdateAllergy{AllergyID: a, Severity: Ptr(sev)}
				break
			}
			fallthrough
		default:
			op = UpdateDemographics{Phone: Ptr(fmt.Sprintf("+254 700 %06d", i))}
		}
		pl, err := op.plan(st, at)
		fail(err)
		fail(pl.check())
		ch, err := c.doc.Edit(pl.message(by, at), at, func(tx *crdt.Tx) error { return pl.write(tx, st, by, at) })
		fail(err)
		chs = append(chs, ch)
		switch op.(type) {
		case Prescribe:
			rxs = append(rxs, pl.entry)
		case AddAllergy:
			allergies = append(allergies, pl.entry)
		case AddEncounter:
			encounters = append(encounters, pl.entry)
		}
		info, err := crdt.ChangeOps(ch.Raw)
		fail(err)
		for _, o := range info.Ops {
			if o.Obj == wObj {
				w := &write{ID: o.Key.Prop}
				fail(json.Unmarshal([]byte(o.Value.Str), w))
				if !st.add(w) {
					tb.Fatal("a write changed its entry's kind")
				}
			}
		}
	}
	return chs
}

var (
	runsMu sync.Mutex
	runs   = map[int][]crdt.Change{}
)

// cachedRun is linearRun(n), made once per test binary.
func cachedRun(tb testing.TB, n int) []crdt.Change {
	runsMu.Lock()
	defer runsMu.Unlock()
	if runs[n] == nil {
		runs[n] = linearRun(tb, n)
	}
	return runs[n]
}

// BenchmarkCheckerLinearRun checks a chart's whole history of n changes,
// made by one device one after another, with one Checker started on an
// empty document, as a replica receiving the chart for the first time
// does. It reports the time and allocations per change, and the peak of
// the Go heap in use while checking.
func BenchmarkCheckerLinearRun(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			chs := cachedRun(b, n)
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			base, peak := ms.HeapInuse, ms.HeapInuse
			b.ReportAllocs()
			b.ResetTimer()
			var fast int
			for range b.N {
				held, err := crdt.New(crdt.NewActorID())
				if err != nil {
					b.Fatal(err)
				}
				c, err := NewChecker(held)
				if err != nil {
					b.Fatal(err)
				}
				for i, ch := range chs {
					if _, err := c.Check(ch); err != nil {
						b.Fatalf("change %d: %v", i, err)
					}
					if i%500 == 499 {
						runtime.ReadMemStats(&ms)
						peak = max(peak, ms.HeapInuse)
					}
				}
				fast = c.nfast
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/change")
			b.ReportMetric(float64(fast)/float64(n), "fast-share")
			b.ReportMetric(float64(peak-base)/(1<<20), "peak-heap-MiB")
		})
	}
}

// BenchmarkCheckChangeLinearRun is BenchmarkCheckerLinearRun judging each
// change with CheckChange on a document holding the changes before it,
// as a replica did before Checker: its cost per change grows with the
// chart.
func BenchmarkCheckChangeLinearRun(b *testing.B) {
	const n = 1000
	chs := cachedRun(b, n)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		held, err := crdt.New(crdt.NewActorID())
		if err != nil {
			b.Fatal(err)
		}
		for i, ch := range chs {
			if _, err := CheckChange(held, ch); err != nil {
				b.Fatalf("change %d: %v", i, err)
			}
			if _, err := held.Apply(ch); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/change")
}

// BenchmarkNewChecker starts a Checker on a chart of 10,000 changes: the
// one-off cost of reading the whole chart.
func BenchmarkNewChecker(b *testing.B) {
	chs := cachedRun(b, 10000)
	doc, err := crdt.New(crdt.NewActorID())
	if err != nil {
		b.Fatal(err)
	}
	if err := doc.ApplyStored(crdt.SaveChanges(chs), hashesOf(chs)); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		c, err := NewChecker(doc)
		if err != nil {
			b.Fatal(err)
		}
		if c.mode != modeReady {
			b.Fatalf("the checker cannot judge changes from their operations (mode %d)", c.mode)
		}
	}
}

func hashesOf(chs []crdt.Change) []crdt.Hash {
	out := make([]crdt.Hash, len(chs))
	for i, c := range chs {
		out[i] = c.Hash
	}
	return out
}
