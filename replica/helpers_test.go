package replica_test

import (
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/store"
	"github.com/chartsync/chartsync/replica/store/sqlite"
)

// Fixtures shared by the replica tests.

// T is what most helpers need of a test; *testing.T and *rapid.T both
// have it.
type T interface {
	Helper()
	Errorf(format string, args ...any)
	FailNow()
}

var (
	nurse  = record.Author{UserID: "u-amina", Name: "Amina", Role: record.RoleNurse, Device: "tablet-1"}
	doctor = record.Author{UserID: "u-baraka", Name: "Dr Baraka", Role: record.RoleClinician, Device: "laptop-2"}
)

// frozen is a clock that never moves, so that re-running a write stores
// exactly the same bytes (LastSync, Updated, recorded times).
var frozenAt = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

func frozen() time.Time { return frozenAt }

// keepOpen lets a test "restart" a replica over the same in-memory store:
// closing the replica does not close the store.
type keepOpen struct{ *store.Mem }

func (keepOpen) Close() error { return nil }

// newMem returns a replica over a fresh in-memory store, and the store.
func newMem(t testing.TB, cfg replica.Config) (*replica.Replica, *store.Mem) {
	t.Helper()
	st := store.NewMem()
	r, err := replica.New(context.Background(), keepOpen{st}, cfg)
	require.NoError(t, err, "new replica over an in-memory store")
	t.Cleanup(func() { _ = r.Close() })
	return r, st
}

// reopenMem closes r and opens a new replica over the same in-memory store,
// as a restart would.
func reopenMem(t testing.TB, r *replica.Replica, st *store.Mem, cfg replica.Config) *replica.Replica {
	t.Helper()
	require.NoError(t, r.Close())
	r2, err := replica.New(context.Background(), keepOpen{st}, cfg)
	require.NoError(t, err, "reopen replica over the same in-memory store")
	t.Cleanup(func() { _ = r2.Close() })
	return r2
}

// openSQLite opens a replica on the SQLite database at path, returning the
// store too so the test can look inside it.
func openSQLite(t testing.TB, path string, cfg replica.Config) (*replica.Replica, *sqlite.Store) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), path)
	require.NoError(t, err, "open SQLite store %s", path)
	r, err := replica.New(context.Background(), st, cfg)
	require.NoError(t, err, "new replica over SQLite store %s", path)
	t.Cleanup(func() { _ = r.Close() })
	return r, st
}

func tempDB(t testing.TB, name string) string {
	t.Helper()
	return filepath.Join(t.TempDir(), name+".db")
}

// register creates a chart with a recognisable name.
func register(t T, r *replica.Replica, given, family, village string) string {
	t.Helper()
	id, err := r.Register(context.Background(), nurse, record.Register{
		GivenName: given, FamilyName: family, Sex: "female", EstimatedBirthYear: 1988,
		Village: village, HomeClinic: "kamuga-dispensary",
	})
	require.NoError(t, err, "register %s %s", given, family)
	return id
}

// edit applies op and returns the change it made.
func edit(t T, r *replica.Replica, chart string, op record.Op) record.Result {
	t.Helper()
	res, err := r.Edit(context.Background(), chart, doctor, op)
	require.NoError(t, err, "edit chart %s with %T", chart, op)
	return res
}

func view(t T, r *replica.Replica, chart string) record.View {
	t.Helper()
	v, err := r.Chart(context.Background(), chart)
	require.NoError(t, err, "view chart %s", chart)
	return v
}

// allergy returns a valid edit that differs with n.
func allergy(n int) record.Op {
	return record.AddAllergy{Substance: fmt.Sprintf("substance-%d", n), Reaction: "rash", Severity: "moderate"}
}

func prescribe(drug string, dose float64) record.Prescribe {
	return record.Prescribe{Drug: drug, Dose: dose, DoseUnit: "mg", Route: "oral", Frequency: "TDS", DurationDays: 5}
}

// chartIDs lists the IDs of every chart a replica indexes, sorted.
func chartIDs(t T, r *replica.Replica) []string {
	t.Helper()
	cs, err := r.Find(context.Background(), "", 0)
	require.NoError(t, err, "list charts")
	ids := make([]string, len(cs))
	for i, c := range cs {
		ids[i] = c.ID
	}
	slices.Sort(ids)
	return ids
}

