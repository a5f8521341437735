package replica_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/store"
)

func TestSyncPairConverges(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		cfg  replica.Config
		// prepare edits both replicas before they sync.
		prepare func(t *testing.T, a, b *replica.Replica)
		// check looks at the converged chart views, on a.
		check func(t *testing.T, a *replica.Replica)
	}{
		{
			name:    "both empty",
			prepare: func(t *testing.T, a, b *replica.Replica) {},
			check: func(t *testing.T, a *replica.Replica) {
				assert.Empty(t, chartIDs(t, a))
			},
		},
		{
			name: "charts on one side only",
			prepare: func(t *testing.T, a, b *replica.Replica) {
				for i := range 5 {
					id := register(t, a, fmt.Sprintf("P%d", i), "Family", "Kamuga")
					edit(t, a, id, allergy(i))
				}
			},
			check: func(t *testing.T, a *replica.Replica) { assert.Len(t, chartIDs(t, a), 5) },
		},
		{
			name: "different charts on both sides",
			prepare: func(t *testing.T, a, b *replica.Replica) {
				for i := range 4 {
					edit(t, a, register(t, a, fmt.Sprintf("A%d", i), "Family", "Kamuga"), allergy(i))
					edit(t, b, register(t, b, fmt.Sprintf("B%d", i), "Family", "Siaya"), allergy(i))
				}
			},
			check: func(t *testing.T, a *replica.Replica) { assert.Len(t, chartIDs(t, a), 8) },
		},
		{
			name: "concurrent edits to one chart are all kept and the dose conflict shown",
			prepare: func(t *testing.T, a, b *replica.Replica) {
				id := register(t, a, "Wanjiru", "Mwangi", "Kamuga")
				rx := edit(t, a, id, prescribe("Amoxicillin", 500))
				_, err := replica.SyncPair(ctx, a, b)
				require.NoError(t, err)
				edit(t, a, id, record.ReviseDose{PrescriptionID: rx.EntryID, Dose: 250, Reason: "renal"})
				edit(t, b, id, record.ReviseDose{PrescriptionID: rx.EntryID, Dose: 1000, Reason: "severe"})
				edit(t, a, id, record.AddAllergy{Substance: "Sulfa", Severity: "severe"})
				edit(t, b, id, record.AddAllergy{Substance: "Latex", Severity: "mild"})
			},
			check: func(t *testing.T, a *replica.Replica) {
				ids := chartIDs(t, a)
				require.Len(t, ids, 1)
				v := view(t, a, ids[0])
				assert.Len(t, v.Allergies, 2, "both concurrently recorded allergies are kept")
				dose := conflictOn(v, "dose")
				require.NotNil(t, dose, "the concurrent doses are reported as a conflict: %+v", v.Conflicts)
				assert.Len(t, dose.Values, 2)
				assert.Len(t, v.Heads, 2, "the chart has one head per side")
			},
		},
		{
			name: "small bundles need several exchanges",
			cfg:  replica.Config{BundleBytes: 1},
			prepare: func(t *testing.T, a, b *replica.Replica) {
				for i := range 6 {
					edit(t, a, register(t, a, fmt.Sprintf("A%d", i), "Family", "Kamuga"), allergy(i))
				}
				edit(t, b, register(t, b, "B", "Family", "Siaya"), allergy(0))
			},
			check: func(t *testing.T, a *replica.Replica) { assert.Len(t, chartIDs(t, a), 7) },
		},
		{
			name: "more changes than one page of the log",
			prepare: func(t *testing.T, a, b *replica.Replica) {
				for i := range 700 {
					register(t, a, fmt.Sprintf("A%03d", i), "Family", "Kamuga")
				}
				register(t, b, "B", "Family", "Siaya")
			},
			check: func(t *testing.T, a *replica.Replica) { assert.Len(t, chartIDs(t, a), 701) },
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Now = frozen
			a, _ := newMem(t, cfg)
			b, _ := newMem(t, cfg)
			tc.prepare(t, a, b)
			st, err := replica.SyncPair(ctx, a, b)
			require.NoError(t, err)
			assert.True(t, st.ConvergedAll, "SyncPair ends with nothing left to send")
			assert.Equal(t, st.ChangesAToB, st.AppliedAtB, "every change a sent was new to b")
			assert.Equal(t, st.ChangesBToA, st.AppliedAtA, "every change b sent was new to a")
			if cfg.BundleBytes == 1 {
				assert.Equal(t, 12, st.ChangesAToB)
				assert.GreaterOrEqual(t, st.RoundTrips, 12, "a bundle of one byte's budget carries one change")
			}
			requireSameCharts(t, a, b)
			tc.check(t, a)

			st, err = replica.SyncPair(ctx, a, b)
			require.NoError(t, err)
			assert.Zero(t, st.ChangesAToB+st.ChangesBToA, "nothing moves once the replicas agree")
			assert.Equal(t, 1, st.RoundTrips)
		})
	}
}

