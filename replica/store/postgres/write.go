package postgres

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/replica/internal/zchange"
	"github.com/chartsync/chartsync/replica/store"
)

// Write implements store.Store: one transaction, committed synchronously
// (the commit record is flushed to the server's disk before COMMIT
// returns). A failed Write stored nothing unless its error matches
// store.ErrOutcomeUnknown; see the package doc for how a lost connection
// during COMMIT is settled.
func (s *Store) Write(ctx context.Context, b store.Batch) (uint64, error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("write: %w", err)
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return 0, notStored(s.writeErr("write: begin", err))
	}
	w, err := writeBatch(ctx, tx, b)
	if err != nil {
		tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // the statement's error is the one to report
		return 0, notStored(s.writeErr("write", err))
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer cancel()
	if err := tx.Commit(cctx); err != nil {
		return s.settle(ctx, w, err)
	}
	return w.head, nil
}

// written is what a write's transaction knows before its COMMIT: who it
// is on the server, to settle a lost COMMIT, and the log head it makes.
type written struct {
	xid  string // the transaction's ID (xid8, as text)
	pid  uint32 // the server process running it
	head uint64
}

func (s *Store) writeErr(op string, err error) error {
	if s.closed.Load() {
		return fmt.Errorf("%s: %w (%w)", op, store.ErrClosed, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// notStored marks the error of a write that stored nothing with
// store.ErrDiskFull when PostgreSQL said the disk is full.
func notStored(err error) error {
	if isDiskFull(err) && !errors.Is(err, store.ErrDiskFull) {
		return fmt.Errorf("%w: %w", store.ErrDiskFull, err)
	}
	return err
}

// lockHead is the statement that orders writers: it takes the log head
// row's lock, which the transaction keeps until it ends.
const lockHead = "SELECT seq FROM log_head WHERE id = 0 FOR UPDATE"

// writeBatch runs b's statements in tx, in two round trips.
//
// The first sends what needs no log position (meta, peers, quarantine)
// and then, when the batch adds changes or grants or writes chart index
// entries, takes the log head row's lock and reads which of the batch's
// changes are already stored and the scopes its charts had. Under READ
// COMMITTED each statement sees what was committed when it started, and
// these reads start after the lock is held: everything an earlier writer
// committed is in their view, and no other writer can change the log or
// the charts' scopes until this transaction ends.
//
// The second writes the chart index entries, inserts the new changes at
// the positions after the head, moves the head, keeps the log's index by
// clinic, and writes the snapshots and grants, which are placed relative
// to the head.
func writeBatch(ctx context.Context, tx pgx.Tx, b store.Batch) (written, error) {
	w := written{pid: tx.Conn().PgConn().PID()}
	ordered := len(b.Changes) > 0 || len(b.Grants) > 0 || len(b.Charts) > 0 || len(b.Expect) > 0
	first := &pgx.Batch{}
	first.Queue("SELECT pg_current_xact_id()::text").QueryRow(func(row pgx.Row) error {
		if err := row.Scan(&w.xid); err != nil {
			return fmt.Errorf("transaction ID: %w", err)
		}
		return nil
	})
	// Rows that writers share (meta keys, peers, snapshots) are written
	// in one order, sorted by key, whatever the batch's order: two
	// transactions that lock the same rows in opposite orders would
	// deadlock, and PostgreSQL would abort one of them. (Chart entries
	// and the log are written under the log head's lock.)
	for _, k := range slices.Sorted(maps.Keys(b.Meta)) {
		queueExec(first, "meta "+k, "INSERT INTO meta(key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value", k, b.Meta[k])
	}
	peers := slices.Clone(b.Peers)
	slices.SortStableFunc(peers, func(a, b store.Peer) int { return strings.Compare(a.ID, b.ID) })
	for _, p := range peers {
		queueExec(first, "peer "+p.ID, `INSERT INTO peers(`+peerCols+`) VALUES ($1, $2, $3, $4)
			ON CONFLICT (id) DO UPDATE SET acked = excluded.acked, received = excluded.received, last_sync = excluded.last_sync`,
			p.ID, int64(p.Acked), int64(p.Received), timeArg(p.LastSync))
	}
	for _, q := range b.Quarantine {
		queueExec(first, "quarantine", "INSERT INTO quarantine(src, at, reason, data) VALUES ($1, $2, $3, $4)",
			q.From, timeArg(q.At), q.Reason, nonNil(q.Data))
	}
	var before int64 // the log head before the batch
	if ordered {
		first.Queue(lockHead).QueryRow(func(row pgx.Row) error {
			if err := row.Scan(&before); err != nil {
				return fmt.Errorf("lock log head: %w", err)
			}
			return nil
		})
	} else if len(b.Snapshots) > 0 {
		// A snapshot needs only the committed head: a writer holding the
		// lock now commits its changes after it.
		first.Queue("SELECT seq FROM log_head WHERE id = 0").QueryRow(func(row pgx.Row) error {
			if err := row.Scan(&before); err != nil {
				return fmt.Errorf("log head: %w", err)
			}
			return nil
		})
	}
	// Charts are written under the log head's lock: the heads read here
	// hold until this transaction ends.
	held := map[string]crdt.Heads{}
	if len(b.Expect) > 0 {
		first.Queue("SELECT id, heads FROM charts WHERE id = ANY($1)", slices.Sorted(maps.Keys(b.Expect))).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var id string
				var raw []byte
				if err := rows.Scan(&id, &raw); err != nil {
					return fmt.Errorf("read heads: %w", err)
				}
				h, err := decodeHeads(raw)
				if err != nil {
					return fmt.Errorf("read heads of %s: %w", id, err)
				}
				held[id] = h
			}
			return nil
		})
	}
	known := map[crdt.Hash]bool{}
	if len(b.Changes) > 0 {
		hashes := make([]crdt.Hash, len(b.Changes))
		for i, c := range b.Changes {
			hashes[i] = c.Hash
		}
		first.Queue("SELECT hash FROM changes WHERE hash = ANY($1)", hashArgs(hashes)).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var h []byte
				if err := rows.Scan(&h); err != nil {
					return fmt.Errorf("look up changes: %w", err)
				}
				if len(h) != len(crdt.Hash{}) {
					return fmt.Errorf("look up changes: stored hash of %d bytes", len(h))
				}
				known[crdt.Hash(h)] = true
			}
			return nil
		})
	}
	// Each chart's scope and search keys before the batch and as the
	// batch leaves them.
	was, is := map[string][]string{}, map[string][]string{}
	wasKeys, isKeys := map[string][]string{}, map[string][]string{}
	var ids []string
	for _, c := range b.Charts {
		if _, ok := is[c.ID]; !ok {
			ids = append(ids, c.ID)
		}
		is[c.ID], isKeys[c.ID] = c.Scope, store.NormalKeys(c)
	}
	if len(ids) > 0 {
		first.Queue("SELECT id, scope, keys FROM charts WHERE id = ANY($1)", ids).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var id string
				var scope, keys []string
				if err := rows.Scan(&id, &scope, &keys); err != nil {
					return fmt.Errorf("read scopes: %w", err)
				}
				was[id], wasKeys[id] = scope, keys
			}
			return nil
		})
	}
	if err := tx.SendBatch(ctx, first).Close(); err != nil {
		return w, err
	}
	if err := store.ExpectHeld(b.Expect, func(id string) (crdt.Heads, error) { return held[id], nil }); err != nil {
		return w, err
	}

	second := &pgx.Batch{}
	for _, c := range b.Charts {
		scope, keys := c.Scope, store.NormalKeys(c)
		if scope == nil {
			scope = []string{}
		}
		if keys == nil {
			keys = []string{}
		}
		queueExec(second, "chart "+c.ID, `INSERT INTO charts(`+chartCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
			ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, heads = excluded.heads, given = excluded.given,
			family = excluded.family, village = excluded.village, national_id = excluded.national_id,
			home_clinic = excluded.home_clinic, scope = excluded.scope, updated = excluded.updated, keys = excluded.keys`,
			c.ID, c.Kind, encodeHeads(c.Heads), c.GivenName, c.FamilyName, c.Village, c.NationalID, c.HomeClinic, scope, timeArg(c.Updated), keys)
	}
	// A chart's search keys are replaced: those it lost are removed and
	// those it gained added (chart entries are written under the log
	// head's lock, so the keys read above are the stored ones).
	for _, id := range ids {
		if gone := diff(isKeys[id], wasKeys[id]); len(gone) > 0 {
			queueExec(second, "search keys of "+id, "DELETE FROM chart_keys WHERE key = ANY($2) AND chart = $1", id, gone)
		}
		if added := diff(wasKeys[id], isKeys[id]); len(added) > 0 {
			queueExec(second, "search keys of "+id, `INSERT INTO chart_keys(key, chart) SELECT k, $1 FROM unnest($2::text[]) k
				ON CONFLICT DO NOTHING`, id, added)
		}
	}

	// The new changes, each once, in the batch's order.
	var seqs []int64
	var charts, srcs []string
	var hashes, raws, sigs [][]byte
	head := before
	for _, c := range b.Changes {
		if known[c.Hash] {
			continue
		}
		known[c.Hash] = true
		head++
		seqs = append(seqs, head)
		charts = append(charts, c.Chart)
		hashes = append(hashes, c.Hash[:])
		packed := c.Packed // as the SQLite store keeps them (zchange); rows are read as either
		if packed == nil {
			packed = zchange.Compress(c.Raw)
		}
		raws = append(raws, nonNil(packed))
		srcs = append(srcs, c.From)
		var sig []byte // NULL when unsigned
		if len(c.Sig) > 0 {
			sig = c.Sig
		}
		sigs = append(sigs, sig)
	}
	w.head = uint64(head)
	if len(seqs) > 0 {
		queueExec(second, "changes", `INSERT INTO changes(`+changeCols+`)
			SELECT * FROM unnest($1::bigint[], $2::text[], $3::bytea[], $4::bytea[], $5::text[], $6::bytea[])`,
			seqs, charts, hashes, raws, srcs, sigs)
		queueExec(second, "log head", "UPDATE log_head SET seq = $1 WHERE id = 0", head)
		// The new changes join the logs of the clinics in their charts'
		// scopes (as this batch leaves them: the chart entries are
		// written above).
		queueExec(second, "index the new changes by clinic", `INSERT INTO clinic_log(clinic, seq)
			SELECT k, c.seq FROM changes c JOIN charts ch ON ch.id = c.chart CROSS JOIN LATERAL unnest(ch.scope) k
			WHERE c.seq > $1 ON CONFLICT DO NOTHING`, before)
	}
	// A chart whose scope changed brings its earlier changes into the logs
	// of the clinics that joined it and takes them out of the others'.
	for _, id := range ids {
		joined, left := diff(was[id], is[id]), diff(is[id], was[id])
		if len(joined) > 0 && before > 0 {
			queueExec(second, "index chart "+id+" by clinic", `INSERT INTO clinic_log(clinic, seq)
				SELECT k, c.seq FROM changes c CROSS JOIN unnest($2::text[]) k
				WHERE c.chart = $1 AND c.seq <= $3 ON CONFLICT DO NOTHING`, id, joined, before)
		}
		if len(left) > 0 {
			queueExec(second, "unindex chart "+id+" by clinic", `DELETE FROM clinic_log l USING changes c
				WHERE c.chart = $1 AND l.seq = c.seq AND l.clinic = ANY($2)`, id, left)
		}
	}
	snaps := slices.Clone(b.Snapshots)
	slices.SortStableFunc(snaps, func(a, b store.NewSnapshot) int { return strings.Compare(a.Chart, b.Chart) })
	for _, sn := range snaps {
		queueExec(second, "snapshot of "+sn.Chart, `INSERT INTO snapshots(chart, seq, data) VALUES ($1, $2, $3)
			ON CONFLICT (chart) DO UPDATE SET seq = excluded.seq, data = excluded.data`, sn.Chart, head, nonNil(sn.Data))
	}
	for _, g := range b.Grants {
		seq := before + 1 // a join: the batch's first position
		if g.Revoked {
			seq = head
		}
		queueExec(second, fmt.Sprintf("grant of %s to %s", g.Chart, g.Clinic),
			"INSERT INTO grants(clinic, seq, chart, revoked) VALUES ($1, $2, $3, $4)", g.Clinic, seq, g.Chart, g.Revoked)
	}
	if second.Len() > 0 {
		if err := tx.SendBatch(ctx, second).Close(); err != nil {
			return w, err
		}
	}
	return w, nil
}

// diff returns the elements of b not in a, each once.
func diff(a, b []string) []string {
	var out []string
	for _, x := range b {
		if !slices.Contains(a, x) && !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}

// queueExec queues a statement whose error, if any, says what it wrote.
func queueExec(b *pgx.Batch, what, sql string, args ...any) {
	b.Queue(sql, args...).Fn = func(br pgx.BatchResults) error {
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	}
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// timeArg stores the zero time as NULL.
func timeArg(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// settle decides what a failed COMMIT did and returns Write's result.
//
// When PostgreSQL answered the COMMIT with an error, or the COMMIT was
// never sent, the transaction was rolled back: nothing is stored. When the
// connection was lost after the COMMIT was (perhaps partly) sent, the
// server may have committed. settle then asks it, on another connection,
// what became of the transaction ID (pg_xact_status): committed (the write
// is durable: it returns the head as if COMMIT had answered), aborted
// (nothing stored), or still in progress (the server has not yet noticed
// the lost connection: settle ends that session if it is still waiting
// for its client, which rolls it back, and asks again). Only when no
// answer comes within Config.OutcomeTimeout is the error
// store.ErrOutcomeUnknown.
func (s *Store) settle(ctx context.Context, w written, cerr error) (uint64, error) {
	var pe *pgconn.PgError
	switch {
	case errors.Is(cerr, pgx.ErrTxCommitRollback):
		return 0, fmt.Errorf("write: commit: the transaction was rolled back: %w", cerr)
	case errors.As(cerr, &pe) && severity(pe) == "ERROR":
		// The server refused the COMMIT and rolled back. (FATAL and
		// PANIC end the session or the server, perhaps after the
		// commit record was written: those are settled below.)
		return 0, notStored(fmt.Errorf("write: commit: %w", cerr))
	case pgconn.SafeToRetry(cerr):
		return 0, notStored(fmt.Errorf("write: commit (never sent): %w", cerr))
	}
	status, err := s.outcome(ctx, w)
	switch status {
	case "committed":
		return w.head, nil
	case "aborted":
		return 0, notStored(fmt.Errorf("write: commit: the connection was lost and the server rolled the transaction back: %w", cerr))
	}
	out := fmt.Errorf("write: commit: %w: %w (asking the server what became of transaction %s: %v)", store.ErrOutcomeUnknown, cerr, w.xid, err)
	if isDiskFull(cerr) {
		out = fmt.Errorf("%w: %w", store.ErrDiskFull, out)
	}
	return 0, out
}

// severity is the error's severity in English (Severity may be
// translated).
func severity(pe *pgconn.PgError) string {
	if pe.SeverityUnlocalized != "" {
		return pe.SeverityUnlocalized
	}
	return pe.Severity
}

// outcome asks the server, until it answers or Config.OutcomeTimeout
// passes, whether w's transaction committed or aborted.
func (s *Store) outcome(ctx context.Context, w written) (string, error) {
	if w.xid == "" {
		return "", errors.New("the transaction ID was never read")
	}
	xid, err := strconv.ParseUint(w.xid, 10, 64)
	if err != nil {
		return "", fmt.Errorf("transaction ID %q: %w", w.xid, err)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.outcomeTimeout)
	defer cancel()
	wait := 5 * time.Millisecond
	var last error
	for attempt := 0; ; attempt++ {
		if s.closed.Load() {
			return "", fmt.Errorf("the store was closed: %w", last)
		}
		var status *string
		err := s.pool.QueryRow(ctx, "SELECT pg_xact_status($1::text::xid8)", w.xid).Scan(&status)
		switch {
		case err != nil:
			last = err
		case status == nil:
			return "", fmt.Errorf("transaction %s is too old for the server to say", w.xid)
		case *status != "in progress":
			return *status, nil
		default:
			last = errors.New("still in progress")
			if attempt > 0 {
				// Its session is still open: if it is waiting for its
				// client, the COMMIT never arrived whole. Ending the
				// session rolls it back; a session running its COMMIT
				// finishes it first.
				_, err := s.pool.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
					WHERE pid = $1 AND backend_xid::text = $2 AND state LIKE 'idle in transaction%'`,
					int64(w.pid), strconv.FormatUint(xid&0xffffffff, 10))
				if err != nil {
					last = err
				}
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return "", fmt.Errorf("no answer within %s: %w", s.outcomeTimeout, last)
		case <-t.C:
		}
		wait = min(2*wait, time.Second)
	}
}
