package audit_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/chartsync/chartsync/audit"
)

// FuzzVerify: Verify never panics on any bytes; it accepts a chain or
// names the line after the last good record in a *CorruptError; and what
// it accepts, Open accepts with the same count.
func FuzzVerify(f *testing.F) {
	path := filepath.Join(f.TempDir(), "seed.log")
	l, err := audit.Open(path, audit.Config{Now: newClock().Now})
	if err != nil {
		f.Fatal(err)
	}
	for i := range 5 {
		if err := l.Append(context.Background(), sample(i), sample(i+1)); err != nil {
			f.Fatal(err)
		}
	}
	l.Close()
	good, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	lines := bytes.SplitAfter(good, []byte("\n"))
	f.Add(good)
	f.Add(lines[0])
	f.Add(bytes.Join(lines[:3], nil))
	f.Add(append(bytes.Join(lines[:2], nil), lines[4]...))
	f.Add(good[:len(good)-7])
	f.Add([]byte{})
	f.Add([]byte("\n"))
	f.Add([]byte(`{"seq":1}` + "\n"))

	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := audit.Verify(context.Background(), bytes.NewReader(data))
		if err != nil {
			ce, ok := err.(*audit.CorruptError)
			if !ok {
				t.Fatalf("Verify returned %T (%v), not a *CorruptError", err, err)
			}
			if ce.Line != n+1 {
				t.Fatalf("Verify counted %d good records but blames line %d", n, ce.Line)
			}
			return
		}
		if n != bytes.Count(data, []byte("\n")) {
			t.Fatalf("Verify counted %d records in %d lines", n, bytes.Count(data, []byte("\n")))
		}
		p := filepath.Join(t.TempDir(), "access.log")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		l, err := audit.Open(p, audit.Config{})
		if err != nil {
			t.Fatalf("Verify accepts what Open refuses: %v", err)
		}
		defer l.Close()
		if seq, _ := l.Head(); seq != uint64(n) {
			t.Fatalf("Open ends at seq %d, Verify counted %d", seq, n)
		}
	})
}
