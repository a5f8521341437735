package fhir_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/record/fhir"
)

func TestIdentifierSystems(t *testing.T) {
	tests := []struct {
		record, fhir string
	}{
		{record.SystemAadhaar, "https://uidai.gov.in"},
		{record.SystemABHA, "https://healthid.ndhm.gov.in"},
		{record.SystemNationalID, "urn:chartsync:identifier:national-id"},
		{record.SystemClinic, "urn:chartsync:identifier:clinic"},
		{record.SystemPhone, "urn:chartsync:identifier:phone"},
		{"school-id", "urn:chartsync:identifier:school-id"},
		{"https://emr.example.org/mrn", "https://emr.example.org/mrn"},
		{fhir.SystemResource, fhir.SystemResource},
	}
	for _, tt := range tests {
		t.Run(tt.record, func(t *testing.T) {
			assert.Equal(t, tt.fhir, fhir.FHIRSystem(tt.record), "record system %s exports as", tt.record)
			back, ok := fhir.RecordSystem(tt.fhir)
			assert.True(t, ok)
			assert.Equal(t, tt.record, back, "FHIR system %s imports as", tt.fhir)
		})
	}
	back, ok := fhir.RecordSystem("HTTPS://Registry.example.org/ID")
	assert.True(t, ok)
	assert.Equal(t, "https://Registry.example.org/ID", back, "a URI's scheme is lower-cased, as record's systems are")
	_, ok = fhir.RecordSystem("")
	assert.False(t, ok, "an identifier without a system has no record system")
}

// resourceJSON exports a chart and returns its resources of a type, as
// JSON objects.
func resourceJSON(t *testing.T, c *record.Chart, typ string) []map[string]any {
	t.Helper()
	var b struct {
		Entry []struct {
			Resource map[string]any `json:"resource"`
		} `json:"entry"`
	}
	require.NoError(t, json.Unmarshal(exportJSON(t, c), &b))
	var out []map[string]any
	for _, e := range b.Entry {
		if e.Resource["resourceType"] == typ {
			out = append(out, e.Resource)
		}
	}
	return out
}

func code(v any) string {
	m, _ := v.(map[string]any)
	cs, _ := m["coding"].([]any)
	if len(cs) == 0 {
		return ""
	}
	c, _ := cs[0].(map[string]any)
	s, _ := c["code"].(string)
	return s
}

// roundTrip imports a chart's export into a new chart and returns its
// view.
func roundTrip(t *testing.T, c *record.Chart) record.View {
	t.Helper()
	m := newMemory()
	res := importNew(t, m, exportJSON(t, c))
	v, err := m.Chart(context.Background(), res.ChartID)
	require.NoError(t, err)
	return v
}

func TestDiagnosisStatuses(t *testing.T) {
	clinical := []string{"active", "recurrence", "relapse", "inactive", "remission", "resolved"}
	verification := []string{"unconfirmed", "provisional", "differential", "confirmed", "refuted"}
	for _, cs := range clinical {
		for _, vs := range verification {
			t.Run(cs+"/"+vs, func(t *testing.T) {
				b := newBuilder(t, 5, record.Register{GivenName: "A", FamilyName: "B", Sex: "female", EstimatedBirthYear: 1990, HomeClinic: "c1"})
				b.do(doctor, record.Diagnose{Text: "Asthma", ClinicalStatus: cs, VerificationStatus: vs})
				cond := resourceJSON(t, b.chart, "Condition")
				require.Len(t, cond, 1)
				assert.Equal(t, cs, code(cond[0]["clinicalStatus"]))
				assert.Equal(t, vs, code(cond[0]["verificationStatus"]))
				v := roundTrip(t, b.chart)
				require.Len(t, v.Diagnoses, 1)
				assert.Equal(t, cs, v.Diagnoses[0].ClinicalStatus)
				assert.Equal(t, vs, v.Diagnoses[0].VerificationStatus)
			})
		}
	}
}

