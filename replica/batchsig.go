package replica

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/internal/wire"
)

// Batch signatures: one signature over a device's heads in many charts.
//
// Covers (cover.go) leave one signature per chart and device in a bundle:
// the device's latest change of the chart. A device sending its own
// changes signs, instead, the heads of every chart at once: when it makes
// a bundle, it builds a Merkle tree whose leaves are its signed changes
// in the bundle (chart and hash), up to maxBatchLeaves of them, and signs
// the tree's root and size (Signer.SignChange under batchDomain). Each of
// those changes is then vouched for by a proof: the signature, the
// tree's size, the change's place among the leaves, and the hashes of
// the siblings on its path to the root. A recipient checks the signature
// once for the whole tree and keeps each change's proof as its stored
// signature field, so that it can pass any of the changes on alone, and
// the next recipient can check it alone.
//
// On the wire, the changes of one tree travel with the signature once and
// only the sibling hashes that the changes the bundle carries do not
// give (none, when it carries every leaf: the sender's own tree); the
// recipient computes the rest. A change of 50 charts edited offline thus
// carries one signature instead of 50.
//
// A leaf is SHA-256(0 | change hash | chart ID), an inner node
// SHA-256(1 | left | right); at each level, a last node without a sibling
// is carried up unchanged. What is signed is SHA-256(2 | size | root), so
// a tree's shape is fixed by what the signature covers. The tree's leaves
// are all changes of the same device (the recipient checks each against
// the device's key), and its size is at most maxBatchLeaves, so a stored
// proof holds at most batchMaxDepth hashes.

const (
	// batchDomain is the chart name under which a tree's root is signed
	// (Signer.SignChange), apart from every chart ID (a UUID) and from
	// bundleAuthDomain.
	batchDomain = "chartsync heads"
	// maxBatchLeaves bounds the leaves of one tree.
	maxBatchLeaves = 256
	// batchMaxDepth is the most sibling hashes a proof holds.
	batchMaxDepth = 8
	// proofTag starts a stored proof. A stored signature field is a
	// proof when it is not 64 bytes long (an Ed25519 signature is) and
	// reads exactly as one (parseProof); a cover marker starts with 'c'.
	// A Signer whose signatures are not 64 bytes and may start with
	// proofTag would make its own signatures ambiguous: a device's is
	// Ed25519.
	proofTag = 'p'
	// maxProofSignatureBytes bounds the signature in a proof.
	maxProofSignatureBytes = 128
)

// errBadProof is why a batch signature's proof cannot be read or does
// not fit its tree.
var errBadProof = errors.New("a batch signature's proof that does not fit its tree")

// batchProof is what vouches for one change of a tree.
type batchProof struct {
	n, index uint64 // the tree's size, and the change's place among its leaves
	sig      []byte
	path     []crdt.Hash // sibling hashes, from the leaf up, at the levels where there is one
}

// encode returns the stored form of p: proofTag, n, index, the signature
// and the path.
func (p batchProof) encode() []byte {
	out := make([]byte, 0, 1+2*binary.MaxVarintLen64+2+len(p.sig)+32*len(p.path))
	out = append(out, proofTag)
	out = binary.AppendUvarint(out, p.n)
	out = binary.AppendUvarint(out, p.index)
	out = wire.AppendBytes(out, p.sig)
	for _, h := range p.path {
		out = append(out, h[:]...)
	}
	return out
}

// parseProof reads a stored proof; false if sig is not one (a plain
// signature, a cover marker, or nothing).
func parseProof(sig []byte) (batchProof, bool) {
	if len(sig) == 64 || len(sig) == 0 || sig[0] != proofTag {
		return batchProof{}, false
	}
	r := wire.NewReader(sig[1:])
	var p batchProof
	var err error
	if p.n, err = r.Uvarint(); err != nil || p.n == 0 || p.n > maxBatchLeaves {
		return batchProof{}, false
	}
	if p.index, err = r.Uvarint(); err != nil || p.index >= p.n {
		return batchProof{}, false
	}
	if p.sig, err = r.Bytes(maxProofSignatureBytes); err != nil || len(p.sig) == 0 {
		return batchProof{}, false
	}
	if r.Len() != 32*pathLen(p.n, p.index) {
		return batchProof{}, false
	}
	for r.Len() > 0 {
		h, _ := r.Fixed(32)
		p.path = append(p.path, crdt.Hash(h))
	}
	return p, true
}

