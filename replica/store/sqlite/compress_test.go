package sqlite_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica/internal/zchange"
	"github.com/chartsync/chartsync/replica/store"
	"github.com/chartsync/chartsync/replica/store/sqlite"
)

// realChanges returns the changes of n small charts, as a replica stores
// them.
func realChanges(t *testing.T, n int) []store.NewChange {
	t.Helper()
	by := record.Author{UserID: "u-1", Name: "Nurse One", Role: record.RoleClinician, Device: "tab-1"}
	at := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	var out []store.NewChange
	for i := range n {
		id := fmt.Sprintf("6f1c2d3e-4b5a-4c7d-8e9f-%012d", i)
		c, _, err := record.New(id, crdt.NewActorID(), by, at, record.Register{GivenName: "Amina", FamilyName: "Okafor", Sex: "female", EstimatedBirthYear: 1990, Village: "Lwanda", HomeClinic: "north"})
		require.NoError(t, err)
		for j := range 3 {
			_, err := c.Do(by, at.Add(time.Duration(j+1)*time.Hour), record.Diagnose{Code: "B54", Text: "Malaria, unspecified"})
			require.NoError(t, err)
		}
		chs, err := c.Doc().Changes(nil)
		require.NoError(t, err)
		for _, ch := range chs {
			out = append(out, store.NewChange{Chart: id, Hash: ch.Hash, Raw: ch.Raw})
		}
		c.Doc().Close()
	}
	return out
}

// TestChangesAreStoredCompressed: the rows hold less than the changes,
// and read back byte for byte.
func TestChangesAreStoredCompressed(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "z.db")
	s, err := sqlite.Open(ctx, path)
	require.NoError(t, err)
	defer s.Close()
	chs := realChanges(t, 20)
	_, err = s.Write(ctx, store.Batch{Changes: chs})
	require.NoError(t, err)

	raw, stored := rowBytes(t, path)
	want := 0
	for _, c := range chs {
		want += len(c.Raw)
	}
	assert.Equal(t, want, raw, "the rows read back as the changes")
	assert.Less(t, stored*2, want, "the rows are stored at less than half the changes' size")
	got, err := s.Log(ctx, 0, 1000)
	require.NoError(t, err)
	require.Len(t, got, len(chs))
	for i, c := range got {
		assert.Equal(t, chs[i].Raw, c.Raw)
	}
}

// rowBytes returns the changes' bytes, decompressed, and the bytes their
// rows hold, read without the store (which would migrate the database).
func rowBytes(t *testing.T, path string) (raw, stored int) {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	require.NoError(t, err)
	defer db.Close()
	rows, err := db.Query("SELECT raw FROM changes")
	require.NoError(t, err)
	defer rows.Close()
	for rows.Next() {
		var b []byte
		require.NoError(t, rows.Scan(&b))
		r, err := zchange.Decompress(b)
		require.NoError(t, err)
		raw, stored = raw+len(r), stored+len(b)
	}
	require.NoError(t, rows.Err())
	return raw, stored
}

// TestOpenCompressesAnOlderLog opens a database as the store wrote it
// before compression (raw rows, no log_compressed table): its rows are
// compressed, read back the same, and the file shrinks.
func TestOpenCompressesAnOlderLog(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "old.db")
	s, err := sqlite.Open(ctx, path)
	require.NoError(t, err)
	chs := realChanges(t, 300)
	_, err = s.Write(ctx, store.Batch{Changes: chs})
	require.NoError(t, err)
	require.NoError(t, s.Close())
	// Back to the older form: every row raw, no mark.
	db, err := sql.Open("sqlite3", "file:"+path)
	require.NoError(t, err)
	for i, c := range chs {
		_, err := db.Exec("UPDATE changes SET raw = ? WHERE seq = ?", c.Raw, i+1)
		require.NoError(t, err)
	}
	_, err = db.Exec("DROP TABLE log_compressed")
	require.NoError(t, err)
	_, err = db.Exec("VACUUM")
	require.NoError(t, err)
	require.NoError(t, db.Close())
	before := fileSize(t, path)
	raw, stored := rowBytes(t, path)
	require.Equal(t, raw, stored, "the older database holds raw rows")

	s, err = sqlite.Open(ctx, path)
	require.NoError(t, err, "an older database opens")
	got, err := s.Log(ctx, 0, 1<<20)
	require.NoError(t, err)
	require.Len(t, got, len(chs))
	for i, c := range got {
		require.True(t, bytes.Equal(chs[i].Raw, c.Raw), "change %d reads back as it was", i)
	}
	require.NoError(t, s.IntegrityCheck(ctx))
	require.NoError(t, s.Close())
	raw2, stored2 := rowBytes(t, path)
	assert.Equal(t, raw, raw2)
	assert.Less(t, stored2*2, stored, "the rows were compressed to less than half")
	assert.Less(t, fileSize(t, path), before, "the file gave the space back")
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	require.NoError(t, err)
	return fi.Size()
}
