package replica_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/store"
)

func TestRegisterEditAndView(t *testing.T) {
	ctx := context.Background()
	r, _ := newMem(t, replica.Config{Now: frozen})
	require.Regexp(t, "^[0-9a-f]{32}$", r.ID(), "replica ID is 32 hex digits")

	id := register(t, r, "Wanjiru", "Mwangi", "Kamuga")
	_, err := uuid.Parse(id)
	require.NoError(t, err, "chart ID is a UUID")

	rx := edit(t, r, id, prescribe("Amoxicillin", 500))
	edit(t, r, id, record.AddAllergy{Substance: "Sulfa", Reaction: "rash", Severity: "severe"})
	edit(t, r, id, record.ReviseDose{PrescriptionID: rx.EntryID, Dose: 250, Reason: "renal function"})

	v := view(t, r, id)
	assert.Equal(t, id, v.ChartID)
	assert.Equal(t, "Wanjiru", v.Patient.GivenName)
	require.Len(t, v.Prescriptions, 1, "the prescription is on the chart")
	assert.Equal(t, 250.0, v.Prescriptions[0].Dose, "the revised dose is shown")
	require.Len(t, v.Allergies, 1, "the allergy is on the chart")
	assert.Equal(t, "Sulfa", v.Allergies[0].Substance)
	assert.Len(t, v.History, 4, "registration and three edits are in the history")

	heads, err := r.Heads(ctx, id)
	require.NoError(t, err)
	assert.True(t, heads.Equal(v.Heads), "indexed heads %s match the view's %s", heads, v.Heads)

	unknown := uuid.NewString()
	_, err = r.Chart(ctx, unknown)
	assert.ErrorIs(t, err, replica.ErrNotFound, "viewing a chart never registered")
	_, err = r.Edit(ctx, unknown, nurse, allergy(1))
	assert.ErrorIs(t, err, replica.ErrNotFound, "editing a chart never registered")
	_, err = r.Heads(ctx, unknown)
	assert.ErrorIs(t, err, replica.ErrNotFound, "heads of a chart never registered")
}

func TestFind(t *testing.T) {
	ctx := context.Background()
	r, _ := newMem(t, replica.Config{})
	ids := map[string]string{}
	for _, p := range []struct{ given, family, village string }{
		{"Wanjiru", "Mwangi", "Kamuga"},
		{"Baraka", "Otieno", "Kamuga"},
		{"Amina", "Achieng", "Siaya"},
		{"Zawadi", "Mwangi", "Siaya"},
	} {
		ids[p.given] = register(t, r, p.given, p.family, p.village)
	}
	nid := "ABHA-1234"
	edit(t, r, ids["Amina"], record.UpdateDemographics{NationalID: &nid})

	names := func(cs []store.Chart) []string {
		out := make([]string, len(cs))
		for i, c := range cs {
			out[i] = c.GivenName + " " + c.FamilyName
		}
		return out
	}
	for _, tc := range []struct {
		text  string
		limit int
		want  []string
	}{
		{"", 0, []string{"Amina Achieng", "Wanjiru Mwangi", "Zawadi Mwangi", "Baraka Otieno"}},
		{"", 2, []string{"Amina Achieng", "Wanjiru Mwangi"}},
		{"mwangi", 0, []string{"Wanjiru Mwangi", "Zawadi Mwangi"}},
		{"KAMUGA", 0, []string{"Wanjiru Mwangi", "Baraka Otieno"}},
		{"abha-12", 0, []string{"Amina Achieng"}},
		{ids["Baraka"], 0, []string{"Baraka Otieno"}},
		{"nobody", 0, []string{}},
	} {
		t.Run(fmt.Sprintf("%q limit %d", tc.text, tc.limit), func(t *testing.T) {
			cs, err := r.Find(ctx, tc.text, tc.limit)
			require.NoError(t, err)
			assert.Equal(t, tc.want, names(cs))
		})
	}
	cs, err := r.Find(ctx, "abha", 0)
	require.NoError(t, err)
	require.Len(t, cs, 1)
	assert.Equal(t, nid, cs[0].NationalID, "the index follows demographic edits")
	assert.Equal(t, ids["Amina"], cs[0].ID)
}

