package fhir_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/chartsync/chartsync/record/fhir"
)

// FuzzImport feeds the importer arbitrary bytes, seeded with the golden
// files: it never panics, refuses what it cannot read with ErrMalformed,
// and a bundle it imported once changes nothing when imported again.
func FuzzImport(f *testing.F) {
	for _, s := range samples {
		data, err := os.ReadFile(filepath.Join("testdata", s.name+".json"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient","id":"p1","name":[{"family":"A"}],"birthDate":"1990"}},{"resource":{"resourceType":"Immunization","id":"i1","status":"completed","vaccineCode":{"text":"BCG"},"patient":{"reference":"Patient/p1"},"occurrenceDateTime":"2026-01-05"}}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := fhir.Decode(data)
		if err != nil {
			if !errors.Is(err, fhir.ErrMalformed) {
				t.Fatalf("Decode error does not match ErrMalformed: %v", err)
			}
			return
		}
		m := newMemory()
		res, err := fhir.Import(context.Background(), m, "", importer, "kamuga-dispensary", b)
		if err != nil {
			if res.Created {
				t.Fatalf("a failed import left a chart behind: %v", err)
			}
			return
		}
		heads := m.Get(res.ChartID).Doc().Heads()
		again, err := fhir.Import(context.Background(), m, res.ChartID, importer, "", b)
		if err != nil {
			t.Fatalf("importing again: %v", err)
		}
		if again.Changes != 0 || !heads.Equal(m.Get(res.ChartID).Doc().Heads()) {
			t.Fatalf("importing the same bundle again made %d changes: %+v", again.Changes, again)
		}
		v, err := m.Chart(context.Background(), res.ChartID)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fhir.Export(v); err != nil {
			t.Fatalf("an imported chart does not export: %v", err)
		}
	})
}
