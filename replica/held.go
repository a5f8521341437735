package replica

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/google/uuid"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/internal/wire"
	"github.com/chartsync/chartsync/replica/store"
)

// Held changes: a received change whose dependencies are neither held here
// nor in its bundle is kept aside, not applied and not put in the log, until
// a later bundle brings them. Outside the log it is never forwarded (a peer
// would refuse it as this replica cannot apply it either) and never stops a
// chart's snapshot. It is kept per sending peer, in the store's meta values,
// so it survives a restart; and it is bounded, so a peer sending orphans
// costs this replica at most a few MiB. When a bound is reached the oldest
// are dropped with a logged reason: an honest sender's changes are held
// only while bundles cross (a later file read before an earlier one), and
// come again in its next bundle if they were not acknowledged.

// Bounds on held changes.
const (
	// MaxHeldPerChart bounds the changes held for one chart, from every
	// peer together.
	MaxHeldPerChart = 64
	// MaxHeldPerPeer bounds the changes held from one peer.
	MaxHeldPerPeer = 1024
	// MaxHeldBytesPerPeer bounds the bytes of the changes held from one
	// peer.
	MaxHeldBytesPerPeer = 4 << 20
	// MaxHeld bounds the changes held from all peers together (a bundle
	// nothing authenticates may name any sender).
	MaxHeld = 4096
)

// metaHeld is the meta key prefix under which the changes held from a
// peer are kept.
const metaHeld = "held/"

// heldChange is a change kept aside until its dependencies arrive.
type heldChange struct {
	chart  string
	change crdt.Change
	sig    []byte // its signature field as it would be stored
	clinic string // its signer's clinic, as checked when it arrived
	from   string // the peer it came from
}

// heldStore holds the changes kept aside, by peer, in arrival order.
type heldStore struct {
	mu     sync.Mutex
	byPeer map[string][]heldChange
	// refused holds the held changes withHeld found a revocation
	// learnt since they arrived refuses: the next update drops them.
	refused map[crdt.Hash]bool
}

// refuse notes a held change a revocation refuses, for the next update
// to drop.
func (s *heldStore) refuse(h crdt.Hash) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refused == nil {
		s.refused = map[crdt.Hash]bool{}
	}
	s.refused[h] = true
}

// loadHeld reads the held changes of every known peer. A value that does
// not decode is dropped with a log line: held changes come again from
// their sender.
//
// Read again after a write of unknown outcome, it replaces what r.held
// holds only once every value is read, under the held store's lock (a
// receive may be planning meanwhile).
func (r *Replica) loadHeld(ctx context.Context) error {
	byPeer := map[string][]heldChange{}
	peers, err := r.st.Peers(ctx)
	if err != nil {
		return fmt.Errorf("read held changes: %w", err)
	}
	for _, p := range peers {
		v, err := r.st.Meta(ctx, metaHeld+p.ID)
		if errors.Is(err, store.ErrNotFound) || err == nil && v == "" {
			continue
		}
		if err != nil {
			return fmt.Errorf("read held changes of %s: %w", p.ID, err)
		}
		hs, err := decodeHeld(v, p.ID)
		if err != nil {
			r.log.Warn("held changes dropped: their stored form does not decode", "peer", p.ID, "err", err)
			continue
		}
		byPeer[p.ID] = hs
	}
	if r.held == nil {
		r.held = &heldStore{}
	}
	r.held.mu.Lock()
	r.held.byPeer = byPeer
	r.held.mu.Unlock()
	return nil
}

// forCharts returns the changes held for the charts of fresh.
func (s *heldStore) forCharts(fresh []chartBatch) map[string][]heldChange {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.byPeer) == 0 {
		return nil
	}
	want := make(map[string]bool, len(fresh))
	for _, cb := range fresh {
		want[cb.chart] = true
	}
	out := map[string][]heldChange{}
	for _, hs := range s.byPeer {
		for _, h := range hs {
			if want[h.chart] {
				out[h.chart] = append(out[h.chart], h)
			}
		}
	}
	return out
}

// count returns how many changes are held.
func (s *heldStore) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, hs := range s.byPeer {
		n += len(hs)
	}
	return n
}

// heldUpdate is what a receive changes of the held changes: the new
// per-peer lists, to install once the batch holding them is written.
type heldUpdate struct {
	byPeer  map[string][]heldChange
	dropped int
}

