package replica_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/store"
	"github.com/chartsync/chartsync/replica/store/faultstore"
	"github.com/chartsync/chartsync/replica/store/sqlite"
	"github.com/chartsync/chartsync/replica/store/sqlite/faultvfs"
	"github.com/chartsync/chartsync/transport"
)

// failpointConfig compacts at every second change, so that the edit and
// receive paths store snapshots too.
var failpointConfig = replica.Config{CompactAfter: 2, CacheCharts: 2, Now: frozen}

// failRig is a device replica (a) over a faultstore over SQLite, and a
// healthy peer (b), joined by an in-memory courier.
type failRig struct {
	t       *testing.T
	ctx     context.Context
	dir     string // a's database directory, where faultvfs rules apply
	path    string // a's database
	scratch string // where a crash copy goes
	fs      *faultstore.Store
	a, b    *replica.Replica
	net     *transport.Memory
	lb      *transport.MemoryLink

	// crash, the fault's mode: a crash instead of a failed write.
	crash bool
	// crashed is the crash copy of a's database, once a crashed.
	crashed string
	// acked maps every change a's callers were told is saved to its chart.
	acked map[crdt.Hash]string
	// charts are a's charts by name, as a's callers learnt their IDs.
	charts map[string]string
	// failures lists the calls that returned an error, and the error.
	failures []string
	// bSetup is b's last change in the setup, which a holds.
	bSetup record.Result
	// stepper, if set, runs each call of a instead of step's checks.
	stepper func(what string, call func() error)
	// forged, once sent, is a bundle from b that a must refuse and keep
	// in its quarantine once.
	forged []byte
}

// newFailRig makes the rig in base/name: b registers a chart and a
// registers one, each edits its own, and one sync gives each the other's.
func newFailRig(t *testing.T, base, name string) *failRig {
	t.Helper()
	ctx := context.Background()
	r := &failRig{t: t, ctx: ctx, net: transport.NewMemory(), acked: map[crdt.Hash]string{}, charts: map[string]string{}}
	r.dir = filepath.Join(base, name, "a")
	r.scratch = filepath.Join(base, name, "crash")
	for _, d := range []string{r.dir, r.scratch} {
		require.NoError(t, os.MkdirAll(d, 0o700))
	}
	r.path = filepath.Join(r.dir, "a.db")
	st, err := sqlite.Open(ctx, r.path)
	require.NoError(t, err)
	r.fs = faultstore.New(st)
	r.a, err = replica.New(ctx, r.fs, failpointConfig)
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.a.Close() })
	r.b, err = replica.Open(ctx, filepath.Join(base, name, "b", "b.db"), failpointConfig)
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.b.Close() })
	r.lb = r.net.Link(r.b, r.a.ID())

	r.charts["b-own"] = register(t, r.b, "Wanjiru", "Mwangi", "Kamuga")
	r.bSetup = edit(t, r.b, r.charts["b-own"], allergy(100))
	r.charts["a-own"] = register(t, r.a, "Achieng", "Otieno", "Asembo")
	r.ack(r.charts["a-own"], r.heads(r.charts["a-own"])...)
	r.ack(r.charts["a-own"], edit(t, r.a, r.charts["a-own"], allergy(200)).Change.Hash)
	_, err = replica.SyncPair(ctx, r.a, r.b)
	require.NoError(t, err)
	return r
}

func (r *failRig) heads(chart string) crdt.Heads {
	h, err := r.a.Heads(r.ctx, chart)
	require.NoError(r.t, err)
	return h
}

func (r *failRig) ack(chart string, hs ...crdt.Hash) {
	for _, h := range hs {
		r.acked[h] = chart
	}
}

// arm arms a fault at p: a crash whose copy r.crashed holds, or a failed
// write.
func (r *failRig) arm(p faultstore.Point, crash bool) {
	r.crash = crash
	f := faultstore.Fault{At: p}
	if crash {
		f.Action = faultstore.Crash
		f.OnHit = func(faultstore.Point) {
			cp, err := faultvfs.CrashCopy(r.path, r.scratch)
			require.NoError(r.t, err, "copy what the crash leaves")
			r.crashed = cp
		}
	}
	r.fs.Arm(f)
}

