package audit_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/audit"
)

func TestConcurrentAppend(t *testing.T) {
	const (
		workers = 8
		calls   = 25 // per worker, of 1 to 3 entries
	)
	ctx := context.Background()
	path := logPath(t)
	l := openLog(t, path, newClock())

	var wg sync.WaitGroup
	total := 0
	exports := make(chan error, workers)
	for w := range workers {
		for c := range calls {
			total += c%3 + 1
		}
		wg.Go(func() {
			for c := range calls {
				es := make([]audit.Entry, c%3+1)
				for i := range es {
					// Chart names who wrote the entry, to find each once.
					es[i] = audit.Entry{Action: audit.Read, Device: device(w), Chart: fmt.Sprintf("w%d-c%d-%d", w, c, i), Changes: i}
				}
				if err := l.Append(ctx, es...); err != nil {
					t.Errorf("worker %d: append: %v", w, err)
					return
				}
			}
			// An export alongside the appends sees a consistent prefix.
			_, err := l.Export(ctx, discard{}, audit.Filter{}, audit.CSV)
			exports <- err
		})
	}
	wg.Wait()
	close(exports)
	for err := range exports {
		require.NoError(t, err, "an export alongside appends verifies")
	}

	b, n := exportBytes(t, l, audit.Filter{}, audit.JSONLines)
	require.Equal(t, total, n, "every appended entry is in the log")
	got := parseJSONLines(t, b)
	seen := map[string]bool{}
	for i, e := range got {
		assert.Equal(t, uint64(i+1), e.Seq, "seqs run 1..N without gaps")
		assert.False(t, seen[e.Chart], "entry %s is in the log once", e.Chart)
		seen[e.Chart] = true
	}
	// The entries of one call stay together, in order.
	for i := 1; i < len(got); i++ {
		if got[i].Changes > 0 {
			assert.Equal(t, got[i-1].Chart[:len(got[i-1].Chart)-1], got[i].Chart[:len(got[i].Chart)-1], "one call's entries are contiguous")
		}
	}
	assert.Equal(t, total, verifyFile(t, path), "the chain is valid")
}

func TestCloseWaitsForAppends(t *testing.T) {
	ctx := context.Background()
	path := logPath(t)
	l, err := audit.Open(path, audit.Config{})
	require.NoError(t, err)
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for w := range 4 {
		wg.Go(func() {
			for range 10 {
				err := l.Append(ctx, sample(w))
				if err != nil {
					assert.ErrorIs(t, err, audit.ErrClosed, "an append racing Close either lands or says closed")
					return
				}
				mu.Lock()
				ok++
				mu.Unlock()
			}
		})
	}
	require.NoError(t, l.Close())
	wg.Wait()
	assert.Equal(t, ok, verifyFile(t, path), "every acknowledged append is in the file")
}

type discard struct{}

func (discard) Write(b []byte) (int, error) { return len(b), nil }
