package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestEditsWithTheClockAt1970: on a device whose clock was reset to 1970,
// a patient born in 1988 has her village changed and an allergy added,
// and one born in 1990 is registered (no
// "not a plausible birth year"), and the nurse is warned that the clock
// is wrong and to set it; a birth year after this year is still refused,
// the refusal naming the clock.
func TestEditsWithTheClockAt1970(t *testing.T) {
	dir := t.TempDir()
	chart := nurseWithPatient(t, dir) // born 1988, registered with the true clock
	deviceClock = func() time.Time { return time.Unix(0, 0).UTC() }
	t.Cleanup(func() { deviceClock = time.Now })

	code, out, errOut := clinic(t, dir, "edit-patient", "-village", "Lwanda", chart)
	require.Zero(t, code, "changing the village is refused: %s", errOut)
	assert.Contains(t, out, "Saved")
	assert.Contains(t, out, "Warning: the device clock reads 1970-01-01")

	code, out, errOut = clinic(t, dir, "allergy", "-substance", "penicillin", "-severity", "severe", chart)
	require.Zero(t, code, errOut)
	assert.Contains(t, out, "Saved")
	assert.Contains(t, out, "Warning: the device clock reads 1970-01-01")
	assert.Contains(t, out, "set the device's date and time")

	code, out, errOut = clinic(t, dir, "register", "-given", "Baraka", "-family", "Otieno", "-sex", "male", "-born-year", "1990")
	require.Zero(t, code, errOut)
	assert.Contains(t, out, "Warning: the device clock reads 1970-01-01")

	code, _, errOut = clinic(t, dir, "register", "-given", "Imani", "-family", "Otieno", "-sex", "female", "-born-year", "2999")
	assert.Equal(t, 1, code, "a birth year after this year is refused")
	assert.Contains(t, errOut, "clock")
}
