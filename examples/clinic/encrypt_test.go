package main

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/device/keyring"
	"github.com/chartsync/chartsync/replica"
)

// filesHolding lists the files under dir whose bytes hold s.
func filesHolding(t *testing.T, dir, s string) []string {
	t.Helper()
	var found []string
	require.NoError(t, filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		if d.Type().IsRegular() && bytes.Contains(mustRead(t, path), []byte(s)) {
			found = append(found, path)
		}
		return nil
	}))
	return found
}

// inClear reports whether the database in dir is an SQLite file in clear.
func inClear(t *testing.T, dir string) bool {
	t.Helper()
	return bytes.HasPrefix(mustRead(t, filepath.Join(dir, "replica.db")), []byte("SQLite format 3\x00"))
}

// TestNoPatientNameOnDisk: after a patient is registered, edited and
// synced, no file of the device's data directory holds their name, nor
// any other word of the chart: the database is encrypted, and so are
// its journal and the session's files. Logged in, the name is found.
func TestNoPatientNameOnDisk(t *testing.T) {
	cloud := newRelayCloud(t)
	tab := t.TempDir()
	must(t, tab, twice("admin-pass-1"), "init", "-clinic", "kamuga", "-device", "tab", "-admin", "u-admin", "-admin-name", "Wairimu")
	cloud.enrolAll(t, map[string]string{"tab": tab})
	must(t, tab, "admin-pass-1\n", "login", "-user", "u-admin")
	must(t, tab, twice("nurse-pass-1"), "user", "add", "-id", "u-achieng", "-name", "Nurse Achieng", "-role", "nurse")
	must(t, tab, "nurse-pass-1\n", "login", "-user", "u-achieng")
	out := must(t, tab, "", "register", "-given", "Zawadi", "-family", "Nyamweya", "-sex", "female", "-born-year", "1988", "-village", "Kiboswa")
	id := regexp.MustCompile(`chart ([0-9a-f-]{36})`).FindStringSubmatch(out)[1]
	must(t, tab, "", "allergy", "-substance", "Sulfadoxine", "-severity", "severe", id)
	must(t, tab, "", "sync", "-quiet")

	assert.False(t, inClear(t, tab), "the database is encrypted")
	for _, word := range []string{"Zawadi", "Nyamweya", "Kiboswa", "Sulfadoxine"} {
		assert.Empty(t, filesHolding(t, tab, word), "%q is readable in the data directory while logged in", word)
	}
	assert.Contains(t, must(t, tab, "", "find", "zawadi"), "Nyamweya", "searching by name works once logged in")
	must(t, tab, "", "logout")
	for _, word := range []string{"Zawadi", "Nyamweya", "Kiboswa", "Sulfadoxine"} {
		assert.Empty(t, filesHolding(t, tab, word), "%q is readable in the data directory after logout", word)
	}
	_, err := os.Stat(filepath.Join(tab, sessionKeyFile))
	assert.ErrorIs(t, err, os.ErrNotExist, "logout removes the data's key")
	code, _, errOut := clinic(t, tab, "find", "zawadi")
	assert.Equal(t, 1, code, "no one logged in: the data is locked")
	assert.Contains(t, errOut, "encrypted")
	assert.Contains(t, errOut, "clinic login")
}

