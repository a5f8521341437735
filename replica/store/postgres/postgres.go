package postgres

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/replica/internal/zchange"
	"github.com/chartsync/chartsync/replica/store"
)

// Config tunes a Store. The zero value works.
type Config struct {
	// Schema, if set, is the PostgreSQL schema holding the store's
	// tables: Open creates it when missing and makes it the connections'
	// search_path. "" uses the connection's search_path as it is
	// (normally the schema "public").
	Schema string
	// MaxConns bounds the connection pool; 0 means pgx's default (the
	// greater of 4 and the number of CPUs). The connection string's
	// pool_max_conns, when given, wins over the default but not over this.
	MaxConns int32
	// OutcomeTimeout bounds how long Write waits, after the connection was
	// lost during a COMMIT, to learn from the server whether it committed
	// (see the package doc). 0 means 30 seconds.
	OutcomeTimeout time.Duration
}

// DefaultOutcomeTimeout is Config.OutcomeTimeout's default.
const DefaultOutcomeTimeout = 30 * time.Second

// commitTimeout bounds a COMMIT once sent: it is not cancelled with the
// caller's context (that would make a write's outcome unknown for no
// reason), but a server that never answers must not hold it for ever.
const commitTimeout = time.Minute

// Store is a store.Store on PostgreSQL. It is safe for concurrent use, by
// several goroutines and by several processes sharing one database.
type Store struct {
	pool           *pgxpool.Pool
	outcomeTimeout time.Duration
	closed         atomic.Bool
}

var _ store.Store = (*Store)(nil)

// Open connects to the database that connString names (a URL such as
// postgres://user:password@host:5432/db or keyword=value pairs, as libpq
// takes), brings the schema up to date, and returns the store. The schema
// is migrated under an advisory lock, so any number of processes may open
// the same database at once.
func Open(ctx context.Context, connString string, cfg Config) (*Store, error) {
	return open(ctx, connString, cfg, nil)
}

// open is Open, with wrap (when not nil) wrapping every connection the
// pool dials: tests use it to make the network fail.
func open(ctx context.Context, connString string, cfg Config, wrap func(net.Conn) net.Conn) (*Store, error) {
	pc, err := pgxpool.ParseConfig(connString)
	if err != nil {
		// pgx's parse errors may quote the connection string, password
		// included: say only what kind of error it was.
		return nil, errors.New("open postgres store: the connection string does not parse")
	}
	if cfg.MaxConns > 0 {
		pc.MaxConns = cfg.MaxConns
	}
	rp := pc.ConnConfig.RuntimeParams
	if cfg.Schema != "" {
		rp["search_path"] = pgx.Identifier{cfg.Schema}.Sanitize()
	}
	// Write's promise of durability rests on a synchronous commit,
	// whatever the database's default.
	rp["synchronous_commit"] = "on"
	if rp["application_name"] == "" {
		rp["application_name"] = "chartsync"
	}
	if wrap != nil {
		dial := pc.ConnConfig.DialFunc
		pc.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dial(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return wrap(c), nil
		}
	}
	where := pc.ConnConfig.Host
	if cfg.Schema != "" {
		where += " schema " + cfg.Schema
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("open postgres store on %s: %w", where, err)
	}
	if err := migrate(ctx, pool, cfg.Schema); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open postgres store on %s: %w", where, err)
	}
	s := &Store{pool: pool, outcomeTimeout: cfg.OutcomeTimeout}
	if s.outcomeTimeout <= 0 {
		s.outcomeTimeout = DefaultOutcomeTimeout
	}
	return s, nil
}

// Ready returns nil when the database answers and its schema is at the
// version this package migrates to; a health check (readyz) calls it.
func (s *Store) Ready(ctx context.Context) error {
	if err := s.check(); err != nil {
		return err
	}
	var v int
	if err := s.pool.QueryRow(ctx, "SELECT COALESCE(max(version), 0) FROM schema_migrations").Scan(&v); err != nil {
		return s.readErr("read schema version", err)
	}
	if v < SchemaVersion {
		return fmt.Errorf("%w: schema at version %d, want %d", ErrNotMigrated, v, SchemaVersion)
	}
	return nil
}

// Stat returns the connection pool's statistics (for metrics).
func (s *Store) Stat() *pgxpool.Stat { return s.pool.Stat() }

func (s *Store) check() error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	return nil
}