func TestPrescriptionStatuses(t *testing.T) {
	tests := []struct {
		status string
		then   func(id string) record.Op
		fhir   string
	}{
		{record.StatusActive, nil, "active"},
		{record.StatusOnHold, func(id string) record.Op { return record.PutOnHold{PrescriptionID: id, Reason: "vomiting"} }, "on-hold"},
		{record.StatusStopped, func(id string) record.Op { return record.Discontinue{PrescriptionID: id, Reason: "rash"} }, "stopped"},
		{record.StatusCompleted, func(id string) record.Op { return record.Complete{PrescriptionID: id} }, "completed"},
	}
	for _, tt := range tests {
		t.Run(tt.status, func(t *testing.T) {
			b := newBuilder(t, 6, record.Register{GivenName: "A", FamilyName: "B", Sex: "male", EstimatedBirthYear: 1990, HomeClinic: "c1"})
			id := b.do(doctor, record.Prescribe{Drug: "Amoxicillin", Dose: 500, DoseUnit: "mg", Route: "oral", Frequency: "TDS"})
			if tt.then != nil {
				b.do(doctor, tt.then(id))
			}
			mr := resourceJSON(t, b.chart, "MedicationRequest")
			require.Len(t, mr, 1)
			assert.Equal(t, tt.fhir, mr[0]["status"])
			med := mr[0]["medicationCodeableConcept"].(map[string]any)
			assert.Equal(t, "Amoxicillin", med["text"])
			coding := med["coding"].([]any)[0].(map[string]any)
			assert.Equal(t, fhir.SystemATC, coding["system"])
			assert.Equal(t, "J01CA04", coding["code"])
			v := roundTrip(t, b.chart)
			require.Len(t, v.Prescriptions, 1)
			assert.Equal(t, tt.status, v.Prescriptions[0].Status)
		})
	}
}

func TestUncodedDrugIsTextOnly(t *testing.T) {
	b := newBuilder(t, 7, record.Register{GivenName: "A", FamilyName: "B", Sex: "male", EstimatedBirthYear: 1990, HomeClinic: "c1"})
	b.do(doctor, record.Prescribe{Drug: "Moringa leaf tea", Dose: 1, DoseUnit: "sachet", Route: "oral", Frequency: "OD"})
	mr := resourceJSON(t, b.chart, "MedicationRequest")
	med := mr[0]["medicationCodeableConcept"].(map[string]any)
	assert.Equal(t, map[string]any{"text": "Moringa leaf tea"}, med, "an uncoded drug is exported as text only")
	v := roundTrip(t, b.chart)
	assert.True(t, v.Prescriptions[0].Uncoded)
}

func TestLabInterpretation(t *testing.T) {
	tests := []struct {
		name string
		op   record.RecordLabResult
		code string
	}{
		{"low", record.RecordLabResult{Value: record.Ptr(9.1), RefLow: record.Ptr(12.0), RefHigh: record.Ptr(16.0)}, "L"},
		{"normal", record.RecordLabResult{Value: record.Ptr(13.0), RefLow: record.Ptr(12.0), RefHigh: record.Ptr(16.0)}, "N"},
		{"high", record.RecordLabResult{Value: record.Ptr(17.0), RefLow: record.Ptr(12.0), RefHigh: record.Ptr(16.0)}, "H"},
		{"critical low", record.RecordLabResult{Value: record.Ptr(6.0), RefLow: record.Ptr(12.0), CriticalLow: record.Ptr(7.0)}, "LL"},
		{"critical high", record.RecordLabResult{Value: record.Ptr(21.0), RefHigh: record.Ptr(16.0), CriticalHigh: record.Ptr(20.0)}, "HH"},
		{"text abnormal", record.RecordLabResult{TextValue: "positive", RefText: "negative", AbnormalTexts: []string{"positive"}}, "A"},
		{"text critical", record.RecordLabResult{TextValue: "severe", RefText: "negative", CriticalTexts: []string{"severe"}}, "AA"},
		{"text normal", record.RecordLabResult{TextValue: "negative", RefText: "negative"}, "N"},
		{"uninterpreted", record.RecordLabResult{TextValue: "see note"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBuilder(t, 8, record.Register{GivenName: "A", FamilyName: "B", Sex: "male", EstimatedBirthYear: 1990, HomeClinic: "c1"})
			op := tt.op
			op.Test, op.SpecimenAt = "Haemoglobin", t0
			if op.Value != nil {
				op.Unit, op.LOINC = "g/dL", "718-7"
			}
			b.do(labTech, op)
			obs := resourceJSON(t, b.chart, "Observation")
			require.Len(t, obs, 1)
			interp, _ := obs[0]["interpretation"].([]any)
			got := ""
			if len(interp) > 0 {
				got = code(interp[0])
			}
			assert.Equal(t, tt.code, got)
			want, err := b.chart.View()
			require.NoError(t, err)
			v := roundTrip(t, b.chart)
			require.Len(t, v.LabResults, 1)
			assert.Equal(t, want.LabResults[0].Interpretation, v.LabResults[0].Interpretation, "the result means the same after a round trip")
		})
	}
}

