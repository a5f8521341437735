package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/device/keyring"
	"github.com/chartsync/chartsync/internal/dirlock"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/transport/httpsync"
)

// testCloud is a cloud replica served over HTTPS on 127.0.0.1, with the
// device CA that enrols devices.
type testCloud struct {
	r   *replica.Replica
	ca  *httpsync.DeviceCA
	url string
}

func newTestCloud(t *testing.T) *testCloud {
	t.Helper()
	ctx := context.Background()
	now := time.Now()
	ca, err := httpsync.NewDeviceCA("test cloud", now, time.Hour)
	require.NoError(t, err)
	cloud, err := replica.Open(ctx, filepath.Join(t.TempDir(), "cloud.db"), replica.Config{})
	require.NoError(t, err)
	t.Cleanup(func() { cloud.Close() })
	h, err := httpsync.NewHandler(httpsync.Config{Replica: cloud, DeviceCA: ca.Pool()})
	require.NoError(t, err)
	certPEM, keyPEM, err := ca.IssueServerCert([]string{"127.0.0.1"}, now, time.Hour)
	require.NoError(t, err)
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	require.NoError(t, err)
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = httpsync.ServerTLSConfig(cert)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return &testCloud{r: cloud, ca: ca, url: srv.URL}
}

// enrol enrols the device in dir from its request, as the administrator
// does, and connects it.
func (c *testCloud) enrol(t *testing.T, dir, name string) {
	t.Helper()
	pub, err := device.ParseRequest(mustRead(t, filepath.Join(dir, "enrol-request.pem")))
	require.NoError(t, err)
	cred, err := c.ca.Enrol(httpsync.Enrolment{Replica: pub.ReplicaID, Clinic: pub.Clinic, Device: name, PublicKey: pub.SignKey, Now: time.Now(),
		CloudURL: c.url, CloudReplica: c.r.ID(), ServerTrust: []*x509.Certificate{c.ca.Cert}})
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), name+".pem")
	require.NoError(t, cred.WriteFile(path))
	code, _, errOut := clinic(t, dir, "connect", "-credential", path)
	require.Zero(t, code, errOut)
}

// must runs a command that must succeed and returns its output.
func must(t *testing.T, dir, input string, args ...string) string {
	t.Helper()
	code, out, errOut := clinicIn(t, dir, input, args...)
	require.Zero(t, code, "clinic %s: %s", strings.Join(args, " "), errOut)
	return out
}

// chartJSON is a chart as "clinic show -json" prints it.
func chartJSON(t *testing.T, dir, chart string) record.View {
	t.Helper()
	var v record.View
	require.NoError(t, json.Unmarshal([]byte(must(t, dir, "", "show", "-json", chart)), &v))
	return v
}

var replicaLine = regexp.MustCompile(`replica ([0-9a-f]{32})`)