// readErr wraps a read's error, as store.ErrClosed when the store was
// closed under it.
func (s *Store) readErr(op string, err error) error {
	if s.closed.Load() {
		return fmt.Errorf("%s: %w", op, store.ErrClosed)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// Head implements store.ChangeLog. It reads the log head row, which a
// write updates in the transaction that adds its changes: the head and
// the changes up to it become visible together.
func (s *Store) Head(ctx context.Context) (uint64, error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	var head int64
	if err := s.pool.QueryRow(ctx, "SELECT seq FROM log_head WHERE id = 0").Scan(&head); err != nil {
		return 0, s.readErr("log head", err)
	}
	return uint64(head), nil
}

const changeCols = "seq, chart, hash, raw, src, sig"

func scanChanges(rows pgx.Rows) ([]store.Change, error) {
	defer rows.Close()
	var out []store.Change
	for rows.Next() {
		var c store.Change
		var seq int64
		var hash []byte
		if err := rows.Scan(&seq, &c.Chart, &hash, &c.Raw, &c.From, &c.Sig); err != nil {
			return nil, err
		}
		c.Seq = uint64(seq)
		if len(hash) != len(c.Hash) {
			return nil, fmt.Errorf("change %d: stored hash of %d bytes", c.Seq, len(hash))
		}
		copy(c.Hash[:], hash)
		if len(c.Sig) == 0 {
			c.Sig = nil
		}
		raw, err := zchange.Decompress(c.Raw)
		if err != nil {
			return nil, fmt.Errorf("change %d: %w", c.Seq, err)
		}
		c.Raw = raw
		out = append(out, c)
	}
	return out, rows.Err()
}

// seqArg converts a log position for a query; positions beyond int64
// (none is stored) compare as the largest.
func seqArg(n uint64) int64 {
	if n > 1<<63-1 {
		return 1<<63 - 1
	}
	return int64(n)
}

// Log implements store.ChangeLog.
func (s *Store) Log(ctx context.Context, after uint64, limit int) ([]store.Change, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	var lim any // NULL: no limit
	if limit > 0 {
		lim = limit
	}
	rows, err := s.pool.Query(ctx, "SELECT "+changeCols+" FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2", seqArg(after), lim)
	if err != nil {
		return nil, s.readErr(fmt.Sprintf("read log after %d", after), err)
	}
	out, err := scanChanges(rows)
	if err != nil {
		return nil, s.readErr(fmt.Sprintf("read log after %d", after), err)
	}
	return out, nil
}

// ChartChanges implements store.ChangeLog.
func (s *Store) ChartChanges(ctx context.Context, chart string, after uint64) ([]store.Change, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, "SELECT "+changeCols+" FROM changes WHERE chart = $1 AND seq > $2 ORDER BY seq", chart, seqArg(after))
	if err != nil {
		return nil, s.readErr("read changes of "+chart, err)
	}
	out, err := scanChanges(rows)
	if err != nil {
		return nil, s.readErr("read changes of "+chart, err)
	}
	return out, nil
}

func hashArgs(hashes []crdt.Hash) [][]byte {
	out := make([][]byte, len(hashes))
	for i := range hashes {
		out[i] = hashes[i][:]
	}
	return out
}

// Known implements store.ChangeLog.
func (s *Store) Known(ctx context.Context, hashes []crdt.Hash) (map[crdt.Hash]bool, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	out := map[crdt.Hash]bool{}
	if len(hashes) == 0 {
		return out, nil
	}
	rows, err := s.pool.Query(ctx, "SELECT hash FROM changes WHERE hash = ANY($1)", hashArgs(hashes))
	if err != nil {
		return nil, s.readErr("look up changes", err)
	}
	defer rows.Close()
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			return nil, s.readErr("look up changes", err)
		}
		var h crdt.Hash
		copy(h[:], b)
		out[h] = true
	}
	if err := rows.Err(); err != nil {
		return nil, s.readErr("look up changes", err)
	}
	return out, nil
}

// CountAfter implements store.ChangeLog.
func (s *Store) CountAfter(ctx context.Context, after uint64, peer string) (int, error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	var n int
	if err := s.pool.QueryRow(ctx, "SELECT count(*) FROM changes WHERE seq > $1 AND src <> $2", seqArg(after), peer).Scan(&n); err != nil {
		return 0, s.readErr("count changes", err)
	}
	return n, nil
}

func encodeHeads(h crdt.Heads) []byte {
	out := make([]byte, 0, len(h)*len(crdt.Hash{}))
	for _, x := range h {
		out = append(out, x[:]...)
	}
	return out
}