// isProof reports whether a stored signature field is a proof.
func isProof(sig []byte) bool {
	_, ok := parseProof(sig)
	return ok
}

// pathLen is how many sibling hashes the path of leaf index in a tree of
// n leaves holds.
func pathLen(n, index uint64) int {
	k := 0
	for width := n; width > 1; width = (width + 1) / 2 {
		if index^1 < width {
			k++
		}
		index >>= 1
	}
	return k
}

// batchLeaf is the leaf of the change with hash h in chart.
func batchLeaf(chart string, h crdt.Hash) crdt.Hash {
	s := sha256.New()
	s.Write([]byte{0})
	s.Write(h[:])
	s.Write([]byte(chart))
	return crdt.Hash(s.Sum(nil))
}

func batchNode(l, r crdt.Hash) crdt.Hash {
	var buf [65]byte
	buf[0] = 1
	copy(buf[1:], l[:])
	copy(buf[33:], r[:])
	return sha256.Sum256(buf[:])
}

// batchDigest is what the signature of a tree of n leaves with root signs.
func batchDigest(n uint64, root crdt.Hash) [32]byte {
	buf := binary.AppendUvarint([]byte{2}, n)
	return sha256.Sum256(append(buf, root[:]...))
}

// treeLeaf is a leaf known when a tree's root is computed: its place and
// hash.
type treeLeaf struct {
	index uint64
	hash  crdt.Hash
}

// treeRoot computes the root of a tree of n leaves from the leaves given
// (in order of index, each once) and, for every node whose sibling they
// do not give, the sibling's hash, asked of sibling in a fixed order:
// level by level from the leaves, left to right. sibling is told which
// leaf (an index into leaves) lies under the node, and how many hashes
// that leaf's path holds so far, which is where the sibling's hash is on
// that leaf's path. treeRoot returns the root and each leaf's path.
func treeRoot(n uint64, leaves []treeLeaf, sibling func(leaf, at int) (crdt.Hash, error)) (crdt.Hash, [][]crdt.Hash, error) {
	if n == 0 || n > maxBatchLeaves || len(leaves) == 0 {
		return crdt.Hash{}, nil, fmt.Errorf("%w: a tree of %d leaves, %d given", errBadProof, n, len(leaves))
	}
	type node struct {
		index  uint64
		hash   crdt.Hash
		leaves []int // under it
	}
	level := make([]node, len(leaves))
	for i, l := range leaves {
		if l.index >= n || i > 0 && l.index <= leaves[i-1].index {
			return crdt.Hash{}, nil, fmt.Errorf("%w: leaf %d of a tree of %d, out of order", errBadProof, l.index, n)
		}
		level[i] = node{index: l.index, hash: l.hash, leaves: []int{i}}
	}
	paths := make([][]crdt.Hash, len(leaves))
	extend := func(under []int, h crdt.Hash) {
		for _, l := range under {
			paths[l] = append(paths[l], h)
		}
	}
	for width := n; width > 1; width = (width + 1) / 2 {
		next := make([]node, 0, (len(level)+1)/2)
		for i := 0; i < len(level); i++ {
			x := level[i]
			up := node{index: x.index / 2, leaves: x.leaves}
			switch {
			case x.index%2 == 0 && x.index+1 >= width:
				up.hash = x.hash // the last node, without a sibling: carried up
			case x.index%2 == 0 && i+1 < len(level) && level[i+1].index == x.index+1:
				y := level[i+1]
				extend(x.leaves, y.hash)
				extend(y.leaves, x.hash)
				up.hash, up.leaves = batchNode(x.hash, y.hash), slices.Concat(x.leaves, y.leaves)
				i++
			default:
				s, err := sibling(x.leaves[0], len(paths[x.leaves[0]]))
				if err != nil {
					return crdt.Hash{}, nil, err
				}
				extend(x.leaves, s)
				if x.index%2 == 0 {
					up.hash = batchNode(x.hash, s)
				} else {
					up.hash = batchNode(s, x.hash)
				}
			}
			next = append(next, up)
		}
		level = next
	}
	return level[0].hash, paths, nil
}

