package replica

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/internal/wire"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica/internal/zchange"
	"github.com/chartsync/chartsync/replica/store"
)

// This file is the receiving half of the sync engine. A bundle goes
// through four steps, each with plain inputs and outputs:
//
//	decode   bytes → decoded: the frame, the bundle's fields and every
//	         change parsed and grouped by chart (no state at all);
//	verify   decoded → the changes this replica lacks, each signature
//	         checked (store reads only: what is held, signer records);
//	plan     decoded + the charts as held → a plan: the charts with the
//	         changes applied and judged (scope, roles, form), the store
//	         batch and the report, or the reason to refuse the bundle.
//	         It does no I/O and is tested without a store;
//	commit   under the write lock: check that no chart the plan touches
//	         changed since it was read, then write the batch and put the
//	         new charts in the cache.
//
// Only commit holds the replica's write lock, so one device's large bundle
// does not stall another's sync: the expensive work (parsing, signatures,
// applying and judging changes) runs on private copies of the charts.
// When a chart changed between plan and commit (another bundle or an edit
// got there first), the bundle is planned again from what is now held; after
// a few such races the whole receive runs under the lock, so it always
// finishes.

// Received reports what Receive did.
type Received struct {
	From       string
	Applied    int      // changes new to this replica
	Duplicates int      // changes it already had
	Charts     []string // charts that changed, sorted
	// Complete: the sender had nothing more to send, and nothing the
	// bundle told sends this replica back (a peer restored from a
	// backup, or one acknowledging a log this replica no longer has:
	// see LogEpoch), so a sync whose own bundle was complete is done.
	Complete bool
	// Held counts the bundle's changes kept aside because changes they
	// depend on have not arrived (see MaxHeldPerChart): they are applied
	// when a later bundle brings those.
	Held int
	// PositionsRefused says why the bundle's sync positions were not all
	// taken (nil if they were): ErrUnauthenticatedPositions for a bundle
	// nothing authenticates as its sender's, ErrImpossiblePosition for a
	// position no honest sender could claim. The changes are taken
	// either way; positions only decide what is sent next.
	PositionsRefused error
	// Changes lists the changes applied, in the bundle's order, with the
	// author each one's message records (for an access log).
	Changes []ReceivedChange
}