// decodeHeads reads heads stored by encodeHeads.
func decodeHeads(b []byte) (crdt.Heads, error) {
	n := len(crdt.Hash{})
	if len(b)%n != 0 {
		return nil, fmt.Errorf("stored heads of %d bytes, not a multiple of %d", len(b), n)
	}
	if len(b) == 0 {
		return nil, nil
	}
	h := make(crdt.Heads, len(b)/n)
	for i := range h {
		copy(h[i][:], b[i*n:])
	}
	return h, nil
}

const chartCols = "id, kind, heads, given, family, village, national_id, home_clinic, scope, updated, keys"

// chartColsOf returns chartCols of the charts table named alias.
func chartColsOf(alias string) string {
	cols := strings.Split(chartCols, ", ")
	for i, c := range cols {
		cols[i] = alias + "." + c
	}
	return strings.Join(cols, ", ")
}

func scanChart(row pgx.Row) (store.Chart, error) {
	var c store.Chart
	var heads []byte
	var updated *time.Time
	if err := row.Scan(&c.ID, &c.Kind, &heads, &c.GivenName, &c.FamilyName, &c.Village, &c.NationalID, &c.HomeClinic, &c.Scope, &updated, &c.Keys); err != nil {
		return c, err
	}
	if len(c.Keys) == 0 {
		c.Keys = nil
	}
	h, err := decodeHeads(heads)
	if err != nil {
		return c, fmt.Errorf("chart %s: %w", c.ID, err)
	}
	c.Heads = h
	if len(c.Scope) == 0 {
		c.Scope = nil
	}
	if updated != nil {
		c.Updated = updated.UTC()
	}
	return c, nil
}

// Chart implements store.Index.
func (s *Store) Chart(ctx context.Context, id string) (store.Chart, error) {
	if err := s.check(); err != nil {
		return store.Chart{}, err
	}
	c, err := scanChart(s.pool.QueryRow(ctx, "SELECT "+chartCols+" FROM charts WHERE id = $1", id))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Chart{}, store.ErrNotFound
	}
	if err != nil {
		return store.Chart{}, s.readErr("read chart "+id, err)
	}
	return c, nil
}

// Charts implements store.Index. The text is matched with strpos on
// lower-cased columns, so it needs no escaping; like SQLite's lower(),
// PostgreSQL's lowers only ASCII letters under the "C" collation.
func (s *Store) Charts(ctx context.Context, q store.Query) ([]store.Chart, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	query := "SELECT " + chartCols + " FROM charts WHERE kind = $1"
	args := []any{q.Kind}
	if q.Text != "" {
		query += ` AND (id = $2 OR strpos(lower(given), $3) > 0 OR strpos(lower(family), $3) > 0
			OR strpos(lower(village), $3) > 0 OR strpos(lower(national_id), $3) > 0)`
		args = append(args, q.Text, strings.ToLower(q.Text))
	}
	query += " ORDER BY family, given, id"
	if q.Limit > 0 {
		query += fmt.Sprintf(" LIMIT %d", q.Limit)
	}
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, s.readErr("find charts", err)
	}
	defer rows.Close()
	var out []store.Chart
	for rows.Next() {
		c, err := scanChart(rows)
		if err != nil {
			return nil, s.readErr("find charts", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, s.readErr("find charts", err)
	}
	return out, nil
}

// Snapshot implements store.Index.
func (s *Store) Snapshot(ctx context.Context, chart string) (store.Snapshot, error) {
	if err := s.check(); err != nil {
		return store.Snapshot{}, err
	}
	snap := store.Snapshot{Chart: chart}
	var seq int64
	err := s.pool.QueryRow(ctx, "SELECT seq, data FROM snapshots WHERE chart = $1", chart).Scan(&seq, &snap.Data)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Snapshot{}, store.ErrNotFound
	}
	if err != nil {
		return store.Snapshot{}, s.readErr("read snapshot of "+chart, err)
	}
	snap.Seq = uint64(seq)
	return snap, nil
}

// Grants implements store.Index.
func (s *Store) Grants(ctx context.Context, clinic string, after, upto uint64) ([]store.Grant, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, "SELECT chart, seq, revoked FROM grants WHERE clinic = $1 AND seq > $2 AND seq <= $3 ORDER BY seq, chart, revoked",
		clinic, seqArg(after), seqArg(upto))
	if err != nil {
		return nil, s.readErr("read grants to "+clinic, err)
	}
	defer rows.Close()
	var out []store.Grant
	for rows.Next() {
		g := store.Grant{Clinic: clinic}
		var seq int64
		if err := rows.Scan(&g.Chart, &seq, &g.Revoked); err != nil {
			return nil, s.readErr("read grants to "+clinic, err)
		}
		g.Seq = uint64(seq)
		out = append(out, g)
	}
	if err := rows.Err(); err != nil {
		return nil, s.readErr("read grants to "+clinic, err)
	}
	return out, nil
}

