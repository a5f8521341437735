package replica_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/store"
)

// syncWith runs a device's exchanges with a cloud node until both had
// everything in one bundle.
func syncWith(t *testing.T, dev, node *replica.Replica) {
	t.Helper()
	ctx := context.Background()
	for range 10 {
		up, err := dev.MakeBundle(ctx, node.ID())
		require.NoError(t, err)
		_, err = node.Receive(ctx, up.Data)
		require.NoError(t, err)
		down, err := node.MakeBundle(ctx, dev.ID())
		require.NoError(t, err)
		_, err = dev.Receive(ctx, down.Data)
		require.NoError(t, err)
		if up.Complete && down.Complete {
			return
		}
	}
	t.Fatal("no convergence in 10 exchanges")
}

// cloudNodes opens n replicas over one store, as cloud nodes on one
// database are, saving a snapshot at every write.
func cloudNodes(t *testing.T, st store.Store, shared bool, n int) []*replica.Replica {
	t.Helper()
	var out []*replica.Replica
	for range n {
		r, err := replica.New(context.Background(), st, replica.Config{SharedStore: shared, CompactAfter: 1})
		require.NoError(t, err)
		t.Cleanup(func() { _ = r.Close() })
		out = append(out, r)
	}
	return out
}

// TestSharedStoreKeepsEveryNodesChanges: two cloud nodes on one store
// each take a device's edit to the same chart, one of them from a copy of
// the chart it read before the other's edit, both in turn and with the
// other node's write landing between its plan and its commit. Every node,
// and a node opened afterwards (which reads the chart's stored snapshot),
// holds both edits. Without SharedStore the node with the old copy stores
// a snapshot that lacks the other's edit, under a position that covers it.
func TestSharedStoreKeepsEveryNodesChanges(t *testing.T) {
	for _, raced := range []bool{false, true} {
		name := "in turn"
		if raced {
			name = "raced"
		}
		t.Run(name, func(t *testing.T) {
			st := keepOpen{store.NewMem()}
			nodes := cloudNodes(t, st, true, 2)
			a, b := nodes[0], nodes[1]
			dev1, _ := newMem(t, replica.Config{})
			dev2, _ := newMem(t, replica.Config{})

			id := register(t, dev1, "Wanjiru", "Mwangi", "Kamuga")
			syncWith(t, dev1, a)
			view(t, a, id)       // a holds the chart, cached
			syncWith(t, dev2, b) // dev2 gets it through b
			edit(t, dev1, id, prescribe("Amoxicillin", 500))
			edit(t, dev2, id, allergy(1))
			if raced {
				once := false
				a.SetAfterPlan(func(string) {
					if !once {
						once = true
						syncWith(t, dev2, b) // b's write lands while a's plan waits to commit
					}
				})
			} else {
				syncWith(t, dev2, b)
			}
			syncWith(t, dev1, a)
			syncWith(t, dev2, b)

			late := cloudNodes(t, st, true, 1)[0]
			for _, r := range []*replica.Replica{a, b, late, dev1, dev2} {
				v := view(t, r, id)
				assert.Len(t, v.Allergies, 1, "%s holds dev2's allergy", r.ID())
				assert.Len(t, v.Prescriptions, 1, "%s holds dev1's prescription", r.ID())
			}
		})
	}
}

// TestSharedStoreNodesEditInTurn: two cloud nodes, which write as one
// replica ID, edit a chart each holds cached, in turn. The second edits
// the chart as the first left it, so neither reuses the other's sequence
// number, and every node holds both edits. Without SharedStore the second
// edits its stale copy and stores a change the chart cannot take.
func TestSharedStoreNodesEditInTurn(t *testing.T) {
	st := keepOpen{store.NewMem()}
	nodes := cloudNodes(t, st, true, 2)
	a, b := nodes[0], nodes[1]
	dev, _ := newMem(t, replica.Config{})
	id := register(t, dev, "Baraka", "Otieno", "Lwanda")
	syncWith(t, dev, a)
	view(t, a, id)
	view(t, b, id) // both hold it cached
	edit(t, a, id, allergy(1))
	edit(t, b, id, prescribe("Paracetamol", 1000))
	syncWith(t, dev, a)
	late := cloudNodes(t, st, true, 1)[0]
	for _, r := range []*replica.Replica{a, b, late, dev} {
		v := view(t, r, id)
		assert.Len(t, v.Allergies, 1, "%s holds node a's allergy", r.ID())
		assert.Len(t, v.Prescriptions, 1, "%s holds node b's prescription", r.ID())
	}
}