// ReceivedChange is one change Receive applied.
type ReceivedChange struct {
	Chart  string
	Hash   crdt.Hash
	Author record.Author // zero if the message names none
	// Op is the operation the change's message names (record.OperationOf),
	// as its author claims it.
	Op string
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
	// chart must be registered to it. Anything else gives ErrOutOfScope,
	// and the bundle is kept in the quarantine for review, as a forged
	// one is.
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
	// so that no change is stored unrecorded. It is called with the
	// replica's write lock held: it must not call the replica.
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

// errChartMoved is commit's answer when a chart the plan read has changed
// since: the bundle must be planned again.
var errChartMoved = errors.New("a chart changed while the bundle was judged")

// optimisticTries is how many times a bundle is planned outside the write
// lock before it is planned under it.
const optimisticTries = 3

// sharedTries is how many more times a bundle is planned under the lock on
// a shared store (Config.SharedStore) when another node's writes keep
// moving its charts.
const sharedTries = 5

// ReceiveFrom is Receive for a bundle from a peer that may change only
// what opt allows, such as a clinic device syncing with the cloud. The
// bundle is applied whole or not at all. A bundle with changes (or signer
// records), or a large one, first waits until fewer than max(8, 4×cores)
// bundles are being received in the process; if ctx ends meanwhile, its
// error is returned and nothing is read.
func (r *Replica) ReceiveFrom(ctx context.Context, data []byte, opt ReceiveOptions) (Received, error) {
	if err := r.checkOpen(); err != nil {
		return Received{}, err
	}
	if err := r.Forked(); err != nil {
		return Received{}, fmt.Errorf("receive bundle: %w", err)
	}
	// A large bundle waits for a slot before it is decoded; a small one
	// is decoded first, and waits only if it brings changes or signer
	// records: an idle sync is never queued behind other peers' bundles.
	var release func()
	defer func() {
		if release != nil {
			release()
		}
	}()
	take := func() error {
		var err error
		if release, err = receiveSlot(ctx); err != nil {
			return fmt.Errorf("receive bundle: %w", err)
		}
		return nil
	}
	// What the frame declares its body to be bounds what decoding it
	// allocates, however well it compresses.
	if size, err := wire.Size(data, bundleKind); err == nil && size > receiveSlotFreeBytes {
		if err := take(); err != nil {
			return Received{}, err
		}
	}
	d, err := decodeReceived(data, r.id, opt.Sender)
	if err != nil {
		return Received{}, err
	}
	// Signer records cost a signature check each.
	if release == nil && (len(d.bundle.Changes) > 0 || len(d.bundle.Signers) > 0) {
		if err := take(); err != nil {
			return Received{}, err
		}
	}
	// Signer records are learnt once: checking them costs a signature
	// each, and a bundle may carry many.
	var signed *verifier
	if r.cfg.Keys != nil {
		signed = r.newVerifier(ctx, d.bundle)
	}
	d.authenticated = opt.Sender != "" || r.cfg.Keys != nil && r.authentic(ctx, d.bundle)
	d.trusted = r.cfg.Keys == nil || d.authenticated
	d.forkEvidence = d.authenticated && opt.Clinic == ""
	for try := 0; ; try++ {
		locked := try >= optimisticTries
		res, err := r.receiveOnce(ctx, d, signed, opt, locked)
		// On a shared store even a plan made under this replica's lock
		// can meet another node's write; a few more tries, then the
		// error (the peer syncs again later).
		if errors.Is(err, errChartMoved) && (!locked || r.cfg.SharedStore && try < optimisticTries+sharedTries) {
			r.log.Debug("bundle planned again", "from", d.bundle.From, "try", try+1)
			continue
		}
		return res, err
	}
}

// receiveSlots bounds the bundles this process receives at once, over
// all its replicas: a bundle's decoding, checks and planning take a core
// and, while they run, memory in proportion to the bundle (its changes
// decoded, the charts it changes copied). More bundles at once than cores
// finish no sooner, but together they can hold far more memory: a cloud
// answering hundreds of devices at the same moment, or a process
// simulating many devices. Reading a chart from a store can wait on a
// disk or a database, so there are several slots per core; a bundle
// waiting for a slot holds only its bytes (a small one, decoded). A slot
// is held until the bundle is committed or refused, and nothing that
// holds one waits for another: the callbacks a receive makes while it
// holds one (Config.Keys, ReceiveOptions.BeforeWrite) must not receive a
// bundle themselves.
var receiveSlots = make(chan struct{}, max(8, 4*runtime.GOMAXPROCS(0)))

// receiveSlotFreeBytes is the largest bundle body (as its frame declares
// it, decompressed) that is decoded before it waits for a slot.
const receiveSlotFreeBytes = 64 << 10

// receiveSlot waits for one of receiveSlots, or for ctx to end; release
// gives it back.
func receiveSlot(ctx context.Context) (release func(), err error) {
	select {
	case receiveSlots <- struct{}{}:
		return func() { <-receiveSlots }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// receiveOnce verifies, plans and commits a decoded bundle. With locked
// set, it holds the write lock throughout, so no chart can move.
func (r *Replica) receiveOnce(ctx context.Context, d *decoded, signed *verifier, opt ReceiveOptions, locked bool) (Received, error) {
	var unlock func()
	if locked {
		var err error
		if unlock, err = r.lock(); err != nil {
			return Received{}, err
		}
		defer func() { unlock() }()
	}
	// Every copy of a chart read for this bundle is closed when it is done
	// with, unless commit handed it to the cache: its Automerge memory is
	// freed at once, not by a finalizer some time later.
	var copies []*heldChart
	defer func() {
		for _, h := range copies {
			h.close()
		}
	}()
	known, err := r.st.Known(ctx, d.hashes)
	if err != nil {
		return Received{}, fmt.Errorf("receive bundle: %w", err)
	}
	fresh := d.fresh(known)
	var sigs signatures
	if signed != nil {
		if err := d.verifySigned(signed, fresh); errors.Is(err, ErrForgedChange) {
			return Received{}, r.quarantineLocked(ctx, d, locked, fmt.Errorf("receive bundle: %w", err))
		} else if err != nil {
			return Received{}, fmt.Errorf("receive bundle: %w", err)
		}
		sigs = signed
		// Only a change this replica's own key signed shows it lost
		// changes of its own: anyone can name its ID in a change.
		if d.forkEvidence {
			if why := ownLost(fresh, r.id, d.bundle.From); why != "" {
				return Received{}, fmt.Errorf("receive bundle: %w", r.forkFound(ctx, why, locked))
			}
		}
	}
	fresh = r.withHeld(fresh, signed)
	rules := receiveRules{
		cfg:          r.cfg,
		actor:        r.id,
		clinic:       opt.Clinic,
		checkAuthors: opt.CheckAuthors || r.cfg.CheckAuthors,
		pack:         packs(r.st),
		cut:          cutChart(d.bundle),
		kept:         &r.kept,
		newCheck:     r.newAuthorCheck,
	}
	// Charts are read and planned a group at a time, and the copies of
	// those the cache does not hold are let go after each group: what a
	// bundle costs in memory follows the group, not the bundle (a chart
	// with a long note costs Automerge megabytes).
	groups := planGroups(fresh)
	p := receivePlan{res: Received{From: d.bundle.From, Complete: d.bundle.Complete()}}
	mem := newMemWatch(r.cfg.ReceiveMemory)
	for i, group := range groups {
		held, err := r.heldCharts(ctx, group, locked)
		for _, h := range held {
			copies = append(copies, h)
		}
		if err != nil {
			return Received{}, fmt.Errorf("receive bundle: %w", err)
		}
		gp := planReceive(d, group, held, sigs, rules)
		if gp.err != nil {
			p = gp
			break
		}
		p.merge(gp)
		if len(groups) > 1 {
			for _, h := range gp.charts {
				h.release()
			}
			if i < len(groups)-1 {
				mem.check()
			}
		}
	}
	p.res.Duplicates = len(d.hashes) - p.fromBundle
	slices.Sort(p.res.Charts)
	if p.err != nil {
		if p.quarantine {
			return Received{}, r.quarantineLocked(ctx, d, locked, p.err)
		}
		return Received{}, p.err
	}
	if signed != nil {
		signed.addTo(&p.batch)
	}
	if !locked {
		if r.afterPlan != nil {
			r.afterPlan(d.bundle.From)
		}
		if unlock, err = r.lock(); err != nil {
			return Received{}, err
		}
		defer unlock()
	}
	return r.commit(ctx, d, p, opt)
}

// authentic reports whether b carries a valid signature of its sender
// over its positions and changes (Bundle.Auth), checked against Keys.
func (r *Replica) authentic(ctx context.Context, b *Bundle) bool {
	if len(b.Auth) == 0 {
		return false
	}
	keys := r.cfg.Keys
	if _, err := keys.VerifyChange(b.From, bundleAuthDomain, b.Signed(), b.Auth); err == nil {
		return true
	}
	// A sender met before, whose enrolment this replica stored with its
	// changes, but the directory has not learnt since it was opened.
	recs, err := r.storedSigners(ctx, b.From)
	if err != nil || len(recs) == 0 {
		return false
	}
	for _, rec := range recs {
		_, _ = keys.LearnSigner(rec)
	}
	_, err = keys.VerifyChange(b.From, bundleAuthDomain, b.Signed(), b.Auth)
	return err == nil
}

// quarantineLocked keeps a refused bundle for review, taking the write
// lock unless it is held.
func (r *Replica) quarantineLocked(ctx context.Context, d *decoded, locked bool, why error) error {
	if !locked {
		unlock, err := r.lock()
		if err != nil {
			return errors.Join(why, err)
		}
		defer unlock()
	}
	return r.quarantine(ctx, d.bundle.From, d.data, why)
}

// decoded is a bundle that passed the first step: its frame and fields
// are well formed, it is addressed here from an accepted sender, and every
// change parses and matches its checksum.
type decoded struct {
	data   []byte // the bundle as received, for the quarantine
	bundle *Bundle
	charts []chartBatch               // changes grouped by chart, in the bundle's order
	hashes []crdt.Hash                // every change's hash, in the bundle's order
	parsed []crdt.Change              // every change, in the bundle's order
	reach  map[int]map[crdt.Hash]bool // what each covering change's history holds, as worked out
	// trusted: the bundle is known to come from the replica it names, so
	// its positions count.
	trusted bool
	// authenticated: something proves it (not merely a replica without
	// Keys taking it on trust).
	authenticated bool
	// forkEvidence: the bundle may find this replica forked (its
	// positions, or a change of this replica's own it no longer holds):
	// it is authenticated, and this replica is not serving a clinic's
	// devices (ReceiveOptions.Clinic). A cloud never takes one device's
	// word that its own log went back: a lying device could otherwise
	// stop it for every device, and a cloud restored from a backup is
	// sent its own lost changes back, which it takes.
	forkEvidence bool
}

type chartBatch struct {
	chart   string
	changes []crdt.Change
	sigs    [][]byte // each change's signature field as stored: a signature, a cover marker or nil
	covers  []int    // for each change, the bundle index of its cover, or -1
	// held marks the changes that were held here, not in the bundle
	// (nil if none is).
	held []bool
	// heldFrom names, for each held change, the peer that sent it: it
	// is stored as received from that peer, not from the one whose
	// bundle released it (which may lack it).
	heldFrom map[crdt.Hash]string
}

// isHeld reports whether change i was held here, not in the bundle.
func (cb *chartBatch) isHeld(i int) bool { return i < len(cb.held) && cb.held[i] }

// add appends change i of from.
func (cb *chartBatch) add(from *chartBatch, i int) {
	cb.changes = append(cb.changes, from.changes[i])
	cb.sigs = append(cb.sigs, from.sigs[i])
	cb.covers = append(cb.covers, from.covers[i])
	if from.isHeld(i) || cb.held != nil {
		for len(cb.held) < len(cb.changes)-1 {
			cb.held = append(cb.held, false)
		}
		cb.held = append(cb.held, from.isHeld(i))
	}
	if f, ok := from.heldFrom[from.changes[i].Hash]; ok && from.isHeld(i) {
		if cb.heldFrom == nil {
			cb.heldFrom = map[crdt.Hash]string{}
		}
		cb.heldFrom[from.changes[i].Hash] = f
	}
}

// decodeReceived is the first step of receiving: it decodes a bundle for
// replica id, from sender if that is set. It needs no state.
func decodeReceived(data []byte, id, sender string) (*decoded, error) {
	b, err := DecodeBundle(data)
	if err != nil {
		return nil, err
	}
	if b.To != id {
		return nil, fmt.Errorf("receive bundle for %s: %w", b.To, ErrWrongRecipient)
	}
	if sender != "" && b.From != sender {
		return nil, fmt.Errorf("receive bundle from %s as %s: %w", b.From, sender, ErrWrongSender)
	}
	batches, parsed, err := parseBundle(b)
	if err != nil {
		return nil, err
	}
	hashes := make([]crdt.Hash, len(parsed))
	for i, c := range parsed {
		hashes[i] = c.Hash
	}
	return &decoded{data: data, bundle: b, charts: batches, hashes: hashes, parsed: parsed}, nil
}

// reaches reports whether the bundle's change c is in the history of its
// change at index from, through dependencies among the bundle's changes of
// the same chart.
func (d *decoded) reaches(from int, c crdt.Hash) bool {
	if d.reach == nil {
		d.reach = map[int]map[crdt.Hash]bool{}
	}
	set, ok := d.reach[from]
	if !ok {
		chart := d.bundle.Changes[from].Chart
		nodes := []sigNode{}
		idx := map[crdt.Hash]int{}
		start := -1
		for i, p := range d.parsed {
			if d.bundle.Changes[i].Chart != chart {
				continue
			}
			if i == from {
				start = len(nodes)
			}
			idx[p.Hash] = len(nodes)
			nodes = append(nodes, sigNode{hash: p.Hash, deps: p.Deps})
		}
		set = map[crdt.Hash]bool{}
		walkHistory(nodes, idx, start, func(j int) { set[nodes[j].hash] = true })
		d.reach[from] = set
	}
	return set[c]
}

// verifySigned checks the signatures of the fresh changes: each its own,
// or its cover's (a later signed change of the same device, whose history
// holds it).
func (d *decoded) verifySigned(v *verifier, fresh []chartBatch) error {
	for _, cb := range d.charts {
		targets := map[string]map[int]bool{} // distinct covers, per device
		for i, c := range cb.changes {
			j := cb.covers[i]
			if j < 0 {
				continue
			}
			if targets[c.Actor] == nil {
				targets[c.Actor] = map[int]bool{}
			}
			if targets[c.Actor][j] = true; len(targets[c.Actor]) > maxCoversPerActor {
				return fmt.Errorf("chart %s: more than %d changes of %s cover others: %w", cb.chart, maxCoversPerActor, c.Actor, ErrMalformedBundle)
			}
		}
	}
	for _, cb := range fresh {
		for i, c := range cb.changes {
			j := cb.covers[i]
			if j < 0 {
				if err := v.verify(cb.chart, c, cb.sigs[i]); err != nil {
					return err
				}
				continue
			}
			h := d.parsed[j]
			if h.Actor != c.Actor {
				return fmt.Errorf("change %s of chart %s by %s is vouched for by a change of %s: %w", c.Hash, cb.chart, c.Actor, h.Actor, ErrForgedChange)
			}
			if err := v.verify(cb.chart, h, d.bundle.Changes[j].Sig); err != nil {
				return err
			}
			if err := v.accepted(cb.chart, c); err != nil {
				return err
			}
			if !d.reaches(j, c.Hash) {
				return fmt.Errorf("change %s of chart %s is vouched for by %s, whose history in the bundle does not hold it: %w", c.Hash, cb.chart, h.Hash, ErrForgedChange)
			}
			v.clinic[changeIn{cb.chart, c.Hash}] = v.clinic[changeIn{cb.chart, h.Hash}]
		}
	}
	return nil
}

// fresh returns, per chart, the changes not in known and not earlier in
// the bundle, in the bundle's order. Charts with none are left out.
func (d *decoded) fresh(known map[crdt.Hash]bool) []chartBatch {
	seen := make(map[crdt.Hash]bool, len(d.hashes))
	var out []chartBatch
	for _, cb := range d.charts {
		f := chartBatch{chart: cb.chart}
		for i, c := range cb.changes {
			if known[c.Hash] || seen[c.Hash] {
				continue
			}
			seen[c.Hash] = true
			f.add(&cb, i)
		}
		if len(f.changes) > 0 {
			out = append(out, f)
		}
	}
	return out
}

// heldChart is a chart as held when a receive began: a private copy the
// plan may change, and the heads of the index entry it was read against,
// which commit checks again.
type heldChart struct {
	l     *loaded
	isNew bool // nothing of the chart is held
	// base is the chart's index heads as read (loaded.row), not its
	// document's: a chart read without a stored change it cannot take
	// has fewer heads than its entry, and would seem overtaken on every
	// try.
	base      crdt.Heads
	fromCache bool // taken (a roster: copied) from the cache, which commit updates
	written   bool // taken from the cache, where it was kept open as changed
	cached    bool // commit put it in the cache, which owns it from then on
}

// release lets go of the copy of a chart the cache does not hold, once
// planned: commit needs only its ID and heads. A chart read from the
// cache is kept, to replace the cached one.
func (h *heldChart) release() {
	if !h.fromCache {
		h.close()
		h.l = &loaded{id: h.l.id, released: true}
	}
}

// close frees the copy's document unless the cache took it.
func (h *heldChart) close() {
	if h.cached || h.l == nil || h.l.doc == nil {
		return
	}
	_ = h.l.doc.Close()
}

// heldCharts reads the charts that fresh changes, as private copies: a
// cached chart is forked, any other is loaded from the store, on as many
// cores as there are (loading a chart applies its stored changes, which
// costs Automerge a millisecond or more a chart). Without the write lock
// the copies may be overtaken; commit notices. On an error it returns
// the copies made, for the caller to let go.
func (r *Replica) heldCharts(ctx context.Context, fresh []chartBatch, locked bool) (map[string]*heldChart, error) {
	out := make(map[string]*heldChart, len(fresh))
	var stored []int // fresh's charts the cache does not hold
	for i, cb := range fresh {
		h, err := r.takeCached(cb.chart, locked)
		if err != nil {
			return out, err
		}
		if h != nil {
			out[cb.chart] = h
		} else {
			stored = append(stored, i)
		}
	}
	loaded := make([]*heldChart, len(stored))
	errs := make([]error, len(stored))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(stored)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range next {
				loaded[k], errs[k] = r.storedChart(ctx, fresh[stored[k]].chart)
			}
		}()
	}
	for k := range stored {
		next <- k
	}
	close(next)
	wg.Wait()
	for k, i := range stored {
		if loaded[k] != nil {
			out[fresh[i].chart] = loaded[k]
		}
	}
	return out, errors.Join(errs...)
}

// storedChart reads a chart the cache does not hold from the store, or
// starts it if the store has none of it. It touches nothing of the
// replica's but the store, and may run on several goroutines at once.
func (r *Replica) storedChart(ctx context.Context, id string) (*heldChart, error) {
	l, err := r.loadStored(ctx, id)
	if errors.Is(err, ErrNotFound) {
		doc, err := crdt.New(r.id)
		if err != nil {
			return nil, err
		}
		return &heldChart{l: &loaded{id: id, doc: doc}, isNew: true}, nil
	}
	if err != nil {
		return nil, err
	}
	return &heldChart{l: l, base: l.row}, nil
}

// takeCached returns a cached chart for a receive to plan on, or nil if
// it is not cached. A chart is taken out of the cache, not copied: a
// copy costs Automerge the chart's whole history, for each bundle of a
// long one. The receive owns it from then on; commit puts it back, and a
// receive that fails closes it, so that the chart is read again from the
// store. Meanwhile a reader or writer of the chart reads it from the
// store, and commit notices a writer. A user roster, which other calls
// read while a receive plans, is copied.
func (r *Replica) takeCached(id string, locked bool) (*heldChart, error) {
	if !locked {
		unlock, err := r.lock()
		if err != nil {
			return nil, err
		}
		defer unlock()
	}
	c, err := r.cachedCurrent(context.Background(), id)
	if c == nil || err != nil {
		return nil, err
	}
	if c.users == nil {
		l, written := r.cache.take(id)
		return &heldChart{l: l, base: l.row, fromCache: true, written: written}, nil
	}
	doc, err := c.doc.Fork(nil, r.id) // carries held changes over
	if err != nil {
		return nil, fmt.Errorf("copy chart %s: %w", id, err)
	}
	r.chartsCopied.Add(1)
	l := &loaded{id: id, doc: doc, sinceSnapshot: c.sinceSnapshot, scope: slices.Clone(c.scope), row: slices.Clone(c.row)}
	if err := l.open(); err != nil {
		_ = doc.Close()
		return nil, fmt.Errorf("copy chart %s: %w", id, err)
	}
	return &heldChart{l: l, base: l.row, fromCache: true}, nil
}

// signatures is what planning needs of the verified signatures.
type signatures interface {
	// mayChange checks that the device that signed c may change a
	// document of scope (unscoped: a chart, which clinics in
	// Config.Unscoped may change whatever its scope).
	mayChange(chart string, c crdt.Change, scope []string, unscoped bool) error
	// clinicOf returns the clinic of the device that signed the change
	// with hash h, as checked.
	clinicOf(chart string, h crdt.Hash) string
}

// receiveRules is what planning needs of the replica and the options.
type receiveRules struct {
	cfg          Config // with defaults
	actor        string // this replica's ID
	clinic       string // ReceiveOptions.Clinic
	checkAuthors bool
	pack         bool // the store keeps changes compressed (store.Packer)
	// cut is the chart whose changes end a bundle after which the
	// sender has more to send: its history may go on in the next
	// bundle, so its Checker is kept for it (keptChecker). "" if none.
	cut string
	// kept is the replica's keptChecker.
	kept *keptChecker
	// newCheck starts an author check of a chart (Replica.newAuthorCheck).
	newCheck func(chart string, doc *crdt.Doc) (*authorCheck, error)
}

// receivePlan is what planning decided: either the writes that store the
// bundle, or why it is refused.
type receivePlan struct {
	batch  store.Batch // changes, charts, snapshots and grants (no peer yet)
	res    Received
	charts []*heldChart // the charts as they are once the batch is written
	// untouched are the charts taken from the cache that the bundle
	// leaves as they were (their changes all wait, say): commit puts
	// them back.
	untouched []*heldChart
	// waiting are the bundle's changes to hold until their dependencies
	// arrive.
	waiting []heldChange
	// fromBundle counts the bundle's changes applied or held.
	fromBundle int
	// err, if set, refuses the bundle; quarantine keeps it for review.
	err        error
	quarantine bool
}

func (p *receivePlan) refuse(err error, quarantine bool) receivePlan {
	return receivePlan{err: err, quarantine: quarantine}
}

// planReceive is the third step: it applies each chart's fresh changes to
// the held copy, judges them (scope, registration, roles, form) and builds
// the batch that stores them. It does no I/O: held holds every chart fresh
// names; sigs is nil when signatures are not checked.
func planReceive(d *decoded, fresh []chartBatch, held map[string]*heldChart, sigs signatures, rules receiveRules) receivePlan {
	b := d.bundle
	p := receivePlan{res: Received{From: b.From, Complete: b.Complete()}}
	plans := make([]chartPlan, len(fresh))
	for i, cb := range fresh {
		plans[i] = chartPlan{cb: cb, h: held[cb.chart]}
		if plans[i].h == nil {
			return p.refuse(fmt.Errorf("receive bundle: chart %s was not read", cb.chart), false)
		}
	}
	// Charts are planned independently, each on its own copy: on as many
	// cores as there are, and merged in the bundle's order, so the result
	// does not depend on which finishes first.
	workers := min(runtime.GOMAXPROCS(0), len(plans))
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				plans[i].plan(b.From, sigs, rules)
			}
		}()
	}
	for i := range plans {
		next <- i
	}
	close(next)
	wg.Wait()
	fromBundle := 0 // changes of the bundle applied or held
	for _, cp := range plans {
		if cp.err != nil {
			return p.refuse(cp.err, cp.quarantine)
		}
		p.waiting = append(p.waiting, cp.waiting...)
		p.res.Held += len(cp.waiting)
		fromBundle += len(cp.waiting)
		if len(cp.cb.changes) == 0 {
			if cp.h.fromCache {
				p.untouched = append(p.untouched, cp.h)
			}
			continue
		}
		for i := range cp.cb.changes {
			if !cp.cb.isHeld(i) {
				fromBundle++
			}
		}
		p.batch.Changes = append(p.batch.Changes, cp.batch.Changes...)
		p.batch.Charts = append(p.batch.Charts, cp.batch.Charts...)
		p.batch.Grants = append(p.batch.Grants, cp.batch.Grants...)
		p.batch.Snapshots = append(p.batch.Snapshots, cp.batch.Snapshots...)
		for id, heads := range cp.batch.Expect {
			if p.batch.Expect == nil {
				p.batch.Expect = map[string]crdt.Heads{}
			}
			p.batch.Expect[id] = heads
		}
		p.res.Changes = append(p.res.Changes, cp.changes...)
		p.res.Applied += len(cp.cb.changes)
		p.res.Charts = append(p.res.Charts, cp.cb.chart)
		p.charts = append(p.charts, cp.h)
	}
	p.fromBundle = fromBundle
	p.res.Duplicates = len(d.hashes) - fromBundle
	slices.Sort(p.res.Charts)
	return p
}

