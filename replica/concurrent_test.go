package replica_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/store"
)

// A replica serves edits, reads and sync at once: nothing fails, nothing
// acknowledged is lost, and the replicas converge.
func TestConcurrentEditsReadsAndSync(t *testing.T) {
	ctx := context.Background()
	for _, backend := range []string{"mem", "sqlite"} {
		t.Run(backend, func(t *testing.T) {
			cfg := replica.Config{CacheCharts: 2, CompactAfter: 3}
			var a, b *replica.Replica
			var ast, bst store.ChangeLog
			if backend == "mem" {
				a, ast = newMem(t, cfg)
				b, bst = newMem(t, cfg)
			} else {
				a, ast = openSQLite(t, tempDB(t, "a"), cfg)
				b, bst = openSQLite(t, tempDB(t, "b"), cfg)
			}
			var ids []string
			for i := range 4 {
				ids = append(ids, register(t, a, fmt.Sprintf("P%d", i), "Family", "Kamuga"))
			}
			_, err := replica.SyncPair(ctx, a, b)
			require.NoError(t, err)

			const edits = 40
			var mu sync.Mutex
			var acked []crdt.Hash
			var wg sync.WaitGroup
			errs := make(chan error, 16)
			editor := func(r *replica.Replica, n int) {
				defer wg.Done()
				for i := range edits {
					res, err := r.Edit(ctx, ids[(i+n)%len(ids)], doctor, allergy(n*1000+i))
					if err != nil {
						errs <- fmt.Errorf("editor %d edit %d: %w", n, i, err)
						return
					}
					mu.Lock()
					acked = append(acked, res.Change.Hash)
					mu.Unlock()
				}
			}
			done := make(chan struct{})
			syncer := func() {
				defer wg.Done()
				for {
					select {
					case <-done:
						return
					default:
					}
					if _, err := replica.SyncPair(ctx, a, b); err != nil {
						errs <- fmt.Errorf("sync: %w", err)
						return
					}
				}
			}
			reader := func(r *replica.Replica) {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-done:
						return
					default:
					}
					if _, err := r.Chart(ctx, ids[i%len(ids)]); err != nil {
						errs <- fmt.Errorf("read: %w", err)
						return
					}
					if _, err := r.Find(ctx, "family", 0); err != nil {
						errs <- fmt.Errorf("find: %w", err)
						return
					}
					if _, err := r.Peers(ctx); err != nil {
						errs <- fmt.Errorf("peers: %w", err)
						return
					}
				}
			}
			var editors sync.WaitGroup
			for n, r := range []*replica.Replica{a, a, b, b} {
				wg.Add(1)
				editors.Add(1)
				go func() { defer editors.Done(); editor(r, n) }()
			}
			wg.Add(3)
			go syncer()
			go reader(a)
			go reader(b)
			editors.Wait()
			close(done)
			wg.Wait()
			close(errs)
			for err := range errs {
				assert.NoError(t, err)
			}

			for range 3 {
				_, err := replica.SyncPair(ctx, a, b)
				require.NoError(t, err)
			}
			requireSameCharts(t, a, b)
			require.Len(t, acked, 4*edits)
			requireHasChanges(t, ast, acked, "replica a")
			requireHasChanges(t, bst, acked, "replica b")
		})
	}
}

// hookStore runs a hook before the first Log read, to make a write land
// while a bundle is being built.
type hookStore struct {
	keepOpen
	once      sync.Once
	beforeLog func()
}

func (h *hookStore) Log(ctx context.Context, after uint64, limit int) ([]store.Change, error) {
	h.once.Do(h.beforeLog)
	return h.Mem.Log(ctx, after, limit)
}

// A bundle built while a large bundle from another peer is being stored
// stops at the log head it started from.
func TestMakeBundleWhileTheLogGrows(t *testing.T) {
	ctx := context.Background()
	cfg := replica.Config{}
	other, _ := newMem(t, cfg)
	for i := range 700 {
		register(t, other, fmt.Sprintf("O%d", i), "Family", "Siaya")
	}
	hs := &hookStore{keepOpen: keepOpen{store.NewMem()}}
	hub, err := replica.New(ctx, hs, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = hub.Close() })
	for i := range 600 {
		register(t, hub, fmt.Sprintf("H%d", i), "Family", "Kamuga")
	}
	big, err := other.MakeBundle(ctx, hub.ID())
	require.NoError(t, err)
	hs.beforeLog = func() {
		got, err := hub.Receive(ctx, big.Data)
		assert.NoError(t, err)
		assert.Equal(t, 700, got.Applied)
	}

	clinic, _ := newMem(t, cfg)
	out, err := hub.MakeBundle(ctx, clinic.ID())
	require.NoError(t, err, "building a bundle while the log grows")
	assert.Equal(t, 600, out.Changes, "the bundle holds the log as it was when building began")
	assert.True(t, out.Complete)
	_, err = clinic.Receive(ctx, out.Data)
	require.NoError(t, err)
	_, err = replica.SyncPair(ctx, hub, clinic)
	require.NoError(t, err)
	requireSameCharts(t, hub, clinic)
}
