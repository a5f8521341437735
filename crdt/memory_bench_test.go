package crdt_test

import (
	"fmt"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/crdt/internal/cmem"
	"github.com/chartsync/chartsync/record"
)

// peakRSS returns the process's peak resident set, in MiB.
func peakRSS() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Maxrss) / 1024
}

// churn runs fn b.N times and reports the process's peak resident set
// (peak-RSS-MiB: run one benchmark alone, -benchtime=100000x, as the
// peak is the process's), the C bytes asked of malloc per call
// (C-bytes/op), the C heap still in use per call once the loop is over
// (C-kept/op: what waits for a finalizer or leaks) and the Go heap in
// use afterwards.
func churn(b *testing.B, fn func()) {
	b.Helper()
	runtime.GC()
	c0, u0 := cmem.Allocated(), cmem.InUse()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		fn()
	}
	b.StopTimer()
	c1, u1 := cmem.Allocated(), cmem.InUse()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(peakRSS(), "peak-RSS-MiB")
	b.ReportMetric(float64(c1-c0)/float64(b.N), "C-bytes/op")
	b.ReportMetric(float64(u1-u0)/float64(b.N), "C-kept/op")
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-inuse-MiB")
}

// BenchmarkForkChurn forks a ~300-change chart and reads the fork, as a
// check or a read at past heads does, letting each fork go at once.
func BenchmarkForkChurn(b *testing.B) {
	d, _ := chartHistory(b, 300)
	churn(b, func() {
		f, err := d.Fork(nil, "dd04")
		require.NoError(b, err)
		_, err = f.String([]string{"patient"}, "family")
		require.NoError(b, err)
		done(f)
	})
}

// BenchmarkLoadChurn loads a saved ~300-change chart and reads it,
// letting each copy go at once.
func BenchmarkLoadChurn(b *testing.B) {
	d, _ := chartHistory(b, 300)
	saved := d.Save()
	churn(b, func() {
		l, err := crdt.Load(saved, "dd04")
		require.NoError(b, err)
		_, err = l.String([]string{"patient"}, "family")
		require.NoError(b, err)
		done(l)
	})
}

// done lets go of a document.
func done(d *crdt.Doc) { _ = d.Close() }

// realisticChart builds a chart as a clinic makes one: a registration
// and then allergies, prescriptions and encounters with notes, changes
// changes in all (about 300 bytes each, as stored charts average).
func realisticChart(tb testing.TB, changes int) *record.Chart {
	tb.Helper()
	nurse := record.Author{UserID: "u-amina", Name: "Amina", Role: record.RoleNurse, Device: "tablet-1"}
	doctor := record.Author{UserID: "u-baraka", Name: "Dr Baraka", Role: record.RoleClinician, Device: "laptop-2"}
	at := t0
	c, _, err := record.New("6f1c2b1e-1d8a-4c7e-9b0a-3f5e2d7c9a10", "aa01", nurse, at, record.Register{
		GivenName: "Amina", FamilyName: "Okafor", Sex: "female", EstimatedBirthYear: 1988,
		Village: "Kamuga", HomeClinic: "kamuga-dispensary",
	})
	require.NoError(tb, err)
	for i := 1; i < changes; i++ {
		at = at.Add(time.Hour)
		var op record.Op
		switch i % 3 {
		case 0:
			op = record.AddAllergy{Substance: fmt.Sprintf("substance-%d", i), Reaction: "rash", Severity: "moderate"}
		case 1:
			op = record.Prescribe{Drug: fmt.Sprintf("Drug%d", i), Dose: 500, DoseUnit: "mg", Route: "oral", Frequency: "TDS", DurationDays: 5}
		default:
			op = record.AddEncounter{Complaint: "fever", Note: "Temperature 38.5, given paracetamol; review in three days."}
		}
		_, err := c.Do(doctor, at, op)
		require.NoError(tb, err)
	}
	return c
}

// BenchmarkCheckChange judges one received change (an allergy added on
// the chart's latest version) against a 40-change chart with
// record.CheckChange, as a replica that checks authors does: the C bytes
// Automerge is asked for per change (C-bytes/op) beside the Go bytes
// (B/op), and the C memory each check leaves behind (C-kept/op).
func BenchmarkCheckChange(b *testing.B) {
	c := realisticChart(b, 40)
	doc := c.Doc()
	f, err := doc.Fork(nil, "bb02")
	require.NoError(b, err)
	other, err := record.Open(f)
	require.NoError(b, err)
	res, err := other.Do(record.Author{UserID: "u-baraka", Name: "Dr Baraka", Role: record.RoleClinician, Device: "laptop-2"},
		t0.Add(1000*time.Hour), record.AddAllergy{Substance: "penicillin", Reaction: "hives", Severity: "severe"})
	require.NoError(b, err)
	ch := res.Change
	churn(b, func() {
		if _, err := record.CheckChange(doc, ch); err != nil {
			b.Fatal(err)
		}
	})
}

// BenchmarkCheckerChange judges a run of received changes (allergies
// added one after the other on another device) against a 40-change
// chart with a record.Checker, as a replica receiving a bundle does:
// per change, the C bytes asked of malloc (C-bytes/op) and the Go bytes
// (B/op). The Checker is made once, outside the measure.
func BenchmarkCheckerChange(b *testing.B) {
	c := realisticChart(b, 40)
	f, err := c.Doc().Fork(nil, "bb02")
	require.NoError(b, err)
	other, err := record.Open(f)
	require.NoError(b, err)
	chs := make([]crdt.Change, b.N)
	for i := range chs {
		res, err := other.Do(record.Author{UserID: "u-baraka", Name: "Dr Baraka", Role: record.RoleClinician, Device: "laptop-2"},
			t0.Add(time.Duration(1000+i)*time.Hour), record.AddAllergy{Substance: fmt.Sprintf("penicillin-%d", i), Reaction: "hives", Severity: "severe"})
		require.NoError(b, err)
		chs[i] = res.Change
	}
	check, err := record.NewChecker(c.Doc())
	require.NoError(b, err)
	i := 0
	churn(b, func() {
		if _, err := check.Check(chs[i]); err != nil {
			b.Fatal(err)
		}
		i++
	})
}
