package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/replica"
)

// damageRowPage overwrites with garbage the page of the device database
// in dir that holds the change-table row of the change hash of chart, and
// returns the page as it was. In a database in clear that is the table
// leaf page (type 13) holding the chart's ID followed by the hash, which
// only that row holds; in an encrypted one (read with the key the
// session holds), the first page whose loss takes that change and few
// others (a leaf, not an interior page of the table).
func damageRowPage(t *testing.T, dir, chart string, hash crdt.Hash) []byte {
	t.Helper()
	path := filepath.Join(dir, "replica.db")
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	damage := func(n, size int) []byte {
		page := data[(n-1)*size : n*size]
		old := bytes.Clone(page)
		copy(page, bytes.Repeat([]byte{0xA5}, size))
		return old
	}
	if bytes.HasPrefix(data, []byte("SQLite format 3\x00")) {
		size := int(data[16])<<8 | int(data[17])
		key := append([]byte(chart), hash[:]...)
		for n := 2; n*size <= len(data); n++ {
			page := data[(n-1)*size : n*size]
			if page[0] == 0x0D && bytes.Contains(page, key) {
				old := damage(n, size)
				require.NoError(t, os.WriteFile(path, data, 0o600))
				return old
			}
		}
		t.Fatalf("no page of %s holds the row of change %s", path, hash)
	}
	key, err := repairKey(&app{dir: dir})
	require.NoError(t, err)
	require.NotNil(t, key, "the database is encrypted and no session holds its key")
	const size = 4096
	trial := filepath.Join(t.TempDir(), "replica.db")
	for n := 2; n*size <= len(data); n++ {
		d := bytes.Clone(data)
		copy(d[(n-1)*size:n*size], bytes.Repeat([]byte{0xA5}, size))
		require.NoError(t, os.WriteFile(trial, d, 0o600))
		chs, rep, err := replica.Salvage(context.Background(), trial, replica.Config{DatabaseKey: key})
		if err != nil || len(rep.Lost) > int(rep.Head)/4 || slices.ContainsFunc(chs, func(c replica.SalvagedChange) bool { return c.Hash == hash }) {
			continue
		}
		old := damage(n, size)
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
// damagedTablet is a tablet of clinic kamuga, synced with cloud over
// HTTPS, with a nurse logged in: Wanjiru's chart with a penicillin
// allergy and 20 other charts with an allergy each, synced; then a sulfa
// allergy on Wanjiru's chart and Amina's chart with a latex allergy,
// never synced; then the page of its database holding Wanjiru's
// registration overwritten with garbage. It returns the tablet's folder,
// its replica ID, the charts, and the page as it was.
type damaged struct {
	tab, oldID     string
	wanjiru, amina string
	others         []string
	page           []byte
}

func damagedTablet(t *testing.T, cloud *testCloud) damaged {
	t.Helper()
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
	d := damaged{tab: tab}
	d.wanjiru = register("Wanjiru")
	must(t, tab, "", "allergy", "-substance", "penicillin", "-severity", "severe", d.wanjiru)
	for i := range 20 {
		c := register(fmt.Sprintf("Patient%d", i))
		must(t, tab, "", "allergy", "-substance", fmt.Sprintf("substance-%d", i), "-severity", "mild", c)
		d.others = append(d.others, c)
	}
	must(t, tab, "", "sync", "-quiet")
	d.oldID = replicaLine.FindStringSubmatch(must(t, tab, "", "status"))[1]
	registration := chartJSON(t, tab, d.wanjiru).History[0].Change

	// Acknowledged on the tablet, never synced.
	must(t, tab, "", "allergy", "-substance", "sulfa", "-severity", "mild", d.wanjiru)
	d.amina = register("Amina")
	must(t, tab, "", "allergy", "-substance", "latex", "-severity", "moderate", d.amina)

	d.page = damageRowPage(t, tab, d.wanjiru, registration)
	code, _, _ := clinic(t, tab, "find")
	require.Equal(t, 1, code, "the damaged database is refused")
	return d
}

// requireAllBack checks that the device in dir and the cloud hold every
// edit the damaged tablet acknowledged, once, and agree.
func requireAllBack(t *testing.T, cloud *testCloud, dir string, d damaged) {
	t.Helper()
	ctx := context.Background()
	assert.Len(t, chartJSON(t, dir, d.wanjiru).Allergies, 2, "the synced allergy came back from the cloud, the unsynced one from the damaged file, once each")
	assert.Len(t, chartJSON(t, dir, d.amina).Allergies, 1, "the unsynced chart is kept")
	for i, c := range d.others {
		assert.Len(t, chartJSON(t, dir, c).Allergies, 1, "chart %d", i)
	}
	for _, c := range append([]string{d.wanjiru, d.amina}, d.others...) {
		v, err := cloud.r.Chart(ctx, c)
		require.NoError(t, err)
		mine := chartJSON(t, dir, c)
		assert.Equal(t, mine.Heads, v.Heads, "the cloud and the device agree on chart %s", c)
		assert.Len(t, v.Allergies, len(mine.Allergies))
	}
	q, err := cloud.r.Quarantined(ctx)
	require.NoError(t, err)
	assert.Empty(t, q, "the cloud refused nothing the repaired device sent")
}

func TestRepairDamagedTablet(t *testing.T) {
	ctx := context.Background()
	cloud := newTestCloud(t)
	d := damagedTablet(t, cloud)
	tab := d.tab
	out := must(t, tab, "", "repair")
	newID := replicaLine.FindStringSubmatch(out)[1]
	assert.NotEqual(t, d.oldID, newID, "the repaired tablet is a new replica")
	for _, want := range []string{"could not be read", "the cloud had acknowledged each of them", d.wanjiru, "waiting for changes the damage took", "cloud enrol", "connect -credential", "repair"} {
		assert.Contains(t, out, want, "clinic repair says what was lost and what to do next")
	}
	damaged, err := filepath.Glob(filepath.Join(tab, "replica.db.damaged-*"))
	require.NoError(t, err)
	require.NotEmpty(t, damaged, "the damaged database is kept aside")
	kept, err := os.ReadFile(damaged[0])
	require.NoError(t, err)
	assert.True(t, bytes.Contains(kept, bytes.Repeat([]byte{0xA5}, 64)) && !bytes.Contains(kept, d.page), "the damaged file is kept as it was, not mended")
	keys, err := filepath.Glob(filepath.Join(tab, "identity.key.before-repair-*"))
	require.NoError(t, err)
	assert.Len(t, keys, 1, "the old device's keys are kept aside")
	fi, err := os.Stat(filepath.Join(tab, "identity.key"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	code, _, _ := clinic(t, tab, "sync", "-quiet")
	assert.Equal(t, 1, code, "the rebuilt device is not connected yet")
	cloud.enrol(t, tab, "tab-repaired")
	out = must(t, tab, "", "repair", "-quiet")
	assert.Contains(t, out, "Applied 1 salvaged change", "the unsynced allergy that waited is applied")
	assert.Contains(t, out, "Repair finished")
	requireAllBack(t, cloud, tab, d)

	must(t, tab, "", "allergy", "-substance", "aspirin", "-severity", "mild", d.wanjiru)
	must(t, tab, "", "sync", "-quiet")
	v, err := cloud.r.Chart(ctx, d.wanjiru)
	require.NoError(t, err)
	assert.Len(t, v.Allergies, 3, "the repaired tablet's new edit reached the cloud")

	code, _, errOut := clinic(t, tab, "repair")
	assert.Equal(t, 1, code, "a sound device is not repaired")
	assert.Contains(t, errOut, "nothing to repair")
}

// TestRepairToNewFolder: clinic repair -to NEWDIR rebuilds the damaged
// tablet in a new folder, leaving its own folder as it was (the damaged
// database included), the nurse still logged in there; enrolled, the new
// device finishes the repair and holds every acknowledged edit. A folder
// that is not empty is refused.
func TestRepairToNewFolder(t *testing.T) {
	cloud := newTestCloud(t)
	d := damagedTablet(t, cloud)
	before, err := os.ReadFile(filepath.Join(d.tab, "replica.db"))
	require.NoError(t, err)

	busy := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(busy, "x"), nil, 0o600))
	code, _, errOut := clinic(t, d.tab, "repair", "-to", busy)
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "not empty")

	newDir := filepath.Join(t.TempDir(), "new")
	out := must(t, d.tab, "", "repair", "-to", newDir, "-device", "tab-2")
	assert.Contains(t, out, "left as it was")
	after, err := os.ReadFile(filepath.Join(d.tab, "replica.db"))
	require.NoError(t, err)
	assert.Equal(t, before, after, "the damaged tablet's folder is left as it was")
	for _, name := range []string{"replica.db", "identity.key", "enrol-request.pem", "device.json", "session.json"} {
		_, err := os.Stat(filepath.Join(newDir, name))
		assert.NoError(t, err, "the new folder has %s", name)
	}
	_, err = os.Stat(filepath.Join(newDir, "credential.pem"))
	assert.ErrorIs(t, err, os.ErrNotExist, "the old device's credential is not the new one's")

	cloud.enrol(t, newDir, "tab-2")
	out = must(t, newDir, "", "repair", "-quiet")
	assert.Contains(t, out, "Repair finished")
	requireAllBack(t, cloud, newDir, d)
}

// TestRepairLockedDevice: a damaged encrypted tablet no one is logged in
// to (a damaged database refuses a login) is repaired with a user's
// password given to repair; a wrong one is refused and counted as a
// wrong login try, and repair without one says how to unlock.
func TestRepairLockedDevice(t *testing.T) {
	cloud := newTestCloud(t)
	d := damagedTablet(t, cloud)
	tab := d.tab
	must(t, tab, "", "logout")
	code, _, errOut := clinic(t, tab, "login", "-user", "u-achieng")
	require.NotZero(t, code, "a damaged database refuses a login")

	code, _, errOut = clinic(t, tab, "repair", "-user", "u-achieng", "-identity", filepath.Join(t.TempDir(), "key.txt"))
	assert.Equal(t, 2, code, "-user and -identity together are refused")
	assert.Contains(t, errOut, "not both")
	code, _, errOut = clinic(t, tab, "repair", "-identity", filepath.Join(t.TempDir(), "missing.txt"))
	assert.Equal(t, 1, code, "a recovery key file that is not there is refused")
	assert.Contains(t, errOut, "missing.txt")

	code, _, errOut = clinicIn(t, tab, "wrong-pass-1\n", "repair", "-user", "u-achieng")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "more wrong tries lock u-achieng out", "a wrong password counts as a wrong try")
	_, err := os.Stat(filepath.Join(tab, "replica.db"))
	require.NoError(t, err, "nothing was rebuilt")

	out := must(t, tab, "nurse-pass-1\n", "repair", "-user", "u-achieng", "-quiet")
	assert.Contains(t, out, "Rebuilt device")
	cloud.enrol(t, tab, "tab-repaired")
	out = must(t, tab, "nurse-pass-1\n", "repair", "-user", "u-achieng", "-quiet")
	assert.Contains(t, out, "Repair finished")
	must(t, tab, "nurse-pass-1\n", "login", "-user", "u-achieng")
	requireAllBack(t, cloud, tab, d)
	code, _, errOut = clinic(t, tab, "repair")
	assert.Equal(t, 1, code, "a repaired device that has synced is not repaired again")
	assert.Contains(t, errOut, "nothing to repair")
}
