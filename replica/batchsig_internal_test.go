package replica

import (
	"crypto/sha256"
	"fmt"
	"slices"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/chartsync/chartsync/crdt"
)

// fullTree is a tree of n leaves (charts and change hashes) with the
// proof of each, signed with a stand-in signature.
type fullTree struct {
	charts []string
	hashes []crdt.Hash
	proofs []batchProof
	digest [32]byte
}

func newFullTree(t require.TestingT, n int, seed int) fullTree {
	ft := fullTree{charts: make([]string, n), hashes: make([]crdt.Hash, n)}
	leaves := make([]treeLeaf, n)
	for i := range n {
		ft.charts[i] = uuid.NewSHA1(uuid.NameSpaceOID, fmt.Appendf(nil, "%d-%d", seed, i)).String()
		ft.hashes[i] = sha256.Sum256(fmt.Appendf(nil, "change %d-%d", seed, i))
		leaves[i] = treeLeaf{uint64(i), batchLeaf(ft.charts[i], ft.hashes[i])}
	}
	root, paths, err := treeRoot(uint64(n), leaves, func(int, int) (crdt.Hash, error) {
		return crdt.Hash{}, fmt.Errorf("every leaf is given")
	})
	require.NoError(t, err)
	ft.digest = batchDigest(uint64(n), root)
	sig := []byte(fmt.Sprintf("signature of tree %d", seed))
	for i := range n {
		ft.proofs = append(ft.proofs, batchProof{n: uint64(n), index: uint64(i), sig: sig, path: paths[i]})
	}
	return ft
}

// TestTreeProofs checks, for trees of every shape up to the leaf limit
// and any leaves a bundle carries, in any order: each leaf's proof alone
// gives the tree's signed digest; the bundle's form of the tree (the
// sibling hashes its leaves do not give) gives each leaf its proof back;
// and any sibling hash changed, left out or added gives another digest or
// an error, never the signed one.
func TestTreeProofs(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(1, maxBatchLeaves).Draw(t, "n")
		ft := newFullTree(t, n, rapid.IntRange(0, 1<<20).Draw(t, "seed"))
		for i, p := range ft.proofs {
			require.Len(t, p.path, pathLen(p.n, p.index))
			require.LessOrEqual(t, len(p.path), batchMaxDepth)
			d, err := proofDigest(p, ft.charts[i], ft.hashes[i])
			require.NoError(t, err)
			require.Equal(t, ft.digest, d, "leaf %d of %d alone", i, n)
			got, ok := parseProof(p.encode())
			require.True(t, ok)
			require.Equal(t, p, got)
			require.LessOrEqual(t, len(p.encode()), MaxSignatureBytes)
		}

		carried := rapid.SliceOfNDistinct(rapid.IntRange(0, n-1), 1, n, rapid.ID[int]).Draw(t, "carried")
		b := &Bundle{}
		for _, i := range carried {
			b.Changes = append(b.Changes, BundleChange{Chart: ft.charts[i], Sig: ft.proofs[i].encode()})
		}
		hashOf := func(k int) crdt.Hash { return ft.hashes[carried[k]] }
		trees, members := groupProofs(b, hashOf)
		require.Len(t, trees, 1, "one tree")
		require.Len(t, members[0], len(carried))
		if len(carried) == n {
			assert.Empty(t, trees[0].extra, "a bundle carrying every leaf carries no sibling hash")
		}
		leafOf := func(k int) crdt.Hash { return batchLeaf(b.Changes[k].Chart, hashOf(k)) }
		proofs, err := resolveTree(trees[0], members[0], leafOf)
		require.NoError(t, err)
		for k, m := range members[0] {
			require.Equal(t, ft.proofs[carried[m.change]], proofs[k], "the proof of leaf %d comes back", m.index)
		}

		// A sibling hash changed, one too few, one too many.
		if len(trees[0].extra) > 0 {
			bad := trees[0]
			bad.extra = slices.Clone(bad.extra)
			j := rapid.IntRange(0, len(bad.extra)-1).Draw(t, "changed")
			bad.extra[j][rapid.IntRange(0, 31).Draw(t, "byte")] ^= 1
			ps, err := resolveTree(bad, members[0], leafOf)
			require.NoError(t, err)
			for k, m := range members[0] {
				d, err := proofDigest(ps[k], b.Changes[m.change].Chart, hashOf(m.change))
				require.NoError(t, err)
				require.NotEqual(t, ft.digest, d)
			}
			short := trees[0]
			short.extra = short.extra[:len(short.extra)-1]
			_, err = resolveTree(short, members[0], leafOf)
			require.ErrorIs(t, err, errBadProof)
		}
		long := trees[0]
		long.extra = append(slices.Clone(long.extra), crdt.Hash{})
		_, err = resolveTree(long, members[0], leafOf)
		require.ErrorIs(t, err, errBadProof)

		// A leaf moved to another chart, or its change's hash changed,
		// gives another digest.
		k := rapid.IntRange(0, len(carried)-1).Draw(t, "moved")
		i := carried[k]
		d, err := proofDigest(ft.proofs[i], uuid.NewString(), ft.hashes[i])
		require.NoError(t, err)
		require.NotEqual(t, ft.digest, d)
		d, err = proofDigest(ft.proofs[i], ft.charts[i], sha256.Sum256(ft.hashes[i][:]))
		require.NoError(t, err)
		require.NotEqual(t, ft.digest, d)
	})
}