// proofDigest returns what the signature of p's tree signs, the change
// with hash h in chart being its leaf at p.index; an error if p's path
// does not fit its tree.
func proofDigest(p batchProof, chart string, h crdt.Hash) ([32]byte, error) {
	root, err := proofRoot(p, batchLeaf(chart, h))
	if err != nil {
		return [32]byte{}, err
	}
	return batchDigest(p.n, root), nil
}

// proofRoot returns the root of p's tree that p's path gives for leaf at
// p.index; an error if the path does not fit the tree.
func proofRoot(p batchProof, leaf crdt.Hash) (crdt.Hash, error) {
	if len(p.path) != pathLen(p.n, p.index) {
		return crdt.Hash{}, fmt.Errorf("%w: %d sibling hashes for leaf %d of %d", errBadProof, len(p.path), p.index, p.n)
	}
	root, _, err := treeRoot(p.n, []treeLeaf{{p.index, leaf}}, func(_, at int) (crdt.Hash, error) {
		return p.path[at], nil
	})
	return root, err
}

// wireTree is one tree's signature as a bundle carries it: the tree's
// size and signature, and the sibling hashes its changes in the bundle do
// not give, in treeRoot's order.
type wireTree struct {
	n     uint64
	sig   []byte
	extra []crdt.Hash
}

// treeMember is a change of a bundle vouched for by a tree: its index in
// the bundle and its place among the tree's leaves.
type treeMember struct {
	change int
	index  uint64
}

// groupProofs finds the changes of b whose signature field is a proof
// (hashes holds their hashes, by index in b) and groups those of one tree
// into one wireTree each. A change whose proof does not give its tree's
// root as the others' do goes into a tree of its own.
func groupProofs(b *Bundle, hashes func(i int) crdt.Hash) ([]wireTree, [][]treeMember) {
	type key struct {
		sig  string
		n    uint64
		root crdt.Hash
	}
	var (
		trees   []wireTree
		members [][]treeMember
		proofs  [][]batchProof
		at      = map[key]int{}
	)
	for i, c := range b.Changes {
		if c.Cover != 0 {
			continue
		}
		p, ok := parseProof(c.Sig)
		if !ok {
			continue
		}
		root, err := proofRoot(p, batchLeaf(c.Chart, hashes(i)))
		if err != nil {
			continue // cannot be: parseProof checked the path's length
		}
		k := key{string(p.sig), p.n, root}
		t, ok := at[k]
		if ok && slices.ContainsFunc(members[t], func(m treeMember) bool { return m.index == p.index }) {
			ok = false // the same leaf twice: the second goes alone
		}
		if !ok {
			t = len(trees)
			if _, seen := at[k]; !seen {
				at[k] = t
			}
			trees = append(trees, wireTree{n: p.n, sig: p.sig})
			members = append(members, nil)
			proofs = append(proofs, nil)
		}
		members[t] = append(members[t], treeMember{change: i, index: p.index})
		proofs[t] = append(proofs[t], p)
	}
	for t := range trees {
		ms, ps := members[t], proofs[t]
		order := byLeaf(ms)
		leaves := make([]treeLeaf, len(ms))
		sorted := make([]treeMember, len(ms))
		for i, o := range order {
			sorted[i] = ms[o]
			leaves[i] = treeLeaf{ms[o].index, batchLeaf(b.Changes[ms[o].change].Chart, hashes(ms[o].change))}
		}
		_, _, _ = treeRoot(trees[t].n, leaves, func(leaf, at int) (crdt.Hash, error) {
			h := ps[order[leaf]].path[at]
			trees[t].extra = append(trees[t].extra, h)
			return h, nil
		})
		members[t] = sorted
	}
	return trees, members
}

// byLeaf returns the indices of ms in order of their leaves.
func byLeaf(ms []treeMember) []int {
	order := make([]int, len(ms))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(x, y int) int { return cmp.Compare(ms[x].index, ms[y].index) })
	return order
}

