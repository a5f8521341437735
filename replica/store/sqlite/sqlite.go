// Package sqlite is chartsync's embedded store: one SQLite database file in
// WAL mode with synchronous=FULL, so a Write that returns nil has been
// fsynced and survives kill -9 and power loss.
//
// It uses github.com/mutecomm/go-sqlcipher/v4, a build of the
// database/sql driver github.com/mattn/go-sqlite3 around SQLCipher 4.4.2
// (SQLite 3.33.0 with page encryption; its crypto is the bundled
// libtomcrypt, no OpenSSL), so that a device's database can be encrypted
// at rest. cgo is already required by automerge-go, and the driver
// compiles SQLite's own C sources, whose WAL and fsync behaviour is the
// most widely exercised there is. Only one SQLite can be linked into a
// program (the two drivers' C symbols clash), so nothing in chartsync
// imports github.com/mattn/go-sqlite3. SQLite 3.33 lacks RETURNING,
// MATERIALIZED and (in this build) JSON1: the store's SQL does without
// them, and reads a chart's scope with a function of its own (scope_has).
//
// # Usage
//
//	st, err := sqlite.Open(ctx, "/var/lib/clinic/charts.db")
//	r, err := replica.New(ctx, st, replica.Config{})
//
// encrypted at rest, with a 32-byte key:
//
//	st, err := sqlite.OpenConfig(ctx, path, sqlite.Config{Key: key})
//
// # The log by clinic
//
// The table clinic_log holds a row (clinic, seq) for each change of each
// chart and each clinic in the chart's scope (store.LogQuery.Clinic), with
// clinic IDs numbered once in the table clinics: a few bytes per change
// and clinic. Write adds the rows of new changes, and moves a chart's rows
// when its scope changes, in the batch's transaction. LogFor reads a
// range of it by (clinic, seq) and looks each change up by seq, so a page
// of a clinic's log reads that clinic's rows only.
//
// A database made before the index is brought up to date when it is
// opened for writing: the tables are created and filled from the log and
// the charts' scopes in one transaction, so an open that fails or is
// killed midway leaves the database as it was, and the next open does it
// again. Opened for reading only (a full disk), such a database is read
// without the index, at the cost of a scan of the log.
//
// # Search
//
// The tables search_charts (a number per patient's chart, and its keys as
// last written) and search_keys (a row (key, number) per key, sorted by
// key, WITHOUT ROWID) index the charts by store.Chart.Keys. Write replaces
// a chart's rows in the batch's transaction, and skips a chart whose keys
// did not change. Search reads one range of search_keys per lookup,
// intersects the terms, and only then looks the charts found up by number
// and ID (TestSearchQueryReadsOnlyItsKeys checks the plan). At 100,000
// synthetic charts the index takes about 290 bytes a chart on disk, of
// which 117 are the key rows; a search's 99th percentile was 6-25 ms on a
// shared two-core machine (replica BenchmarkSearch). A database made
// before the index is indexed when opened for writing, from each chart's
// names, village and national ID (store.EntryKeys); opened for reading
// only, it is searched by reading every chart's entry.
//
// # When a write fails
//
// A Write is one IMMEDIATE transaction. Its COMMIT appends the changed
// pages to the write-ahead log (WAL) as frames, the last one marked as the
// commit, fsyncs the WAL, and then records the frames in the wal-index
// (the shared-memory file that tells connections which frames count).
// A restart rebuilds the wal-index from the WAL: every run of frames that
// ends in a commit frame with valid checksums counts, whatever the
// process that wrote it was told. What a failed Write leaves therefore
// depends on where it failed:
//
//   - Before COMMIT (begin, a statement, pages spilled to the WAL before
//     the commit): SQLite rolls the transaction back and no commit frame
//     was written. Nothing is stored, and the error says only what failed
//     (store.ErrDiskFull too when the disk is full).
//   - COMMIT fails with SQLITE_FULL: a frame did not fit on the disk. The
//     commit frame is the last frame written, so it did not reach the WAL
//     whole, and a frame's checksum covers its bytes: nothing is stored.
//     The error matches store.ErrDiskFull.
//   - COMMIT fails otherwise (a frame write that reported an I/O error, the
//     WAL fsync, a wal-index that could not grow): the commit frame may be
//     in the WAL, unseen by this connection but replayed by the next
//     start. The store then commits a small fence transaction. Its frames
//     take the failed commit's place in the WAL, so once the fence is
//     fsynced the failed commit can never be replayed, and the error says
//     nothing was stored. If the fence fails too, the error matches
//     store.ErrOutcomeUnknown, and the store reopens the database so that
//     its reads show what the files now hold, which is what a restart
//     would find: re-read before retrying.
//   - A checkpoint (copying the WAL into the database file, after commits
//     and at Close) that fails loses nothing: its commits stay in the
//     fsynced WAL, and the next open replays them.
//
// The fault tests (package faultvfs) fail each of these steps and check
// the outcome after a simulated crash.
//
// # A full disk
//
// Opening an existing store writes nothing: its schema is created only
// when missing. When the disk is too full even to open the database the
// usual way (SQLite cannot give the wal-index its shared-memory file),
// Open opens it for reading only, in exclusive locking mode, where the
// wal-index lives in memory: charts can be read, ReadOnly says why, and
// each Write first tries the usual open again (the disk may have room by
// then) and otherwise fails with store.ErrDiskFull.
//
// # Encryption at rest
//
// With a key (OpenConfig, Config.Key: 32 random bytes), the database is
// SQLCipher-encrypted: every page of the database file and of its
// write-ahead log is encrypted (AES-256-CBC) and authenticated
// (HMAC-SHA512), so that a disk read without the key shows the files'
// names and sizes and nothing of the charts, the index, the quarantine or
// the peers (TestKeyHidesTheChartsOnDisk greps every file of the
// directory for a patient's name). The wal-index (-shm) holds page
// numbers only. The key is used raw (no password derivation at each
// open); deriving it from users' passwords, or keeping it in a key file
// they unlock, is the caller's. Opening with another key or none gives
// ErrWrongKey and writes nothing; a key for a database in clear gives
// ErrNotEncrypted, and Encrypt encrypts such a database in place. A
// database Open creates, its write-ahead log and its wal-index are mode
// 0600, encrypted or not.
// BackupConfig copies an encrypted database encrypted with the same key,
// and CheckFileConfig checks such a copy.
//
// Encryption costs CPU on every page read from the disk or the
// operating system's cache and every page written: the bundled crypto is
// portable C, without the processor's AES instructions. See
// BenchmarkOpen, BenchmarkWrite and BenchmarkSyncRead, which run each
// case in clear and encrypted: on a shared two-core machine, medians of
// four runs, opening a store of 1,000 charts took 1.0 ms in clear and
// 1.6 ms encrypted, writing a chart 2.0 and 3.1 ms (an fsync each, so
// the ratio swung from 1.1 to 1.6 between runs), reading a clinic's log
// of 4,000 changes 27 and 26 ms from SQLite's cache and 67 and 84 ms
// from the files; syncbench's full sync of 5,000 charts took 1.3 times
// as long with both replicas encrypted, and its databases 3.7% more
// room (SQLCipher keeps an IV and a MAC in each page).
//
// # Caveats
//
// The store holds one connection: SQLite allows one writer at a time, and
// a clinic replica is not write-heavy. A cloud that outgrows one machine
// should use a PostgreSQL store.
//
// An encrypted store keeps its key in memory while it is open (the
// driver's connection string holds it). Encrypt leaves the blocks of the
// database in clear freed but not wiped.
//
// While a store is open for reading only, no other process can open the
// same database. What a re-read shows after store.ErrOutcomeUnknown is
// what the operating system holds; after a failed fsync, a power cut may
// still lose it. It matches what a restart would find when no other
// process has the database open (another process keeps the wal-index as it
// was, and with it the reopened connection's view). The fence rests on
// SQLite's WAL format, in which a frame counts only if every frame before
// it in the log does.
package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	sqlite3 "github.com/mutecomm/go-sqlcipher/v4" // registers the "sqlite3" driver

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/replica/internal/zchange"
	"github.com/chartsync/chartsync/replica/store"
)