func TestSyncThroughAHub(t *testing.T) {
	ctx := context.Background()
	cfg := replica.Config{Now: frozen}
	clinic1, _ := newMem(t, cfg)
	clinic2, _ := newMem(t, cfg)
	cloud, _ := newMem(t, cfg)

	shared := register(t, clinic1, "Wanjiru", "Mwangi", "Kamuga")
	rx := edit(t, clinic1, shared, prescribe("Amoxicillin", 500))
	_, err := replica.SyncPair(ctx, clinic1, cloud)
	require.NoError(t, err)
	_, err = replica.SyncPair(ctx, clinic2, cloud)
	require.NoError(t, err)
	requireSameCharts(t, clinic1, clinic2, cloud)

	// Offline on both clinics.
	edit(t, clinic1, shared, record.ReviseDose{PrescriptionID: rx.EntryID, Dose: 250, Reason: "renal"})
	edit(t, clinic2, shared, record.ReviseDose{PrescriptionID: rx.EntryID, Dose: 750, Reason: "weight"})
	own1 := register(t, clinic1, "Baraka", "Otieno", "Kamuga")
	own2 := register(t, clinic2, "Amina", "Achieng", "Siaya")
	edit(t, cloud, shared, record.AddAllergy{Substance: "Penicillin", Severity: "severe"})

	for _, pair := range [][2]*replica.Replica{{clinic1, cloud}, {clinic2, cloud}, {clinic1, cloud}} {
		_, err := replica.SyncPair(ctx, pair[0], pair[1])
		require.NoError(t, err)
	}
	requireSameCharts(t, clinic1, clinic2, cloud)
	assert.ElementsMatch(t, []string{shared, own1, own2}, chartIDs(t, clinic1), "clinic 1 has clinic 2's chart, through the cloud")
	v := view(t, clinic2, shared)
	require.NotNil(t, conflictOn(v, "dose"), "the two clinics' doses are a conflict on every replica")
	kinds := map[string]bool{}
	for _, a := range v.Alerts {
		kinds[a.Kind] = true
	}
	assert.True(t, kinds[record.AlertAllergyDrug], "the cloud's penicillin allergy raises an alert on amoxicillin: %+v", v.Alerts)

	// Every replica now agrees with every other: idle syncs move nothing.
	for _, pair := range [][2]*replica.Replica{{clinic1, clinic2}, {clinic1, cloud}, {clinic2, cloud}} {
		st, err := replica.SyncPair(ctx, pair[0], pair[1])
		require.NoError(t, err)
		assert.Zero(t, st.AppliedAtA+st.AppliedAtB, "no change is new once all have synced")
	}
}

func TestIdleSyncIsOneSmallRoundTrip(t *testing.T) {
	ctx := context.Background()
	cost := map[int]int{}
	for _, n := range []int{10, 400} {
		t.Run(fmt.Sprintf("%d charts", n), func(t *testing.T) {
			a, _ := newMem(t, replica.Config{})
			b, _ := newMem(t, replica.Config{})
			for i := range n {
				if i%2 == 0 {
					register(t, a, fmt.Sprintf("A%d", i), "Family", "Kamuga")
				} else {
					register(t, b, fmt.Sprintf("B%d", i), "Family", "Siaya")
				}
			}
			_, err := replica.SyncPair(ctx, a, b)
			require.NoError(t, err)
			for round := range 3 {
				st, err := replica.SyncPair(ctx, a, b)
				require.NoError(t, err)
				assert.Equal(t, 1, st.RoundTrips, "round %d: agreement takes one round trip", round)
				assert.Zero(t, st.ChangesAToB+st.ChangesBToA, "round %d: no change is resent", round)
				assert.Less(t, st.BytesAToB, 1024, "round %d: bytes from a to b", round)
				assert.Less(t, st.BytesBToA, 1024, "round %d: bytes from b to a", round)
				cost[n] = st.BytesAToB + st.BytesBToA
			}
		})
	}
	// Positions (five a bundle: Base, Upto, Head, Ack, CheckAt) are
	// varints, so a longer log may cost a byte more for each; so are the
	// log epochs (two a bundle), drawn at random below 2^28, which take
	// one to four bytes whatever the log.
	assert.LessOrEqual(t, cost[400], cost[10]+2*5+2*2*3, "idle sync costs the same whatever the number of charts (%v)", cost)
}