// step runs one call of a. Once a has crashed it runs nothing more (the
// process is gone). A call that fails with anything but an unknown
// outcome must leave a's store exactly as it was.
func (r *failRig) step(what string, call func() error) {
	if r.stepper != nil {
		r.stepper(what, call)
		return
	}
	if r.fs.Crashed() {
		return
	}
	var before storeDump
	if !r.crash {
		before = dumpStore(r.t, r.fs.Inner())
	}
	err := call()
	if err == nil {
		return
	}
	r.failures = append(r.failures, fmt.Sprintf("%s: %v", what, err))
	if r.fs.Crashed() {
		require.ErrorIs(r.t, err, faultstore.ErrCrashed, "%s: the crash is what failed it", what)
		return
	}
	require.ErrorIs(r.t, err, faultstore.ErrInjected, "%s failed, but not with the injected fault", what)
	if !errors.Is(err, store.ErrOutcomeUnknown) {
		assert.Equal(r.t, before, dumpStore(r.t, r.fs.Inner()), "%s failed with %v, yet changed the store", what, err)
	}
}

// registerStep registers a patient on a as the chart named name.
func (r *failRig) registerStep(name string) {
	r.step("register "+name, func() error {
		id, err := r.a.Register(r.ctx, nurse, record.Register{
			GivenName: name, FamilyName: "Odhiambo", Sex: "female", EstimatedBirthYear: 1990,
			Village: "Asembo", HomeClinic: "kamuga-dispensary",
		})
		if err == nil {
			r.charts[name] = id
			h, err := r.a.Heads(r.ctx, id)
			require.NoError(r.t, err)
			r.ack(id, h...)
		}
		return err
	})
}

// editStep edits the chart named name on a, if a's caller knows it.
func (r *failRig) editStep(name string, op record.Op) {
	id, ok := r.charts[name]
	if !ok {
		return
	}
	r.step(fmt.Sprintf("edit %s with %T", name, op), func() error {
		res, err := r.a.Edit(r.ctx, id, doctor, op)
		if err == nil {
			r.ack(id, res.Change.Hash)
		}
		return err
	})
}

// receiveStep delivers to a what b's link posted for it.
func (r *failRig) receiveStep(what string) {
	for _, data := range r.net.InFlight(r.b.ID(), r.a.ID()) {
		r.step(what, func() error {
			got, err := r.a.Receive(r.ctx, data)
			if err == nil {
				for _, c := range got.Changes {
					r.ack(c.Chart, c.Hash)
				}
			}
			return err
		})
	}
	r.net.Drop(r.b.ID(), r.a.ID())
}

// twinOfSetup returns a bundle from b carrying a twin of b's last setup
// change (its sequence number, another time), which a, holding the
// original, refuses and quarantines.
func (r *failRig) twinOfSetup() []byte {
	info, err := crdt.ChangeOps(r.bSetup.Change.Raw)
	require.NoError(r.t, err)
	info.Time = info.Time.Add(time.Second)
	raw, err := crdt.EncodeChange(info)
	require.NoError(r.t, err)
	return encode(r.t, replica.Bundle{From: r.b.ID(), To: r.a.ID(), Changes: []replica.BundleChange{{Chart: r.charts["b-own"], Raw: raw}}})
}

// refuseStep delivers the forged bundle to a, which must refuse it
// whatever became of its quarantine write.
func (r *failRig) refuseStep(what string) {
	if r.fs.Crashed() {
		return
	}
	_, err := r.a.Receive(r.ctx, r.forged)
	require.ErrorIs(r.t, err, replica.ErrMalformedBundle, "%s is refused", what)
	if errors.Is(err, faultstore.ErrInjected) || errors.Is(err, faultstore.ErrCrashed) {
		r.failures = append(r.failures, fmt.Sprintf("%s: %v", what, err))
	}
}

// editPath is the edit path: a registration, edits of it and of charts
// registered here and received, snapshots among them.
func (r *failRig) editPath() {
	r.registerStep("Akinyi")
	r.editStep("Akinyi", allergy(1))
	r.editStep("Akinyi", prescribe("Amoxicillin", 250))
	r.editStep("a-own", record.AddEncounter{Date: "2026-03-01", Complaint: "cough"})
	r.editStep("b-own", allergy(2))
	r.editStep("Akinyi", allergy(3))
	if _, ok := r.charts["Akinyi"]; ok {
		r.step("merge Akinyi into a-own", func() error {
			return r.a.Merge(r.ctx, r.charts["Akinyi"], r.charts["a-own"], doctor, "same patient")
		})
	}
	r.editStep("Akinyi", allergy(4))
}

