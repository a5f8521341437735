package transport_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/transport"
	"github.com/chartsync/chartsync/transport/transporttest"
)

var nurse = record.Author{UserID: "u-amina", Name: "Amina", Role: record.RoleNurse, Device: "tablet-1"}

func openReplica(t *testing.T, name string) *replica.Replica {
	t.Helper()
	r, err := replica.Open(t.Context(), filepath.Join(t.TempDir(), name+".db"), replica.Config{})
	require.NoError(t, err, "open replica %s", name)
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func register(t *testing.T, r *replica.Replica, given string) string {
	t.Helper()
	id, err := r.Register(t.Context(), nurse, record.Register{
		GivenName: given, FamilyName: "Mwangi", Sex: "female", EstimatedBirthYear: 1988,
		Village: "Kamuga", HomeClinic: "kamuga-dispensary",
	})
	require.NoError(t, err, "register %s", given)
	return id
}

func addAllergy(t *testing.T, r *replica.Replica, chart, substance string) crdt.Hash {
	t.Helper()
	res, err := r.Edit(t.Context(), chart, nurse, record.AddAllergy{Substance: substance, Reaction: "rash", Severity: "mild"})
	require.NoError(t, err, "record allergy to %s", substance)
	return res.Change.Hash
}

func hasChart(t *testing.T, r *replica.Replica, chart string) bool {
	t.Helper()
	_, err := r.Chart(t.Context(), chart)
	if err != nil {
		require.ErrorIs(t, err, replica.ErrNotFound)
		return false
	}
	return true
}

func mustSync(t *testing.T, l transport.Link) transport.Stats {
	t.Helper()
	st, err := l.Sync(t.Context())
	require.NoError(t, err, "sync over a healthy courier")
	return st
}

var bundleErrors = []error{replica.ErrMalformedBundle, replica.ErrBundleVersion, replica.ErrBundleTooLarge, replica.ErrWrongRecipient}

func newMemoryPair(t *testing.T) transporttest.Pair {
	a, b := openReplica(t, "a"), openReplica(t, "b")
	net := transport.NewMemory()
	ab, ba := net.Link(a, b.ID()), net.Link(b, a.ID())
	return transporttest.Pair{
		A: a, B: b,
		Round: func(ctx context.Context) error {
			if _, err := ab.Sync(ctx); err != nil {
				return err
			}
			if _, err := ba.Sync(ctx); err != nil {
				return err
			}
			_, err := ab.Receive(ctx)
			return err
		},
		Capture: func(ctx context.Context) ([]byte, error) {
			out, err := a.MakeBundle(ctx, b.ID())
			return out.Data, err
		},
		Inject: func(ctx context.Context, raw []byte) error {
			net.Inject(a.ID(), b.ID(), raw)
			_, err := ba.Receive(ctx)
			return err
		},
		BadInput: bundleErrors,
	}
}

func TestMemoryConformance(t *testing.T) {
	transporttest.Run(t, newMemoryPair)
}

func TestMemoryFaultsDoNoHarm(t *testing.T) {
	tests := []struct {
		name string
		// fault acts on the network after a has posted two bundles to b
		// (the second carrying a change the first lacks).
		fault func(net *transport.Memory, a, b string)
		// bReceives is how many bundles b then accepts.
		bReceives int
		// bHasAll is whether b then holds both of a's changes.
		bHasAll bool
	}{
		{"none", func(*transport.Memory, string, string) {}, 2, true},
		{"all lost", func(net *transport.Memory, a, b string) { net.Drop(a, b) }, 0, false},
		{"newest lost", func(net *transport.Memory, a, b string) {
			net.Rearrange(a, b, func(in [][]byte) [][]byte { return in[:1] })
		}, 1, false},
		{"oldest lost", func(net *transport.Memory, a, b string) {
			net.Rearrange(a, b, func(in [][]byte) [][]byte { return in[1:] })
		}, 1, true},
		{"duplicated", func(net *transport.Memory, a, b string) { net.Duplicate(a, b) }, 4, true},
		{"reversed", func(net *transport.Memory, a, b string) { net.Reverse(a, b) }, 2, true},
		{"reversed and duplicated", func(net *transport.Memory, a, b string) { net.Reverse(a, b); net.Duplicate(a, b) }, 4, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := openReplica(t, "a"), openReplica(t, "b")
			net := transport.NewMemory()
			ab, ba := net.Link(a, b.ID()), net.Link(b, a.ID())
			chart := register(t, a, "Wanjiru")
			mustSync(t, ab)
			second := addAllergy(t, a, chart, "Penicillin")
			mustSync(t, ab)
			require.Len(t, net.InFlight(a.ID(), b.ID()), 2, "a posted two bundles")

			tt.fault(net, a.ID(), b.ID())
			st := mustSync(t, ba)
			assert.Equal(t, tt.bReceives, st.BundlesReceived, "bundles b accepted")
			assert.Zero(t, st.BundlesRejected, "b refused a bundle the courier only lost, repeated or reordered")
			if tt.bHasAll {
				assert.Equal(t, 2, st.ChangesApplied, "b applies each of a's changes once")
				v, err := b.Chart(t.Context(), chart)
				require.NoError(t, err)
				// Not necessarily last in the history: changes made in the
				// same millisecond are listed by hash.
				assert.True(t, slices.ContainsFunc(v.History, func(h record.HistoryEntry) bool { return h.Change == second }),
					"b holds a's latest change")
			} else {
				assert.Less(t, st.ChangesApplied, 2, "b cannot have what the courier lost")
			}

			// Later cycles over a healthy courier make up for the fault.
			for range 3 {
				mustSync(t, ab)
				mustSync(t, ba)
			}
			mustSync(t, ab)
			transporttest.RequireSame(t, a, b)
		})
	}
}

