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
	// Small bundles too: the library takes about 25 ms to read a golden
	// file, many times that under the fuzzer's instrumentation, so most
	// of a short fuzzing run goes to these.
	patient := `{"resource":{"resourceType":"Patient","id":"p1","name":[{"family":"A"}],"gender":"female","birthDate":"1990","identifier":[{"system":"https://healthid.ndhm.gov.in","value":"12345678901234"}]}}`
	for _, entry := range []string{
		`{"resource":{"resourceType":"Immunization","id":"i1","status":"completed","vaccineCode":{"text":"BCG"},"patient":{"reference":"Patient/p1"},"occurrenceDateTime":"2026-01-05"}}`,
		`{"resource":{"resourceType":"AllergyIntolerance","id":"a1","patient":{"reference":"Patient/p1"},"code":{"text":"Penicillin"},"criticality":"high","clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical","code":"active"}]}}}`,
		`{"resource":{"resourceType":"Condition","id":"c1","subject":{"reference":"Patient/p1"},"code":{"text":"Asthma","coding":[{"system":"http://hl7.org/fhir/sid/icd-10","code":"J45"}]},"clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"remission"}]}}}`,
		`{"resource":{"resourceType":"MedicationRequest","id":"m1","status":"on-hold","intent":"order","subject":{"reference":"Patient/p1"},"medicationCodeableConcept":{"text":"Amoxicillin","coding":[{"system":"http://www.whocc.no/atc","code":"J01CA04"}]},"dosageInstruction":[{"route":{"text":"oral"},"timing":{"code":{"text":"TDS"}},"doseAndRate":[{"doseQuantity":{"value":500,"unit":"mg"}}]}]}}`,
		`{"resource":{"resourceType":"Observation","id":"o1","status":"preliminary","code":{"text":"Hb","coding":[{"system":"http://loinc.org","code":"718-7"}]},"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2026-03-03T08:00:00Z","valueQuantity":{"value":6.1,"unit":"g/dL"},"referenceRange":[{"low":{"value":12},"high":{"value":16}},{"low":{"value":7},"type":{"text":"critical"}}]}}`,
		`{"resource":{"resourceType":"Encounter","id":"e1","status":"finished","class":{"code":"AMB"},"subject":{"reference":"Patient/p1"},"period":{"start":"2026-03-02"},"reasonCode":[{"text":"fever"}]}},{"resource":{"resourceType":"Observation","id":"e1-pulse","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"encounter":{"reference":"Encounter/e1"},"valueQuantity":{"value":96}}}`,
	} {
		f.Add([]byte(`{"resourceType":"Bundle","type":"collection","entry":[` + patient + `,` + entry + `]}`))
	}
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
		if c := m.Get(res.ChartID); c != nil {
			defer c.Doc().Close()
		}
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
