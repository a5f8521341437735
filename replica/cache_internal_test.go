package replica

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica/store"
)

var cacheTestNurse = record.Author{UserID: "u-amina", Name: "Amina", Role: record.RoleNurse, Device: "tablet-1"}

func cacheTestReplica(t *testing.T, cacheCharts, charts int) (*Replica, []string) {
	t.Helper()
	ctx := context.Background()
	r, err := New(ctx, store.NewMem(), Config{CacheCharts: cacheCharts, Now: func() time.Time { return time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC) }})
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Close() })
	ids := make([]string, charts)
	for i := range ids {
		ids[i], err = r.Register(ctx, cacheTestNurse, record.Register{
			GivenName: fmt.Sprintf("Given%d", i), FamilyName: "Okafor", Sex: "female", EstimatedBirthYear: 1988,
			Village: "Kamuga", HomeClinic: "kamuga-dispensary",
		})
		require.NoError(t, err)
	}
	return r, ids
}

// A chart the cache lets go of has its document closed, but only once
// the write lock is given up: a call that read it under the lock keeps
// using it even when a later read in the same call evicts it.
func TestCacheClosesEvictedChartsWhenUnlocked(t *testing.T) {
	ctx := context.Background()
	r, ids := cacheTestReplica(t, 1, 2)

	unlock, err := r.lock()
	require.NoError(t, err)
	a, err := r.load(ctx, ids[0])
	require.NoError(t, err)
	_, err = r.load(ctx, ids[1]) // evicts a
	require.NoError(t, err)
	_, err = a.chart.View()
	require.NoError(t, err, "a chart evicted under the lock is still readable until the lock is given up")
	unlock()

	_, err = a.doc.Changes(nil)
	assert.ErrorIs(t, err, crdt.ErrClosed, "an evicted chart's document is closed once the lock is given up")
	_, err = r.Chart(ctx, ids[0])
	assert.NoError(t, err, "an evicted chart is read again from the store")
}

// Views and edits of more charts than the cache holds, from several
// goroutines, never meet a closed document, while the cache closes
// what it evicts.
func TestConcurrentViewsWhileTheCacheEvicts(t *testing.T) {
	ctx := context.Background()
	r, ids := cacheTestReplica(t, 2, 6)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 30 {
				id := ids[(g*7+i*5)%len(ids)]
				if i%5 == 0 {
					_, err := r.Edit(ctx, id, cacheTestNurse, record.AddAllergy{Substance: fmt.Sprintf("s%d-%d", g, i), Reaction: "rash", Severity: "mild"})
					assert.NoError(t, err, "edit chart %s", id)
					continue
				}
				_, err := r.Chart(ctx, id)
				assert.NoError(t, err, "view chart %s", id)
			}
		}()
	}
	wg.Wait()
	unlock, err := r.lock()
	require.NoError(t, err)
	closed := r.cache.closed
	unlock()
	assert.Positive(t, closed, "the cache closed the documents it evicted")
}