// merge adds the plan of another group of the same bundle's charts.
func (p *receivePlan) merge(q receivePlan) {
	for id, heads := range q.batch.Expect {
		if p.batch.Expect == nil {
			p.batch.Expect = map[string]crdt.Heads{}
		}
		if _, ok := p.batch.Expect[id]; !ok {
			p.batch.Expect[id] = heads
		}
	}
	p.batch.Changes = append(p.batch.Changes, q.batch.Changes...)
	p.batch.Charts = append(p.batch.Charts, q.batch.Charts...)
	p.batch.Grants = append(p.batch.Grants, q.batch.Grants...)
	p.batch.Snapshots = append(p.batch.Snapshots, q.batch.Snapshots...)
	p.res.Changes = append(p.res.Changes, q.res.Changes...)
	p.res.Applied += q.res.Applied
	p.res.Held += q.res.Held
	p.res.Charts = append(p.res.Charts, q.res.Charts...)
	p.charts = append(p.charts, q.charts...)
	p.untouched = append(p.untouched, q.untouched...)
	p.waiting = append(p.waiting, q.waiting...)
	p.fromBundle += q.fromBundle
}

// planGroupBytes bounds the change bytes of the charts read and planned
// together (a group has at least one chart). A chart's memory in Automerge
// can be hundreds of times its change bytes (a 20,000-character note is a
// 20 KB change and about 10 MiB loaded), so a group is small.
const planGroupBytes = 256 << 10

