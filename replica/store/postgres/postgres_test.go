package postgres_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/replica/store"
	"github.com/chartsync/chartsync/replica/store/postgres"
	"github.com/chartsync/chartsync/replica/store/postgres/pgtest"
	"github.com/chartsync/chartsync/replica/store/storetest"
)

// commitMessage is pgx's COMMIT: a simple-protocol Query message.
var commitMessage = append([]byte{'Q', 0, 0, 0, 11}, "commit\x00"...)

// How the network fails at the next COMMIT.
const (
	healthy int32 = iota
	// cutCommit: the connection drops halfway through the COMMIT
	// message; the server never gets it whole and rolls back.
	cutCommit
	// loseAnswer: the COMMIT reaches the server whole, then the
	// connection drops before its answer comes back.
	loseAnswer
	// loseAnswerThenServer: as loseAnswer, and then every connection
	// fails until down is cleared.
	loseAnswerThenServer
)

// network wraps a store's connections to make them fail on demand.
type network struct {
	atCommit atomic.Int32 // one of the modes above, for the next COMMIT
	down     atomic.Bool  // every write fails, as if the server were unreachable
}

var errCut = errors.New("test network: connection cut")

func (n *network) wrap(c net.Conn) net.Conn { return &faultyConn{Conn: c, n: n} }

type faultyConn struct {
	net.Conn
	n *network
}

func (c *faultyConn) Write(b []byte) (int, error) {
	if c.n.down.Load() {
		c.Conn.Close()
		return 0, errCut
	}
	if !bytes.Equal(b, commitMessage) {
		return c.Conn.Write(b)
	}
	switch c.n.atCommit.Swap(healthy) {
	case cutCommit:
		n, _ := c.Conn.Write(b[:len(b)/2])
		c.Conn.Close()
		return n, errCut
	case loseAnswer:
		n, err := c.Conn.Write(b)
		c.Conn.Close()
		return n, err
	case loseAnswerThenServer:
		n, err := c.Conn.Write(b)
		c.Conn.Close()
		c.n.down.Store(true)
		return n, err
	}
	return c.Conn.Write(b)
}

type opener struct {
	conn, schema string
	net          *network
	cfg          postgres.Config
}

func newOpener(t *testing.T) *opener {
	return &opener{conn: pgtest.ConnString(t), schema: pgtest.Schema(t), net: &network{}}
}

func (o *opener) open(t *testing.T) *postgres.Store {
	t.Helper()
	cfg := o.cfg
	cfg.Schema = o.schema
	s, err := postgres.OpenWrapped(context.Background(), o.conn, cfg, o.net.wrap)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Opened {
		o := newOpener(t)
		s := o.open(t)
		return storetest.Opened{
			Store: s,
			Reopen: func(t *testing.T) store.Store {
				require.NoError(t, s.Close())
				return o.open(t)
			},
			// The connection drops as the COMMIT is sent.
			FailWrites: func(t *testing.T) func() {
				o.net.atCommit.Store(cutCommit)
				return func() { o.net.atCommit.Store(healthy) }
			},
			// A process killed now leaves what the server committed:
			// another process sees it.
			Crash: func(t *testing.T) store.Store { return o.open(t) },
		}
	})
}

func change(chart string, n int, from string) store.NewChange {
	raw := fmt.Appendf(nil, "change %d of %s", n, chart)
	return store.NewChange{Chart: chart, Hash: sha256.Sum256(raw), Raw: raw, From: from}
}

