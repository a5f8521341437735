package replica_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
)

// dbFile is a closed SQLite database file read whole, for tests that
// damage chosen pages of it.
type dbFile struct {
	path     string
	data     []byte
	pageSize int
}

func readDBFile(t *testing.T, path string) *dbFile {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	size := int(binary.BigEndian.Uint16(data[16:18]))
	require.Zero(t, len(data)%size, "the database is made of whole pages")
	return &dbFile{path: path, data: data, pageSize: size}
}

// page returns page n (numbered from 1).
func (f *dbFile) page(n int) []byte { return f.data[(n-1)*f.pageSize : n*f.pageSize] }

// pageType returns the b-tree page type byte of page n.
func (f *dbFile) pageType(n int) byte {
	off := 0
	if n == 1 {
		off = 100
	}
	return f.page(n)[off]
}

// rootPage reads the first page of a table or index from the intact
// database.
func rootPage(t *testing.T, path, name string) int {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	require.NoError(t, err)
	defer db.Close()
	var root int
	require.NoError(t, db.QueryRow("SELECT rootpage FROM sqlite_master WHERE name = ?", name).Scan(&root), "root page of %s", name)
	return root
}

// tree returns every page of the b-tree whose root is page root: its
// interior pages and its leaves, in order.
func (f *dbFile) tree(root int) (interior, leaves []int) {
	var walk func(n, depth int)
	walk = func(n, depth int) {
		if depth > 20 || n < 1 || n*f.pageSize > len(f.data) {
			return
		}
		off := 0
		if n == 1 {
			off = 100
		}
		p := f.page(n)
		switch p[off] {
		case 0x0D, 0x0A: // table or index leaf
			leaves = append(leaves, n)
			return
		case 0x05, 0x02: // table or index interior
		default:
			return
		}
		interior = append(interior, n)
		cells := int(binary.BigEndian.Uint16(p[off+3:]))
		for i := range cells {
			at := int(binary.BigEndian.Uint16(p[off+12+2*i:]))
			walk(int(binary.BigEndian.Uint32(p[at:])), depth+1)
		}
		walk(int(binary.BigEndian.Uint32(p[off+8:])), depth+1)
	}
	walk(root, 0)
	return interior, leaves
}

// leafHolding returns the leaf page of the table rooted at root whose
// cells hold needle.
func (f *dbFile) leafHolding(t *testing.T, root int, needle []byte) int {
	t.Helper()
	_, leaves := f.tree(root)
	for _, n := range leaves {
		if bytes.Contains(f.page(n), needle) {
			return n
		}
	}
	t.Fatalf("no leaf of the b-tree at page %d holds %x", root, needle)
	return 0
}

// rowKey is what a change's row in the change table holds and nothing
// else does: its chart's ID followed by its hash (a change's hash appears
// in the rows of the changes that depend on it too).
func rowKey(chart string, h crdt.Hash) []byte { return append([]byte(chart), h[:]...) }

// damage overwrites pages with garbage and writes the file.
func (f *dbFile) damage(t *testing.T, pages ...int) {
	t.Helper()
	for _, n := range pages {
		copy(f.page(n), bytes.Repeat([]byte{0xA5}, f.pageSize))
	}
	require.NoError(t, os.WriteFile(f.path, f.data, 0o600))
}

// salvageFixture is a closed replica database of 40 charts of 6 changes
// each and one of 2 whose second holds a long note (242 changes), and
// the hashes of each chart's changes.
func salvageFixture(t *testing.T) (path, id string, charts []string, hashes map[string][]crdt.Hash) {
	t.Helper()
	ctx := context.Background()
	path = tempDB(t, "tablet")
	r, err := replica.Open(ctx, path, replica.Config{Now: frozen})
	require.NoError(t, err)
	hashes = map[string][]crdt.Hash{}
	for i := range 40 {
		c := register(t, r, fmt.Sprintf("Patient%d", i), "Mwangi", "Kamuga")
		charts = append(charts, c)
		for j := range 5 {
			edit(t, r, c, allergy(i*10+j))
		}
		for _, h := range view(t, r, c).History {
			hashes[c] = append(hashes[c], h.Change)
		}
	}
	// A note too long for one page: its change's row goes on overflow
	// pages.
	rng := rand.New(rand.NewPCG(1, 2))
	note := make([]byte, 12000)
	for i := range note {
		note[i] = "abcdefghijklmnopqrstuvwxyz "[rng.IntN(27)]
	}
	c := register(t, r, "Longnote", "Mwangi", "Kamuga")
	edit(t, r, c, record.AddEncounter{Complaint: "fever", Note: string(note)})
	charts = append(charts, c)
	for _, h := range view(t, r, c).History {
		hashes[c] = append(hashes[c], h.Change)
	}
	id = r.ID()
	require.NoError(t, r.Close())
	return path, id, charts, hashes
}