// update works out the held changes once applied have been stored and
// added (from peer from) are kept aside, enforcing the bounds, and adds
// the meta writes to b. Call install with the result after b is written.
// r.mu is held.
func (s *heldStore) update(b *store.Batch, applied map[crdt.Hash]bool, added []heldChange, from string, log func(msg string, args ...any)) heldUpdate {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := heldUpdate{byPeer: map[string][]heldChange{}}
	if len(applied) == 0 && len(added) == 0 && len(s.refused) == 0 {
		return u
	}
	// The changes refused are dropped with this batch; if it is not
	// written, withHeld finds them refused again.
	refused := s.refused
	s.refused = nil
	held := map[crdt.Hash]bool{}
	perChart := map[string]int{}
	touched := map[string]bool{}
	for peer, hs := range s.byPeer {
		var keep []heldChange
		for _, h := range hs {
			if applied[h.change.Hash] || refused[h.change.Hash] {
				touched[peer] = true
				continue
			}
			keep = append(keep, h)
			held[h.change.Hash] = true
			perChart[h.chart]++
		}
		u.byPeer[peer] = keep
	}
	for _, h := range added {
		if held[h.change.Hash] {
			continue
		}
		if perChart[h.chart] >= MaxHeldPerChart {
			u.dropped++
			log("held change dropped: too many held for its chart", "chart", h.chart, "change", h.change.Hash, "from", from, "limit", MaxHeldPerChart)
			continue
		}
		held[h.change.Hash] = true
		perChart[h.chart]++
		touched[from] = true
		u.byPeer[from] = append(u.byPeer[from], h)
	}
	// The oldest go first when a peer is over its bounds.
	hs := u.byPeer[from]
	size := 0
	for _, h := range hs {
		size += len(h.change.Raw)
	}
	for len(hs) > MaxHeldPerPeer || size > MaxHeldBytesPerPeer {
		u.dropped++
		log("held change dropped: too many held from its peer", "chart", hs[0].chart, "change", hs[0].change.Hash, "from", from, "limit", MaxHeldPerPeer, "limit_bytes", MaxHeldBytesPerPeer)
		size -= len(hs[0].change.Raw)
		hs = hs[1:]
	}
	total := len(hs)
	for peer, l := range u.byPeer {
		if peer != from {
			total += len(l)
		}
	}
	for ; total > MaxHeld && len(hs) > 0; total-- {
		u.dropped++
		log("held change dropped: too many held in all", "chart", hs[0].chart, "change", hs[0].change.Hash, "from", from, "limit", MaxHeld)
		hs = hs[1:]
	}
	u.byPeer[from] = hs
	if b.Meta == nil {
		b.Meta = map[string]string{}
	}
	for peer := range touched {
		b.Meta[metaHeld+peer] = encodeHeld(u.byPeer[peer])
	}
	return u
}

// install makes an update current once its batch is written.
func (s *heldStore) install(u heldUpdate) {
	if u.byPeer == nil || len(u.byPeer) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for peer, hs := range u.byPeer {
		if len(hs) == 0 {
			delete(s.byPeer, peer)
			continue
		}
		s.byPeer[peer] = hs
	}
}

// encodeHeld writes held changes as a meta value: base64 of a count, then
// per change its chart ID, raw bytes, signature field and signer clinic.
func encodeHeld(hs []heldChange) string {
	if len(hs) == 0 {
		return ""
	}
	var b []byte
	b = binary.AppendUvarint(b, uint64(len(hs)))
	for _, h := range hs {
		id := uuid.MustParse(h.chart)
		b = append(b, id[:]...)
		b = wire.AppendBytes(b, h.change.Raw)
		b = wire.AppendBytes(b, h.sig)
		b = wire.AppendBytes(b, []byte(h.clinic))
	}
	return base64.StdEncoding.EncodeToString(b)
}