// TestLogHasNoGapFilledLater runs writers on three stores (three cloud
// nodes) sharing one database, each with a pool of connections, while
// readers tail the log and one clinic's log as a peer does: read after
// the last position seen, then move past what was read. At the end every
// change up to the last position a reader saw must have been seen by it:
// a change that became visible at a position a reader had already moved
// past would never be sent to that peer.
func TestLogHasNoGapFilledLater(t *testing.T) {
	o := newOpener(t)
	o.cfg.MaxConns = 4
	nodes := []*postgres.Store{o.open(t), o.open(t), o.open(t)}
	ctx := context.Background()
	const writers, batches = 6, 40
	var done atomic.Bool
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			s := nodes[w%len(nodes)]
			for i := range batches {
				chart := fmt.Sprintf("w%d-%d", w, i%3)
				b := store.Batch{Changes: []store.NewChange{change(chart, 2*i, ""), change(chart, 2*i+1, "")}}
				if i%3 == 0 {
					b.Charts = []store.Chart{{ID: chart, Scope: []string{"north"}}}
				}
				_, err := s.Write(ctx, b)
				if !assert.NoError(t, err) {
					return
				}
			}
		})
	}
	type tail struct {
		seen   map[uint64]bool
		cursor uint64
	}
	read := func(s *postgres.Store, clinic string, tl *tail) error {
		got, err := s.LogFor(ctx, store.LogQuery{After: tl.cursor, Clinic: clinic, Limit: 50})
		if err != nil {
			return err
		}
		for _, c := range got {
			tl.seen[c.Seq] = true
			tl.cursor = c.Seq
		}
		return nil
	}
	tails := map[string]*tail{"": {seen: map[uint64]bool{}}, "north": {seen: map[uint64]bool{}}}
	var rg sync.WaitGroup
	for clinic, tl := range tails {
		rg.Go(func() {
			s := nodes[len(clinic)%len(nodes)]
			for i := 0; i < 1_000_000 && !done.Load(); i++ {
				if !assert.NoError(t, read(s, clinic, tl)) {
					return
				}
			}
		})
	}
	wg.Wait()
	done.Store(true)
	rg.Wait()

	all, err := nodes[0].Log(ctx, 0, 0)
	require.NoError(t, err)
	require.Len(t, all, writers*batches*2)
	for i, c := range all {
		require.Equal(t, uint64(i+1), c.Seq, "the log has no gaps")
	}
	for clinic, tl := range tails {
		require.NotZero(t, tl.cursor, "the reader of %q saw changes while the writers ran", clinic)
		want, err := nodes[1].LogFor(ctx, store.LogQuery{Clinic: clinic})
		require.NoError(t, err)
		var missed []uint64
		for _, c := range want {
			if c.Seq <= tl.cursor && !tl.seen[c.Seq] {
				missed = append(missed, c.Seq)
			}
		}
		assert.Empty(t, missed, "positions of %q's log that became visible after its reader had read past them", clinic)
	}
}

// TestLostCommitAnswerIsSettled loses the answer to a COMMIT the server
// received: the store asks the server what became of the transaction and
// reports the write as done, since it is.
func TestLostCommitAnswerIsSettled(t *testing.T) {
	o := newOpener(t)
	s := o.open(t)
	ctx := context.Background()
	o.net.atCommit.Store(loseAnswer)
	head, err := s.Write(ctx, store.Batch{Changes: []store.NewChange{change("a", 1, "")}, Meta: map[string]string{"k": "v"}})
	require.NoError(t, err, "a COMMIT the server took is a successful write, whether or not its answer arrived")
	assert.Equal(t, uint64(1), head)
	assert.Equal(t, healthy, o.net.atCommit.Load(), "the COMMIT went through the failing connection")
	v, err := s.Meta(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, "v", v)
	head, err = s.Write(ctx, store.Batch{Changes: []store.NewChange{change("a", 2, "")}})
	require.NoError(t, err, "the store writes again")
	assert.Equal(t, uint64(2), head)
}

// TestCommitOutcomeUnknownWhileServerUnreachable loses the answer to a
// COMMIT and then the server: the write's outcome is unknown, and a read
// once the server is back shows that it was stored.
func TestCommitOutcomeUnknownWhileServerUnreachable(t *testing.T) {
	o := newOpener(t)
	o.cfg.OutcomeTimeout = 200 * time.Millisecond
	s := o.open(t)
	ctx := context.Background()
	o.net.atCommit.Store(loseAnswerThenServer)
	_, err := s.Write(ctx, store.Batch{Changes: []store.NewChange{change("a", 1, "")}})
	require.ErrorIs(t, err, store.ErrOutcomeUnknown, "no one could say whether the COMMIT took")
	require.True(t, o.net.down.Load(), "the server was unreachable after the COMMIT")
	o.net.down.Store(false)
	h := change("a", 1, "").Hash
	known, err := s.Known(ctx, []crdt.Hash{h})
	require.NoError(t, err, "the store reads again once the server is reachable")
	assert.True(t, known[h], "the server had the whole COMMIT: a re-read shows the write stored")
}

// TestOpenConcurrently opens one new schema from several processes' worth
// of stores at once: each migration is applied once, and every store
// works.
func TestOpenConcurrently(t *testing.T) {
	conn, schema := pgtest.ConnString(t), pgtest.Schema(t)
	ctx := context.Background()
	const nodes = 6
	stores := make([]*postgres.Store, nodes)
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Go(func() {
			s, err := postgres.Open(ctx, conn, postgres.Config{Schema: schema})
			if assert.NoError(t, err, "node %d opens while the others do", i) {
				t.Cleanup(func() { _ = s.Close() })
				stores[i] = s
			}
		})
	}
	wg.Wait()
	for i, s := range stores {
		require.NotNil(t, s)
		require.NoError(t, s.Ready(ctx), "node %d is ready", i)
		_, err := s.Write(ctx, store.Batch{Changes: []store.NewChange{change("a", i, "")}})
		require.NoError(t, err)
	}
	head, err := stores[0].Head(ctx)
	require.NoError(t, err)
	assert.Equal(t, uint64(nodes), head)
	versions := queryInts(t, conn, schema, "SELECT version FROM schema_migrations ORDER BY version")
	want := make([]int64, postgres.SchemaVersion)
	for i := range want {
		want[i] = int64(i + 1)
	}
	assert.Equal(t, want, versions, "each migration is applied once")
}

