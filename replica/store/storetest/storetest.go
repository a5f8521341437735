// Package storetest is the conformance suite every store.Store runs:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) storetest.Opened { ... })
//	}
package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/replica/store"
)

// Opened is a fresh, empty store under test. Reopen, if not nil, closes
// Store and opens the same storage again, to check what survives.
type Opened struct {
	Store  store.Store
	Reopen func(t *testing.T) store.Store
	// FailWrites, if not nil, makes the storage fail as a faulty disk
	// would (a failed fsync, say) until heal is called, to check that a
	// failed Write keeps its word.
	FailWrites func(t *testing.T) (heal func())
	// Crash, if not nil, returns a store over what a process killed at
	// this instant would leave of Store's storage (a copy: Store stays
	// open).
	Crash func(t *testing.T) store.Store
}

func change(chart string, n int, from string) store.NewChange {
	raw := []byte(fmt.Sprintf("change %d of %s", n, chart))
	return store.NewChange{Chart: chart, Hash: sha256.Sum256(raw), Raw: raw, From: from}
}

// Run runs the suite. open must return a fresh, empty store each call.
func Run(t *testing.T, open func(t *testing.T) Opened) {
	ctx := context.Background()

	t.Run("EmptyStore", func(t *testing.T) {
		s := open(t).Store
		head, err := s.Head(ctx)
		require.NoError(t, err)
		assert.Zero(t, head)
		_, err = s.Meta(ctx, "replica_id")
		assert.ErrorIs(t, err, store.ErrNotFound)
		_, err = s.Chart(ctx, "nope")
		assert.ErrorIs(t, err, store.ErrNotFound)
		_, err = s.Snapshot(ctx, "nope")
		assert.ErrorIs(t, err, store.ErrNotFound)
		peers, err := s.Peers(ctx)
		require.NoError(t, err)
		assert.Empty(t, peers)
	})

	t.Run("LogIsOrderedAndDeduplicated", func(t *testing.T) {
		s := open(t).Store
		head, err := s.Write(ctx, store.Batch{Changes: []store.NewChange{change("a", 1, ""), change("b", 1, "p1"), change("a", 2, "")}})
		require.NoError(t, err)
		assert.Equal(t, uint64(3), head)
		head, err = s.Write(ctx, store.Batch{Changes: []store.NewChange{change("a", 2, "p2"), change("a", 3, "p2"), change("a", 3, "p2")}})
		require.NoError(t, err)

		all, err := s.Log(ctx, 0, 0)
		require.NoError(t, err)
		require.Len(t, all, 4, "a change already stored, or repeated in a batch, is stored once")
		assertIncreasing(t, all)
		assert.Equal(t, all[3].Seq, head, "Write returns the log head")
		assert.Equal(t, "", all[2].From, "the first writer's provenance is kept")
		assert.Equal(t, change("a", 3, "").Raw, all[3].Raw)

		page, err := s.Log(ctx, all[0].Seq, 2)
		require.NoError(t, err)
		require.Len(t, page, 2)
		assert.Equal(t, []uint64{all[1].Seq, all[2].Seq}, []uint64{page[0].Seq, page[1].Seq})

		ac, err := s.ChartChanges(ctx, "a", all[0].Seq)
		require.NoError(t, err)
		require.Len(t, ac, 2)
		assert.Equal(t, []uint64{all[2].Seq, all[3].Seq}, []uint64{ac[0].Seq, ac[1].Seq})

		known, err := s.Known(ctx, []crdt.Hash{change("a", 1, "").Hash, change("z", 1, "").Hash})
		require.NoError(t, err)
		assert.Equal(t, map[crdt.Hash]bool{change("a", 1, "").Hash: true}, known)

		n, err := s.CountAfter(ctx, all[0].Seq, "p2")
		require.NoError(t, err)
		assert.Equal(t, 2, n, "changes 2 and 3 were not received from p2; 4 was")
	})

	t.Run("SignaturesAreKept", func(t *testing.T) {
		o := open(t)
		s := o.Store
		signed := change("a", 1, "p1")
		signed.Sig = bytes.Repeat([]byte{0xab}, 64)
		resigned := signed
		resigned.Sig = bytes.Repeat([]byte{0xcd}, 64)
		_, err := s.Write(ctx, store.Batch{Changes: []store.NewChange{signed, change("a", 2, "")}})
		require.NoError(t, err)
		_, err = s.Write(ctx, store.Batch{Changes: []store.NewChange{resigned}})
		require.NoError(t, err)
		check := func(s store.Store) {
			all, err := s.Log(ctx, 0, 0)
			require.NoError(t, err)
			require.Len(t, all, 2)
			assert.Equal(t, signed.Sig, all[0].Sig, "a change keeps the signature it was first stored with")
			assert.Nil(t, all[1].Sig, "an unsigned change reads back with a nil signature")
			byChart, err := s.ChartChanges(ctx, "a", 0)
			require.NoError(t, err)
			require.Len(t, byChart, 2)
			assert.Equal(t, signed.Sig, byChart[0].Sig)
			all[0].Sig[0] ^= 0xff
			again, err := s.Log(ctx, 0, 1)
			require.NoError(t, err)
			assert.Equal(t, signed.Sig, again[0].Sig, "a returned signature belongs to the caller")
		}
		check(s)
		if o.Reopen != nil {
			check(o.Reopen(t))
		}
	})

	t.Run("ReturnedSlicesBelongToCaller", func(t *testing.T) {
		s := open(t).Store
		_, err := s.Write(ctx, store.Batch{Changes: []store.NewChange{change("a", 1, "")}})
		require.NoError(t, err)
		got, err := s.Log(ctx, 0, 0)
		require.NoError(t, err)
		got[0].Raw[0] ^= 0xff
		again, err := s.Log(ctx, 0, 0)
		require.NoError(t, err)
		assert.Equal(t, change("a", 1, "").Raw, again[0].Raw)
	})

	t.Run("ChartsAreFoundAndSorted", func(t *testing.T) {
		s := open(t).Store
		now := time.Date(2026, 11, 3, 8, 0, 0, 0, time.UTC)
		h := crdt.Heads{sha256.Sum256([]byte("h"))}
		_, err := s.Write(ctx, store.Batch{Charts: []store.Chart{
			{ID: "c3", GivenName: "Amina", FamilyName: "Bello", Village: "Kaduna", NationalID: "NG-77", Heads: h, Updated: now},
			{ID: "c1", GivenName: "Ravi", FamilyName: "Kumar", Village: "Anandpur", NationalID: "ABHA-91-1234", HomeClinic: "clinic-a", Updated: now},
			{ID: "c2", GivenName: "Asha", FamilyName: "Kumar", Village: "Anandpur", Updated: now},
			{ID: "r1", Kind: store.KindUsers, HomeClinic: "clinic-a", Scope: []string{"clinic-a"}, Updated: now},
		}})
		require.NoError(t, err)
		roster, err := s.Chart(ctx, "r1")
		require.NoError(t, err)
		assert.Equal(t, store.KindUsers, roster.Kind, "a document's kind is kept")
		rosters, err := s.Charts(ctx, store.Query{Kind: store.KindUsers})
		require.NoError(t, err)
		require.Len(t, rosters, 1, "a query of a kind finds only that kind")
		assert.Equal(t, "r1", rosters[0].ID)

		got, err := s.Chart(ctx, "c3")
		require.NoError(t, err)
		assert.Equal(t, "Amina", got.GivenName)
		assert.Equal(t, h, got.Heads)
		assert.True(t, got.Updated.Equal(now))

		tests := []struct {
			text  string
			limit int
			want  []string
		}{
			{"", 0, []string{"c3", "c2", "c1"}},
			{"kumar", 0, []string{"c2", "c1"}},
			{"ANANDPUR", 1, []string{"c2"}},
			{"91-12", 0, []string{"c1"}},
			{"c3", 0, []string{"c3"}},
			{"nobody", 0, nil},
		}
		for _, tt := range tests {
			cs, err := s.Charts(ctx, store.Query{Text: tt.text, Limit: tt.limit})
			require.NoError(t, err)
			var ids []string
			for _, c := range cs {
				ids = append(ids, c.ID)
			}
			assert.Equal(t, tt.want, ids, "query %q", tt.text)
		}

		_, err = s.Write(ctx, store.Batch{Charts: []store.Chart{{ID: "c3", GivenName: "Amina", FamilyName: "Musa", Updated: now}}})
		require.NoError(t, err)
		got, err = s.Chart(ctx, "c3")
		require.NoError(t, err)
		assert.Equal(t, "Musa", got.FamilyName, "charts are upserted")
	})

	runSearch(t, open)

	t.Run("SnapshotCoversLogHead", func(t *testing.T) {
		s := open(t).Store
		_, err := s.Write(ctx, store.Batch{Changes: []store.NewChange{change("a", 1, ""), change("b", 1, "")}})
		require.NoError(t, err)
		head, err := s.Write(ctx, store.Batch{Changes: []store.NewChange{change("a", 2, "")}, Snapshots: []store.NewSnapshot{{Chart: "a", Data: []byte("snap1")}}})
		require.NoError(t, err)
		snap, err := s.Snapshot(ctx, "a")
		require.NoError(t, err)
		assert.Equal(t, store.Snapshot{Chart: "a", Seq: head, Data: []byte("snap1")}, snap)
		_, err = s.Write(ctx, store.Batch{Snapshots: []store.NewSnapshot{{Chart: "a", Data: []byte("snap2")}}})
		require.NoError(t, err)
		snap, err = s.Snapshot(ctx, "a")
		require.NoError(t, err)
		assert.Equal(t, []byte("snap2"), snap.Data, "a snapshot replaces the previous one")
	})

	t.Run("ScopeAndGrants", func(t *testing.T) {
		s := open(t).Store
		_, err := s.Write(ctx, store.Batch{
			Changes: []store.NewChange{change("a", 1, "")},
			Charts:  []store.Chart{{ID: "a", HomeClinic: "north", Scope: []string{"north"}}, {ID: "b"}},
			Grants:  []store.NewGrant{{Chart: "a", Clinic: "north"}},
		})
		require.NoError(t, err)
		h2, err := s.Write(ctx, store.Batch{
			Changes: []store.NewChange{change("a", 2, ""), change("b", 1, "")},
			Charts:  []store.Chart{{ID: "a", HomeClinic: "north", Scope: []string{"north", "south"}}},
			Grants:  []store.NewGrant{{Chart: "a", Clinic: "south"}, {Chart: "b", Clinic: "north"}},
		})
		require.NoError(t, err)
		a, err := s.Chart(ctx, "a")
		require.NoError(t, err)
		assert.Equal(t, []string{"north", "south"}, a.Scope, "a chart's scope is stored with its index entry")
		b, err := s.Chart(ctx, "b")
		require.NoError(t, err)
		assert.Empty(t, b.Scope)

		north, err := s.Grants(ctx, "north", 0, h2)
		require.NoError(t, err)
		require.Len(t, north, 2)
		assert.Equal(t, store.Grant{Chart: "a", Clinic: "north", Seq: 1}, north[0], "a clinic joining a chart is recorded at its batch's first log position")
		require.Equal(t, uint64(3), h2, "the second batch adds two changes")
		assert.Equal(t, store.Grant{Chart: "b", Clinic: "north", Seq: 2}, north[1], "a join's Seq is its batch's first log position, not the head after it")
		after, err := s.Grants(ctx, "north", 1, h2)
		require.NoError(t, err)
		assert.Equal(t, []store.Grant{{Chart: "b", Clinic: "north", Seq: 2}}, after, "grants at or before after are left out")
		upto, err := s.Grants(ctx, "south", 0, 1)
		require.NoError(t, err)
		assert.Empty(t, upto, "grants after upto are left out")
		none, err := s.Grants(ctx, "east", 0, h2)
		require.NoError(t, err)
		assert.Empty(t, none)

		h3, err := s.Write(ctx, store.Batch{
			Changes: []store.NewChange{change("a", 3, "")},
			Grants:  []store.NewGrant{{Chart: "a", Clinic: "south", Revoked: true}},
		})
		require.NoError(t, err)
		south, err := s.Grants(ctx, "south", 0, h3)
		require.NoError(t, err)
		assert.Equal(t, []store.Grant{{Chart: "a", Clinic: "south", Seq: 2}, {Chart: "a", Clinic: "south", Seq: h3, Revoked: true}}, south,
			"a clinic leaving a chart's scope is recorded too, at the log head after its batch")

		// A batch that adds no change records a join at the position its
		// next change will take, which no bundle made before it can cover.
		_, err = s.Write(ctx, store.Batch{Grants: []store.NewGrant{{Chart: "b", Clinic: "east"}}})
		require.NoError(t, err)
		east, err := s.Grants(ctx, "east", h3, h3+1)
		require.NoError(t, err)
		assert.Equal(t, []store.Grant{{Chart: "b", Clinic: "east", Seq: h3 + 1}}, east)
	})

	t.Run("LogForAClinic", func(t *testing.T) {
		o := open(t)
		s := o.Store
		// b's first change comes before its index entry; d never has one.
		_, err := s.Write(ctx, store.Batch{Changes: []store.NewChange{change("a", 1, ""), change("b", 1, "p1"), change("d", 1, "")}})
		require.NoError(t, err)
		_, err = s.Write(ctx, store.Batch{
			Changes: []store.NewChange{change("a", 2, "p1"), change("c", 1, "")},
			Charts: []store.Chart{{ID: "a", Scope: []string{"north"}}, {ID: "b", Scope: []string{"south"}},
				{ID: "c", Scope: []string{"north", "south"}}},
		})
		require.NoError(t, err)
		_, err = s.Write(ctx, store.Batch{Changes: []store.NewChange{change("b", 2, ""), change("c", 2, "p1"), change("a", 3, ""), change("a", 1, "p2")}})
		require.NoError(t, err)
		logOf := func(s store.Store, q store.LogQuery) []string {
			t.Helper()
			got, err := s.LogFor(ctx, q)
			require.NoError(t, err)
			var out []string
			for i, c := range got {
				if i > 0 {
					require.Greater(t, c.Seq, got[i-1].Seq, "a clinic's log is in log order")
				}
				out = append(out, string(c.Raw))
			}
			return out
		}
		raw := func(chart string, n int) string { return string(change(chart, n, "").Raw) }
		assert.Equal(t, []string{raw("a", 1), raw("a", 2), raw("c", 1), raw("c", 2), raw("a", 3)}, logOf(s, store.LogQuery{Clinic: "north"}),
			"a clinic's log holds every change of the charts in its scope, stored before or after they joined it")
		assert.Equal(t, []string{raw("b", 1), raw("c", 1), raw("b", 2), raw("c", 2)}, logOf(s, store.LogQuery{Clinic: "south"}))
		assert.Empty(t, logOf(s, store.LogQuery{Clinic: "east"}), "a clinic with no chart has an empty log")
		assert.Equal(t, []string{raw("a", 1), raw("c", 1), raw("a", 3)}, logOf(s, store.LogQuery{Clinic: "north", NotFrom: "p1"}),
			"changes received from the peer are left out")
		assert.Equal(t, []string{raw("a", 1), raw("d", 1), raw("c", 1), raw("b", 2), raw("a", 3)}, logOf(s, store.LogQuery{NotFrom: "p1"}),
			"without a clinic, the whole log less the peer's changes")
		all, err := s.Log(ctx, 0, 0)
		require.NoError(t, err)
		require.Len(t, all, 8)
		assert.Equal(t, []string{raw("c", 2), raw("a", 3)}, logOf(s, store.LogQuery{Clinic: "north", After: all[4].Seq}), "only changes after After")
		assert.Equal(t, []string{raw("a", 2), raw("c", 1)}, logOf(s, store.LogQuery{Clinic: "north", After: all[0].Seq, Limit: 2}), "at most Limit changes")
		assert.Equal(t, []string{raw("c", 1), raw("a", 3)}, logOf(s, store.LogQuery{Clinic: "north", NotFrom: "p1", After: all[0].Seq, Limit: 2}),
			"the limit counts the changes returned, not those left out")
		assert.Equal(t, []string{raw("a", 2), raw("c", 1), raw("c", 2)}, logOf(s, store.LogQuery{Clinic: "north", After: all[0].Seq, Upto: all[6].Seq}),
			"only changes up to Upto")
		assert.Equal(t, []string{raw("a", 2), raw("a", 3)}, logOf(s, store.LogQuery{Chart: "a", After: all[0].Seq}), "only the chart's changes")
		assert.Equal(t, []string{raw("a", 1)}, logOf(s, store.LogQuery{Chart: "a", Clinic: "north", NotFrom: "p1", Upto: all[5].Seq}))
		assert.Empty(t, logOf(s, store.LogQuery{Chart: "a", Clinic: "south"}), "a chart outside the clinic's scope is not in its log")

		// a joins south's scope in a batch that adds a change to it; c
		// leaves north's; d gets its first index entry.
		_, err = s.Write(ctx, store.Batch{
			Changes: []store.NewChange{change("a", 4, "")},
			Charts: []store.Chart{{ID: "a", Scope: []string{"north", "south"}}, {ID: "c", Scope: []string{"south"}},
				{ID: "d", Scope: []string{"east"}}},
		})
		require.NoError(t, err)
		check := func(s store.Store) {
			assert.Equal(t, []string{raw("a", 1), raw("a", 2), raw("a", 3), raw("a", 4)}, logOf(s, store.LogQuery{Clinic: "north"}),
				"a chart that leaves a clinic's scope takes its changes out of the clinic's log")
			assert.Equal(t, []string{raw("a", 1), raw("b", 1), raw("a", 2), raw("c", 1), raw("b", 2), raw("c", 2), raw("a", 3), raw("a", 4)},
				logOf(s, store.LogQuery{Clinic: "south"}), "a chart that joins a clinic's scope brings all its changes, in log order")
			assert.Equal(t, []string{raw("d", 1)}, logOf(s, store.LogQuery{Clinic: "east"}), "a chart indexed after its changes brings them")
		}
		check(s)
		_, err = s.Write(ctx, store.Batch{Changes: []store.NewChange{change("a", 1, "p3"), change("c", 1, "p3")}, Charts: []store.Chart{{ID: "b", Scope: []string{"south"}}}})
		require.NoError(t, err)
		check(s) // a change stored again, or a scope written again unchanged, changes no log
		if o.Reopen != nil {
			check(o.Reopen(t))
		}
	})

	t.Run("LogForMatchesScopes", func(t *testing.T) {
		// A model: a clinic's log is the log filtered by the charts'
		// scopes as last written.
		charts, clinics, peers := []string{"a", "b", "c", "d"}, []string{"north", "south", "east"}, []string{"", "p1", "p2"}
		rapid.Check(t, func(rt *rapid.T) {
			s := open(t).Store
			scopes := map[string][]string{}
			for range rapid.IntRange(1, 8).Draw(rt, "batches") {
				var b store.Batch
				for range rapid.IntRange(0, 4).Draw(rt, "changes") {
					b.Changes = append(b.Changes, change(rapid.SampledFrom(charts).Draw(rt, "chart"), rapid.IntRange(1, 6).Draw(rt, "n"), rapid.SampledFrom(peers).Draw(rt, "from")))
				}
				for range rapid.IntRange(0, 2).Draw(rt, "charts") {
					c := store.Chart{ID: rapid.SampledFrom(charts).Draw(rt, "indexed")}
					for _, k := range clinics {
						if rapid.Bool().Draw(rt, "in scope of "+k) {
							c.Scope = append(c.Scope, k)
						}
					}
					b.Charts = append(b.Charts, c)
					scopes[c.ID] = c.Scope
				}
				_, err := s.Write(ctx, b)
				require.NoError(rt, err)
			}
			all, err := s.Log(ctx, 0, 0)
			require.NoError(rt, err)
			upto := uint64(0)
			if len(all) > 0 {
				upto = all[rapid.IntRange(0, len(all)-1).Draw(rt, "upto")].Seq
			}
			for _, k := range append(clinics, "") {
				for _, p := range peers {
					chart := rapid.SampledFrom(append(charts, "")).Draw(rt, "of chart")
					bounded := rapid.Bool().Draw(rt, "bounded")
					var want []store.Change
					for _, c := range all {
						if (k == "" || slices.Contains(scopes[c.Chart], k)) && (p == "" || c.From != p) &&
							(chart == "" || c.Chart == chart) && (!bounded || c.Seq <= upto) {
							want = append(want, c)
						}
					}
					q := store.LogQuery{Clinic: k, NotFrom: p, Chart: chart}
					if bounded {
						q.Upto = upto
					}
					got, err := s.LogFor(ctx, q)
					require.NoError(rt, err)
					require.Equal(rt, want, got, "the log of %+v", q)
					if len(want) > 1 {
						q.After, q.Limit = want[0].Seq, 1
						got, err = s.LogFor(ctx, q)
						require.NoError(rt, err)
						require.Equal(rt, want[1:2], got, "a page of the log of %+v", q)
					}
				}
			}
		})
	})

	t.Run("SyncReadsOnlyItsClinic", func(t *testing.T) {
		runSyncReadsOnlyItsClinic(t, open(t).Store)
	})

	t.Run("Quarantine", func(t *testing.T) {
		s := open(t).Store
		none, err := s.Quarantined(ctx)
		require.NoError(t, err)
		assert.Empty(t, none)
		at := time.Date(2026, 11, 3, 8, 0, 0, 0, time.UTC)
		q1 := store.Quarantined{From: "p1", At: at, Reason: "lab technician prescribing", Data: []byte("bundle-1")}
		q2 := store.Quarantined{From: "p2", At: at.Add(time.Minute), Reason: "forged author", Data: []byte("bundle-2")}
		_, err = s.Write(ctx, store.Batch{Quarantine: []store.Quarantined{q1}})
		require.NoError(t, err)
		_, err = s.Write(ctx, store.Batch{Quarantine: []store.Quarantined{q2}})
		require.NoError(t, err)
		got, err := s.Quarantined(ctx)
		require.NoError(t, err)
		require.Len(t, got, 2)
		assert.Equal(t, q1.From, got[0].From, "oldest first")
		assert.True(t, got[0].At.Equal(q1.At))
		assert.Equal(t, q1.Reason, got[0].Reason)
		assert.Equal(t, q1.Data, got[0].Data)
		assert.Equal(t, q2.Data, got[1].Data)
		head, err := s.Head(ctx)
		require.NoError(t, err)
		assert.Zero(t, head, "a quarantined bundle adds nothing to the log")
	})

	t.Run("PeersAndMeta", func(t *testing.T) {
		s := open(t).Store
		at := time.Date(2026, 11, 4, 10, 0, 0, 0, time.UTC)
		_, err := s.Write(ctx, store.Batch{
			Meta:  map[string]string{"replica_id": "r1"},
			Peers: []store.Peer{{ID: "p2", Acked: 5, Received: 7, LastSync: at}, {ID: "p1", Acked: 1}},
		})
		require.NoError(t, err)
		_, err = s.Write(ctx, store.Batch{Peers: []store.Peer{{ID: "p1", Acked: 3, Received: 2, LastSync: at}}})
		require.NoError(t, err)
		peers, err := s.Peers(ctx)
		require.NoError(t, err)
		require.Len(t, peers, 2)
		assert.Equal(t, "p1", peers[0].ID)
		assert.Equal(t, uint64(3), peers[0].Acked)
		assert.Equal(t, uint64(2), peers[0].Received)
		assert.True(t, peers[1].LastSync.Equal(at))
		v, err := s.Meta(ctx, "replica_id")
		require.NoError(t, err)
		assert.Equal(t, "r1", v)

		p1, err := s.Peer(ctx, "p1")
		require.NoError(t, err)
		assert.Equal(t, peers[0], p1, "one peer is looked up by ID")
		p2, err := s.Peer(ctx, "p2")
		require.NoError(t, err)
		assert.Equal(t, uint64(7), p2.Received)
		assert.True(t, p2.LastSync.Equal(at))
		_, err = s.Peer(ctx, "p3")
		assert.ErrorIs(t, err, store.ErrNotFound, "an unknown peer is not found")
	})

	t.Run("ExpectRefusesAChartThatMoved", func(t *testing.T) {
		s := open(t).Store
		h1 := crdt.Heads{change("a", 1, "").Hash}
		h2 := crdt.Heads{change("a", 2, "").Hash}
		_, err := s.Write(ctx, store.Batch{Changes: []store.NewChange{change("a", 1, "")}, Charts: []store.Chart{{ID: "a", Heads: h1, GivenName: "Amina"}},
			Expect: map[string]crdt.Heads{"a": nil}})
		require.NoError(t, err, "a chart expected to be new is written when it is")
		head, err := s.Head(ctx)
		require.NoError(t, err)

		refused := []store.Batch{
			{Changes: []store.NewChange{change("a", 2, "")}, Charts: []store.Chart{{ID: "a", Heads: h2, GivenName: "Other"}}, Expect: map[string]crdt.Heads{"a": nil}},
			{Changes: []store.NewChange{change("a", 2, "")}, Charts: []store.Chart{{ID: "a", Heads: h2, GivenName: "Other"}}, Expect: map[string]crdt.Heads{"a": h2}},
			{Changes: []store.NewChange{change("b", 1, "")}, Charts: []store.Chart{{ID: "a", Heads: h2}, {ID: "b", Heads: crdt.Heads{change("b", 1, "").Hash}}},
				Expect: map[string]crdt.Heads{"a": h1, "b": h1}, Meta: map[string]string{"k": "v"}},
		}
		for i, b := range refused {
			_, err := s.Write(ctx, b)
			require.ErrorIs(t, err, store.ErrConflict, "batch %d", i)
			now, err := s.Head(ctx)
			require.NoError(t, err)
			assert.Equal(t, head, now, "batch %d: nothing of a refused batch is written", i)
			a, err := s.Chart(ctx, "a")
			require.NoError(t, err)
			assert.Equal(t, "Amina", a.GivenName, "batch %d: the chart is as it was", i)
			assert.Equal(t, h1, a.Heads)
			_, err = s.Meta(ctx, "k")
			assert.ErrorIs(t, err, store.ErrNotFound)
		}
		_, err = s.Write(ctx, store.Batch{Changes: []store.NewChange{change("a", 2, "")}, Charts: []store.Chart{{ID: "a", Heads: h2, GivenName: "Amina"}},
			Expect: map[string]crdt.Heads{"a": h1}})
		require.NoError(t, err, "a chart as the writer read it is written")
		a, err := s.Chart(ctx, "a")
		require.NoError(t, err)
		assert.Equal(t, h2, a.Heads)
	})

	t.Run("CancelledWriteStoresNothing", func(t *testing.T) {
		s := open(t).Store
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, err := s.Write(cctx, store.Batch{Changes: []store.NewChange{change("a", 1, "")}, Meta: map[string]string{"k": "v"}})
		require.Error(t, err)
		head, err := s.Head(ctx)
		require.NoError(t, err)
		assert.Zero(t, head)
		_, err = s.Meta(ctx, "k")
		assert.ErrorIs(t, err, store.ErrNotFound)
	})

	t.Run("ConcurrentWritersGetDistinctSequences", func(t *testing.T) {
		s := open(t).Store
		var wg sync.WaitGroup
		const writers, each = 4, 25
		for w := range writers {
			wg.Go(func() {
				for i := range each {
					_, err := s.Write(ctx, store.Batch{Changes: []store.NewChange{change(fmt.Sprint("w", w), i, "")}})
					assert.NoError(t, err)
				}
			})
		}
		wg.Wait()
		all, err := s.Log(ctx, 0, 0)
		require.NoError(t, err)
		require.Len(t, all, writers*each)
		assertIncreasing(t, all)
	})

	t.Run("SurvivesReopen", func(t *testing.T) {
		o := open(t)
		if o.Reopen == nil {
			t.Skip("store is not persistent")
		}
		_, err := o.Store.Write(ctx, store.Batch{
			Changes:   []store.NewChange{change("a", 1, "p1")},
			Charts:    []store.Chart{{ID: "a", FamilyName: "Okafor"}},
			Snapshots: []store.NewSnapshot{{Chart: "a", Data: []byte("s")}},
			Peers:     []store.Peer{{ID: "p1", Received: 9}},
			Meta:      map[string]string{"replica_id": "r1"},
		})
		require.NoError(t, err)
		s := o.Reopen(t)
		all, err := s.Log(ctx, 0, 0)
		require.NoError(t, err)
		require.Len(t, all, 1)
		assert.Equal(t, "p1", all[0].From)
		c, err := s.Chart(ctx, "a")
		require.NoError(t, err)
		assert.Equal(t, "Okafor", c.FamilyName)
		snap, err := s.Snapshot(ctx, "a")
		require.NoError(t, err)
		assert.Equal(t, all[0].Seq, snap.Seq)
		peers, err := s.Peers(ctx)
		require.NoError(t, err)
		assert.Equal(t, uint64(9), peers[0].Received)
	})

	t.Run("FailedWriteKeepsItsWord", func(t *testing.T) {
		o := open(t)
		if o.FailWrites == nil {
			t.Skip("the store cannot be made to fail")
		}
		s := o.Store
		_, err := s.Write(ctx, store.Batch{Changes: []store.NewChange{change("a", 1, "")}})
		require.NoError(t, err)
		heal := o.FailWrites(t)
		failed := store.Batch{Changes: []store.NewChange{change("a", 2, "")}, Meta: map[string]string{"entered": "twice?"}}
		_, err = s.Write(ctx, failed)
		heal()
		require.Error(t, err, "the write fails on a failing disk")
		unknown := errors.Is(err, store.ErrOutcomeUnknown)
		held := func(s store.Store) bool {
			known, err := s.Known(ctx, []crdt.Hash{failed.Changes[0].Hash})
			require.NoError(t, err)
			_, merr := s.Meta(ctx, "entered")
			if merr != nil {
				require.ErrorIs(t, merr, store.ErrNotFound)
			}
			require.Equal(t, known[failed.Changes[0].Hash], merr == nil, "a batch is stored whole or not at all")
			return merr == nil
		}
		now := held(s)
		if !unknown {
			assert.False(t, now, "a write that failed without ErrOutcomeUnknown (%v) stored nothing", err)
		}
		if o.Crash != nil {
			assert.Equal(t, now, held(o.Crash(t)), "after %v a crash leaves what a re-read shows", err)
		}
		_, err = s.Write(ctx, store.Batch{Changes: []store.NewChange{change("a", 3, "")}})
		require.NoError(t, err, "the store writes again once the disk is healthy")
		if o.Crash != nil {
			assert.Equal(t, now, held(o.Crash(t)), "a later write does not change what became of a failed one")
		}
		if o.Reopen != nil {
			assert.Equal(t, now, held(o.Reopen(t)), "a restart agrees with the re-read")
		}
	})

	t.Run("ClosedStoreRefusesCalls", func(t *testing.T) {
		s := open(t).Store
		require.NoError(t, s.Close())
		_, err := s.Head(ctx)
		assert.ErrorIs(t, err, store.ErrClosed)
		_, err = s.Write(ctx, store.Batch{})
		assert.ErrorIs(t, err, store.ErrClosed)
	})
}

func assertIncreasing(t *testing.T, cs []store.Change) {
	t.Helper()
	for i := 1; i < len(cs); i++ {
		assert.Greater(t, cs[i].Seq, cs[i-1].Seq, "log positions increase")
	}
	if len(cs) > 0 {
		assert.Positive(t, cs[0].Seq)
	}
}