// TestDataDirIsPrivate: after a full session (set up, users, patients,
// sync, bundle export, backup, logout), every file in the data directory
// is its owner's alone (0600) and every directory 0700.
func TestDataDirIsPrivate(t *testing.T) {
	scryptWorkFactor = 10
	t.Cleanup(func() { scryptWorkFactor = 18 })
	cloud := newRelayCloud(t)
	tab := filepath.Join(t.TempDir(), "clinic-data")
	must(t, tab, twice("admin-pass-1"), "init", "-clinic", "kamuga", "-device", "tab", "-admin", "u-admin", "-admin-name", "Wairimu")
	cloud.enrolAll(t, map[string]string{"tab": tab})
	must(t, tab, "admin-pass-1\n", "login", "-user", "u-admin")
	must(t, tab, twice("nurse-pass-1"), "user", "add", "-id", "u-achieng", "-name", "Nurse Achieng", "-role", "nurse")
	must(t, tab, "nurse-pass-1\n", "login", "-user", "u-achieng")
	out := must(t, tab, "", "register", "-given", "Zawadi", "-family", "Nyamweya", "-sex", "female", "-born-year", "1988")
	id := regexp.MustCompile(`chart ([0-9a-f-]{36})`).FindStringSubmatch(out)[1]
	must(t, tab, "", "allergy", "-substance", "penicillin", "-severity", "severe", id)
	must(t, tab, "", "sync", "-quiet")
	must(t, tab, "", "export-bundle", "-to", t.TempDir())
	must(t, tab, twice("correct horse battery"), "backup", "-out", filepath.Join(t.TempDir(), "tab.backup"))
	must(t, tab, "", "status")
	must(t, tab, "", "logout")

	n := 0
	require.NoError(t, filepath.WalkDir(tab, func(path string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		fi, err := d.Info()
		require.NoError(t, err)
		want := os.FileMode(0o600)
		if d.IsDir() {
			want = 0o700
		}
		assert.Equal(t, want, fi.Mode().Perm(), "%s is readable by others", path)
		n++
		return nil
	}))
	assert.Greater(t, n, 8, "the session left files to check")
}

// TestWrongPasswordRefused: a password the keyring refuses is refused
// with the login's own words and counts as a wrong try, as one the
// roster refuses does; five lock the name out, the right password too;
// the keyring, the session and its key are untouched.
func TestWrongPasswordRefused(t *testing.T) {
	dir := t.TempDir()
	must(t, dir, twice("admin-pass-1"), "init", "-clinic", "kamuga", "-device", "tab", "-admin", "u-admin", "-admin-name", "Wairimu")
	ring := mustRead(t, filepath.Join(dir, keyringFile))
	for left := 4; left >= 1; left-- {
		code, _, errOut := clinicIn(t, dir, "not-the-password\n", "login", "-user", "u-admin")
		assert.Equal(t, 1, code)
		assert.Contains(t, errOut, "wrong user ID or password")
		assert.Contains(t, errOut, plural(left, "more wrong try locks", "more wrong tries lock")+" u-admin out on this device")
	}
	code, _, errOut := clinicIn(t, dir, "not-the-password\n", "login", "-user", "u-admin")
	assert.Equal(t, 1, code)
	code, _, errOut = clinicIn(t, dir, "admin-pass-1\n", "login", "-user", "u-admin")
	assert.Equal(t, 1, code, "a locked-out name is not tried against the keyring")
	assert.Contains(t, errOut, "locked out")
	assert.Equal(t, ring, mustRead(t, filepath.Join(dir, keyringFile)), "the keyring is as it was")
	for _, f := range []string{sessionFile, sessionKeyFile} {
		_, err := os.Stat(filepath.Join(dir, f))
		assert.ErrorIs(t, err, os.ErrNotExist, "a refused login leaves no %s", f)
	}
}

