package replica_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/store"
)

// A change the chart cannot take, sent by a peer whose bundle is
// otherwise well formed, is a refusal of the peer's data: typed
// (ErrMalformedBundle), kept for review, and the store is untouched, on a
// replica that checks authors and on one that does not. Before, a reused
// sequence number failed in Automerge as an internal error that the
// cloud answered 500 and the device retried for ever.
func TestChangesAChartCannotTakeAreRefusedAndKept(t *testing.T) {
	ctx := context.Background()
	twin := func(info crdt.ChangeInfo) crdt.ChangeInfo { // same seq, another time
		info.Time = info.Time.Add(time.Second)
		return info
	}
	skip := func(info crdt.ChangeInfo) crdt.ChangeInfo { // seq 3 where 2 is next
		info.Seq++
		return info
	}
	cases := []struct {
		name   string
		mangle func(crdt.ChangeInfo) crdt.ChangeInfo
	}{
		{"sequence number reused", twin},
		{"sequence number skipped", skip},
	}
	for _, tc := range cases {
		for _, check := range []bool{false, true} {
			t.Run(tc.name+map[bool]string{false: "/no checks", true: "/author checks"}[check], func(t *testing.T) {
				a, _ := newMem(t, replica.Config{})
				b, bst := newMem(t, replica.Config{CheckAuthors: check})
				chart := register(t, a, "Wanjiru", "Mwangi", "Kamuga")
				last := edit(t, a, chart, allergy(1)).Change
				_, err := replica.SyncPair(ctx, a, b)
				require.NoError(t, err)

				info, err := crdt.ChangeOps(last.Raw)
				require.NoError(t, err)
				raw, err := crdt.EncodeChange(tc.mangle(info))
				require.NoError(t, err)
				data := encode(t, replica.Bundle{From: a.ID(), To: b.ID(), Changes: []replica.BundleChange{{Chart: chart, Raw: raw}}})

				before := dumpStore(t, bst)
				vBefore := view(t, b, chart)
				_, err = b.Receive(ctx, data)
				require.ErrorIs(t, err, replica.ErrMalformedBundle)
				q, err := b.Quarantined(ctx)
				require.NoError(t, err)
				require.Len(t, q, 1, "the refused bundle is kept for review")
				assert.Equal(t, data, q[0].Data)
				assert.Equal(t, before, dumpStore(t, bst), "nothing else of the store changed")
				assert.Equal(t, vBefore, view(t, b, chart))
			})
		}
	}
}

// A stored snapshot that does not load (damaged on disk, or crafted) is
// not fatal: the chart is rebuilt from its changes in the log, reported,
// and a good snapshot replaces the bad one at the next write.
func TestAChartWhoseSnapshotDoesNotLoadIsRebuiltFromItsLog(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		data func(good []byte) []byte
	}{
		{"garbage", func([]byte) []byte { return []byte("not a document") }},
		{"truncated", func(good []byte) []byte { return good[:len(good)/2] }},
		{"one byte changed", func(good []byte) []byte {
			bad := append([]byte(nil), good...)
			bad[len(bad)/2] ^= 0x40
			return bad
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := replica.Config{CompactAfter: 2}
			r, st := newMem(t, cfg)
			chart := register(t, r, "Wanjiru", "Mwangi", "Kamuga")
			for i := range 3 {
				edit(t, r, chart, allergy(i))
			}
			want := view(t, r, chart)
			snap, err := st.Snapshot(ctx, chart)
			require.NoError(t, err)
			_, err = st.Write(ctx, store.Batch{Snapshots: []store.NewSnapshot{{Chart: chart, Data: tc.data(snap.Data)}}})
			require.NoError(t, err)

			r = reopenMem(t, r, st, cfg)
			assert.Equal(t, want, view(t, r, chart), "the chart is rebuilt from its log")
			assert.Equal(t, 1, r.RebuiltCharts())
			edit(t, r, chart, allergy(9))
			snap, err = st.Snapshot(ctx, chart)
			require.NoError(t, err)
			_, err = crdt.Load(snap.Data, "")
			require.NoError(t, err, "the next write stores a snapshot that loads")
		})
	}
}

