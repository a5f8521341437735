package replica

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica/store"
)

var cacheTestDoctor = record.Author{UserID: "u-baraka", Name: "Dr Baraka", Role: record.RoleClinician, Device: "laptop-2"}

// keepStore lets two replicas share an in-memory store: closing one does
// not close the store.
type keepStore struct{ *store.Mem }

func (keepStore) Close() error { return nil }

// openDocuments counts the charts the cache holds with their Automerge
// document open.
func openDocuments(t *testing.T, r *Replica) int {
	t.Helper()
	unlock, err := r.lock()
	require.NoError(t, err)
	defer unlock()
	n := 0
	for e := r.cache.order.Front(); e != nil; e = e.Next() {
		if e.Value.(*entry).l != nil {
			n++
		}
	}
	return n
}

// A chart viewed once is viewed again from its cached view: no document
// is loaded, and between calls the cache holds none open.
func TestCachedViewLoadsNoDocument(t *testing.T) {
	ctx := context.Background()
	r, ids := cacheTestReplica(t, 4, 3)
	assert.Zero(t, openDocuments(t, r), "a registration keeps no document open once done")

	first, err := r.Chart(ctx, ids[0])
	require.NoError(t, err)
	loads := r.loads.Load()
	for range 5 {
		v, err := r.Chart(ctx, ids[0])
		require.NoError(t, err)
		assert.Equal(t, first, v, "a cached view is the view read")
	}
	assert.Equal(t, loads, r.loads.Load(), "a cached view loads no document")
	assert.Zero(t, openDocuments(t, r), "the cache keeps views, not documents")
	assert.Equal(t, 1, r.cache.len())

	_, err = r.Chart(ctx, ids[1])
	require.NoError(t, err)
	assert.Equal(t, loads+1, r.loads.Load(), "a chart not cached is loaded")
	assert.Zero(t, openDocuments(t, r))
}

// A write to a viewed chart, by an edit or a received bundle, loads its
// document, changes it, and closes it; the view the cache keeps is the
// chart's new one, so that the next view loads nothing and shows the
// change.
func TestCachedViewFollowsWritesAndReceives(t *testing.T) {
	ctx := context.Background()
	at := func() time.Time { return time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC) }
	for _, tc := range []struct {
		name  string
		write func(t *testing.T, r, peer *Replica, id string) // adds an allergy
	}{
		{"edit", func(t *testing.T, r, _ *Replica, id string) {
			_, err := r.Edit(ctx, id, cacheTestDoctor, record.AddAllergy{Substance: "sulfa", Reaction: "rash", Severity: "mild"})
			require.NoError(t, err)
		}},
		{"receive", func(t *testing.T, r, peer *Replica, id string) {
			_, err := peer.Edit(ctx, id, cacheTestDoctor, record.AddAllergy{Substance: "sulfa", Reaction: "rash", Severity: "mild"})
			require.NoError(t, err)
			out, err := peer.MakeBundle(ctx, r.ID())
			require.NoError(t, err)
			got, err := r.Receive(ctx, out.Data)
			require.NoError(t, err)
			require.Equal(t, 1, got.Applied)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := New(ctx, store.NewMem(), Config{Now: at})
			require.NoError(t, err)
			t.Cleanup(func() { _ = r.Close() })
			peer, err := New(ctx, store.NewMem(), Config{Now: at})
			require.NoError(t, err)
			t.Cleanup(func() { _ = peer.Close() })
			id, err := r.Register(ctx, cacheTestNurse, record.Register{GivenName: "Wanjiru", FamilyName: "Mwangi", Sex: "female", EstimatedBirthYear: 1988, HomeClinic: "kamuga-dispensary"})
			require.NoError(t, err)
			_, err = SyncPair(ctx, r, peer)
			require.NoError(t, err)
			before, err := r.Chart(ctx, id)
			require.NoError(t, err)
			require.Empty(t, before.Allergies)

			loads := r.loads.Load()
			tc.write(t, r, peer, id)
			assert.Equal(t, loads+1, r.loads.Load(), "the write loads the chart's document")
			assert.LessOrEqual(t, openDocuments(t, r), openWritten)

			v, err := r.Chart(ctx, id)
			require.NoError(t, err)
			require.Len(t, v.Allergies, 1, "the view after the write shows it")
			assert.Equal(t, loads+1, r.loads.Load(), "the view after the write loads no document")
			assert.NotEqual(t, before.Heads, v.Heads)
			fresh, err := New(ctx, keepStore{r.st.(*store.Mem)}, Config{Now: at})
			require.NoError(t, err)
			t.Cleanup(func() { _ = fresh.Close() })
			want, err := fresh.Chart(ctx, id)
			require.NoError(t, err)
			assert.Equal(t, want, v, "the cached view is the chart's view as stored")
		})
	}
}