// memWatch lets go of the memory of charts a receive has planned once the
// process has grown by more than a budget since it last did. Automerge's
// memory is freed only by finalizers, which run after a collection: a
// bundle of many large charts would otherwise hold them all.
type memWatch struct {
	budget, base int64
}

func newMemWatch(budget int) *memWatch {
	return &memWatch{budget: int64(budget), base: residentBytes()}
}

// check runs a collection if the resident set grew past the budget (or
// cannot be read).
func (m *memWatch) check() {
	now := residentBytes()
	if now != 0 && now-m.base <= m.budget {
		return
	}
	runtime.GC()
	m.base = residentBytes()
}

// planGroups splits fresh into groups of charts of at most planGroupBytes
// of changes each, in order.
func planGroups(fresh []chartBatch) [][]chartBatch {
	var out [][]chartBatch
	start, size := 0, 0
	for i, cb := range fresh {
		n := 0
		for _, c := range cb.changes {
			n += len(c.Raw)
		}
		if i > start && size+n > planGroupBytes {
			out = append(out, fresh[start:i])
			start, size = i, 0
		}
		size += n
	}
	if start < len(fresh) || len(out) == 0 {
		out = append(out, fresh[start:])
	}
	return out
}

// chartPlan is one chart's part of a plan.
type chartPlan struct {
	cb      chartBatch
	h       *heldChart
	batch   store.Batch // the chart's changes and writes
	changes []ReceivedChange
	waiting []heldChange // changes of the bundle to hold for their dependencies
	// err, if set, refuses the bundle; quarantine keeps it for review.
	err        error
	quarantine bool
}