// TestBackupRestoreAsNewDevice: a tablet syncs with the cloud over HTTPS,
// is backed up, makes more edits that sync, and is lost. Its backup,
// restored as a new device (a new replica ID, enrolled again), ends after
// one sync with every chart and every edit, those made after the backup
// too, each once; its new edits reach the cloud and the clinic's laptop.
func TestBackupRestoreAsNewDevice(t *testing.T) {
	scryptWorkFactor = 10 // fast for the test; real backups use 2^18
	t.Cleanup(func() { scryptWorkFactor = 18 })
	cloud := newTestCloud(t)
	tab, laptop := t.TempDir(), t.TempDir()
	must(t, tab, twice("admin-pass-1"), "init", "-clinic", "kamuga", "-device", "tab", "-admin", "u-admin", "-admin-name", "Wairimu")
	must(t, laptop, "", "init", "-clinic", "kamuga", "-device", "laptop")
	cloud.enrol(t, tab, "tab")
	cloud.enrol(t, laptop, "laptop")
	must(t, tab, "admin-pass-1\n", "login", "-user", "u-admin")
	must(t, tab, twice("nurse-pass-1"), "user", "add", "-id", "u-achieng", "-name", "Nurse Achieng", "-role", "nurse")
	must(t, tab, "nurse-pass-1\n", "login", "-user", "u-achieng")
	must(t, tab, "", "sync", "-quiet")
	must(t, laptop, "", "sync", "-quiet")
	must(t, laptop, "nurse-pass-1\n", "login", "-user", "u-achieng")

	out := must(t, tab, "", "register", "-given", "Wanjiru", "-family", "Mwangi", "-sex", "female", "-born-year", "1988")
	wanjiru := regexp.MustCompile(`chart ([0-9a-f-]{36})`).FindStringSubmatch(out)[1]
	must(t, tab, "", "allergy", "-substance", "penicillin", "-severity", "severe", wanjiru)
	must(t, tab, "", "sync", "-quiet")

	backupFile := filepath.Join(t.TempDir(), "tab.backup")
	out = must(t, tab, twice("correct horse battery"), "backup", "-out", backupFile)
	assert.Contains(t, out, "clinic restore -in "+backupFile, "backup says how to restore")
	fi, err := os.Stat(backupFile)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "the backup is its owner's alone")
	data := mustRead(t, backupFile)
	assert.True(t, bytes.HasPrefix(data, []byte("age-encryption.org/v1\n-> scrypt ")), "the backup is an age file encrypted to a passphrase")
	assert.NotContains(t, string(data), "Wanjiru", "no patient's name can be read from the backup")
	entries, err := os.ReadDir(tab)
	require.NoError(t, err)
	for _, e := range entries {
		assert.NotContains(t, e.Name(), "backup", "the backup's clear copy is removed")
	}

	// After the backup: an edit of the chart and a new chart, synced.
	must(t, tab, "", "allergy", "-substance", "sulfa", "-severity", "mild", wanjiru)
	out = must(t, tab, "", "register", "-given", "Amina", "-family", "Hassan", "-sex", "female", "-born-year", "1990")
	amina := regexp.MustCompile(`chart ([0-9a-f-]{36})`).FindStringSubmatch(out)[1]
	must(t, tab, "", "sync", "-quiet")
	lostID := replicaLine.FindStringSubmatch(must(t, tab, "", "status"))[1]

	// The tablet is lost. A wrong passphrase restores nothing.
	restored := filepath.Join(t.TempDir(), "new")
	code, _, errOut := clinicIn(t, tab, "wrong horse battery\n", "restore", "-in", backupFile, "-dir", restored)
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "wrong passphrase")
	_, err = os.Stat(filepath.Join(restored, "device.json"))
	assert.ErrorIs(t, err, os.ErrNotExist, "a failed restore sets nothing up")
	code, _, errOut = clinicIn(t, tab, "correct horse battery\n", "restore", "-in", backupFile)
	assert.Equal(t, 1, code, "a backup is never restored over a device's data")
	assert.Contains(t, errOut, "not empty")

	code, _, errOut = clinicIn(t, tab, "correct horse battery\nnot-her-password\n", "restore", "-in", backupFile, "-dir", restored, "-user", "u-achieng")
	assert.Equal(t, 1, code, "a wrong password does not open the backup's data")
	assert.Contains(t, errOut, "wrong user ID or password")
	_, err = os.Stat(filepath.Join(restored, "device.json"))
	assert.ErrorIs(t, err, os.ErrNotExist, "a failed restore sets nothing up")
	out = must(t, tab, "correct horse battery\nnurse-pass-1\n", "restore", "-in", backupFile, "-dir", restored, "-user", "u-achieng")
	assert.Contains(t, out, "the passwords they had there")
	newID := replicaLine.FindStringSubmatch(out)[1]
	assert.NotEqual(t, lostID, newID, "the restored device has a new replica ID")
	assert.Contains(t, out, "cloud enrol", "restore says the device must be enrolled again")
	assert.Contains(t, out, "clinic connect")
	fi, err = os.Stat(filepath.Join(restored, "identity.key"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	code, _, errOut = clinic(t, restored, "sync", "-quiet")
	assert.Equal(t, 1, code, "the restored device cannot sync before it is enrolled")
	assert.Contains(t, errOut, "clinic connect")

	cloud.enrol(t, restored, "tab-restored")
	// The restored keyring: the same passwords unlock the restored data.
	must(t, restored, "nurse-pass-1\n", "login", "-user", "u-achieng")
	must(t, restored, "", "sync", "-quiet")
	v := chartJSON(t, restored, wanjiru)
	assert.Len(t, v.Allergies, 2, "both allergies, the one made after the backup too, each once")
	assert.Equal(t, "Amina", chartJSON(t, restored, amina).Patient.GivenName, "the chart made after the backup came from the cloud")

	// New work on the restored device reaches the cloud and the laptop.
	must(t, restored, "", "allergy", "-substance", "latex", "-severity", "moderate", wanjiru)
	must(t, restored, "", "sync", "-quiet")
	must(t, laptop, "", "sync", "-quiet")
	v = chartJSON(t, laptop, wanjiru)
	var subs []string
	for _, al := range v.Allergies {
		subs = append(subs, al.Substance)
	}
	assert.ElementsMatch(t, []string{"penicillin", "sulfa", "latex"}, subs, "the laptop has every allergy once")
	assert.Equal(t, must(t, laptop, "", "find"), must(t, restored, "", "find"), "the laptop and the restored device hold the same charts")
	seqs, err := cloud.r.ActorSeqs(context.Background(), newID)
	require.NoError(t, err)
	assert.Equal(t, map[string]uint64{wanjiru: 1}, map[string]uint64{wanjiru: seqs[wanjiru]}, "the new edit is the new replica's own first change of the chart")
	q, err := cloud.r.Quarantined(context.Background())
	require.NoError(t, err)
	assert.Empty(t, q, "the cloud refused nothing")

	// The same backup restored again is yet another device.
	again := filepath.Join(t.TempDir(), "again")
	// This time with the recovery key instead of a password.
	out = must(t, tab, "correct horse battery\n", "restore", "-in", backupFile, "-dir", again, "-identity", recoveryFile(t))
	assert.NotContains(t, []string{lostID, newID}, replicaLine.FindStringSubmatch(out)[1], "a second restore gets another replica ID")
	must(t, again, "nurse-pass-1\n", "login", "-user", "u-achieng")
	assert.Len(t, chartJSON(t, again, wanjiru).Allergies, 1, "the backup's data, opened with the recovery key")
}

// TestBackupRefusesShortPassphrase: a backup needs a passphrase of some
// length, typed the same twice; nothing is written otherwise.
func TestBackupRefusesShortPassphrase(t *testing.T) {
	dir := t.TempDir()
	must(t, dir, "", "init", "-clinic", "kamuga", "-device", "tab")
	out := filepath.Join(t.TempDir(), "b.backup")
	code, _, errOut := clinicIn(t, dir, twice("short"), "backup", "-out", out)
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "too short")
	code, _, _ = clinicIn(t, dir, "a long passphrase\nanother long one\n", "backup", "-out", out)
	assert.Equal(t, 1, code)
	_, err := os.Stat(out)
	assert.ErrorIs(t, err, os.ErrNotExist)
}

