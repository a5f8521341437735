package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/chartsync/chartsync/replica/internal/zchange"
)

// Changes are stored compressed, each on its own (package zchange): a
// chart change is mostly JSON whose keys recur, and a shipped dictionary
// shrinks it about 4×. A database written before keeps its raw rows
// readable (zchange tells the two apart) and is compressed once when it
// is first opened for writing (migrateCompress).

// compressedSchema marks a database whose every change is stored as
// Compress made it. migrateCompress creates it, in a new database too
// (which has nothing to compress).
const compressedSchema = `CREATE TABLE IF NOT EXISTS log_compressed (id INTEGER PRIMARY KEY CHECK (id = 0));`

// hasCompressedLog reports whether the log was compressed (or made so).
func hasCompressedLog(ctx context.Context, db *sql.DB) (bool, error) {
	var n int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema WHERE name = 'log_compressed'").Scan(&n); err != nil {
		return false, fmt.Errorf("read schema: %w", err)
	}
	return n == 1, nil
}

// compressBatch is how many rows one transaction of the migration
// rewrites, so that a large log is compressed in steps a crash can
// interrupt without losing any.
const compressBatch = 1000

// migrateCompress compresses the changes of a database written before
// compression, a batch of rows per transaction (a row is rewritten only
// while it is raw, so an interrupted run goes on where it stopped), then
// marks the log compressed and gives the freed pages back to the file
// system.
func migrateCompress(ctx context.Context, db *sql.DB) error {
	done, err := hasCompressedLog(ctx, db)
	if err != nil || done {
		return err
	}
	rewrote := false
	for after := int64(0); ; {
		n, last, err := compressRows(ctx, db, after)
		if err != nil {
			return fmt.Errorf("compress the log: %w", err)
		}
		rewrote = rewrote || n > 0
		if last == 0 {
			break
		}
		after = last
	}
	if _, err := db.ExecContext(ctx, compressedSchema); err != nil {
		return fmt.Errorf("compress the log: %w", err)
	}
	if rewrote {
		if _, err := db.ExecContext(ctx, "VACUUM"); err != nil {
			return fmt.Errorf("compress the log: reclaim space: %w", err)
		}
	}
	return nil
}

// compressRows rewrites the raw rows among the compressBatch rows after
// seq after, in one transaction. It returns how many it rewrote and the
// last seq it read (0 when there was none).
func compressRows(ctx context.Context, db *sql.DB, after int64) (n int, last int64, err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return 0, 0, err
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	rows, err := tx.QueryContext(ctx, "SELECT seq, raw FROM changes WHERE seq > ? ORDER BY seq LIMIT ?", after, compressBatch)
	if err != nil {
		return 0, 0, err
	}
	type row struct {
		seq int64
		raw []byte
	}
	var todo []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.seq, &r.raw); err != nil {
			rows.Close()
			return 0, 0, err
		}
		last = r.seq
		if z := zchange.Compress(r.raw); len(z) < len(r.raw) {
			todo = append(todo, row{r.seq, z})
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, 0, err
	}
	if len(todo) > 0 {
		st, err := tx.PrepareContext(ctx, "UPDATE changes SET raw = ? WHERE seq = ?")
		if err != nil {
			return 0, 0, err
		}
		defer st.Close()
		for _, r := range todo {
			if _, err := st.ExecContext(ctx, r.raw, r.seq); err != nil {
				return 0, 0, err
			}
		}
	}
	return len(todo), last, tx.Commit()
}

// PacksChanges implements store.Packer: changes are stored compressed.
func (s *Store) PacksChanges() bool { return true }