// plan applies and judges the chart's new changes and builds its writes.
func (cp *chartPlan) plan(from string, sigs signatures, rules receiveRules) {
	// What is held was read after what is known: a change stored in
	// between is in the copy, and is not new.
	if cp.cb = cp.h.unheld(cp.cb); len(cp.cb.changes) == 0 {
		return
	}
	// Changes whose dependencies are missing wait, outside the chart.
	ready, waiting := splitReady(cp.h.l.doc, cp.cb)
	for i, c := range waiting.changes {
		if waiting.isHeld(i) {
			continue // held already
		}
		hc := heldChange{chart: cp.cb.chart, change: c, sig: waiting.sigs[i], from: from}
		if sigs != nil {
			hc.clinic = sigs.clinicOf(cp.cb.chart, c.Hash)
		}
		cp.waiting = append(cp.waiting, hc)
	}
	if cp.cb = ready; len(cp.cb.changes) == 0 {
		return
	}
	if cp.err, cp.quarantine = planChart(cp.h, cp.cb, sigs, rules); cp.err != nil {
		return
	}
	for i, c := range cp.cb.changes {
		src := from
		if f, ok := cp.cb.heldFrom[c.Hash]; ok && cp.cb.isHeld(i) {
			src = f // released by this bundle, sent by another peer
		}
		nc := store.NewChange{Chart: cp.cb.chart, Hash: c.Hash, Raw: c.Raw, From: src, Sig: cp.cb.sigs[i]}
		if rules.pack {
			// Compressed here, where charts are planned in parallel,
			// not in the commit, which holds the write lock.
			nc.Packed = zchange.Compress(c.Raw)
		}
		cp.batch.Changes = append(cp.batch.Changes, nc)
		au, _ := record.AuthorOf(c)
		cp.changes = append(cp.changes, ReceivedChange{Chart: cp.cb.chart, Hash: c.Hash, Author: au, Op: record.OperationOf(c)})
	}
	if err := chartWrites(rules.cfg, &cp.batch, cp.h.l, !cp.h.isNew); err != nil {
		cp.err = fmt.Errorf("receive bundle: %w", err)
	}
}

// unheld returns cb less the changes the held copy already has (applied,
// or held for their dependencies).
func (h *heldChart) unheld(cb chartBatch) chartBatch {
	if h.isNew {
		return cb
	}
	pending := map[crdt.Hash]bool{}
	for _, c := range h.l.doc.Pending() {
		pending[c.Hash] = true
	}
	out := chartBatch{chart: cb.chart}
	for i, c := range cb.changes {
		if pending[c.Hash] || h.l.doc.Has(c.Hash) {
			continue
		}
		out.add(&cb, i)
	}
	return out
}

// authorCheck starts an author check of chart, as held in doc, with
// rules.newCheck, or with a new Checker if it is not set (plans made
// without a replica). A Checker kept resting for the chart resumes on
// doc; one that cannot (the chart now holds a change held for its
// dependencies) is replaced by a new one.
func (rules receiveRules) authorCheck(chart string, doc *crdt.Doc) (*authorCheck, error) {
	if rules.newCheck == nil {
		return newChecker(chart, doc)
	}
	check, err := rules.newCheck(chart, doc)
	if err != nil || check.c.Resume(doc) {
		return check, err
	}
	check.close()
	return newChecker(chart, doc)
}

// cutChart returns the chart of b's last change if its sender has more
// to send, else "".
func cutChart(b *Bundle) string {
	if b.Complete() || len(b.Changes) == 0 {
		return ""
	}
	return b.Changes[len(b.Changes)-1].Chart
}

// judgeSliceOps bounds the operations of a chart's changes decoded at
// once while they are judged, checked and applied: a decoded operation
// takes about 200 bytes of memory where its bytes in the change take a
// few, so a bundle's changes decoded all at once cost several times the
// bundle (25 MiB for a bundle of 4 MiB of one chart's changes).
const judgeSliceOps = 16 << 10

// afterSlice, if set (by tests), is called each time planChart has
// checked and applied a slice of a chart's changes, while it still holds
// their decoded operations.
var afterSlice func()

