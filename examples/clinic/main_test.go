package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"filippo.io/age"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/device/keyring"
	"github.com/chartsync/chartsync/device/login"
)

// clinic runs one command line against dir and returns its output.
func clinic(t *testing.T, dir string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return clinicIn(t, dir, "", args...)
}

// clinicIn runs one command line against dir with input on stdin (the
// passwords it asks for, one per line).
func clinicIn(t *testing.T, dir, input string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	if len(args) > 0 && args[0] == "init" && slices.Contains(args, "-admin") && !slices.Contains(args, "-recovery") && !slices.Contains(args, "-recovery-out") {
		args = append(slices.Clone(args), "-recovery", testRecovery.Recipient().String())
	}
	code = run(context.Background(), append([]string{"-dir", dir}, args...), strings.NewReader(input), &out, &errOut)
	return code, out.String(), errOut.String()
}

// testRecovery is the recovery key of the devices tests set up with an
// administrator (clinicIn gives init its recipient when none is given).
var testRecovery = func() *age.X25519Identity {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		panic(err)
	}
	return id
}()

// TestMain makes the app's password derivations cheap: every login
// derives a key from the password twice (the keyring's and the roster's).
func TestMain(m *testing.M) {
	keyringConfig = keyring.Config{Params: keyring.Params{Memory: 64, Time: 1, Threads: 1}}
	passwordParams = login.Params{Memory: 64, Time: 1, Threads: 1}
	os.Exit(m.Run())
}

// twice is a new password as the commands that set one read it.
func twice(pw string) string { return pw + "\n" + pw + "\n" }

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	return data
}

