package sqlite

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestClinicLogQueryReadsOnlyTheClinic checks SQLite's plan for a page of
// a clinic's log: a range of the index by clinic, and each change looked
// up by its position, never a scan of the log.
func TestClinicLogQueryReadsOnlyTheClinic(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "charts.db"))
	require.NoError(t, err)
	defer s.Close()
	for _, tt := range []struct {
		clinic bool
		want   []string
	}{
		{true, []string{"SEARCH l USING PRIMARY KEY (clinic=? AND seq>?)", "SEARCH c USING INTEGER PRIMARY KEY (rowid=?)"}},
		{false, []string{"SEARCH c USING INTEGER PRIMARY KEY (rowid>?)"}},
	} {
		rows, err := s.db.QueryContext(ctx, "EXPLAIN QUERY PLAN "+logForQuery(tt.clinic, true), "peer", 7, 512, "north")
		require.NoError(t, err)
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			require.NoError(t, rows.Scan(&id, &parent, &unused, &detail))
			plan = append(plan, detail)
		}
		require.NoError(t, rows.Err())
		rows.Close()
		for _, step := range tt.want {
			assert.Contains(t, plan, step, "clinic=%v: the plan %q", tt.clinic, plan)
		}
		for _, step := range plan {
			assert.False(t, strings.HasPrefix(step, "SCAN") || strings.Contains(step, "TEMP B-TREE"),
				"clinic=%v: the plan %q scans or sorts", tt.clinic, plan)
		}
	}
}
