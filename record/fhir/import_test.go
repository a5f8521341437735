package fhir_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/fhir/go/jsonformat/fhirvalidate"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/record/fhir"
)

// TestEveryResourceValidates checks every resource of every sample's
// export on its own with the library's R4 validation, and reads each
// golden file back through the validating unmarshaller.
func TestEveryResourceValidates(t *testing.T) {
	for _, s := range samples {
		t.Run(s.name, func(t *testing.T) {
			v, err := s.chart(t).View()
			require.NoError(t, err)
			b, err := fhir.Export(v)
			require.NoError(t, err)
			for _, e := range b.GetEntry() {
				cr := e.GetResource()
				require.NoError(t, fhirvalidate.Validate(cr), "a resource fails R4 validation: %v", cr)
			}
			out, err := fhir.Marshal(b)
			require.NoError(t, err)
			var doc struct {
				Entry []struct {
					Resource struct {
						ResourceType string `json:"resourceType"`
					} `json:"resource"`
				} `json:"entry"`
			}
			require.NoError(t, json.Unmarshal(out, &doc))
			types := map[string]bool{}
			for _, e := range doc.Entry {
				types[e.Resource.ResourceType] = true
			}
			want := map[string][]string{
				"registration": {"Patient", "Provenance", "AllergyIntolerance", "Observation", "Encounter"},
				"clinical": {"Patient", "Provenance", "AllergyIntolerance", "Condition", "MedicationRequest",
					"Observation", "Encounter"},
				"merged": {"Patient", "Provenance", "AllergyIntolerance", "MedicationRequest", "Observation"},
			}
			for _, typ := range want[s.name] {
				assert.True(t, types[typ], "the export of %s holds a %s", s.name, typ)
			}
			data, err := os.ReadFile(filepath.Join("testdata", s.name+".json"))
			require.NoError(t, err)
			_, err = fhir.Unmarshal(data)
			require.NoError(t, err, "the golden file reads back as valid R4")
		})
	}
	// The validation is not vacuous: an Observation without its required
	// status is refused.
	bad := `{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Observation","id":"o1","code":{"text":"Hb"}}}]}`
	_, err := fhir.Unmarshal([]byte(bad))
	require.ErrorIs(t, err, fhir.ErrMalformed, "an Observation without a status is not valid R4")
}

// existing makes the clinical sample chart and a target holding it.
func existing(t *testing.T) (*fhir.Memory, *record.Chart) {
	c := clinicalChart(t)
	m := newMemory()
	m.Add(c)
	return m, c
}

