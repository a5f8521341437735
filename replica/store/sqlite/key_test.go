package sqlite_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/replica/store"
	"github.com/chartsync/chartsync/replica/store/sqlite"
	"github.com/chartsync/chartsync/replica/store/sqlite/faultvfs"
	"github.com/chartsync/chartsync/replica/store/storetest"
)

// patientName is a name that appears nowhere in a store's files unless
// a chart holding it is stored in clear.
const patientName = "Nyokabi Wambui-Kiprotich"

func newKey(t testing.TB) []byte {
	t.Helper()
	key := make([]byte, sqlite.KeySize)
	_, err := rand.Read(key)
	require.NoError(t, err)
	return key
}

// namedChart is a batch that writes a patient's chart with patientName
// in its entry, its search keys, a meta value and a quarantined bundle.
func namedChart() store.Batch {
	b := entry(1)
	b.Charts = []store.Chart{{ID: "chart-1", GivenName: "Nyokabi", FamilyName: "Wambui-Kiprotich", Village: "Lwanda",
		Scope: []string{"north"}, Updated: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC), Keys: []string{"n:nyokabi"}}}
	b.Meta["last-registered"] = patientName
	b.Quarantine = []store.Quarantined{{From: "peer", At: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC), Reason: "test", Data: []byte(patientName)}}
	return b
}

// filesHolding returns the names of the files in dir (the database, its
// write-ahead log and wal-index, backups) whose bytes hold s.
func filesHolding(t *testing.T, dir, s string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	var out []string
	for _, e := range ents {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		require.NoError(t, err)
		if bytes.Contains(data, []byte(s)) {
			out = append(out, e.Name())
		}
	}
	return out
}

// dirFiles returns the names and bytes of the files in dir.
func dirFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	out := map[string][]byte{}
	for _, e := range ents {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		require.NoError(t, err)
		out[e.Name()] = data
	}
	return out
}

// TestKeyHidesTheChartsOnDisk writes a patient's chart and looks for the
// patient's name in every file of the database's directory: the
// database, its write-ahead log and wal-index while the store is open,
// then the database and a backup once it is closed. In clear the name is
// there (so the search can find it); with a key it is nowhere.
func TestKeyHidesTheChartsOnDisk(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		name  string
		cfg   sqlite.Config
		found bool
	}{
		{"in clear", sqlite.Config{}, true},
		{"with a key", sqlite.Config{Key: newKey(t)}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "charts.db")
			s, err := sqlite.OpenConfig(ctx, path, tt.cfg)
			require.NoError(t, err)
			_, err = s.Write(ctx, namedChart())
			require.NoError(t, err)
			require.FileExists(t, path+"-wal", "the write is in the write-ahead log")
			held := filesHolding(t, dir, "Nyokabi")
			assert.Equal(t, tt.found, len(held) > 0, "the name is in %q while the store is open", held)

			require.NoError(t, sqlite.BackupConfig(ctx, path, filepath.Join(dir, "charts.backup"), tt.cfg))
			require.NoError(t, s.Close())
			held = filesHolding(t, dir, "Nyokabi")
			assert.Equal(t, tt.found, len(held) > 0, "the name is in %q once the store is closed and backed up", held)
			if !tt.found {
				assert.Empty(t, filesHolding(t, dir, "north"), "the clinic's name is in no file either")
			}
		})
	}
}

// TestWrongKeyIsRefused opens an encrypted database with another key,
// with none, and with a key of the wrong size, and a database in clear
// with a key: each is refused with its typed error (never one saying
// the database is damaged), the files are byte for byte as they were,
// and the right key then reads the chart.
func TestWrongKeyIsRefused(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "charts.db")
	key := newKey(t)
	s, err := sqlite.OpenConfig(ctx, path, sqlite.Config{Key: key})
	require.NoError(t, err)
	_, err = s.Write(ctx, namedChart())
	require.NoError(t, err)
	require.NoError(t, s.Close())

	clearDir := t.TempDir()
	clearPath := filepath.Join(clearDir, "charts.db")
	s, err = sqlite.Open(ctx, clearPath)
	require.NoError(t, err)
	_, err = s.Write(ctx, namedChart())
	require.NoError(t, err)
	require.NoError(t, s.Close())

	for _, tt := range []struct {
		name string
		path string
		cfg  sqlite.Config
		want error
	}{
		{"another key", path, sqlite.Config{Key: newKey(t)}, sqlite.ErrWrongKey},
		{"no key", path, sqlite.Config{}, sqlite.ErrWrongKey},
		{"a short key", path, sqlite.Config{Key: key[:16]}, sqlite.ErrKeySize},
		{"a key for a database in clear", clearPath, sqlite.Config{Key: key}, sqlite.ErrNotEncrypted},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := dirFiles(t, filepath.Dir(tt.path))
			_, err := sqlite.OpenConfig(ctx, tt.path, tt.cfg)
			require.ErrorIs(t, err, tt.want)
			assert.False(t, sqlite.IsDamage(err), "a key that does not open the database is not damage: %v", err)
			_, err = sqlite.CheckFileConfig(ctx, tt.path, false, 10, tt.cfg)
			require.ErrorIs(t, err, tt.want, "checking the file with that key")
			require.ErrorIs(t, sqlite.BackupConfig(ctx, tt.path, filepath.Join(t.TempDir(), "b.db"), tt.cfg), tt.want, "backing it up with that key")
			assert.Equal(t, before, dirFiles(t, filepath.Dir(tt.path)), "the refused key changed the database's files")
		})
	}

	s, err = sqlite.OpenConfig(ctx, path, sqlite.Config{Key: key})
	require.NoError(t, err, "the right key opens the database")
	defer s.Close()
	v, err := s.Meta(ctx, "last-registered")
	require.NoError(t, err)
	assert.Equal(t, patientName, v)
	c, err := s.Chart(ctx, "chart-1")
	require.NoError(t, err)
	assert.Equal(t, "Nyokabi", c.GivenName)
}