// TestOpenRefusesNewerSchema opens a database migrated by a later version.
func TestOpenRefusesNewerSchema(t *testing.T) {
	conn, schema := pgtest.ConnString(t), pgtest.Schema(t)
	ctx := context.Background()
	s, err := postgres.Open(ctx, conn, postgres.Config{Schema: schema})
	require.NoError(t, err)
	_, err = s.Write(ctx, store.Batch{Changes: []store.NewChange{change("a", 1, "")}})
	require.NoError(t, err)
	require.NoError(t, s.Close())
	queryInts(t, conn, schema, fmt.Sprintf("INSERT INTO schema_migrations(version) VALUES (%d) RETURNING version", postgres.SchemaVersion+1))

	_, err = postgres.Open(ctx, conn, postgres.Config{Schema: schema})
	require.ErrorIs(t, err, postgres.ErrSchemaTooNew)
	assert.Equal(t, []int64{1}, queryInts(t, conn, schema, "SELECT seq FROM changes"), "the newer database is left as it was")
}

// TestNotReadyWithoutMigrations: Ready says when the schema lost a
// migration after Open.
func TestNotReadyWithoutMigrations(t *testing.T) {
	o := newOpener(t)
	s := o.open(t)
	ctx := context.Background()
	require.NoError(t, s.Ready(ctx))
	queryInts(t, o.conn, o.schema, fmt.Sprintf("DELETE FROM schema_migrations WHERE version = %d RETURNING version", postgres.SchemaVersion))
	require.ErrorIs(t, s.Ready(ctx), postgres.ErrNotMigrated)
	require.NoError(t, s.Close())
	require.ErrorIs(t, s.Ready(ctx), store.ErrClosed)
}

// TestUnreachableServer: Open says it cannot connect, with a clear error
// that does not repeat the password.
func TestUnreachableServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close()) // nothing listens there now
	ctx := context.Background()
	_, err = postgres.Open(ctx, "postgres://u:sekrit@"+addr+"/db?connect_timeout=5", postgres.Config{})
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "sekrit")
	_, err = postgres.Open(ctx, "postgres://u:sekrit@%zz", postgres.Config{})
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "sekrit", "a connection string that does not parse is not repeated")
}

// TestPeerPositionsRoundTrip: positions beyond what bigint holds read back
// as they were written.
func TestPeerPositionsRoundTrip(t *testing.T) {
	s := newOpener(t).open(t)
	ctx := context.Background()
	p := store.Peer{ID: "p", Acked: 1<<64 - 1, Received: 1 << 63}
	_, err := s.Write(ctx, store.Batch{Peers: []store.Peer{p}})
	require.NoError(t, err)
	got, err := s.Peer(ctx, "p")
	require.NoError(t, err)
	assert.Equal(t, p, got)
}

func queryInts(t *testing.T, conn, schema, sql string) []int64 {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, conn)
	require.NoError(t, err)
	defer c.Close(ctx)
	_, err = c.Exec(ctx, "SET search_path TO "+pgx.Identifier{schema}.Sanitize())
	require.NoError(t, err)
	rows, err := c.Query(ctx, sql)
	require.NoError(t, err)
	out, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	require.NoError(t, err)
	return out
}

// TestConcurrentWritesOfTheSameRowsSucceed has writers on two stores
// record the same peers and meta keys, each batch listing them in its own
// order, as syncs that finish at once do: no write fails (two
// transactions that lock the same rows in opposite orders deadlock, and
// PostgreSQL aborts one of them).
func TestConcurrentWritesOfTheSameRowsSucceed(t *testing.T) {
	o := newOpener(t)
	nodes := []*postgres.Store{o.open(t), o.open(t)}
	ctx := context.Background()
	const writers, each, rows = 4, 25, 6
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				b := store.Batch{Meta: map[string]string{}}
				for r := range rows {
					k := (r + w + i) % rows
					if (w+i)%2 == 1 {
						k = rows - 1 - k
					}
					b.Peers = append(b.Peers, store.Peer{ID: fmt.Sprint("p", k), Acked: uint64(i)})
					b.Meta[fmt.Sprint("k", k)] = fmt.Sprint(w)
					b.Snapshots = append(b.Snapshots, store.NewSnapshot{Chart: fmt.Sprint("c", k), Data: []byte("s")})
				}
				_, err := nodes[w%2].Write(ctx, b)
				if !assert.NoError(t, err, "writer %d, batch %d", w, i) {
					return
				}
			}
		})
	}
	wg.Wait()
	peers, err := nodes[0].Peers(ctx)
	require.NoError(t, err)
	assert.Len(t, peers, rows)
}