// planChart applies one chart's fresh changes to its held copy and judges
// them. It reports whether a refusal is one to keep for review.
//
// The changes are taken in causal order, in slices of at most
// judgeSliceOps decoded operations (a change at least): each slice is
// judged, checked by record's rules and applied before the next is
// decoded, so only one slice's operations are held at a time. A change
// is always checked before it touches the chart. On a refusal the held
// copy may hold part of the changes; the plan is refused and the copy
// let go.
func planChart(h *heldChart, cb chartBatch, sigs signatures, rules receiveRules) (err error, quarantine bool) {
	l := h.l
	registered := l.chart != nil // its registration was already here
	var (
		check   *authorCheck
		touched []record.Touched // what check found each change to touch
	)
	users := slices.ContainsFunc(cb.changes, record.IsUsersChange)
	// A history cut by the bundle's size goes on in the sender's next
	// bundle: its Checker is kept for it, if all is well.
	keep := rules.cut != "" && cb.chart == rules.cut
	if rules.checkAuthors && l.users == nil && !users {
		// Chart changes are judged against the chart as held, before
		// the bundle's changes are applied.
		if check, err = rules.authorCheck(cb.chart, l.doc); err != nil {
			return fmt.Errorf("receive bundle: chart %s: %w", cb.chart, err), false
		}
		defer func() {
			if keep && err == nil && rules.kept != nil {
				// The chart holds every change the Checker accepted:
				// the Checker kept for the rest of the history rests
				// on it, keeping no copy of those changes, and
				// copies the chart only if a change of the next
				// bundle needs it.
				check.c.Rest(l.doc)
				rules.kept.keep(check)
			} else {
				check.close()
			}
		}()
		touched = make([]record.Touched, len(cb.changes))
	}
	order := causalOrder(cb.changes)
	for len(order) > 0 {
		// Each change's operations are decoded and its bytes judged
		// once, here, where charts are planned in parallel: the author
		// check and the apply below use what was found. A change
		// refused here is refused again, with its reason, where it is
		// used. The decoded operations live on the slice's own copies
		// of the changes, and go with them.
		slice := make([]crdt.Change, 0, min(len(order), 256))
		ops, n := 0, 0
		for n < len(order) && (n == 0 || ops < judgeSliceOps) {
			c := cb.changes[order[n]]
			if info, err := crdt.Judge(&c); err == nil {
				ops += len(info.Ops)
			}
			slice = append(slice, c)
			n++
		}
		if check != nil {
			// Judged by record's rules before they touch the chart, in
			// causal order: a change naming objects its history does
			// not hold can abort automerge-rs on apply, and the check
			// refuses it first. Whether the signer may change the
			// chart is asked once the chart's scope is known, below.
			for k, i := range order[:n] {
				t, err := check.check(slice[k])
				if err != nil && errors.Is(err, crdt.ErrMalformed) {
					// A sequence number its author used for another
					// change is a forked author, as on apply below.
					if fe := seqReused(l.doc, cb, err, &cb.changes[i]); fe != nil {
						return fmt.Errorf("receive bundle: chart %s: %w: %w", cb.chart, ErrMalformedBundle, fe), true
					}
				}
				if err, quarantine := authorError(err, cb.chart, cb.changes[i]); err != nil {
					return err, quarantine
				}
				touched[i] = t
			}
		}
		if err := applyReceived(l.doc, slice); err != nil {
			// The peer sent a change this chart cannot take (a sequence
			// number reused or skipped, an operation on nothing): the
			// bundle is refused, and kept for review. A sequence number
			// its author used for another change is a forked author.
			if fe := seqReused(l.doc, cb, err, nil); fe != nil {
				return fmt.Errorf("receive bundle: chart %s: %w: %w", cb.chart, ErrMalformedBundle, fe), true
			}
			return fmt.Errorf("receive bundle: chart %s: %w: %w", cb.chart, ErrMalformedBundle, err), true
		}
		if afterSlice != nil {
			afterSlice()
			runtime.KeepAlive(slice)
		}
		order = order[n:]
	}
	if err := l.open(); err != nil {
		return fmt.Errorf("receive bundle: chart %s: %w: %w", cb.chart, ErrMalformedBundle, err), false
	}
	if check != nil && l.chart != nil {
		// The checker has read the chart as it now is: its scope and
		// index row need not read it again. A Checker kept for the
		// sender's next bundle gives a copy.
		if keep {
			l.chart.AdoptCopy(check.c)
		} else {
			l.chart.Adopt(check.c)
		}
	}
	if rules.clinic != "" && !h.isNew && !slices.Contains(l.scope, rules.clinic) {
		// The clinic has lost the chart; changes its devices made
		// before they learnt of it are still theirs to send.
		if err := madeInScope(l, cb.changes, rules.clinic, rules.actor); err != nil {
			// Kept for review, as a forged change is.
			return fmt.Errorf("receive bundle: chart %s: %w", cb.chart, err), true
		}
	}
	if rules.checkAuthors && l.users == nil && users {
		return fmt.Errorf("receive bundle: document %s: a user roster change on a document that is not its clinic's roster: %w", cb.chart, ErrUnauthorizedChange), true
	}
	if rules.clinic != "" && h.isNew {
		var scope []string
		switch {
		case l.users != nil:
			scope = []string{l.users.Clinic()}
		case l.chart != nil:
			if scope, err = l.chart.Scope(); err != nil {
				return fmt.Errorf("receive bundle: chart %s: %w", cb.chart, err), false
			}
		}
		if !slices.Contains(scope, rules.clinic) {
			return fmt.Errorf("receive bundle: new chart %s is not registered to clinic %s: %w", cb.chart, rules.clinic, ErrOutOfScope), true
		}
	}
	if rules.checkAuthors && l.chart != nil {
		// A chart has one registration: a change that starts its
		// history again would replace it, whatever it claims.
		roots := 0
		for _, c := range cb.changes {
			if len(c.Deps) == 0 {
				roots++
			}
		}
		if roots > 1 || roots == 1 && registered {
			return fmt.Errorf("receive bundle: chart %s: a change registers the chart again: %w", cb.chart, ErrUnauthorizedChange), true
		}
	}
	if rules.checkAuthors {
		for i, c := range cb.changes {
			var err error
			switch {
			case check == nil:
				err, quarantine = judgeChange(l, c, cb.chart, sigs)
			case sigs != nil:
				err, quarantine = authorError(sigs.mayChange(cb.chart, c, touched[i].Scope, true), cb.chart, c)
			}
			if err != nil {
				return err, quarantine
			}
		}
	}
	l.sinceSnapshot += len(cb.changes)
	return nil, false
}

// judgeChange checks one change's author on l.doc, which holds its
// dependencies by then: a roster change against the roster, a chart
// change with record.CheckChange, and that the signer's clinic may change
// the document. It reports whether a refusal is one to keep for review.
func judgeChange(l *loaded, c crdt.Change, chart string, sigs signatures) (error, bool) {
	var err error
	if record.IsUsersChange(c) {
		_, err = record.CheckUsersChange(l.doc, c)
		if err == nil && sigs != nil && l.users != nil {
			err = sigs.mayChange(chart, c, []string{l.users.Clinic()}, false)
		}
	} else {
		var t record.Touched
		t, err = record.CheckChange(l.doc, c)
		if err == nil && sigs != nil {
			err = sigs.mayChange(chart, c, t.Scope, true)
		}
	}
	return authorError(err, chart, c)
}