func TestPeersCountUnacknowledgedChanges(t *testing.T) {
	ctx := context.Background()
	a, _ := newMem(t, replica.Config{Now: frozen})
	b, _ := newMem(t, replica.Config{Now: frozen})
	ps, err := a.Peers(ctx)
	require.NoError(t, err)
	assert.Empty(t, ps, "a new replica knows no peers")

	id := register(t, a, "Wanjiru", "Mwangi", "Kamuga")
	edit(t, a, id, allergy(1))
	register(t, b, "Baraka", "Otieno", "Siaya")
	_, err = replica.SyncPair(ctx, a, b)
	require.NoError(t, err)

	unacked := func(r *replica.Replica) map[string]int {
		ps, err := r.Peers(ctx)
		require.NoError(t, err)
		out := map[string]int{}
		for _, p := range ps {
			out[p.ID] = p.Unacknowledged
			assert.Equal(t, frozenAt, p.LastSync, "last sync time of %s", p.ID)
		}
		return out
	}
	assert.Equal(t, map[string]int{b.ID(): 0}, unacked(a), "b acknowledged a's changes in its answer")
	assert.Equal(t, map[string]int{a.ID(): 1}, unacked(b), "a's acknowledgement of b's registration travels with the next sync")

	for i := range 3 {
		edit(t, a, id, allergy(10+i))
	}
	assert.Equal(t, map[string]int{b.ID(): 3}, unacked(a), "three new edits wait for b")
	_, err = replica.SyncPair(ctx, a, b)
	require.NoError(t, err)
	assert.Equal(t, map[string]int{b.ID(): 0}, unacked(a))
	assert.Equal(t, map[string]int{a.ID(): 0}, unacked(b))
}

func TestReopenFromDiskGivesIdenticalViews(t *testing.T) {
	ctx := context.Background()
	path := tempDB(t, "clinic")
	cloudPath := tempDB(t, "cloud")
	r, _ := openSQLite(t, path, replica.Config{})
	cloud, _ := openSQLite(t, cloudPath, replica.Config{})
	var ids []string
	for i, name := range []string{"Wanjiru", "Baraka", "Amina"} {
		id := register(t, r, name, "Family", "Kamuga")
		ids = append(ids, id)
		rx := edit(t, r, id, prescribe("Amoxicillin", 500))
		edit(t, r, id, allergy(i))
		edit(t, r, id, record.Discontinue{PrescriptionID: rx.EntryID, Reason: "course changed"})
	}
	cid := register(t, cloud, "Zawadi", "Cloud", "Siaya")
	_, err := replica.SyncPair(ctx, r, cloud)
	require.NoError(t, err)
	ids = append(ids, cid)

	rid := r.ID()
	views := map[string][]byte{}
	for _, id := range ids {
		j, err := json.Marshal(view(t, r, id))
		require.NoError(t, err)
		views[id] = j
	}
	found, err := r.Find(ctx, "", 0)
	require.NoError(t, err)
	peers, err := r.Peers(ctx)
	require.NoError(t, err)
	require.NoError(t, r.Close())
	require.NoError(t, cloud.Close())

	r2, _ := openSQLite(t, path, replica.Config{})
	assert.Equal(t, rid, r2.ID(), "the replica keeps its ID across restarts")
	assert.Zero(t, r2.CachedCharts(), "opening loads no chart")
	for _, id := range ids {
		j, err := json.Marshal(view(t, r2, id))
		require.NoError(t, err)
		assert.JSONEq(t, string(views[id]), string(j), "chart %s reads back identically", id)
	}
	found2, err := r2.Find(ctx, "", 0)
	require.NoError(t, err)
	assert.Equal(t, found, found2, "the chart index reads back identically")
	peers2, err := r2.Peers(ctx)
	require.NoError(t, err)
	assert.Equal(t, peers, peers2, "what the replica knows of its peers reads back identically")
}

