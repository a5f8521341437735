package sqlite_test

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/replica/store"
	"github.com/chartsync/chartsync/replica/store/sqlite"
	"github.com/chartsync/chartsync/replica/store/sqlite/faultvfs"
	"github.com/chartsync/chartsync/replica/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Opened {
		path := filepath.Join(t.TempDir(), "charts.db")
		s, err := sqlite.Open(context.Background(), path)
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Close() })
		return storetest.Opened{Store: s, Reopen: func(t *testing.T) store.Store {
			require.NoError(t, s.Close())
			s2, err := sqlite.Open(context.Background(), path)
			require.NoError(t, err)
			t.Cleanup(func() { _ = s2.Close() })
			require.NoError(t, s2.IntegrityCheck(context.Background()))
			return s2
		}, FailWrites: func(t *testing.T) func() {
			// The commit's WAL fsync fails.
			faultvfs.Arm(filepath.Dir(path), faultvfs.FailSync(faultvfs.WAL, 0, 1))
			return faultvfs.Disarm
		}, Crash: func(t *testing.T) store.Store {
			c := crashView(t, path, t.TempDir())
			t.Cleanup(func() { _ = c.Close() })
			return c
		}}
	})
}

func TestOpenRefusesURIPath(t *testing.T) {
	_, err := sqlite.Open(context.Background(), "x.db?mode=memory")
	require.Error(t, err)
}

// TestOpenAddsLaterColumns opens a database made before changes carried
// signatures and documents had kinds: its changes read back unsigned, new
// ones keep their signatures, and its charts are patients' charts.
func TestOpenAddsLaterColumns(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "old.db")
	db, err := sql.Open("sqlite3", "file:"+path)
	require.NoError(t, err)
	_, err = db.Exec(`CREATE TABLE changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, chart TEXT NOT NULL,
		hash BLOB NOT NULL UNIQUE, raw BLOB NOT NULL, src TEXT NOT NULL DEFAULT '')`)
	require.NoError(t, err)
	_, err = db.Exec(`CREATE TABLE charts (id TEXT PRIMARY KEY, heads BLOB NOT NULL, given TEXT NOT NULL DEFAULT '',
		family TEXT NOT NULL DEFAULT '', village TEXT NOT NULL DEFAULT '', national_id TEXT NOT NULL DEFAULT '',
		home_clinic TEXT NOT NULL DEFAULT '', scope TEXT NOT NULL DEFAULT '[]', updated INTEGER NOT NULL DEFAULT 0)`)
	require.NoError(t, err)
	_, err = db.Exec("INSERT INTO charts(id, heads, given) VALUES('a', x'', 'Amina')")
	require.NoError(t, err)
	old := sha256.Sum256([]byte("old"))
	_, err = db.Exec("INSERT INTO changes(chart, hash, raw) VALUES('a', ?, 'old')", old[:])
	require.NoError(t, err)
	require.NoError(t, db.Close())

	s, err := sqlite.Open(ctx, path)
	require.NoError(t, err, "an older database opens")
	defer s.Close()
	sig := []byte("sixty-four bytes of signature, more or less, for the test's sake")
	_, err = s.Write(ctx, store.Batch{Changes: []store.NewChange{{Chart: "a", Hash: sha256.Sum256([]byte("new")), Raw: []byte("new"), Sig: sig}}})
	require.NoError(t, err)
	all, err := s.Log(ctx, 0, 0)
	require.NoError(t, err)
	require.Len(t, all, 2)
	require.Nil(t, all[0].Sig, "a change stored before signatures reads back unsigned")
	require.Equal(t, sig, all[1].Sig)
	charts, err := s.Charts(ctx, store.Query{})
	require.NoError(t, err)
	require.Len(t, charts, 1, "a chart indexed before documents had kinds is a patient's chart")
	require.Equal(t, "Amina", charts[0].GivenName)
	require.NoError(t, s.IntegrityCheck(ctx))
}

