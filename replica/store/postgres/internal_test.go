package postgres

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/replica/store"
	"github.com/chartsync/chartsync/replica/store/postgres/pgtest"
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

// TestLogForReadsOnlyWhatItSelects runs LogFor's queries under EXPLAIN
// ANALYZE on a log of 20,000 changes of 100 charts, a tenth of them in
// one clinic's scope, and counts the changes each reads: a page of a
// clinic's or a chart's log reads the changes it returns, not those of
// other clinics or charts between them.
func TestLogForReadsOnlyWhatItSelects(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, pgtest.ConnString(t), Config{Schema: pgtest.Schema(t)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	const total, charts = 20_000, 100
	for i := 0; i < total; i += 1000 {
		var b store.Batch
		for j := i; j < i+1000; j++ {
			raw := fmt.Appendf(nil, "change %d", j)
			b.Changes = append(b.Changes, store.NewChange{Chart: fmt.Sprint("c", j%charts), Hash: sha256.Sum256(raw), Raw: raw})
		}
		_, err := s.Write(ctx, b)
		require.NoError(t, err)
	}
	var b store.Batch
	for c := range charts / 10 {
		b.Charts = append(b.Charts, store.Chart{ID: fmt.Sprint("c", c), Scope: []string{"north"}})
	}
	_, err = s.Write(ctx, b)
	require.NoError(t, err)
	_, err = s.pool.Exec(ctx, "ANALYZE")
	require.NoError(t, err)

	// A clinic's page reads its own rows; a chart's may read the rest of
	// the chart's log after After (150 changes here) to sort it, but no
	// other chart's.
	tests := []struct {
		name  string
		q     store.LogQuery
		bound float64
	}{
		{"clinic", store.LogQuery{Clinic: "north", After: 5000, Limit: 100}, 100},
		{"clinic, not from a peer, up to a position", store.LogQuery{Clinic: "north", After: 5000, Upto: 15000, NotFrom: "p1", Limit: 100}, 100},
		{"chart", store.LogQuery{Chart: "c3", After: 5000, Limit: 100}, 150},
		{"chart in a clinic", store.LogQuery{Chart: "c3", Clinic: "north", After: 5000, Limit: 100}, 150},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.LogFor(ctx, tt.q)
			require.NoError(t, err)
			require.Len(t, got, tt.q.Limit)
			query, args := logForQuery(tt.q)
			var plan []map[string]any
			require.NoError(t, s.pool.QueryRow(ctx, "EXPLAIN (ANALYZE, FORMAT JSON) "+query, args...).Scan(&plan))
			read := rowsRead(plan[0]["Plan"].(map[string]any), "changes")
			assert.LessOrEqual(t, read, tt.bound, "changes read for a page of %d (plan %v)", tt.q.Limit, plan)
		})
	}
}

// rowsRead sums the rows that the plan's scans of table produced.
func rowsRead(node map[string]any, table string) float64 {
	n := 0.0
	if node["Relation Name"] == table {
		rows, _ := node["Actual Rows"].(float64)
		loops, _ := node["Actual Loops"].(float64)
		n += rows * loops
	}
	children, _ := node["Plans"].([]any)
	for _, c := range children {
		n += rowsRead(c.(map[string]any), table)
	}
	return n
}

// TestSearchReadsOnlyItsKeys runs Search's query under EXPLAIN ANALYZE on
// 20,000 charts of 10 keys each and counts the rows it reads: the index
// rows under the lookups' keys, and the entries of the charts found, not
// the other charts' or keys.
func TestSearchReadsOnlyItsKeys(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, pgtest.ConnString(t), Config{Schema: pgtest.Schema(t)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	const total = 20_000
	for i := 0; i < total; i += 1000 {
		var b store.Batch
		for j := i; j < i+1000; j++ {
			c := store.Chart{ID: fmt.Sprintf("c%05d", j)}
			for k := range 8 {
				c.Keys = append(c.Keys, fmt.Sprintf("s:%d-%d", k, j%997))
			}
			c.Keys = append(c.Keys, fmt.Sprintf("n:name%04d", j%1000), fmt.Sprintf("v:village%02d", j%50))
			b.Charts = append(b.Charts, c)
		}
		_, err := s.Write(ctx, b)
		require.NoError(t, err)
	}
	_, err = s.pool.Exec(ctx, "ANALYZE")
	require.NoError(t, err)

	// name0007 is under 20 charts, village07 under 400, and every chart
	// under name0007 is in village07.
	q := store.Search{Terms: [][]store.Lookup{{{Key: "n:name0007"}}, {{Key: "v:village07"}, {Key: "v:village99"}}}}
	got, err := s.Search(ctx, q)
	require.NoError(t, err)
	require.Len(t, got, 20)
	query, args := searchQuery(q)
	var plan []map[string]any
	require.NoError(t, s.pool.QueryRow(ctx, "EXPLAIN (ANALYZE, FORMAT JSON) "+query, args...).Scan(&plan))
	keys, charts := rowsRead(plan[0]["Plan"].(map[string]any), "chart_keys"), rowsRead(plan[0]["Plan"].(map[string]any), "charts")
	assert.Positive(t, keys, "the plan's reads of chart_keys are counted (plan %v)", plan)
	assert.LessOrEqual(t, keys, 420.0, "index rows read (plan %v)", plan)
	assert.LessOrEqual(t, charts, 20.0, "chart entries read (plan %v)", plan)

	q = store.Search{Terms: [][]store.Lookup{{{Key: "n:name00", Prefix: true}}}, Limit: 5}
	got, err = s.Search(ctx, q)
	require.NoError(t, err)
	require.Len(t, got, 5)
	query, args = searchQuery(q)
	require.NoError(t, s.pool.QueryRow(ctx, "EXPLAIN (ANALYZE, FORMAT JSON) "+query, args...).Scan(&plan))
	assert.LessOrEqual(t, rowsRead(plan[0]["Plan"].(map[string]any), "chart_keys"), 2000.0, "a prefix reads its range of the index (plan %v)", plan)
}
