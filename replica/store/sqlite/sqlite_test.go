package sqlite_test

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/replica/store"
	"github.com/chartsync/chartsync/replica/store/sqlite"
	"github.com/chartsync/chartsync/replica/store/sqlite/faultvfs"
	"github.com/chartsync/chartsync/replica/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Opened {
		path := filepath.Join(t.TempDir(), "charts.db")
		s, err := sqlite.Open(context.Background(), path)
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Close() })
		return storetest.Opened{Store: s, Reopen: func(t *testing.T) store.Store {
			require.NoError(t, s.Close())
			s2, err := sqlite.Open(context.Background(), path)
			require.NoError(t, err)
			t.Cleanup(func() { _ = s2.Close() })
			require.NoError(t, s2.IntegrityCheck(context.Background()))
			return s2
		}, FailWrites: func(t *testing.T) func() {
			// The commit's WAL fsync fails.
			faultvfs.Arm(filepath.Dir(path), faultvfs.FailSync(faultvfs.WAL, 0, 1))
			return faultvfs.Disarm
		}, Crash: func(t *testing.T) store.Store {
			c := crashView(t, path, t.TempDir())
			t.Cleanup(func() { _ = c.Close() })
			return c
		}}
	})
}

func TestOpenRefusesURIPath(t *testing.T) {
	_, err := sqlite.Open(context.Background(), "x.db?mode=memory")
	require.Error(t, err)
}

// TestOpenAddsLaterColumns opens a database made before changes carried
// signatures and documents had kinds: its changes read back unsigned, new
// ones keep their signatures, and its charts are patients' charts.
func TestOpenAddsLaterColumns(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "old.db")
	db, err := sql.Open("sqlite3", "file:"+path)
	require.NoError(t, err)
	_, err = db.Exec(`CREATE TABLE changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, chart TEXT NOT NULL,
		hash BLOB NOT NULL UNIQUE, raw BLOB NOT NULL, src TEXT NOT NULL DEFAULT '')`)
	require.NoError(t, err)
	_, err = db.Exec(`CREATE TABLE charts (id TEXT PRIMARY KEY, heads BLOB NOT NULL, given TEXT NOT NULL DEFAULT '',
		family TEXT NOT NULL DEFAULT '', village TEXT NOT NULL DEFAULT '', national_id TEXT NOT NULL DEFAULT '',
		home_clinic TEXT NOT NULL DEFAULT '', scope TEXT NOT NULL DEFAULT '[]', updated INTEGER NOT NULL DEFAULT 0)`)
	require.NoError(t, err)
	_, err = db.Exec("INSERT INTO charts(id, heads, given) VALUES('a', x'', 'Amina')")
	require.NoError(t, err)
	old := sha256.Sum256([]byte("old"))
	_, err = db.Exec("INSERT INTO changes(chart, hash, raw) VALUES('a', ?, 'old')", old[:])
	require.NoError(t, err)
	require.NoError(t, db.Close())

	s, err := sqlite.Open(ctx, path)
	require.NoError(t, err, "an older database opens")
	defer s.Close()
	sig := []byte("sixty-four bytes of signature, more or less, for the test's sake")
	_, err = s.Write(ctx, store.Batch{Changes: []store.NewChange{{Chart: "a", Hash: sha256.Sum256([]byte("new")), Raw: []byte("new"), Sig: sig}}})
	require.NoError(t, err)
	all, err := s.Log(ctx, 0, 0)
	require.NoError(t, err)
	require.Len(t, all, 2)
	require.Nil(t, all[0].Sig, "a change stored before signatures reads back unsigned")
	require.Equal(t, sig, all[1].Sig)
	charts, err := s.Charts(ctx, store.Query{})
	require.NoError(t, err)
	require.Len(t, charts, 1, "a chart indexed before documents had kinds is a patient's chart")
	require.Equal(t, "Amina", charts[0].GivenName)
	require.NoError(t, s.IntegrityCheck(ctx))
}
