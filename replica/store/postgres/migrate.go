package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chartsync/chartsync/replica/store"
)

// ErrSchemaTooNew is returned by Open when the database's schema was
// migrated by a newer version of this package than the one running: this
// version does not know what the newer tables mean and does not touch them.
var ErrSchemaTooNew = errors.New("postgres store: the database schema is newer than this program knows")

// ErrNotMigrated is returned (wrapped) by Ready when the database lacks
// migrations this version needs (another process removed or rolled them
// back after Open).
var ErrNotMigrated = errors.New("postgres store: schema migrations not applied")

// migrations are the schema's versions: migrations[i] takes a schema at
// version i to version i+1. They are applied in order, each once, never
// edited once released: a change to the schema is a new entry.
//
// Text columns that are sorted or compared use the "C" collation, so that
// the order is Go's byte order (store.SortCharts) whatever the database's
// locale. Peer positions are uint64 in Go and bigint here, stored bit for
// bit (a position above 2^63 reads back as it was written, though SQL
// sees it negative); log positions never come near that.
var migrations = []migration{
	// 1: the first schema.
	{sql: `CREATE TABLE meta (
		key   text COLLATE "C" PRIMARY KEY,
		value text NOT NULL
	);
	-- The log head: the last sequence number handed out. Every write that
	-- adds changes or grants locks this row until it commits (see doc.go).
	CREATE TABLE log_head (
		id  integer PRIMARY KEY CHECK (id = 0),
		seq bigint NOT NULL
	);
	INSERT INTO log_head(id, seq) VALUES (0, 0);
	CREATE TABLE changes (
		seq   bigint PRIMARY KEY,
		chart text COLLATE "C" NOT NULL,
		hash  bytea NOT NULL UNIQUE,
		raw   bytea NOT NULL,
		src   text COLLATE "C" NOT NULL DEFAULT '',
		sig   bytea
	);
	CREATE INDEX changes_by_chart ON changes (chart, seq);
	CREATE TABLE charts (
		id          text COLLATE "C" PRIMARY KEY,
		kind        text COLLATE "C" NOT NULL DEFAULT '',
		heads       bytea NOT NULL,
		given       text COLLATE "C" NOT NULL DEFAULT '',
		family      text COLLATE "C" NOT NULL DEFAULT '',
		village     text COLLATE "C" NOT NULL DEFAULT '',
		national_id text COLLATE "C" NOT NULL DEFAULT '',
		home_clinic text COLLATE "C" NOT NULL DEFAULT '',
		scope       text[] NOT NULL DEFAULT '{}',
		updated     timestamptz
	);
	CREATE INDEX charts_by_name ON charts (kind, family, given, id);
	CREATE TABLE grants (
		clinic  text COLLATE "C" NOT NULL,
		seq     bigint NOT NULL,
		chart   text COLLATE "C" NOT NULL,
		revoked boolean NOT NULL
	);
	CREATE INDEX grants_by_clinic ON grants (clinic, seq);
	CREATE TABLE quarantine (
		id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		src    text NOT NULL,
		at     timestamptz,
		reason text NOT NULL,
		data   bytea NOT NULL
	);
	CREATE TABLE snapshots (
		chart text COLLATE "C" PRIMARY KEY,
		seq   bigint NOT NULL,
		data  bytea NOT NULL
	);
	CREATE TABLE peers (
		id        text COLLATE "C" PRIMARY KEY,
		acked     bigint NOT NULL,
		received  bigint NOT NULL,
		last_sync timestamptz
	);
	-- The log by clinic (store.LogQuery): a row for each change of each
	-- chart and each clinic in the chart's scope as last written.
	CREATE TABLE clinic_log (
		clinic text COLLATE "C" NOT NULL,
		seq    bigint NOT NULL,
		PRIMARY KEY (clinic, seq)
	);`},
	// 2: the index of patients' charts by search key (store.Search): each
	// chart's keys as last written, and a row (key, chart) per key,
	// filled from the charts' entries (store.EntryKeys).
	{sql: `ALTER TABLE charts ADD COLUMN keys text[] NOT NULL DEFAULT '{}';
	CREATE TABLE chart_keys (
		key   text COLLATE "C" NOT NULL,
		chart text COLLATE "C" NOT NULL,
		PRIMARY KEY (key, chart)
	);`, fill: indexEntries},
}