// authorError turns what an author check found into the bundle's refusal
// (nil if the check passed), and reports whether to keep the bundle for
// review.
func authorError(err error, chart string, c crdt.Change) (error, bool) {
	if err == nil {
		return nil, false
	}
	if errors.Is(err, crdt.ErrNotFound) {
		// Its dependencies have not arrived: it cannot be judged, so it
		// is not taken either.
		return fmt.Errorf("receive bundle: chart %s: change %s cannot be checked before the changes it depends on: %w", chart, c.Hash, ErrUnauthorizedChange), false
	}
	if errors.Is(err, crdt.ErrMalformed) {
		// Not a question of who may change what: the chart cannot take
		// the change at all.
		return fmt.Errorf("receive bundle: chart %s: change %s: %w: %w", chart, c.Hash, ErrMalformedBundle, err), true
	}
	return fmt.Errorf("receive bundle: chart %s: change %s: %w: %w", chart, c.Hash, ErrUnauthorizedChange, err), true
}

// causalOrder returns the indices of chs with every change after those of
// chs it depends on, otherwise in the given order (a bundle lists a chart's
// backfilled changes after later ones).
func causalOrder(chs []crdt.Change) []int {
	at := make(map[crdt.Hash]int, len(chs))
	for i, c := range chs {
		at[c.Hash] = i
	}
	order := make([]int, 0, len(chs))
	done := make([]bool, len(chs))
	type frame struct{ i, dep int } // a change, and the next of its deps to visit
	for root := range chs {
		if done[root] {
			continue
		}
		done[root] = true // marked on entry: hashes make cycles impossible
		stack := []frame{{i: root}}
		for len(stack) > 0 {
			f := &stack[len(stack)-1]
			if f.dep < len(chs[f.i].Deps) {
				d := chs[f.i].Deps[f.dep]
				f.dep++
				if j, ok := at[d]; ok && !done[j] {
					done[j] = true
					stack = append(stack, frame{i: j})
				}
				continue
			}
			order = append(order, f.i)
			stack = stack[:len(stack)-1]
		}
	}
	return order
}

// commit is the last step, under the write lock: it checks that every
// chart the plan read is still as it was, records what the bundle says of
// its sender, writes the batch and caches the new charts.
func (r *Replica) commit(ctx context.Context, d *decoded, p receivePlan, opt ReceiveOptions) (Received, error) {
	for _, h := range p.charts {
		now, err := r.heldHeads(ctx, h.l.id)
		if err != nil {
			return Received{}, fmt.Errorf("receive bundle: %w", err)
		}
		if !now.Equal(h.base) {
			return Received{}, fmt.Errorf("receive bundle: chart %s: %w", h.l.id, errChartMoved)
		}
	}
	b := d.bundle
	peer, err := r.peer(ctx, b.From)
	if err != nil {
		return Received{}, fmt.Errorf("receive bundle: %w", err)
	}
	head, err := r.st.Head(ctx)
	if err != nil {
		return Received{}, fmt.Errorf("receive bundle: %w", err)
	}
	var ep epochSeen
	if d.trusted {
		known, err := r.peerEpochs(ctx, b.From)
		if err != nil {
			return Received{}, fmt.Errorf("receive bundle: %w", err)
		}
		ep = seeEpochs(b, r.epoch.Load(), known)
	}
	if d.forkEvidence && !ep.ackStale && !ep.late {
		if why, err := r.positionFork(ctx, b, head); err != nil {
			return Received{}, fmt.Errorf("receive bundle: %w", err)
		} else if why != "" {
			return Received{}, fmt.Errorf("receive bundle: %w", r.markForked(ctx, why))
		}
	}
	np, refused := advancePeer(peer, b, head, d.trusted, ep)
	if refused != nil {
		p.res.PositionsRefused = refused
		level := slog.LevelWarn
		if errors.Is(refused, ErrUnauthenticatedPositions) {
			level = slog.LevelInfo // an unsigned file: its changes are taken
		}
		r.log.Log(ctx, level, "bundle positions not taken", "from", b.From, "reason", refused)
	}
	np.LastSync = r.cfg.Now().UTC()
	p.batch.Peers = []store.Peer{np}
	if ep.record != "" || ep.restarted {
		if p.batch.Meta == nil {
			p.batch.Meta = map[string]string{}
		}
		if ep.record != "" {
			p.batch.Meta[metaPeerEpoch+b.From] = ep.record
		}
		if ep.restarted {
			// The check kept is of the sender's old log.
			p.batch.Meta[metaReceivedHash+b.From] = ""
			r.log.Warn("peer's log restored from a backup: sending it again what it lacks", "peer", b.From, "epoch", b.Epoch)
		}
	}
	if ep.restarted || ep.ackStale {
		p.res.Complete = false
	}
	if ep.ackStale {
		r.log.Warn("peer acknowledges a log this replica no longer has (restored from a backup): sending it again what it lacks", "peer", b.From, "epoch", r.epoch.Load())
	}
	if d.trusted && !ep.late && !ep.restarted {
		if err := r.noteCheck(ctx, &p.batch, b, np); err != nil {
			return Received{}, fmt.Errorf("receive bundle: %w", err)
		}
	}
	applied := make(map[crdt.Hash]bool, len(p.batch.Changes))
	for _, c := range p.batch.Changes {
		applied[c.Hash] = true
	}
	hu := r.held.update(&p.batch, applied, p.waiting, b.From, func(msg string, args ...any) { r.log.Warn(msg, args...) })
	if len(p.batch.Changes) == 0 && len(p.batch.Meta) == 0 && np.Acked == peer.Acked && np.Received == peer.Received && !peer.LastSync.IsZero() {
		// A repeated bundle, or an idle exchange: nothing to store, and
		// no fsync.
		return p.res, nil
	}
	if opt.BeforeWrite != nil && len(p.res.Changes) > 0 {
		if err := opt.BeforeWrite(ctx, p.res); err != nil {
			return Received{}, fmt.Errorf("receive bundle: %w", err)
		}
	}
	if _, err := r.st.Write(ctx, p.batch); errors.Is(err, store.ErrConflict) {
		// Another node changed a chart since it was read: read them
		// again and plan the bundle again.
		for _, h := range p.charts {
			r.cache.remove(h.l.id)
		}
		return Received{}, fmt.Errorf("receive bundle: %w: %w", errChartMoved, err)
	} else if err != nil {
		// The write may have reached the disk (ErrOutcomeUnknown): the
		// charts it wrote, and the changes held for their dependencies,
		// are read again from the store, never kept as they were.
		for _, h := range p.charts {
			r.cache.remove(h.l.id)
		}
		if errors.Is(err, store.ErrOutcomeUnknown) {
			if herr := r.loadHeld(ctx); herr != nil {
				return Received{}, fmt.Errorf("receive bundle: %w (and reading the held changes again: %v)", err, herr)
			}
		}
		return Received{}, fmt.Errorf("receive bundle: %w", err)
	}
	r.held.install(hu)
	if v, ok := p.batch.Meta[metaAuthorityRevocations]; ok {
		r.storedAuthorityRevocations(v)
	}
	snapshot := map[string]bool{}
	for _, s := range p.batch.Snapshots {
		snapshot[s.Chart] = true
	}
	cut := cutChart(b)
	for _, h := range p.charts {
		if snapshot[h.l.id] {
			h.l.sinceSnapshot = 0
		}
		switch {
		case r.cache.get(h.l.id) != nil && h.l.released:
			r.cache.remove(h.l.id) // cached since it was read: read again when needed
		case r.cache.get(h.l.id) != nil, !h.l.released && (!h.isNew || h.l.id == cut):
			// The judged copy replaces what was held; a chart read from
			// the store for a later change is kept too, and so is the
			// chart the bundle was cut in, so that its next bundle (a
			// long history arrives in several) does not read it again.
			// Other new charts, as a first sync brings by the thousand,
			// are not. It stays open as a chart this call changed.
			r.cache.putChanged(h.l)
			h.cached = true
		}
	}
	for _, h := range p.untouched {
		// Back in the cache, unless another call cached the chart
		// meanwhile or changed it.
		if r.cache.get(h.l.id) != nil {
			continue
		}
		if now, err := r.heldHeads(ctx, h.l.id); err != nil || !now.Equal(h.base) {
			continue
		}
		if h.written {
			r.cache.putChanged(h.l)
		} else {
			r.cache.put(h.l)
		}
		h.cached = true
	}
	r.log.Debug("received bundle", "from", b.From, "applied", p.res.Applied, "duplicates", p.res.Duplicates, "charts", len(p.res.Charts))
	return p.res, nil
}