func TestEditRefusedLeavesStoreUnchanged(t *testing.T) {
	ctx := context.Background()
	r, st := newMem(t, replica.Config{Now: frozen})
	id := register(t, r, "Wanjiru", "Mwangi", "Kamuga")
	rx := edit(t, r, id, prescribe("Amoxicillin", 500))
	edit(t, r, id, record.AddAllergy{Substance: "Sulfa", Severity: "severe"})

	for _, tc := range []struct {
		name  string
		chart string
		by    record.Author
		op    record.Op
		want  error
	}{
		{"prescription without a drug", id, doctor, record.Prescribe{Dose: 5, DoseUnit: "mg", Route: "oral", Frequency: "OD"}, record.ErrInvalid},
		{"implausible dose unit", id, doctor, record.Prescribe{Drug: "Paracetamol", Dose: 5, DoseUnit: "bucket", Route: "oral", Frequency: "OD"}, record.ErrInvalid},
		{"allergy severity unknown", id, doctor, record.AddAllergy{Substance: "Latex", Severity: "catastrophic"}, record.ErrInvalid},
		{"discontinue without reason", id, doctor, record.Discontinue{PrescriptionID: rx.EntryID}, record.ErrInvalid},
		{"discontinue unknown prescription", id, doctor, record.Discontinue{PrescriptionID: uuid.NewString(), Reason: "x"}, record.ErrNotFound},
		{"resume an active prescription", id, doctor, record.Resume{PrescriptionID: rx.EntryID, Reason: "x"}, record.ErrTransition},
		{"no known allergies while one is active", id, doctor, record.RecordNoKnownAllergies{}, record.ErrTransition},
		{"author without a role", id, record.Author{UserID: "u-x"}, allergy(1), record.ErrInvalid},
		{"chart never registered", uuid.NewString(), doctor, allergy(1), replica.ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := dumpStore(t, st)
			vBefore := view(t, r, id)
			_, err := r.Edit(ctx, tc.chart, tc.by, tc.op)
			require.ErrorIs(t, err, tc.want)
			assert.Equal(t, before, dumpStore(t, st), "a refused edit changes nothing on disk")
			assert.Equal(t, vBefore, view(t, r, id), "a refused edit changes nothing in memory")
		})
	}
	// The chart still takes valid edits, on top of the last good one.
	res := edit(t, r, id, allergy(2))
	v := view(t, r, id)
	assert.Equal(t, crdt.Heads{res.Change.Hash}, v.Heads)
}

func TestStoreWriteFailureRollsBack(t *testing.T) {
	ctx := context.Background()
	diskFull := errors.New("disk full")
	for _, cached := range []bool{true, false} {
		t.Run(fmt.Sprintf("chart cached %v", cached), func(t *testing.T) {
			cfg := replica.Config{Now: frozen, CompactAfter: 2}
			r, st := newMem(t, cfg)
			id := register(t, r, "Wanjiru", "Mwangi", "Kamuga")
			edit(t, r, id, allergy(1))
			if !cached {
				r = reopenMem(t, r, st, cfg)
			}
			before := dumpStore(t, st)
			vBefore, err := json.Marshal(view(t, r, id))
			require.NoError(t, err)
			if !cached {
				r = reopenMem(t, r, st, cfg)
				require.Zero(t, r.CachedCharts())
			}

			st.FailWrites = diskFull
			_, err = r.Edit(ctx, id, doctor, allergy(2)) // would also compact
			require.ErrorIs(t, err, diskFull, "the edit reports the store's failure")
			_, err = r.Register(ctx, nurse, record.Register{GivenName: "Baraka", Sex: "male", EstimatedBirthYear: 1970, HomeClinic: "c"})
			require.ErrorIs(t, err, diskFull, "the registration reports the store's failure")
			st.FailWrites = nil

			assert.Equal(t, before, dumpStore(t, st), "nothing of the failed writes is on disk")
			vAfter, err := json.Marshal(view(t, r, id))
			require.NoError(t, err)
			assert.JSONEq(t, string(vBefore), string(vAfter), "memory agrees with disk after the failure")
			assert.Equal(t, []string{id}, chartIDs(t, r), "the failed registration left no chart")

			// The next edit builds on what is stored, not on the lost change:
			// another replica can load it without a missing dependency.
			res := edit(t, r, id, allergy(3))
			other, _ := newMem(t, cfg)
			_, err = replica.SyncPair(ctx, r, other)
			require.NoError(t, err)
			requireSameCharts(t, r, other)
			v := view(t, other, id)
			assert.Equal(t, crdt.Heads{res.Change.Hash}, v.Heads)
			assert.Len(t, v.Allergies, 2, "allergies 1 and 3, not the failed 2")
		})
	}
}

func TestReceiveStoreFailureRollsBack(t *testing.T) {
	ctx := context.Background()
	diskFull := errors.New("disk full")
	cfg := replica.Config{Now: frozen}
	a, _ := newMem(t, cfg)
	b, bst := newMem(t, cfg)
	id := register(t, a, "Wanjiru", "Mwangi", "Kamuga")
	_, err := replica.SyncPair(ctx, a, b)
	require.NoError(t, err)
	view(t, b, id) // cached at b
	edit(t, a, id, allergy(1))
	out, err := a.MakeBundle(ctx, b.ID())
	require.NoError(t, err)

	before := dumpStore(t, bst)
	vBefore := view(t, b, id)
	bst.FailWrites = diskFull
	_, err = b.Receive(ctx, out.Data)
	require.ErrorIs(t, err, diskFull)
	bst.FailWrites = nil
	assert.Equal(t, before, dumpStore(t, bst), "nothing of the failed bundle is on disk")
	assert.Equal(t, vBefore, view(t, b, id), "the cached chart forgot the failed bundle")

	got, err := b.Receive(ctx, out.Data)
	require.NoError(t, err, "the same bundle applies once the disk works")
	assert.Equal(t, 1, got.Applied)
	requireSameCharts(t, a, b)
}

