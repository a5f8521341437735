package main

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/examples/clinic/web"
	"github.com/chartsync/chartsync/replica"
)

// copyDir copies every regular file of the directory from into to (made
// if missing), as a person copying a data folder would.
func copyDir(t *testing.T, from, to string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(to, 0o700))
	entries, err := os.ReadDir(from)
	require.NoError(t, err)
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		in, err := os.Open(filepath.Join(from, e.Name()))
		require.NoError(t, err)
		out, err := os.OpenFile(filepath.Join(to, e.Name()), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		require.NoError(t, err)
		_, err = io.Copy(out, in)
		require.NoError(t, err)
		require.NoError(t, out.Close())
		require.NoError(t, in.Close())
	}
}

// TestCopiedTabletToldAndRecovered: a tablet's data folder is copied
// after a sync; the tablet goes on (an allergy, a new chart, synced), and
// the copy is then put back in its place. The copy's next sync fails with
// words a nurse can act on: the tablet's data folder is an old copy,
// nothing is lost, and the command to run (clinic recover). Its edits and
// bundle exports are refused with the same words. clinic recover makes a
// new device of it in a new folder (a new replica ID, enrolled again, as
// a restored backup is); synced, it has every chart and change, the
// copy's new chart, and the allergy and chart the copy never held, each
// once. A device that is not forked is not "recovered".
func TestCopiedTabletToldAndRecovered(t *testing.T) {
	cloud := newTestCloud(t)
	tab := t.TempDir()
	must(t, tab, twice("admin-pass-1"), "init", "-clinic", "kamuga", "-device", "tab", "-admin", "u-admin", "-admin-name", "Wairimu")
	cloud.enrol(t, tab, "tab")
	must(t, tab, "admin-pass-1\n", "login", "-user", "u-admin")
	must(t, tab, twice("nurse-pass-1"), "user", "add", "-id", "u-achieng", "-name", "Nurse Achieng", "-role", "nurse")
	must(t, tab, "nurse-pass-1\n", "login", "-user", "u-achieng")
	out := must(t, tab, "", "register", "-given", "Wanjiru", "-family", "Mwangi", "-sex", "female", "-born-year", "1988")
	chartID := regexp.MustCompile(`chart ([0-9a-f-]{36})`)
	wanjiru := chartID.FindStringSubmatch(out)[1]
	must(t, tab, "", "allergy", "-substance", "penicillin", "-severity", "severe", wanjiru)
	must(t, tab, "", "sync", "-quiet")
	tabID := replicaLine.FindStringSubmatch(must(t, tab, "", "status"))[1]

	copied := filepath.Join(t.TempDir(), "copy")
	copyDir(t, tab, copied)
	must(t, tab, "", "allergy", "-substance", "sulfa", "-severity", "mild", wanjiru)
	out = must(t, tab, "", "register", "-given", "Amina", "-family", "Hassan", "-sex", "female", "-born-year", "1990")
	amina := chartID.FindStringSubmatch(out)[1]
	must(t, tab, "", "sync", "-quiet")
	// The old copy is put back over the tablet's folder.
	require.NoError(t, os.RemoveAll(tab))
	copyDir(t, copied, tab)

	out = must(t, tab, "", "register", "-given", "Baraka", "-family", "Otieno", "-sex", "male", "-born-year", "2001")
	baraka := chartID.FindStringSubmatch(out)[1]
	code, _, errOut := clinic(t, tab, "sync", "-quiet")
	assert.Equal(t, 1, code, "the copy's sync fails")
	for _, want := range []string{"this device's data folder is an old copy", "Nothing is lost", "clinic recover -to NEW-DIR"} {
		assert.Contains(t, errOut, want, "the nurse is told what happened and what to run")
	}
	code, _, errOut = clinic(t, tab, "allergy", "-substance", "latex", "-severity", "mild", wanjiru)
	assert.Equal(t, 1, code, "the copy no longer edits")
	assert.Contains(t, errOut, "clinic recover -to NEW-DIR")
	code, _, errOut = clinic(t, tab, "export-bundle", "-to", t.TempDir())
	assert.Equal(t, 1, code, "the copy no longer exports bundles")
	assert.Contains(t, errOut, "clinic recover -to NEW-DIR")
	code, _, errOut = clinic(t, tab, "sync", "-quiet")
	assert.Equal(t, 1, code, "the copy keeps refusing to sync")
	assert.Contains(t, errOut, "this device's data folder is an old copy")

	newDir := filepath.Join(t.TempDir(), "new")
	out = must(t, tab, "", "recover", "-to", newDir)
	newID := replicaLine.FindStringSubmatch(out)[1]
	assert.NotEqual(t, tabID, newID, "the recovered device has a new replica ID")
	assert.Contains(t, out, "cloud enrol", "recover says the device must be enrolled again")
	assert.Contains(t, out, "connect -credential")
	fi, err := os.Stat(filepath.Join(newDir, "identity.key"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	cloud.enrol(t, newDir, "tab-recovered")
	// The data keeps its key and the keyring comes along: the same
	// password unlocks the new device.
	must(t, newDir, "nurse-pass-1\n", "login", "-user", "u-achieng")
	must(t, newDir, "", "sync", "-quiet")
	assert.Len(t, chartJSON(t, newDir, wanjiru).Allergies, 2, "both allergies, the one the copy never held too, each once")
	assert.Equal(t, "Amina", chartJSON(t, newDir, amina).Patient.GivenName, "the chart the copy never held came from the cloud")
	assert.Equal(t, "Baraka", chartJSON(t, newDir, baraka).Patient.GivenName, "the copy's own chart is kept")
	must(t, newDir, "", "allergy", "-substance", "latex", "-severity", "mild", wanjiru)
	must(t, newDir, "", "sync", "-quiet")

	code, _, errOut = clinic(t, newDir, "recover", "-to", filepath.Join(t.TempDir(), "again"))
	assert.Equal(t, 1, code, "a device that is not a copy is not recovered")
	assert.Contains(t, errOut, "not an old copy")
}

// TestWebSyncerTellsAnOldCopy: in the web app, a device found to be an
// old copy of itself shows as not able to sync, with the words and the
// command of the command line, and its syncs and exports are refused
// with web.ErrForked, which stops the background sync.
func TestWebSyncerTellsAnOldCopy(t *testing.T) {
	ctx := context.Background()
	cloud := newTestCloud(t)
	tab := t.TempDir()
	must(t, tab, twice("admin-pass-1"), "init", "-clinic", "kamuga", "-device", "tab", "-admin", "u-admin", "-admin-name", "Wairimu")
	cloud.enrol(t, tab, "tab")
	a, tabSync := webApp(t, tab)
	st, err := tabSync.Status(ctx)
	require.NoError(t, err)
	require.True(t, st.Connected)

	require.ErrorIs(t, a.r.MarkForked(ctx, errors.New("peer cloud holds another change at position 3")), replica.ErrForkedReplica)
	st, err = tabSync.Status(ctx)
	require.NoError(t, err)
	assert.False(t, st.Connected, "an old copy cannot sync")
	assert.Contains(t, st.Advice, "this device's data folder is an old copy")
	assert.Contains(t, st.Advice, "clinic recover -to NEW-DIR")
	_, err = tabSync.Sync(ctx, func(web.SyncProgress) {})
	require.ErrorIs(t, err, web.ErrForked)
	_, err = tabSync.ExportFile(ctx, t.TempDir())
	require.ErrorIs(t, err, web.ErrForked)
}
