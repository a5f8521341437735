package replica_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
)

// Random registrations, edits, merges and unmerges on 2–5 replicas with
// random partial delivery (one-way bundles between random pairs), then a
// full sync: every replica shows identical charts, forwarding records and
// search results, and every entry created anywhere is reachable from
// exactly one surviving chart.
func TestPropertyMergesConverge(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		ctx := context.Background()
		n := rapid.IntRange(2, 5).Draw(rt, "replicas")
		rs := make([]*replica.Replica, n)
		for i := range rs {
			rs[i], _ = newMem(t, replica.Config{})
		}
		var charts, entries []string
		steps := rapid.IntRange(1, 30).Draw(rt, "steps")
		for range steps {
			r := rs[rapid.IntRange(0, n-1).Draw(rt, "replica")]
			switch action := rapid.IntRange(0, 5).Draw(rt, "action"); {
			case action == 0 || len(charts) < 2:
				id := register(rt, r, rapid.SampledFrom([]string{"Wanjiru", "Wanjeru", "Amina"}).Draw(rt, "given"), "Mwangi", "Kamuga")
				charts = append(charts, id)
			case action <= 2:
				id := rapid.SampledFrom(charts).Draw(rt, "chart")
				res, err := r.Edit(ctx, id, doctor, allergy(len(entries)))
				if errors.Is(err, replica.ErrNotFound) {
					continue // not delivered here yet
				}
				require.NoError(rt, err)
				entries = append(entries, res.EntryID)
			case action <= 4:
				a := rapid.SampledFrom(charts).Draw(rt, "absorbed")
				s := rapid.SampledFrom(charts).Draw(rt, "survivor")
				err := r.Merge(ctx, a, s, doctor, "duplicate")
				if err != nil && !errors.Is(err, replica.ErrNotFound) && !errors.Is(err, replica.ErrMergeIntoItself) &&
					!errors.Is(err, replica.ErrForwarded) && !errors.Is(err, replica.ErrAlreadyMerged) {
					rt.Fatalf("merge %s into %s: %v", a, s, err)
				}
			default:
				a := rapid.SampledFrom(charts).Draw(rt, "unmerged")
				err := r.Unmerge(ctx, a, doctor, "not the same")
				if err != nil && !errors.Is(err, replica.ErrNotFound) && !errors.Is(err, replica.ErrNotMerged) {
					rt.Fatalf("unmerge %s: %v", a, err)
				}
			}
			if rapid.Bool().Draw(rt, "deliver") {
				from, to := rapid.IntRange(0, n-1).Draw(rt, "from"), rapid.IntRange(0, n-1).Draw(rt, "to")
				if from != to {
					out, err := rs[from].MakeBundle(ctx, rs[to].ID())
					require.NoError(rt, err)
					_, err = rs[to].Receive(ctx, out.Data)
					require.NoError(rt, err)
				}
			}
		}
		for range 2 {
			for i := 1; i < n; i++ {
				_, err := replica.SyncPair(ctx, rs[0], rs[i])
				require.NoError(rt, err)
			}
		}

		// Identical charts and forwarding records everywhere.
		for _, id := range charts {
			want := mustJSON(rt, view(rt, rs[0], id))
			own := mustJSON(rt, ownView(rt, rs[0], id))
			for i, r := range rs[1:] {
				require.Equal(rt, want, mustJSON(rt, view(rt, r, id)), "chart %s differs on replica %d", id, i+1)
				require.Equal(rt, own, mustJSON(rt, ownView(rt, r, id)), "chart %s's own document differs on replica %d", id, i+1)
			}
		}
		// Identical search results.
		for _, q := range []string{"Wanjiru", "Mwangi", "Amina Kamuga"} {
			want := searchIDs(rt, rs[0], q)
			for i, r := range rs[1:] {
				require.Equal(rt, want, searchIDs(rt, r, q), "search %q differs on replica %d", q, i+1)
			}
		}
		// Every entry reachable from exactly one surviving chart.
		survivors := map[string]record.View{}
		for _, id := range charts {
			v := view(rt, rs[0], id)
			survivors[v.ChartID] = v
		}
		for _, e := range entries {
			var in []string
			for id, v := range survivors {
				if slices.Contains(v.EntryIDs(true), e) {
					in = append(in, id)
				}
			}
			require.Len(rt, in, 1, "entry %s is shown by surviving charts %v", e, in)
		}
	})
}

func ownView(t T, r *replica.Replica, id string) record.View {
	t.Helper()
	v, err := r.OwnChart(context.Background(), id)
	require.NoError(t, err, "own view of chart %s", id)
	return v
}

func mustJSON(t T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

func searchIDs(t T, r *replica.Replica, q string) []string {
	t.Helper()
	found, err := r.Search(context.Background(), q, 0)
	require.NoError(t, err, "search %q", q)
	var out []string
	for _, f := range found {
		out = append(out, fmt.Sprintf("%s %.3f", f.ID, f.Score))
	}
	return out
}