func TestCacheStaysWithinBound(t *testing.T) {
	ctx := context.Background()
	for _, bound := range []int{1, 3, 10} {
		t.Run(fmt.Sprintf("bound %d", bound), func(t *testing.T) {
			r, _ := newMem(t, replica.Config{CacheCharts: bound})
			rng := rand.New(rand.NewPCG(uint64(bound), 7))
			var ids []string
			allergies := map[string]int{}
			for i := range 25 {
				ids = append(ids, register(t, r, fmt.Sprintf("P%d", i), "Family", "Kamuga"))
				require.LessOrEqual(t, r.CachedCharts(), bound, "after registering %d charts", i+1)
			}
			for i := range 200 {
				id := ids[rng.IntN(len(ids))]
				if rng.IntN(2) == 0 {
					edit(t, r, id, allergy(i))
					allergies[id]++
				} else {
					v := view(t, r, id)
					require.Len(t, v.Allergies, allergies[id], "chart %s reloaded after eviction shows every allergy", id)
				}
				require.LessOrEqual(t, r.CachedCharts(), bound, "after operation %d", i)
			}
			assert.Equal(t, bound, r.CachedCharts(), "the cache fills up to its bound")
			_, err := r.Find(ctx, "", 0)
			require.NoError(t, err)
			assert.LessOrEqual(t, r.CachedCharts(), bound)
		})
	}
}

func TestOpenAndSyncDoNotLoadCharts(t *testing.T) {
	ctx := context.Background()
	const n = 300
	path := tempDB(t, "many")
	r, _ := openSQLite(t, path, replica.Config{})
	charts := make([]*record.Chart, n)
	for i := range charts {
		c, _, err := record.New(uuid.NewString(), r.ID(), nurse, frozenAt, record.Register{
			GivenName: fmt.Sprintf("P%03d", i), FamilyName: "Family", Sex: "other", EstimatedBirthYear: 1990, HomeClinic: "c",
		})
		require.NoError(t, err)
		charts[i] = c
	}
	require.NoError(t, r.Import(ctx, charts))
	require.NoError(t, r.Close())

	r, _ = openSQLite(t, path, replica.Config{})
	assert.Zero(t, r.CachedCharts(), "opening a replica with %d charts loads none", n)
	found, err := r.Find(ctx, "", 0)
	require.NoError(t, err)
	assert.Len(t, found, n, "every chart is indexed")
	assert.Zero(t, r.CachedCharts(), "finding charts reads the index, not the charts")

	peer, _ := newMem(t, replica.Config{})
	out, err := r.MakeBundle(ctx, peer.ID())
	require.NoError(t, err)
	assert.Equal(t, n, out.Changes)
	assert.Zero(t, r.CachedCharts(), "building a bundle reads stored changes, not charts")
	got, err := peer.Receive(ctx, out.Data)
	require.NoError(t, err)
	assert.Equal(t, n, got.Applied)
	assert.Len(t, got.Charts, n)
	assert.Zero(t, peer.CachedCharts(), "receiving a bundle does not keep the charts loaded")

	view(t, r, found[7].ID)
	assert.Equal(t, 1, r.CachedCharts(), "viewing a chart loads that chart only")
	requireSameCharts(t, r, peer)
}

