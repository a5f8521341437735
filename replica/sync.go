package replica

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/replica/store"
)

// This file is the sync engine. Its decisions are pure functions of state
// (selectChanges, advancePeer); the methods around them read and write the
// store. Positions only move forward on what a peer acknowledges, and every
// change is content-addressed, so bundles may be lost, repeated, reordered
// or carried for days without harm.

// logPage is how many log entries are read at a time while building a bundle.
const logPage = 512

// selectChanges picks, from a page of the log, the changes to send: those
// skip does not refuse, until budget bytes are used. It returns the picked changes, the log
// position covered, and whether the budget ran out.
//
// awaiting holds the covering changes (see cover.go) that picked changes
// wait for, across pages: the bundle is not cut while one is missing, so a
// covered change always travels with its cover.
func selectChanges(page []store.Change, skip func(store.Change) bool, budget int, awaiting map[crdt.Hash]bool) (picked []store.Change, upto uint64, full bool) {
	used := 0
	for _, c := range page {
		if skip(c) {
			upto = c.Seq
			continue
		}
		if used > 0 && used+len(c.Raw) > budget && len(awaiting) == 0 {
			return picked, upto, true
		}
		picked = append(picked, c)
		used += len(c.Raw)
		upto = c.Seq
		delete(awaiting, c.Hash)
		if h, ok := coverOf(c.Sig); ok {
			awaiting[h] = true
		}
	}
	return picked, upto, false
}

// advancePeer returns what this replica knows of the bundle's sender once
// the bundle is applied, and why the bundle's positions were not all
// taken (nil if they were). ownHead is this replica's log head. trusted
// says the bundle is authenticated as its sender's: positions of any
// other are ignored (ErrUnauthenticatedPositions), since a file anyone
// could write would otherwise make this replica believe a peer holds its
// unsent edits, or that it holds the peer's.
//
// A position no honest sender could claim is not taken
// (ErrImpossiblePosition): an acknowledgement beyond this replica's head.
// The rest of the bundle is, so the sync goes on; the peer that claimed
// it is repaired with ResetPeer.
//
// ep is what the bundle's log epochs tell (epoch.go): a sender restored
// is held from the start of its new log, and its acknowledgement taken
// even when it goes back; an acknowledgement of a log this replica no
// longer has means the peer holds nothing of this one's; a late bundle
// of a log the sender left moves nothing.
func advancePeer(p store.Peer, b *Bundle, ownHead uint64, trusted bool, ep epochSeen) (store.Peer, error) {
	if !trusted {
		return p, fmt.Errorf("positions of a bundle from %s not authenticated as its own: %w", b.From, ErrUnauthenticatedPositions)
	}
	if ep.late {
		return p, fmt.Errorf("bundle from %s made before its log was restored: %w", b.From, ErrStalePositions)
	}
	if ep.restarted {
		p.Received = 0
		if !ep.ackStale && b.Ack <= ownHead {
			p.Acked = b.Ack
		}
	}
	var refused error
	if ep.ackStale {
		p.Acked = 0
	} else if b.Ack > ownHead {
		refused = fmt.Errorf("bundle from %s acknowledges position %d, beyond this replica's log head %d: %w", b.From, b.Ack, ownHead, ErrImpossiblePosition)
	} else {
		// Acknowledgements from reordered bundles may be stale: keep
		// the highest.
		p.Acked = max(p.Acked, b.Ack)
	}
	// The sender's log is held contiguously up to Upto only if the bundle
	// starts where we already were.
	if b.Base <= p.Received {
		p.Received = max(p.Received, b.Upto)
	}
	return p, refused
}

// ErrUnauthenticatedPositions is Received.PositionsRefused for a bundle
// whose positions were ignored because nothing authenticates it as its
// sender's: on a replica with Config.Keys, a bundle that carries no valid
// sender signature (Bundle.Auth) and did not come over a channel that
// authenticated its sender (ReceiveOptions.Sender). Its changes, each
// signed by its author, are taken.
var ErrUnauthenticatedPositions = errors.New("replica: bundle positions not authenticated")

// ErrStalePositions is Received.PositionsRefused for a bundle its sender
// made before its log was restored from a backup, carried late: its
// changes are taken, its positions not (see Replica.LogEpoch).
var ErrStalePositions = errors.New("replica: bundle positions of a log its sender left")