// TestSalvageDamagePatterns damages a replica database in several ways a
// failing disk does and salvages it: whatever is damaged, Salvage reads
// every change row that is still readable (each checked against its
// hash), reports the positions and charts it lost, and never panics;
// when nothing can be read it says so with ErrUnsalvageable.
func TestSalvageDamagePatterns(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		// pages chooses the pages to damage.
		pages func(t *testing.T, f *dbFile, path string, charts []string, hashes map[string][]crdt.Hash) []int
		// loses says the damage takes changes (rows of the change table).
		loses         bool
		unsalvageable bool
		header        bool
		// fromPages says rows are read from the file's pages, which
		// SQLite could not reach.
		fromPages bool
	}{
		{name: "the header page", header: true,
			pages: func(t *testing.T, f *dbFile, path string, charts []string, hashes map[string][]crdt.Hash) []int {
				return []int{1}
			}},
		{name: "the index of changes by chart",
			pages: func(t *testing.T, f *dbFile, path string, charts []string, hashes map[string][]crdt.Hash) []int {
				in, leaves := f.tree(rootPage(t, path, "changes_by_chart"))
				return append(in, leaves...)
			}},
		{name: "every index of the changes",
			pages: func(t *testing.T, f *dbFile, path string, charts []string, hashes map[string][]crdt.Hash) []int {
				var pages []int
				for _, ix := range []string{"changes_by_chart", "sqlite_autoindex_changes_1", "clinic_log"} {
					in, leaves := f.tree(rootPage(t, path, ix))
					pages = append(append(pages, in...), leaves...)
				}
				return pages
			}},
		{name: "a page of the change table", loses: true,
			pages: func(t *testing.T, f *dbFile, path string, charts []string, hashes map[string][]crdt.Hash) []int {
				return []int{f.leafHolding(t, rootPage(t, path, "changes"), rowKey(charts[20], hashes[charts[20]][0]))}
			}},
		{name: "pages of the change table and its index", loses: true,
			pages: func(t *testing.T, f *dbFile, path string, charts []string, hashes map[string][]crdt.Hash) []int {
				root := rootPage(t, path, "changes")
				in, leaves := f.tree(rootPage(t, path, "changes_by_chart"))
				return append([]int{f.leafHolding(t, root, rowKey(charts[5], hashes[charts[5]][2])), f.leafHolding(t, root, rowKey(charts[30], hashes[charts[30]][0])), leaves[len(leaves)/2]}, in...)
			}},
		{name: "the first and last pages of the change table", loses: true,
			pages: func(t *testing.T, f *dbFile, path string, charts []string, hashes map[string][]crdt.Hash) []int {
				_, leaves := f.tree(rootPage(t, path, "changes"))
				return []int{leaves[0], leaves[len(leaves)-1]}
			}},
		{name: "the change table's interior pages", fromPages: true,
			pages: func(t *testing.T, f *dbFile, path string, charts []string, hashes map[string][]crdt.Hash) []int {
				in, _ := f.tree(rootPage(t, path, "changes"))
				require.NotEmpty(t, in, "the change table is more than a leaf")
				return in
			}},
		{name: "interior pages of every table and index", fromPages: true,
			pages: func(t *testing.T, f *dbFile, path string, charts []string, hashes map[string][]crdt.Hash) []int {
				var pages []int
				for _, name := range []string{"changes", "changes_by_chart", "sqlite_autoindex_changes_1", "charts", "snapshots"} {
					in, _ := f.tree(rootPage(t, path, name))
					pages = append(pages, in...)
				}
				return pages
			}},
		{name: "every page", unsalvageable: true, loses: true,
			pages: func(t *testing.T, f *dbFile, path string, charts []string, hashes map[string][]crdt.Hash) []int {
				var all []int
				for n := 1; n <= len(f.data)/f.pageSize; n++ {
					all = append(all, n)
				}
				return all
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path, id, charts, hashes := salvageFixture(t)
			f := readDBFile(t, path)
			_, leaves := f.tree(rootPage(t, path, "changes"))
			damaged := tc.pages(t, f, path, charts, hashes)
			// The changes whose rows the damage overwrites, and their
			// charts.
			gone := map[crdt.Hash]bool{}
			lost := map[string]bool{}
			for _, c := range charts {
				for _, h := range hashes[c] {
					for _, n := range damaged {
						if slices.Contains(leaves, n) && bytes.Contains(f.page(n), rowKey(c, h)) {
							gone[h], lost[c] = true, true
						}
					}
				}
			}
			assert.Equal(t, tc.loses, len(gone) > 0, "the damage takes change rows")
			f.damage(t, damaged...)
			_, err := replica.Open(ctx, path, replica.Config{})
			require.Error(t, err, "the damaged database does not open")
			before, err := os.ReadFile(path)
			require.NoError(t, err)

			chs, rep, err := replica.Salvage(ctx, path, replica.Config{})
			after, rerr := os.ReadFile(path)
			require.NoError(t, rerr)
			assert.Equal(t, before, after, "the damaged file is only read")
			if tc.unsalvageable {
				require.ErrorIs(t, err, replica.ErrUnsalvageable, "nothing can be read, and Salvage says so")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, id, rep.Replica, "the damaged replica's ID is read")
			assert.Equal(t, tc.header, rep.HeaderRebuilt)
			assert.Equal(t, tc.fromPages, rep.FromPages > 0, "changes read from the pages: %d", rep.FromPages)

			got := map[crdt.Hash]replica.SalvagedChange{}
			for i, c := range chs {
				got[c.Hash] = c
				if i > 0 {
					assert.Less(t, chs[i-1].Seq, c.Seq, "changes in log order")
				}
				parsed, err := crdt.ParseChange(c.Raw)
				require.NoError(t, err, "a salvaged change decodes")
				assert.Equal(t, c.Hash, parsed.Hash, "a salvaged change is the one its hash names")
			}
			total := 0
			for _, c := range charts {
				for _, h := range hashes[c] {
					_, ok := got[h]
					assert.Equal(t, !gone[h], ok, "change %s of chart %s: salvaged unless its row was overwritten", h, c)
					if ok {
						assert.Equal(t, c, got[h].Chart)
					}
				}
				total += len(hashes[c])
			}
			assert.Equal(t, uint64(total), rep.Head, "the log's length is known")
			assert.Equal(t, total, rep.Read+len(rep.Lost), "every position is read or reported lost")
			assert.Len(t, rep.Lost, len(gone), "each change lost is reported")
			assert.Len(t, chs, rep.Read)
			var lostCharts []string
			for c := range lost {
				lostCharts = append(lostCharts, c)
			}
			slices.Sort(lostCharts)
			assert.Equal(t, lostCharts, rep.LostCharts, "the charts that lost changes are named")
			assert.Equal(t, rep.Lost, rep.UnsyncedLost(), "no peer acknowledged anything")
		})
	}
}

