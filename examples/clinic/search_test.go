package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestFindSearchesNamesAsTyped: find takes several words in any order,
// case and accents, and spelling variants, so "wanjiru mwangi" and
// "Wanjiro" both find Wanjiru Mwangi; every word must match; no words
// list every patient.
func TestFindSearchesNamesAsTyped(t *testing.T) {
	dir := t.TempDir()
	short := nurseWithPatient(t, dir)
	code, _, errOut := clinic(t, dir, "register", "-given", "Achieng", "-family", "Otieno", "-sex", "female", "-born-year", "1975")
	require.Zero(t, code, errOut)

	for _, q := range [][]string{{"wanjiru", "mwangi"}, {"Wanjiro"}, {"MWANGI", "Wanjíru"}, {"wanj"}} {
		code, out, errOut := clinic(t, dir, append([]string{"find"}, q...)...)
		require.Zero(t, code, errOut)
		assert.Contains(t, out, short, "find %q", q)
		assert.NotContains(t, out, "Otieno", "find %q", q)
	}
	code, out, errOut := clinic(t, dir, "find", "wanjiru", "otieno")
	require.Zero(t, code, errOut)
	assert.Contains(t, out, "No patient found", "every word must match")
	code, out, errOut = clinic(t, dir, "find")
	require.Zero(t, code, errOut)
	assert.Contains(t, out, short, "find with no words lists every patient")
	assert.Contains(t, out, "Otieno")
}