func TestClinicWorkflow(t *testing.T) {
	dir := t.TempDir()
	code, _, errOut := clinic(t, dir, "register", "-given", "A")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "clinic init", "an uninitialised device must say how to set it up")

	code, _, errOut = clinic(t, dir, "init", "-clinic", "kamuga dispensary", "-device", "tab-1")
	assert.Equal(t, 2, code, "a clinic ID with a space is a usage error")
	assert.Contains(t, errOut, "letters, digits")
	code, _, errOut = clinicIn(t, dir, twice("admin-pass-1"), "init", "-clinic", "kamuga", "-device", "tab-1", "-admin", "u-admin", "-admin-name", "Admin")
	require.Zero(t, code, errOut)
	code, _, errOut = clinic(t, dir, "init", "-clinic", "other", "-device", "tab-2")
	assert.Equal(t, 1, code, "a device cannot be set up twice")
	assert.Contains(t, errOut, "already set up")

	code, _, errOut = clinic(t, dir, "register", "-given", "Wanjiru", "-sex", "female", "-born-year", "1988")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "clinic login")

	code, _, errOut = clinicIn(t, dir, "admin-pass-1\n", "login", "-user", "u-admin")
	require.Zero(t, code, errOut)
	code, _, errOut = clinicIn(t, dir, twice("nurse-pass-1"), "user", "add", "-id", "u1", "-name", "Nurse A", "-role", "surgeon")
	assert.Equal(t, 2, code, "an unknown role is refused")
	assert.Contains(t, errOut, "role")
	code, _, errOut = clinicIn(t, dir, twice("nurse-pass-1"), "user", "add", "-id", "u1", "-name", "Nurse A", "-role", "nurse")
	require.Zero(t, code, errOut)
	code, _, errOut = clinicIn(t, dir, twice("lab-pass-22"), "user", "add", "-id", "u2", "-name", "Lab B", "-role", "lab-technician")
	require.Zero(t, code, errOut)
	code, _, errOut = clinicIn(t, dir, "nurse-pass-1\n", "login", "-user", "u1")
	require.Zero(t, code, errOut)

	code, out, errOut := clinic(t, dir, "register", "-given", "Wanjiru", "-family", "Mwangi", "-sex", "female", "-born-year", "1988", "-village", "Kamuga")
	require.Zero(t, code, errOut)
	id := regexp.MustCompile(`chart ([0-9a-f-]{36})`).FindStringSubmatch(out)
	require.Len(t, id, 2, "register prints the chart ID: %s", out)
	short := id[1][:8]

	code, out, _ = clinic(t, dir, "find", "wanj")
	require.Zero(t, code)
	assert.Contains(t, out, short)
	assert.Contains(t, out, "Kamuga")

	code, _, errOut = clinic(t, dir, "allergy", "-substance", "Penicillin", "-severity", "severe", short)
	require.Zero(t, code, errOut)
	code, out, errOut = clinic(t, dir, "prescribe", "-drug", "Amoxicillin", "-dose", "500", "-unit", "mg", "-freq", "TDS", short)
	require.Zero(t, code, errOut)
	assert.Contains(t, out, "NEW ALERT", "prescribing a drug the patient is allergic to raises an alert at once")

	code, _, errOut = clinic(t, dir, "prescribe", "-drug", "Amoxicillin", "-dose", "-5", "-unit", "mg", "-freq", "TDS", short)
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "dose", "the error names the field to correct")

	// A lab technician may not prescribe: the message says who may.
	code, _, errOut = clinicIn(t, dir, "lab-pass-22\n", "login", "-user", "u2")
	require.Zero(t, code, errOut)
	code, _, errOut = clinic(t, dir, "prescribe", "-drug", "Morphine", "-dose", "10", "-unit", "mg", "-freq", "Q4H", short)
	assert.Equal(t, 1, code, "a lab technician prescribed")
	assert.Contains(t, errOut, "logged in as a lab-technician, who may not change a patient's prescriptions")
	assert.Contains(t, errOut, "clinician, nurse")
	code, _, errOut = clinicIn(t, dir, "nurse-pass-1\n", "login", "-user", "u1")
	require.Zero(t, code, errOut)

	code, out, _ = clinic(t, dir, "show", short)
	require.Zero(t, code)
	assert.Contains(t, out, "!! ALERTS")
	assert.Contains(t, out, "Amoxicillin (J01CA04 amoxicillin) 500 mg oral TDS [active]", "the drug is shown with its ATC code")
	rx := regexp.MustCompile(`([0-9a-f]{8}) Amoxicillin`).FindStringSubmatch(out)
	require.Len(t, rx, 2)

	code, _, errOut = clinic(t, dir, "discontinue", short, rx[1])
	assert.Equal(t, 1, code, "discontinuing needs a reason")
	assert.Contains(t, errOut, "reason")
	code, _, errOut = clinic(t, dir, "discontinue", "-reason", "allergy", short, rx[1])
	require.Zero(t, code, errOut)
	code, out, _ = clinic(t, dir, "show", short)
	require.Zero(t, code)
	assert.Contains(t, out, "[stopped]")
	assert.NotContains(t, out, "!! ALERTS", "a stopped prescription raises no allergy alert")

	code, out, _ = clinic(t, dir, "history", short)
	require.Zero(t, code)
	assert.Contains(t, out, "Discontinued Amoxicillin: allergy")

	code, out, errOut = clinic(t, dir, "refer", "-to", "lwanda", "-reason", "antenatal care", short)
	require.Zero(t, code, errOut)
	assert.Contains(t, out, "Referred to lwanda")
	code, out, _ = clinic(t, dir, "show", short)
	require.Zero(t, code)
	assert.Contains(t, out, "to lwanda [active] antenatal care")
	code, _, errOut = clinic(t, dir, "register", "-given", "Asha", "-sex", "female", "-born-year", "1990", "-home-clinic", "lwanda")
	assert.Equal(t, 1, code, "a device registers patients of its own clinic only")
	assert.Contains(t, errOut, "refer")

	// The enrolment request can be written again; a device set up before
	// it had keys gets them from "clinic request".
	out1 := filepath.Join(t.TempDir(), "req1.pem")
	code, out, errOut = clinic(t, dir, "request", "-out", out1)
	require.Zero(t, code, errOut)
	first, err := device.ParseRequest(mustRead(t, out1))
	require.NoError(t, err)
	assert.Contains(t, out, device.Fingerprint(first.SignKey))
	require.NoError(t, os.Remove(filepath.Join(dir, "identity.key")))
	code, out, errOut = clinic(t, dir, "status")
	require.Zero(t, code, errOut)
	assert.Contains(t, out, "clinic request", "status says how to make the missing keys")
	code, out, errOut = clinic(t, dir, "request")
	require.Zero(t, code, errOut)
	assert.Contains(t, out, "Made this device's keys")
	second, err := device.ParseRequest(mustRead(t, filepath.Join(dir, "enrol-request.pem")))
	require.NoError(t, err)
	assert.Equal(t, first.ReplicaID, second.ReplicaID, "the new keys are for the same replica")
	assert.False(t, first.SignKey.Equal(second.SignKey), "new keys were made")

	code, _, _ = clinic(t, dir, "show", "ffffffff")
	assert.Equal(t, 1, code)
	code, _, _ = clinic(t, dir, "nonsense")
	assert.Equal(t, 2, code)
}

// clearDevice copies testdata/clear-device, a device as the app made it
// before it encrypted data, to a new directory, with the modes that app
// gave its files (the request readable by all), and returns it. It is of
// clinic kamuga, device tab-1, with users u-admin (password
// admin-pass-1) and u-nurse (nurse-pass-1), and one patient, Wanjiru
// Kamau-Oldfixture; it has no credential and no recovery key.
func clearDevice(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "clinic-data")
	require.NoError(t, os.Mkdir(dir, 0o755))
	entries, err := os.ReadDir(filepath.Join("testdata", "clear-device"))
	require.NoError(t, err)
	for _, e := range entries {
		data := mustRead(t, filepath.Join("testdata", "clear-device", e.Name()))
		mode := os.FileMode(0o600)
		if e.Name() == "enrol-request.pem" {
			mode = 0o644
		}
		require.NoError(t, os.WriteFile(filepath.Join(dir, e.Name()), data, mode))
		require.NoError(t, os.Chmod(filepath.Join(dir, e.Name()), mode)) // whatever the umask
	}
	require.NoError(t, os.Chmod(dir, 0o755))
	return dir
}

// recoveryFile writes testRecovery to a file, as clinic recovery-key
// does, and returns its path.
func recoveryFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "recovery-key.txt")
	require.NoError(t, os.WriteFile(path, []byte("# test recovery key\n"+testRecovery.String()+"\n"), 0o600))
	return path
}