// twinFixture is a chart synced from a to b, and the raw change b holds
// last from a, to make twins of: the same sequence number, another time.
type twinFixture struct {
	a, b  *replica.Replica
	chart string
	last  crdt.ChangeInfo
}

func newTwinFixture(t *testing.T) twinFixture {
	t.Helper()
	a, _ := newMem(t, replica.Config{})
	b, _ := newMem(t, replica.Config{})
	chart := register(t, a, "Wanjiru", "Mwangi", "Kamuga")
	last := edit(t, a, chart, allergy(1)).Change
	_, err := replica.SyncPair(context.Background(), a, b)
	require.NoError(t, err)
	info, err := crdt.ChangeOps(last.Raw)
	require.NoError(t, err)
	return twinFixture{a: a, b: b, chart: chart, last: info}
}

// twin returns a bundle from a to b carrying a twin of the last change,
// shifted later by the given time (distinct shifts, distinct twins).
func (f twinFixture) twin(t *testing.T, shift time.Duration) []byte {
	t.Helper()
	info := f.last
	info.Time = info.Time.Add(shift)
	raw, err := crdt.EncodeChange(info)
	require.NoError(t, err)
	return encode(t, replica.Bundle{From: f.a.ID(), To: f.b.ID(), Changes: []replica.BundleChange{{Chart: f.chart, Raw: raw}}})
}

// A refused bundle tried again (a file left on a stick is read at every
// import) is refused again, but kept in the quarantine once.
func TestARefusedBundleIsQuarantinedOnce(t *testing.T) {
	ctx := context.Background()
	f := newTwinFixture(t)
	data := f.twin(t, time.Second)
	for range 3 {
		_, err := f.b.Receive(ctx, data)
		require.ErrorIs(t, err, replica.ErrMalformedBundle)
	}
	q, err := f.b.Quarantined(ctx)
	require.NoError(t, err)
	assert.Len(t, q, 1)
}

// A change stored before changes were judged as Automerge does (a
// sequence number skipped) no longer breaks its chart: the chart is read
// without it, and that is reported.
func TestAStoredChangeTheChartCannotTakeIsLeftOut(t *testing.T) {
	r, st := newMem(t, replica.Config{})
	chart := register(t, r, "Wanjiru", "Mwangi", "Kamuga")
	last := edit(t, r, chart, allergy(1)).Change
	want := view(t, r, chart)
	storeSkippingChange(t, st, chart, last, false)

	r = reopenMem(t, r, st, replica.Config{})
	assert.Equal(t, want, view(t, r, chart), "the chart reads as it was before the bad change")
	assert.Equal(t, 1, r.RebuiltCharts())
	edit(t, r, chart, allergy(2))
}

// One peer cannot fill the quarantine: past MaxQuarantinedPerPeer of its
// refused bundles the rest are refused all the same but not kept.
func TestTheQuarantineKeepsABoundedNumberPerPeer(t *testing.T) {
	ctx := context.Background()
	f := newTwinFixture(t)
	for i := range replica.MaxQuarantinedPerPeer + 5 {
		_, err := f.b.Receive(ctx, f.twin(t, time.Duration(i+1)*time.Second))
		require.ErrorIs(t, err, replica.ErrMalformedBundle, "bundle %d", i)
	}
	q, err := f.b.Quarantined(ctx)
	require.NoError(t, err)
	assert.Len(t, q, replica.MaxQuarantinedPerPeer)
}

