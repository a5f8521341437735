package replica

import (
	"context"
	"errors"
	"slices"

	"github.com/chartsync/chartsync/crdt"
)

// Signatures cover a device's run of changes, not each change.
//
// A device signs every change it makes (Config.Signer), and keeps each
// signature with its change. A change's hash commits to its dependencies,
// and so to its whole history: a device that signed a change vouched for
// every earlier change of its own in that history, since it made them. So
// a bundle carries, per chart and device, only the signatures of the
// device's latest changes; an earlier change of the same device is
// "covered" by a later signed one in the same bundle from which it is
// reachable through the dependencies of the bundle's own changes of that
// chart. A recipient checks that signature, walks the dependencies, and
// keeps a cover marker (the covering change's hash) with each covered
// change, so that it can pass it on the same way. A chart's first sync,
// 15–30 changes from one device, carries one signature instead of one per
// change, and costs the recipient one signature check.
//
// A relay forwards covered changes with the signed change that covers
// them; a bundle is never cut between the two (see selectChanges). If a
// cover cannot be expressed within the bundle (the covering change is not
// in it, or the path to it is not), the chart's whole stored history is
// added to the bundle, where every cover resolves.

// maxCoversPerActor bounds the distinct changes that cover others, per
// device, in one chart's part of a bundle. Checking a cover walks the
// part's history, so a recipient refuses more (ErrMalformedBundle): a
// bundle cannot make it walk the part more than this many times per
// device. An honest part needs one per device, more only where the
// bundle leaves gaps in a device's run of changes.
const maxCoversPerActor = 16

// coverLen is the length of a stored cover marker: 'c' and the covering
// change's hash. A signature is 64 bytes, so the two cannot be confused.
const coverLen = 1 + 32

// coverMarker is what a store keeps in place of a covered change's
// signature.
func coverMarker(h crdt.Hash) []byte { return append([]byte{'c'}, h[:]...) }

// coverOf returns the covering change's hash of a stored cover marker.
func coverOf(sig []byte) (crdt.Hash, bool) {
	if len(sig) != coverLen || sig[0] != 'c' {
		return crdt.Hash{}, false
	}
	return crdt.Hash(sig[1:]), true
}

// ownSignature reports whether a stored signature field is a signature
// (not a cover marker, not empty).
func ownSignature(sig []byte) bool {
	_, covered := coverOf(sig)
	return len(sig) > 0 && !covered
}

// sigNode is one change of a chart's part of a bundle, as far as covering
// is concerned.
type sigNode struct {
	hash  crdt.Hash
	deps  []crdt.Hash
	actor string
	own   bool // it carries its author's signature
}

// assignCovers decides, for a chart's changes in bundle order, which are
// covered: cover[i] is the index of a later change by the same actor,
// carrying its own signature, from which change i is reachable through
// dependencies among nodes; -1 if none. Each actor's latest signed change
// covers what it can, then the latest one left uncovered, and so on.
func assignCovers(nodes []sigNode) []int {
	cover := make([]int, len(nodes))
	for i := range cover {
		cover[i] = -1
	}
	idx := make(map[crdt.Hash]int, len(nodes))
	for i, n := range nodes {
		idx[n.hash] = i
	}
	signer := make([]bool, len(nodes))
	covering := map[string]int{} // signers that cover something, per actor
	for i := len(nodes) - 1; i >= 0; i-- {
		if cover[i] >= 0 || !nodes[i].own {
			continue
		}
		signer[i] = true // it keeps its signature: nothing may cover it
		if covering[nodes[i].actor] >= maxCoversPerActor {
			continue // the recipient would refuse more covers: the rest keep their signatures
		}
		used := false
		walkHistory(nodes, idx, i, func(j int) {
			if cover[j] < 0 && !signer[j] && nodes[j].actor == nodes[i].actor {
				cover[j], used = i, true
			}
		})
		if used {
			covering[nodes[i].actor]++
		}
	}
	return cover
}