// TestCheckCommand: clinic check runs the full check on a sound device.
func TestCheckCommand(t *testing.T) {
	dir := t.TempDir()
	must(t, dir, "", "init", "-clinic", "kamuga", "-device", "tab")
	out := must(t, dir, "", "check")
	assert.Contains(t, out, "No damage found (full check")
}

// FuzzReadBackup feeds readBackup (the decrypted part of a backup file)
// arbitrary bytes, seeded with a real backup's archive and its damaged
// forms: it refuses what is not a backup with errNotABackup (or a file
// error), never panics, and reads a database only of the size it claims.
func FuzzReadBackup(f *testing.F) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	conf := []byte(`{"clinic":"kamuga","device":"tab","created":"2026-03-02T09:00:00Z"}`)
	db := bytes.Repeat([]byte("SQLite format 3\x00"), 64)
	require.NoError(f, addEntry(tw, backupDevice, int64(len(conf)), bytes.NewReader(conf)))
	require.NoError(f, addEntry(tw, backupReplica, int64(len(db)), bytes.NewReader(db)))
	require.NoError(f, tw.Close())
	seed := bytes.Clone(buf.Bytes())
	// And one with a keyring, as a backup of an encrypted device has.
	buf.Reset()
	tw = tar.NewWriter(&buf)
	ring := []byte(`{"keyring":{"format":"chartsync-keyring","version":1}}`)
	require.NoError(f, addEntry(tw, backupDevice, int64(len(conf)), bytes.NewReader(conf)))
	require.NoError(f, addEntry(tw, backupReplica, int64(len(db)), bytes.NewReader(db)))
	require.NoError(f, addEntry(tw, backupKeyring, int64(len(ring)), bytes.NewReader(ring)))
	require.NoError(f, tw.Close())
	f.Add(bytes.Clone(buf.Bytes()))
	f.Add(seed)
	f.Add(seed[:len(seed)/2])
	f.Add(seed[:600])
	f.Add([]byte{})
	f.Add(bytes.Repeat([]byte{0}, 1024))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, "replica.db")
		d, hasRing, err := readBackup(bytes.NewReader(data), path, filepath.Join(dir, "keyring"))
		if err != nil {
			return
		}
		if hasRing {
			fi, err := os.Stat(filepath.Join(dir, "keyring"))
			require.NoError(t, err)
			assert.LessOrEqual(t, fi.Size(), int64(keyring.MaxFileSize))
		}
		assert.NotEmpty(t, d.Clinic)
		assert.NotEmpty(t, d.Device)
		fi, err := os.Stat(path)
		require.NoError(t, err)
		assert.Positive(t, fi.Size())
	})
}