// migration is one step of the schema: its statements, then, if set,
// fill, which writes in the same transaction what SQL alone cannot
// compute.
type migration struct {
	sql  string
	fill func(ctx context.Context, tx pgx.Tx) error
}

// indexEntries indexes the patients' charts by their entries'
// store.EntryKeys (names, village, national ID), for charts written
// before Chart.Keys existed; a chart's phones and other identifiers join
// when it is next written.
func indexEntries(ctx context.Context, tx pgx.Tx) error {
	rows, err := tx.Query(ctx, "SELECT id, given, family, village, national_id FROM charts WHERE kind = ''")
	if err != nil {
		return fmt.Errorf("read chart entries: %w", err)
	}
	var ids []string
	var keys [][]string
	for rows.Next() {
		var c store.Chart
		if err := rows.Scan(&c.ID, &c.GivenName, &c.FamilyName, &c.Village, &c.NationalID); err != nil {
			rows.Close()
			return fmt.Errorf("read chart entries: %w", err)
		}
		ids, keys = append(ids, c.ID), append(keys, store.EntryKeys(c))
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read chart entries: %w", err)
	}
	for i, id := range ids {
		if _, err := tx.Exec(ctx, "UPDATE charts SET keys = $2 WHERE id = $1", id, keys[i]); err != nil {
			return fmt.Errorf("index chart %s: %w", id, err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO chart_keys(key, chart) SELECT unnest($2::text[]), $1 ON CONFLICT DO NOTHING", id, keys[i]); err != nil {
			return fmt.Errorf("index chart %s: %w", id, err)
		}
	}
	return nil
}

// SchemaVersion is the schema version this package migrates a database to.
var SchemaVersion = len(migrations)

// migrate brings the schema up to SchemaVersion in one transaction, under
// a transaction-level advisory lock keyed by the schema's name: processes
// opening the same database at once wait for each other, and each applies
// only what is still missing. PostgreSQL's DDL is transactional, so a
// migration that fails leaves the schema as it was.
func migrate(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if schema == "" {
			if err := tx.QueryRow(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
				return fmt.Errorf("read current schema (is the search_path's first schema missing?): %w", err)
			}
		}
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext('chartsync schema ' || $1::text))", schema); err != nil {
			return fmt.Errorf("lock schema %s: %w", schema, err)
		}
		if _, err := tx.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{schema}.Sanitize()); err != nil {
			return fmt.Errorf("create schema %s: %w", schema, err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    integer PRIMARY KEY,
			applied_at timestamptz NOT NULL DEFAULT now()
		)`); err != nil {
			return fmt.Errorf("create schema_migrations: %w", err)
		}
		var version int
		if err := tx.QueryRow(ctx, "SELECT COALESCE(max(version), 0) FROM schema_migrations").Scan(&version); err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		if version > len(migrations) {
			return fmt.Errorf("%w: schema %s is at version %d, this program knows up to %d", ErrSchemaTooNew, schema, version, len(migrations))
		}
		for v := version; v < len(migrations); v++ {
			if _, err := tx.Exec(ctx, migrations[v].sql); err != nil {
				return fmt.Errorf("migrate schema %s to version %d: %w", schema, v+1, err)
			}
			if fill := migrations[v].fill; fill != nil {
				if err := fill(ctx, tx); err != nil {
					return fmt.Errorf("migrate schema %s to version %d: %w", schema, v+1, err)
				}
			}
			if _, err := tx.Exec(ctx, "INSERT INTO schema_migrations(version) VALUES ($1)", v+1); err != nil {
				return fmt.Errorf("record schema version %d: %w", v+1, err)
			}
		}
		return nil
	})
}