// receivePath is the receive path: b registers a chart and edits its own
// and a's; a receives b's bundle, sends its own, and receives b's
// acknowledgement.
func (r *failRig) receivePath() {
	t := r.t
	added := register(t, r.b, "Nafula", "Wekesa", "Kamuga")
	edit(t, r.b, added, allergy(300))
	edit(t, r.b, r.charts["b-own"], allergy(301))
	edit(t, r.b, r.charts["b-own"], prescribe("Paracetamol", 500))
	edit(t, r.b, r.charts["a-own"], allergy(302))
	_, err := r.lb.Send(r.ctx)
	require.NoError(t, err)
	r.receiveStep("receive b's changes")
	r.forged = r.twinOfSetup()
	r.refuseStep("receive a forged bundle")
	r.step("send to b", func() error {
		out, err := r.a.MakeBundle(r.ctx, r.b.ID())
		if err == nil {
			r.net.Inject(r.a.ID(), r.b.ID(), out.Data)
		}
		return err
	})
	_, err = r.lb.Sync(r.ctx)
	require.NoError(t, err, "b takes a's bundle")
	r.receiveStep("receive b's acknowledgement")
}

// heldPath is the receive path of a change that arrives before the
// change it depends on: a holds it aside (in its store), then b's bundle
// brings what it waits for and releases it.
func (r *failRig) heldPath() {
	t := r.t
	edit(t, r.b, r.charts["a-own"], allergy(310))
	later := edit(t, r.b, r.charts["a-own"], allergy(311)).Change
	early := encode(t, replica.Bundle{From: r.b.ID(), To: r.a.ID(), Changes: []replica.BundleChange{{Chart: r.charts["a-own"], Raw: later.Raw}}})
	r.step("receive a change ahead of its dependency", func() error {
		got, err := r.a.Receive(r.ctx, early)
		if err == nil {
			require.Equal(t, 1, got.Held, "the change is held aside")
		}
		return err
	})
	_, err := r.lb.Send(r.ctx)
	require.NoError(t, err)
	r.receiveStep("receive the dependency")
}

// check checks replica x, which holds a's data: it holds every change a's
// callers were told is saved, applied to its chart; it edits, registers
// and syncs with b, and the two then hold the same charts.
func (r *failRig) check(x *replica.Replica, where string) {
	t := r.t
	ctx := r.ctx
	applied := map[crdt.Hash]bool{}
	for _, id := range chartIDs(t, x) {
		v, err := x.OwnChart(ctx, id)
		require.NoError(t, err)
		for _, e := range v.History {
			applied[e.Change] = true
		}
		heads, err := x.Heads(ctx, id)
		require.NoError(t, err)
		require.True(t, heads.Equal(v.Heads), "%s: chart %s indexed at %s but at %s when loaded", where, id, heads, v.Heads)
	}
	for h, chart := range r.acked {
		require.True(t, applied[h], "%s: change %s of chart %s was acknowledged but is lost", where, h, chart)
	}
	if r.forged != nil {
		_, err := x.Receive(ctx, r.forged)
		require.ErrorIs(t, err, replica.ErrMalformedBundle, "%s: the forged bundle is refused again", where)
		q, err := x.Quarantined(ctx)
		require.NoError(t, err)
		kept := 0
		for _, b := range q {
			if bytes.Equal(b.Data, r.forged) {
				kept++
			}
		}
		require.Equal(t, 1, kept, "%s: the forged bundle is kept in the quarantine once", where)
	}
	_, err := x.Edit(ctx, r.charts["a-own"], doctor, allergy(900))
	require.NoError(t, err, "%s: a further edit", where)
	_, err = x.Register(ctx, nurse, record.Register{GivenName: "Later", FamilyName: "Patient", Sex: "male", EstimatedBirthYear: 1975, HomeClinic: "kamuga-dispensary"})
	require.NoError(t, err, "%s: a further registration", where)
	_, err = replica.SyncPair(ctx, x, r.b)
	require.NoError(t, err, "%s: a sync with the peer", where)
	requireSameOwnCharts(t, x, r.b)
	require.NoError(t, x.CheckIntegrity(ctx, true), "%s: the database is sound", where)
}

