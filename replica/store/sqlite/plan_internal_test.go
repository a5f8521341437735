package sqlite

import (
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/replica/store"
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
		q    store.LogQuery
		want []string
	}{
		{store.LogQuery{Clinic: "north", NotFrom: "peer", After: 7, Limit: 512},
			[]string{"SEARCH l USING PRIMARY KEY (clinic=? AND seq>? AND seq<?)", "SEARCH c USING INTEGER PRIMARY KEY (rowid=?)"}},
		{store.LogQuery{NotFrom: "peer", After: 7, Limit: 512}, []string{"SEARCH c USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)"}},
		{store.LogQuery{Chart: "a", NotFrom: "peer", After: 7, Upto: 9}, []string{"SEARCH c USING INDEX changes_by_chart (chart=? AND seq>? AND seq<?)"}},
	} {
		query, args := logForQuery(tt.q, true)
		rows, err := s.db.QueryContext(ctx, "EXPLAIN QUERY PLAN "+query, args...)
		require.NoError(t, err)
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			require.NoError(t, rows.Scan(&id, &parent, &unused, &detail))
			plan = append(plan, planStep(detail))
		}
		require.NoError(t, rows.Err())
		rows.Close()
		for _, step := range tt.want {
			assert.Contains(t, plan, step, "%+v: the plan %q", tt.q, plan)
		}
		for _, step := range plan {
			assert.False(t, strings.HasPrefix(step, "SCAN") || strings.Contains(step, "TEMP B-TREE"),
				"%+v: the plan %q scans or sorts", tt.q, plan)
		}
	}
}

// TestSearchQueryReadsOnlyItsKeys checks SQLite's plan for a search: a
// range of the key index per lookup, then each chart found looked up by
// number and by ID, never a scan of the charts or of the keys.
func TestSearchQueryReadsOnlyItsKeys(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "charts.db"))
	require.NoError(t, err)
	defer s.Close()
	for _, q := range []store.Search{
		{Terms: [][]store.Lookup{{{Key: "n:wanjiru"}}}, Limit: 20},
		{Terms: [][]store.Lookup{{{Key: "n:wanj", Prefix: true}, {Key: "s:wnjr"}}, {{Key: "n:mwangi"}, {Key: "v:mwangi"}}}},
	} {
		query, args := searchQuery(q)
		rows, err := s.db.QueryContext(ctx, "EXPLAIN QUERY PLAN "+query, args...)
		require.NoError(t, err)
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			require.NoError(t, rows.Scan(&id, &parent, &unused, &detail))
			plan = append(plan, planStep(detail))
		}
		require.NoError(t, rows.Err())
		rows.Close()
		for _, step := range []string{"SEARCH search_keys USING PRIMARY KEY (key=?)", "SEARCH k USING INTEGER PRIMARY KEY (rowid=?)"} {
			assert.Contains(t, plan, step, "%+v: the plan %q", q, plan)
		}
		for _, step := range plan {
			assert.False(t, strings.HasPrefix(step, "SCAN search_keys") || strings.HasPrefix(step, "SCAN ch") || strings.HasPrefix(step, "SCAN k"),
				"%+v: the plan %q scans a table", q, plan)
		}
	}
}

// tableStep matches the start of a step of a plan that reads a table, as
// SQLite before 3.36 words it ("SEARCH TABLE changes AS c") and after
// ("SEARCH c").
var tableStep = regexp.MustCompile(`^(SEARCH|SCAN) (?:TABLE |SUBQUERY )?(?:\S+ AS )?`)

// planStep returns a step of a plan in the words of SQLite 3.36 on: a
// table is named by its alias when it has one.
func planStep(detail string) string {
	return tableStep.ReplaceAllString(detail, "$1 ")
}