// TestSalvageRefuses: a missing file, and a file that is no database, are
// errors, not panics; the second matches ErrUnsalvageable.
func TestSalvageRefuses(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	_, _, err := replica.Salvage(ctx, filepath.Join(dir, "none.db"), replica.Config{})
	require.ErrorIs(t, err, os.ErrNotExist)
	junk := filepath.Join(dir, "junk.db")
	require.NoError(t, os.WriteFile(junk, bytes.Repeat([]byte("not a database "), 1000), 0o600))
	_, _, err = replica.Salvage(ctx, junk, replica.Config{})
	require.ErrorIs(t, err, replica.ErrUnsalvageable)
	_, _, err = replica.Salvage(ctx, junk, replica.Config{DatabaseKey: []byte("short")})
	require.Error(t, err, "a bad key size is refused")
}

// TestRepairFromPeer: a tablet that signs its changes syncs with the
// cloud, edits on without syncing (an allergy on a synced chart, a new
// chart, an edit of another chart), and its database is damaged: the page
// holding the synced chart's first changes is overwritten. Repaired under
// a new identity, the tablet holds what the damage left; its unsynced
// allergy, which depends on a lost change, waits aside. One sync with the
// cloud brings back what the damage took and gives the cloud what it
// lacked: every edit acknowledged on the tablet is on both sides, once,
// both agree, nothing is quarantined, and the repaired tablet's new
// edits sync under its new ID.
func TestRepairFromPeer(t *testing.T) {
	ctx := context.Background()
	d := newDeployment(t)
	dir := t.TempDir()
	oldID, oldRec := d.enrol(t, "north")
	newID, newRec := d.enrol(t, "north")
	cloudID, cloudRec := d.enrol(t, "cloud")
	roster := func() *device.Roster {
		r := d.roster(t)
		for _, rec := range [][]byte{oldRec, newRec, cloudRec} {
			_, err := r.Add(rec)
			require.NoError(t, err)
		}
		return r
	}
	cloud, err := replica.Open(ctx, filepath.Join(dir, "cloud.db"), replica.Config{Signer: cloudID, Keys: roster(), Now: frozen})
	require.NoError(t, err)
	defer cloud.Close()
	tabletPath := filepath.Join(dir, "tablet.db")
	tablet, err := replica.Open(ctx, tabletPath, replica.Config{Signer: oldID, Keys: roster(), Now: frozen})
	require.NoError(t, err)

	wanjiru := register(t, tablet, "Wanjiru", "Mwangi", "Kamuga")
	edit(t, tablet, wanjiru, allergy(1))
	var others []string
	for i := range 30 {
		c := register(t, tablet, fmt.Sprintf("Patient%d", i), "Otieno", "Kamuga")
		edit(t, tablet, c, allergy(100+i))
		others = append(others, c)
	}
	syncAll(t, [2]*replica.Replica{tablet, cloud}, [2]*replica.Replica{tablet, cloud})
	regHash := view(t, tablet, wanjiru).History[0].Change

	// Acknowledged, never synced.
	edit(t, tablet, wanjiru, allergy(2))
	amina := register(t, tablet, "Amina", "Hassan", "Kamuga")
	edit(t, tablet, amina, allergy(3))
	edit(t, tablet, others[29], allergy(4))
	var unsynced []crdt.Hash
	for _, c := range []string{wanjiru, amina, others[29]} {
		for _, h := range view(t, tablet, c).History {
			if c == amina || h.Change == view(t, tablet, c).Heads[0] {
				unsynced = append(unsynced, h.Change)
			}
		}
	}
	want := map[string]int{wanjiru: 2, amina: 1, others[29]: 2}
	for _, c := range others[:29] {
		want[c] = 1
	}
	require.NoError(t, tablet.Close())

	f := readDBFile(t, tabletPath)
	page := f.leafHolding(t, rootPage(t, tabletPath, "changes"), rowKey(wanjiru, regHash))
	for _, h := range unsynced {
		require.NotContains(t, string(f.page(page)), string(h[:]), "the damage takes only synced changes")
	}
	f.damage(t, page)
	_, err = replica.Open(ctx, tabletPath, replica.Config{Signer: oldID, Keys: roster()})
	require.ErrorIs(t, err, replica.ErrDamaged)

	_, _, err = replica.Repair(ctx, tabletPath, filepath.Join(dir, "same.db"), replica.Config{Signer: oldID, Keys: roster()})
	require.ErrorIs(t, err, replica.ErrReusedID, "the repaired tablet must not write as the damaged one")

	repairedPath := filepath.Join(dir, "repaired", "tablet.db")
	repaired, rep, err := replica.Repair(ctx, tabletPath, repairedPath, replica.Config{Signer: newID, Keys: roster(), Now: frozen})
	require.NoError(t, err)
	defer repaired.Close()
	assert.Equal(t, newID.ReplicaID(), repaired.ID(), "the repaired tablet is its new identity")
	assert.Equal(t, oldID.ReplicaID(), rep.Salvage.Replica)
	assert.NotEmpty(t, rep.Salvage.Lost, "the damage took changes")
	assert.Contains(t, rep.Salvage.LostCharts, wanjiru)
	assert.Empty(t, rep.Salvage.UnsyncedLost(), "every change lost had been acknowledged by the cloud")
	assert.Equal(t, 1, rep.Waiting, "the unsynced allergy on the damaged chart waits for what it depends on")
	waiting, err := repaired.SalvagedWaiting(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, waiting)
	applied, waiting, err := repaired.ApplySalvaged(ctx)
	require.NoError(t, err)
	assert.Equal(t, [2]int{0, 1}, [2]int{applied, waiting}, "before a sync, what the allergy depends on is not here")
	assert.Equal(t, 0, rep.NotKept)
	assert.Len(t, view(t, repaired, amina).Allergies, 1, "the unsynced chart is salvaged")
	_, err = os.Stat(tabletPath)
	require.NoError(t, err, "the damaged database is left in place")

	syncAll(t, [2]*replica.Replica{repaired, cloud})
	applied, waiting, err = repaired.ApplySalvaged(ctx)
	require.NoError(t, err)
	assert.Equal(t, [2]int{1, 0}, [2]int{applied, waiting}, "the cloud sent what the allergy depends on: it is applied")
	syncAll(t, [2]*replica.Replica{repaired, cloud}, [2]*replica.Replica{repaired, cloud})
	requireSameCharts(t, cloud, repaired)
	for c, n := range want {
		assert.Len(t, view(t, repaired, c).Allergies, n, "every acknowledged allergy of chart %s is back, once", c)
	}
	waiting, err = repaired.SalvagedWaiting(ctx)
	require.NoError(t, err)
	assert.Zero(t, waiting, "nothing waits any more")
	q, err := cloud.Quarantined(ctx)
	require.NoError(t, err)
	assert.Empty(t, q, "the cloud refused nothing of the salvaged changes")

	edit(t, repaired, wanjiru, allergy(5))
	syncAll(t, [2]*replica.Replica{repaired, cloud})
	assert.Len(t, view(t, cloud, wanjiru).Allergies, 3, "the repaired tablet's new edit reached the cloud")
	seqs, err := cloud.ActorSeqs(ctx, repaired.ID())
	require.NoError(t, err)
	assert.Equal(t, map[string]uint64{wanjiru: 1}, seqs, "new edits are the new ID's")
	requireSameCharts(t, cloud, repaired)
}