// requireSameOwnCharts checks that two replicas hold the same charts,
// each document (a merged chart's own, not its survivor's) with equal
// heads, as indexed, and a byte-identical view.
func requireSameOwnCharts(t *testing.T, x, y *replica.Replica) {
	t.Helper()
	ctx := context.Background()
	ids := chartIDs(t, x)
	require.Equal(t, ids, chartIDs(t, y), "the replicas hold different charts")
	for _, id := range ids {
		var views [2]string
		for i, r := range []*replica.Replica{x, y} {
			v, err := r.OwnChart(ctx, id)
			require.NoError(t, err)
			h, err := r.Heads(ctx, id)
			require.NoError(t, err)
			require.True(t, h.Equal(v.Heads), "replica %d indexes chart %s at %s but shows %s", i, id, h, v.Heads)
			j, err := json.Marshal(v)
			require.NoError(t, err)
			views[i] = string(j)
		}
		require.Equal(t, views[0], views[1], "chart %s differs between the replicas", id)
	}
}

// finish checks what the fault left: after a crash, the copy taken at the
// crash, reopened as the next process would; after a failed write, the
// replica as it goes on, then reopened.
func (r *failRig) finish() {
	t := r.t
	require.NoError(t, r.a.Close())
	if r.crash {
		require.True(t, r.fs.Crashed(), "the crash happened")
		x, err := replica.Open(r.ctx, r.crashed, failpointConfig)
		require.NoError(t, err, "the replica reopens after the crash")
		defer x.Close()
		r.check(x, "after the crash")
		return
	}
	x, err := replica.Open(r.ctx, r.path, failpointConfig)
	require.NoError(t, err, "the replica reopens after a failed write")
	defer x.Close()
	r.check(x, "reopened after a failed write")
}

// TestEveryFailpointKeepsAcknowledgedChanges runs each path once to
// number its writes (the edit path: a registration, edits, compactions, a
// merge; the receive path: a bundle of changes with a compaction, a forged
// bundle quarantined, an acknowledgement; the held path: a change held
// aside for its dependency, then released), then once per failpoint
// (before and after each write) and per fault (a failed write, a crash):
// every change a caller was told is saved is there afterwards, in the
// running replica and once reopened (after a crash, from the copy the
// crash left), a failed call that did not say its outcome is unknown
// changed nothing, the forged bundle is quarantined once, and the replica
// edits, syncs and converges with its peer.
func TestEveryFailpointKeepsAcknowledgedChanges(t *testing.T) {
	require.NoError(t, faultvfs.Install())
	base := t.TempDir()
	faultvfs.SkipSyncs(base) // crashes here are of the process, not the power
	defer faultvfs.SkipSyncs("")
	paths := []struct {
		name string
		run  func(*failRig)
	}{
		{"edit", (*failRig).editPath},
		{"receive", (*failRig).receivePath},
		{"held", (*failRig).heldPath},
	}
	for _, path := range paths {
		t.Run(path.name, func(t *testing.T) {
			count := newFailRig(t, base, path.name+"-count")
			first := count.fs.Count() + 1
			path.run(count)
			require.Empty(t, count.failures, "with no fault the path fails nowhere")
			writes := count.fs.Writes(first, 0)
			require.NotEmpty(t, writes)
			snapshots := 0
			for _, w := range writes {
				t.Log(w)
				if w.Snapshot() {
					snapshots++
				}
			}
			if path.name == "edit" {
				require.Positive(t, snapshots, "the edit path compacts a chart")
			}
			count.finish()

			runs := 0
			for _, w := range writes {
				for _, when := range []faultstore.When{faultstore.Before, faultstore.After} {
					for _, crash := range []bool{false, true} {
						p := faultstore.Point{Write: w.N, When: when}
						name := fmt.Sprintf("%s/crash=%v", p, crash)
						t.Run(name, func(t *testing.T) {
							r := newFailRig(t, base, fmt.Sprintf("%s-%d", path.name, runs))
							runs++
							require.Equal(t, first-1, r.fs.Count(), "the setup writes as often each time")
							r.arm(p, crash)
							path.run(r)
							require.Equal(t, 1, r.fs.Fired(), "the path reaches %s (%s)", p, w)
							r.fs.Disarm()
							t.Logf("%s: %q", w, r.failures)
							if !crash {
								r.check(r.a, "after a failed write")
							}
							r.finish()
						})
					}
				}
			}
		})
	}
}