// TestSyncedUserFirstLogin: a clinic's second device, set up without an
// administrator, gets its users by sync; its first login encrypts its
// data with the cloud's recovery key (from the credential); a colleague
// who came by sync logs in while that session holds the key, and from
// then on on their own; one with no colleague logged in is told to have
// one log in first.
func TestSyncedUserFirstLogin(t *testing.T) {
	cloud, tab, laptop := tabletAndLaptop(t)
	must(t, tab, twice("nurse-pass-1"), "user", "add", "-id", "u-achieng", "-name", "Nurse Achieng", "-role", "nurse")
	must(t, tab, twice("doctor-pass-1"), "user", "add", "-id", "u-mutua", "-name", "Dr Mutua", "-role", "clinician")
	must(t, tab, "", "register", "-given", "Zawadi", "-family", "Nyamweya", "-sex", "female", "-born-year", "1988")
	must(t, tab, "", "sync", "-quiet")
	must(t, laptop, "", "sync", "-quiet")

	out := must(t, laptop, "nurse-pass-1\n", "login", "-user", "u-achieng")
	assert.Contains(t, out, "now encrypted", "the first login says the data is encrypted now")
	assert.False(t, inClear(t, laptop))
	assert.Empty(t, filesHolding(t, laptop, "Nyamweya"))
	users, err := keyring.Users(filepath.Join(laptop, keyringFile))
	require.NoError(t, err)
	assert.Equal(t, []string{"u-achieng"}, users)
	key, err := keyring.Recover(filepath.Join(laptop, keyringFile), cloud.keys.AgeIdentity())
	require.NoError(t, err, "the cloud's key recovers the laptop")
	assert.Len(t, key, 32)

	// A colleague who came by sync, while Achieng's session holds the key.
	code, _, errOut := clinicIn(t, laptop, "not-his-password\n", "login", "-user", "u-mutua")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "wrong user ID or password")
	out = must(t, laptop, "doctor-pass-1\n", "login", "-user", "u-mutua")
	assert.Contains(t, out, "now holds your key")
	must(t, laptop, "", "logout")
	must(t, laptop, "doctor-pass-1\n", "login", "-user", "u-mutua")
	assert.Contains(t, must(t, laptop, "", "find"), "Nyamweya")
	must(t, laptop, "", "logout")

	// No one logged in: a user without a key here is told what to do.
	code, _, errOut = clinicIn(t, laptop, "admin-pass-1\n", "login", "-user", "u-admin")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "a colleague who has must log in first")
}

// TestClearDeviceEncryptedAtFirstLogin: a device whose data the app
// wrote in clear before it encrypted data (testdata/clear-device) is
// encrypted at its first login with a recovery key, its files made
// private, its charts kept; without a recovery key it stays in clear and
// the user is told so.
func TestClearDeviceEncryptedAtFirstLogin(t *testing.T) {
	t.Run("with a recovery key", func(t *testing.T) {
		dir := clearDevice(t)
		require.NotEmpty(t, filesHolding(t, dir, "Oldfixture"), "the fixture's database is in clear")
		out := must(t, dir, "nurse-pass-1\n", "login", "-user", "u-nurse", "-recovery", testRecovery.Recipient().String())
		assert.Contains(t, out, "now encrypted")
		assert.False(t, inClear(t, dir))
		assert.Empty(t, filesHolding(t, dir, "Oldfixture"), "no file holds the patient's name")
		assert.Contains(t, must(t, dir, "", "find", "wanjiru"), "Kamau-Oldfixture", "the chart is kept")
		for _, f := range []string{"", "enrol-request.pem", keyringFile, "replica.db"} {
			fi, err := os.Stat(filepath.Join(dir, f))
			require.NoError(t, err)
			want := os.FileMode(0o600)
			if f == "" {
				want = 0o700
			}
			assert.Equal(t, want, fi.Mode().Perm(), "%s is private", filepath.Join(dir, f))
		}
		// The administrator, who has no entry yet, logs in while the
		// nurse's session holds the key.
		must(t, dir, "admin-pass-1\n", "login", "-user", "u-admin")
		must(t, dir, "", "logout")
		must(t, dir, "admin-pass-1\n", "login", "-user", "u-admin")
		_, err := keyring.Recover(filepath.Join(dir, keyringFile), testRecovery)
		assert.NoError(t, err, "the recovery key opens it")
	})
	t.Run("without a recovery key", func(t *testing.T) {
		dir := clearDevice(t)
		out := must(t, dir, "nurse-pass-1\n", "login", "-user", "u-nurse")
		assert.Contains(t, out, "NOT encrypted")
		assert.Contains(t, out, "-recovery")
		assert.True(t, inClear(t, dir), "no recovery key, no encryption: lost passwords would lose unsynced work")
		_, err := os.Stat(filepath.Join(dir, keyringFile))
		assert.ErrorIs(t, err, os.ErrNotExist)
		assert.Contains(t, must(t, dir, "", "status"), "NOT encrypted")
	})
}