// TestMigrationIndexesChartsBySearchKey opens a database at schema
// version 1, from before charts were indexed by search key: migration 2
// indexes each patient's chart under its entry's names, village and
// national ID, and a later write replaces them with the chart's own keys.
func TestMigrationIndexesChartsBySearchKey(t *testing.T) {
	conn, schema := pgtest.ConnString(t), pgtest.Schema(t)
	ctx := context.Background()
	s, err := postgres.Open(ctx, conn, postgres.Config{Schema: schema})
	require.NoError(t, err)
	require.NoError(t, s.Close())
	queryInts(t, conn, schema, `WITH old AS (DELETE FROM schema_migrations WHERE version > 1 RETURNING version) SELECT count(*) FROM old`)
	queryInts(t, conn, schema, `WITH a AS (INSERT INTO charts(id, heads, given, family, village, national_id) VALUES
			('a', '', 'Wanjiru', 'Mwangi', 'Nyeri', ''), ('b', '', 'Akosua', 'Mensah', 'Asafo', 'GHA-7731') RETURNING 1),
		r AS (INSERT INTO charts(id, kind, heads, given) VALUES ('r', 'users', '', 'Wanjiru') RETURNING 1)
		SELECT (SELECT count(*) FROM a) + (SELECT count(*) FROM r)`)
	c, err := pgx.Connect(ctx, conn)
	require.NoError(t, err)
	_, err = c.Exec(ctx, "SET search_path TO "+pgx.Identifier{schema}.Sanitize()+"; DROP TABLE chart_keys; ALTER TABLE charts DROP COLUMN keys")
	require.NoError(t, err)
	require.NoError(t, c.Close(ctx))

	s, err = postgres.Open(ctx, conn, postgres.Config{Schema: schema})
	require.NoError(t, err, "a database at version 1 is migrated")
	defer s.Close()
	find := func(keys ...string) []string {
		t.Helper()
		var terms [][]store.Lookup
		for _, k := range keys {
			terms = append(terms, []store.Lookup{{Key: k}})
		}
		cs, err := s.Search(ctx, store.Search{Terms: terms})
		require.NoError(t, err)
		var out []string
		for _, c := range cs {
			out = append(out, c.ID)
		}
		return out
	}
	assert.Equal(t, []string{"a"}, find("n:wanjiru", "v:nyeri"), "a chart is found by its names and village")
	assert.Equal(t, []string{"b"}, find("i:gha7731"), "and by its national ID")
	a, err := s.Chart(ctx, "a")
	require.NoError(t, err)
	assert.Contains(t, a.Keys, "n:mwangi", "an entry reads back with the keys it was indexed under")

	_, err = s.Write(ctx, store.Batch{Charts: []store.Chart{{ID: "a", GivenName: "Wanjiru", FamilyName: "Kamau", Keys: []string{"n:kamau", "n:wanjiru", "t:712345678"}}}})
	require.NoError(t, err)
	assert.Equal(t, []string{"a"}, find("t:712345678"), "a chart written later is found by its own keys")
	assert.Empty(t, find("n:mwangi"), "and no longer by those of the migration")
	assert.Equal(t, []string{"a"}, find("n:wanjiru"), "the roster of the same name is never found")
}

// Every process on one schema sees one place; the same data in another
// schema (a dump restored there) is somewhere else.
func TestPlaceTellsARestoredCopy(t *testing.T) {
	ctx := context.Background()
	conn, schema, other := pgtest.ConnString(t), pgtest.Schema(t), pgtest.Schema(t)
	places := map[string]string{}
	for i, s := range []string{schema, schema, other} {
		st, err := postgres.Open(ctx, conn, postgres.Config{Schema: s})
		require.NoError(t, err)
		p, err := st.Place(ctx)
		require.NoError(t, err)
		require.NoError(t, st.Close())
		require.NotEmpty(t, p)
		if prev, ok := places[s]; ok {
			assert.Equal(t, prev, p, "open %d of schema %s", i, s)
		}
		places[s] = p
	}
	assert.NotEqual(t, places[schema], places[other])
}