// resolveTree computes the proofs of a tree's members from the tree as a
// bundle carries it (their leaves from their charts and hashes), and
// returns them in the members' order; an error if the tree does not fit.
func resolveTree(t wireTree, ms []treeMember, leafOf func(change int) crdt.Hash) ([]batchProof, error) {
	order := byLeaf(ms)
	leaves := make([]treeLeaf, len(ms))
	for i, o := range order {
		leaves[i] = treeLeaf{ms[o].index, leafOf(ms[o].change)}
	}
	used := 0
	_, paths, err := treeRoot(t.n, leaves, func(int, int) (crdt.Hash, error) {
		if used == len(t.extra) {
			return crdt.Hash{}, fmt.Errorf("%w: a tree of %d leaves needs more than the %d sibling hashes given", errBadProof, t.n, len(t.extra))
		}
		used++
		return t.extra[used-1], nil
	})
	if err != nil {
		return nil, err
	}
	if used != len(t.extra) {
		return nil, fmt.Errorf("%w: a tree of %d leaves with %d sibling hashes, %d of them needed", errBadProof, t.n, len(t.extra), used)
	}
	out := make([]batchProof, len(ms))
	for i, o := range order {
		out[o] = batchProof{n: t.n, index: ms[o].index, sig: t.sig, path: paths[i]}
	}
	return out, nil
}

// batchSign replaces, in b, the signatures of this replica's own changes
// (those its Signer made, not covered) by batch signatures, a tree of up
// to maxBatchLeaves changes each, where it has at least two to sign.
func (r *Replica) batchSign(b *Bundle) {
	if r.cfg.Signer == nil {
		return
	}
	var mine []int
	for i, c := range b.Changes {
		// A covered change has no signature here (coverPart), and a
		// proof is already a batch signature.
		if c.Cover != 0 || len(c.Sig) == 0 || isProof(c.Sig) {
			continue
		}
		actor, _, err := crdt.ChangeHeader(c.Raw)
		if err != nil || actor != r.id {
			continue
		}
		mine = append(mine, i)
	}
	for len(mine) >= 2 {
		k := min(len(mine), maxBatchLeaves)
		part := mine[:k]
		mine = mine[k:]
		leaves := make([]treeLeaf, len(part))
		for j, i := range part {
			c := b.Changes[i]
			leaves[j] = treeLeaf{uint64(j), batchLeaf(c.Chart, crdt.Hash(sha256.Sum256(c.Raw[8:])))}
		}
		n := uint64(len(part))
		root, paths, err := treeRoot(n, leaves, func(int, int) (crdt.Hash, error) {
			return crdt.Hash{}, errors.New("every leaf is given")
		})
		if err != nil {
			return // cannot be: every leaf is given
		}
		sig := r.cfg.Signer.SignChange(batchDomain, batchDigest(n, root))
		if len(sig) == 0 || len(sig) > maxProofSignatureBytes {
			return // a Signer whose signatures a proof cannot hold: the changes keep their own
		}
		for j, i := range part {
			b.Changes[i].Sig = batchProof{n: n, index: uint64(j), sig: sig, path: paths[j]}.encode()
		}
	}
}

// maxProofBytes bounds the bytes of the proofs a bundle of body bytes
// gives its changes. A proof is at most a few hundred bytes, and each of
// its change's several hundred: the proofs of an honest bundle are well
// under twice its size. A bundle whose proofs would be larger (a tree of
// many leaves whose changes are a few bytes each) is refused, so that
// what a bundle decodes to stays bounded by what was read.
func maxProofBytes(body int) int { return 2*body + 16<<10 }

