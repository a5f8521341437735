package replica

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/google/uuid"
	_ "github.com/mutecomm/go-sqlcipher/v4" // the "sqlite3" driver, SQLCipher's build, as package sqlite uses

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/internal/atomicfile"
	"github.com/chartsync/chartsync/replica/internal/zchange"
	"github.com/chartsync/chartsync/replica/store"
	"github.com/chartsync/chartsync/replica/store/sqlite"
)

// Repairing a damaged replica.
//
// A replica whose database is damaged (Open gives a *DamagedError) is
// rebuilt, not mended in place: Salvage reads every change row that can
// still be read out of a private copy of the damaged database (the file
// and its write-ahead log; the damaged files are only read), and Repair
// makes a new replica of them under a fresh ID, as RestoreAs does, so that
// no Automerge actor and sequence number is ever used twice. What the
// damage took that a peer holds comes back from the peer at the next sync
// (the new ID is a new peer to it, so it is sent everything it lacks);
// what the damage left that the peer lacks (the changes not yet synced)
// goes to the peer in the same sync, with the signatures it was stored
// with. A change of this device's own, not yet in a peer, that depends on
// a change the damage took waits aside until the peer has sent that
// change back; ApplySalvaged then applies it, and the next sync gives it
// to the peer. The signer records the damaged replica kept are kept too.
//
// Salvage reads the log a range at a time; where a range fails (a damaged
// page), it reads that stretch of positions one at a time, so that one
// damaged page costs only the changes stored on it. Every row read is
// checked (its change decodes, and its hash is the one stored), and the
// positions that held a change that could not be read are reported, with
// their charts where an index still names them. A destroyed first page of
// a database in clear (the header and the table of tables) is replaced
// by that of a new database of the same schema, whose tables' first
// pages are where a database made by this version puts them; rows read
// through it are checked like any other. Where SQLite cannot reach rows
// of a database in clear (a damaged interior page of the table hides
// every leaf below it), the file is also read page by page
// (repair_pages.go).
//
// Caveats: Salvage copies the damaged database beside it first, so it
// needs that much free space; Repair holds the salvaged changes in memory
// while it rebuilds their charts (BenchmarkRepair). An encrypted
// database is read through SQLite only: a damaged interior page of its
// change table costs every row below it. What the damaged replica knew
// of its peers' positions, its quarantine and the changes it held for
// their dependencies are not kept: its peers send again what the new
// replica lacks.

// ErrUnsalvageable matches the error of Salvage and Repair when nothing
// of the damaged database can be read: not even its list of tables (for
// an encrypted database, the first page, which holds the encryption's
// salt; or a wrong key, which cannot be told apart from that). Restore
// the device from a backup, or make it a new device that its peers fill.
var ErrUnsalvageable = errors.New("replica: nothing can be read from the damaged database")

// salvageBatch is how many rows one range read of the log asks for.
const salvageBatch = 512

// salvageProbe is how many positions past the last one read Salvage tries
// when nothing tells it how long the damaged log was.
const salvageProbe = 4096

// SalvagedChange is a change read out of a damaged replica's database.
type SalvagedChange struct {
	// Seq is the change's position in the damaged replica's log.
	Seq   uint64
	Chart string
	Hash  crdt.Hash
	// Raw is the change as Automerge encodes it (decompressed).
	Raw []byte
	// From is the peer the change came from; empty for a change made on
	// the damaged replica.
	From string
	// Sig is the change's signature field as it was stored (see Signed
	// changes in the package documentation).
	Sig []byte
}

// SalvageReport says what Salvage read out of a damaged database and what
// it could not.
type SalvageReport struct {
	// Path is the damaged database.
	Path string
	// Replica is the damaged replica's ID ("" if it could not be read).
	Replica string
	// Head is the highest log position found, read or named by an index.
	Head uint64
	// Read counts the changes read whole.
	Read int
	// Lost are the log positions whose change could not be read, in
	// order.
	Lost []uint64
	// LostCharts are the charts of the changes lost, as far as an index
	// still names them, sorted.
	LostCharts []string
	// Acked is the highest position of the damaged log a peer had
	// acknowledged, as far as the record of peers could be read (0 if it
	// could not): a lost change beyond it may have been in no peer.
	Acked uint64
	// HeaderRebuilt says the database's first page was unreadable and
	// was replaced by a new database's (see Salvage).
	HeaderRebuilt bool
	// FromPages counts the changes read from the file's pages where
	// SQLite could not reach their rows (a database in clear only).
	FromPages int
	// Problems are what failed to read, in SQLite's words, at most
	// MaxProblems of them.
	Problems []string
}

// UnsyncedLost returns the lost positions beyond Acked: changes that may
// have been in no peer, so that no peer can send them back.
func (s SalvageReport) UnsyncedLost() []uint64 {
	var out []uint64
	for _, p := range s.Lost {
		if p > s.Acked {
			out = append(out, p)
		}
	}
	return out
}