// TestSalvageEncrypted: a database encrypted with a key, a page in its
// middle overwritten, is salvaged and repaired with its key: every change
// that reads is checked, the rest reported, and the repaired database is
// encrypted with the same key (no patient's name in its file). Without
// the key, or with another, nothing is read and the error says so.
func TestSalvageEncrypted(t *testing.T) {
	ctx := context.Background()
	key := bytes.Repeat([]byte{7}, 32)
	path := tempDB(t, "tablet")
	r, err := replica.Open(ctx, path, replica.Config{DatabaseKey: key, Now: frozen})
	require.NoError(t, err)
	var charts []string
	for i := range 30 {
		c := register(t, r, fmt.Sprintf("Zawadi%d", i), "Mwangi", "Kamuga")
		edit(t, r, c, allergy(i))
		charts = append(charts, c)
	}
	require.NoError(t, r.Close())
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NotContains(t, string(data), "Zawadi", "the database is encrypted")
	const page = 4096
	mid := len(data) / page / 2
	copy(data[mid*page:(mid+1)*page], bytes.Repeat([]byte{0xA5}, page))
	require.NoError(t, os.WriteFile(path, data, 0o600))
	_, err = replica.Open(ctx, path, replica.Config{DatabaseKey: key})
	require.Error(t, err, "the damaged database does not open")

	chs, rep, err := replica.Salvage(ctx, path, replica.Config{DatabaseKey: key})
	require.NoError(t, err)
	assert.Equal(t, uint64(60), rep.Head)
	assert.Equal(t, 60, rep.Read+len(rep.Lost), "every position is read or reported lost")
	assert.Len(t, chs, rep.Read)
	assert.Zero(t, rep.FromPages, "an encrypted file is not read page by page")
	for _, c := range chs {
		p, err := crdt.ParseChange(c.Raw)
		require.NoError(t, err)
		assert.Equal(t, c.Hash, p.Hash)
	}

	for _, k := range [][]byte{nil, bytes.Repeat([]byte{8}, 32)} {
		_, _, err := replica.Salvage(ctx, path, replica.Config{DatabaseKey: k})
		require.ErrorIs(t, err, replica.ErrUnsalvageable, "without its key nothing reads")
		if k != nil {
			require.ErrorIs(t, err, replica.ErrWrongKey, "a wrong key is named as a possible cause")
		}
	}

	newPath := filepath.Join(t.TempDir(), "repaired.db")
	repaired, rrep, err := replica.Repair(ctx, path, newPath, replica.Config{DatabaseKey: key, Now: frozen})
	require.NoError(t, err)
	assert.Equal(t, rep.Read, rrep.Changes+rrep.LeftToPeers+rrep.Waiting, "every change salvaged is stored, left to peers or waiting")
	require.NoError(t, repaired.Close())
	data, err = os.ReadFile(newPath)
	require.NoError(t, err)
	assert.NotContains(t, string(data), "Zawadi", "the repaired database is encrypted too")
	_, err = replica.Open(ctx, newPath, replica.Config{})
	require.ErrorIs(t, err, replica.ErrWrongKey)
	repaired, err = replica.Open(ctx, newPath, replica.Config{DatabaseKey: key})
	require.NoError(t, err)
	defer repaired.Close()
	assert.NotEmpty(t, chartIDs(t, repaired))
}

