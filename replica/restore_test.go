package replica_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
)

// syncAll syncs each pair in turn.
func syncAll(t *testing.T, pairs ...[2]*replica.Replica) {
	t.Helper()
	for _, p := range pairs {
		st, err := replica.SyncPair(context.Background(), p[0], p[1])
		require.NoError(t, err, "sync %s with %s", p[0].ID(), p[1].ID())
		require.True(t, st.ConvergedAll)
	}
}

// TestRestoreAsNewReplica: a device syncs with the cloud, is backed up
// while open, edits and syncs again (an existing chart and a new one), and
// is lost. Its backup, restored as a new replica, ends with every chart
// and every edit, those made after the backup too, each once; its own new
// edits (on the chart the lost device edited after the backup, where
// reusing the old actor would reuse a sequence number) reach the cloud and
// another device, and all three agree.
func TestRestoreAsNewReplica(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cloud, err := replica.Open(ctx, filepath.Join(dir, "cloud.db"), replica.Config{Now: frozen})
	require.NoError(t, err)
	defer cloud.Close()
	other, err := replica.Open(ctx, filepath.Join(dir, "laptop.db"), replica.Config{Now: frozen})
	require.NoError(t, err)
	defer other.Close()
	tabletPath := filepath.Join(dir, "tablet.db")
	tablet, err := replica.Open(ctx, tabletPath, replica.Config{Now: frozen})
	require.NoError(t, err)
	defer tablet.Close()

	wanjiru := register(t, tablet, "Wanjiru", "Mwangi", "Kamuga")
	edit(t, tablet, wanjiru, allergy(1))
	otieno := register(t, other, "Otieno", "Odhiambo", "Kamuga")
	syncAll(t, [2]*replica.Replica{tablet, cloud}, [2]*replica.Replica{other, cloud}, [2]*replica.Replica{tablet, cloud})

	backup := filepath.Join(dir, "tablet.backup")
	require.NoError(t, replica.Backup(ctx, tabletPath, backup), "a backup of the replica while it is open")
	fi, err := os.Stat(backup)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "the backup is its owner's alone")

	// After the backup: an edit of an existing chart and a new chart,
	// synced; then the tablet is lost.
	edit(t, tablet, wanjiru, allergy(2))
	edit(t, tablet, otieno, allergy(3))
	amina := register(t, tablet, "Amina", "Hassan", "Kamuga")
	syncAll(t, [2]*replica.Replica{tablet, cloud})
	lostID := tablet.ID()
	lostSeqs, err := cloud.ActorSeqs(ctx, lostID)
	require.NoError(t, err)
	require.NoError(t, tablet.Close())

	restoredPath := filepath.Join(dir, "restored", "tablet.db")
	restored, err := replica.RestoreAs(ctx, backup, restoredPath, replica.Config{Now: frozen})
	require.NoError(t, err)
	defer restored.Close()
	assert.NotEqual(t, lostID, restored.ID(), "the restored replica has a new ID")
	assert.ElementsMatch(t, []string{wanjiru, otieno}, chartIDs(t, restored), "the restored replica holds what the backup held")
	peers, err := restored.Peers(ctx)
	require.NoError(t, err)
	for _, p := range peers {
		assert.True(t, p.LastSync.IsZero(), "the restored replica has not synced with %s", p.ID)
	}

	syncAll(t, [2]*replica.Replica{restored, cloud})
	requireSameCharts(t, cloud, restored)
	assert.ElementsMatch(t, []string{wanjiru, otieno, amina}, chartIDs(t, restored), "the chart made after the backup came from the cloud")
	assert.Len(t, view(t, restored, wanjiru).Allergies, 2, "both allergies of the chart, the one added after the backup too, once each")
	assert.Len(t, view(t, restored, otieno).Allergies, 1)

	// New work on the restored device, on a chart the lost device edited
	// after the backup.
	edit(t, restored, wanjiru, allergy(4))
	syncAll(t, [2]*replica.Replica{restored, cloud}, [2]*replica.Replica{other, cloud}, [2]*replica.Replica{restored, cloud})
	requireSameCharts(t, cloud, restored, other)
	v := view(t, other, wanjiru)
	assert.Len(t, v.Allergies, 3, "the restored device's edit reached the other device, nothing duplicated")
	seqs, err := cloud.ActorSeqs(ctx, restored.ID())
	require.NoError(t, err)
	assert.Equal(t, map[string]uint64{wanjiru: 1}, seqs, "the new edit is authored by the new replica ID, its first change of the chart")
	lost, err := cloud.ActorSeqs(ctx, lostID)
	require.NoError(t, err)
	assert.Equal(t, lostSeqs, lost, "the lost device's changes stay its own, no sequence number of it reused")
	q, err := cloud.Quarantined(ctx)
	require.NoError(t, err)
	assert.Empty(t, q, "the cloud refused nothing")
}

