package replica

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/replica/store"
)

// This file tells a replica that is not the one its peers knew: a data
// folder copied, or restored from a backup by copying it back, keeps the
// replica ID, which is the Automerge actor of its changes, while its log
// goes back to the copy. Its next edits reuse sequence numbers its
// original already used, and its peers' positions name changes it does
// not hold. Four signs give it away:
//
//   - a received change of a chart whose author already used its sequence
//     number there for another change (the recipient refuses the bundle:
//     the author is forked, whichever replica forwarded it);
//   - a received change made by this replica's own actor, signed by its
//     key, that it does not hold (it made it, and lost it);
//   - a peer's acknowledgement of a position whose change, as the peer was
//     told of it (Bundle.CheckHash), is not the one this replica holds
//     there, or none (its log is behind what it told the peer);
//   - (not proof alone: a peer's acknowledgement beyond this replica's
//     log head, which a liar could write, is only left untaken).
//
// The second and third, from an authenticated peer, on a replica not
// serving a clinic's devices (ReceiveOptions.Clinic), mean this replica
// is the copy: it is marked forked, for
// good (a meta value, so a restart keeps it), and from then on refuses
// to write as its actor (Register, Edit), to make bundles and to receive
// them, with a *ForkedError. The way on is RecoverFork: a new replica ID,
// every change of the copy kept, and peers that see it as a new replica
// send it everything it lacks.

// ErrForkedReplica is matched (errors.Is) by the error for a replica whose
// ID another copy of it writes as, or wrote as before it was copied back:
// a copied or restored data folder. Received from a peer, it refuses the
// bundle (which also matches ErrMalformedBundle); on the copy itself it
// refuses every edit and sync until it is recovered with RecoverFork (on
// a clinic device, `clinic recover -to NEW-DIR`).
var ErrForkedReplica = errors.New("replica: forked (a copied or restored data folder writing as the replica it was copied from)")

// ForkedError says which replica is forked and how it was found.
type ForkedError struct {
	// Replica is the forked replica's ID (the Automerge actor reused).
	Replica string
	// Self is set when the replica reporting the error is the fork.
	Self bool
	// Reason says what gave it away.
	Reason string
}

func (e *ForkedError) Error() string {
	if e.Self {
		return fmt.Sprintf("replica %s is a copy of a replica that went on without it (%s): it must not write as that replica again; recover it as a new replica (RecoverFork; on a clinic device, clinic recover -to NEW-DIR) to keep its changes and get back what it lost", e.Replica, e.Reason)
	}
	return fmt.Sprintf("replica %s is forked: %s (a copied or restored data folder writing as its original; it must be recovered as a new replica)", e.Replica, e.Reason)
}

// Unwrap makes the error match ErrForkedReplica.
func (e *ForkedError) Unwrap() error { return ErrForkedReplica }

// PositionHashBytes is how many bytes of a change's hash a bundle carries
// to name the change at a log position (Bundle.UptoHash, CheckHash): enough
// to tell two histories apart, which is all they are for (the positions
// themselves are authenticated with the bundle).
const PositionHashBytes = 8

// Meta keys: metaForked, followed by a replica ID, holds why that replica
// is known to be a fork of its original (set only for the replica's own
// ID: a restored copy under a new ID is not forked); metaReceivedHash,
// followed by a peer's ID, holds "position:hash" of the peer's change at
// the position this replica last recorded as received (Peer.Received).
const (
	metaForked       = "forked/"
	metaReceivedHash = "received-hash/"
)

// loadForked reads whether this replica was found forked before.
func (r *Replica) loadForked(ctx context.Context) error {
	why, err := r.st.Meta(ctx, metaForked+r.id)
	if errors.Is(err, store.ErrNotFound) || err == nil && why == "" {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read whether replica %s is forked: %w", r.id, err)
	}
	r.forked.Store(&ForkedError{Replica: r.id, Self: true, Reason: why})
	return nil
}

// Forked returns a *ForkedError (matching ErrForkedReplica) if this
// replica has been found to be a copy of one that went on without it, or
// nil.
func (r *Replica) Forked() error {
	if fe := r.forked.Load(); fe != nil {
		return fe
	}
	return nil
}