// TestReceiveOfUnknownOutcomeKeepsItsCharts: a receive whose write stored
// the bundle but could not say so (ErrOutcomeUnknown), because the store
// failed after its commit or because SQLite's fsync of the commit failed
// and the disk then refused every write until it healed, must not leave
// the replica working from the charts as they were before it: the peer's
// change is in the chart, after more edits compact it too, and the
// replica converges with the peer.
func TestReceiveOfUnknownOutcomeKeepsItsCharts(t *testing.T) {
	require.NoError(t, faultvfs.Install())
	tests := []struct {
		name string
		arm  func(r *failRig)
	}{
		{"the store fails after the commit", func(r *failRig) {
			r.fs.Arm(faultstore.Fault{At: faultstore.Point{Write: r.fs.Count() + 1, When: faultstore.After}})
		}},
		{"the commit's fsync fails, then the disk writes nothing", func(r *failRig) {
			faultvfs.Arm(r.dir, faultvfs.FailSync(faultvfs.WAL, 0, 1), faultvfs.FailWrite(faultvfs.All, 0, -1, false).Then(0))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newFailRig(t, t.TempDir(), "unknown")
			chart := r.charts["a-own"]
			view(t, r.a, chart) // loaded
			fromB := edit(t, r.b, chart, allergy(302)).Change.Hash
			out, err := r.b.MakeBundle(r.ctx, r.a.ID())
			require.NoError(t, err)
			tt.arm(r)
			_, err = r.a.Receive(r.ctx, out.Data)
			r.fs.Disarm()
			faultvfs.Disarm()
			require.ErrorIs(t, err, replica.ErrOutcomeUnknown)
			for i := range 4 {
				edit(t, r.a, chart, allergy(400+i))
			}
			require.NoError(t, r.a.Close())
			x, err := replica.Open(r.ctx, r.path, failpointConfig)
			require.NoError(t, err)
			defer x.Close()
			held := false
			for _, e := range view(t, x, chart).History {
				held = held || e.Change == fromB
			}
			assert.True(t, held, "the peer's change, stored by the receive that could not say so, is in the chart")
			_, err = replica.SyncPair(r.ctx, x, r.b)
			require.NoError(t, err)
			requireSameOwnCharts(t, x, r.b)
		})
	}
}

// TestCrashInsideACompaction tears writes of the edit path that store a
// snapshot: the process dies at each write of the commit to the
// database's files in turn (that write lost, or written but failed, and
// the disk writing nothing more, so what the crash leaves is kept as it
// was), and the copy it leaves reopens holding every change acknowledged
// before, and edits, syncs and converges with the peer.
func TestCrashInsideACompaction(t *testing.T) {
	require.NoError(t, faultvfs.Install())
	base := t.TempDir()
	faultvfs.SkipSyncs(base)
	defer faultvfs.SkipSyncs("")
	count := newFailRig(t, base, "count")
	first := count.fs.Count() + 1
	count.editPath()
	var compactions []faultstore.Write
	for _, w := range count.fs.Writes(first, 0) {
		if w.Snapshot() {
			compactions = append(compactions, w)
		}
	}
	require.NotEmpty(t, compactions, "the edit path compacts")
	// The first compaction of a chart, and the last (a merge's: two
	// charts in one write) are torn; tearing every one costs a minute.
	compactions = []faultstore.Write{compactions[0], compactions[len(compactions)-1]}
	tears := []bool{false, true}
	if testing.Short() {
		tears = []bool{true}
	}
	require.NoError(t, count.a.Close())
	runs := 0
	for _, w := range compactions {
		for _, performed := range tears {
			torn := 0
			for k := 0; ; k++ {
				require.Less(t, k, maxGrowths, "the commit never ends")
				r := newFailRig(t, base, fmt.Sprintf("torn-%d", runs))
				runs++
				r.crash = true
				rules := append([]faultvfs.Rule{faultvfs.FailWrite(faultvfs.All, k, 1, performed)}, faultvfs.Dies(0)...)
				r.fs.Arm(faultstore.Fault{At: faultstore.Point{Write: w.N, When: faultstore.Before}, Action: faultstore.Call,
					OnHit: func(faultstore.Point) { faultvfs.Arm(r.dir, rules...) }})
				stop := false
				r.stepper = func(what string, call func() error) {
					if stop {
						return
					}
					err := call()
					if r.fs.Fired() > 0 {
						faultvfs.Disarm() // the compaction's write is over
					}
					if err != nil {
						stop = true // the process died in this call
						cp, cerr := faultvfs.CrashCopy(r.path, r.scratch)
						require.NoError(t, cerr)
						r.crashed = cp
						r.failures = append(r.failures, fmt.Sprintf("%s: %v", what, err))
					}
				}
				r.editPath()
				fired := faultvfs.Fired()
				faultvfs.Disarm()
				require.Equal(t, 1, r.fs.Fired(), "the path reaches %s", w)
				if !stop {
					// The commit made fewer than k writes: every one was torn.
					require.Zero(t, fired)
					require.Positive(t, k, "the first write of a compaction can be torn")
					require.NoError(t, r.a.Close())
					break
				}
				torn++
				require.Positive(t, fired, "the path failed where the disk did (%q)", r.failures)
				require.NoError(t, r.a.Close())
				x, err := replica.Open(r.ctx, r.crashed, failpointConfig)
				require.NoError(t, err, "the replica reopens after a crash inside %s", w)
				r.check(x, fmt.Sprintf("after a crash at file write %d of %s (performed %v)", k, w, performed))
				require.NoError(t, x.Close())
			}
			t.Logf("%s: torn at each of its %d file writes (performed %v)", w, torn, performed)
		}
	}
}