// TestUnlockRecovery: a device whose every password is lost is opened
// with its recovery key: an administrator gets a new password, and every
// change not yet synced is there. The wrong key opens nothing.
func TestUnlockRecovery(t *testing.T) {
	dir := t.TempDir()
	must(t, dir, twice("admin-pass-1"), "init", "-clinic", "kamuga", "-device", "tab", "-admin", "u-admin", "-admin-name", "Wairimu")
	must(t, dir, "admin-pass-1\n", "login", "-user", "u-admin")
	must(t, dir, twice("nurse-pass-1"), "user", "add", "-id", "u-achieng", "-name", "Nurse Achieng", "-role", "nurse")
	must(t, dir, "nurse-pass-1\n", "login", "-user", "u-achieng")
	out := must(t, dir, "", "register", "-given", "Zawadi", "-family", "Nyamweya", "-sex", "female", "-born-year", "1988")
	id := regexp.MustCompile(`chart ([0-9a-f-]{36})`).FindStringSubmatch(out)[1]
	must(t, dir, "", "allergy", "-substance", "penicillin", "-severity", "severe", id)
	must(t, dir, "", "logout")
	// Every password is forgotten.

	other := filepath.Join(t.TempDir(), "other.txt")
	must(t, dir, "", "recovery-key", "-out", other)
	code, _, errOut := clinicIn(t, dir, twice("new-admin-pass"), "unlock-recovery", "-identity", other, "-user", "u-admin")
	assert.Equal(t, 1, code, "another recovery key opens nothing")
	assert.Contains(t, errOut, "not this device's recovery key")
	code, _, errOut = clinicIn(t, dir, twice("new-admin-pass"), "unlock-recovery", "-identity", recoveryFile(t), "-user", "u-achieng")
	assert.Equal(t, 1, code, "only an administrator's password is set anew")
	assert.Contains(t, errOut, "administrator")

	out = must(t, dir, twice("new-admin-pass"), "unlock-recovery", "-identity", recoveryFile(t), "-user", "u-admin")
	assert.Contains(t, out, "logged in")
	assert.Len(t, chartJSON(t, dir, id).Allergies, 1, "the unsynced edit is kept")
	must(t, dir, "", "logout")
	code, _, _ = clinicIn(t, dir, "admin-pass-1\n", "login", "-user", "u-admin")
	assert.Equal(t, 1, code, "the old password is gone")
	must(t, dir, "new-admin-pass\n", "login", "-user", "u-admin")
	assert.Contains(t, must(t, dir, "", "find"), "Nyamweya")
	must(t, dir, "nurse-pass-1\n", "login", "-user", "u-achieng") // colleagues keep theirs
}

// TestPasswordChangesReachTheKeyring: passwd re-seals the user's entry
// (the old password no longer unlocks the data, the new one does), an
// administrator's reset-password sets a forgotten one, and disabling a
// user removes their entry.
func TestPasswordChangesReachTheKeyring(t *testing.T) {
	dir := t.TempDir()
	ring := filepath.Join(dir, keyringFile)
	must(t, dir, twice("admin-pass-1"), "init", "-clinic", "kamuga", "-device", "tab", "-admin", "u-admin", "-admin-name", "Wairimu")
	must(t, dir, "admin-pass-1\n", "login", "-user", "u-admin")
	must(t, dir, twice("nurse-pass-1"), "user", "add", "-id", "u-achieng", "-name", "Nurse Achieng", "-role", "nurse")
	must(t, dir, twice("doctor-pass-1"), "user", "add", "-id", "u-mutua", "-name", "Dr Mutua", "-role", "clinician")
	users, err := keyring.Users(ring)
	require.NoError(t, err)
	assert.Equal(t, []string{"u-achieng", "u-admin", "u-mutua"}, users, "each user added has an entry")

	must(t, dir, "nurse-pass-1\n", "login", "-user", "u-achieng")
	must(t, dir, "nurse-pass-1\n"+twice("nurse-pass-2"), "passwd")
	_, err = keyring.Unlock(ring, "u-achieng", "nurse-pass-1")
	assert.ErrorIs(t, err, keyring.ErrWrongPassword, "the old password no longer unlocks the data")
	_, err = keyring.Unlock(ring, "u-achieng", "nurse-pass-2")
	assert.NoError(t, err)

	must(t, dir, "admin-pass-1\n", "login", "-user", "u-admin")
	must(t, dir, twice("doctor-pass-2"), "user", "reset-password", "-id", "u-mutua")
	must(t, dir, "doctor-pass-2\n", "login", "-user", "u-mutua")
	must(t, dir, "admin-pass-1\n", "login", "-user", "u-admin")
	must(t, dir, "", "user", "disable", "-id", "u-mutua")
	users, err = keyring.Users(ring)
	require.NoError(t, err)
	assert.Equal(t, []string{"u-achieng", "u-admin"}, users, "a disabled user's entry is removed")
}

