package replica_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/store"
)

// unreadable is a store whose chart IDs in bad cannot be read back.
type unreadable struct {
	store.Store
	mu  sync.Mutex
	bad map[string]bool
}

var errUnreadable = errors.New("test: chart cannot be read")

func (u *unreadable) ChartChanges(ctx context.Context, chart string, after uint64) ([]store.Change, error) {
	u.mu.Lock()
	bad := u.bad[chart]
	u.mu.Unlock()
	if bad {
		return nil, errUnreadable
	}
	return u.Store.ChartChanges(ctx, chart, after)
}

func (u *unreadable) Close() error { return nil }

// TestReceiveReadsItsChartsTogether: a bundle that changes many charts
// the replica holds, none of them cached, reads them all (on several
// cores at once) and applies it as one; one chart the store cannot read
// refuses the whole bundle, with the store's error, and changes nothing,
// and the same bundle is taken once the chart reads again.
func TestReceiveReadsItsChartsTogether(t *testing.T) {
	ctx := context.Background()
	device, _ := newMem(t, replica.Config{})
	st := &unreadable{Store: store.NewMem(), bad: map[string]bool{}}
	cloud, err := replica.New(ctx, st, replica.Config{CacheCharts: 1})
	require.NoError(t, err)
	t.Cleanup(func() { _ = cloud.Close() })

	var charts []string
	for i := range 24 {
		charts = append(charts, register(t, device, "Patient", "Number", "Kamuga"))
		edit(t, device, charts[i], allergy(i))
	}
	_, err = replica.SyncPair(ctx, device, cloud)
	require.NoError(t, err)
	for i, c := range charts {
		edit(t, device, c, allergy(100+i))
	}
	before := map[string]int{}
	for _, c := range charts {
		before[c] = len(view(t, cloud, c).Allergies)
	}

	st.mu.Lock()
	st.bad[charts[17]] = true
	st.mu.Unlock()
	b, err := device.MakeBundle(ctx, cloud.ID())
	require.NoError(t, err)
	_, err = cloud.Receive(ctx, b.Data)
	require.ErrorIs(t, err, errUnreadable)
	st.mu.Lock()
	st.bad = map[string]bool{}
	st.mu.Unlock()
	for _, c := range charts {
		assert.Len(t, view(t, cloud, c).Allergies, before[c], "a refused bundle changes no chart")
	}

	got, err := cloud.Receive(ctx, b.Data)
	require.NoError(t, err)
	assert.Len(t, got.Charts, len(charts))
	requireSameCharts(t, device, cloud)
}