// TestFirstOpenFailpoints fails, or crashes, a new replica's first open at
// each failpoint of its writes (its replica ID, its log's ID): an open
// that failed can be made again on the same store, a crash's copy opens,
// and either way the replica keeps the ID it stored, registers a patient
// and converges with a peer.
func TestFirstOpenFailpoints(t *testing.T) {
	require.NoError(t, faultvfs.Install())
	base := t.TempDir()
	faultvfs.SkipSyncs(base)
	defer faultvfs.SkipSyncs("")
	ctx := context.Background()
	open := func(t *testing.T, name string) (string, *faultstore.Store) {
		dir := filepath.Join(base, name)
		require.NoError(t, os.MkdirAll(dir, 0o700))
		path := filepath.Join(dir, "a.db")
		st, err := sqlite.Open(ctx, path)
		require.NoError(t, err)
		return path, faultstore.New(st)
	}
	_, counting := open(t, "count")
	r, err := replica.New(ctx, counting, failpointConfig)
	require.NoError(t, err)
	writes := counting.Writes(1, 0)
	require.NoError(t, r.Close())
	require.NotEmpty(t, writes)

	runs := 0
	for _, w := range writes {
		for _, when := range []faultstore.When{faultstore.Before, faultstore.After} {
			for _, crash := range []bool{false, true} {
				p := faultstore.Point{Write: w.N, When: when}
				t.Run(fmt.Sprintf("%s/crash=%v", p, crash), func(t *testing.T) {
					path, fs := open(t, fmt.Sprint("open-", runs))
					runs++
					scratch := t.TempDir()
					copied := ""
					f := faultstore.Fault{At: p}
					if crash {
						f.Action = faultstore.Crash
						f.OnHit = func(faultstore.Point) {
							var err error
							copied, err = faultvfs.CrashCopy(path, scratch)
							require.NoError(t, err)
						}
					}
					fs.Arm(f)
					_, err := replica.New(ctx, fs, failpointConfig)
					require.Error(t, err, "the open stops at %s (%s)", p, w)
					fs.Disarm()
					id, idErr := fs.Inner().Meta(ctx, "replica_id")
					var x *replica.Replica
					if crash {
						require.NoError(t, fs.Close())
						x, err = replica.Open(ctx, copied, failpointConfig)
						require.NoError(t, err, "the copy a crash left opens")
					} else {
						x, err = replica.New(ctx, fs, failpointConfig)
						require.NoError(t, err, "the open succeeds when made again")
					}
					defer x.Close()
					if idErr == nil && !crash {
						assert.Equal(t, id, x.ID(), "the replica keeps the ID it stored")
					}
					if crash && (when == faultstore.After || w.N > 1) {
						assert.Equal(t, id, x.ID(), "the replica keeps the ID it stored before the crash")
					}
					peer, _ := openSQLite(t, tempDB(t, "peer"), failpointConfig)
					chart := register(t, x, "Akinyi", "Odhiambo", "Asembo")
					edit(t, x, chart, allergy(1))
					_, err = replica.SyncPair(ctx, x, peer)
					require.NoError(t, err)
					requireSameOwnCharts(t, x, peer)
				})
			}
		}
	}
}