// heldHeads returns the heads of a chart's index entry as held now (nil
// if it has none): a cached chart's as it was read or written. r.mu is
// held.
func (r *Replica) heldHeads(ctx context.Context, id string) (crdt.Heads, error) {
	if l := r.cache.get(id); l != nil {
		return l.row, nil
	}
	c, err := r.st.Chart(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return c.Heads, nil
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
	// A bundle refused again (a file left on the stick, a resend) is
	// kept once: the quarantine does not grow with every try.
	key := metaQuarantined + hex.EncodeToString(func() []byte { s := sha256.Sum256(data); return s[:] }())
	if _, err := r.st.Meta(ctx, key); err == nil {
		r.log.Info("refused a bundle already in the quarantine", "from", from, "reason", why.Error())
		return why
	} else if !errors.Is(err, store.ErrNotFound) {
		return errors.Join(why, fmt.Errorf("quarantine the bundle: %w", err))
	}
	// A peer that sends refused bundle after refused bundle fills the
	// quarantine only so far: past MaxQuarantinedPerPeer the rest are
	// refused and logged, not kept.
	countKey := metaQuarantineCount + from
	n := 0
	if v, err := r.st.Meta(ctx, countKey); err == nil {
		n, _ = strconv.Atoi(v)
	} else if !errors.Is(err, store.ErrNotFound) {
		return errors.Join(why, fmt.Errorf("quarantine the bundle: %w", err))
	}
	if n >= MaxQuarantinedPerPeer {
		r.log.Warn("refused a bundle not kept: the quarantine holds as many of this peer's as it may", "from", from, "limit", MaxQuarantinedPerPeer, "reason", why.Error())
		return why
	}
	q := store.Quarantined{From: from, At: r.cfg.Now().UTC(), Reason: why.Error(), Data: data}
	meta := map[string]string{key: q.At.Format(time.RFC3339), countKey: strconv.Itoa(n + 1)}
	if _, err := r.st.Write(ctx, store.Batch{Quarantine: []store.Quarantined{q}, Meta: meta}); err != nil {
		return errors.Join(why, fmt.Errorf("quarantine the bundle: %w", err))
	}
	r.log.Warn("quarantined a bundle", "from", from, "reason", why.Error())
	return why
}

// metaQuarantined is the meta key prefix marking a bundle (by its SHA-256)
// as kept in the quarantine; metaQuarantineCount, followed by a peer's ID,
// counts the bundles of that peer kept there.
const (
	metaQuarantined     = "quarantined/"
	metaQuarantineCount = "quarantine-count/"
)

// MaxQuarantinedPerPeer bounds the refused bundles of one sender kept in
// the quarantine; later ones are refused all the same, and logged.
const MaxQuarantinedPerPeer = 100

// madeInScope checks that each change was made on a version of the chart
// (its dependencies) in whose scope clinic was.
func madeInScope(l *loaded, chs []crdt.Change, clinic, actor string) error {
	for _, c := range chs {
		if len(c.Deps) == 0 {
			return fmt.Errorf("change %s starts a new history: %w", c.Hash, ErrOutOfScope)
		}
		past, err := l.doc.Fork(c.Deps, actor)
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
// keeping the bundle's order. A covered change is given its cover's
// marker as the signature field to store.
func parseBundle(b *Bundle) ([]chartBatch, []crdt.Change, error) {
	var batches []chartBatch
	idx := map[string]int{}
	// Each change is read in Go here (its structure and checksum); its
	// operations are judged when its chart is planned, in parallel, and
	// Automerge sees it only once judged.
	parsed := make([]crdt.Change, len(b.Changes))
	for i, bc := range b.Changes {
		c, err := crdt.ReadChange(bc.Raw)
		if err != nil {
			return nil, nil, fmt.Errorf("receive bundle: change %d: %w: %w", i, ErrMalformedBundle, err)
		}
		parsed[i] = c
	}
	for i, bc := range b.Changes {
		j, ok := idx[bc.Chart]
		if !ok {
			j = len(batches)
			idx[bc.Chart] = j
			batches = append(batches, chartBatch{chart: bc.Chart})
		}
		sig, cover := bc.Sig, -1
		if bc.Cover != 0 {
			cover = bc.Cover - 1
			sig = coverMarker(parsed[cover].Hash)
		}
		batches[j].changes = append(batches[j].changes, parsed[i])
		batches[j].sigs = append(batches[j].sigs, sig)
		batches[j].covers = append(batches[j].covers, cover)
	}
	return batches, parsed, nil
}

// packs reports whether st keeps changes compressed.
func packs(st store.Store) bool {
	p, ok := st.(store.Packer)
	return ok && p.PacksChanges()
}

// applyReceived applies parsed changes to doc, holding what cannot apply
// yet; on error doc is unchanged. The changes' bytes are copied into one
// buffer of the chart's own first, so that the document does not keep the
// bundle they came in alive; what Judge found travels with them.
func applyReceived(doc *crdt.Doc, chs []crdt.Change) error {
	if len(chs) == 0 {
		return nil
	}
	size := 0
	for _, c := range chs {
		size += len(c.Raw)
	}
	buf := make([]byte, 0, size)
	own := make([]crdt.Change, len(chs))
	for i, c := range chs {
		at := len(buf)
		buf = append(buf, c.Raw...)
		c.Raw = buf[at:len(buf):len(buf)]
		own[i] = c
	}
	_, err := doc.Apply(own...)
	return err
}
