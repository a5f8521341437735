package main

import (
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Prescribing says whether the drug dictionary coded the drug; diagnose
// takes FHIR's clinical and verification statuses; lab takes text values,
// text ranges and LOINC codes.
func TestClinicCodedDrugsDiagnosesAndTextLabs(t *testing.T) {
	dir := t.TempDir()
	code, _, errOut := clinicIn(t, dir, twice("admin-pass-1"), "init", "-clinic", "kamuga", "-device", "tab-1", "-admin", "u-admin", "-admin-name", "Admin")
	require.Zero(t, code, errOut)
	code, _, errOut = clinicIn(t, dir, "admin-pass-1\n", "login", "-user", "u-admin")
	require.Zero(t, code, errOut)
	code, _, errOut = clinicIn(t, dir, twice("doctor-pass-1"), "user", "add", "-id", "u1", "-name", "Dr A", "-role", "clinician")
	require.Zero(t, code, errOut)
	code, _, errOut = clinicIn(t, dir, "doctor-pass-1\n", "login", "-user", "u1")
	require.Zero(t, code, errOut)
	code, out, errOut := clinic(t, dir, "register", "-given", "Wanjiru", "-sex", "female", "-born-year", "1988")
	require.Zero(t, code, errOut)
	id := regexp.MustCompile(`chart ([0-9a-f-]{36})`).FindStringSubmatch(out)
	require.Len(t, id, 2, out)
	short := id[1][:8]

	code, out, errOut = clinic(t, dir, "prescribe", "-drug", "Amoxil", "-dose", "500", "-unit", "mg", "-freq", "TDS", short)
	require.Zero(t, code, errOut)
	assert.Contains(t, out, "coded as J01CA04 amoxicillin")
	code, out, errOut = clinic(t, dir, "prescribe", "-drug", "Grandmother's tonic", "-dose", "5", "-unit", "ml", "-freq", "OD", short)
	require.Zero(t, code, errOut)
	assert.Contains(t, out, "not in the dictionary: recorded as uncoded")
	code, _, errOut = clinic(t, dir, "prescribe", "-drug", "Amoxil", "-atc", "N02BE01", "-dose", "500", "-unit", "mg", "-freq", "TDS", short)
	assert.Equal(t, 1, code, "a code of another drug is refused")
	assert.Contains(t, errOut, "paracetamol")
	code, out, errOut = clinic(t, dir, "allergy", "-substance", "Penicillin", "-severity", "severe", short)
	require.Zero(t, code, errOut)
	assert.Contains(t, out, "NEW ALERT", "the coded amoxicillin is a penicillin")

	code, out, errOut = clinic(t, dir, "diagnose", "-text", "Tuberculosis", "-clinical", "relapse", "-verification", "confirmed", short)
	require.Zero(t, code, errOut)
	assert.Contains(t, out, "relapse, confirmed")
	code, _, errOut = clinic(t, dir, "diagnose", "-text", "Asthma", "-clinical", "chronic", short)
	assert.Equal(t, 1, code, "chronic is no FHIR clinical status")
	assert.Contains(t, errOut, "clinical")

	code, out, errOut = clinic(t, dir, "lab", "-test", "Malaria RDT", "-text", "Positive", "-range", "negative", "-abnormal", "positive",
		"-critical-text", "invalid", "-loinc", "70569-9", short)
	require.Zero(t, code, errOut)
	assert.Contains(t, out, "Positive")
	code, _, errOut = clinic(t, dir, "lab", "-test", "Haemoglobin", "-value", "9", "-unit", "g/dL", "-loinc", "718-8", short)
	assert.Equal(t, 1, code, "a LOINC code with a wrong check digit is refused")
	assert.Contains(t, errOut, "check digit")
	code, out, errOut = clinic(t, dir, "show", short)
	require.Zero(t, code, errOut)
	assert.Contains(t, out, "Positive")
}
