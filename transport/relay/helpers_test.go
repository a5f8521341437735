package relay

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/internal/wire"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/store"
)

// T is what the helpers need of a test; *testing.T and *rapid.T have it.
type T interface {
	Helper()
	Errorf(format string, args ...any)
	FailNow()
	Fatalf(format string, args ...any)
}

var (
	t0    = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	nurse = record.Author{UserID: "u-amina", Name: "Amina", Role: record.RoleNurse, Device: "tablet-1"}
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// world is an enrolment authority, a clock, and a roster every site shares
// (in the field each device holds its own copy of the same records).
type world struct {
	clock  *fakeClock
	cloud  *device.Authority
	roster *device.Roster
	dir    string
}

// testDir returns a temporary directory, on tmpfs where there is one:
// the tests fsync every file, as the package does, and a disk would make
// that the whole run time.
func testDir(t *testing.T) string {
	t.Helper()
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		dir, err := os.MkdirTemp("/dev/shm", "relay-test-*")
		if err == nil {
			t.Cleanup(func() { os.RemoveAll(dir) })
			return dir
		}
	}
	return t.TempDir()
}

func newWorld(t T, dir string) *world {
	cloud, err := device.NewAuthority()
	require.NoError(t, err)
	c := &fakeClock{now: t0}
	roster, err := device.NewRoster(device.RosterConfig{
		Authorities: []device.TrustedAuthority{{Key: cloud.PublicKey()}},
		Now:         c.Now,
	})
	require.NoError(t, err)
	return &world{clock: c, cloud: cloud, roster: roster, dir: dir}
}

// site is an enrolled replica with its relay endpoint.
type site struct {
	name string
	r    *replica.Replica
	id   *device.Identity
	e    *Endpoint
	st   *store.Mem
}

type keepOpen struct{ *store.Mem }

func (keepOpen) Close() error { return nil }

func (w *world) site(t T, name string, peers ...string) *site {
	t.Helper()
	ctx := context.Background()
	st := store.NewMem()
	r, err := replica.New(ctx, keepOpen{st}, replica.Config{Now: w.clock.Now})
	require.NoError(t, err)
	id, err := device.Generate(r.ID(), "kamuga")
	require.NoError(t, err)
	w.enrol(t, id.Public())
	e, err := OpenEndpoint(filepath.Join(w.dir, name), r, id, w.roster, Config{Peers: peers, Now: w.clock.Now})
	require.NoError(t, err)
	return &site{name: name, r: r, id: id, e: e, st: st}
}

func (w *world) enrol(t T, pub device.Public) {
	t.Helper()
	rec, err := w.cloud.Enrol(pub, w.clock.Now(), 365*24*time.Hour)
	require.NoError(t, err)
	_, err = w.roster.Add(rec)
	require.NoError(t, err)
}

func (w *world) node(t T, name string, cfg NodeConfig) *Node {
	t.Helper()
	if cfg.Now == nil {
		cfg.Now = w.clock.Now
	}
	n, err := OpenNode(filepath.Join(w.dir, name), w.roster, cfg)
	require.NoError(t, err)
	return n
}

func (s *site) close() {
	s.e.Close()
	s.r.Close()
}

func register(t T, r *replica.Replica, given string) string {
	t.Helper()
	id, err := r.Register(context.Background(), nurse, record.Register{
		GivenName: given, FamilyName: "Otieno", Sex: "female", EstimatedBirthYear: 1990, Village: "Kamuga", HomeClinic: "kamuga",
	})
	require.NoError(t, err, "register %s", given)
	return id
}

// snapshot is what a replica holds, as its public API shows it: charts
// with their heads and views, and its peers' positions (without times).
func snapshot(t T, r *replica.Replica) string {
	t.Helper()
	ctx := context.Background()
	cs, err := r.Find(ctx, "", 0)
	require.NoError(t, err)
	type chart struct {
		ID, Heads string
		View      record.View
	}
	var out struct {
		Charts []chart
		Peers  []replica.PeerStatus
	}
	for _, c := range cs {
		v, err := r.Chart(ctx, c.ID)
		require.NoError(t, err)
		out.Charts = append(out.Charts, chart{ID: c.ID, Heads: c.Heads.String(), View: v})
	}
	slices.SortFunc(out.Charts, func(a, b chart) int { return compare(a.ID, b.ID) })
	ps, err := r.Peers(ctx)
	require.NoError(t, err)
	for i := range ps {
		ps[i].LastSync = time.Time{}
	}
	slices.SortFunc(ps, func(a, b replica.PeerStatus) int { return compare(a.ID, b.ID) })
	out.Peers = ps
	j, err := json.Marshal(out)
	require.NoError(t, err)
	return string(j)
}

func compare(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// heads returns every chart's heads, for comparing replicas.
func heads(t T, r *replica.Replica) map[string]string {
	t.Helper()
	ctx := context.Background()
	cs, err := r.Find(ctx, "", 0)
	require.NoError(t, err)
	out := map[string]string{}
	for _, c := range cs {
		out[c.ID] = c.Heads.String()
	}
	return out
}

func appendBytes(dst, b []byte) []byte { return wire.AppendBytes(dst, b) }

func encodeFrame(body []byte) []byte { return wire.Encode(frameKind, Version, body) }
