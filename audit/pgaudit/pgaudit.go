package pgaudit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chartsync/chartsync/audit"
)

// Config tunes a Log. The zero value works.
type Config struct {
	// Schema, if set, is the PostgreSQL schema holding the log's tables
	// (created when missing); "" uses the connection's search_path.
	Schema string
	// MaxConns bounds the connection pool; 0 means 4.
	MaxConns int32
	// Now stamps entries appended with a zero Time (default time.Now).
	Now func() time.Time
}

// pageRows is how many records Export reads per query.
const pageRows = 1000

// lockKey is the advisory lock key under which Open creates the tables
// ("chartsync audit" in ASCII, cut to 63 bits).
const lockKey = 0x6368617274617564

// Log is an access log in PostgreSQL. It is safe for concurrent use, by
// several goroutines and by several processes on one database.
type Log struct {
	pool *pgxpool.Pool
	now  func() time.Time
}

// Open connects to the database connString names (as pgx takes it),
// creates the log's tables when missing, and returns the log.
func Open(ctx context.Context, connString string, cfg Config) (*Log, error) {
	pc, err := pgxpool.ParseConfig(connString)
	if err != nil {
		// pgx's parse errors may quote the password.
		return nil, errors.New("open audit log: the connection string does not parse")
	}
	pc.MaxConns = 4
	if cfg.MaxConns > 0 {
		pc.MaxConns = cfg.MaxConns
	}
	rp := pc.ConnConfig.RuntimeParams
	if cfg.Schema != "" {
		rp["search_path"] = pgx.Identifier{cfg.Schema}.Sanitize()
	}
	// Append's promise of durability rests on a synchronous commit.
	rp["synchronous_commit"] = "on"
	if rp["application_name"] == "" {
		rp["application_name"] = "chartsync"
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("open audit log on %s: %w", pc.ConnConfig.Host, err)
	}
	l := &Log{pool: pool, now: cfg.Now}
	if l.now == nil {
		l.now = time.Now
	}
	if err := l.migrate(ctx, cfg.Schema); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open audit log on %s: %w", pc.ConnConfig.Host, err)
	}
	return l, nil
}

func (l *Log) migrate(ctx context.Context, schema string) error {
	return pgx.BeginFunc(ctx, l.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(lockKey)); err != nil {
			return err
		}
		if schema != "" {
			if _, err := tx.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{schema}.Sanitize()); err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, `
			CREATE TABLE IF NOT EXISTS audit_head (
				id   integer PRIMARY KEY CHECK (id = 0),
				seq  bigint NOT NULL,
				head bytea NOT NULL
			);
			INSERT INTO audit_head(id, seq, head) VALUES (0, 0, '\x0000000000000000000000000000000000000000000000000000000000000000')
				ON CONFLICT (id) DO NOTHING;
			CREATE TABLE IF NOT EXISTS audit_log (
				seq  bigint PRIMARY KEY,
				line bytea NOT NULL
			);`)
		return err
	})
}

// Close closes the connection pool, waiting for queries in progress.
func (l *Log) Close() error {
	l.pool.Close()
	return nil
}