// decodeHeld reads what encodeHeld wrote, bounding every length.
func decodeHeld(v, from string) ([]heldChange, error) {
	data, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		return nil, err
	}
	r := wire.NewReader(data)
	n, err := r.Count(16 + 3)
	if err != nil {
		return nil, err
	}
	if n > MaxHeldPerPeer {
		return nil, fmt.Errorf("%d held changes, limit %d: %w", n, MaxHeldPerPeer, ErrMalformedBundle)
	}
	out := make([]heldChange, 0, n)
	for range n {
		id, err := r.Fixed(16)
		if err != nil {
			return nil, err
		}
		raw, err := r.Bytes(MaxChangeBytes)
		if err != nil {
			return nil, err
		}
		sig, err := r.Bytes(MaxSignatureBytes)
		if err != nil {
			return nil, err
		}
		clinic, err := r.Bytes(256)
		if err != nil {
			return nil, err
		}
		c, err := crdt.ParseChange(raw)
		if err != nil {
			return nil, err
		}
		if len(sig) == 0 {
			sig = nil
		}
		out = append(out, heldChange{chart: uuid.UUID(id).String(), change: c, sig: sig, clinic: string(clinic), from: from})
	}
	return out, r.Done()
}

// splitReady splits a chart's new changes into those that can be applied
// to doc now (every dependency held or ready before them, and a covered
// change's cover ready too, so that it is never stored without the
// signature that vouches for it) and those that must wait.
func splitReady(doc *crdt.Doc, cb chartBatch) (ready, waiting chartBatch) {
	at := make(map[crdt.Hash]int, len(cb.changes))
	for i, c := range cb.changes {
		at[c.Hash] = i
	}
	order := causalOrder(cb.changes)
	ok := make([]bool, len(cb.changes))
	for i := range ok {
		ok[i] = true
	}
	for changed := true; changed; {
		changed = false
		for _, i := range order {
			if !ok[i] {
				continue
			}
			good := true
			for _, d := range cb.changes[i].Deps {
				if j, in := at[d]; in {
					good = good && ok[j]
				} else if !doc.Has(d) {
					good = false
				}
			}
			if h, covered := coverOf(cb.sigs[i]); covered && good {
				if j, in := at[h]; in {
					good = ok[j] || j == i
				} else {
					good = doc.Has(h)
				}
			}
			if !good {
				ok[i], changed = false, true
			}
		}
	}
	ready, waiting = chartBatch{chart: cb.chart}, chartBatch{chart: cb.chart}
	for i := range cb.changes {
		dst := &waiting
		if ok[i] {
			dst = &ready
		}
		dst.add(&cb, i)
	}
	return ready, waiting
}

// withHeld adds to fresh, chart by chart, the changes held for it: a
// bundle touching a chart may bring what they wait for. Their signatures
// were checked when they arrived; v learns their signers' clinics again,
// and checks them against the revocations known now: a held change of a
// device revoked since, past what its revocation accepts, is left out
// and dropped from the held changes by the receive's update (the bundle
// that would release it is honest, and is not refused for it).
func (r *Replica) withHeld(fresh []chartBatch, v *verifier) []chartBatch {
	byChart := r.held.forCharts(fresh)
	if len(byChart) == 0 {
		return fresh
	}
	out := make([]chartBatch, len(fresh))
	for i, cb := range fresh {
		hs := byChart[cb.chart]
		if len(hs) == 0 {
			out[i] = cb
			continue
		}
		in := make(map[crdt.Hash]bool, len(cb.changes))
		for _, c := range cb.changes {
			in[c.Hash] = true
		}
		nb := chartBatch{chart: cb.chart}
		for j := range cb.changes {
			nb.add(&cb, j)
		}
		for _, h := range hs {
			if in[h.change.Hash] {
				continue
			}
			if v != nil {
				if err := v.accepted(cb.chart, h.change); err != nil {
					r.log.Warn("a held change is dropped: a revocation learnt since it arrived refuses it",
						"chart", cb.chart, "change", h.change.Hash, "from", h.from, "err", err)
					r.held.refuse(h.change.Hash)
					continue
				}
			}
			in[h.change.Hash] = true
			one := chartBatch{changes: []crdt.Change{h.change}, sigs: [][]byte{h.sig}, covers: []int{-1}, held: []bool{true}, heldFrom: map[crdt.Hash]string{h.change.Hash: h.from}}
			nb.add(&one, 0)
			if v != nil {
				v.clinic[changeIn{cb.chart, h.change.Hash}] = h.clinic
			}
		}
		out[i] = nb
	}
	return out
}

// Held returns how many received changes are held waiting for changes
// they depend on (see Received.Held).
func (r *Replica) Held() int { return r.held.count() }