func (s *SalvageReport) problem(format string, args ...any) {
	if len(s.Problems) < MaxProblems {
		s.Problems = append(s.Problems, fmt.Sprintf(format, args...))
	}
}

// Salvage reads every change that can still be read out of the replica
// database at path, which may be damaged anywhere (encrypted with
// cfg.DatabaseKey, if set), in log order, and reports what it could not
// read. The database and its write-ahead log are copied first, and only
// the copy is opened: the damaged files are read, never written. Salvage
// never fails for damage alone: a change that cannot be read is reported
// (SalvageReport.Lost); when nothing at all can be read, the error
// matches ErrUnsalvageable. A database that is not damaged is read whole.
func Salvage(ctx context.Context, path string, cfg Config) ([]SalvagedChange, SalvageReport, error) {
	chs, rep, _, err := salvage(ctx, path, cfg)
	return chs, rep, err
}

// salvage is Salvage, returning also the signer records the damaged
// replica kept (meta values under metaSigner, by key) as far as they read.
func salvage(ctx context.Context, path string, cfg Config) ([]SalvagedChange, SalvageReport, map[string]string, error) {
	rep := SalvageReport{Path: path}
	if err := cfg.Validate(); err != nil {
		return nil, rep, nil, err
	}
	if _, err := os.Stat(path); err != nil {
		return nil, rep, nil, fmt.Errorf("salvage %s: %w", path, err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(path), ".salvage-*")
	if err != nil {
		return nil, rep, nil, fmt.Errorf("salvage %s: %w", path, err)
	}
	defer os.RemoveAll(tmp)
	cp := filepath.Join(tmp, "damaged.db")
	if err := copyFile(path, cp); err != nil {
		return nil, rep, nil, fmt.Errorf("salvage %s: %w", path, err)
	}
	if _, err := os.Stat(path + "-wal"); err == nil {
		if err := copyFile(path+"-wal", cp+"-wal"); err != nil {
			return nil, rep, nil, fmt.Errorf("salvage %s: %w", path, err)
		}
	}
	db, conn, err := openSalvage(ctx, cp, cfg)
	if err != nil && cfg.DatabaseKey == nil {
		// A first page destroyed: put a new database's in its place.
		if rerr := rebuildHeader(ctx, tmp, cp); rerr == nil {
			rep.HeaderRebuilt = true
			rep.problem("the first page (header and table of tables) did not read: %v", err)
			db, conn, err = openSalvage(ctx, cp, cfg)
		}
	}
	if err != nil {
		if cfg.DatabaseKey != nil {
			return nil, rep, nil, fmt.Errorf("salvage %s: %w (or a wrong key: %w): %v", path, ErrUnsalvageable, ErrWrongKey, err)
		}
		return nil, rep, nil, fmt.Errorf("salvage %s: %w (an encrypted database needs its key): %v", path, ErrUnsalvageable, err)
	}
	defer db.Close()
	defer conn.Close()
	s := &salvager{db: conn, rep: &rep, charts: map[uint64]string{}, heads: map[string][]byte{}}
	if cfg.DatabaseKey == nil {
		s.pages = cp
	}
	s.readMeta(ctx)
	s.readIndexes(ctx)
	s.readCharts(ctx)
	signers := s.readSigners(ctx)
	out, err := s.readLog(ctx)
	if err != nil {
		return nil, rep, nil, fmt.Errorf("salvage %s: %w", path, err)
	}
	if len(out) == 0 && len(s.charts) == 0 && rep.Replica == "" && len(rep.Problems) > 0 {
		if cfg.DatabaseKey != nil {
			return nil, rep, nil, fmt.Errorf("salvage %s: %w (or a wrong key: %w): %s", path, ErrUnsalvageable, ErrWrongKey, rep.Problems[0])
		}
		return nil, rep, nil, fmt.Errorf("salvage %s: %w (an encrypted database needs its key): %s", path, ErrUnsalvageable, rep.Problems[0])
	}
	return out, rep, signers, nil
}

// openSalvage opens the copy at path, and one connection to it, and
// reads its table of tables.
func openSalvage(ctx context.Context, path string, cfg Config) (_ *sql.DB, _ *sql.Conn, err error) {
	q := url.Values{}
	q.Set("_busy_timeout", "10000")
	if cfg.DatabaseKey != nil {
		q.Set("_pragma_key", "x'"+hex.EncodeToString(cfg.DatabaseKey)+"'")
	}
	db, err := sql.Open("sqlite3", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, nil, err
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	defer func() {
		if err != nil {
			conn.Close()
			db.Close()
		}
	}()
	// Damaged cells are found, not read past.
	if _, err := conn.ExecContext(ctx, "PRAGMA cell_size_check = ON"); err != nil {
		return nil, nil, err
	}
	var n int
	if err := conn.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master WHERE name = 'changes'").Scan(&n); err != nil {
		return nil, nil, err
	}
	if n != 1 {
		return nil, nil, errors.New("it has no table of changes")
	}
	return db, conn, nil
}

// rebuildHeader replaces the first page of the database at path by the
// first page of a new, empty replica database made in dir, with its
// page count and free list cleared (SQLite then takes the file's size).
func rebuildHeader(ctx context.Context, dir, path string) error {
	tpl := filepath.Join(dir, "template.db")
	st, err := sqlite.Open(ctx, tpl)
	if err != nil {
		return err
	}
	if err := st.Close(); err != nil {
		return err
	}
	data, err := os.ReadFile(tpl)
	if err != nil {
		return err
	}
	if len(data) < 100 {
		return errors.New("the new database has no header")
	}
	size := int(binary.BigEndian.Uint16(data[16:18]))
	if size == 1 {
		size = 65536
	}
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if size < 512 || len(data) < size || fi.Size() < int64(2*size) || fi.Size()%int64(size) != 0 {
		return fmt.Errorf("the damaged file of %d bytes is not made of %d-byte pages", fi.Size(), size)
	}
	page := data[:size]
	binary.BigEndian.PutUint32(page[28:32], 0) // database size: from the file
	binary.BigEndian.PutUint32(page[32:36], 0) // no free list
	binary.BigEndian.PutUint32(page[36:40], 0)
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(page, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// salvager reads what it can of one damaged database.
type salvager struct {
	db  *sql.Conn
	rep *SalvageReport
	// charts holds the chart of each log position an index names.
	charts map[uint64]string
	// heads holds each chart's heads as its index entry has them.
	heads map[string][]byte
	// pages, for a database in clear, is the copy to read page by page
	// where SQLite cannot read rows (repair_pages.go).
	pages string
}

// readCharts reads the charts' index entries (their heads), from each
// end of the table up to the first damage.
func (s *salvager) readCharts(ctx context.Context) {
	for _, dir := range []struct{ cmp, order, from string }{{">", "ASC", ""}, {"<", "DESC", "\U0010FFFF"}} {
		from := dir.from
		for {
			n, last, err := s.chartRange(ctx, dir.cmp, dir.order, from)
			if err != nil {
				s.rep.problem("the charts' index entries did not read past chart %s: %v", last, err)
				break
			}
			if n < salvageBatch {
				break
			}
			from = last
		}
	}
}

func (s *salvager) chartRange(ctx context.Context, cmp, order, from string) (int, string, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT id, heads FROM charts WHERE id "+cmp+" ? ORDER BY id "+order+" LIMIT ?", from, salvageBatch)
	if err != nil {
		return 0, from, err
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var id string
		var heads []byte
		if err := rows.Scan(&id, &heads); err != nil {
			return n, from, err
		}
		n++
		from = id
		s.heads[id] = heads
	}
	return n, from, rows.Err()
}

// readMeta reads the replica's ID and how far its peers acknowledged its
// log.
func (s *salvager) readMeta(ctx context.Context) {
	if err := s.db.QueryRowContext(ctx, "SELECT value FROM meta WHERE key = ?", metaReplicaID).Scan(&s.rep.Replica); err != nil {
		s.rep.problem("the replica's ID did not read: %v", err)
	}
	if _, err := idBytes(s.rep.Replica); s.rep.Replica != "" && err != nil {
		s.rep.problem("the replica's ID read is not one: %v", err)
		s.rep.Replica = ""
	}
	if err := s.db.QueryRowContext(ctx, "SELECT COALESCE(MAX(acked), 0) FROM peers").Scan(&s.rep.Acked); err != nil {
		s.rep.problem("the peers' positions did not read: %v", err)
		s.rep.Acked = 0
	}
}

// readSigners reads the signer records the damaged replica kept of the
// devices whose changes it held (see metaSigner), so that the repaired
// replica passes them on with those changes as the damaged one did. A
// value that does not decode is left out.
func (s *salvager) readSigners(ctx context.Context) map[string]string {
	out := map[string]string{}
	rows, err := s.db.QueryContext(ctx, "SELECT key, value FROM meta WHERE key > ? AND key < ? ORDER BY key", metaSigner, metaSigner[:len(metaSigner)-1]+"0")
	if err != nil {
		s.rep.problem("the signer records did not read: %v", err)
		return out
	}
	defer rows.Close()
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			s.rep.problem("the signer records did not read whole: %v", err)
			return out
		}
		if _, err := idBytes(strings.TrimPrefix(k, metaSigner)); err != nil {
			continue
		}
		good := v != ""
		for _, line := range strings.Split(v, "\n") {
			_, err := base64.StdEncoding.DecodeString(line)
			good = good && err == nil
		}
		if good {
			out[k] = v
		}
	}
	if err := rows.Err(); err != nil {
		s.rep.problem("the signer records did not read whole: %v", err)
	}
	return out
}

// readIndexes learns, from the index of changes by chart, which log
// positions held a change of which chart, reading it from each end up
// to the first damage.
func (s *salvager) readIndexes(ctx context.Context) {
	for _, dir := range []struct{ cmp, order string }{{">", "ASC"}, {"<", "DESC"}} {
		var chart string
		var seq int64
		if dir.cmp == "<" {
			chart, seq = "\U0010FFFF", 1<<62
		}
		for {
			n, err := s.indexRange(ctx, dir.cmp, dir.order, &chart, &seq)
			if err != nil {
				s.rep.problem("the index of changes by chart did not read past chart %s, position %d: %v", chart, seq, err)
				break
			}
			if n < salvageBatch {
				break
			}
		}
	}
	for p := range s.charts {
		s.rep.Head = max(s.rep.Head, p)
	}
	var top uint64
	if err := s.db.QueryRowContext(ctx, "SELECT seq FROM sqlite_sequence WHERE name = 'changes'").Scan(&top); err == nil {
		s.rep.Head = max(s.rep.Head, top)
	}
	if err := s.db.QueryRowContext(ctx, "SELECT COALESCE(MAX(seq), 0) FROM changes").Scan(&top); err == nil {
		s.rep.Head = max(s.rep.Head, top)
	}
}

// indexRange reads one range of the index by chart after (or before)
// (chart, seq), moving them to the last entry read.
func (s *salvager) indexRange(ctx context.Context, cmp, order string, chart *string, seq *int64) (int, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT chart, seq FROM changes INDEXED BY changes_by_chart WHERE (chart, seq) "+cmp+" (?, ?) ORDER BY chart "+order+", seq "+order+" LIMIT ?",
		*chart, *seq, salvageBatch)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var c string
		var p int64
		if err := rows.Scan(&c, &p); err != nil {
			return n, err
		}
		n++
		*chart, *seq = c, p
		if p > 0 {
			s.charts[uint64(p)] = c
		}
	}
	return n, rows.Err()
}