func TestCompactionKeepsEveryChange(t *testing.T) {
	ctx := context.Background()
	const compactAfter = 4
	path := tempDB(t, "compact")
	cfg := replica.Config{CompactAfter: compactAfter}
	r, st := openSQLite(t, path, cfg)
	id := register(t, r, "Wanjiru", "Mwangi", "Kamuga")
	var hashes []crdt.Hash
	var rxs []string
	for i := range 40 {
		var res record.Result
		switch i % 4 {
		case 0:
			res = edit(t, r, id, allergy(i))
		case 1:
			res = edit(t, r, id, prescribe(fmt.Sprintf("Drug%d", i), 100))
			rxs = append(rxs, res.EntryID)
		case 2:
			res = edit(t, r, id, record.ReviseDose{PrescriptionID: rxs[len(rxs)-1], Dose: float64(i), Reason: "weight"})
		case 3:
			res = edit(t, r, id, record.AddEncounter{Date: "2026-03-02", Complaint: fmt.Sprintf("visit %d", i), Note: "seen"})
		}
		hashes = append(hashes, res.Change.Hash)
	}
	snap, err := st.Snapshot(ctx, id)
	require.NoError(t, err, "a chart with many edits has a snapshot")
	rest, err := st.ChartChanges(ctx, id, snap.Seq)
	require.NoError(t, err)
	assert.Less(t, len(rest), max(compactAfter, len(hashes)/2+1), "at most CompactAfter changes, or half the chart, pile up after the snapshot")
	all, err := st.ChartChanges(ctx, id, 0)
	require.NoError(t, err)
	assert.Len(t, all, 41, "compaction keeps every raw change in the log")

	want, err := json.Marshal(view(t, r, id))
	require.NoError(t, err)
	require.NoError(t, r.Close())

	r2, st2 := openSQLite(t, path, replica.Config{})
	v := view(t, r2, id)
	got, err := json.Marshal(v)
	require.NoError(t, err)
	assert.JSONEq(t, string(want), string(got), "the chart loads from snapshot and log identically")
	inHistory := map[crdt.Hash]bool{}
	for _, h := range v.History {
		inHistory[h.Change] = true
	}
	for i, h := range hashes {
		assert.True(t, inHistory[h], "edit %d (%s) is in the reloaded chart's history", i, h)
	}
	requireHasChanges(t, st2, hashes, "reopened compacted replica")

	// A peer receiving all 41 changes at once, a chart new to it, stores
	// them without a snapshot (saving the whole history again would
	// double the work of receiving it), loses nothing, and snapshots the
	// chart at the first write after it loads it.
	peerPath := tempDB(t, "peer")
	peer, pst := openSQLite(t, peerPath, cfg)
	_, err = replica.SyncPair(ctx, r2, peer)
	require.NoError(t, err)
	_, err = pst.Snapshot(ctx, id)
	require.ErrorIs(t, err, store.ErrNotFound, "a chart received whole has no snapshot yet")
	require.NoError(t, peer.Close())
	peer, pst = openSQLite(t, peerPath, cfg)
	requireSameCharts(t, r2, peer)
	edit(t, peer, id, allergy(99))
	snap, err = pst.Snapshot(ctx, id)
	require.NoError(t, err, "the first write after loading it snapshots the chart")
	all, err = pst.ChartChanges(ctx, id, 0)
	require.NoError(t, err)
	assert.Len(t, all, 42, "every change stays in the log")
	require.NoError(t, peer.Close())
	peer, _ = openSQLite(t, peerPath, cfg)
	assert.Equal(t, view(t, peer, id).History, func() []record.HistoryEntry {
		_, err := replica.SyncPair(ctx, peer, r2)
		require.NoError(t, err)
		return view(t, r2, id).History
	}(), "the chart loads from its snapshot as the peer that sent it shows it")
}

func TestImportMergesChartAlreadyHeld(t *testing.T) {
	ctx := context.Background()
	cfg := replica.Config{CompactAfter: 4}
	r, st := newMem(t, cfg)
	id := register(t, r, "Wanjiru", "Mwangi", "Kamuga")
	edit(t, r, id, allergy(0))

	// A copy of the chart taken away now, edited elsewhere many times...
	chs, err := st.ChartChanges(ctx, id, 0)
	require.NoError(t, err)
	doc, err := crdt.New(crdt.NewActorID())
	require.NoError(t, err)
	for _, c := range chs {
		pc, err := crdt.ParseChange(c.Raw)
		require.NoError(t, err)
		_, err = doc.Apply(pc)
		require.NoError(t, err)
	}
	away, err := record.Open(doc)
	require.NoError(t, err)
	for i := range 10 {
		_, err := away.Do(doctor, frozenAt, allergy(100+i))
		require.NoError(t, err)
	}
	// ...while the replica records more.
	var local []crdt.Hash
	for i := range 3 {
		local = append(local, edit(t, r, id, allergy(200+i)).Change.Hash)
	}

	require.NoError(t, r.Import(ctx, []*record.Chart{away}))
	check := func(r *replica.Replica, what string) {
		v := view(t, r, id)
		assert.Len(t, v.Allergies, 1+10+3, "%s: the imported and the local allergies are all on the chart", what)
		heads, err := r.Heads(ctx, id)
		require.NoError(t, err)
		assert.True(t, heads.Equal(v.Heads), "%s: indexed heads %s match the chart's %s", what, heads, v.Heads)
		assert.Len(t, v.Heads, 2, "%s: the merged chart has the local and the imported branch as heads", what)
		assert.Contains(t, v.Heads, local[len(local)-1], "%s: the last local edit is a head of the merged chart", what)
		inHistory := map[crdt.Hash]bool{}
		for _, h := range v.History {
			inHistory[h.Change] = true
		}
		for _, h := range local {
			assert.True(t, inHistory[h], "%s: local edit %s is in the merged chart's history", what, h)
		}
	}
	check(r, "after import")
	check(reopenMem(t, r, st, cfg), "after restart")
}