func TestMemoryPartition(t *testing.T) {
	a, b := openReplica(t, "a"), openReplica(t, "b")
	net := transport.NewMemory()
	ab, ba := net.Link(a, b.ID()), net.Link(b, a.ID())
	net.Partition(a.ID(), b.ID())
	chart := register(t, a, "Wanjiru")
	other := register(t, b, "Nafula")
	for range 3 {
		mustSync(t, ab)
		mustSync(t, ba)
	}
	assert.False(t, hasChart(t, b, chart), "a chart crossed a partition to b")
	assert.False(t, hasChart(t, a, other), "a chart crossed a partition to a")
	assert.Empty(t, net.InFlight(a.ID(), b.ID()), "bundles posted across a partition are lost")

	net.Heal(a.ID(), b.ID())
	mustSync(t, ab)
	mustSync(t, ba)
	mustSync(t, ab)
	transporttest.RequireSame(t, a, b)
}

func TestMemoryRandomFaultsLoseNothing(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			a, b := openReplica(t, "a"), openReplica(t, "b")
			net := transport.NewMemory()
			net.SetFaults(transport.Faults{Drop: 0.4, Duplicate: 0.4, Reorder: true}, seed)
			links := []*transport.MemoryLink{net.Link(a, b.ID()), net.Link(b, a.ID())}
			rs := []*replica.Replica{a, b}
			rng := rand.New(rand.NewPCG(seed, 99))
			saved := map[crdt.Hash]string{}
			var charts []string
			var received int
			for step := range 80 {
				i := rng.IntN(2)
				switch {
				case rng.IntN(3) == 0:
					st := mustSync(t, links[i])
					received += st.BundlesReceived
				case len(charts) == 0 || rng.IntN(6) == 0:
					id := register(t, rs[i], fmt.Sprintf("Patient%d", step))
					charts = append(charts, id)
					v, err := rs[i].Chart(t.Context(), id)
					require.NoError(t, err)
					saved[v.History[0].Change] = id
				default:
					id := charts[rng.IntN(len(charts))]
					res, err := rs[i].Edit(t.Context(), id, nurse, record.AddAllergy{Substance: fmt.Sprint("substance ", step), Severity: "mild"})
					if err != nil {
						require.ErrorIs(t, err, replica.ErrNotFound, "only a chart not yet arrived may refuse an edit")
						continue
					}
					saved[res.Change.Hash] = id
				}
			}
			require.NotZero(t, received, "the faulty courier delivered something")

			// The courier heals; a few cycles bring both sides together.
			net.SetFaults(transport.Faults{}, seed)
			for range 3 {
				mustSync(t, links[0])
				mustSync(t, links[1])
			}
			mustSync(t, links[0])
			transporttest.RequireSame(t, a, b)
			for h, id := range saved {
				for _, r := range rs {
					v, err := r.Chart(t.Context(), id)
					require.NoError(t, err)
					assert.True(t, slices.ContainsFunc(v.History, func(e record.HistoryEntry) bool { return e.Change == h }),
						"saved change %s of chart %s lost on %s", h, id, r.ID())
				}
			}
		})
	}
}

func TestMemorySyncReportsARefusedBundleAndGoesOn(t *testing.T) {
	a, b := openReplica(t, "a"), openReplica(t, "b")
	net := transport.NewMemory()
	ab, ba := net.Link(a, b.ID()), net.Link(b, a.ID())
	chart := register(t, a, "Wanjiru")
	net.Inject(a.ID(), b.ID(), []byte("not a bundle"))
	mustSync(t, ab)

	st, err := ba.Sync(t.Context())
	require.ErrorIs(t, err, replica.ErrMalformedBundle, "b reports the garbage bundle")
	assert.Equal(t, 1, st.BundlesRejected, "bundles refused")
	assert.Equal(t, 1, st.BundlesReceived, "the valid bundle behind the garbage is still accepted")
	assert.Equal(t, 1, st.ChangesApplied)
	assert.Equal(t, 1, st.BundlesSent, "b still answers")
	assert.True(t, hasChart(t, b, chart), "b holds the chart from the valid bundle")
	assert.Empty(t, net.InFlight(a.ID(), b.ID()), "a refused bundle is not retried")
}

func TestMemoryInFlightIsACopy(t *testing.T) {
	a, b := openReplica(t, "a"), openReplica(t, "b")
	net := transport.NewMemory()
	chart := register(t, a, "Wanjiru")
	_, err := net.Link(a, b.ID()).Send(t.Context())
	require.NoError(t, err)
	got := net.InFlight(a.ID(), b.ID())
	require.Len(t, got, 1)
	clear(got[0])
	_, err = net.Link(b, a.ID()).Receive(t.Context())
	require.NoError(t, err, "changing what InFlight returned damaged the bundle in flight")
	assert.True(t, hasChart(t, b, chart))
}

func TestMemorySyncStopsOnCancelledContext(t *testing.T) {
	a, b := openReplica(t, "a"), openReplica(t, "b")
	net := transport.NewMemory()
	register(t, a, "Wanjiru")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := net.Link(a, b.ID()).Sync(ctx)
	require.ErrorIs(t, err, context.Canceled)
	assert.Empty(t, net.InFlight(a.ID(), b.ID()), "nothing is posted once the context is done")
}