const schema = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS changes (
	seq   INTEGER PRIMARY KEY AUTOINCREMENT,
	chart TEXT NOT NULL,
	hash  BLOB NOT NULL UNIQUE,
	raw   BLOB NOT NULL,
	src   TEXT NOT NULL DEFAULT '',
	sig   BLOB NOT NULL DEFAULT x''
);
CREATE INDEX IF NOT EXISTS changes_by_chart ON changes(chart, seq);
CREATE TABLE IF NOT EXISTS charts (
	id          TEXT PRIMARY KEY,
	heads       BLOB NOT NULL,
	given       TEXT NOT NULL DEFAULT '',
	family      TEXT NOT NULL DEFAULT '',
	village     TEXT NOT NULL DEFAULT '',
	national_id TEXT NOT NULL DEFAULT '',
	home_clinic TEXT NOT NULL DEFAULT '',
	scope       TEXT NOT NULL DEFAULT '[]',
	updated     INTEGER NOT NULL DEFAULT 0,
	kind        TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS grants (
	clinic TEXT NOT NULL,
	seq    INTEGER NOT NULL,
	chart  TEXT NOT NULL,
	revoked INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS grants_by_clinic ON grants(clinic, seq);
CREATE TABLE IF NOT EXISTS quarantine (
	id     INTEGER PRIMARY KEY AUTOINCREMENT,
	src    TEXT NOT NULL,
	at     INTEGER NOT NULL,
	reason TEXT NOT NULL,
	data   BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshots (chart TEXT PRIMARY KEY, seq INTEGER NOT NULL, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS peers (
	id        TEXT PRIMARY KEY,
	acked     INTEGER NOT NULL,
	received  INTEGER NOT NULL,
	last_sync INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS fence (id INTEGER PRIMARY KEY CHECK (id = 0), n INTEGER NOT NULL);`

// Store is a store.Store in one SQLite file. It is safe for concurrent use.
type Store struct {
	path   string
	cfg    Config
	closed atomic.Bool

	// mu guards the handle, which a failed write may replace: reads hold
	// it shared, writes whole.
	mu sync.RWMutex
	db *sql.DB // nil when the last reopen failed (then broken says why)
	// readOnly, when set, says why the database is open for reading only
	// (it matches store.ErrDiskFull).
	readOnly error
	broken   error
	// indexed: the database has the log's index by clinic. Only one
	// opened for reading only, made before the index, lacks it; its
	// clinic logs are then read through the charts' scopes.
	indexed bool
	// searchable: the database has the index by search key (see
	// search.go); the same holds of it as of indexed.
	searchable bool
}

var _ store.Store = (*Store)(nil)

// Open opens or creates the database at path, in clear. On a disk too
// full to open an existing database the usual way, it opens it for
// reading only (see ReadOnly).
func Open(ctx context.Context, path string) (*Store, error) {
	return OpenConfig(ctx, path, Config{})
}

// OpenConfig is Open with a Config: with a key, the database is created
// encrypted, or must have been made with that key. An encrypted database
// opened with another key or none gives an error matching ErrWrongKey,
// and a database in clear opened with a key one matching
// ErrNotEncrypted; either way nothing is written.
func OpenConfig(ctx context.Context, path string, cfg Config) (*Store, error) {
	if path == "" || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("open store %q: path must be a plain file path", path)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	if err := cfg.checkFile(path); err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	// SQLite creates a new database with the process's umask, and its
	// write-ahead log and wal-index with the database's mode: made here
	// empty, they are all the owner's alone. An error is left for SQLite
	// to report as it would.
	if f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600); err == nil {
		f.Close()
	}
	s := &Store{path: path, cfg: cfg}
	if err := s.reopen(ctx); err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return s, nil
}

// ReadOnly returns nil when the store writes as usual, or why it is open
// for reading only: the disk was too full to open it otherwise (the error
// matches store.ErrDiskFull). Each Write tries the usual open again first.
func (s *Store) ReadOnly() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.readOnly
}

// openDB opens the database the usual way, or for reading only when the
// disk is too full for that (ro says why).
func openDB(ctx context.Context, path string, cfg Config) (db *sql.DB, ro error, err error) {
	db, err = openWriting(ctx, path, cfg)
	if err == nil {
		return db, nil, nil
	}
	if !isDiskFull(err) {
		return nil, nil, cfg.keyError(path, err)
	}
	full := fmt.Errorf("%w: open for writing: %w", store.ErrDiskFull, err)
	if _, serr := os.Stat(path); serr != nil {
		return nil, nil, full // nothing to read
	}
	db, rerr := openReading(ctx, path, cfg)
	if rerr != nil {
		return nil, nil, fmt.Errorf("%w (opening it for reading only: %v)", full, rerr)
	}
	return db, full, nil
}

func dsn(path string, q url.Values) string {
	q.Set("_busy_timeout", "10000")
	return "file:" + path + "?" + q.Encode()
}

// openWriting opens the database for reading and writing, creating its
// schema when missing.
func openWriting(ctx context.Context, path string, cfg Config) (*sql.DB, error) {
	q := url.Values{}
	q.Set("_journal_mode", "WAL")
	q.Set("_synchronous", "FULL")
	q.Set("_txlock", "immediate")
	db, err := sql.Open(driverName, cfg.dsn(path, q))
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	db.SetConnMaxIdleTime(0)
	_, complete, err := schemaState(ctx, db)
	if err == nil && !complete {
		if _, err = db.ExecContext(ctx, schema); err != nil {
			err = fmt.Errorf("create schema: %w", err)
		} else {
			err = migrate(ctx, db)
		}
	}
	if err != nil {
		db.Close()
		return nil, err
	}
	if err := checkWAL(ctx, db); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// openReading opens an existing database for reading only, in exclusive
// locking mode so that SQLite keeps the wal-index in memory instead of
// growing its shared-memory file: it needs no free space.
func openReading(ctx context.Context, path string, cfg Config) (*sql.DB, error) {
	q := url.Values{}
	q.Set("mode", "rw") // do not create
	q.Set("_locking_mode", "EXCLUSIVE")
	q.Set("_query_only", "1")
	db, err := sql.Open(driverName, cfg.dsn(path, q))
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	db.SetConnMaxIdleTime(0)
	readable, _, err := schemaState(ctx, db)
	if err == nil && !readable {
		err = errors.New("its schema is incomplete (open it once with free space to bring it up to date)")
	}
	if err == nil {
		err = checkWAL(ctx, db)
	}
	if err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

func checkWAL(ctx context.Context, db *sql.DB) error {
	var mode string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("read journal mode: %w", err)
	}
	if mode != "wal" {
		return fmt.Errorf("journal mode %q, want wal", mode)
	}
	return nil
}

// schemaState reads, without writing, whether the database has every
// table and column reads need, and whether it has the whole schema.
func schemaState(ctx context.Context, db *sql.DB) (readable, complete bool, err error) {
	var objects, columns, fence int
	err = db.QueryRowContext(ctx, `SELECT
		(SELECT count(*) FROM sqlite_schema WHERE name IN ('meta', 'changes', 'changes_by_chart', 'charts', 'grants',
			'grants_by_clinic', 'quarantine', 'snapshots', 'peers')),
		(SELECT count(*) FROM pragma_table_info('changes') WHERE name = 'sig') +
			(SELECT count(*) FROM pragma_table_info('charts') WHERE name = 'kind'),
		(SELECT count(*) FROM sqlite_schema WHERE name = 'fence')`).Scan(&objects, &columns, &fence)
	if err != nil {
		return false, false, fmt.Errorf("read schema: %w", err)
	}
	indexed, err := hasClinicLog(ctx, db)
	if err != nil {
		return false, false, err
	}
	searchable, err := hasSearchIndex(ctx, db)
	if err != nil {
		return false, false, err
	}
	compressed, err := hasCompressedLog(ctx, db)
	if err != nil {
		return false, false, err
	}
	readable = objects == 9 && columns == 2
	return readable, readable && fence == 1 && indexed && searchable && compressed, nil
}

// hasClinicLog reports whether the database has the log index by clinic
// (a database made before it has not, until it is opened for writing).
func hasClinicLog(ctx context.Context, db *sql.DB) (bool, error) {
	var n int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema WHERE name IN ('clinics', 'clinic_log')").Scan(&n); err != nil {
		return false, fmt.Errorf("read schema: %w", err)
	}
	return n == 2, nil
}

// isDiskFull reports whether err says the disk (or the user's quota) is
// full: SQLITE_FULL, or an I/O error whose cause was ENOSPC or EDQUOT.
func isDiskFull(err error) bool {
	var se sqlite3.Error
	if errors.As(err, &se) {
		return se.Code == sqlite3.ErrFull || se.SystemErrno == syscall.ENOSPC || se.SystemErrno == syscall.EDQUOT
	}
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// clinicLogSchema is the log's index by clinic (see store.LogQuery): a row
// for each change of each chart and each clinic in the chart's scope, as
// last written. Clinic IDs are stored once, in clinics, and referred to
// by number.
const clinicLogSchema = `
CREATE TABLE clinics (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE clinic_log (
	clinic INTEGER NOT NULL,
	seq    INTEGER NOT NULL,
	PRIMARY KEY (clinic, seq)
) WITHOUT ROWID;`

// buildClinicLog fills the index by clinic from the charts' scopes and the
// log, for a database made before it existed, in tx.
func buildClinicLog(ctx context.Context, tx *sql.Tx) error {
	rows, err := tx.QueryContext(ctx, "SELECT id, scope FROM charts")
	if err != nil {
		return err
	}
	scopes := map[string][]string{}
	for rows.Next() {
		var id, scope string
		if err := rows.Scan(&id, &scope); err != nil {
			rows.Close()
			return err
		}
		scopes[id] = scopeClinics(scope)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for chart, clinics := range scopes {
		for _, c := range clinics {
			if _, err := tx.ExecContext(ctx, "INSERT OR IGNORE INTO clinics(name) VALUES(?)", c); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO clinic_log(clinic, seq)
				SELECT k.id, c.seq FROM clinics k JOIN changes c ON c.chart = ? WHERE k.name = ?`, chart, c); err != nil {
				return err
			}
		}
	}
	return nil
}

// migrate brings a database made by an earlier version up to the schema:
// the change signature and document kind columns came later, and so did
// the log's index by clinic, which is built from the log and the charts'
// scopes in the same transaction that creates it, and the index by search
// key, built from the charts' entries (see migrateSearch).
func migrate(ctx context.Context, db *sql.DB) error {
	if err := migrateColumns(ctx, db); err != nil {
		return err
	}
	if err := migrateClinicLog(ctx, db); err != nil {
		return err
	}
	if err := migrateSearch(ctx, db); err != nil {
		return err
	}
	return migrateCompress(ctx, db)
}

// migrateClinicLog creates and fills the log's index by clinic in a
// database made before it.
func migrateClinicLog(ctx context.Context, db *sql.DB) error {
	indexed, err := hasClinicLog(ctx, db)
	if err != nil || indexed {
		return err
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("index the log by clinic: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if _, err := tx.ExecContext(ctx, clinicLogSchema); err != nil {
		return fmt.Errorf("index the log by clinic: %w", err)
	}
	if err := buildClinicLog(ctx, tx); err != nil {
		return fmt.Errorf("index the log by clinic: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("index the log by clinic: %w", err)
	}
	return nil
}

// migrateColumns adds the columns that came later.
func migrateColumns(ctx context.Context, db *sql.DB) error {
	for _, c := range []struct{ table, column, def string }{
		{"changes", "sig", "BLOB NOT NULL DEFAULT x''"},
		{"charts", "kind", "TEXT NOT NULL DEFAULT ''"},
	} {
		var n int
		if err := db.QueryRowContext(ctx, "SELECT count(*) FROM pragma_table_info(?) WHERE name = ?", c.table, c.column).Scan(&n); err != nil {
			return fmt.Errorf("read schema: %w", err)
		}
		if n == 0 {
			if _, err := db.ExecContext(ctx, "ALTER TABLE "+c.table+" ADD COLUMN "+c.column+" "+c.def); err != nil {
				return fmt.Errorf("add column %s.%s: %w", c.table, c.column, err)
			}
		}
	}
	return nil
}

func (s *Store) check() error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	return nil
}

// reader returns the handle for a read, and the function that ends the
// read. When the last reopen failed, it tries again.
func (s *Store) reader(ctx context.Context) (*sql.DB, func(), error) {
	if err := s.check(); err != nil {
		return nil, nil, err
	}
	s.mu.RLock()
	if s.db == nil {
		s.mu.RUnlock()
		s.mu.Lock()
		if s.db == nil && !s.closed.Load() {
			s.reopen(ctx) //nolint:errcheck // s.broken keeps the error
		}
		s.mu.Unlock()
		s.mu.RLock()
	}
	if err := s.check(); err != nil {
		s.mu.RUnlock()
		return nil, nil, err
	}
	if s.db == nil {
		err := s.broken
		s.mu.RUnlock()
		return nil, nil, fmt.Errorf("store %s cannot be opened: %w", s.path, err)
	}
	return s.db, s.mu.RUnlock, nil
}

// IntegrityCheck runs SQLite's integrity check and returns an error
// describing any damage.
func (s *Store) IntegrityCheck(ctx context.Context) error {
	db, done, err := s.reader(ctx)
	if err != nil {
		return err
	}
	defer done()
	var res string
	if err := db.QueryRowContext(ctx, "PRAGMA integrity_check").Scan(&res); err != nil {
		return fmt.Errorf("integrity check: %w", err)
	}
	if res != "ok" {
		return fmt.Errorf("integrity check: %s", res)
	}
	return nil
}

// Head implements store.ChangeLog.
func (s *Store) Head(ctx context.Context) (uint64, error) {
	db, done, err := s.reader(ctx)
	if err != nil {
		return 0, err
	}
	defer done()
	var head uint64
	if err := db.QueryRowContext(ctx, "SELECT COALESCE(MAX(seq), 0) FROM changes").Scan(&head); err != nil {
		return 0, fmt.Errorf("log head: %w", err)
	}
	return head, nil
}

func scanChanges(rows *sql.Rows) ([]store.Change, error) {
	defer rows.Close()
	var out []store.Change
	for rows.Next() {
		var c store.Change
		var hash []byte
		if err := rows.Scan(&c.Seq, &c.Chart, &hash, &c.Raw, &c.From, &c.Sig); err != nil {
			return nil, err
		}
		if len(c.Sig) == 0 {
			c.Sig = nil
		}
		raw, err := zchange.Decompress(c.Raw)
		if err != nil {
			return nil, fmt.Errorf("change %d: %w", c.Seq, err)
		}
		c.Raw = raw
		if len(hash) != len(c.Hash) {
			return nil, fmt.Errorf("change %d: stored hash of %d bytes", c.Seq, len(hash))
		}
		copy(c.Hash[:], hash)
		out = append(out, c)
	}
	return out, rows.Err()
}

// sigOrEmpty stores a missing signature as an empty blob (the column is
// NOT NULL).
func sigOrEmpty(sig []byte) []byte {
	if sig == nil {
		return []byte{}
	}
	return sig
}

// Log implements store.ChangeLog.
func (s *Store) Log(ctx context.Context, after uint64, limit int) ([]store.Change, error) {
	db, done, err := s.reader(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	if limit <= 0 {
		limit = -1
	}
	rows, err := db.QueryContext(ctx, "SELECT seq, chart, hash, raw, src, sig FROM changes WHERE seq > ? ORDER BY seq LIMIT ?", after, limit)
	if err != nil {
		return nil, fmt.Errorf("read log after %d: %w", after, err)
	}
	out, err := scanChanges(rows)
	if err != nil {
		return nil, fmt.Errorf("read log after %d: %w", after, err)
	}
	return out, nil
}

// ChartChanges implements store.ChangeLog.
func (s *Store) ChartChanges(ctx context.Context, chart string, after uint64) ([]store.Change, error) {
	db, done, err := s.reader(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	rows, err := db.QueryContext(ctx, "SELECT seq, chart, hash, raw, src, sig FROM changes WHERE chart = ? AND seq > ? ORDER BY seq", chart, after)
	if err != nil {
		return nil, fmt.Errorf("read changes of %s: %w", chart, err)
	}
	out, err := scanChanges(rows)
	if err != nil {
		return nil, fmt.Errorf("read changes of %s: %w", chart, err)
	}
	return out, nil
}

const changeCols = "c.seq, c.chart, c.hash, c.raw, c.src, c.sig"

// logForQuery returns LogFor's query and its arguments: a chart's changes
// through changes_by_chart, a clinic's log through the index by clinic (or,
// on a database opened for reading only before the index existed, through
// the charts' scopes), or the whole log.
func logForQuery(q store.LogQuery, indexed bool) (string, []any) {
	upto := uint64(math.MaxInt64)
	if q.Upto > 0 {
		upto = min(q.Upto, upto)
	}
	from, seq := "changes c", "c.seq"
	var where []string
	var args []any
	switch {
	case q.Chart != "":
		where, args = append(where, "c.chart = ?"), append(args, q.Chart)
		if q.Clinic != "" {
			where = append(where, "EXISTS (SELECT 1 FROM charts ch WHERE ch.id = c.chart AND scope_has(ch.scope, ?))")
			args = append(args, q.Clinic)
		}
	case q.Clinic != "" && indexed:
		from, seq = "clinic_log l JOIN changes c ON c.seq = l.seq", "l.seq"
		where, args = append(where, "l.clinic = (SELECT id FROM clinics WHERE name = ?)"), append(args, q.Clinic)
	case q.Clinic != "":
		where = append(where, "EXISTS (SELECT 1 FROM charts ch WHERE ch.id = c.chart AND scope_has(ch.scope, ?))")
		args = append(args, q.Clinic)
	}
	where, args = append(where, seq+" > ?", seq+" <= ?"), append(args, q.After, upto)
	if q.NotFrom != "" {
		where, args = append(where, "c.src != ?"), append(args, q.NotFrom)
	}
	limit := q.Limit
	if limit <= 0 {
		limit = -1
	}
	return "SELECT " + changeCols + " FROM " + from + " WHERE " + strings.Join(where, " AND ") +
		" ORDER BY " + seq + " LIMIT ?", append(args, limit)
}

// LogFor implements store.ChangeLog. A clinic's log is read through the
// index by clinic, so a page costs the rows it returns (and a look at the
// source of each of the clinic's changes that q.NotFrom leaves out), not
// the rows of other clinics.
func (s *Store) LogFor(ctx context.Context, q store.LogQuery) ([]store.Change, error) {
	db, done, err := s.reader(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	query, args := logForQuery(q, s.indexed)
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("read log of %q after %d: %w", q.Clinic, q.After, err)
	}
	out, err := scanChanges(rows)
	if err != nil {
		return nil, fmt.Errorf("read log of %q after %d: %w", q.Clinic, q.After, err)
	}
	return out, nil
}

// Known implements store.ChangeLog.
func (s *Store) Known(ctx context.Context, hashes []crdt.Hash) (map[crdt.Hash]bool, error) {
	db, done, err := s.reader(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	out := map[crdt.Hash]bool{}
	const chunk = 500
	for i := 0; i < len(hashes); i += chunk {
		part := hashes[i:min(i+chunk, len(hashes))]
		args := make([]any, len(part))
		for j, h := range part {
			args[j] = h[:]
		}
		q := "SELECT hash FROM changes WHERE hash IN (?" + strings.Repeat(",?", len(part)-1) + ")"
		rows, err := db.QueryContext(ctx, q, args...)
		if err != nil {
			return nil, fmt.Errorf("look up changes: %w", err)
		}
		for rows.Next() {
			var b []byte
			if err := rows.Scan(&b); err != nil {
				rows.Close()
				return nil, fmt.Errorf("look up changes: %w", err)
			}
			var h crdt.Hash
			copy(h[:], b)
			out[h] = true
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("look up changes: %w", err)
		}
	}
	return out, nil
}

// CountAfter implements store.ChangeLog.
func (s *Store) CountAfter(ctx context.Context, after uint64, peer string) (int, error) {
	db, done, err := s.reader(ctx)
	if err != nil {
		return 0, err
	}
	defer done()
	var n int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM changes WHERE seq > ? AND src != ?", after, peer).Scan(&n); err != nil {
		return 0, fmt.Errorf("count changes: %w", err)
	}
	return n, nil
}

func encodeHeads(h crdt.Heads) []byte {
	out := make([]byte, 0, len(h)*32)
	for _, x := range h {
		out = append(out, x[:]...)
	}
	return out
}

func decodeHeads(b []byte) (crdt.Heads, error) {
	if len(b)%32 != 0 {
		return nil, fmt.Errorf("stored heads of %d bytes", len(b))
	}
	h := make(crdt.Heads, len(b)/32)
	for i := range h {
		copy(h[i][:], b[i*32:])
	}
	return h, nil
}

// chartCols are the columns of a chart's entry, as Write stores them.
const chartCols = "id, heads, given, family, village, national_id, home_clinic, scope, updated, kind"

// chartColsOf returns the columns scanChart reads: chartCols of the
// charts table named alias, and keys, an expression for the chart's
// search keys (a JSON array).
func chartColsOf(alias, keys string) string {
	cols := strings.Split(chartCols, ", ")
	for i, c := range cols {
		cols[i] = alias + "." + c
	}
	return strings.Join(append(cols, keys), ", ")
}

// chartsFrom returns the columns scanChart reads and the tables they come
// from: the charts' entries (named ch) with their search keys, where the
// database has them.
func (s *Store) chartsFrom() (cols, from string) {
	if s.searchable {
		return chartColsOf("ch", "COALESCE(k.keys, '[]')"), "charts ch LEFT JOIN search_charts k ON k.id = ch.id"
	}
	return chartColsOf("ch", "'[]'"), "charts ch"
}

func scanChart(sc interface{ Scan(...any) error }) (store.Chart, error) {
	var c store.Chart
	var heads []byte
	var updated int64
	var scope, keys string
	if err := sc.Scan(&c.ID, &heads, &c.GivenName, &c.FamilyName, &c.Village, &c.NationalID, &c.HomeClinic, &scope, &updated, &c.Kind, &keys); err != nil {
		return c, err
	}
	if err := json.Unmarshal([]byte(scope), &c.Scope); err != nil {
		return c, fmt.Errorf("chart %s: scope %q: %w", c.ID, scope, err)
	}
	if err := json.Unmarshal([]byte(keys), &c.Keys); err != nil {
		return c, fmt.Errorf("chart %s: search keys %q: %w", c.ID, keys, err)
	}
	if len(c.Keys) == 0 {
		c.Keys = nil
	}
	h, err := decodeHeads(heads)
	if err != nil {
		return c, err
	}
	c.Heads = h
	if updated != 0 {
		c.Updated = time.UnixMilli(updated).UTC()
	}
	return c, nil
}

// Quarantined implements store.Store.
func (s *Store) Quarantined(ctx context.Context) ([]store.Quarantined, error) {
	db, done, err := s.reader(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	rows, err := db.QueryContext(ctx, "SELECT src, at, reason, data FROM quarantine ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("read quarantine: %w", err)
	}
	defer rows.Close()
	var out []store.Quarantined
	for rows.Next() {
		var q store.Quarantined
		var at int64
		if err := rows.Scan(&q.From, &at, &q.Reason, &q.Data); err != nil {
			return nil, fmt.Errorf("read quarantine: %w", err)
		}
		q.At = time.UnixMilli(at).UTC()
		out = append(out, q)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read quarantine: %w", err)
	}
	return out, nil
}

// Grants implements store.Index.
func (s *Store) Grants(ctx context.Context, clinic string, after, upto uint64) ([]store.Grant, error) {
	db, done, err := s.reader(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	rows, err := db.QueryContext(ctx, "SELECT chart, seq, revoked FROM grants WHERE clinic = ? AND seq > ? AND seq <= ? ORDER BY seq, chart, revoked", clinic, after, upto)
	if err != nil {
		return nil, fmt.Errorf("read grants to %s: %w", clinic, err)
	}
	defer rows.Close()
	var out []store.Grant
	for rows.Next() {
		g := store.Grant{Clinic: clinic}
		if err := rows.Scan(&g.Chart, &g.Seq, &g.Revoked); err != nil {
			return nil, fmt.Errorf("read grants to %s: %w", clinic, err)
		}
		out = append(out, g)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read grants to %s: %w", clinic, err)
	}
	return out, nil
}

// Chart implements store.Index.
func (s *Store) Chart(ctx context.Context, id string) (store.Chart, error) {
	db, done, err := s.reader(ctx)
	if err != nil {
		return store.Chart{}, err
	}
	defer done()
	cols, from := s.chartsFrom()
	c, err := scanChart(db.QueryRowContext(ctx, "SELECT "+cols+" FROM "+from+" WHERE ch.id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Chart{}, store.ErrNotFound
	}
	if err != nil {
		return store.Chart{}, fmt.Errorf("read chart %s: %w", id, err)
	}
	return c, nil
}

// Charts implements store.Index.
func (s *Store) Charts(ctx context.Context, q store.Query) ([]store.Chart, error) {
	db, done, err := s.reader(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	limit := q.Limit
	if limit <= 0 {
		limit = -1
	}
	cols, from := s.chartsFrom()
	query := "SELECT " + cols + " FROM " + from + " WHERE ch.kind = ?"
	args := []any{q.Kind}
	if q.Text != "" {
		like := "%" + strings.NewReplacer(`\`, `\\`, "%", `\%`, "_", `\_`).Replace(strings.ToLower(q.Text)) + "%"
		query += ` AND (ch.id = ? OR lower(ch.given) LIKE ? ESCAPE '\' OR lower(ch.family) LIKE ? ESCAPE '\'` +
			` OR lower(ch.village) LIKE ? ESCAPE '\' OR lower(ch.national_id) LIKE ? ESCAPE '\')`
		args = append(args, q.Text, like, like, like, like)
	}
	query += " ORDER BY ch.family, ch.given, ch.id LIMIT ?"
	args = append(args, limit)
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("find charts: %w", err)
	}
	defer rows.Close()
	var out []store.Chart
	for rows.Next() {
		c, err := scanChart(rows)
		if err != nil {
			return nil, fmt.Errorf("find charts: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("find charts: %w", err)
	}
	return out, nil
}

// Snapshot implements store.Index.
func (s *Store) Snapshot(ctx context.Context, chart string) (store.Snapshot, error) {
	db, done, err := s.reader(ctx)
	if err != nil {
		return store.Snapshot{}, err
	}
	defer done()
	snap := store.Snapshot{Chart: chart}
	err = db.QueryRowContext(ctx, "SELECT seq, data FROM snapshots WHERE chart = ?", chart).Scan(&snap.Seq, &snap.Data)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Snapshot{}, store.ErrNotFound
	}
	if err != nil {
		return store.Snapshot{}, fmt.Errorf("read snapshot of %s: %w", chart, err)
	}
	return snap, nil
}

// Meta implements store.Store.
func (s *Store) Meta(ctx context.Context, key string) (string, error) {
	db, done, err := s.reader(ctx)
	if err != nil {
		return "", err
	}
	defer done()
	var v string
	err = db.QueryRowContext(ctx, "SELECT value FROM meta WHERE key = ?", key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", store.ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("read meta %s: %w", key, err)
	}
	return v, nil
}

// Peer implements store.Store.
func (s *Store) Peer(ctx context.Context, id string) (store.Peer, error) {
	db, done, err := s.reader(ctx)
	if err != nil {
		return store.Peer{}, err
	}
	defer done()
	p := store.Peer{ID: id}
	var last int64
	err = db.QueryRowContext(ctx, "SELECT acked, received, last_sync FROM peers WHERE id = ?", id).Scan(&p.Acked, &p.Received, &last)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Peer{}, store.ErrNotFound
	}
	if err != nil {
		return store.Peer{}, fmt.Errorf("read peer %s: %w", id, err)
	}
	if last != 0 {
		p.LastSync = time.UnixMilli(last).UTC()
	}
	return p, nil
}

// Peers implements store.Store.
func (s *Store) Peers(ctx context.Context) ([]store.Peer, error) {
	db, done, err := s.reader(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	rows, err := db.QueryContext(ctx, "SELECT id, acked, received, last_sync FROM peers ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("read peers: %w", err)
	}
	defer rows.Close()
	var out []store.Peer
	for rows.Next() {
		var p store.Peer
		var last int64
		if err := rows.Scan(&p.ID, &p.Acked, &p.Received, &last); err != nil {
			return nil, fmt.Errorf("read peers: %w", err)
		}
		if last != 0 {
			p.LastSync = time.UnixMilli(last).UTC()
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read peers: %w", err)
	}
	return out, nil
}

func millis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// Write implements store.Store: one IMMEDIATE transaction, committed with
// a WAL fsync before it returns. A failed Write stored nothing unless its
// error matches store.ErrOutcomeUnknown (see the package doc for which
// failure leads to which).
func (s *Store) Write(ctx context.Context, b store.Batch) (uint64, error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(); err != nil {
		return 0, err
	}
	if s.db == nil || s.readOnly != nil {
		// The last open failed or could only read: the disk may have
		// room now.
		if err := s.reopen(ctx); err != nil {
			return 0, notStored("write: reopen", err)
		}
		if s.readOnly != nil {
			return 0, fmt.Errorf("write: %w", s.readOnly)
		}
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, notStored("write: begin", err)
	}
	head, err := writeBatch(ctx, tx, b)
	if err != nil {
		tx.Rollback() //nolint:errcheck // the statement's error is the one to report
		return 0, notStored("write", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, s.settle(ctx, err)
	}
	return head, nil
}

// notStored wraps the error of a write that stored nothing, adding
// store.ErrDiskFull when the disk is full.
func notStored(op string, err error) error {
	if isDiskFull(err) && !errors.Is(err, store.ErrDiskFull) {
		return fmt.Errorf("%s: %w: %w", op, store.ErrDiskFull, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// settle decides what a failed COMMIT left, making it nothing where it
// can, and returns the error to report. s.mu is held.
func (s *Store) settle(ctx context.Context, cerr error) error {
	var se sqlite3.Error
	switch {
	case !errors.As(cerr, &se):
		// database/sql gave up before running COMMIT (the context
		// ended): the transaction was rolled back.
		return fmt.Errorf("write: commit: %w", cerr)
	case se.Code == sqlite3.ErrFull:
		// A frame did not fit, so the commit frame never reached the
		// WAL whole.
		return notStored("write: commit", cerr)
	}
	// The commit frame may be in the WAL. Fence it off: a commit made
	// now is written where the failed one was.
	ctx = context.WithoutCancel(ctx)
	_, ferr := s.db.ExecContext(ctx, "INSERT INTO fence(id, n) VALUES(0, 1) ON CONFLICT(id) DO UPDATE SET n = n + 1")
	if ferr == nil {
		return notStored("write: commit (nothing of the batch was stored)", cerr)
	}
	// Reopen, so that reads show what the files hold: what a restart
	// would find.
	rerr := s.reopen(ctx)
	err := fmt.Errorf("write: commit: %w: %w (and fencing it off failed: %v)", store.ErrOutcomeUnknown, cerr, ferr)
	if rerr != nil {
		err = fmt.Errorf("%w; reopening the store failed: %v", err, rerr)
	}
	if isDiskFull(cerr) || isDiskFull(ferr) {
		err = fmt.Errorf("%w: %w", store.ErrDiskFull, err)
	}
	return err
}

// reopen replaces the handle with a fresh one. s.mu is held.
func (s *Store) reopen(ctx context.Context) error {
	if s.db != nil {
		s.db.Close()
		s.db = nil
	}
	db, ro, err := openDB(ctx, s.path, s.cfg)
	if err == nil {
		if s.indexed, err = hasClinicLog(ctx, db); err == nil {
			s.searchable, err = hasSearchIndex(ctx, db)
		}
		if err != nil {
			db.Close()
		}
	}
	if err != nil {
		s.broken = err
		return err
	}
	s.db, s.readOnly, s.broken = db, ro, nil
	return nil
}

// writeBatch runs b's statements in tx and returns the log head.
func writeBatch(ctx context.Context, tx *sql.Tx, b store.Batch) (uint64, error) {
	// The transaction is the only writer (BEGIN IMMEDIATE): what it reads
	// of the charts holds until it commits.
	if err := store.ExpectHeld(b.Expect, func(id string) (crdt.Heads, error) {
		var raw []byte
		switch err := tx.QueryRowContext(ctx, "SELECT heads FROM charts WHERE id = ?", id).Scan(&raw); {
		case errors.Is(err, sql.ErrNoRows):
			return nil, nil
		case err != nil:
			return nil, err
		}
		return decodeHeads(raw)
	}); err != nil {
		return 0, err
	}
	for k, v := range b.Meta {
		if _, err := tx.ExecContext(ctx, "INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value", k, v); err != nil {
			return 0, fmt.Errorf("meta %s: %w", k, err)
		}
	}
	var before uint64 // the log head before the batch
	if len(b.Grants) > 0 {
		if err := tx.QueryRowContext(ctx, "SELECT COALESCE(MAX(seq), 0) FROM changes").Scan(&before); err != nil {
			return 0, fmt.Errorf("log head: %w", err)
		}
	}
	ix := &clinicIndex{tx: tx, ids: map[string]int64{}, scopes: map[string][]int64{}}
	if len(b.Changes) > 0 {
		st, err := tx.PrepareContext(ctx, "INSERT INTO changes(chart, hash, raw, src, sig) VALUES(?, ?, ?, ?, ?) ON CONFLICT(hash) DO NOTHING")
		if err != nil {
			return 0, fmt.Errorf("changes: %w", err)
		}
		defer st.Close()
		for _, c := range b.Changes {
			packed := c.Packed
			if packed == nil {
				packed = zchange.Compress(c.Raw)
			}
			res, err := st.ExecContext(ctx, c.Chart, c.Hash[:], packed, c.From, sigOrEmpty(c.Sig))
			if err == nil {
				err = ix.added(ctx, res, c.Chart)
			}
			if err != nil {
				return 0, fmt.Errorf("change %s: %w", c.Hash, err)
			}
		}
	}
	for _, c := range b.Charts {
		scope, err := json.Marshal(c.Scope)
		if err != nil {
			return 0, fmt.Errorf("chart %s: %w", c.ID, err)
		}
		if c.Scope == nil {
			scope = []byte("[]")
		}
		if err := ix.rescope(ctx, c.ID, c.Scope); err != nil {
			return 0, fmt.Errorf("chart %s: %w", c.ID, err)
		}
		if err := rekey(ctx, tx, c); err != nil {
			return 0, fmt.Errorf("chart %s: %w", c.ID, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO charts(`+chartCols+`) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT(id) DO UPDATE SET heads = excluded.heads, given = excluded.given, family = excluded.family,
			village = excluded.village, national_id = excluded.national_id, home_clinic = excluded.home_clinic,
			scope = excluded.scope, updated = excluded.updated, kind = excluded.kind`,
			c.ID, encodeHeads(c.Heads), c.GivenName, c.FamilyName, c.Village, c.NationalID, c.HomeClinic, string(scope), millis(c.Updated), c.Kind); err != nil {
			return 0, fmt.Errorf("chart %s: %w", c.ID, err)
		}
	}
	var head uint64
	if err := tx.QueryRowContext(ctx, "SELECT COALESCE(MAX(seq), 0) FROM changes").Scan(&head); err != nil {
		return 0, fmt.Errorf("log head: %w", err)
	}
	for _, sn := range b.Snapshots {
		if _, err := tx.ExecContext(ctx, "INSERT INTO snapshots(chart, seq, data) VALUES(?, ?, ?) ON CONFLICT(chart) DO UPDATE SET seq = excluded.seq, data = excluded.data", sn.Chart, head, sn.Data); err != nil {
			return 0, fmt.Errorf("snapshot of %s: %w", sn.Chart, err)
		}
	}
	for _, q := range b.Quarantine {
		if _, err := tx.ExecContext(ctx, "INSERT INTO quarantine(src, at, reason, data) VALUES(?, ?, ?, ?)", q.From, millis(q.At), q.Reason, q.Data); err != nil {
			return 0, fmt.Errorf("quarantine: %w", err)
		}
	}
	for _, g := range b.Grants {
		seq := before + 1
		if g.Revoked {
			seq = head
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO grants(clinic, seq, chart, revoked) VALUES(?, ?, ?, ?)", g.Clinic, seq, g.Chart, g.Revoked); err != nil {
			return 0, fmt.Errorf("grant of %s to %s: %w", g.Chart, g.Clinic, err)
		}
	}
	for _, p := range b.Peers {
		if _, err := tx.ExecContext(ctx, `INSERT INTO peers(id, acked, received, last_sync) VALUES(?, ?, ?, ?)
			ON CONFLICT(id) DO UPDATE SET acked = excluded.acked, received = excluded.received, last_sync = excluded.last_sync`,
			p.ID, p.Acked, p.Received, millis(p.LastSync)); err != nil {
			return 0, fmt.Errorf("peer %s: %w", p.ID, err)
		}
	}
	return head, nil
}

// clinicIndex keeps the log's index by clinic (clinic_log) within one
// write: a new change is indexed under each clinic of its chart's scope,
// and a chart whose scope changes moves its changes into the logs of the
// clinics that joined and out of those of the clinics that left.
type clinicIndex struct {
	tx     *sql.Tx
	ids    map[string]int64   // clinic IDs by name
	scopes map[string][]int64 // stored scopes read in this write, by chart
}

// id returns a clinic's number, adding it if new.
func (ix *clinicIndex) id(ctx context.Context, clinic string) (int64, error) {
	if id, ok := ix.ids[clinic]; ok {
		return id, nil
	}
	var id int64
	err := ix.tx.QueryRowContext(ctx, "SELECT id FROM clinics WHERE name = ?", clinic).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		var res sql.Result
		if res, err = ix.tx.ExecContext(ctx, "INSERT INTO clinics(name) VALUES(?)", clinic); err == nil {
			id, err = res.LastInsertId()
		}
	}
	if err != nil {
		return 0, fmt.Errorf("clinic %s: %w", clinic, err)
	}
	ix.ids[clinic] = id
	return id, nil
}

// storedScope returns the clinics of a chart's stored scope.
func (ix *clinicIndex) storedScope(ctx context.Context, chart string) ([]string, error) {
	var scope string
	err := ix.tx.QueryRowContext(ctx, "SELECT scope FROM charts WHERE id = ?", chart).Scan(&scope)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read scope: %w", err)
	}
	var clinics []string
	if err := json.Unmarshal([]byte(scope), &clinics); err != nil {
		return nil, fmt.Errorf("scope %q: %w", scope, err)
	}
	return clinics, nil
}

// added indexes a change just inserted (if it was: res says) under its
// chart's stored scope.
func (ix *clinicIndex) added(ctx context.Context, res sql.Result, chart string) error {
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return err // already stored
	}
	seq, err := res.LastInsertId()
	if err != nil {
		return err
	}
	ids, ok := ix.scopes[chart]
	if !ok {
		clinics, err := ix.storedScope(ctx, chart)
		if err != nil {
			return err
		}
		for _, c := range clinics {
			id, err := ix.id(ctx, c)
			if err != nil {
				return err
			}
			ids = append(ids, id)
		}
		ix.scopes[chart] = ids
	}
	for _, id := range ids {
		if _, err := ix.tx.ExecContext(ctx, "INSERT OR IGNORE INTO clinic_log(clinic, seq) VALUES(?, ?)", id, seq); err != nil {
			return fmt.Errorf("index change %d: %w", seq, err)
		}
	}
	return nil
}

// rescope moves a chart's changes between clinics' logs as its scope
// becomes is. It runs before the chart's row is updated.
func (ix *clinicIndex) rescope(ctx context.Context, chart string, is []string) error {
	delete(ix.scopes, chart)
	was, err := ix.storedScope(ctx, chart)
	if err != nil {
		return err
	}
	for _, c := range is {
		if slices.Contains(was, c) {
			continue
		}
		id, err := ix.id(ctx, c)
		if err != nil {
			return err
		}
		if _, err := ix.tx.ExecContext(ctx, "INSERT OR IGNORE INTO clinic_log(clinic, seq) SELECT ?, seq FROM changes WHERE chart = ?", id, chart); err != nil {
			return fmt.Errorf("index for clinic %s: %w", c, err)
		}
	}
	for _, c := range was {
		if slices.Contains(is, c) {
			continue
		}
		if _, err := ix.tx.ExecContext(ctx, `DELETE FROM clinic_log WHERE clinic = (SELECT id FROM clinics WHERE name = ?)
			AND seq IN (SELECT seq FROM changes WHERE chart = ?)`, c, chart); err != nil {
			return fmt.Errorf("unindex for clinic %s: %w", c, err)
		}
	}
	return nil
}

// Close closes the database.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return nil
	}
	return s.db.Close()
}