// A chart whose index entry names a stored change the chart cannot take
// (an older build stored and indexed it) is read without that change, and
// still takes what peers send: before, the entry's heads never matched
// the chart as read, so every bundle changing the chart failed as if
// another write had overtaken it, on every try, whether or not the
// chart's view was read (and cached) first. (Its document is not kept
// open in the cache with its entry ahead of it: the cache keeps a view,
// and a write rewrites the entry with the document's heads.)
func TestAChartIndexedPastAChangeItCannotTakeStillReceives(t *testing.T) {
	for _, tc := range []struct {
		name   string
		viewed bool // the chart's view is read (and cached) before the bundle
	}{{"not read before", false}, {"its view read before", true}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			r, peer, chart := indexedPastABadChange(t, replica.Config{})
			if tc.viewed {
				view(t, r, chart)
			}

			sent := edit(t, peer, chart, allergy(2)).Change
			b, err := peer.MakeBundle(ctx, r.ID())
			require.NoError(t, err)
			res, err := r.Receive(ctx, b.Data)
			require.NoError(t, err)
			assert.Equal(t, 1, res.Applied)
			heads, err := r.Heads(ctx, chart)
			require.NoError(t, err)
			assert.Equal(t, crdt.Heads{sent.Hash}, heads, "the peer's change is the chart's head")
			assert.Equal(t, view(t, peer, chart), view(t, r, chart))
		})
	}
}

// A chart indexed past a change it cannot take, which a local edit
// overtakes while a receive plans a bundle changing it, is still seen to
// have moved: the bundle is planned again, and the edit and the bundle's
// change are both kept.
func TestAChartIndexedPastAChangeItCannotTakeIsSeenToMove(t *testing.T) {
	ctx := context.Background()
	r, peer, chart := indexedPastABadChange(t, replica.Config{CheckAuthors: true})
	edit(t, peer, chart, allergy(2))
	var plans atomic.Int32
	r.SetAfterPlan(func(from string) {
		if from == peer.ID() && plans.Add(1) == 1 {
			edit(t, r, chart, allergy(3))
		}
	})
	b, err := peer.MakeBundle(ctx, r.ID())
	require.NoError(t, err)
	res, err := r.Receive(ctx, b.Data)
	require.NoError(t, err)
	assert.Equal(t, 1, res.Applied)
	assert.Equal(t, int32(2), plans.Load())
	assert.Len(t, view(t, r, chart).Allergies, 3)
}

// storeSkippingChange stores, as an older build could have, a change to
// chart made on last that skips sequence numbers, which the chart cannot
// take; with indexed, the chart's index entry names it as its head.
func storeSkippingChange(t *testing.T, st store.Store, chart string, last crdt.Change, indexed bool) {
	t.Helper()
	ctx := context.Background()
	info, err := crdt.ChangeOps(last.Raw)
	require.NoError(t, err)
	info.Seq += 5
	raw, err := crdt.EncodeChange(info)
	require.NoError(t, err)
	bad, err := crdt.ParseChange(raw)
	require.NoError(t, err)
	b := store.Batch{Changes: []store.NewChange{{Chart: chart, Hash: bad.Hash, Raw: raw}}}
	if indexed {
		row, err := st.Chart(ctx, chart)
		require.NoError(t, err)
		row.Heads = crdt.Heads{bad.Hash}
		b.Charts = []store.Chart{row}
	}
	_, err = st.Write(ctx, b)
	require.NoError(t, err)
}

// indexedPastABadChange returns a replica (opened with cfg) holding a
// chart whose index entry names a stored change the chart cannot take,
// and a peer that holds the chart as it was before that change.
func indexedPastABadChange(t *testing.T, cfg replica.Config) (r, peer *replica.Replica, chart string) {
	t.Helper()
	r, st := newMem(t, cfg)
	peer, _ = newMem(t, replica.Config{})
	chart = register(t, r, "Wanjiru", "Mwangi", "Kamuga")
	last := edit(t, r, chart, allergy(1)).Change
	syncAll(t, [2]*replica.Replica{r, peer})
	storeSkippingChange(t, st, chart, last, true)
	return reopenMem(t, r, st, cfg), peer, chart
}
