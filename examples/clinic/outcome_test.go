package main

import (
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/replica/store/sqlite/faultvfs"
)

// nurseWithPatient sets up a device in dir with a nurse logged in and one
// registered patient, and returns the chart's short ID.
func nurseWithPatient(t *testing.T, dir string) string {
	t.Helper()
	code, _, errOut := clinicIn(t, dir, twice("admin-pass-1"), "init", "-clinic", "kamuga", "-device", "tab-1", "-admin", "u-admin", "-admin-name", "Admin")
	require.Zero(t, code, errOut)
	code, _, errOut = clinicIn(t, dir, "admin-pass-1\n", "login", "-user", "u-admin")
	require.Zero(t, code, errOut)
	code, _, errOut = clinicIn(t, dir, twice("nurse-pass-1"), "user", "add", "-id", "u1", "-name", "Nurse A", "-role", "nurse")
	require.Zero(t, code, errOut)
	code, _, errOut = clinicIn(t, dir, "nurse-pass-1\n", "login", "-user", "u1")
	require.Zero(t, code, errOut)
	code, out, errOut := clinic(t, dir, "register", "-given", "Wanjiru", "-family", "Mwangi", "-sex", "female", "-born-year", "1988")
	require.Zero(t, code, errOut)
	id := regexp.MustCompile(`chart ([0-9a-f-]{36})`).FindStringSubmatch(out)
	require.Len(t, id, 2, out)
	return id[1][:8]
}

// TestEditWithUnknownOutcome: when the disk fails so that the replica
// cannot tell whether an edit was saved, the app reads the chart back and
// tells the nurse which it was, and whether to enter it again; the chart
// never ends up with the entry twice.
func TestEditWithUnknownOutcome(t *testing.T) {
	require.NoError(t, faultvfs.Install())
	tests := []struct {
		name  string
		rules []faultvfs.Rule
		saved bool
	}{
		// The commit's fsync fails (the first fsync of a command's
		// fresh log is of its header) and the disk then turns
		// read-only: the entry is in the log, and a restart finds it.
		{"saved", append([]faultvfs.Rule{faultvfs.FailSync(faultvfs.WAL, 1, 1)}, faultvfs.Dies(0)...), true},
		// No fsync succeeds: the store's attempt to fence the commit off
		// is written but not synced, and it leaves the entry out.
		{"not saved", []faultvfs.Rule{faultvfs.FailSync(faultvfs.All, 0, -1)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			short := nurseWithPatient(t, dir)

			faultvfs.Arm(dir, tt.rules...)
			code, out, errOut := clinic(t, dir, "allergy", "-substance", "Penicillin", "-severity", "severe", short)
			faultvfs.Disarm()
			require.Positive(t, faultvfs.Fired(), "the disk failed")
			assert.Equal(t, 1, code, "a storage failure is not a success: %s", out)
			if tt.saved {
				assert.Contains(t, errOut, "the entry was saved")
				assert.Contains(t, errOut, "Penicillin", "it says which entry")
				assert.Contains(t, errOut, "Do not enter it again")
			} else {
				assert.Contains(t, errOut, "NOT saved")
				assert.Contains(t, errOut, "run the same command again")
			}
			assert.Contains(t, errOut, "storage", "it says what went wrong")

			if !tt.saved {
				code, _, errOut = clinic(t, dir, "allergy", "-substance", "Penicillin", "-severity", "severe", short)
				require.Zero(t, code, errOut)
			}
			code, out, errOut = clinic(t, dir, "show", short)
			require.Zero(t, code, errOut)
			assert.Equal(t, 1, strings.Count(out, "Penicillin"), "the allergy is in the chart once:\n%s", out)
		})
	}
}

// TestRegisterWithUnknownOutcome: a registration whose outcome the
// replica cannot tell is looked for, so that the clerk does not register
// the patient twice.
func TestRegisterWithUnknownOutcome(t *testing.T) {
	require.NoError(t, faultvfs.Install())
	dir := t.TempDir()
	nurseWithPatient(t, dir)
	faultvfs.Arm(dir, append([]faultvfs.Rule{faultvfs.FailSync(faultvfs.WAL, 1, 1)}, faultvfs.Dies(0)...)...)
	code, _, errOut := clinic(t, dir, "register", "-given", "Asha", "-family", "Otieno", "-sex", "female", "-born-year", "1990")
	faultvfs.Disarm()
	require.Positive(t, faultvfs.Fired(), "the disk failed")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "the registration was saved")
	assert.Contains(t, errOut, "Do not register")
	id := regexp.MustCompile(`chart ([0-9a-f-]{36})`).FindStringSubmatch(errOut)
	require.Len(t, id, 2, "the message names the chart: %s", errOut)

	code, out, errOut := clinic(t, dir, "find", "otieno")
	require.Zero(t, code, errOut)
	assert.Equal(t, 1, strings.Count(out, "Otieno"), "one chart for the patient:\n%s", out)
	assert.Contains(t, out, id[1][:8])
}

// TestFullDiskStillShowsCharts: with no free space left on the device,
// charts can still be found and shown; an edit fails saying the disk is
// full, that nothing was saved and what to do; once there is room it
// succeeds.
func TestFullDiskStillShowsCharts(t *testing.T) {
	require.NoError(t, faultvfs.Install())
	dir := t.TempDir()
	short := nurseWithPatient(t, dir)
	code, _, errOut := clinic(t, dir, "allergy", "-substance", "Sulfa", "-severity", "mild", short)
	require.Zero(t, code, errOut)

	faultvfs.Arm(dir, faultvfs.DiskFull(0)...)
	defer faultvfs.Disarm()
	code, out, errOut := clinic(t, dir, "find", "mwangi")
	require.Zero(t, code, "charts can be found on a full disk: %s", errOut)
	assert.Contains(t, out, short)
	code, out, errOut = clinic(t, dir, "show", short)
	require.Zero(t, code, "a chart can be shown on a full disk: %s", errOut)
	assert.Contains(t, out, "Sulfa")

	code, _, errOut = clinic(t, dir, "allergy", "-substance", "Penicillin", "-severity", "severe", short)
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "disk is full")
	assert.Contains(t, errOut, "nothing was saved")
	assert.Contains(t, errOut, "Free space")

	faultvfs.Disarm()
	code, _, errOut = clinic(t, dir, "allergy", "-substance", "Penicillin", "-severity", "severe", short)
	require.Zero(t, code, "with room again the edit is saved: %s", errOut)
	code, out, errOut = clinic(t, dir, "show", short)
	require.Zero(t, code, errOut)
	assert.Equal(t, 1, strings.Count(out, "Penicillin"), out)
}