// walkHistory calls visit for every node reachable from node from through
// dependencies among nodes (not from itself).
func walkHistory(nodes []sigNode, idx map[crdt.Hash]int, from int, visit func(int)) {
	seen := map[int]bool{from: true}
	stack := []int{from}
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, d := range nodes[n].deps {
			j, ok := idx[d]
			if !ok || seen[j] {
				continue
			}
			seen[j] = true
			visit(j)
			stack = append(stack, j)
		}
	}
}

// errUncovered marks a chart part of a bundle some of whose changes
// carry a cover marker that the bundle cannot express.
var errUncovered = errors.New("a covered change without its cover")

// outChange is a change picked for a bundle, as stored.
type outChange struct {
	hash   crdt.Hash
	stored []byte // its stored signature field: a signature, a cover marker or nothing
}

// coverPart sets the wire form of one chart's part of a bundle: part
// holds indices into b.Changes (in order), and out what b.Changes[i] is
// as stored. A change keeps its own signature unless a later one covers
// it. It returns errUncovered if a change stored with a cover marker is
// covered by nothing in the part.
func coverPart(b *Bundle, out []outChange, part []int) error {
	nodes := make([]sigNode, len(part))
	stored := make([][]byte, len(part))
	for k, i := range part {
		c := b.Changes[i]
		stored[k] = out[i].stored
		actor, deps, err := crdt.ChangeHeader(c.Raw)
		if err != nil {
			return err
		}
		nodes[k] = sigNode{hash: out[i].hash, deps: deps, actor: actor, own: ownSignature(stored[k])}
	}
	var missing error
	for k, cov := range assignCovers(nodes) {
		c := &b.Changes[part[k]]
		switch {
		case cov >= 0:
			c.Sig, c.Cover = nil, part[cov]+1
		case nodes[k].own:
			c.Sig, c.Cover = stored[k], 0
		default:
			c.Sig, c.Cover = nil, 0
			if _, covered := coverOf(stored[k]); covered {
				missing = errUncovered
			}
		}
	}
	return missing
}

// coverBundle sets the signature form of every change of b, whose stored
// forms out lists: each chart's part is covered as coverPart does. A
// chart whose part leaves a covered change without its cover is sent
// whole, from the store, where every cover resolves; a change that still
// has none goes unsigned (a checking recipient refuses it).
func (r *Replica) coverBundle(ctx context.Context, b *Bundle, out []outChange) error {
	var whole []string
	for _, chart := range chartOrder(b) {
		if err := coverPart(b, out, chart.part); errors.Is(err, errUncovered) {
			whole = append(whole, chart.id)
		} else if err != nil {
			return err
		}
	}
	if len(whole) == 0 {
		return nil
	}
	changes, stored := b.Changes[:0:0], out[:0:0]
	for i, c := range b.Changes {
		if !slices.Contains(whole, c.Chart) {
			changes, stored = append(changes, c), append(stored, out[i])
		}
	}
	for _, chart := range whole {
		chs, err := r.st.ChartChanges(ctx, chart, 0)
		if err != nil {
			return err
		}
		for _, c := range chs {
			changes = append(changes, BundleChange{Chart: c.Chart, Raw: c.Raw})
			stored = append(stored, outChange{hash: c.Hash, stored: c.Sig})
		}
	}
	b.Changes = changes
	for _, chart := range chartOrder(b) {
		if err := coverPart(b, stored, chart.part); errors.Is(err, errUncovered) {
			r.log.Warn("a covered change is sent without its cover", "chart", chart.id)
		} else if err != nil {
			return err
		}
	}
	return nil
}

// chartPart is one chart's part of a bundle: indices into its Changes.
type chartPart struct {
	id   string
	part []int
}

// chartOrder groups a bundle's changes by chart, charts in order of first
// appearance.
func chartOrder(b *Bundle) []chartPart {
	idx := map[string]int{}
	var parts []chartPart
	for i, c := range b.Changes {
		j, ok := idx[c.Chart]
		if !ok {
			j = len(parts)
			idx[c.Chart] = j
			parts = append(parts, chartPart{id: c.Chart})
		}
		parts[j].part = append(parts[j].part, i)
	}
	return parts
}