// TestRepairKeepsSignerRecords: a tablet holds a chart another device
// (a laptop its roster never enrolled) made, with the laptop's signed
// enrolment, which it passes on with the laptop's changes. Repaired, it
// still does: a hub that never met the laptop takes the chart from the
// repaired tablet.
func TestRepairKeepsSignerRecords(t *testing.T) {
	ctx := context.Background()
	d := newDeployment(t)
	dir := t.TempDir()
	laptop := d.device(t, "north")
	oldID, oldRec := d.enrol(t, "north")
	newID, newRec := d.enrol(t, "north")
	roster := func() *device.Roster {
		r := d.roster(t)
		for _, rec := range [][]byte{oldRec, newRec} {
			_, err := r.Add(rec)
			require.NoError(t, err)
		}
		return r
	}
	cloud, _ := newMem(t, replica.Config{Keys: d.roster(t)})
	tabletPath := filepath.Join(dir, "tablet.db")
	tablet, err := replica.Open(ctx, tabletPath, replica.Config{Signer: oldID, Keys: roster(), Now: frozen})
	require.NoError(t, err)
	otieno := register(t, laptop.Replica, "Otieno", "Odhiambo", "Kamuga")
	register(t, tablet, "Wanjiru", "Mwangi", "Kamuga")
	syncAll(t, [2]*replica.Replica{laptop.Replica, cloud}, [2]*replica.Replica{tablet, cloud})
	require.Contains(t, chartIDs(t, tablet), otieno)
	require.NoError(t, tablet.Close())

	repaired, _, err := replica.Repair(ctx, tabletPath, filepath.Join(dir, "repaired.db"), replica.Config{Signer: newID, Keys: roster(), Now: frozen})
	require.NoError(t, err)
	defer repaired.Close()
	hub, _ := newMem(t, replica.Config{Keys: d.roster(t)})
	_, err = replica.SyncPair(ctx, repaired, hub)
	require.NoError(t, err, "the hub checks the laptop's changes with the enrolment the repaired tablet kept")
	assert.Equal(t, view(t, laptop.Replica, otieno), view(t, hub, otieno))
}