// schemaBeforeClinicLog is the schema as it was before the log was
// indexed by clinic.
const schemaBeforeClinicLog = `
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

// writeStoreBeforeClinicLog writes, at path, a database as the store wrote
// it before the log was indexed by clinic: charts a (north), b (north and
// south) and c (no clinic) indexed, and d not yet.
func writeStoreBeforeClinicLog(t *testing.T, path string) {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=WAL")
	require.NoError(t, err)
	defer db.Close()
	_, err = db.Exec(schemaBeforeClinicLog)
	require.NoError(t, err)
	for _, c := range []struct{ chart, raw, src string }{
		{"a", "a1", ""}, {"b", "b1", "p1"}, {"d", "d1", ""}, {"a", "a2", "p1"}, {"c", "c1", ""}, {"b", "b2", ""},
	} {
		h := sha256.Sum256([]byte(c.raw))
		_, err = db.Exec("INSERT INTO changes(chart, hash, raw, src) VALUES(?, ?, ?, ?)", c.chart, h[:], c.raw, c.src)
		require.NoError(t, err)
	}
	for id, scope := range map[string]string{"a": `["north"]`, "b": `["north","south"]`, "c": `[]`} {
		_, err = db.Exec("INSERT INTO charts(id, heads, scope) VALUES(?, x'', ?)", id, scope)
		require.NoError(t, err)
	}
	_, err = db.Exec("INSERT INTO grants(clinic, seq, chart) VALUES('north', 1, 'a'), ('north', 2, 'b'), ('south', 2, 'b')")
	require.NoError(t, err)
}

// clinicLog returns the raw changes of a clinic's log, less those from
// notFrom.
func clinicLog(t testing.TB, s store.Store, clinic, notFrom string) []string {
	t.Helper()
	chs, err := s.LogFor(context.Background(), store.LogQuery{Clinic: clinic, NotFrom: notFrom})
	require.NoError(t, err)
	var out []string
	for _, c := range chs {
		out = append(out, string(c.Raw))
	}
	return out
}

// TestOpenIndexesTheLogByClinic opens a database written before the log
// was indexed by clinic: the index is built from the log and the charts'
// scopes, and kept from then on.
func TestOpenIndexesTheLogByClinic(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "old.db")
	writeStoreBeforeClinicLog(t, path)

	s, err := sqlite.Open(ctx, path)
	require.NoError(t, err, "a database made before the index opens")
	assert.Equal(t, []string{"a1", "b1", "a2", "b2"}, clinicLog(t, s, "north", ""), "the clinic's log holds the changes of the charts in its scope")
	assert.Equal(t, []string{"b1", "b2"}, clinicLog(t, s, "south", ""))
	assert.Equal(t, []string{"a1", "b2"}, clinicLog(t, s, "north", "p1"))
	assert.Empty(t, clinicLog(t, s, "east", ""))
	require.NoError(t, s.IntegrityCheck(ctx))

	// Later writes keep the index: d is indexed, a is referred to south.
	_, err = s.Write(ctx, store.Batch{
		Changes: []store.NewChange{{Chart: "a", Hash: sha256.Sum256([]byte("a3")), Raw: []byte("a3")}},
		Charts:  []store.Chart{{ID: "a", Scope: []string{"north", "south"}}, {ID: "d", Scope: []string{"east"}}},
	})
	require.NoError(t, err)
	require.NoError(t, s.Close())
	s, err = sqlite.Open(ctx, path)
	require.NoError(t, err)
	defer s.Close()
	assert.Equal(t, []string{"a1", "b1", "a2", "b2", "a3"}, clinicLog(t, s, "north", ""))
	assert.Equal(t, []string{"a1", "b1", "a2", "b2", "a3"}, clinicLog(t, s, "south", ""), "a referral brings the chart's earlier changes into the clinic's log")
	assert.Equal(t, []string{"d1"}, clinicLog(t, s, "east", ""), "a chart indexed after its changes brings them")
	require.NoError(t, s.IntegrityCheck(ctx))
}

// writeStoreBeforeSearch writes, at path, a database as the store wrote it
// before charts were indexed by search key: two patients' charts and a
// user roster.
func writeStoreBeforeSearch(t *testing.T, path string) {
	t.Helper()
	ctx := context.Background()
	s, err := sqlite.Open(ctx, path)
	require.NoError(t, err)
	_, err = s.Write(ctx, store.Batch{Changes: []store.NewChange{{Chart: "a", Hash: sha256.Sum256([]byte("a1")), Raw: []byte("a1")}}})
	require.NoError(t, err)
	require.NoError(t, s.Close())
	db, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=WAL")
	require.NoError(t, err)
	defer db.Close()
	_, err = db.Exec(`DROP TABLE search_keys; DROP TABLE search_charts;
		INSERT INTO charts(id, heads, given, family, village, national_id, scope) VALUES
			('a', x'', 'Wanjiru', 'Mwangi', 'Nyeri', '', '["north"]'),
			('b', x'', 'Akosua', 'Mensah', 'Asafo', 'GHA-7731', '["south"]');
		INSERT INTO charts(id, heads, given, kind) VALUES ('r', x'', 'Wanjiru', 'users')`)
	require.NoError(t, err)
}

func searchIDs(t *testing.T, s store.Store, keys ...string) []string {
	t.Helper()
	var terms [][]store.Lookup
	for _, k := range keys {
		terms = append(terms, []store.Lookup{{Key: k}})
	}
	cs, err := s.Search(context.Background(), store.Search{Terms: terms})
	require.NoError(t, err)
	var out []string
	for _, c := range cs {
		out = append(out, c.ID)
	}
	return out
}

// TestOpenIndexesTheChartsBySearchKey opens a database written before
// charts were indexed by search key: the index is built from the charts'
// entries (names, village, national ID) as it opens, and a chart written
// later gets its own keys.
func TestOpenIndexesTheChartsBySearchKey(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "old.db")
	writeStoreBeforeSearch(t, path)

	s, err := sqlite.Open(ctx, path)
	require.NoError(t, err, "a database made before the index opens")
	assert.Equal(t, []string{"a"}, searchIDs(t, s, "n:wanjiru", "v:nyeri"), "a chart is found by its names and village")
	assert.Equal(t, []string{"b"}, searchIDs(t, s, "i:gha7731"), "and by its national ID")
	assert.Empty(t, searchIDs(t, s, "n:mwangi", "n:akosua"))
	a, err := s.Chart(ctx, "a")
	require.NoError(t, err)
	assert.Contains(t, a.Keys, "n:mwangi", "an entry reads back with the keys it was indexed under")
	require.NoError(t, s.IntegrityCheck(ctx))

	_, err = s.Write(ctx, store.Batch{Charts: []store.Chart{{ID: "a", GivenName: "Wanjiru", FamilyName: "Kamau", Keys: []string{"n:kamau", "n:wanjiru", "t:712345678"}}}})
	require.NoError(t, err)
	require.NoError(t, s.Close())
	s, err = sqlite.Open(ctx, path)
	require.NoError(t, err)
	defer s.Close()
	assert.Equal(t, []string{"a"}, searchIDs(t, s, "t:712345678"), "a chart written later is found by its own keys")
	assert.Empty(t, searchIDs(t, s, "n:mwangi"), "and no longer by those of the migration")
	assert.Equal(t, []string{"a"}, searchIDs(t, s, "n:wanjiru"), "the roster of the same name is never found")
	require.NoError(t, s.IntegrityCheck(ctx))
}