// TestReadBackupRefuses: archives that are not a backup are refused with
// errNotABackup.
func TestReadBackupRefuses(t *testing.T) {
	entry := func(tw *tar.Writer, name string, body []byte) {
		require.NoError(t, addEntry(tw, name, int64(len(body)), bytes.NewReader(body)))
	}
	conf := []byte(`{"clinic":"kamuga","device":"tab"}`)
	for _, tc := range []struct {
		name  string
		build func(tw *tar.Writer)
	}{
		{"empty", func(tw *tar.Writer) {}},
		{"database first", func(tw *tar.Writer) { entry(tw, backupReplica, []byte("db")); entry(tw, backupDevice, conf) }},
		{"no database", func(tw *tar.Writer) { entry(tw, backupDevice, conf) }},
		{"a bad clinic", func(tw *tar.Writer) {
			entry(tw, backupDevice, []byte(`{"clinic":"../etc","device":"tab"}`))
			entry(tw, backupReplica, []byte("db"))
		}},
		{"an extra part", func(tw *tar.Writer) {
			entry(tw, backupDevice, conf)
			entry(tw, backupReplica, []byte("db"))
			entry(tw, "identity.key", []byte("secret"))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			tc.build(tw)
			require.NoError(t, tw.Close())
			_, _, err := readBackup(&buf, filepath.Join(t.TempDir(), "replica.db"), filepath.Join(t.TempDir(), "keyring"))
			require.ErrorIs(t, err, errNotABackup)
		})
	}
}

// TestBackupWhileInUse: a backup is taken while another program (clinic
// serve) has the device's replica open and holds its data directory.
func TestBackupWhileInUse(t *testing.T) {
	scryptWorkFactor = 10
	t.Cleanup(func() { scryptWorkFactor = 18 })
	dir := t.TempDir()
	must(t, dir, twice("admin-pass-1"), "init", "-clinic", "kamuga", "-device", "tab", "-admin", "u-admin")
	must(t, dir, "admin-pass-1\n", "login", "-user", "u-admin") // a backup needs the data's key
	ctx := context.Background()
	lock, err := dirlock.Acquire(dir)
	require.NoError(t, err)
	defer lock.Release()
	key, err := keyring.Unlock(filepath.Join(dir, "keyring"), "u-admin", "admin-pass-1")
	require.NoError(t, err)
	r, err := replica.Open(ctx, filepath.Join(dir, "replica.db"), replica.Config{Clinic: "kamuga", DatabaseKey: key})
	require.NoError(t, err)
	defer r.Close()
	code, _, _ := clinic(t, dir, "status")
	require.Equal(t, 1, code, "the directory is in use")

	out := filepath.Join(t.TempDir(), "tab.backup")
	must(t, dir, twice("correct horse battery"), "backup", "-out", out)
	restored := filepath.Join(t.TempDir(), "new")
	must(t, dir, "correct horse battery\nadmin-pass-1\n", "restore", "-in", out, "-dir", restored, "-user", "u-admin")
	must(t, restored, "admin-pass-1\n", "login", "-user", "u-admin")
}
