package replica

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica/store"
)

func TestAssignCovers(t *testing.T) {
	h := func(n byte) crdt.Hash { return crdt.Hash{n} }
	node := func(n byte, actor string, own bool, deps ...byte) sigNode {
		s := sigNode{hash: h(n), actor: actor, own: own}
		for _, d := range deps {
			s.deps = append(s.deps, h(d))
		}
		return s
	}
	for _, tc := range []struct {
		name  string
		nodes []sigNode
		want  []int
	}{
		{"one device's run: the last signature covers the rest",
			[]sigNode{node(1, "a", true), node(2, "a", true, 1), node(3, "a", true, 2)}, []int{2, 2, -1}},
		{"two devices: each keeps its own latest signature",
			[]sigNode{node(1, "a", true), node(2, "b", true, 1), node(3, "a", true, 2)}, []int{2, -1, -1}},
		{"a gap in the bundle: the change before it keeps its signature",
			[]sigNode{node(1, "a", true), node(3, "a", true, 2)}, []int{-1, -1}},
		{"a stored cover is resolved by the change it names",
			[]sigNode{node(1, "a", false), node(2, "a", true, 1)}, []int{1, -1}},
		{"a stored cover with nothing to resolve it stays uncovered",
			[]sigNode{node(1, "a", false), node(2, "b", true, 1)}, []int{-1, -1}},
		{"an earlier change listed last keeps its own signature",
			[]sigNode{node(2, "a", true, 1), node(3, "a", true, 2), node(1, "a", true)}, []int{1, -1, -1}},
		{"unsigned changes stay unsigned",
			[]sigNode{node(1, "a", false), node(2, "a", false, 1)}, []int{-1, -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := assignCovers(tc.nodes)
			assert.Equal(t, tc.want, got)
			for i, c := range got {
				if c >= 0 {
					assert.True(t, tc.nodes[c].own, "change %d is covered by a signed change", i)
					assert.Equal(t, -1, got[c], "change %d's cover keeps its own signature", i)
				}
			}
		})
	}
}

// A relay that holds a covered change without its cover in the bundle
// sends the chart's whole history, where the cover resolves.
func TestCoverBundleSendsTheWholeChartWhenACoverIsMissing(t *testing.T) {
	ctx := context.Background()
	st := store.NewMem()
	r, err := New(ctx, st, Config{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Close() })

	c, reg, err := record.New(uuid.NewString(), r.ID(), planNurse, planAt, record.Register{
		GivenName: "Amina", Sex: "female", EstimatedBirthYear: 1990, HomeClinic: "north"})
	require.NoError(t, err)
	ed, err := c.Do(planNurse, planAt, record.AddAllergy{Substance: "Sulfa", Reaction: "rash", Severity: "mild"})
	require.NoError(t, err)
	sig := make([]byte, 64)
	sig[0] = 7
	_, err = st.Write(ctx, store.Batch{Changes: []store.NewChange{
		{Chart: c.ID(), Hash: reg.Change.Hash, Raw: reg.Change.Raw, Sig: coverMarker(ed.Change.Hash)},
		{Chart: c.ID(), Hash: ed.Change.Hash, Raw: ed.Change.Raw, Sig: sig},
	}})
	require.NoError(t, err)

	b := &Bundle{Changes: []BundleChange{{Chart: c.ID(), Raw: reg.Change.Raw}}}
	out := []outChange{{hash: reg.Change.Hash, stored: coverMarker(ed.Change.Hash)}}
	require.NoError(t, r.coverBundle(ctx, b, out))
	require.Len(t, b.Changes, 2, "the chart's whole history is sent")
	assert.Equal(t, reg.Change.Raw, b.Changes[0].Raw)
	assert.Equal(t, 2, b.Changes[0].Cover, "the registration is covered by the allergy")
	assert.Equal(t, sig, b.Changes[1].Sig, "the allergy carries its own signature")
}

// pairs returns n pairs of one device's changes, each pair's second
// depending on its first, and no pair on another: n runs with gaps
// between them, each coverable only by its own later change.
func pairs(n int) []sigNode {
	var out []sigNode
	for i := range n {
		a, b := crdt.Hash{byte(i), 1}, crdt.Hash{byte(i), 2}
		out = append(out, sigNode{hash: a, actor: "a", own: true}, sigNode{hash: b, actor: "a", own: true, deps: []crdt.Hash{a}})
	}
	return out
}

func TestCoversPerDeviceAreBounded(t *testing.T) {
	cover := assignCovers(pairs(maxCoversPerActor + 4))
	covering := map[int]bool{}
	for _, c := range cover {
		if c >= 0 {
			covering[c] = true
		}
	}
	assert.Len(t, covering, maxCoversPerActor, "a sender uses at most %d covering changes per device and chart", maxCoversPerActor)

	// A bundle with one more is refused before any history is walked.
	sender, me := NewID(), NewID()
	c := planChartOf(t, sender, "north")
	chs, err := c.Doc().Changes(nil)
	require.NoError(t, err)
	b := &Bundle{From: sender, To: me}
	for range maxCoversPerActor + 1 {
		b.Changes = append(b.Changes, BundleChange{Chart: c.ID(), Raw: chs[0].Raw, Cover: len(b.Changes) + 2},
			BundleChange{Chart: c.ID(), Raw: chs[1].Raw, Sig: make([]byte, 64)})
	}
	data, err := b.Encode()
	require.NoError(t, err)
	d, err := decodeReceived(data, me, "")
	require.NoError(t, err)
	err = d.verifySigned(&verifier{clinic: map[changeIn]string{}}, d.fresh(nil))
	require.ErrorIs(t, err, ErrMalformedBundle)
}