func TestClosedReplicaRefusesCalls(t *testing.T) {
	ctx := context.Background()
	a, _ := newMem(t, replica.Config{})
	b, _ := openSQLite(t, tempDB(t, "b"), replica.Config{})
	id := register(t, a, "Wanjiru", "Mwangi", "Kamuga")
	out, err := a.MakeBundle(ctx, b.ID())
	require.NoError(t, err)
	require.NoError(t, b.Close())
	require.NoError(t, b.Close(), "closing twice is harmless")
	_, err = b.Register(ctx, nurse, record.Register{GivenName: "X", Sex: "male", EstimatedBirthYear: 1990, HomeClinic: "c"})
	assert.ErrorIs(t, err, replica.ErrClosed)
	_, err = b.Edit(ctx, id, nurse, allergy(1))
	assert.ErrorIs(t, err, replica.ErrClosed)
	_, err = b.Chart(ctx, id)
	assert.ErrorIs(t, err, replica.ErrClosed)
	_, err = b.Receive(ctx, out.Data)
	assert.ErrorIs(t, err, replica.ErrClosed)
	_, err = b.Heads(ctx, id)
	assert.ErrorIs(t, err, replica.ErrClosed)
	_, err = b.Find(ctx, "", 0)
	assert.ErrorIs(t, err, replica.ErrClosed)
	_, err = b.Peers(ctx)
	assert.ErrorIs(t, err, replica.ErrClosed)
	_, err = b.MakeBundle(ctx, a.ID())
	assert.ErrorIs(t, err, replica.ErrClosed)
	assert.ErrorIs(t, b.Import(ctx, nil), replica.ErrClosed)
}

func TestConfigValidate(t *testing.T) {
	for _, cfg := range []replica.Config{{CacheCharts: -1}, {CompactAfter: -1}, {BundleBytes: -1}} {
		assert.Error(t, cfg.Validate(), "%+v", cfg)
		_, err := replica.New(context.Background(), store.NewMem(), cfg)
		assert.Error(t, err, "New refuses %+v", cfg)
	}
	assert.NoError(t, replica.Config{}.Validate(), "the zero config works")
}

func TestImportSameChartTwiceInOneCall(t *testing.T) {
	ctx := context.Background()
	cfg := replica.Config{CompactAfter: 2}
	r, st := newMem(t, cfg)
	id := uuid.NewString()
	first, _, err := record.New(id, crdt.NewActorID(), nurse, frozenAt, record.Register{GivenName: "Wanjiru", Sex: "female", EstimatedBirthYear: 1988, HomeClinic: "c"})
	require.NoError(t, err)
	forked, err := first.Doc().Fork(nil, crdt.NewActorID())
	require.NoError(t, err)
	second, err := record.Open(forked)
	require.NoError(t, err)
	for i := range 3 {
		_, err := first.Do(doctor, frozenAt, allergy(i))
		require.NoError(t, err)
		_, err = second.Do(doctor, frozenAt, allergy(10+i))
		require.NoError(t, err)
	}
	firstHeads := first.Doc().Heads()

	require.NoError(t, r.Import(ctx, []*record.Chart{first, second}))
	assert.True(t, firstHeads.Equal(first.Doc().Heads()), "Import leaves the caller's charts as they were")
	for _, restart := range []bool{false, true} {
		if restart {
			r = reopenMem(t, r, st, cfg)
		}
		v := view(t, r, id)
		assert.Len(t, v.Allergies, 6, "both copies' allergies are on the imported chart")
		heads, err := r.Heads(ctx, id)
		require.NoError(t, err)
		assert.True(t, heads.Equal(v.Heads), "indexed heads match the chart")
	}
}
