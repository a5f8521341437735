package replica

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/record"
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
// skip does not refuse (a change the peer sent us, or out of its scope),
// until budget bytes are used. It returns the picked changes, the log
// position covered, and whether the budget ran out.
func selectChanges(page []store.Change, skip func(store.Change) bool, budget int) (picked []store.Change, upto uint64, full bool) {
	used := 0
	for _, c := range page {
		if skip(c) {
			upto = c.Seq
			continue
		}
		if used > 0 && used+len(c.Raw) > budget {
			return picked, upto, true
		}
		picked = append(picked, c)
		used += len(c.Raw)
		upto = c.Seq
	}
	return picked, upto, false
}

// advancePeer returns what this replica knows of the bundle's sender once
// the bundle is applied. ownHead is this replica's log head; an
// acknowledgement beyond it is a malformed bundle.
func advancePeer(p store.Peer, b *Bundle, ownHead uint64) (store.Peer, error) {
	if b.Ack > ownHead {
		return p, fmt.Errorf("bundle acknowledges position %d, beyond this replica's log head %d: %w", b.Ack, ownHead, ErrMalformedBundle)
	}
	// Acknowledgements from reordered bundles may be stale: keep the highest.
	p.Acked = max(p.Acked, b.Ack)
	// The sender's log is held contiguously up to Upto only if the bundle
	// starts where we already were.
	if b.Base <= p.Received {
		p.Received = max(p.Received, b.Upto)
	}
	return p, nil
}