// MarkForked records that this replica is forked, for a courier that
// learnt it from a peer's refusal naming this replica (a *ForkedError, or
// an error whose text says why). From then on the replica refuses to
// write as its ID or to sync, until it is recovered (RecoverFork).
func (r *Replica) MarkForked(ctx context.Context, why error) error {
	unlock, err := r.lock()
	if err != nil {
		return err
	}
	defer unlock()
	reason := why.Error()
	var fe *ForkedError
	if errors.As(why, &fe) {
		reason = fe.Reason
	}
	return r.markForked(ctx, reason)
}

// markForked records that this replica is forked and returns its error.
// r.mu is held.
func (r *Replica) markForked(ctx context.Context, reason string) error {
	if fe := r.forked.Load(); fe != nil {
		return fe
	}
	fe := &ForkedError{Replica: r.id, Self: true, Reason: reason}
	if _, err := r.st.Write(ctx, store.Batch{Meta: map[string]string{metaForked + r.id: reason}}); err != nil {
		// Refused all the same; the next bundle finds it again.
		r.forked.Store(fe)
		return errors.Join(fe, fmt.Errorf("record that the replica is forked: %w", err))
	}
	r.forked.Store(fe)
	r.log.Error("replica is a copy of one that went on without it: it stops writing and syncing as its ID; recover it as a new replica", "reason", reason)
	return fe
}

// positionHash returns the first PositionHashBytes bytes of the hash of
// this replica's change at log position pos, or nil if pos is 0 or names
// no change.
func (r *Replica) positionHash(ctx context.Context, pos uint64) ([]byte, error) {
	if pos == 0 {
		return nil, nil
	}
	chs, err := r.st.Log(ctx, pos-1, 1)
	if err != nil {
		return nil, fmt.Errorf("read log position %d: %w", pos, err)
	}
	if len(chs) == 0 || chs[0].Seq != pos {
		return nil, nil
	}
	return bytes.Clone(chs[0].Hash[:PositionHashBytes]), nil
}

// A check is what a peer said of its change at one position of its log
// (Bundle.UptoHash), kept to be handed back (Bundle.CheckAt, CheckHash)
// until the peer has shown it holds that change still: a bundle of its
// whose Base (what it has taken as acknowledged, after checking) is at
// least that position. Only then does the check move on to a later
// position. A copy of the peer made before that position, which went on
// under the same ID, holds another change there, or none, and finds out.

// check returns the check kept for peer (0 and nil if none).
func (r *Replica) check(ctx context.Context, peer string) (uint64, []byte, error) {
	v, err := r.st.Meta(ctx, metaReceivedHash+peer)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil, nil
	}
	if err != nil {
		return 0, nil, err
	}
	at, h, ok := strings.Cut(v, ":")
	n, err := strconv.ParseUint(at, 10, 64)
	b, herr := hex.DecodeString(h)
	if !ok || err != nil || n == 0 || herr != nil || len(b) != PositionHashBytes {
		return 0, nil, nil
	}
	return n, b, nil
}

// bundleCheck sets b's check for its recipient: the one kept, if b
// acknowledges that far.
func (r *Replica) bundleCheck(ctx context.Context, b *Bundle) error {
	at, h, err := r.check(ctx, b.To)
	if err != nil || at == 0 || at > b.Ack {
		return err
	}
	b.CheckAt, b.CheckHash = at, h
	return nil
}

// noteCheck adds to batch the check to keep for the bundle's sender once
// the bundle is taken: its UptoHash, if the position the check held is
// shown to be held still (or none was kept). r.mu is held.
func (r *Replica) noteCheck(ctx context.Context, batch *store.Batch, b *Bundle, now store.Peer) error {
	if len(b.UptoHash) == 0 || now.Received != b.Upto {
		return nil
	}
	at, _, err := r.check(ctx, b.From)
	if err != nil || at >= b.Upto || at != 0 && b.Base < at {
		return err
	}
	if batch.Meta == nil {
		batch.Meta = map[string]string{}
	}
	batch.Meta[metaReceivedHash+b.From] = strconv.FormatUint(b.Upto, 10) + ":" + hex.EncodeToString(b.UptoHash)
	return nil
}

