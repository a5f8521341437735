package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
)

// damageRowPage overwrites with garbage the page of the SQLite database
// at path whose change-table row holds the change hash of chart: a table
// leaf page (type 13) holding the chart's ID followed by the hash, which
// only that row holds. It returns the page's bytes as they were.
func damageRowPage(t *testing.T, path, chart string, hash crdt.Hash) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	size := int(data[16])<<8 | int(data[17])
	key := append([]byte(chart), hash[:]...)
	for n := 1; n*size <= len(data); n++ {
		page := data[(n-1)*size : n*size]
		if n == 1 || page[0] != 0x0D || !bytes.Contains(page, key) {
			continue
		}
		old := bytes.Clone(page)
		copy(page, bytes.Repeat([]byte{0xA5}, size))
		require.NoError(t, os.WriteFile(path, data, 0o600))
		return old
	}
	t.Fatalf("no page of %s holds the row of change %s", path, hash)
	return nil
}

// TestRepairDamagedTablet: a tablet syncs with the cloud over HTTPS, then
// records an allergy on a synced chart and registers a patient without
// syncing; the page of its database holding the synced chart's
// registration is overwritten with garbage. Commands refuse the damaged
// database; clinic repair rebuilds the tablet in place as a new device
// (new replica ID, enrolled again), keeping the damaged file aside and
// saying what was lost and what to do. Enrolled and connected, clinic
// repair again syncs: every edit the tablet acknowledged is back, on the
// tablet and in the cloud, once; the tablet syncs further edits; and a
// device that is not damaged is not repaired.
func TestRepairDamagedTablet(t *testing.T) {
	ctx := context.Background()
	cloud := newTestCloud(t)
	tab := t.TempDir()
	must(t, tab, twice("admin-pass-1"), "init", "-clinic", "kamuga", "-device", "tab", "-admin", "u-admin", "-admin-name", "Wairimu")
	cloud.enrol(t, tab, "tab")
	must(t, tab, "admin-pass-1\n", "login", "-user", "u-admin")
	must(t, tab, twice("nurse-pass-1"), "user", "add", "-id", "u-achieng", "-name", "Nurse Achieng", "-role", "nurse")
	must(t, tab, "nurse-pass-1\n", "login", "-user", "u-achieng")
	chartID := regexp.MustCompile(`chart ([0-9a-f-]{36})`)
	register := func(given string) string {
		out := must(t, tab, "", "register", "-given", given, "-family", "Mwangi", "-sex", "female", "-born-year", "1988")
		return chartID.FindStringSubmatch(out)[1]
	}
	wanjiru := register("Wanjiru")
	must(t, tab, "", "allergy", "-substance", "penicillin", "-severity", "severe", wanjiru)
	var others []string
	for i := range 20 {
		c := register(fmt.Sprintf("Patient%d", i))
		must(t, tab, "", "allergy", "-substance", fmt.Sprintf("substance-%d", i), "-severity", "mild", c)
		others = append(others, c)
	}
	must(t, tab, "", "sync", "-quiet")
	oldID := replicaLine.FindStringSubmatch(must(t, tab, "", "status"))[1]
	registration := chartJSON(t, tab, wanjiru).History[0].Change

	// Acknowledged on the tablet, never synced.
	must(t, tab, "", "allergy", "-substance", "sulfa", "-severity", "mild", wanjiru)
	amina := register("Amina")
	must(t, tab, "", "allergy", "-substance", "latex", "-severity", "moderate", amina)

	old := damageRowPage(t, filepath.Join(tab, "replica.db"), wanjiru, registration)
	code, _, errOut := clinic(t, tab, "find")
	require.Equal(t, 1, code, "the damaged database is refused")
	assert.Contains(t, errOut, "damaged")

	out := must(t, tab, "", "repair")
	newID := replicaLine.FindStringSubmatch(out)[1]
	assert.NotEqual(t, oldID, newID, "the repaired tablet is a new replica")
	for _, want := range []string{"could not be read", "the cloud had acknowledged each of them", wanjiru, "waiting for changes the damage took", "cloud enrol", "connect -credential", "repair"} {
		assert.Contains(t, out, want, "clinic repair says what was lost and what to do next")
	}
	damaged, err := filepath.Glob(filepath.Join(tab, "replica.db.damaged-*"))
	require.NoError(t, err)
	require.NotEmpty(t, damaged, "the damaged database is kept aside")
	kept, err := os.ReadFile(damaged[0])
	require.NoError(t, err)
	assert.True(t, bytes.Contains(kept, bytes.Repeat([]byte{0xA5}, 64)) && !bytes.Contains(kept, old), "the damaged file is kept as it was, not mended")
	keys, err := filepath.Glob(filepath.Join(tab, "identity.key.before-repair-*"))
	require.NoError(t, err)
	assert.Len(t, keys, 1, "the old device's keys are kept aside")
	fi, err := os.Stat(filepath.Join(tab, "identity.key"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	code, _, errOut = clinic(t, tab, "sync", "-quiet")
	assert.Equal(t, 1, code, "the rebuilt device is not connected yet")
	cloud.enrol(t, tab, "tab-repaired")
	out = must(t, tab, "", "repair", "-quiet")
	assert.Contains(t, out, "Applied 1 salvaged change", "the unsynced allergy that waited is applied")
	assert.Contains(t, out, "Repair finished")

	assert.Len(t, chartJSON(t, tab, wanjiru).Allergies, 2, "the synced allergy came back from the cloud, the unsynced one from the damaged file, once each")
	assert.Len(t, chartJSON(t, tab, amina).Allergies, 1, "the unsynced chart is kept")
	for i, c := range others {
		assert.Len(t, chartJSON(t, tab, c).Allergies, 1, "chart %d", i)
	}
	for _, c := range append([]string{wanjiru, amina}, others...) {
		v, err := cloud.r.Chart(ctx, c)
		require.NoError(t, err)
		mine := chartJSON(t, tab, c)
		assert.Equal(t, mine.Heads, v.Heads, "the cloud and the tablet agree on chart %s", c)
		assert.Len(t, v.Allergies, len(mine.Allergies))
	}
	q, err := cloud.r.Quarantined(ctx)
	require.NoError(t, err)
	assert.Empty(t, q, "the cloud refused nothing the repaired tablet sent")

	must(t, tab, "", "allergy", "-substance", "aspirin", "-severity", "mild", wanjiru)
	must(t, tab, "", "sync", "-quiet")
	v, err := cloud.r.Chart(ctx, wanjiru)
	require.NoError(t, err)
	assert.Len(t, v.Allergies, 3, "the repaired tablet's new edit reached the cloud")

	code, _, errOut = clinic(t, tab, "repair")
	assert.Equal(t, 1, code, "a sound device is not repaired")
	assert.Contains(t, errOut, "nothing to repair")
}
