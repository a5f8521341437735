package replica

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/replica/store"
	"github.com/chartsync/chartsync/replica/store/sqlite"
)

// pageSeed returns a closed SQLite store file holding two real changes,
// one with a value long enough for overflow pages, and their hashes.
func pageSeed(t testing.TB) ([]byte, []crdt.Hash) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "seed.db")
	st, err := sqlite.Open(ctx, path)
	require.NoError(t, err)
	doc, err := crdt.New("")
	require.NoError(t, err)
	defer doc.Close()
	long := make([]byte, 9000)
	for i := range long {
		long[i] = byte('a' + (i*7919)%26)
	}
	chart := uuid.NewString()
	var b store.Batch
	var hashes []crdt.Hash
	for i, v := range []string{"Mwangi", string(long)} {
		c, err := doc.Edit("", time.Unix(int64(i), 0), func(tx *crdt.Tx) error { return tx.Put(nil, "note", v) })
		require.NoError(t, err)
		b.Changes = append(b.Changes, store.NewChange{Chart: chart, Hash: c.Hash, Raw: c.Raw, Sig: []byte("sig")})
		hashes = append(hashes, c.Hash)
	}
	_, err = st.Write(ctx, b)
	require.NoError(t, err)
	require.NoError(t, st.Close())
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	return data, hashes
}

// TestPageScanReadsRows: the page scan finds every change row of a real
// store, the one on overflow pages too, each checking against its hash.
func TestPageScanReadsRows(t *testing.T) {
	data, hashes := pageSeed(t)
	path := filepath.Join(t.TempDir(), "db")
	require.NoError(t, os.WriteFile(path, data, 0o600))
	f, err := scanFile(path)
	require.NoError(t, err)
	found := map[crdt.Hash]bool{}
	for _, c := range f.rows() {
		sc, _, err := checkSalvaged(c)
		if err == nil {
			found[sc.Hash] = true
			assert.Equal(t, []byte("sig"), sc.Sig)
		}
	}
	for _, h := range hashes {
		assert.True(t, found[h], "change %s read from the pages", h)
	}
}

// FuzzPageScan reads any bytes as a database file page by page: nothing
// panics, and every row that checks is a change its hash names.
func FuzzPageScan(f *testing.F) {
	data, _ := pageSeed(f)
	f.Add(data)
	f.Add(data[:len(data)/2])
	f.Add(data[4096:])
	f.Add([]byte("SQLite format 3\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(t.TempDir(), "db")
		require.NoError(t, os.WriteFile(path, b, 0o600))
		fs, err := scanFile(path)
		require.NoError(t, err)
		for _, c := range fs.rows() {
			require.Positive(t, c.Seq)
			if sc, parsed, err := checkSalvaged(c); err == nil {
				require.Equal(t, sc.Hash, parsed.Hash)
			}
		}
	})
}