// TestEncryptMigratesADatabaseInClear encrypts a database written in
// clear: afterwards no file holds the name, the key reads every change,
// chart, peer and quarantined bundle as before, the log goes on from
// where it was, no key reads it, and encrypting again is harmless.
func TestEncryptMigratesADatabaseInClear(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "charts.db")
	charts := benchBatches(t, 20)
	s, err := sqlite.Open(ctx, path)
	require.NoError(t, err)
	for _, c := range charts[:19] {
		_, err := s.Write(ctx, c.batch())
		require.NoError(t, err)
	}
	_, err = s.Write(ctx, namedChart())
	require.NoError(t, err)
	_, err = s.Write(ctx, store.Batch{Peers: []store.Peer{{ID: "cloud", Acked: 3, Received: 7}}})
	require.NoError(t, err)
	want := snapshotOf(t, s)
	require.NoError(t, s.Close())
	require.NotEmpty(t, filesHolding(t, dir, "Nyokabi"), "written in clear")

	key := newKey(t)
	require.NoError(t, sqlite.Encrypt(ctx, path, key))
	assert.Empty(t, filesHolding(t, dir, "Nyokabi"), "the name is in no file once encrypted")
	assert.Equal(t, []string{"charts.db"}, keys(dirFiles(t, dir)), "the copy took the database's place and nothing else is left")
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "the encrypted database is the owner's alone")

	_, err = sqlite.Open(ctx, path)
	require.ErrorIs(t, err, sqlite.ErrWrongKey, "without the key")
	s, err = sqlite.OpenConfig(ctx, path, sqlite.Config{Key: key})
	require.NoError(t, err)
	assert.Equal(t, want, snapshotOf(t, s), "the key reads what was written in clear")
	head, err := s.Head(ctx)
	require.NoError(t, err)
	next, err := s.Write(ctx, charts[19].batch())
	require.NoError(t, err)
	assert.Equal(t, head+uint64(len(charts[19].changes)), next, "the log goes on from its head")
	require.NoError(t, s.IntegrityCheck(ctx))
	require.NoError(t, s.Close())

	require.NoError(t, sqlite.Encrypt(ctx, path, key), "encrypting with the same key again does nothing")
	require.ErrorIs(t, sqlite.Encrypt(ctx, path, newKey(t)), sqlite.ErrWrongKey)
	require.ErrorIs(t, sqlite.Encrypt(ctx, filepath.Join(dir, "missing.db"), key), os.ErrNotExist)
	require.ErrorIs(t, sqlite.Encrypt(ctx, path, key[:8]), sqlite.ErrKeySize)
}

// TestEncryptRefusesADatabaseInUse: a store still open with writes in its
// write-ahead log is not encrypted under it; the database stays as it
// was, in clear, and nothing is left beside it.
func TestEncryptRefusesADatabaseInUse(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "charts.db")
	s, err := sqlite.Open(ctx, path)
	require.NoError(t, err)
	defer s.Close()
	_, err = s.Write(ctx, namedChart())
	require.NoError(t, err)
	before := dirFiles(t, dir)
	delete(before, "charts.db-shm")

	require.Error(t, sqlite.Encrypt(ctx, path, newKey(t)))
	after := dirFiles(t, dir)
	delete(after, "charts.db-shm")
	assert.Equal(t, before, after, "the database and its log are as they were")
	v, err := s.Meta(ctx, "last-registered")
	require.NoError(t, err)
	assert.Equal(t, patientName, v)
}