// The documents of the few charts a replica wrote last stay open, so
// that the next edit of one does not load it again; no more than
// openWritten of them, whatever the cache's bound.
func TestWrittenChartsStayOpenBounded(t *testing.T) {
	ctx := context.Background()
	r, ids := cacheTestReplica(t, 16, 10)
	allergy := func(id string, n int) {
		t.Helper()
		_, err := r.Edit(ctx, id, cacheTestDoctor, record.AddAllergy{Substance: fmt.Sprintf("s%d", n), Reaction: "rash", Severity: "mild"})
		require.NoError(t, err)
	}
	loads := r.loads.Load()
	allergy(ids[0], 0)
	allergy(ids[0], 1)
	allergy(ids[0], 2)
	assert.Equal(t, loads+1, r.loads.Load(), "a chart edited again is not loaded again")
	assert.Equal(t, 1, openDocuments(t, r))
	for i, id := range ids {
		allergy(id, 10+i)
		assert.LessOrEqual(t, openDocuments(t, r), openWritten, "after editing chart %d", i)
	}
	assert.Equal(t, openWritten, openDocuments(t, r))
	v, err := r.Chart(ctx, ids[0])
	require.NoError(t, err)
	assert.Len(t, v.Allergies, 4, "a chart let go of is read again from the store")
	closed := r.cache.closed
	require.NoError(t, r.Close())
	assert.Equal(t, closed+openWritten, r.cache.closed, "closing the replica closes the documents left open")
}

// Whatever edits, receives and views two replicas make, with caches
// smaller than their charts, every view a replica gives equals the view
// a replica with nothing cached reads from the same store.
func TestPropertyCachedViewsAgree(t *testing.T) {
	ctx := context.Background()
	at := func() time.Time { return time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC) }
	rapid.Check(t, func(rt *rapid.T) {
		cfg := Config{Now: at, CacheCharts: rapid.IntRange(1, 3).Draw(rt, "cache charts"), CompactAfter: rapid.SampledFrom([]int{1, 3, 64}).Draw(rt, "compact after")}
		var reps [2]*Replica
		var mems [2]*store.Mem
		for i := range reps {
			mems[i] = store.NewMem()
			r, err := New(ctx, keepStore{mems[i]}, cfg)
			require.NoError(rt, err)
			defer r.Close()
			reps[i] = r
		}
		var ids []string
		sync := func(from, to int) {
			out, err := reps[from].MakeBundle(ctx, reps[to].ID())
			require.NoError(rt, err)
			_, err = reps[to].Receive(ctx, out.Data)
			require.NoError(rt, err)
		}
		held := func(i int, id string) bool {
			_, err := reps[i].Heads(ctx, id)
			return err == nil
		}
		rt.Repeat(map[string]func(*rapid.T){
			"register": func(rt *rapid.T) {
				i := rapid.IntRange(0, 1).Draw(rt, "replica")
				id, err := reps[i].Register(ctx, cacheTestNurse, record.Register{
					GivenName: fmt.Sprintf("Given%d", len(ids)), FamilyName: "Okafor", Sex: "female", EstimatedBirthYear: 1988, HomeClinic: "kamuga-dispensary",
				})
				require.NoError(rt, err)
				ids = append(ids, id)
			},
			"edit": func(rt *rapid.T) {
				if len(ids) == 0 {
					rt.Skip("no chart")
				}
				i := rapid.IntRange(0, 1).Draw(rt, "replica")
				id := rapid.SampledFrom(ids).Draw(rt, "chart")
				if !held(i, id) {
					rt.Skip("chart not held")
				}
				n := rapid.IntRange(0, 999).Draw(rt, "n")
				village := fmt.Sprintf("Village%d", n)
				op := rapid.SampledFrom([]record.Op{
					record.AddAllergy{Substance: fmt.Sprintf("s%d", n), Reaction: "rash", Severity: "mild"},
					record.AddEncounter{Complaint: "fever", Note: fmt.Sprintf("Temperature 38.%d, given paracetamol.", n%10)},
					record.Prescribe{Drug: fmt.Sprintf("Drug%d", n), Dose: 500, DoseUnit: "mg", Route: "oral", Frequency: "TDS", DurationDays: 5},
					record.UpdateDemographics{Village: &village},
					record.RecordLabResult{Test: "Malaria RDT", TextValue: rapid.SampledFrom([]string{"positive", "negative"}).Draw(rt, "rdt"),
						RefText: "negative", AbnormalTexts: []string{"positive"}, SpecimenAt: at().Add(-time.Duration(n) * time.Minute).In(time.FixedZone("EAT", 3*3600))},
					record.RecordLabResult{Test: "Haemoglobin", Value: record.Ptr(float64(n) / 50), Unit: "g/dL", RefLow: record.Ptr(12.0), RefHigh: record.Ptr(16.0), CriticalLow: record.Ptr(7.0), SpecimenAt: at()},
				}).Draw(rt, "op")
				if _, err := reps[i].Edit(ctx, id, cacheTestDoctor, op); errors.Is(err, record.ErrInvalid) {
					rt.Skip("the edit changes nothing")
				} else {
					require.NoError(rt, err)
				}
			},
			"sync": func(rt *rapid.T) {
				from := rapid.IntRange(0, 1).Draw(rt, "from")
				sync(from, 1-from)
			},
			"view": func(rt *rapid.T) {
				if len(ids) == 0 {
					rt.Skip("no chart")
				}
				i := rapid.IntRange(0, 1).Draw(rt, "replica")
				id := rapid.SampledFrom(ids).Draw(rt, "chart")
				if !held(i, id) {
					rt.Skip("chart not held")
				}
				got, err := reps[i].Chart(ctx, id)
				require.NoError(rt, err)
				fresh, err := New(ctx, keepStore{mems[i]}, cfg)
				require.NoError(rt, err)
				defer fresh.Close()
				want, err := fresh.Chart(ctx, id)
				require.NoError(rt, err)
				require.Equal(rt, want, got, "replica %d's view of chart %s is the chart as stored", i, id)
			},
		})
	})
}