// BenchmarkRepair repairs a device database of 1,000 charts of 40
// changes (40,000 changes) with one page in its middle overwritten:
// salvage and rebuild together, per repair, with the processor time it
// took (cpu-s/op: on a shared machine, wall time says more of the
// others' load) and the resident set's growth (rss-growth-MiB).
func BenchmarkRepair(b *testing.B) {
	ctx := context.Background()
	path := repairBenchDB(b, 1000)
	data, err := os.ReadFile(path)
	require.NoError(b, err)
	const page = 4096
	mid := len(data) / page / 2
	copy(data[mid*page:(mid+1)*page], bytes.Repeat([]byte{0xA5}, page))
	require.NoError(b, os.WriteFile(path, data, 0o600))
	before := residentMiB()
	cpu := func() time.Duration {
		var u syscall.Rusage
		require.NoError(b, syscall.Getrusage(syscall.RUSAGE_SELF, &u))
		return time.Duration(u.Utime.Nano() + u.Stime.Nano())
	}
	cpu0 := cpu()
	b.ResetTimer()
	var rep replica.RepairReport
	for i := range b.N {
		r, got, err := replica.Repair(ctx, path, filepath.Join(b.TempDir(), fmt.Sprint("repaired-", i, ".db")), replica.Config{})
		require.NoError(b, err)
		rep = got
		require.NoError(b, r.Close())
	}
	b.StopTimer()
	b.ReportMetric((cpu()-cpu0).Seconds()/float64(b.N), "cpu-s/op")
	b.ReportMetric(float64(rep.Salvage.Read), "changes-read")
	b.ReportMetric(float64(len(rep.Salvage.Lost)), "changes-lost")
	b.ReportMetric(float64(len(data))/(1<<20), "db-MiB")
	b.ReportMetric(residentMiB()-before, "rss-growth-MiB")
}