// TestAllergySeverity: record's severities map to FHIR's criticality and
// reaction severity; a bundle from elsewhere, without this package's
// extension, is read from those.
func TestAllergySeverity(t *testing.T) {
	tests := []struct {
		severity, criticality, reaction string
	}{
		{"mild", "low", "mild"},
		{"moderate", "low", "moderate"},
		{"severe", "high", "severe"},
		{"life-threatening", "high", "severe"},
	}
	for _, tt := range tests {
		t.Run(tt.severity, func(t *testing.T) {
			b := newBuilder(t, 9, record.Register{GivenName: "A", FamilyName: "B", Sex: "male", EstimatedBirthYear: 1990, HomeClinic: "c1"})
			b.do(nurse, record.AddAllergy{Substance: "Penicillin", Reaction: "rash", Severity: tt.severity})
			ai := resourceJSON(t, b.chart, "AllergyIntolerance")
			require.Len(t, ai, 1)
			assert.Equal(t, tt.criticality, ai[0]["criticality"])
			assert.Equal(t, tt.reaction, ai[0]["reaction"].([]any)[0].(map[string]any)["severity"])
			v := roundTrip(t, b.chart)
			assert.Equal(t, tt.severity, v.Allergies[0].Severity)
		})
	}
	foreign := []struct {
		fields, severity string
	}{
		{`"criticality":"high","reaction":[{"manifestation":[{"text":"wheeze"}],"severity":"moderate"}]`, "moderate"},
		{`"criticality":"high"`, "severe"},
		{`"criticality":"low"`, "mild"},
	}
	for _, tt := range foreign {
		t.Run("foreign "+tt.severity, func(t *testing.T) {
			data := fmt.Sprintf(`{"resourceType":"Bundle","type":"collection","entry":[
				{"resource":{"resourceType":"Patient","id":"p1","name":[{"family":"Achieng"}],"gender":"female","birthDate":"1990","managingOrganization":{"identifier":{"system":"urn:chartsync:clinic","value":"c1"}}}},
				{"resource":{"resourceType":"AllergyIntolerance","id":"a1","patient":{"reference":"Patient/p1"},"code":{"text":"Penicillin"},%s}}]}`, tt.fields)
			m := newMemory()
			res := importNew(t, m, []byte(data))
			v, err := m.Chart(context.Background(), res.ChartID)
			require.NoError(t, err)
			require.Len(t, v.Allergies, 1)
			assert.Equal(t, tt.severity, v.Allergies[0].Severity)
			assert.Equal(t, &record.Identifier{System: fhir.SystemResource, Value: "AllergyIntolerance/a1"}, v.Allergies[0].ExternalID)
		})
	}
}

// TestRedactedViewExportsWithoutPlaceholders: what a read policy hides is
// left out of the export, not written as "[hidden]".
func TestRedactedViewExportsWithoutPlaceholders(t *testing.T) {
	v, err := clinicalChart(t).View()
	require.NoError(t, err)
	policy := record.ReadPolicy{record.RoleRegistrationClerk: {record.SectionNotes}}
	data, err := fhir.ExportJSON(policy.Redact(v, record.RoleRegistrationClerk))
	require.NoError(t, err)
	assert.False(t, strings.Contains(string(data), record.Redacted), "a placeholder %q is exported", record.Redacted)
	assert.False(t, strings.Contains(string(data), "RDT positive"), "the hidden note is exported")
	assert.Contains(t, string(data), "fever and joint pain", "what the role may read is")
}
