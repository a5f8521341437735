package record_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/record"
)

// benchChart is a chart with 10 entries of each kind (50 in all); it
// returns the prescriptions' IDs.
func benchChart(b *testing.B) (*record.Chart, []string) {
	b.Helper()
	c := newChart(b)
	at := t0
	next := func() time.Time { at = at.Add(time.Minute); return at }
	var rxs []string
	for i := range 10 {
		rxs = append(rxs, do(b, c, doctor, next(), record.Prescribe{Drug: fmt.Sprintf("Drug %d", i), Dose: 500, DoseUnit: "mg", Route: "oral", Frequency: "TDS"}))
		do(b, c, nurse, next(), record.AddAllergy{Substance: fmt.Sprintf("Substance %d", i), Severity: "mild"})
		do(b, c, doctor, next(), record.Diagnose{Text: fmt.Sprintf("Problem %d", i)})
		do(b, c, labTech, next(), record.RecordLabResult{Test: fmt.Sprintf("Test %d", i), Value: record.Ptr(float64(i)), Unit: "mmol/L",
			RefLow: record.Ptr(1.0), RefHigh: record.Ptr(5.0), SpecimenAt: t0})
		do(b, c, nurse, next(), record.AddEncounter{Complaint: "review", Note: "seen"})
	}
	return c, rxs
}

// BenchmarkDo applies one typed operation (a dose revision) to a chart of
// 50 entries.
func BenchmarkDo(b *testing.B) {
	base, rxs := benchChart(b)
	c := fork(b, base)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if i > 0 && i%500 == 0 { // keep the chart near 50 entries' size
			b.StopTimer()
			c = fork(b, base)
			b.StartTimer()
		}
		_, err := c.Do(doctor, t0.Add(time.Duration(i)*time.Second), record.ReviseDose{PrescriptionID: rxs[i%len(rxs)], Dose: float64(1 + i%997)})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoad1000 loads a saved chart of 1,000 changes, opens it and
// views it, as a replica does when a chart is first asked for.
func BenchmarkLoad1000(b *testing.B) {
	c, rxs := benchChart(b)
	chs, err := c.Doc().Changes(nil)
	require.NoError(b, err)
	for i := len(chs); i < 1000; i++ {
		do(b, c, doctor, t0.Add(time.Duration(i)*time.Minute), record.ReviseDose{PrescriptionID: rxs[i%len(rxs)], Dose: float64(1 + i%997)})
	}
	chs, err = c.Doc().Changes(nil)
	require.NoError(b, err)
	require.Len(b, chs, 1000)
	saved := c.Doc().Save()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		d, err := crdt.Load(saved, crdt.NewActorID())
		if err != nil {
			b.Fatal(err)
		}
		chart, err := record.Open(d)
		if err != nil {
			b.Fatal(err)
		}
		v, err := chart.View()
		if err != nil {
			b.Fatal(err)
		}
		if len(v.History) != 1000 {
			b.Fatalf("history has %d changes", len(v.History))
		}
	}
	b.ReportMetric(float64(len(saved)), "saved-bytes")
}

// BenchmarkMerge100 merges 100 concurrent changes of one device into a
// fresh copy of another device's chart, which made 100 of its own.
func BenchmarkMerge100(b *testing.B) {
	base, rxs := benchChart(b)
	devices := []*record.Chart{fork(b, base), fork(b, base)}
	for d, c := range devices {
		for i := range 100 {
			at := t0.Add(time.Duration(d*1000+i) * time.Minute)
			var op record.Op = record.ReviseDose{PrescriptionID: rxs[i%len(rxs)], Dose: float64(1 + d*100 + i)}
			if i%5 == 0 {
				op = record.AddAllergy{Substance: fmt.Sprintf("Dust %d-%d", d, i), Severity: "mild"}
			}
			do(b, c, []record.Author{nurse, doctor}[d], at, op)
		}
	}
	for _, withView := range []bool{false, true} {
		name := "merge"
		if withView {
			name = "merge+view"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				b.StopTimer()
				dst := fork(b, devices[0])
				b.StartTimer()
				applied, err := dst.Doc().Merge(devices[1].Doc())
				if err != nil {
					b.Fatal(err)
				}
				if len(applied) != 100 {
					b.Fatalf("merged %d changes", len(applied))
				}
				if withView {
					v, err := dst.View()
					if err != nil {
						b.Fatal(err)
					}
					if len(v.Conflicts) == 0 {
						b.Fatal("the concurrent doses are not in conflict")
					}
				}
			}
		})
	}
}

// BenchmarkViewAlerts views a chart whose alerts take the most work: 40
// active prescriptions of realistic names, 10 active allergies and 20 lab
// results, every drug name, substance and lab value also competing in a
// conflict.
func BenchmarkViewAlerts(b *testing.B) {
	c := newChart(b)
	at := t0
	next := func() time.Time { at = at.Add(time.Minute); return at }
	drugs := []string{"Amoxicillin 500mg caps", "Paracetamol 1g", "Metformin hydrochloride 500 mg tablets", "Co-trimoxazole 960 mg",
		"Ibuprofen 400mg", "Artemether/Lumefantrine 20/120", "Ceftriaxone 1g injection", "Ferrous sulfate 200 mg"}
	substances := []string{"Penicillin", "Sulfa drugs", "Peanuts", "Aspirin", "Latex"}
	var rxs, allergies, labs []string
	for i := range 40 {
		rxs = append(rxs, do(b, c, doctor, next(), record.Prescribe{Drug: drugs[i%len(drugs)] + fmt.Sprint(" ", i), Dose: 500, DoseUnit: "mg", Route: "oral", Frequency: "TDS"}))
	}
	for i := range 10 {
		allergies = append(allergies, do(b, c, nurse, next(), record.AddAllergy{Substance: substances[i%len(substances)], Severity: "mild"}))
	}
	for i := range 20 {
		labs = append(labs, do(b, c, labTech, next(), record.RecordLabResult{Test: fmt.Sprintf("Test %d", i), Value: record.Ptr(float64(i)), Unit: "mmol/L",
			RefLow: record.Ptr(1.0), RefHigh: record.Ptr(5.0), CriticalLow: record.Ptr(0.5), SpecimenAt: t0}))
	}
	other := fork(b, c)
	for i, dev := range []*record.Chart{c, other} {
		put := func(kind, entry, field, value string) {
			w := writeBy(doctor, kind, entry, field, value, writeIDs(b, dev, entry, field)...)
			w.At = t0.Add(time.Duration(i+1) * time.Hour).UnixMilli()
			if _, err := dev.Doc().Edit(messageBy(doctor, "x"), t0, putWrites(w)); err != nil {
				b.Fatal(err)
			}
		}
		for k, rx := range rxs {
			put(record.KindPrescription, rx, "drug", drugs[(k+1+i)%len(drugs)])
		}
		for k, a := range allergies {
			put(record.KindAllergy, a, "substance", substances[(k+1+i)%len(substances)])
		}
		for _, l := range labs {
			put(record.KindLabResult, l, "value", []string{"0.3", "3"}[i])
		}
	}
	merge(b, c, other)
	v := view(b, c)
	require.GreaterOrEqual(b, len(v.Conflicts), 70)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := c.View(); err != nil {
			b.Fatal(err)
		}
	}
}