// Meta implements store.Store.
func (s *Store) Meta(ctx context.Context, key string) (string, error) {
	if err := s.check(); err != nil {
		return "", err
	}
	var v string
	err := s.pool.QueryRow(ctx, "SELECT value FROM meta WHERE key = $1", key).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", store.ErrNotFound
	}
	if err != nil {
		return "", s.readErr("read meta "+key, err)
	}
	return v, nil
}

const peerCols = "id, acked, received, last_sync"

func scanPeer(row pgx.Row) (store.Peer, error) {
	var p store.Peer
	var acked, received int64
	var last *time.Time
	if err := row.Scan(&p.ID, &acked, &received, &last); err != nil {
		return p, err
	}
	p.Acked, p.Received = uint64(acked), uint64(received) // bit for bit, as written
	if last != nil {
		p.LastSync = last.UTC()
	}
	return p, nil
}

// Peer returns what is known of one peer, or store.ErrNotFound: one
// indexed lookup, whatever the number of peers.
func (s *Store) Peer(ctx context.Context, id string) (store.Peer, error) {
	if err := s.check(); err != nil {
		return store.Peer{}, err
	}
	p, err := scanPeer(s.pool.QueryRow(ctx, "SELECT "+peerCols+" FROM peers WHERE id = $1", id))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Peer{}, store.ErrNotFound
	}
	if err != nil {
		return store.Peer{}, s.readErr("read peer "+id, err)
	}
	return p, nil
}

// Peers implements store.Store.
func (s *Store) Peers(ctx context.Context) ([]store.Peer, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, "SELECT "+peerCols+" FROM peers ORDER BY id")
	if err != nil {
		return nil, s.readErr("read peers", err)
	}
	defer rows.Close()
	var out []store.Peer
	for rows.Next() {
		p, err := scanPeer(rows)
		if err != nil {
			return nil, s.readErr("read peers", err)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, s.readErr("read peers", err)
	}
	return out, nil
}

// Quarantined implements store.Store.
func (s *Store) Quarantined(ctx context.Context) ([]store.Quarantined, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, "SELECT src, at, reason, data FROM quarantine ORDER BY id")
	if err != nil {
		return nil, s.readErr("read quarantine", err)
	}
	defer rows.Close()
	var out []store.Quarantined
	for rows.Next() {
		var q store.Quarantined
		var at *time.Time
		if err := rows.Scan(&q.From, &at, &q.Reason, &q.Data); err != nil {
			return nil, s.readErr("read quarantine", err)
		}
		if at != nil {
			q.At = at.UTC()
		}
		out = append(out, q)
	}
	if err := rows.Err(); err != nil {
		return nil, s.readErr("read quarantine", err)
	}
	return out, nil
}

// Close closes the pool, waiting for calls in flight to return their
// connections. Calls after Close return store.ErrClosed.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.pool.Close()
	return nil
}

// isDiskFull reports whether err is PostgreSQL's disk_full (53100).
func isDiskFull(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "53100"
}

// LogFor implements store.ChangeLog. A clinic's log is read through its
// index by clinic and position, each change then looked up by position;
// a chart's through the index by chart and position, each change then
// looked up in the clinic's index when both are set. So a page costs the
// rows it returns and those q.NotFrom leaves out, not the rows of other
// clinics or charts (TestLogForReadsOnlyWhatItSelects checks the plans).
func (s *Store) LogFor(ctx context.Context, q store.LogQuery) ([]store.Change, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	query, args := logForQuery(q)
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, s.readErr(fmt.Sprintf("read log of %q after %d", q.Clinic, q.After), err)
	}
	out, err := scanChanges(rows)
	if err != nil {
		return nil, s.readErr(fmt.Sprintf("read log of %q after %d", q.Clinic, q.After), err)
	}
	return out, nil
}