// TestBackupOfEncryptedStoreIsEncrypted backs up an encrypted store in
// use: the backup holds no name, checks sound and opens with the key
// only.
func TestBackupOfEncryptedStoreIsEncrypted(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cfg := sqlite.Config{Key: newKey(t)}
	s, err := sqlite.OpenConfig(ctx, filepath.Join(dir, "charts.db"), cfg)
	require.NoError(t, err)
	defer s.Close()
	_, err = s.Write(ctx, namedChart())
	require.NoError(t, err)

	backups := t.TempDir()
	dst := filepath.Join(backups, "charts.backup")
	require.NoError(t, sqlite.BackupConfig(ctx, filepath.Join(dir, "charts.db"), dst, cfg))
	assert.Empty(t, filesHolding(t, backups, "Nyokabi"))
	problems, err := sqlite.CheckFileConfig(ctx, dst, true, 10, cfg)
	require.NoError(t, err)
	assert.Empty(t, problems)
	_, err = sqlite.CheckFile(ctx, dst, false, 10)
	require.ErrorIs(t, err, sqlite.ErrWrongKey, "the backup does not read without the key")

	b, err := sqlite.OpenConfig(ctx, dst, cfg)
	require.NoError(t, err)
	defer b.Close()
	v, err := b.Meta(ctx, "last-registered")
	require.NoError(t, err)
	assert.Equal(t, patientName, v)
}

// TestConformanceEncrypted runs the store's conformance suite on an
// encrypted store.
func TestConformanceEncrypted(t *testing.T) {
	cfg := sqlite.Config{Key: newKey(t)}
	storetest.Run(t, func(t *testing.T) storetest.Opened {
		path := filepath.Join(t.TempDir(), "charts.db")
		s, err := sqlite.OpenConfig(context.Background(), path, cfg)
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Close() })
		return storetest.Opened{Store: s, Reopen: func(t *testing.T) store.Store {
			require.NoError(t, s.Close())
			s2, err := sqlite.OpenConfig(context.Background(), path, cfg)
			require.NoError(t, err)
			t.Cleanup(func() { _ = s2.Close() })
			require.NoError(t, s2.IntegrityCheck(context.Background()))
			return s2
		}, FailWrites: func(t *testing.T) func() {
			faultvfs.Arm(filepath.Dir(path), faultvfs.FailSync(faultvfs.WAL, 0, 1))
			return faultvfs.Disarm
		}, Crash: func(t *testing.T) store.Store {
			cp, err := faultvfs.CrashCopy(path, t.TempDir())
			require.NoError(t, err)
			c, err := sqlite.OpenConfig(context.Background(), cp, cfg)
			require.NoError(t, err, "a crashed store opens")
			t.Cleanup(func() { _ = c.Close() })
			require.NoError(t, c.IntegrityCheck(context.Background()))
			return c
		}}
	})
}

// storeSnapshot is what a store holds, for comparing two stores.
type storeSnapshot struct {
	Log         []store.Change
	Charts      []store.Chart
	Peers       []store.Peer
	Quarantined []store.Quarantined
	Meta        string
}

func snapshotOf(t *testing.T, s *sqlite.Store) storeSnapshot {
	t.Helper()
	ctx := context.Background()
	var snap storeSnapshot
	var err error
	snap.Log, err = s.Log(ctx, 0, 0)
	require.NoError(t, err)
	snap.Charts, err = s.Charts(ctx, store.Query{})
	require.NoError(t, err)
	snap.Peers, err = s.Peers(ctx)
	require.NoError(t, err)
	snap.Quarantined, err = s.Quarantined(ctx)
	require.NoError(t, err)
	snap.Meta, err = s.Meta(ctx, "last-registered")
	if errors.Is(err, store.ErrNotFound) {
		err = nil
	}
	require.NoError(t, err)
	return snap
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestNewStoreIsTheOwnersAlone: a new database, its write-ahead log and
// its wal-index are mode 0600, whatever the process's umask lets through.
func TestNewStoreIsTheOwnersAlone(t *testing.T) {
	ctx := context.Background()
	for _, cfg := range []sqlite.Config{{}, {Key: newKey(t)}} {
		dir := t.TempDir()
		path := filepath.Join(dir, "charts.db")
		s, err := sqlite.OpenConfig(ctx, path, cfg)
		require.NoError(t, err)
		_, err = s.Write(ctx, namedChart())
		require.NoError(t, err)
		for _, name := range []string{"charts.db", "charts.db-wal", "charts.db-shm"} {
			fi, err := os.Stat(filepath.Join(dir, name))
			require.NoError(t, err)
			assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "%s (key: %t) is readable by others", name, cfg.Key != nil)
		}
		require.NoError(t, s.Close())
	}
}