// ErrImpossiblePosition is Received.PositionsRefused for a bundle claiming
// a position no honest sender could: it is not taken, and the sync goes on
// (see ResetPeer for a manual repair).
var ErrImpossiblePosition = errors.New("replica: impossible sync position")

// ResetPeer forgets what this replica knows of peer's sync progress: the
// next bundles each way start from the beginning of both logs, and every
// change the other lacks is sent again (changes already held are skipped
// on arrival). It is the repair for a peer whose recorded positions cannot
// be right, such as one restored from a backup.
func (r *Replica) ResetPeer(ctx context.Context, peer string) error {
	if _, err := idBytes(peer); err != nil {
		return fmt.Errorf("reset peer: %w", err)
	}
	unlock, err := r.lock()
	if err != nil {
		return err
	}
	defer unlock()
	p, err := r.peer(ctx, peer)
	if err != nil {
		return fmt.Errorf("reset peer %s: %w", peer, err)
	}
	p.Acked, p.Received = 0, 0
	if _, err := r.st.Write(ctx, store.Batch{Peers: []store.Peer{p}}); err != nil {
		return fmt.Errorf("reset peer %s: %w", peer, err)
	}
	r.log.Warn("sync positions reset", "peer", peer)
	return nil
}

// peer returns what this replica knows of a peer: nothing (zero
// positions) for one it has never synced with.
func (r *Replica) peer(ctx context.Context, id string) (store.Peer, error) {
	p, err := r.st.Peer(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return store.Peer{ID: id}, nil
	}
	return p, err
}

// Outgoing is an encoded bundle and what it holds.
type Outgoing struct {
	Data     []byte
	Changes  int  // changes carried
	Complete bool // false if the sender has more for the next exchange
	// Charts counts the changes carried per chart (for an access log).
	Charts map[string]int
}

// MakeBundle builds the bundle for peer: the changes it is not known to
// have, up to Config.BundleBytes, with this replica's summary and its
// acknowledgement of the peer's log. It writes nothing: what the peer has
// only advances when the peer acknowledges it.
func (r *Replica) MakeBundle(ctx context.Context, peer string) (Outgoing, error) {
	return r.MakeBundleFor(ctx, peer, BundleOptions{})
}

// BundleOptions limits what MakeBundleFor sends.
type BundleOptions struct {
	// Clinic, if set, sends only changes of charts in that clinic's
	// scope (see record.Chart.Scope). When a chart joins the scope, its
	// earlier changes are sent too.
	Clinic string
	// NoAuth leaves the bundle unsigned (see Bundle.Auth), for a courier
	// that authenticates the sender itself (HTTPS with a device
	// certificate): it saves the signature's bytes. Without it, a replica
	// with a Config.Signer signs every bundle.
	NoAuth bool
}