// positionFork reports, for an authenticated bundle, why its sender's
// acknowledgement shows this replica's log went back ("" if it does not):
// a position beyond head, or a check naming another change than the one
// held at its position. r.mu is held.
func (r *Replica) positionFork(ctx context.Context, b *Bundle, head uint64) (string, error) {
	if b.CheckAt == 0 {
		// An acknowledgement beyond head alone proves nothing: a peer
		// told a lie about this replica's log (or a buggy one) would
		// have it stop for good. It is not taken (advancePeer); a
		// check naming a change this replica does not hold is proof.
		return "", nil
	}
	own, err := r.positionHash(ctx, b.CheckAt)
	if err != nil || bytes.Equal(own, b.CheckHash) {
		return "", err
	}
	if own == nil {
		return fmt.Sprintf("peer %s holds change %x… at position %d of this replica's log, where this replica holds none", b.From, b.CheckHash, b.CheckAt), nil
	}
	return fmt.Sprintf("peer %s holds change %x… at position %d of this replica's log, where this replica holds %x…", b.From, b.CheckHash, b.CheckAt, own), nil
}

// ownLost reports why fresh shows this replica lost changes of its own
// ("" if it does not): a change its actor made that it does not hold.
func ownLost(fresh []chartBatch, actor, from string) string {
	for _, cb := range fresh {
		for _, c := range cb.changes {
			if c.Actor == actor {
				return fmt.Sprintf("peer %s sent change %s (number %d of this replica in chart %s), which this replica made and no longer holds", from, c.Hash, c.Seq, cb.chart)
			}
		}
	}
	return ""
}

// seqReused looks, once a chart refused one of cb's changes, for the
// reason being a forked author: another change of the same author with
// the same sequence number, held in doc or carried in cb. It returns the
// error to refuse the bundle with, or nil. The refused change is the one
// refused names (a *crdt.InvalidChangeError), or else bad, if not nil.
func seqReused(doc *crdt.Doc, cb chartBatch, refused error, bad *crdt.Change) error {
	var ice *crdt.InvalidChangeError
	if errors.As(refused, &ice) {
		bad = nil
		for i := range cb.changes {
			if cb.changes[i].Hash == ice.Hash {
				bad = &cb.changes[i]
			}
		}
	}
	if bad == nil {
		return nil
	}
	same := func(c crdt.Change) bool { return c.Actor == bad.Actor && c.Seq == bad.Seq && c.Hash != bad.Hash }
	found := slices.ContainsFunc(cb.changes, same)
	if !found && doc != nil {
		held, err := doc.Changes(nil)
		if err != nil {
			return nil
		}
		found = slices.ContainsFunc(held, same)
	}
	if !found {
		return nil
	}
	return &ForkedError{Replica: bad.Actor, Reason: fmt.Sprintf("its change %s of chart %s reuses sequence number %d, which it used for another change", bad.Hash, cb.chart, bad.Seq)}
}

// forkFound marks this replica forked, taking the write lock unless
// locked, and returns its error.
func (r *Replica) forkFound(ctx context.Context, why string, locked bool) error {
	if !locked {
		unlock, err := r.lock()
		if err != nil {
			return err
		}
		defer unlock()
	}
	return r.markForked(ctx, why)
}

// RecoverFork recovers a forked replica (one whose Forked is set, or
// that its peers refuse with ErrForkedReplica): it makes a new replica at
// newPath from a consistent copy of the database at path (Backup, so the
// forked replica may still be open) under a fresh ID, as RestoreAs does,
// and opens it with cfg (cfg.Signer, if set, is the new device identity,
// to be enrolled). Every change the forked replica holds is kept, those
// no peer has yet included; its peers see a new replica and send it
// everything it lacks, the changes its original made after the copy
// among them. The forked replica's database is left as it was, for the
// caller to remove once the new one has synced.
//
// Caveat: an edit the copy made of a chart its original had also edited
// after the copy reuses a sequence number of the original's; such a
// change is kept here but peers refuse it (ErrForkedReplica), and with it
// the new replica's bundles, until it is re-entered by hand. Recover a
// copy before it edits existing charts: its first sync tells it.
func RecoverFork(ctx context.Context, path, newPath string, cfg Config) (*Replica, error) {
	if err := os.MkdirAll(filepath.Dir(newPath), 0o700); err != nil {
		return nil, fmt.Errorf("recover forked replica %s: %w", path, err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(newPath), ".recover-*")
	if err != nil {
		return nil, fmt.Errorf("recover forked replica %s: %w", path, err)
	}
	defer os.RemoveAll(tmp)
	copyPath := filepath.Join(tmp, "forked.db")
	if err := BackupConfig(ctx, path, copyPath, cfg); err != nil {
		return nil, fmt.Errorf("recover forked replica %s: %w", path, err)
	}
	r, err := RestoreAs(ctx, copyPath, newPath, cfg)
	if err != nil {
		return nil, fmt.Errorf("recover forked replica %s: %w", path, err)
	}
	return r, nil
}