// requireSameCharts checks that replicas hold the same charts with equal
// heads and byte-identical views.
func requireSameCharts(t T, rs ...*replica.Replica) {
	t.Helper()
	ctx := context.Background()
	want := chartIDs(t, rs[0])
	for i, r := range rs[1:] {
		require.Equal(t, want, chartIDs(t, r), "replica %d holds different charts from replica 0", i+1)
	}
	for _, id := range want {
		v0 := view(t, rs[0], id)
		j0, err := json.Marshal(v0)
		require.NoError(t, err)
		h0, err := rs[0].Heads(ctx, id)
		require.NoError(t, err)
		require.True(t, h0.Equal(v0.Heads), "replica 0 indexes heads %s for chart %s but shows %s", h0, id, v0.Heads)
		for i, r := range rs[1:] {
			v := view(t, r, id)
			require.True(t, v0.Heads.Equal(v.Heads), "chart %s: replica %d has heads %s, replica 0 %s", id, i+1, v.Heads, v0.Heads)
			h, err := r.Heads(ctx, id)
			require.NoError(t, err)
			require.True(t, h.Equal(v.Heads), "replica %d indexes heads %s for chart %s but shows %s", i+1, h, id, v.Heads)
			j, err := json.Marshal(v)
			require.NoError(t, err)
			require.Equal(t, string(j0), string(j), "chart %s looks different on replica %d", id, i+1)
		}
	}
}

// requireHasChanges checks that every hash is stored in st.
func requireHasChanges(t T, st store.ChangeLog, hashes []crdt.Hash, what string) {
	t.Helper()
	known, err := st.Known(context.Background(), hashes)
	require.NoError(t, err)
	for _, h := range hashes {
		require.True(t, known[h], "%s: acknowledged change %s is missing", what, h)
	}
}

// storeDump is everything a store holds, read through the Store API.
type storeDump struct {
	Head      uint64
	Log       []store.Change
	Charts    []store.Chart
	Snapshots []store.Snapshot
	Peers     []store.Peer
	ReplicaID string
}

func dumpStore(t T, st store.Store) storeDump {
	t.Helper()
	ctx := context.Background()
	var d storeDump
	var err error
	d.Head, err = st.Head(ctx)
	require.NoError(t, err)
	d.Log, err = st.Log(ctx, 0, 0)
	require.NoError(t, err)
	d.Charts, err = st.Charts(ctx, store.Query{})
	require.NoError(t, err)
	d.Peers, err = st.Peers(ctx)
	require.NoError(t, err)
	d.ReplicaID, err = st.Meta(ctx, "replica_id")
	require.NoError(t, err)
	ids := map[string]bool{}
	for _, c := range d.Charts {
		ids[c.ID] = true
	}
	for _, c := range d.Log {
		ids[c.Chart] = true
	}
	for _, id := range slices.Sorted(maps.Keys(ids)) {
		s, err := st.Snapshot(ctx, id)
		if err == nil {
			d.Snapshots = append(d.Snapshots, s)
		} else {
			require.ErrorIs(t, err, store.ErrNotFound)
		}
	}
	return d
}

// sqlDump is the logical content of a SQLite database file, every row of
// every table (sqlite_sequence included), read over a second connection.
func sqlDump(t T, path string) string {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	require.NoError(t, err)
	defer db.Close()
	rows, err := db.Query("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
	require.NoError(t, err)
	var tables []string
	for rows.Next() {
		var n string
		require.NoError(t, rows.Scan(&n))
		tables = append(tables, n)
	}
	require.NoError(t, rows.Err())
	rows.Close()
	var b strings.Builder
	for _, tab := range tables {
		fmt.Fprintf(&b, "table %s\n", tab)
		rows, err := db.Query("SELECT * FROM " + tab + " ORDER BY 1")
		require.NoError(t, err)
		cols, err := rows.Columns()
		require.NoError(t, err)
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			require.NoError(t, rows.Scan(ptrs...))
			for i, v := range vals {
				if bs, ok := v.([]byte); ok {
					v = hex.EncodeToString(bs)
				}
				fmt.Fprintf(&b, " %s=%v", cols[i], v)
			}
			b.WriteByte('\n')
		}
		require.NoError(t, rows.Err())
		rows.Close()
	}
	return b.String()
}