// repairBenchDB returns a closed device database of n charts of 40
// changes (a registration, then allergies, prescriptions and encounters
// with notes), imported 50 at a time.
func repairBenchDB(b *testing.B, n int) string {
	b.Helper()
	ctx := context.Background()
	path := tempDB(b, "device")
	r, err := replica.Open(ctx, path, replica.Config{Now: frozen})
	require.NoError(b, err)
	at := frozen()
	for made := 0; made < n; {
		var batch []*record.Chart
		for range min(50, n-made) {
			c, _, err := record.New(uuid.NewString(), r.ID(), nurse, at, record.Register{
				GivenName: fmt.Sprintf("Given%d", made), FamilyName: "Okafor", Sex: "female",
				EstimatedBirthYear: 1988, Village: "Kamuga", HomeClinic: "kamuga-dispensary",
			})
			require.NoError(b, err)
			for i := 1; i < 40; i++ {
				var op record.Op = allergy(i)
				if i%2 == 0 {
					op = record.AddEncounter{Complaint: "fever", Note: "Temperature 38.5, given paracetamol; review in three days."}
				}
				_, err := c.Do(doctor, at.Add(time.Duration(i)*time.Hour), op)
				require.NoError(b, err)
			}
			batch = append(batch, c)
			made++
		}
		require.NoError(b, r.Import(ctx, batch))
		for _, c := range batch {
			require.NoError(b, c.Doc().Close())
		}
	}
	require.NoError(b, r.Close())
	return path
}

// TestSalvageAnyDamage: whatever pages of a replica database are
// overwritten (a few or many, anywhere, zeroed or with garbage), Salvage
// returns only changes the database held, each in its own chart and in
// log order, accounts for every position it knows of as read or lost,
// and fails, if at all, with ErrUnsalvageable.
func TestSalvageAnyDamage(t *testing.T) {
	ctx := context.Background()
	path, _, charts, hashes := salvageFixture(t)
	orig, err := os.ReadFile(path)
	require.NoError(t, err)
	chartOf := map[crdt.Hash]string{}
	total := 0
	for _, c := range charts {
		for _, h := range hashes[c] {
			chartOf[h] = c
			total++
		}
	}
	const page = 4096
	pages := len(orig) / page
	rapid.Check(t, func(rt *rapid.T) {
		data := bytes.Clone(orig)
		for _, n := range rapid.SliceOfNDistinct(rapid.IntRange(0, pages-1), 1, 8, rapid.ID).Draw(rt, "pages") {
			fill := rapid.SampledFrom([]byte{0x00, 0xA5, 0xFF}).Draw(rt, "fill")
			copy(data[n*page:(n+1)*page], bytes.Repeat([]byte{fill}, page))
		}
		damaged := filepath.Join(t.TempDir(), "damaged.db")
		require.NoError(rt, os.WriteFile(damaged, data, 0o600))
		chs, rep, err := replica.Salvage(ctx, damaged, replica.Config{})
		if err != nil {
			require.ErrorIs(rt, err, replica.ErrUnsalvageable)
			return
		}
		for i, c := range chs {
			want, ok := chartOf[c.Hash]
			require.True(rt, ok, "salvaged change %s was in the database", c.Hash)
			require.Equal(rt, want, c.Chart, "change %s in its own chart", c.Hash)
			if i > 0 {
				require.Less(rt, chs[i-1].Seq, c.Seq)
			}
		}
		require.LessOrEqual(rt, rep.Head, uint64(total))
		require.Equal(rt, int(rep.Head), rep.Read+len(rep.Lost), "every position known is read or lost")
	})
}