// TestGroupProofsKeepsTreesApart: proofs of two trees, and a proof whose
// path does not give its tree's root, travel as separate trees, each of
// which still gives its changes their proofs.
func TestGroupProofsKeepsTreesApart(t *testing.T) {
	x, y := newFullTree(t, 5, 1), newFullTree(t, 3, 2)
	bad := x.proofs[4]
	bad.path = slices.Clone(bad.path)
	bad.path[0][0] ^= 1
	b := &Bundle{Changes: []BundleChange{
		{Chart: x.charts[0], Sig: x.proofs[0].encode()},
		{Chart: y.charts[2], Sig: y.proofs[2].encode()},
		{Chart: x.charts[3], Sig: x.proofs[3].encode()},
		{Chart: x.charts[4], Sig: bad.encode()},
		{Chart: x.charts[1], Sig: make([]byte, 64)}, // a plain signature
	}}
	hashes := []crdt.Hash{x.hashes[0], y.hashes[2], x.hashes[3], x.hashes[4], x.hashes[1]}
	trees, members := groupProofs(b, func(i int) crdt.Hash { return hashes[i] })
	require.Len(t, trees, 3)
	var changes [][]int
	for _, ms := range members {
		var cs []int
		for _, m := range ms {
			cs = append(cs, m.change)
		}
		changes = append(changes, cs)
	}
	assert.Equal(t, [][]int{{0, 2}, {1}, {3}}, changes)
	for tr, ms := range members {
		ps, err := resolveTree(trees[tr], ms, func(i int) crdt.Hash { return batchLeaf(b.Changes[i].Chart, hashes[i]) })
		require.NoError(t, err)
		for k, m := range ms {
			want, _ := parseProof(b.Changes[m.change].Sig)
			assert.Equal(t, want, ps[k])
		}
	}
}

func TestParseProofRefusesOtherFields(t *testing.T) {
	p := newFullTree(t, 6, 3).proofs[5]
	good := p.encode()
	cases := map[string][]byte{
		"nothing":            nil,
		"a signature":        append([]byte{proofTag}, make([]byte, 63)...),
		"a cover marker":     coverMarker(crdt.Hash{1}),
		"a hash short":       good[:len(good)-1],
		"a byte too many":    append(slices.Clone(good), 0),
		"leaf past the tree": batchProof{n: 6, index: 6, sig: p.sig, path: p.path}.encode(),
		"tree over the limit": batchProof{n: maxBatchLeaves + 1, index: 0, sig: p.sig,
			path: make([]crdt.Hash, pathLen(maxBatchLeaves+1, 0))}.encode(),
		"no signature": batchProof{n: 6, index: 5, path: p.path}.encode(),
	}
	for name, sig := range cases {
		_, ok := parseProof(sig)
		assert.False(t, ok, name)
	}
	_, ok := parseProof(good)
	assert.True(t, ok)
}

// FuzzParseProof: a stored signature field, read back from any store or
// held record, is a proof only if it reads exactly as one, and then it
// encodes to the same bytes; nothing else panics.
func FuzzParseProof(f *testing.F) {
	ft := newFullTree(f, 6, 4)
	for _, p := range ft.proofs {
		f.Add(p.encode())
	}
	f.Add(make([]byte, 64))
	f.Add(coverMarker(crdt.Hash{1}))
	f.Fuzz(func(t *testing.T, sig []byte) {
		p, ok := parseProof(sig)
		if !ok {
			return
		}
		require.Equal(t, sig, p.encode())
		require.Len(t, p.path, pathLen(p.n, p.index))
		_, err := proofDigest(p, "chart", crdt.Hash{})
		require.NoError(t, err)
	})
}