// TestUnlockRecoveryWithTheCloudsKey: a clinic's second device, whose
// keyring was made at its first login for the cloud's recovery key,
// holds an edit not yet synced when every password of it is lost. The
// cloud's identity file opens it; the administrator's new password is
// set; the edit is there and reaches the cloud at the next sync.
func TestUnlockRecoveryWithTheCloudsKey(t *testing.T) {
	ctx := context.Background()
	cloud, tab, laptop := tabletAndLaptop(t)
	must(t, tab, twice("nurse-pass-1"), "user", "add", "-id", "u-achieng", "-name", "Nurse Achieng", "-role", "nurse")
	must(t, tab, "", "sync", "-quiet")
	must(t, laptop, "", "sync", "-quiet")
	must(t, laptop, "nurse-pass-1\n", "login", "-user", "u-achieng")
	out := must(t, laptop, "", "register", "-given", "Zawadi", "-family", "Nyamweya", "-sex", "female", "-born-year", "1988")
	id := regexp.MustCompile(`chart ([0-9a-f-]{36})`).FindStringSubmatch(out)[1]
	must(t, laptop, "", "allergy", "-substance", "penicillin", "-severity", "severe", id)
	must(t, laptop, "", "logout")
	_, err := cloud.r.Chart(ctx, id)
	require.ErrorIs(t, err, replica.ErrNotFound, "the chart is on the laptop only")

	cloudKey := filepath.Join(t.TempDir(), "cloud.key")
	require.NoError(t, cloud.keys.Save(cloudKey))
	out = must(t, laptop, twice("new-admin-pass"), "unlock-recovery", "-identity", cloudKey, "-user", "u-admin")
	assert.Contains(t, out, "waiting to be sent to the cloud, kept")
	must(t, laptop, "", "sync", "-quiet")
	v, err := cloud.r.Chart(ctx, id)
	require.NoError(t, err, "the unsynced chart reached the cloud")
	require.Len(t, v.Allergies, 1)
	assert.Equal(t, "penicillin", v.Allergies[0].Substance)
}

// TestInitNeedsARecoveryKey: the first administrator's device is not set
// up without a recovery key (its lost passwords would lose its unsynced
// changes), nor with one written into its own data directory;
// -recovery-out writes one apart, which opens the device.
func TestInitNeedsARecoveryKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tab")
	args := []string{"init", "-clinic", "kamuga", "-device", "tab", "-admin", "u-admin"}
	var out, errOut bytes.Buffer
	code := run(context.Background(), append([]string{"-dir", dir}, args...), strings.NewReader(twice("admin-pass-1")), &out, &errOut)
	assert.Equal(t, 2, code, "no recovery key: refused")
	assert.Contains(t, errOut.String(), "-recovery")
	_, err := os.Stat(filepath.Join(dir, "device.json"))
	assert.ErrorIs(t, err, os.ErrNotExist, "nothing is set up")

	code, _, errOut2 := clinicIn(t, dir, twice("admin-pass-1"), append(args, "-recovery-out", filepath.Join(dir, "rk.txt"))...)
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut2, "data directory")

	rk := filepath.Join(t.TempDir(), "rk.txt")
	stdout := must(t, dir, twice("admin-pass-1"), append(args, "-recovery-out", rk)...)
	assert.Contains(t, stdout, "Recovery key written to "+rk)
	fi, err := os.Stat(rk)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	ids, err := readRecoveryIdentity(rk)
	require.NoError(t, err)
	_, err = recoverKey(filepath.Join(dir, keyringFile), ids)
	assert.NoError(t, err, "the key written apart opens the device")
}