// MakeBundleFor is MakeBundle for a peer that may receive only what opt
// allows, such as a clinic device syncing with the cloud.
func (r *Replica) MakeBundleFor(ctx context.Context, peer string, opt BundleOptions) (Outgoing, error) {
	if err := r.checkOpen(); err != nil {
		return Outgoing{}, err
	}
	if _, err := idBytes(peer); err != nil {
		return Outgoing{}, fmt.Errorf("make bundle: %w", err)
	}
	if peer == r.id {
		return Outgoing{}, errors.New("make bundle: a replica does not sync with itself")
	}
	if err := r.Forked(); err != nil {
		return Outgoing{}, fmt.Errorf("make bundle for %s: %w", peer, err)
	}
	p, err := r.peer(ctx, peer)
	if err != nil {
		return Outgoing{}, fmt.Errorf("make bundle for %s: %w", peer, err)
	}
	head, err := r.st.Head(ctx)
	if err != nil {
		return Outgoing{}, fmt.Errorf("make bundle for %s: %w", peer, err)
	}
	epochs, err := r.peerEpochs(ctx, peer)
	if err != nil {
		return Outgoing{}, fmt.Errorf("make bundle for %s: %w", peer, err)
	}
	b := &Bundle{From: r.id, To: peer, Base: min(p.Acked, head), Head: head, Ack: p.Received, Epoch: r.epoch.Load()}
	if len(epochs) > 0 {
		b.AckEpoch = epochs[0]
	}
	b.Upto = b.Base
	budget := r.cfg.BundleBytes
	var (
		out      []outChange // b.Changes as stored
		awaiting = map[crdt.Hash]bool{}
	)
	var atUpto map[uint64]crdt.Hash // the carried changes by log position
	add := func(c store.Change) {
		b.Changes = append(b.Changes, BundleChange{Chart: c.Chart, Raw: c.Raw})
		out = append(out, outChange{hash: c.Hash, stored: c.Sig})
		if atUpto == nil {
			atUpto = map[uint64]crdt.Hash{}
		}
		atUpto[c.Seq] = c.Hash
	}
	// The store pages the log as the peer may see it: the clinic's log
	// (the changes of the charts now in its scope) less what the peer
	// sent. Other clinics' changes are not read at all, so a sync costs
	// what its clinic did, not what every clinic did; a bundle's Upto
	// still passes what it leaves out.
	skip := func(c store.Change) bool { return c.From == peer }
	for b.Upto < head {
		page, err := r.st.LogFor(ctx, store.LogQuery{After: b.Upto, Limit: logPage, Clinic: opt.Clinic, NotFrom: peer})
		if err != nil {
			return Outgoing{}, fmt.Errorf("make bundle for %s: %w", peer, err)
		}
		// MakeBundle does not hold the write lock: changes stored since
		// head was read belong to the next bundle, or Upto would pass Head.
		for len(page) > 0 && page[len(page)-1].Seq > head {
			page = page[:len(page)-1]
		}
		if len(page) == 0 {
			b.Upto = head
			break
		}
		picked, upto, full := selectChanges(page, skip, budget, awaiting)
		for _, c := range picked {
			add(c)
			budget -= len(c.Raw)
		}
		if upto > b.Upto {
			b.Upto = upto
		}
		if full {
			break
		}
		if len(page) < logPage {
			b.Upto = head
		}
	}
	if opt.Clinic != "" {
		if err := r.backfill(ctx, b, opt.Clinic, r.scopeFilter(ctx, opt.Clinic), add); err != nil {
			return Outgoing{}, fmt.Errorf("make bundle for %s: %w", peer, err)
		}
	}
	// The changes at both positions, so that a replica whose log went
	// back (a copied data folder) can tell (forked.go). The change at
	// Upto is named when the bundle carries it (a device's bundle: its
	// own last change); reading it otherwise (another clinic's change, as
	// often as not, for a clinic's device) would make a sync's cost
	// follow the whole log again, and the peer keeps the check it has.
	if h, ok := atUpto[b.Upto]; ok {
		b.UptoHash = bytes.Clone(h[:PositionHashBytes])
	}
	if err = r.bundleCheck(ctx, b); err != nil {
		return Outgoing{}, fmt.Errorf("make bundle for %s: %w", peer, err)
	}
	if err := r.coverBundle(ctx, b, out); err != nil {
		return Outgoing{}, fmt.Errorf("make bundle for %s: %w", peer, err)
	}
	sign := r.cfg.Signer != nil && !opt.NoAuth
	if b.Signers, err = r.signers(ctx, b, sign); err != nil {
		return Outgoing{}, fmt.Errorf("make bundle for %s: %w", peer, err)
	}
	r.batchSign(b)
	var data []byte
	if sign {
		data, err = b.EncodeSigned(r.cfg.Signer)
	} else {
		data, err = b.Encode()
	}
	if err != nil {
		return Outgoing{}, fmt.Errorf("make bundle for %s: %w", peer, err)
	}
	var charts map[string]int
	if len(b.Changes) > 0 {
		charts = map[string]int{}
		for _, c := range b.Changes {
			charts[c.Chart]++
		}
	}
	return Outgoing{Data: data, Changes: len(b.Changes), Complete: b.Complete(), Charts: charts}, nil
}