// readLog reads the log in ranges of positions, and position by position
// where a range fails, and checks every row read.
func (s *salvager) readLog(ctx context.Context) ([]SalvagedChange, error) {
	var out []SalvagedChange
	lost := map[uint64]bool{}
	var after uint64
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		chs, last, err := s.readRange(ctx, after)
		out = append(out, chs...)
		if err == nil && last == after {
			break // the end of what the table reaches
		}
		if err == nil {
			after = last
			continue
		}
		// A damaged page: read on position by position until a row
		// reads, then in ranges again.
		s.rep.problem("the log did not read after position %d: %v", last, err)
		found := false
		hi := max(s.rep.Head, last+salvageProbe)
		for p := last + 1; p <= hi; p++ {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			c, ok, err := s.readOne(ctx, p)
			if err != nil {
				lost[p] = true
				continue
			}
			if ok {
				out = append(out, c)
				after, found = p, true
				break
			}
		}
		if !found {
			break
		}
	}
	// Positions below the highest known that no range reached (a page
	// that read as holding fewer rows than it did) are read one by one.
	got := make(map[uint64]bool, len(out))
	for _, c := range out {
		got[c.Seq] = true
	}
	for p := uint64(1); p <= s.rep.Head; p++ {
		if got[p] || lost[p] {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if c, ok, err := s.readOne(ctx, p); err == nil && ok {
			out = append(out, c)
		}
	}
	read := make(map[uint64]bool, len(out))
	var good []SalvagedChange
	have := map[crdt.Hash]bool{}
	var deps []crdt.Change
	take := func(c SalvagedChange) bool {
		sc, parsed, err := checkSalvaged(c)
		if err != nil {
			return false
		}
		read[c.Seq] = true
		have[sc.Hash] = true
		deps = append(deps, crdt.Change{Hash: sc.Hash, Deps: parsed.Deps, Actor: sc.Chart})
		good = append(good, sc)
		s.rep.Head = max(s.rep.Head, c.Seq)
		return true
	}
	for _, c := range out {
		if !take(c) {
			s.rep.problem("the change at position %d is damaged", c.Seq)
			lost[c.Seq] = true
			if c.Chart != "" {
				s.charts[c.Seq] = c.Chart
			}
		}
	}
	// Rows SQLite could not reach (below a damaged interior page, say)
	// may be read from the pages themselves.
	missing := len(lost) > 0
	for p := range s.charts {
		missing = missing || !read[p]
	}
	for p := uint64(1); p <= s.rep.Head && !missing; p++ {
		missing = !read[p]
	}
	if missing && s.pages != "" {
		f, err := scanFile(s.pages)
		if err != nil {
			s.rep.problem("the file did not read page by page: %v", err)
		} else {
			for _, c := range f.rows() {
				if !read[c.Seq] && take(c) {
					s.rep.FromPages++
					delete(lost, c.Seq)
				}
			}
		}
	}
	// A position an index names, or below the highest found, that did not
	// read: lost. (Positions are numbered without gaps.)
	for p := range s.charts {
		if !read[p] {
			lost[p] = true
		}
	}
	for p := uint64(1); p <= s.rep.Head; p++ {
		if !read[p] {
			lost[p] = true
		}
	}
	charts := map[string]bool{}
	for p := range lost {
		if p > s.rep.Head {
			continue // probed past the end of the log
		}
		s.rep.Lost = append(s.rep.Lost, p)
		if c, ok := s.charts[p]; ok {
			charts[c] = true
		}
	}
	// A chart whose index entry names a head not salvaged, or with a
	// salvaged change whose dependency was not, lost changes too.
	for id, hs := range s.heads {
		for i := 0; i+len(crdt.Hash{}) <= len(hs); i += len(crdt.Hash{}) {
			if !have[crdt.Hash(hs[i:i+len(crdt.Hash{})])] {
				charts[id] = true
			}
		}
	}
	for _, c := range deps {
		for _, d := range c.Deps {
			if !have[d] {
				charts[c.Actor] = true
			}
		}
	}
	slices.Sort(s.rep.Lost)
	for c := range charts {
		s.rep.LostCharts = append(s.rep.LostCharts, c)
	}
	slices.Sort(s.rep.LostCharts)
	slices.SortFunc(good, func(a, b SalvagedChange) int { return cmpUint(a.Seq, b.Seq) })
	s.rep.Read = len(good)
	return good, nil
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

const salvageCols = "seq, chart, hash, raw, src, sig"

// readRange reads the rows after position after, up to salvageBatch of
// them. It returns those read before any error and the last position
// read (after if none).
func (s *salvager) readRange(ctx context.Context, after uint64) ([]SalvagedChange, uint64, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT "+salvageCols+" FROM changes WHERE seq > ? ORDER BY seq LIMIT ?", after, salvageBatch)
	if err != nil {
		return nil, after, err
	}
	defer rows.Close()
	var out []SalvagedChange
	last := after
	for rows.Next() {
		c, err := scanSalvaged(rows)
		if err != nil {
			return out, last, err
		}
		out = append(out, c)
		last = c.Seq
	}
	return out, last, rows.Err()
}

// readOne reads the row at position p: ok is false if there is none.
func (s *salvager) readOne(ctx context.Context, p uint64) (SalvagedChange, bool, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT "+salvageCols+" FROM changes WHERE seq = ?", p)
	if err != nil {
		return SalvagedChange{}, false, err
	}
	defer rows.Close()
	if !rows.Next() {
		return SalvagedChange{}, false, rows.Err()
	}
	c, err := scanSalvaged(rows)
	if err != nil {
		return SalvagedChange{}, false, err
	}
	return c, true, rows.Close()
}

// scanSalvaged reads a row as it is stored; checkSalvaged checks it.
func scanSalvaged(rows *sql.Rows) (SalvagedChange, error) {
	var c SalvagedChange
	var seq int64
	var hash []byte
	var src sql.NullString
	if err := rows.Scan(&seq, &c.Chart, &hash, &c.Raw, &src, &c.Sig); err != nil {
		return c, err
	}
	if seq <= 0 {
		return c, fmt.Errorf("a row at position %d", seq)
	}
	c.Seq, c.From = uint64(seq), src.String
	if len(hash) != len(c.Hash) {
		c.Raw = nil // checkSalvaged refuses it
	}
	copy(c.Hash[:], hash)
	return c, nil
}

// checkSalvaged decompresses and decodes a row's change and checks it is
// the change its hash names, in a chart with a valid ID. It returns the
// change decoded too.
func checkSalvaged(c SalvagedChange) (SalvagedChange, crdt.Change, error) {
	var ch crdt.Change
	if _, err := uuid.Parse(c.Chart); err != nil {
		return c, ch, fmt.Errorf("chart %q: %w", c.Chart, err)
	}
	if len(c.Raw) == 0 {
		return c, ch, errors.New("no change bytes or no hash")
	}
	raw, err := zchange.Decompress(c.Raw)
	if err != nil {
		return c, ch, err
	}
	if ch, err = crdt.ParseChange(raw); err != nil {
		return c, ch, err
	}
	if ch.Hash != c.Hash {
		return c, ch, fmt.Errorf("the change is %s, stored as %s", ch.Hash, c.Hash)
	}
	c.Raw = raw
	if len(c.Sig) == 0 {
		c.Sig = nil
	}
	if len(c.Sig) > MaxSignatureBytes {
		return c, ch, fmt.Errorf("a signature of %d bytes", len(c.Sig))
	}
	if c.From != "" {
		if _, err := idBytes(c.From); err != nil {
			c.From = "" // not a peer: the change is sent to every peer
		}
	}
	return c, ch, nil
}

// RepairReport says what Repair made of a damaged replica.
type RepairReport struct {
	// Salvage is what was read out of the damaged database.
	Salvage SalvageReport
	// Replica is the new replica's ID.
	Replica string
	// Charts counts the charts stored in the new replica.
	Charts int
	// Changes counts the changes stored in its log.
	Changes int
	// Waiting counts this device's own changes not yet in a peer that
	// depend on a change lost here: they are kept aside, and
	// ApplySalvaged applies them once a peer has sent what they depend
	// on.
	Waiting int
	// LeftToPeers counts changes left out because they depend on a change
	// lost here and a peer holds them: the peer sends them again, with
	// what they depend on.
	LeftToPeers int
	// NotKept counts own changes waiting for a lost change beyond what can
	// be kept aside (MaxHeldPerPeer, MaxHeldBytesPerPeer): they are lost
	// unless a peer holds them.
	NotKept int
}

// Repair makes a new replica at newPath, which must not exist, from what
// Salvage reads of the damaged replica database at damagedPath, and opens
// it with cfg (cfg.DatabaseKey, if set, is the damaged database's key and
// the new one's). The damaged files are only read: the caller keeps them
// aside until the new replica has synced.
//
// The new replica has a fresh ID, cfg.Signer's (a new device identity,
// which must not be the damaged replica's: ErrReusedID) or a random one,
// so that no Automerge actor and sequence number is reused; it knows no
// peer. Every change read is stored with its signature and the peer it
// came from, in its chart. A change that depends on a change lost to the
// damage cannot be applied yet: if a peer has acknowledged it (or it came
// from one), it is left for the peers to send again; if it is this
// device's own and in no peer, it is kept aside and applied when a peer
// sends what it depends on (RepairReport.Waiting, ApplySalvaged). The
// first sync with a peer then brings back every change the peer holds
// that the damage took, and gives the peer every salvaged change it
// lacks; ApplySalvaged then applies the changes that waited, and the next
// sync gives them to the peer.
//
// On error nothing is left at newPath. When nothing of the damaged
// database can be read, the error matches ErrUnsalvageable.
func Repair(ctx context.Context, damagedPath, newPath string, cfg Config) (*Replica, RepairReport, error) {
	var rep RepairReport
	if err := cfg.Validate(); err != nil {
		return nil, rep, err
	}
	if _, err := os.Lstat(newPath); err == nil {
		return nil, rep, fmt.Errorf("repair to %s: %w", newPath, os.ErrExist)
	}
	chs, srep, signers, err := salvage(ctx, damagedPath, cfg)
	rep.Salvage = srep
	if err != nil {
		return nil, rep, fmt.Errorf("repair: %w", err)
	}
	if cfg.Signer != nil && srep.Replica != "" && cfg.Signer.ReplicaID() == srep.Replica {
		return nil, rep, fmt.Errorf("repair replica %s: %w (make the repaired device a new identity)", srep.Replica, ErrReusedID)
	}
	dir := filepath.Dir(newPath)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, rep, fmt.Errorf("repair to %s: %w", newPath, err)
	}
	tmp, err := os.MkdirTemp(dir, ".repair-*")
	if err != nil {
		return nil, rep, fmt.Errorf("repair to %s: %w", newPath, err)
	}
	defer os.RemoveAll(tmp)
	tmpPath := filepath.Join(tmp, "replica.db")
	if err := build(ctx, tmpPath, cfg, chs, signers, &rep); err != nil {
		return nil, rep, fmt.Errorf("repair %s to %s: %w", damagedPath, newPath, err)
	}
	if _, err := os.Stat(tmpPath + "-wal"); err == nil {
		return nil, rep, fmt.Errorf("repair to %s: the new database's write-ahead log was not merged into it", newPath)
	}
	if err := os.Rename(tmpPath, newPath); err != nil {
		return nil, rep, fmt.Errorf("repair to %s: %w", newPath, err)
	}
	if err := atomicfile.SyncDir(dir); err != nil {
		_ = os.Remove(newPath)
		return nil, rep, fmt.Errorf("repair to %s: %w", newPath, err)
	}
	r, err := Open(ctx, newPath, cfg)
	if err != nil {
		return nil, rep, fmt.Errorf("open repaired replica: %w", err)
	}
	r.log.Info("replica repaired from a damaged database under a new ID", "damaged", damagedPath, "damaged_replica", srep.Replica,
		"changes", rep.Changes, "lost", len(srep.Lost), "waiting", rep.Waiting)
	return r, rep, nil
}

