package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/chartsync/chartsync/replica/store"
)

// searchSchema is the index of patients' charts by search key
// (store.Chart.Keys): search_charts numbers each chart that has had keys
// and keeps its keys as last written (a JSON array), and search_keys holds
// a row (key, number) for each key of each chart, sorted by key, so that
// an exact key or a prefix is one range of it. Charts are referred to by
// number to keep the index small: a key row costs the key and a few bytes,
// not a 36-character chart ID.
const searchSchema = `
CREATE TABLE search_charts (n INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, keys TEXT NOT NULL);
CREATE TABLE search_keys (
	key TEXT NOT NULL,
	n   INTEGER NOT NULL,
	PRIMARY KEY (key, n)
) WITHOUT ROWID;`

// hasSearchIndex reports whether the database has the index by search
// key (a database made before it has not, until it is opened for
// writing).
func hasSearchIndex(ctx context.Context, db *sql.DB) (bool, error) {
	var n int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema WHERE name IN ('search_charts', 'search_keys')").Scan(&n); err != nil {
		return false, fmt.Errorf("read schema: %w", err)
	}
	return n == 2, nil
}

// migrateSearch creates the index by search key in a database made before
// it, and fills it in the same transaction with each patient's chart's
// store.EntryKeys (its names, village and national ID; its phone and
// identifiers join when the chart is next written).
func migrateSearch(ctx context.Context, db *sql.DB) error {
	ok, err := hasSearchIndex(ctx, db)
	if err != nil || ok {
		return err
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("index the charts by search key: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if _, err := tx.ExecContext(ctx, searchSchema); err != nil {
		return fmt.Errorf("index the charts by search key: %w", err)
	}
	rows, err := tx.QueryContext(ctx, "SELECT id, given, family, village, national_id FROM charts WHERE kind = ''")
	if err != nil {
		return fmt.Errorf("index the charts by search key: %w", err)
	}
	var charts []store.Chart
	for rows.Next() {
		var c store.Chart
		if err := rows.Scan(&c.ID, &c.GivenName, &c.FamilyName, &c.Village, &c.NationalID); err != nil {
			rows.Close()
			return fmt.Errorf("index the charts by search key: %w", err)
		}
		charts = append(charts, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("index the charts by search key: %w", err)
	}
	for _, c := range charts {
		c.Keys = store.EntryKeys(c)
		if err := rekey(ctx, tx, c); err != nil {
			return fmt.Errorf("index the charts by search key: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("index the charts by search key: %w", err)
	}
	return nil
}

// rekey replaces a chart's search keys with c's (none for a document
// that is not a patient's chart), within the batch's transaction.
func rekey(ctx context.Context, tx *sql.Tx, c store.Chart) error {
	keys := store.NormalKeys(c)
	var n int64
	var stored string
	var was []string
	err := tx.QueryRowContext(ctx, "SELECT n, keys FROM search_charts WHERE id = ?", c.ID).Scan(&n, &stored)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		if len(keys) == 0 {
			return nil
		}
		res, err := tx.ExecContext(ctx, "INSERT INTO search_charts(id, keys) VALUES(?, '[]')", c.ID)
		if err != nil {
			return fmt.Errorf("search keys: %w", err)
		}
		if n, err = res.LastInsertId(); err != nil {
			return fmt.Errorf("search keys: %w", err)
		}
	case err != nil:
		return fmt.Errorf("search keys: %w", err)
	default:
		if err := json.Unmarshal([]byte(stored), &was); err != nil {
			// Damaged: the chart's rows are found the slow way, once.
			if _, err := tx.ExecContext(ctx, "DELETE FROM search_keys WHERE n = ?", n); err != nil {
				return fmt.Errorf("search keys: %w", err)
			}
			was = nil
		}
	}
	if slices.Equal(was, keys) && len(keys) > 0 {
		return nil // unchanged, as after most edits
	}
	for _, k := range was {
		if _, keep := slices.BinarySearch(keys, k); !keep {
			if _, err := tx.ExecContext(ctx, "DELETE FROM search_keys WHERE key = ? AND n = ?", k, n); err != nil {
				return fmt.Errorf("search keys: %w", err)
			}
		}
	}
	for _, k := range keys {
		if !slices.Contains(was, k) {
			if _, err := tx.ExecContext(ctx, "INSERT OR IGNORE INTO search_keys(key, n) VALUES(?, ?)", k, n); err != nil {
				return fmt.Errorf("search key %q: %w", k, err)
			}
		}
	}
	if keys == nil {
		keys = []string{}
	}
	list, err := json.Marshal(keys)
	if err != nil {
		return fmt.Errorf("search keys: %w", err)
	}
	if _, err := tx.ExecContext(ctx, "UPDATE search_charts SET keys = ? WHERE n = ?", string(list), n); err != nil {
		return fmt.Errorf("search keys: %w", err)
	}
	return nil
}

// lookupQuery returns the statement that selects the numbers of the
// charts under one lookup: one key, or a range of keys.
func lookupQuery(l store.Lookup) (string, []any) {
	if !l.Prefix {
		return "SELECT n FROM search_keys WHERE key = ?", []any{l.Key}
	}
	if end, ok := store.PrefixEnd(l.Key); ok {
		return "SELECT n FROM search_keys WHERE key >= ? AND key < ?", []any{l.Key, end}
	}
	return "SELECT n FROM search_keys WHERE key >= ?", []any{l.Key}
}

// searchQuery returns Search's statement: the numbers of the charts every
// term finds (the union of its lookups' ranges, intersected across
// terms), computed first, then each chart's entry looked up by number.
// The joins are CROSS JOINs so that SQLite keeps that order, whatever it
// estimates: its cost is that of the index ranges read, not of the
// charts.
func searchQuery(q store.Search) (string, []any) {
	var terms []string
	var args []any
	for _, term := range q.Terms {
		var parts []string
		for _, l := range term {
			sel, a := lookupQuery(l)
			parts, args = append(parts, sel), append(args, a...)
		}
		terms = append(terms, "SELECT DISTINCT n FROM ("+strings.Join(parts, " UNION ALL ")+")")
	}
	limit := q.Limit
	if limit <= 0 {
		limit = -1
	}
	return "WITH found(n) AS (" + strings.Join(terms, " INTERSECT ") + ")" +
		" SELECT " + chartColsOf("ch", "k.keys") + " FROM found f CROSS JOIN search_charts k ON k.n = f.n" +
		" CROSS JOIN charts ch ON ch.id = k.id WHERE ch.kind = '' ORDER BY ch.id LIMIT ?", append(args, limit)
}

// Search implements store.Index. A database opened for reading only
// before the index existed is searched by reading every chart's entry
// (store.EntryKeys).
func (s *Store) Search(ctx context.Context, q store.Search) ([]store.Chart, error) {
	db, done, err := s.reader(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	if len(q.Terms) == 0 || slices.ContainsFunc(q.Terms, func(t []store.Lookup) bool { return len(t) == 0 }) {
		return nil, nil
	}
	if !s.searchable {
		return s.searchEntries(ctx, db, q)
	}
	query, args := searchQuery(q)
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("search charts: %w", err)
	}
	defer rows.Close()
	var out []store.Chart
	for rows.Next() {
		c, err := scanChart(rows)
		if err != nil {
			return nil, fmt.Errorf("search charts: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("search charts: %w", err)
	}
	return out, nil
}

// searchEntries is Search on a database without the index.
func (s *Store) searchEntries(ctx context.Context, db *sql.DB, q store.Search) ([]store.Chart, error) {
	cols, from := s.chartsFrom()
	rows, err := db.QueryContext(ctx, "SELECT "+cols+" FROM "+from+" WHERE ch.kind = '' ORDER BY ch.id")
	if err != nil {
		return nil, fmt.Errorf("search charts: %w", err)
	}
	defer rows.Close()
	var out []store.Chart
	for rows.Next() && (q.Limit <= 0 || len(out) < q.Limit) {
		c, err := scanChart(rows)
		if err != nil {
			return nil, fmt.Errorf("search charts: %w", err)
		}
		if c.Keys = store.EntryKeys(c); q.Selects(c.Keys) {
			out = append(out, c)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("search charts: %w", err)
	}
	return out, nil
}
