package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestOfflineLoginAndLockout runs on one device with no cloud at all:
// passwords are checked against the clinic's roster on the device,
// repeated failures lock a user out (across separate runs of the app),
// and administrators manage users.
func TestOfflineLoginAndLockout(t *testing.T) {
	dir := t.TempDir()
	code, _, errOut := clinicIn(t, dir, twice("admin-pass-1"), "init", "-clinic", "kamuga", "-device", "tab-1", "-admin", "u-admin", "-admin-name", "Wairimu")
	require.Zero(t, code, errOut)
	code, _, errOut = clinicIn(t, dir, "admin-pass-1\n", "login", "-user", "u-admin")
	require.Zero(t, code, errOut)
	code, _, errOut = clinicIn(t, dir, "short\nshort\n", "user", "add", "-id", "u-achieng", "-name", "Nurse Achieng", "-role", "nurse")
	assert.Equal(t, 1, code, "a short password is refused")
	assert.Contains(t, errOut, "at least 8")
	code, _, errOut = clinicIn(t, dir, "nurse-pass-1\nnurse-pass-2\n", "user", "add", "-id", "u-achieng", "-name", "Nurse Achieng", "-role", "nurse")
	assert.Equal(t, 1, code, "two different passwords are refused")
	assert.Contains(t, errOut, "differ")
	code, _, errOut = clinicIn(t, dir, twice("nurse-pass-1"), "user", "add", "-id", "u-achieng", "-name", "Nurse Achieng", "-role", "nurse")
	require.Zero(t, code, errOut)
	code, _, errOut = clinic(t, dir, "logout")
	require.Zero(t, code, errOut)

	// Five wrong passwords lock the nurse out; then even the right one is
	// refused, in a later run of the app too.
	for i := range 5 {
		code, _, errOut = clinicIn(t, dir, "wrong-password\n", "login", "-user", "u-achieng")
		require.Equal(t, 1, code, "wrong password %d was accepted", i+1)
		if i < 4 {
			assert.Contains(t, errOut, "wrong user ID or password")
		}
	}
	code, _, errOut = clinicIn(t, dir, "nurse-pass-1\n", "login", "-user", "u-achieng")
	assert.Equal(t, 1, code, "a locked-out user logged in with the right password")
	assert.Contains(t, errOut, "locked out")
	code, out, _ := clinic(t, dir, "status")
	require.Zero(t, code)
	assert.Contains(t, out, "Logged in: no one")

	// An unknown user name is refused like a wrong password.
	code, _, errOut = clinicIn(t, dir, "anything-at-all\n", "login", "-user", "u-nobody")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "wrong user ID or password")

	// The administrator unlocks her.
	code, _, errOut = clinicIn(t, dir, "admin-pass-1\n", "login", "-user", "u-admin")
	require.Zero(t, code, errOut)
	code, _, errOut = clinic(t, dir, "unlock", "-user", "u-achieng")
	require.Zero(t, code, errOut)
	code, _, errOut = clinicIn(t, dir, "nurse-pass-1\n", "login", "-user", "u-achieng")
	require.Zero(t, code, errOut)

	// She is a nurse: she may not manage users, but changes her password.
	code, _, errOut = clinicIn(t, dir, twice("other-pass-1"), "user", "add", "-id", "u-x", "-name", "X", "-role", "administrator")
	assert.Equal(t, 1, code, "a nurse added a user")
	assert.Contains(t, errOut, "only an administrator")
	code, _, errOut = clinicIn(t, dir, "nurse-pass-1\n"+twice("nurse-pass-new"), "passwd")
	require.Zero(t, code, errOut)
	code, _, errOut = clinicIn(t, dir, "nurse-pass-1\n", "login", "-user", "u-achieng")
	assert.Equal(t, 1, code, "the old password still works")
	code, out, errOut = clinicIn(t, dir, "nurse-pass-new\n", "login", "-user", "u-achieng")
	require.Zero(t, code, errOut)
	assert.Contains(t, out, "Nurse Achieng (nurse)", "the role comes from the roster")

	code, out, errOut = clinic(t, dir, "user", "list")
	require.Zero(t, code, errOut)
	assert.Contains(t, out, "u-achieng")
	assert.NotContains(t, out, "argon2id", "password hashes are never shown")

	// Disabled by the administrator, her session ends.
	code, _, errOut = clinicIn(t, dir, "admin-pass-1\n", "login", "-user", "u-admin")
	require.Zero(t, code, errOut)
	code, _, errOut = clinic(t, dir, "user", "disable", "-id", "u-achieng")
	require.Zero(t, code, errOut)
	code, _, errOut = clinicIn(t, dir, "nurse-pass-new\n", "login", "-user", "u-achieng")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "disabled")
	assert.False(t, strings.Contains(errOut, "panic"))
}

// TestReadPolicyOnTheDevice: the clinic's administrator hides encounter
// notes from registration clerks; a clerk's view of a chart leaves the
// note out, a nurse's shows it.
func TestReadPolicyOnTheDevice(t *testing.T) {
	dir := t.TempDir()
	code, _, errOut := clinicIn(t, dir, twice("admin-pass-1"), "init", "-clinic", "kamuga", "-device", "tab-1", "-admin", "u-admin")
	require.Zero(t, code, errOut)
	code, _, errOut = clinicIn(t, dir, "admin-pass-1\n", "login", "-user", "u-admin")
	require.Zero(t, code, errOut)
	for _, u := range [][3]string{{"u-nurse", "Nurse", "nurse"}, {"u-clerk", "Clerk", "registration-clerk"}} {
		code, _, errOut = clinicIn(t, dir, twice("pass-"+u[0]), "user", "add", "-id", u[0], "-name", u[1], "-role", u[2])
		require.Zero(t, code, errOut)
	}
	code, out, errOut := clinic(t, dir, "policy", "-role", "registration-clerk", "-hide", "notes,diagnoses")
	require.Zero(t, code, errOut)
	assert.Contains(t, out, "A registration-clerk may not read: diagnoses, notes")

	code, _, errOut = clinicIn(t, dir, "pass-u-nurse\n", "login", "-user", "u-nurse")
	require.Zero(t, code, errOut)
	code, out, errOut = clinic(t, dir, "register", "-given", "Wanjiru", "-sex", "female", "-born-year", "1988")
	require.Zero(t, code, errOut)
	chart := strings.Fields(out[strings.Index(out, "chart ")+6:])[0][:8]
	const note = "Patient confided a family matter."
	code, _, errOut = clinic(t, dir, "encounter", "-complaint", "headache", "-note", note, chart)
	require.Zero(t, code, errOut)
	code, out, _ = clinic(t, dir, "show", chart)
	require.Zero(t, code)
	assert.Contains(t, out, note, "the nurse reads the note")

	code, _, errOut = clinic(t, dir, "policy", "-role", "nurse", "-hide", "notes")
	assert.Equal(t, 1, code, "a nurse set the read policy")
	assert.Contains(t, errOut, "only an administrator")

	code, _, errOut = clinicIn(t, dir, "pass-u-clerk\n", "login", "-user", "u-clerk")
	require.Zero(t, code, errOut)
	for _, cmd := range []string{"show", "history"} {
		code, out, errOut = clinic(t, dir, cmd, chart)
		require.Zero(t, code, errOut)
		assert.NotContains(t, out, note, "%s shows the clerk the note", cmd)
		assert.Contains(t, out, "Wanjiru", "%s still shows whose chart it is", cmd)
	}
	_, out, _ = clinic(t, dir, "show", chart)
	assert.Contains(t, out, "not shown to your role")
}