// build makes the new replica at path and stores the salvaged changes in
// it, closing it once done.
func build(ctx context.Context, path string, cfg Config, chs []SalvagedChange, signers map[string]string, rep *RepairReport) (err error) {
	r, err := Open(ctx, path, cfg)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := r.Close(); err == nil {
			err = cerr
		}
	}()
	rep.Replica = r.ID()
	unlock, err := r.lock()
	if err != nil {
		return err
	}
	defer unlock()
	if len(signers) > 0 {
		if _, err := r.st.Write(ctx, store.Batch{Meta: signers}); err != nil {
			return fmt.Errorf("keep the signer records: %w", err)
		}
	}
	return r.adopt(ctx, chs, rep)
}

// repairGroup bounds the charts, and the change bytes, stored by one
// write of a repair: the documents of a group are closed once it is
// written, so a large replica is repaired in bounded memory.
const (
	repairGroupCharts = 256
	repairGroupBytes  = 4 << 20
)

// adopt stores salvaged changes, chart by chart, in groups. r.mu is held.
func (r *Replica) adopt(ctx context.Context, chs []SalvagedChange, rep *RepairReport) error {
	byChart := map[string][]SalvagedChange{}
	var order []string
	for _, c := range chs {
		if _, ok := byChart[c.Chart]; !ok {
			order = append(order, c.Chart)
		}
		byChart[c.Chart] = append(byChart[c.Chart], c)
	}
	var b store.Batch
	var docs []*crdt.Doc
	var waiting []heldChange
	size := 0
	flush := func() error {
		defer func() {
			for _, d := range docs {
				_ = d.Close()
			}
			docs, b, size = nil, store.Batch{}, 0
		}()
		if len(b.Changes) == 0 {
			return nil
		}
		if _, err := r.st.Write(ctx, b); err != nil {
			return fmt.Errorf("store salvaged changes: %w", err)
		}
		return nil
	}
	for _, id := range order {
		in := byChart[id]
		doc, applied, pending, err := r.rebuildChart(id, in)
		if err != nil {
			return err
		}
		docs = append(docs, doc)
		for _, c := range in {
			if !applied[c.Hash] {
				continue
			}
			b.Changes = append(b.Changes, store.NewChange{Chart: id, Hash: c.Hash, Raw: c.Raw, From: c.From, Sig: c.Sig})
			size += len(c.Raw)
			rep.Changes++
		}
		if len(applied) > 0 {
			l := &loaded{id: id, doc: doc, sinceSnapshot: len(applied)}
			if err := l.open(); err != nil {
				r.log.Warn("a repaired chart does not read as a chart yet", "chart", id, "err", err)
			}
			if err := chartWrites(r.cfg, &b, l, true); err != nil {
				return err
			}
			rep.Charts++
		}
		for _, c := range pending {
			sc := in[slices.IndexFunc(in, func(s SalvagedChange) bool { return s.Hash == c.Hash })]
			if sc.From != "" || sc.Seq <= rep.Salvage.Acked {
				rep.LeftToPeers++ // a peer holds it
				continue
			}
			waiting = append(waiting, heldChange{chart: id, change: c, sig: sc.Sig, clinic: r.cfg.Clinic, from: rep.Salvage.Replica})
		}
		if len(docs) >= repairGroupCharts || size >= repairGroupBytes {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	return r.keepWaiting(ctx, waiting, rep)
}

// rebuildChart applies a chart's salvaged changes to a new document, in
// log order, and returns it with the changes applied and those waiting
// for a dependency. A change the chart cannot take is left out and
// logged.
func (r *Replica) rebuildChart(id string, in []SalvagedChange) (*crdt.Doc, map[crdt.Hash]bool, []crdt.Change, error) {
	doc, err := crdt.New(r.id)
	if err != nil {
		return nil, nil, nil, err
	}
	// The usual case, every dependency salvaged: one bulk load of the
	// chart's changes as stored, as a chart is loaded from its log.
	if err := applyAll(doc, in, func(c SalvagedChange) ([]byte, crdt.Hash) { return c.Raw, c.Hash }); err == nil {
		applied := map[crdt.Hash]bool{}
		pending := doc.Pending()
		waits := map[crdt.Hash]bool{}
		for _, c := range pending {
			waits[c.Hash] = true
		}
		for _, c := range in {
			if !waits[c.Hash] {
				applied[c.Hash] = true
			}
		}
		return doc, applied, pending, nil
	}
	// One at a time, leaving out what the chart refuses.
	var hs []crdt.Hash
	for _, c := range in {
		ch, err := crdt.ParseChange(c.Raw)
		if err != nil {
			continue // checked by Salvage
		}
		one, err := doc.Apply(ch)
		if err != nil {
			r.log.Error("a salvaged change is left out of its chart: the chart cannot take it", "chart", id, "change", ch.Hash, "err", err)
			continue
		}
		hs = append(hs, one...)
	}
	applied := map[crdt.Hash]bool{}
	for _, h := range hs {
		applied[h] = true
	}
	return doc, applied, doc.Pending(), nil
}

// metaSalvaged is the meta key under which a repaired replica keeps the
// salvaged changes that wait for a change the damage took (encodeHeld's
// form).
const metaSalvaged = "salvaged-waiting"

// keepWaiting keeps a repaired replica's own changes that wait for a lost
// change aside, within the bounds held changes are read back with.
// ApplySalvaged applies them once a peer has sent what they wait for.
func (r *Replica) keepWaiting(ctx context.Context, hs []heldChange, rep *RepairReport) error {
	if len(hs) == 0 {
		return nil
	}
	size := 0
	keep := hs[:0:0]
	for _, h := range hs {
		if len(keep) >= MaxHeldPerPeer || size+len(h.change.Raw) > MaxHeldBytesPerPeer {
			rep.NotKept++
			r.log.Error("a salvaged change waiting for a lost change is not kept: too many wait", "chart", h.chart, "change", h.change.Hash)
			continue
		}
		size += len(h.change.Raw)
		keep = append(keep, h)
	}
	if _, err := r.st.Write(ctx, store.Batch{Meta: map[string]string{metaSalvaged: encodeHeld(keep)}}); err != nil {
		return fmt.Errorf("keep salvaged changes aside: %w", err)
	}
	rep.Waiting = len(keep)
	return nil
}

// waitingSalvaged reads the salvaged changes kept aside. r.mu is held.
func (r *Replica) waitingSalvaged(ctx context.Context) ([]heldChange, error) {
	v, err := r.st.Meta(ctx, metaSalvaged)
	if errors.Is(err, store.ErrNotFound) || err == nil && v == "" {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read salvaged changes kept aside: %w", err)
	}
	hs, err := decodeHeld(v, "")
	if err != nil {
		return nil, fmt.Errorf("read salvaged changes kept aside: %w", err)
	}
	return hs, nil
}

// SalvagedWaiting counts the salvaged changes a repaired replica keeps
// aside until a peer sends the changes they depend on (see Repair and
// ApplySalvaged).
func (r *Replica) SalvagedWaiting(ctx context.Context) (int, error) {
	unlock, err := r.lock()
	if err != nil {
		return 0, err
	}
	defer unlock()
	hs, err := r.waitingSalvaged(ctx)
	return len(hs), err
}

// ApplySalvaged applies the salvaged changes a repaired replica keeps
// aside (see Repair) whose dependencies it now holds, as a peer's sync
// brings them back: each is stored in its chart's log, with its
// signature, as a change made here (so that it is sent to every peer by
// the next sync), and the rest stay aside. It returns how many were
// applied, and how many still wait. Call it after each sync of a
// repaired replica until none waits, and sync again when it applied any.
// A change that its chart now holds (a peer had it after all) is
// dropped from those waiting.
func (r *Replica) ApplySalvaged(ctx context.Context) (applied, waiting int, err error) {
	unlock, err := r.lock()
	if err != nil {
		return 0, 0, err
	}
	defer unlock()
	if err := r.Forked(); err != nil {
		return 0, 0, fmt.Errorf("apply salvaged changes: %w", err)
	}
	hs, err := r.waitingSalvaged(ctx)
	if err != nil || len(hs) == 0 {
		return 0, 0, err
	}
	byChart := map[string][]heldChange{}
	var order []string
	for _, h := range hs {
		if _, ok := byChart[h.chart]; !ok {
			order = append(order, h.chart)
		}
		byChart[h.chart] = append(byChart[h.chart], h)
	}
	var b store.Batch
	var rest []heldChange
	var touched []string
	var docs []*crdt.Doc
	defer func() {
		for _, d := range docs {
			_ = d.Close()
		}
	}()
	for _, id := range order {
		l, err := r.loadStored(ctx, id)
		if errors.Is(err, ErrNotFound) {
			rest = append(rest, byChart[id]...)
			continue
		}
		if err != nil {
			return 0, 0, fmt.Errorf("apply salvaged changes: %w", err)
		}
		docs = append(docs, l.doc)
		ready, later := readySalvaged(l.doc, byChart[id])
		rest = append(rest, later...)
		if len(ready) == 0 {
			continue
		}
		chs := make([]crdt.Change, len(ready))
		for i, h := range ready {
			chs[i] = h.change
		}
		if _, err := l.doc.Apply(chs...); err != nil {
			return 0, 0, fmt.Errorf("apply salvaged changes to chart %s: %w", id, err)
		}
		for _, h := range ready {
			b.Changes = append(b.Changes, store.NewChange{Chart: id, Hash: h.change.Hash, Raw: h.change.Raw, Sig: h.sig})
		}
		l.sinceSnapshot += len(ready)
		l.chart, l.users = nil, nil
		if err := l.open(); err != nil {
			return 0, 0, fmt.Errorf("apply salvaged changes to chart %s: %w", id, err)
		}
		if err := r.addChartWrites(&b, l); err != nil {
			return 0, 0, err
		}
		touched = append(touched, id)
	}
	if len(rest) == len(hs) {
		return 0, len(rest), nil
	}
	b.Meta = map[string]string{metaSalvaged: encodeHeld(rest)}
	if _, err := r.st.Write(ctx, b); err != nil {
		return 0, 0, fmt.Errorf("apply salvaged changes: %w", err)
	}
	for _, id := range touched {
		r.cache.remove(id) // read again from the store
	}
	r.log.Info("salvaged changes applied", "applied", len(b.Changes), "waiting", len(rest))
	return len(b.Changes), len(rest), nil
}

// readySalvaged splits a chart's waiting changes into those doc can take
// now (every dependency held, or ready before them), leaving out those
// doc holds already, and those that must wait.
func readySalvaged(doc *crdt.Doc, hs []heldChange) (ready, later []heldChange) {
	ok := map[crdt.Hash]bool{}
	todo := hs
	for changed := true; changed; {
		changed = false
		var next []heldChange
		for _, h := range todo {
			if doc.Has(h.change.Hash) {
				changed = true // a peer had it: nothing to keep
				continue
			}
			good := true
			for _, d := range h.change.Deps {
				good = good && (ok[d] || doc.Has(d))
			}
			if good {
				ok[h.change.Hash] = true
				ready = append(ready, h)
				changed = true
				continue
			}
			next = append(next, h)
		}
		todo = next
	}
	return ready, todo
}