// scopeFilter reports whether a chart is in clinic's scope (every chart
// when clinic is empty), reading each chart's index entry once.
func (r *Replica) scopeFilter(ctx context.Context, clinic string) func(chart string) (bool, error) {
	if clinic == "" {
		return func(string) (bool, error) { return true, nil }
	}
	seen := map[string]bool{}
	return func(chart string) (bool, error) {
		if ok, done := seen[chart]; done {
			return ok, nil
		}
		c, err := r.st.Chart(ctx, chart)
		if errors.Is(err, store.ErrNotFound) {
			return false, nil // not indexed yet: no registration, so no scope
		}
		if err != nil {
			return false, err
		}
		seen[chart] = slices.Contains(c.Scope, clinic)
		return seen[chart], nil
	}
}

// backfill adds to b what the walk of the log skipped but clinic's devices
// need, for the charts whose scope clinic joined or left within the
// bundle's log window (Base, Upto]:
//   - a chart that joined: its changes up to Base, which the peer
//     acknowledged while the chart was not in its scope, so never got;
//   - a chart that left (and is still out): its changes in the window up
//     to the one that removed clinic, so the peer learns it lost the
//     chart and stops editing it.
func (r *Replica) backfill(ctx context.Context, b *Bundle, clinic string, inScope func(string) (bool, error), add func(store.Change)) error {
	grants, err := r.st.Grants(ctx, clinic, b.Base, b.Upto)
	if err != nil || len(grants) == 0 {
		return err
	}
	type key struct {
		chart   string
		revoked bool
	}
	done := map[key]bool{}
	for _, g := range grants {
		k := key{g.Chart, g.Revoked}
		if done[k] || (!g.Revoked && b.Base == 0) {
			continue
		}
		done[k] = true
		ok, err := inScope(g.Chart)
		if err != nil {
			return err
		}
		if ok == g.Revoked {
			continue // the scope has changed back since: the walk decided
		}
		lo, hi := uint64(0), b.Base // joined: what was acknowledged unseen
		if g.Revoked {
			lo, hi = b.Base, g.Seq // left: the window up to the removal
		}
		if hi <= lo {
			continue
		}
		chs, err := r.st.LogFor(ctx, store.LogQuery{Chart: g.Chart, After: lo, Upto: hi, NotFrom: b.To})
		if err != nil {
			return err
		}
		for _, c := range chs {
			add(c)
		}
	}
	return nil
}

// SyncStats reports a SyncPair.
type SyncStats struct {
	RoundTrips   int
	BytesAToB    int
	BytesBToA    int
	ChangesAToB  int
	ChangesBToA  int
	AppliedAtA   int
	AppliedAtB   int
	BundlesAToB  int
	BundlesBToA  int
	ConvergedAll bool
}

// maxRoundTrips bounds SyncPair.
const maxRoundTrips = 10000

// SyncPair syncs two in-process replicas through encoded bundles, as an
// interactive courier would: a sends its bundle, b applies it and answers
// with its own, a applies that. It repeats while either side had more to
// send. The last answer's acknowledgement reaches b on the next sync.
func SyncPair(ctx context.Context, a, b *Replica) (SyncStats, error) {
	var st SyncStats
	for st.RoundTrips < maxRoundTrips {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		out, err := a.MakeBundle(ctx, b.ID())
		if err != nil {
			return st, err
		}
		rb, err := b.Receive(ctx, out.Data)
		if err != nil {
			return st, fmt.Errorf("sync %s to %s: %w", a.ID(), b.ID(), err)
		}
		back, err := b.MakeBundle(ctx, a.ID())
		if err != nil {
			return st, err
		}
		ra, err := a.Receive(ctx, back.Data)
		if err != nil {
			return st, fmt.Errorf("sync %s to %s: %w", b.ID(), a.ID(), err)
		}
		st.RoundTrips++
		st.BundlesAToB++
		st.BundlesBToA++
		st.BytesAToB += len(out.Data)
		st.BytesBToA += len(back.Data)
		st.ChangesAToB += out.Changes
		st.ChangesBToA += back.Changes
		st.AppliedAtB += rb.Applied
		st.AppliedAtA += ra.Applied
		if out.Complete && back.Complete && ra.Complete {
			st.ConvergedAll = true
			return st, nil
		}
	}
	return st, fmt.Errorf("sync %s and %s: no convergence after %d round trips", a.ID(), b.ID(), maxRoundTrips)
}