func TestDeltaSyncCostFollowsTheChange(t *testing.T) {
	ctx := context.Background()
	a, _ := newMem(t, replica.Config{})
	b, _ := newMem(t, replica.Config{})
	var ids []string
	for i := range 200 {
		ids = append(ids, register(t, a, fmt.Sprintf("A%d", i), "Family", "Kamuga"))
	}
	_, err := replica.SyncPair(ctx, a, b)
	require.NoError(t, err)
	_, err = replica.SyncPair(ctx, a, b)
	require.NoError(t, err)

	raw := 0
	for i := range 3 {
		raw += len(edit(t, a, ids[i*50], allergy(i)).Change.Raw)
	}
	st, err := replica.SyncPair(ctx, a, b)
	require.NoError(t, err)
	assert.Equal(t, 3, st.ChangesAToB, "only the three new changes travel")
	assert.LessOrEqual(t, st.BytesAToB, raw+3*20+128, "bytes follow the %d bytes of changed changes", raw)
	requireSameCharts(t, a, b)
}

func TestReceiveTwiceChangesNothing(t *testing.T) {
	ctx := context.Background()
	cfg := replica.Config{Now: frozen, CompactAfter: 3}
	a, _ := newMem(t, cfg)
	b, bst := newMem(t, cfg)
	id := register(t, a, "Wanjiru", "Mwangi", "Kamuga")
	for i := range 5 {
		edit(t, a, id, allergy(i))
	}
	out, err := a.MakeBundle(ctx, b.ID())
	require.NoError(t, err)
	first, err := b.Receive(ctx, out.Data)
	require.NoError(t, err)
	assert.Equal(t, 6, first.Applied)
	assert.Equal(t, []string{id}, first.Charts)
	assert.True(t, first.Complete)
	after := dumpStore(t, bst)
	vAfter := view(t, b, id)

	for i := range 2 {
		again, err := b.Receive(ctx, out.Data)
		require.NoError(t, err, "receiving the same bundle again is not an error")
		assert.Zero(t, again.Applied, "repeat %d applies nothing", i)
		assert.Equal(t, 6, again.Duplicates, "repeat %d reports every change as a duplicate", i)
		assert.Empty(t, again.Charts, "repeat %d changes no chart", i)
		assert.Equal(t, after, dumpStore(t, bst), "repeat %d leaves the store as it was", i)
		assert.Equal(t, vAfter, view(t, b, id))
	}
}

func TestStaleAndReorderedBundlesDoNoHarm(t *testing.T) {
	ctx := context.Background()
	cfg := replica.Config{Now: frozen}
	a, ast := newMem(t, cfg)
	b, bst := newMem(t, cfg)
	id := register(t, a, "Wanjiru", "Mwangi", "Kamuga")
	edit(t, b, register(t, b, "Baraka", "Otieno", "Siaya"), allergy(0))

	older, err := a.MakeBundle(ctx, b.ID())
	require.NoError(t, err)
	edit(t, a, id, allergy(1))
	edit(t, a, id, allergy(2))
	newer, err := a.MakeBundle(ctx, b.ID())
	require.NoError(t, err)
	answerBefore, err := b.MakeBundle(ctx, a.ID()) // carries no acknowledgement yet

	// The newer bundle overtakes the older one.
	got, err := b.Receive(ctx, newer.Data)
	require.NoError(t, err)
	assert.Equal(t, 3, got.Applied)
	snap := dumpStore(t, bst)
	got, err = b.Receive(ctx, older.Data)
	require.NoError(t, err)
	assert.Zero(t, got.Applied, "the older bundle brings nothing new")
	assert.Equal(t, 1, got.Duplicates)
	assert.Equal(t, snap, dumpStore(t, bst), "the older bundle moves no position backwards")

	answerAfter, err := b.MakeBundle(ctx, a.ID()) // acknowledges a's whole log
	require.NoError(t, err)
	_, err = a.Receive(ctx, answerAfter.Data)
	require.NoError(t, err)
	ps, err := a.Peers(ctx)
	require.NoError(t, err)
	require.Len(t, ps, 1)
	assert.Zero(t, ps[0].Unacknowledged, "b acknowledged everything")
	snap = dumpStore(t, ast)
	_, err = a.Receive(ctx, answerBefore.Data) // arrives late, acknowledging nothing
	require.NoError(t, err)
	assert.Equal(t, snap, dumpStore(t, ast), "a late answer does not take back b's acknowledgement")

	_, err = replica.SyncPair(ctx, a, b)
	require.NoError(t, err)
	requireSameCharts(t, a, b)
}