// Append records entries, in order, in one transaction: when it returns
// nil they are committed. It assigns each entry's Seq, and a Time from
// Config.Now where Time is zero. An entry that fails validation gives an
// *audit.EntryError (audit.ErrInvalidEntry) with its Index, and nothing is
// written. Appending no entries does nothing.
func (l *Log) Append(ctx context.Context, entries ...audit.Entry) error {
	if len(entries) == 0 {
		return nil
	}
	// Validate before taking the lock, so that a refused call costs no
	// one a wait.
	var probe audit.Chain
	for i := range entries {
		e := entries[i]
		if e.Time.IsZero() {
			e.Time = l.now()
		}
		if _, err := probe.Next(e); err != nil {
			return entryError(i, err)
		}
	}
	err := pgx.BeginFunc(ctx, l.pool, func(tx pgx.Tx) error {
		var c audit.Chain
		var head []byte
		if err := tx.QueryRow(ctx, "SELECT seq, head FROM audit_head WHERE id = 0 FOR UPDATE").Scan(&c.Seq, &head); err != nil {
			return fmt.Errorf("lock the chain's head: %w", err)
		}
		if len(head) != len(c.Head) {
			return fmt.Errorf("the chain's head is %d bytes, not %d: %w", len(head), len(c.Head), audit.ErrCorrupt)
		}
		copy(c.Head[:], head)
		seqs := make([]int64, len(entries))
		lines := make([][]byte, len(entries))
		for i := range entries {
			e := entries[i]
			if e.Time.IsZero() {
				e.Time = l.now()
			}
			line, err := c.Next(e)
			if err != nil {
				return entryError(i, err)
			}
			seqs[i], lines[i] = int64(c.Seq), line
		}
		if _, err := tx.Exec(ctx, "INSERT INTO audit_log(seq, line) SELECT * FROM unnest($1::bigint[], $2::bytea[])", seqs, lines); err != nil {
			return fmt.Errorf("insert records: %w", err)
		}
		if _, err := tx.Exec(ctx, "UPDATE audit_head SET seq = $1, head = $2 WHERE id = 0", int64(c.Seq), c.Head[:]); err != nil {
			return fmt.Errorf("move the chain's head: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("append %d entries to the access log: %w", len(entries), err)
	}
	return nil
}

func entryError(i int, err error) error {
	var ee *audit.EntryError
	if errors.As(err, &ee) {
		ee.Index = i
	}
	return err
}

// Head returns the chain's end as the database holds it: the Seq of the
// last record and the hex SHA-256 of its line (see audit.Log.Head).
func (l *Log) Head(ctx context.Context) (seq uint64, sum string, err error) {
	c, err := l.head(ctx)
	return c.Seq, c.String(), err
}

func (l *Log) head(ctx context.Context) (audit.Chain, error) {
	var c audit.Chain
	var head []byte
	if err := l.pool.QueryRow(ctx, "SELECT seq, head FROM audit_head WHERE id = 0").Scan(&c.Seq, &head); err != nil {
		return c, fmt.Errorf("read the access log's head: %w", err)
	}
	if len(head) != len(c.Head) {
		return c, fmt.Errorf("read the access log's head: %d bytes, not %d: %w", len(head), len(c.Head), audit.ErrCorrupt)
	}
	copy(c.Head[:], head)
	return c, nil
}

// Export writes the entries f selects, in log order, to w in the given
// format (see audit.Log.Export), checking the whole chain up to the head
// the database held when Export began, and returns how many it wrote.
// Appends carry on meanwhile. A chain that does not check, or does not end
// at that head, gives an *audit.CorruptError (audit.ErrCorrupt); on any
// error what reached w must be discarded.
func (l *Log) Export(ctx context.Context, w io.Writer, f audit.Filter, format audit.Format) (int, error) {
	want, err := l.head(ctx)
	if err != nil {
		return 0, err
	}
	r := &rowReader{ctx: ctx, l: l, upto: want.Seq}
	n, end, err := audit.ExportLines(ctx, r, w, f, format)
	if err == nil && end != want {
		err = &audit.CorruptError{Line: int(end.Seq), Reason: fmt.Sprintf(
			"the records end at seq %d, hash %s, but the head is seq %d, hash %s: records were removed or changed", end.Seq, end, want.Seq, want)}
	}
	if err != nil {
		return n, fmt.Errorf("export the access log: %w", err)
	}
	return n, nil
}

// Verify checks the whole chain, as Export does, and returns how many
// records it holds.
func (l *Log) Verify(ctx context.Context) (int, error) {
	return l.Export(ctx, io.Discard, audit.Filter{}, audit.JSONLines)
}

// rowReader reads the records with seq <= upto as the lines of a log
// file, a page at a time.
type rowReader struct {
	ctx  context.Context
	l    *Log
	upto uint64
	last uint64 // seq of the last record read
	buf  bytes.Buffer
	done bool
}

func (r *rowReader) Read(p []byte) (int, error) {
	for r.buf.Len() == 0 {
		if r.done {
			return 0, io.EOF
		}
		if err := r.fill(); err != nil {
			return 0, err
		}
	}
	return r.buf.Read(p)
}

func (r *rowReader) fill() error {
	rows, err := r.l.pool.Query(r.ctx, "SELECT seq, line FROM audit_log WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3",
		int64(r.last), int64(r.upto), pageRows)
	if err != nil {
		return fmt.Errorf("read the access log: %w", err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var seq int64
		var line []byte
		if err := rows.Scan(&seq, &line); err != nil {
			return fmt.Errorf("read the access log: %w", err)
		}
		r.buf.Write(line)
		r.buf.WriteByte('\n')
		r.last = uint64(seq)
		n++
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read the access log: %w", err)
	}
	if n < pageRows {
		r.done = true
	}
	return nil
}
