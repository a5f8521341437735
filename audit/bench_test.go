package audit_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/chartsync/chartsync/audit"
)

// benchEntry is a typical write: a 32-digit replica ID, a UUID chart.
func benchEntry(i int) audit.Entry {
	return audit.Entry{Action: audit.Write, Device: "5f0c2a9e7d3b41c8a6e2f90b1d4c7e35", Clinic: "kamuga-dispensary",
		User: "u-achieng", Role: "nurse", Chart: "0b6f3c1e-9a2d-4f5e-8c7b-" + strconv.Itoa(100000000000+i), Changes: i % 9}
}

func BenchmarkAppend(b *testing.B) {
	for _, per := range []int{1, 20} {
		b.Run("entries="+strconv.Itoa(per), func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "access.log")
			l, err := audit.Open(path, audit.Config{})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			es := make([]audit.Entry, per)
			for i := range es {
				es[i] = benchEntry(i)
			}
			ctx := context.Background()
			for b.Loop() {
				if err := l.Append(ctx, es...); err != nil {
					b.Fatal(err)
				}
			}
			fi, err := os.Stat(path)
			if err != nil {
				b.Fatal(err)
			}
			seq, _ := l.Head()
			b.ReportMetric(float64(fi.Size())/float64(seq), "bytes/entry")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(seq), "ns/entry")
		})
	}
}

func BenchmarkOpen(b *testing.B) {
	const lines = 100_000
	path := filepath.Join(b.TempDir(), "access.log")
	l, err := audit.Open(path, audit.Config{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	es := make([]audit.Entry, 1000)
	for n := 0; n < lines; n += len(es) {
		for i := range es {
			es[i] = benchEntry(n + i)
		}
		if err := l.Append(ctx, es...); err != nil {
			b.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(fi.Size())
	for b.Loop() {
		l, err := audit.Open(path, audit.Config{})
		if err != nil {
			b.Fatal(err)
		}
		l.Close()
	}
	b.ReportMetric(float64(fi.Size())/lines, "bytes/entry")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/lines, "ns/line")
}
