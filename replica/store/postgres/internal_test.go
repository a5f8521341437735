package postgres

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/replica/store"
)

// TestFailedCommitOutcomes: a COMMIT the server answered with an error,
// or never received, stored nothing, and a full disk says so.
func TestFailedCommitOutcomes(t *testing.T) {
	full := &pgconn.PgError{Severity: "ERROR", Code: "53100", Message: `could not extend file "base/16384/16385": No space left on device`}
	tests := []struct {
		name     string
		err      error
		diskFull bool
	}{
		{"disk full", full, true},
		{"serialization failure", &pgconn.PgError{Severity: "ERROR", Code: "40001"}, false},
		{"rolled back", pgx.ErrTxCommitRollback, false},
	}
	s := &Store{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.settle(context.Background(), written{xid: "1"}, tt.err)
			require.Error(t, err)
			assert.NotErrorIs(t, err, store.ErrOutcomeUnknown, "the server said no: nothing was stored")
			assert.Equal(t, tt.diskFull, errors.Is(err, store.ErrDiskFull))
			assert.ErrorIs(t, err, tt.err)
		})
	}
	err := notStored(full)
	assert.ErrorIs(t, err, store.ErrDiskFull, "a statement that failed on a full disk says the disk is full")
}

// FuzzDecodeHeads reads stored heads, which come from the database: any
// bytes are refused or read back to themselves.
func FuzzDecodeHeads(f *testing.F) {
	for _, h := range []crdt.Heads{nil, {sha256.Sum256([]byte("a"))}, {sha256.Sum256([]byte("a")), sha256.Sum256([]byte("b")), sha256.Sum256([]byte("c"))}} {
		f.Add(encodeHeads(h))
	}
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := decodeHeads(b)
		if err != nil {
			require.NotZero(t, len(b)%len(crdt.Hash{}), "only a length that is not a whole number of hashes is refused")
			return
		}
		require.True(t, bytes.Equal(b, encodeHeads(h)), "heads read back to the bytes they were read from")
	})
}