// logForQuery builds LogFor's query. The forms are chosen for their plans:
// the lateral subquery with OFFSET 0 is not flattened into a join, so the
// planner cannot merge the clinic's index with the whole log (which reads
// every change between two of the clinic's), and the scalar subquery
// probes the clinic's index once per change of the chart.
func logForQuery(q store.LogQuery) (string, []any) {
	args := []any{seqArg(q.After)}
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	const cols = "c.seq, c.chart, c.hash, c.raw, c.src, c.sig"
	query, seq := "SELECT "+cols+" FROM changes c WHERE c.seq > $1", "c.seq"
	switch {
	case q.Chart != "":
		query += " AND c.chart = " + arg(q.Chart)
		if q.Clinic != "" {
			query += " AND (SELECT true FROM clinic_log l WHERE l.clinic = " + arg(q.Clinic) + " AND l.seq = c.seq)"
		}
	case q.Clinic != "":
		query = "SELECT " + cols + " FROM clinic_log l CROSS JOIN LATERAL (SELECT * FROM changes c WHERE c.seq = l.seq OFFSET 0) c" +
			" WHERE l.seq > $1 AND l.clinic = " + arg(q.Clinic)
		seq = "l.seq"
	}
	if q.Upto != 0 {
		query += " AND " + seq + " <= " + arg(seqArg(q.Upto))
	}
	if q.NotFrom != "" {
		query += " AND c.src <> " + arg(q.NotFrom)
	}
	query += " ORDER BY " + seq
	if q.Limit > 0 {
		query += " LIMIT " + arg(q.Limit)
	}
	return query, args
}

// Search implements store.Index. Each lookup is an index range of
// chart_keys (a prefix is a range of the "C"-collated keys, so LIKE's
// wildcards play no part); a term's ranges are united (a bitmap OR of
// the ranges) and the terms intersected before any chart's entry is
// read.
func (s *Store) Search(ctx context.Context, q store.Search) ([]store.Chart, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	if len(q.Terms) == 0 || slices.ContainsFunc(q.Terms, func(t []store.Lookup) bool { return len(t) == 0 }) {
		return nil, nil
	}
	query, args := searchQuery(q)
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, s.readErr("search charts", err)
	}
	defer rows.Close()
	var out []store.Chart
	for rows.Next() {
		c, err := scanChart(rows)
		if err != nil {
			return nil, s.readErr("search charts", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, s.readErr("search charts", err)
	}
	return out, nil
}

// searchQuery returns Search's statement and its arguments.
func searchQuery(q store.Search) (string, []any) {
	var terms []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	for _, term := range q.Terms {
		var parts []string
		for _, l := range term {
			switch end, bounded := store.PrefixEnd(l.Key); {
			case !l.Prefix:
				parts = append(parts, "key = "+arg(l.Key))
			case bounded:
				parts = append(parts, "(key >= "+arg(l.Key)+" AND key < "+arg(end)+")")
			default:
				parts = append(parts, "key >= "+arg(l.Key))
			}
		}
		terms = append(terms, "(SELECT DISTINCT chart FROM chart_keys WHERE "+strings.Join(parts, " OR ")+")")
	}
	query := "WITH found(id) AS MATERIALIZED (" + strings.Join(terms, " INTERSECT ") + ")" +
		" SELECT " + chartColsOf("ch") + " FROM found f JOIN charts ch ON ch.id = f.id WHERE ch.kind = '' ORDER BY ch.id"
	if q.Limit > 0 {
		query += fmt.Sprintf(" LIMIT %d", q.Limit)
	}
	return query, args
}

// PacksChanges implements store.Packer: changes are stored compressed.
func (s *Store) PacksChanges() bool { return true }

var _ store.Placed = (*Store)(nil)

// Place returns where the store's tables are: the cluster's system
// identifier (where the role may read it), the database's and the meta
// table's object IDs. Every process on the database sees the same place;
// a dump restored into another database or schema, or another cluster,
// is somewhere else, since restoring makes the tables anew. It names the
// replica's log (replica.Replica.LogEpoch), so that devices learn of a
// restore.
func (s *Store) Place(ctx context.Context) (string, error) {
	if err := s.check(); err != nil {
		return "", err
	}
	var db, table uint32
	err := s.pool.QueryRow(ctx, "SELECT d.oid, 'meta'::regclass::oid FROM pg_database d WHERE d.datname = current_database()").Scan(&db, &table)
	if err != nil {
		return "", s.readErr("read where the store is", err)
	}
	var system string
	// pg_control_system is not every role's to call: without it, two
	// clusters created alike may give a restore the place of its
	// original (a restore into the same cluster never does).
	if err := s.pool.QueryRow(ctx, "SELECT system_identifier::text FROM pg_control_system()").Scan(&system); err != nil {
		system = "-"
	}
	return fmt.Sprintf("postgres:%s:%d:%d", system, db, table), nil
}