func TestOneWayCourier(t *testing.T) {
	// Bundles carried one way only (files on a USB stick) with no answer:
	// each carries everything not yet acknowledged, so any one that
	// arrives brings the recipient up to date.
	ctx := context.Background()
	a, _ := newMem(t, replica.Config{})
	b, _ := newMem(t, replica.Config{})
	id := register(t, a, "Wanjiru", "Mwangi", "Kamuga")
	var bundles [][]byte
	for i := range 4 {
		edit(t, a, id, allergy(i))
		out, err := a.MakeBundle(ctx, b.ID())
		require.NoError(t, err)
		assert.Equal(t, i+2, out.Changes, "bundle %d resends what b has not acknowledged", i)
		bundles = append(bundles, out.Data)
	}
	// Only the last and the first arrive, in that order.
	got, err := b.Receive(ctx, bundles[3])
	require.NoError(t, err)
	assert.Equal(t, 5, got.Applied)
	got, err = b.Receive(ctx, bundles[0])
	require.NoError(t, err)
	assert.Zero(t, got.Applied)
	requireSameCharts(t, a, b)
}

func TestBundleForAnotherReplicaIsRefused(t *testing.T) {
	ctx := context.Background()
	a, _ := newMem(t, replica.Config{})
	b, _ := newMem(t, replica.Config{})
	c, cst := newMem(t, replica.Config{})
	register(t, a, "Wanjiru", "Mwangi", "Kamuga")
	register(t, c, "Baraka", "Otieno", "Siaya")
	out, err := a.MakeBundle(ctx, b.ID())
	require.NoError(t, err)
	before := dumpStore(t, cst)
	_, err = c.Receive(ctx, out.Data)
	require.ErrorIs(t, err, replica.ErrWrongRecipient)
	assert.Equal(t, before, dumpStore(t, cst), "a misaddressed bundle changes nothing")

	_, err = a.MakeBundle(ctx, a.ID())
	assert.Error(t, err, "a replica does not make bundles for itself")
	_, err = a.MakeBundle(ctx, "not-a-replica")
	assert.Error(t, err, "a peer ID must be 32 hex digits")
}