func TestMalformedInputChangesNothing(t *testing.T) {
	golden, err := os.ReadFile(filepath.Join("testdata", "clinical.json"))
	require.NoError(t, err)
	patient := `{"resource":{"resourceType":"Patient","id":"p1","name":[{"family":"Achieng"}],"gender":"female","birthDate":"1990"}}`
	bundle := func(entries ...string) string {
		return `{"resourceType":"Bundle","type":"collection","entry":[` + strings.Join(entries, ",") + `]}`
	}
	tests := []struct {
		name, data string
	}{
		{"not JSON", `{"resourceType":"Bundle",`},
		{"empty", ``},
		{"truncated golden file", string(golden[:len(golden)/2])},
		{"not a bundle", `{"resourceType":"Patient","id":"p1"}`},
		{"unknown element", bundle(`{"resource":{"resourceType":"Patient","id":"p1","colour":"blue"}}`)},
		{"bad date", bundle(`{"resource":{"resourceType":"Patient","id":"p1","birthDate":"1990-13-45"}}`)},
		{"two patients", bundle(patient, `{"resource":{"resourceType":"Patient","id":"p2"}}`)},
		{"another patient's result", bundle(patient, `{"resource":{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"Hb"},"subject":{"reference":"Patient/p9"},"valueString":"ok"}}`)},
		{"bad Aadhaar", bundle(`{"resource":{"resourceType":"Patient","id":"p1","identifier":[{"system":"https://uidai.gov.in","value":"234567890123"}]}}`)},
		{"unknown allergy status", bundle(patient, `{"resource":{"resourceType":"AllergyIntolerance","id":"a1","patient":{"reference":"Patient/p1"},"code":{"text":"x"},"clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical","code":"gone"}]}}}`)},
		{"bad number", bundle(patient, `{"resource":{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"Hb"},"valueQuantity":{"value":1e999}}}`)},
		{"no resource", bundle(`{"fullUrl":"urn:uuid:0b8c1d7e-3f5a-4c2b-9d1e-7a6b5c4d3e2f"}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, c := existing(t)
			before := c.Doc().Heads()
			b, err := fhir.Decode([]byte(tt.data))
			if err == nil {
				_, err = fhir.Import(context.Background(), m, c.ID(), importer, "", b)
			}
			require.Error(t, err)
			assert.ErrorIs(t, err, fhir.ErrMalformed)
			var me *fhir.MalformedError
			assert.True(t, errors.As(err, &me), "the error is a *MalformedError: %v", err)
			assert.Equal(t, before, c.Doc().Heads(), "the chart is unchanged")
		})
	}
	t.Run("too large", func(t *testing.T) {
		_, err := fhir.Decode(make([]byte, fhir.MaxBundleSize+1))
		assert.ErrorIs(t, err, fhir.ErrMalformed)
	})
}

// TestInvalidForRecordChangesNothing: a bundle that is valid R4 but holds
// a value record refuses fails before anything is written.
func TestInvalidForRecordChangesNothing(t *testing.T) {
	m, c := existing(t)
	before := c.Doc().Heads()
	data := `{"resourceType":"Bundle","type":"collection","entry":[
		{"resource":{"resourceType":"AllergyIntolerance","id":"a9","code":{"text":"Latex"},"patient":{"reference":"Patient/` + c.ID() + `"},"criticality":"low"}},
		{"resource":{"resourceType":"MedicationRequest","id":"m9","status":"active","intent":"order","subject":{"reference":"Patient/` + c.ID() + `"},
		 "medicationCodeableConcept":{"text":"Amoxicillin"},"dosageInstruction":[{"route":{"text":"by magic"},"timing":{"code":{"text":"TDS"}},
		 "doseAndRate":[{"doseQuantity":{"value":500,"unit":"mg"}}]}]}}]}`
	b, err := fhir.Decode([]byte(data))
	require.NoError(t, err)
	_, err = fhir.Import(context.Background(), m, c.ID(), importer, "", b)
	require.ErrorIs(t, err, record.ErrInvalid, "a route record does not know is refused")
	assert.Equal(t, before, c.Doc().Heads(), "the allergy before it was not written either")
}

// TestImportChecksTheImportersRole: a lab technician may import lab
// results, not prescriptions; a refused import writes nothing.
func TestImportChecksTheImportersRole(t *testing.T) {
	m, c := existing(t)
	before := c.Doc().Heads()
	rx := `{"resourceType":"Bundle","type":"collection","entry":[
		{"resource":{"resourceType":"Observation","id":"o9","status":"final","code":{"text":"Glucose"},"subject":{"reference":"Patient/` + c.ID() + `"},"effectiveDateTime":"2026-03-03T08:00:00Z","valueQuantity":{"value":5.4,"unit":"mmol/L"}}},
		{"resource":{"resourceType":"MedicationRequest","id":"m9","status":"active","intent":"order","subject":{"reference":"Patient/` + c.ID() + `"},
		 "medicationCodeableConcept":{"text":"Amoxicillin"},"dosageInstruction":[{"route":{"text":"oral"},"timing":{"code":{"text":"TDS"}},
		 "doseAndRate":[{"doseQuantity":{"value":500,"unit":"mg"}}]}]}}]}`
	b, err := fhir.Decode([]byte(rx))
	require.NoError(t, err)
	_, err = fhir.Import(context.Background(), m, c.ID(), labTech, "", b)
	require.ErrorIs(t, err, record.ErrForbidden)
	var fe *record.ForbiddenError
	require.ErrorAs(t, err, &fe)
	assert.Equal(t, before, c.Doc().Heads(), "nothing was written")

	labs := `{"resourceType":"Bundle","type":"collection","entry":[
		{"resource":{"resourceType":"Observation","id":"o9","status":"final","code":{"text":"Glucose"},"subject":{"reference":"Patient/` + c.ID() + `"},"effectiveDateTime":"2026-03-03T08:00:00Z","valueQuantity":{"value":5.4,"unit":"mmol/L"}}}]}`
	b, err = fhir.Decode([]byte(labs))
	require.NoError(t, err)
	res, err := fhir.Import(context.Background(), m, c.ID(), labTech, "", b)
	require.NoError(t, err)
	assert.Equal(t, 1, res.Added)
}

// TestUnknownResourcesAreReported: resources of types the mapping does
// not import are listed in the result, and the rest is imported.
func TestUnknownResourcesAreReported(t *testing.T) {
	data := `{"resourceType":"Bundle","type":"collection","entry":[
		{"resource":{"resourceType":"Patient","id":"p1","name":[{"family":"Achieng"}],"gender":"female","birthDate":"1990"}},
		{"resource":{"resourceType":"Immunization","id":"imm-1","status":"completed","vaccineCode":{"text":"BCG"},"patient":{"reference":"Patient/p1"},"occurrenceDateTime":"2026-01-05"}},
		{"resource":{"resourceType":"Organization","id":"org-1","name":"Kamuga dispensary"}},
		{"resource":{"resourceType":"Observation","id":"o1","status":"registered","code":{"text":"Hb"},"subject":{"reference":"Patient/p1"}}},
		{"resource":{"resourceType":"Condition","id":"c1","subject":{"reference":"Patient/p1"},"code":{"text":"Asthma"}}}]}`
	b, err := fhir.Decode([]byte(data))
	require.NoError(t, err)
	m := newMemory()
	res, err := fhir.Import(context.Background(), m, "", importer, "kamuga-dispensary", b)
	require.NoError(t, err)
	assert.Equal(t, []string{"Immunization/imm-1", "Organization/org-1"}, res.Unknown)
	assert.Equal(t, []fhir.Skipped{{Resource: "Observation/o1", Reason: "status registered: the chart records only preliminary, final and corrected results"}}, res.Skipped)
	v, err := m.Chart(context.Background(), res.ChartID)
	require.NoError(t, err)
	assert.Equal(t, "kamuga-dispensary", v.Patient.HomeClinic, "the home clinic given stands in for a bundle that names none")
	require.Len(t, v.Diagnoses, 1)
	assert.Equal(t, "Asthma", v.Diagnoses[0].Text)
}

// TestImportUpdatesMatchedEntries: a later bundle from the same source
// moves the entries it matches by their external IDs through record's
// operations, and only once.
func TestImportUpdatesMatchedEntries(t *testing.T) {
	m, c := existing(t)
	orig, err := c.View()
	require.NoError(t, err)
	var metformin, hb, viral, penicillin string
	for _, p := range orig.Prescriptions {
		if p.Drug == "Metformin" {
			metformin = p.ID
		}
	}
	for _, l := range orig.LabResults {
		switch l.Test {
		case "Haemoglobin":
			hb = l.ID
		case "HIV viral load":
			viral = l.ID
		}
	}
	penicillin = orig.Allergies[0].ID
	data := exportJSON(t, c)
	var doc map[string]any
	require.NoError(t, json.Unmarshal(data, &doc))
	for _, e := range doc["entry"].([]any) {
		r := e.(map[string]any)["resource"].(map[string]any)
		switch r["id"] {
		case metformin:
			r["status"] = "stopped"
			r["statusReason"] = map[string]any{"text": "lactic acidosis risk"}
		case hb:
			r["valueQuantity"].(map[string]any)["value"] = 10.2
			r["status"] = "corrected"
		case viral:
			r["status"] = "final"
		case penicillin:
			r["extension"] = []any{map[string]any{"url": "https://chartsync.github.io/fhir/StructureDefinition/allergy-severity", "valueString": "severe"}}
		}
	}
	changed, err := json.Marshal(doc)
	require.NoError(t, err)
	b, err := fhir.Decode(changed)
	require.NoError(t, err)
	res, err := fhir.Import(context.Background(), m, c.ID(), importer, "", b)
	require.NoError(t, err)
	assert.Equal(t, 4, res.Updated, "%+v", res)
	assert.Zero(t, res.Added)
	v, err := c.View()
	require.NoError(t, err)
	for _, p := range v.Prescriptions {
		if p.ID == metformin {
			assert.Equal(t, record.StatusStopped, p.Status)
			assert.Equal(t, "lactic acidosis risk", p.StatusReason)
		}
	}
	for _, l := range v.LabResults {
		switch l.ID {
		case hb:
			assert.Equal(t, 10.2, *l.Value)
			assert.Equal(t, record.StatusCorrected, l.Status)
		case viral:
			assert.Equal(t, record.StatusFinal, l.Status)
		}
	}
	assert.Equal(t, "severe", v.Allergies[0].Severity)

	heads := c.Doc().Heads()
	again, err := fhir.Import(context.Background(), m, c.ID(), importer, "", b)
	require.NoError(t, err)
	assert.Zero(t, again.Changes, "%+v", again)
	assert.Equal(t, heads, c.Doc().Heads())
}

// TestPartialResourcesChangeNothing: a bundle from elsewhere that leaves
// out elements of a matched entry (a frequency, a reaction) does not
// change them, so importing it twice changes nothing.
func TestPartialResourcesChangeNothing(t *testing.T) {
	m, c := existing(t)
	v, err := c.View()
	require.NoError(t, err)
	rx, al := v.Prescriptions[0], v.Allergies[0]
	data := `{"resourceType":"Bundle","type":"collection","entry":[
		{"resource":{"resourceType":"MedicationRequest","id":"` + rx.ID + `","status":"active","intent":"order","subject":{"reference":"Patient/` + c.ID() + `"},
		 "medicationCodeableConcept":{"text":"Metformin"},"dosageInstruction":[{"doseAndRate":[{"doseQuantity":{"value":1000}}]}]}},
		{"resource":{"resourceType":"AllergyIntolerance","id":"` + al.ID + `","code":{"text":"Penicillin"},"patient":{"reference":"Patient/` + c.ID() + `"}}}]}`
	b, err := fhir.Decode([]byte(data))
	require.NoError(t, err)
	res, err := fhir.Import(context.Background(), m, c.ID(), doctor, "", b)
	require.NoError(t, err)
	assert.Equal(t, 1, res.Updated, "the dose is revised: %+v", res)
	after, err := c.View()
	require.NoError(t, err)
	assert.Equal(t, 1000.0, after.Prescriptions[0].Dose)
	assert.Equal(t, rx.Frequency, after.Prescriptions[0].Frequency, "a frequency the bundle leaves out is kept")
	assert.Equal(t, al.Reaction, after.Allergies[0].Reaction)
	assert.Equal(t, al.Severity, after.Allergies[0].Severity)
	again, err := fhir.Import(context.Background(), m, c.ID(), doctor, "", b)
	require.NoError(t, err)
	assert.Zero(t, again.Changes, "%+v", again)
}