func (r *Replica) peer(ctx context.Context, id string) (store.Peer, error) {
	ps, err := r.st.Peers(ctx)
	if err != nil {
		return store.Peer{}, err
	}
	for _, p := range ps {
		if p.ID == id {
			return p, nil
		}
	}
	return store.Peer{ID: id}, nil
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
	p, err := r.peer(ctx, peer)
	if err != nil {
		return Outgoing{}, fmt.Errorf("make bundle for %s: %w", peer, err)
	}
	head, err := r.st.Head(ctx)
	if err != nil {
		return Outgoing{}, fmt.Errorf("make bundle for %s: %w", peer, err)
	}
	b := &Bundle{From: r.id, To: peer, Base: min(p.Acked, head), Head: head, Ack: p.Received}
	b.Upto = b.Base
	budget := r.cfg.BundleBytes
	inScope := r.scopeFilter(ctx, opt.Clinic)
	var scopeErr error
	skip := func(c store.Change) bool {
		if c.From == peer {
			return true
		}
		ok, err := inScope(c.Chart)
		if err != nil && scopeErr == nil {
			scopeErr = err
		}
		return !ok
	}
	for b.Upto < head {
		page, err := r.st.Log(ctx, b.Upto, logPage)
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
		picked, upto, full := selectChanges(page, skip, budget)
		if scopeErr != nil {
			return Outgoing{}, fmt.Errorf("make bundle for %s: %w", peer, scopeErr)
		}
		for _, c := range picked {
			b.Changes = append(b.Changes, BundleChange{Chart: c.Chart, Raw: c.Raw, Sig: c.Sig})
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
		if err := r.backfill(ctx, b, opt.Clinic, inScope); err != nil {
			return Outgoing{}, fmt.Errorf("make bundle for %s: %w", peer, err)
		}
	}
	if b.Signers, err = r.signers(ctx, b); err != nil {
		return Outgoing{}, fmt.Errorf("make bundle for %s: %w", peer, err)
	}
	data, err := b.Encode()
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
func (r *Replica) backfill(ctx context.Context, b *Bundle, clinic string, inScope func(string) (bool, error)) error {
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
		chs, err := r.st.ChartChanges(ctx, g.Chart, lo)
		if err != nil {
			return err
		}
		for _, c := range chs {
			if c.Seq > hi {
				break
			}
			if c.From != b.To {
				b.Changes = append(b.Changes, BundleChange{Chart: c.Chart, Raw: c.Raw, Sig: c.Sig})
			}
		}
	}
	return nil
}

// Received reports what Receive did.
type Received struct {
	From       string
	Applied    int      // changes new to this replica
	Duplicates int      // changes it already had
	Charts     []string // charts that changed, sorted
	Complete   bool     // the sender had nothing more to send
	// Changes lists the changes applied, in the bundle's order, with the
	// author each one's message records (for an access log).
	Changes []ReceivedChange
}

// ReceivedChange is one change Receive applied.
type ReceivedChange struct {
	Chart  string
	Hash   crdt.Hash
	Author record.Author // zero if the message names none
}

type chartBatch struct {
	chart   string
	changes []crdt.Change
	sigs    [][]byte // each change's signature
}

// Receive applies a bundle from a peer, whole or not at all. A bundle seen
// before, or older than what is already held, changes nothing. A bundle
// that is malformed, truncated, of an unknown version, addressed elsewhere
// or carrying invalid changes returns an error matching
// ErrMalformedBundle, ErrBundleVersion, ErrBundleTooLarge or
// ErrWrongRecipient, and the store is exactly as it was.
func (r *Replica) Receive(ctx context.Context, data []byte) (Received, error) {
	return r.ReceiveFrom(ctx, data, ReceiveOptions{})
}

// ReceiveOptions limits what ReceiveFrom accepts.
type ReceiveOptions struct {
	// Sender, if set, is the only replica the bundle may come from (the
	// authenticated device); another gives ErrWrongSender.
	Sender string
	// Clinic, if set, accepts changes only to charts in that clinic's
	// scope: a chart held here must be in its scope already, and a new
	// chart must be registered to it. Anything else gives ErrOutOfScope.
	Clinic string
	// CheckAuthors checks every new change with record.CheckChange: the
	// role recorded on it must be allowed to change each chart section it
	// touches, and it must be a change package record could have made. A
	// bundle with a change that fails is refused whole with
	// ErrUnauthorizedChange, and kept in the store's quarantine for review
	// (store.Store.Quarantined); nothing of it is applied.
	CheckAuthors bool
	// BeforeWrite, if set, is called with what the bundle brings once it
	// has passed every check, just before it is stored (not for a bundle
	// that brings nothing). If it returns an error, nothing is stored and
	// ReceiveFrom returns that error. An access log records writes here,
	// so that no change is stored unrecorded.
	BeforeWrite func(ctx context.Context, rec Received) error
}

// ErrUnauthorizedChange is returned by ReceiveFrom with CheckAuthors for a
// bundle holding a change its author was not allowed to make (or that
// record would never make). The error also matches the record error
// (record.ErrForbidden, record.ErrInvalid).
var ErrUnauthorizedChange = errors.New("replica: change its author was not allowed to make")

// ErrWrongSender is returned by ReceiveFrom for a bundle from a replica
// other than ReceiveOptions.Sender.
var ErrWrongSender = errors.New("replica: bundle from another sender than the authenticated one")

// ErrOutOfScope is returned by ReceiveFrom for a bundle that changes a
// chart outside ReceiveOptions.Clinic's scope. Nothing of it is applied.
var ErrOutOfScope = errors.New("replica: chart outside the clinic's scope")

// ReceiveFrom is Receive for a bundle from a peer that may change only
// what opt allows, such as a clinic device syncing with the cloud. The
// bundle is applied whole or not at all.
func (r *Replica) ReceiveFrom(ctx context.Context, data []byte, opt ReceiveOptions) (Received, error) {
	b, err := DecodeBundle(data)
	if err != nil {
		return Received{}, err
	}
	if b.To != r.id {
		return Received{}, fmt.Errorf("receive bundle for %s: %w", b.To, ErrWrongRecipient)
	}
	if opt.Sender != "" && b.From != opt.Sender {
		return Received{}, fmt.Errorf("receive bundle from %s as %s: %w", b.From, opt.Sender, ErrWrongSender)
	}
	batches, hashes, err := parseBundle(b)
	if err != nil {
		return Received{}, err
	}

	// Signer records are learnt before the write lock: checking them
	// costs a signature each, and a bundle may carry many.
	var signed *verifier
	if r.cfg.Keys != nil {
		signed = r.newVerifier(ctx, b)
	}

	unlock, err := r.lock()
	if err != nil {
		return Received{}, err
	}
	defer unlock()

	known, err := r.st.Known(ctx, hashes)
	if err != nil {
		return Received{}, fmt.Errorf("receive bundle: %w", err)
	}
	p, err := r.peer(ctx, b.From)
	if err != nil {
		return Received{}, fmt.Errorf("receive bundle: %w", err)
	}
	head, err := r.st.Head(ctx)
	if err != nil {
		return Received{}, fmt.Errorf("receive bundle: %w", err)
	}
	np, err := advancePeer(p, b, head)
	if err != nil {
		return Received{}, err
	}
	np.LastSync = r.cfg.Now().UTC()

	res := Received{From: b.From, Complete: b.Complete()}
	batch := store.Batch{Peers: []store.Peer{np}}
	checkAuthors := opt.CheckAuthors || r.cfg.CheckAuthors
	var touched []*loaded // cached charts changed in memory
	fail := func(err error) (Received, error) {
		for _, l := range touched {
			r.cache.remove(l.id)
		}
		return Received{}, err
	}
	for _, cb := range batches {
		var (
			fresh []crdt.Change
			sigs  [][]byte
		)
		for i, c := range cb.changes {
			if known[c.Hash] {
				res.Duplicates++
				continue
			}
			known[c.Hash] = true
			fresh = append(fresh, c)
			sigs = append(sigs, cb.sigs[i])
			if signed != nil {
				if err := signed.verify(cb.chart, c, cb.sigs[i]); errors.Is(err, ErrForgedChange) {
					return fail(r.quarantine(ctx, b.From, data, fmt.Errorf("receive bundle: %w", err)))
				} else if err != nil {
					return fail(fmt.Errorf("receive bundle: %w", err))
				}
			}
		}
		if len(fresh) == 0 {
			continue
		}
		l := r.cache.get(cb.chart)
		isNew := false
		if l != nil {
			touched = append(touched, l)
		} else if l, err = r.loadStored(ctx, cb.chart); errors.Is(err, ErrNotFound) {
			doc, err := crdt.New(r.id)
			if err != nil {
				return fail(err)
			}
			l, isNew = &loaded{id: cb.chart, doc: doc}, true
		} else if err != nil {
			return fail(fmt.Errorf("receive bundle: %w", err))
		}
		registered := l.chart != nil // its registration was already here
		if _, err := l.doc.Apply(fresh...); err != nil {
			return fail(fmt.Errorf("receive bundle: chart %s: %w", cb.chart, err))
		}
		if err := l.open(); err != nil {
			return fail(fmt.Errorf("receive bundle: chart %s: %w: %w", cb.chart, ErrMalformedBundle, err))
		}
		if opt.Clinic != "" && !isNew && !slices.Contains(l.scope, opt.Clinic) {
			// The clinic has lost the chart; changes its devices made
			// before they learnt of it are still theirs to send.
			if err := r.madeInScope(l, fresh, opt.Clinic); err != nil {
				return fail(fmt.Errorf("receive bundle: chart %s: %w", cb.chart, err))
			}
		}
		if checkAuthors && l.users == nil && slices.ContainsFunc(fresh, record.IsUsersChange) {
			return fail(r.quarantine(ctx, b.From, data, fmt.Errorf("receive bundle: document %s: a user roster change on a document that is not its clinic's roster: %w", cb.chart, ErrUnauthorizedChange)))
		}
		if opt.Clinic != "" && isNew {
			var scope []string
			switch {
			case l.users != nil:
				scope = []string{l.users.Clinic()}
			case l.chart != nil:
				if scope, err = l.chart.Scope(); err != nil {
					return fail(fmt.Errorf("receive bundle: chart %s: %w", cb.chart, err))
				}
			}
			if !slices.Contains(scope, opt.Clinic) {
				return fail(fmt.Errorf("receive bundle: new chart %s is not registered to clinic %s: %w", cb.chart, opt.Clinic, ErrOutOfScope))
			}
		}
		if checkAuthors && l.chart != nil {
			// A chart has one registration: a change that starts its
			// history again would replace it, whatever it claims.
			roots := 0
			for _, c := range fresh {
				if len(c.Deps) == 0 {
					roots++
				}
			}
			if roots > 1 || roots == 1 && registered {
				return fail(r.quarantine(ctx, b.From, data, fmt.Errorf("receive bundle: chart %s: a change registers the chart again: %w", cb.chart, ErrUnauthorizedChange)))
			}
		}
		if checkAuthors {
			for _, c := range fresh {
				var err error
				if record.IsUsersChange(c) {
					_, err = record.CheckUsersChange(l.doc, c)
					if err == nil && signed != nil && l.users != nil {
						err = signed.mayChange(c, []string{l.users.Clinic()}, false)
					}
				} else {
					var t record.Touched
					t, err = record.CheckChange(l.doc, c)
					if err == nil && signed != nil {
						err = signed.mayChange(c, t.Scope, true)
					}
				}
				if errors.Is(err, crdt.ErrNotFound) {
					// Its dependencies have not arrived: it cannot be
					// judged, so it is not taken either.
					return fail(fmt.Errorf("receive bundle: chart %s: change %s cannot be checked before the changes it depends on: %w", cb.chart, c.Hash, ErrUnauthorizedChange))
				}
				if err != nil {
					return fail(r.quarantine(ctx, b.From, data, fmt.Errorf("receive bundle: chart %s: change %s: %w: %w", cb.chart, c.Hash, ErrUnauthorizedChange, err)))
				}
			}
		}
		l.sinceSnapshot += len(fresh)
		for i, c := range fresh {
			batch.Changes = append(batch.Changes, store.NewChange{Chart: cb.chart, Hash: c.Hash, Raw: c.Raw, From: b.From, Sig: sigs[i]})
			au, _ := record.AuthorOf(c)
			res.Changes = append(res.Changes, ReceivedChange{Chart: cb.chart, Hash: c.Hash, Author: au})
		}
		if err := r.addChartWrites(&batch, l); err != nil {
			return fail(fmt.Errorf("receive bundle: %w", err))
		}
		res.Applied += len(fresh)
		res.Charts = append(res.Charts, cb.chart)
	}
	if signed != nil {
		signed.addTo(&batch)
	}
	if len(batch.Changes) == 0 && np.Acked == p.Acked && np.Received == p.Received && !p.LastSync.IsZero() {
		// A repeated bundle, or an idle exchange: nothing to store, and
		// no fsync.
		return res, nil
	}
	if opt.BeforeWrite != nil && len(res.Changes) > 0 {
		if err := opt.BeforeWrite(ctx, res); err != nil {
			return fail(fmt.Errorf("receive bundle: %w", err))
		}
	}
	if _, err := r.st.Write(ctx, batch); err != nil {
		return fail(fmt.Errorf("receive bundle: %w", err))
	}
	for _, s := range batch.Snapshots {
		if l := r.cache.get(s.Chart); l != nil {
			l.sinceSnapshot = 0
		}
	}
	slices.Sort(res.Charts)
	r.log.Debug("received bundle", "from", b.From, "applied", res.Applied, "duplicates", res.Duplicates, "charts", len(res.Charts))
	return res, nil
}

// Quarantined lists the bundles ReceiveFrom refused because of a change
// its author was not allowed to make, oldest first, for review.
func (r *Replica) Quarantined(ctx context.Context) ([]store.Quarantined, error) {
	if err := r.checkOpen(); err != nil {
		return nil, err
	}
	q, err := r.st.Quarantined(ctx)
	if err != nil {
		return nil, fmt.Errorf("quarantine: %w", err)
	}
	return q, nil
}

// quarantine keeps a refused bundle for review and returns why it was
// refused. r.mu is held.
func (r *Replica) quarantine(ctx context.Context, from string, data []byte, why error) error {
	q := store.Quarantined{From: from, At: r.cfg.Now().UTC(), Reason: why.Error(), Data: data}
	if _, err := r.st.Write(ctx, store.Batch{Quarantine: []store.Quarantined{q}}); err != nil {
		return errors.Join(why, fmt.Errorf("quarantine the bundle: %w", err))
	}
	r.log.Warn("quarantined a bundle", "from", from, "reason", why.Error())
	return why
}

// madeInScope checks that each change was made on a version of the chart
// (its dependencies) in whose scope clinic was.
func (r *Replica) madeInScope(l *loaded, chs []crdt.Change, clinic string) error {
	for _, c := range chs {
		if len(c.Deps) == 0 {
			return fmt.Errorf("change %s starts a new history: %w", c.Hash, ErrOutOfScope)
		}
		past, err := l.doc.Fork(c.Deps, r.id)
		if err != nil {
			return fmt.Errorf("change %s: the version it was made on is not held: %w", c.Hash, ErrOutOfScope)
		}
		chart, err := record.Open(past)
		if err != nil {
			return fmt.Errorf("change %s: %v: %w", c.Hash, err, ErrOutOfScope)
		}
		scope, err := chart.Scope()
		if err != nil {
			return err
		}
		if !slices.Contains(scope, clinic) {
			return fmt.Errorf("change %s was made after clinic %s lost the chart: %w", c.Hash, clinic, ErrOutOfScope)
		}
	}
	return nil
}

// parseBundle decodes every change of a bundle and groups them by chart,
// keeping the bundle's order.
func parseBundle(b *Bundle) ([]chartBatch, []crdt.Hash, error) {
	var batches []chartBatch
	idx := map[string]int{}
	hashes := make([]crdt.Hash, 0, len(b.Changes))
	for i, bc := range b.Changes {
		c, err := crdt.ParseChange(bc.Raw)
		if err != nil {
			return nil, nil, fmt.Errorf("receive bundle: change %d: %w: %w", i, ErrMalformedBundle, err)
		}
		if !checksumMatches(bc.Raw, c.Hash) {
			return nil, nil, fmt.Errorf("receive bundle: change %d: checksum does not match its content: %w", i, ErrMalformedBundle)
		}
		j, ok := idx[bc.Chart]
		if !ok {
			j = len(batches)
			idx[bc.Chart] = j
			batches = append(batches, chartBatch{chart: bc.Chart})
		}
		batches[j].changes = append(batches[j].changes, c)
		batches[j].sigs = append(batches[j].sigs, bc.Sig)
		hashes = append(hashes, c.Hash)
	}
	return batches, hashes, nil
}

// checksumMatches reports whether a raw change's header checksum (bytes 4
// to 8 of an Automerge chunk) is the start of its hash, as Automerge
// defines it. Automerge does not check it when parsing changes, so a change
// corrupted anywhere would otherwise parse as a different, valid change.
func checksumMatches(raw []byte, h crdt.Hash) bool {
	return len(raw) >= 8 && bytes.Equal(raw[4:8], h[:4])
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
		if out.Complete && back.Complete {
			st.ConvergedAll = true
			return st, nil
		}
	}
	return st, fmt.Errorf("sync %s and %s: no convergence after %d round trips", a.ID(), b.ID(), maxRoundTrips)
}