// readTrees reads the trees of a bundle's batch signatures, which follow
// its changes, and gives each change vouched for by one (batched: tree,
// change, leaf) its proof as its signature field, up to limit bytes of
// proofs. hashes holds the hashes of b's changes computed so far (zero
// where not).
func readTrees(r *wire.Reader, b *Bundle, batched [][3]uint64, hashes []crdt.Hash, own *arena, limit int) error {
	count, err := r.Count(4)
	if err != nil {
		return fmt.Errorf("batch signature count: %w", err)
	}
	if count > len(batched) {
		return fmt.Errorf("%d batch signatures for %d changes: %w", count, len(batched), ErrMalformedBundle)
	}
	trees := make([]wireTree, count)
	for t := range trees {
		if trees[t].n, err = r.Uvarint(); err != nil {
			return fmt.Errorf("batch signature %d: %w", t, err)
		}
		if trees[t].n == 0 || trees[t].n > maxBatchLeaves {
			return fmt.Errorf("batch signature %d over %d leaves, limit %d: %w", t, trees[t].n, maxBatchLeaves, ErrMalformedBundle)
		}
		sig, err := r.Bytes(maxProofSignatureBytes)
		if err != nil {
			return fmt.Errorf("batch signature %d: %w", t, err)
		}
		if len(sig) == 0 {
			return fmt.Errorf("batch signature %d: empty: %w", t, ErrMalformedBundle)
		}
		trees[t].sig = own.copy(sig)
		m, err := r.Count(32)
		if err != nil {
			return fmt.Errorf("batch signature %d sibling hashes: %w", t, err)
		}
		if m > batchMaxDepth*maxBatchLeaves {
			return fmt.Errorf("batch signature %d with %d sibling hashes: %w", t, m, ErrMalformedBundle)
		}
		trees[t].extra = make([]crdt.Hash, m)
		for k := range trees[t].extra {
			h, err := r.Fixed(32)
			if err != nil {
				return fmt.Errorf("batch signature %d sibling hashes: %w", t, err)
			}
			trees[t].extra[k] = crdt.Hash(h)
		}
	}
	members := make([][]treeMember, count)
	for _, x := range batched {
		if x[0] >= uint64(count) {
			return fmt.Errorf("change %d vouched for by batch signature %d of %d: %w", x[1], x[0], count, ErrMalformedBundle)
		}
		members[x[0]] = append(members[x[0]], treeMember{change: int(x[1]), index: x[2]})
	}
	hashOf := func(i int) crdt.Hash {
		if c := b.Changes[i]; hashes[i] == (crdt.Hash{}) && len(c.Raw) > 8 {
			hashes[i] = sha256.Sum256(c.Raw[8:])
		}
		return hashes[i]
	}
	leafOf := func(i int) crdt.Hash { return batchLeaf(b.Changes[i].Chart, hashOf(i)) }
	encoded := make([][]byte, len(b.Changes)) // the proofs, by change
	size := 0
	for t, ms := range members {
		if len(ms) == 0 {
			return fmt.Errorf("batch signature %d vouches for no change: %w", t, ErrMalformedBundle)
		}
		proofs, err := resolveTree(trees[t], ms, leafOf)
		if err != nil {
			return fmt.Errorf("batch signature %d: %w: %w", t, ErrMalformedBundle, err)
		}
		for k, m := range ms {
			enc := proofs[k].encode()
			if size += len(enc); size > limit {
				return fmt.Errorf("batch signature proofs over %d bytes, for a bundle of %d changes: %w", limit, len(b.Changes), ErrBundleTooLarge)
			}
			encoded[m.change] = enc
		}
	}
	own.left = size // the proofs go into one block
	for i, enc := range encoded {
		if enc != nil {
			b.Changes[i].Sig = own.copy(enc)
		}
	}
	// A bundle has one encoding: the trees must be those its sender's
	// encoder makes of these proofs (grouped alike, numbered in order of
	// their first change, with the same sibling hashes), and no proof may
	// travel as a plain signature.
	again, regrouped := groupProofs(b, hashOf)
	same := len(again) == len(trees)
	for t := 0; same && t < len(trees); t++ {
		same = again[t].n == trees[t].n && bytes.Equal(again[t].sig, trees[t].sig) && slices.Equal(again[t].extra, trees[t].extra) &&
			slices.Equal(regrouped[t], sortedMembers(members[t]))
	}
	if !same {
		return fmt.Errorf("batch signatures not in the form their sender writes: %w", ErrMalformedBundle)
	}
	return nil
}

// sortedMembers returns ms in order of leaf, as groupProofs lists them.
func sortedMembers(ms []treeMember) []treeMember {
	out := slices.Clone(ms)
	slices.SortFunc(out, func(x, y treeMember) int { return cmp.Compare(x.index, y.index) })
	return out
}