func TestMissingDependenciesArriveAfterRestart(t *testing.T) {
	ctx := context.Background()
	// a's chart: registration, then e1, then e2 (each depends on the last).
	for _, tc := range []struct {
		name   string
		first  []int // changes delivered before the restart (0 = registration)
		second []int // delivered after
		// chart is whether b can show the chart before the restart.
		chart bool
	}{
		{"later edits before everything", []int{2, 1}, []int{0}, false},
		{"registration and a later edit before the middle one", []int{2, 0}, []int{1}, true},
		{"last edit alone, then the rest one by one", []int{2}, []int{1, 0}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := replica.Config{CompactAfter: 1}
			a, _ := newMem(t, cfg)
			id := register(t, a, "Wanjiru", "Mwangi", "Kamuga")
			chs := []crdt.Change{firstChange(t, a, id)}
			chs = append(chs, edit(t, a, id, allergy(1)).Change)
			chs = append(chs, edit(t, a, id, allergy(2)).Change)
			path := tempDB(t, "b")
			b, bst := openSQLite(t, path, cfg)
			deliver := func(b *replica.Replica, i int) {
				t.Helper()
				bundle := replica.Bundle{From: a.ID(), To: b.ID(), Changes: []replica.BundleChange{{Chart: id, Raw: chs[i].Raw}}}
				data, err := bundle.Encode()
				require.NoError(t, err)
				got, err := b.Receive(ctx, data)
				require.NoError(t, err, "deliver change %d alone", i)
				assert.GreaterOrEqual(t, got.Applied+got.Held, 1, "change %d is applied (with any it let apply), or held until what it depends on arrives", i)
			}
			for _, i := range tc.first {
				deliver(b, i)
			}
			// Only what can apply is in the log; the rest is held aside,
			// and kept across the restart.
			var stored []int
			for _, i := range tc.first {
				if i == 0 {
					stored = append(stored, i)
				}
			}
			requireHasChanges(t, bst, hashesOf(chs, stored), "before restart")
			assert.Equal(t, len(tc.first)-len(stored), b.Held())
			if tc.chart {
				v := view(t, b, id)
				assert.Equal(t, crdt.Heads{chs[0].Hash}, v.Heads, "only the registration applies while e1 is missing")
				if snap, err := bst.Snapshot(ctx, id); err == nil {
					doc, err := crdt.Load(snap.Data, "")
					require.NoError(t, err)
					assert.False(t, doc.Has(chs[2].Hash), "no snapshot claims a change that could not apply")
				}
			} else {
				_, err := b.Chart(ctx, id)
				assert.ErrorIs(t, err, replica.ErrNotFound, "a chart without its registration cannot be shown")
				_, err = b.Edit(ctx, id, nurse, allergy(9))
				assert.ErrorIs(t, err, replica.ErrNotFound, "nor edited")
			}

			require.NoError(t, b.Close())
			b, bst = openSQLite(t, path, cfg)
			for _, i := range tc.second {
				deliver(b, i)
			}
			v := view(t, b, id)
			assert.True(t, v.Heads.Equal(crdt.Heads{chs[2].Hash}), "after the missing change arrives the chart is whole")
			assert.Len(t, v.Allergies, 2)
			snap, err := bst.Snapshot(ctx, id)
			edited := 0
			if errors.Is(err, store.ErrNotFound) {
				// A chart received whole, new to b, is stored without a
				// snapshot; the first write after it is loaded makes one.
				edit(t, b, id, allergy(3))
				v, edited = view(t, b, id), 1
				snap, err = bst.Snapshot(ctx, id)
			}
			require.NoError(t, err, "the whole chart is compacted")
			doc, err := crdt.Load(snap.Data, "")
			require.NoError(t, err)
			assert.True(t, doc.Heads().Equal(v.Heads), "the snapshot holds the whole chart")

			st, err := replica.SyncPair(ctx, a, b)
			require.NoError(t, err)
			assert.Equal(t, edited, st.AppliedAtA+st.AppliedAtB, "nothing is missing on either side but b's edit, if it made one")
			requireSameCharts(t, a, b)
			require.NoError(t, b.Close())
			b, _ = openSQLite(t, path, cfg)
			requireSameCharts(t, a, b)
		})
	}
}

// firstChange returns a chart's registration change, from its history.
func firstChange(t *testing.T, r *replica.Replica, id string) crdt.Change {
	t.Helper()
	v := view(t, r, id)
	require.Len(t, v.History, 1)
	out, err := r.MakeBundle(context.Background(), crdt.NewActorID())
	require.NoError(t, err)
	b, err := replica.DecodeBundle(out.Data)
	require.NoError(t, err)
	for _, c := range b.Changes {
		pc, err := crdt.ParseChange(c.Raw)
		require.NoError(t, err)
		if pc.Hash == v.History[0].Change {
			return pc
		}
	}
	t.Fatalf("registration of %s not found in the log", id)
	return crdt.Change{}
}

func hashesOf(chs []crdt.Change, idx []int) []crdt.Hash {
	out := make([]crdt.Hash, len(idx))
	for i, j := range idx {
		out[i] = chs[j].Hash
	}
	return out
}

func conflictOn(v record.View, field string) *record.Conflict {
	for i, c := range v.Conflicts {
		if c.Field == field {
			return &v.Conflicts[i]
		}
	}
	return nil
}

func TestMakeBundleRefusesUpperCasePeerID(t *testing.T) {
	a, _ := newMem(t, replica.Config{})
	b, _ := newMem(t, replica.Config{})
	_, err := a.MakeBundle(context.Background(), strings.ToUpper(b.ID()))
	require.Error(t, err, "an upper-case peer ID would be a second, never-acknowledged peer")
}
