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