// TestRestoreTwice: the same backup restored twice gives two replicas with
// two different IDs, neither the backup's; the backup file is not changed.
func TestRestoreTwice(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "tablet.db")
	r, err := replica.Open(ctx, path, replica.Config{Now: frozen})
	require.NoError(t, err)
	register(t, r, "Wanjiru", "Mwangi", "Kamuga")
	backup := filepath.Join(dir, "tablet.backup")
	require.NoError(t, replica.Backup(ctx, path, backup))
	before := mustReadFile(t, backup)

	ids := map[string]bool{r.ID(): true}
	for _, name := range []string{"one", "two"} {
		rr, err := replica.RestoreAs(ctx, backup, filepath.Join(dir, name, "replica.db"), replica.Config{})
		require.NoError(t, err)
		assert.False(t, ids[rr.ID()], "restore %s reuses an ID", name)
		ids[rr.ID()] = true
		assert.Equal(t, chartIDs(t, r), chartIDs(t, rr))
		require.NoError(t, rr.Close())
		// The restored replica keeps its new ID when opened again.
		rr, err = replica.Open(ctx, filepath.Join(dir, name, "replica.db"), replica.Config{})
		require.NoError(t, err)
		assert.True(t, ids[rr.ID()])
		require.NoError(t, rr.Close())
	}
	assert.Len(t, ids, 3)
	assert.Equal(t, before, mustReadFile(t, backup), "restoring does not change the backup")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	assert.ElementsMatch(t, []string{"tablet.db", "tablet.db.lock", "tablet.db-wal", "tablet.db-shm", "tablet.backup", "one", "two"}, names,
		"nothing is left beside the backup")
}

// TestRestoreRefuses: what RestoreAs will not do leaves nothing behind.
func TestRestoreRefuses(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "tablet.db")
	r, err := replica.Open(ctx, path, replica.Config{Now: frozen})
	require.NoError(t, err)
	defer r.Close()
	register(t, r, "Wanjiru", "Mwangi", "Kamuga")
	backup := filepath.Join(dir, "tablet.backup")
	require.NoError(t, replica.Backup(ctx, path, backup))
	notDB := filepath.Join(dir, "notes.txt")
	require.NoError(t, os.WriteFile(notDB, []byte("not a database at all, just some words"), 0o600))
	sameIdentity, err := device.Generate(r.ID(), "kamuga-dispensary")
	require.NoError(t, err)
	damaged := filepath.Join(dir, "damaged.backup")
	data := mustReadFile(t, backup)
	for i := len(data) / 2; i < len(data)/2+4096 && i < len(data); i++ {
		data[i] = 0xA5
	}
	require.NoError(t, os.WriteFile(damaged, data, 0o600))

	for _, tc := range []struct {
		name   string
		backup string
		cfg    replica.Config
		target string
		want   error
	}{
		{"onto an existing replica", backup, replica.Config{}, path, os.ErrExist},
		{"a damaged backup", damaged, replica.Config{}, "", replica.ErrDamaged},
		{"a file that is not a database", notDB, replica.Config{}, "", replica.ErrDamaged},
		{"with the backup's own identity", backup, replica.Config{Signer: sameIdentity}, "", replica.ErrReusedID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := tc.target
			if out == "" {
				out = filepath.Join(t.TempDir(), "new", "replica.db")
			}
			_, err := replica.RestoreAs(ctx, tc.backup, out, tc.cfg)
			require.ErrorIs(t, err, tc.want)
			if tc.target == "" {
				entries, _ := os.ReadDir(filepath.Dir(out))
				assert.Empty(t, entries, "nothing is left where the replica was to be restored")
			}
		})
	}
	_, err = replica.RestoreAs(ctx, filepath.Join(dir, "missing.backup"), filepath.Join(dir, "x", "r.db"), replica.Config{})
	require.ErrorIs(t, err, os.ErrNotExist)
}

func mustReadFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return b
}

// TestBackupWhileWriting: a backup taken while another goroutine
// registers patients holds every registration acknowledged before it
// began, each whole, and opens as a sound replica.
func TestBackupWhileWriting(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "tablet.db")
	r, err := replica.Open(ctx, path, replica.Config{Now: frozen})
	require.NoError(t, err)
	defer r.Close()
	before := map[string]bool{}
	for range 20 {
		before[register(t, r, "Wanjiru", "Mwangi", "Kamuga")] = true
	}
	written := map[string]bool{}
	for id := range before {
		written[id] = true
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 200 {
			id, err := r.Register(ctx, nurse, record.Register{GivenName: "Amina", FamilyName: "Hassan", Sex: "female",
				EstimatedBirthYear: 1990, Village: "Kamuga", HomeClinic: "kamuga-dispensary"})
			if err != nil {
				t.Errorf("register while backing up: %v", err)
				return
			}
			written[id] = true
		}
	}()
	backup := filepath.Join(dir, "tablet.backup")
	require.NoError(t, replica.Backup(ctx, path, backup))
	<-done

	restored, err := replica.RestoreAs(ctx, backup, filepath.Join(dir, "restored", "replica.db"), replica.Config{})
	require.NoError(t, err)
	defer restored.Close()
	require.NoError(t, restored.CheckIntegrity(ctx, true))
	ids := chartIDs(t, restored)
	held := map[string]bool{}
	for _, id := range ids {
		held[id] = true
		assert.True(t, written[id], "the backup holds only charts that were written")
		assert.NotEmpty(t, view(t, restored, id).Patient.GivenName, "chart %s is whole", id)
	}
	for id := range before {
		assert.True(t, held[id], "a chart registered before the backup began is in it")
	}
}
