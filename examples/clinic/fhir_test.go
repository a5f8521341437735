package main

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/record/fhir"
)

// clinicianDevice sets up a device in dir with a clinician logged in.
func clinicianDevice(t *testing.T, dir, clinic, device string) {
	t.Helper()
	code, _, errOut := clinicIn(t, dir, twice("admin-pass-1"), "init", "-clinic", clinic, "-device", device, "-admin", "u-admin", "-admin-name", "Admin")
	require.Zero(t, code, errOut)
	code, _, errOut = clinicIn(t, dir, "admin-pass-1\n", "login", "-user", "u-admin")
	require.Zero(t, code, errOut)
	code, _, errOut = clinicIn(t, dir, twice("doctor-pass-1"), "user", "add", "-id", "u1", "-name", "Dr A", "-role", "clinician")
	require.Zero(t, code, errOut)
	code, _, errOut = clinicIn(t, dir, "doctor-pass-1\n", "login", "-user", "u1")
	require.Zero(t, code, errOut)
}

// TestExportAndImportFHIR: a chart exported on one device is a valid R4
// bundle; imported on another it makes a new chart, and importing it
// again, or on the device it came from, changes nothing.
func TestExportAndImportFHIR(t *testing.T) {
	one, two := t.TempDir(), t.TempDir()
	clinicianDevice(t, one, "kamuga", "tab-1")
	code, out, errOut := clinic(t, one, "register", "-given", "Wanjiru", "-family", "Mwangi", "-sex", "female", "-born-year", "1988")
	require.Zero(t, code, errOut)
	id := regexp.MustCompile(`chart ([0-9a-f-]{36})`).FindStringSubmatch(out)
	require.Len(t, id, 2, out)
	short := id[1][:8]
	code, _, errOut = clinic(t, one, "prescribe", "-drug", "Amoxil", "-dose", "500", "-unit", "mg", "-freq", "TDS", short)
	require.Zero(t, code, errOut)
	code, _, errOut = clinic(t, one, "allergy", "-substance", "Penicillin", "-severity", "severe", short)
	require.Zero(t, code, errOut)

	code, _, errOut = clinic(t, one, "export-fhir", "-chart", short)
	assert.Equal(t, 2, code, "export-fhir without -out is a usage error")
	assert.Contains(t, errOut, "-out")

	file := filepath.Join(t.TempDir(), "wanjiru.fhir.json")
	code, out, errOut = clinic(t, one, "export-fhir", "-chart", short, "-out", file)
	require.Zero(t, code, errOut)
	assert.Contains(t, out, "Wrote the chart of Wanjiru Mwangi")
	data, err := os.ReadFile(file)
	require.NoError(t, err)
	b, err := fhir.Decode(data)
	require.NoError(t, err, "the exported file is a valid R4 bundle")
	assert.Equal(t, id[1], b.PatientID)

	code, out, errOut = clinic(t, one, "import-fhir", "-in", file)
	require.Zero(t, code, errOut)
	assert.Contains(t, out, "already holds everything", "a chart's own export changes nothing on import")

	clinicianDevice(t, two, "siaya", "tab-9")
	code, out, errOut = clinic(t, two, "import-fhir", "-in", file)
	require.Zero(t, code, errOut)
	assert.Contains(t, out, "Imported into a new chart")
	assert.Contains(t, out, "2 entries added")
	assert.Contains(t, out, "managing organization kamuga is not the new chart's home clinic siaya", "the home clinic a new chart gets is said")
	code, out, errOut = clinic(t, two, "import-fhir", "-in", file)
	require.Zero(t, code, errOut)
	assert.Contains(t, out, "nothing changed", "importing the same file again finds the chart it made")
	code, out, _ = clinic(t, two, "find", "Wanjiru")
	assert.Zero(t, code)
	assert.Len(t, regexp.MustCompile(`Wanjiru Mwangi`).FindAllString(out, -1), 1, "one chart for the patient on the second device: %s", out)

	bad := filepath.Join(t.TempDir(), "bad.json")
	require.NoError(t, os.WriteFile(bad, data[:len(data)/2], 0o600))
	code, _, errOut = clinic(t, two, "import-fhir", "-in", bad)
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "nothing imported")
}
