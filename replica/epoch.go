package replica

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/chartsync/chartsync/replica/store"
)

// This file names a replica's log, so that its peers can tell when the
// log was restored from a backup under the replica's own ID: a cloud's
// database restored with pg_restore, say. The restored log is the log as
// it was at the backup; the positions its peers recorded beyond that
// point name changes it no longer holds, or, once it grows again, other
// changes. A peer that went on trusting them would never send again what
// the restored replica lost, and never receive what it took in at
// positions the peer had already passed.
//
// A log's epoch is a number drawn from the log's ID (a random value made
// with the log) and the store's place (store.Placed: for PostgreSQL, the
// cluster, database and schema it lives in), so every node over one
// database names it alike without agreeing on anything, and a restore
// into another database or schema names a new one. A replica restored in
// place, where the store cannot tell (a SQLite file copied back), names a
// new epoch with NewLogEpoch.
//
// Every bundle carries its sender's epoch (Bundle.Epoch) and the epoch of
// the recipient's log its acknowledgement refers to (Bundle.AckEpoch). A
// recipient that finds
//
//   - its own log named by an epoch it no longer has: the peer's
//     acknowledgement (and check) are of a log this replica lost; it takes
//     the peer to hold nothing of its log (so it sends the peer every
//     change of its scope again, which the peer skips as it arrives, once)
//     and finds no fork in it;
//   - the sender's log under a new epoch: the sender was restored; it
//     forgets how far it held the sender's old log, takes the sender's
//     acknowledgement even when it goes back (so it sends again what the
//     sender lost), and drops the check it kept of the old log;
//   - the sender's log under an epoch it left before: a bundle made before
//     the restore, carried late; its changes are taken, its positions not.
//
// The cost of a restore is one resend of each peer's scope each way. A
// replica's own restore as a new replica (RestoreAs, RecoverFork) makes a
// new ID instead, and needs none of this.

// Meta keys: metaLogID holds the random ID drawn with the log;
// metaPeerEpoch, followed by a peer's ID, the peer's log epochs as this
// replica learnt them, the current one first, then those it left, newest
// first, as decimal numbers separated by commas.
const (
	metaLogID     = "log_id"
	metaPeerEpoch = "peer-epoch/"
)

// MaxEpoch bounds a log epoch: 28 bits, four bytes as a uvarint.
const MaxEpoch = 1<<28 - 1

// keptEpochs bounds the epochs kept per peer: the current one and the
// last few it left, enough for a late bundle of any restore that matters.
const keptEpochs = 4

// epochOf returns the epoch of a log with ID logID in store place place:
// 1 to MaxEpoch.
func epochOf(logID, place string) uint64 {
	h := sha256.Sum256([]byte("chartsync log epoch\x00" + logID + "\x00" + place))
	return binary.BigEndian.Uint64(h[:8])%MaxEpoch + 1
}

// loadEpoch reads (or draws, for a new log) the log's ID and sets the
// replica's epoch from it and the store's place.
func (r *Replica) loadEpoch(ctx context.Context) error {
	id, err := r.st.Meta(ctx, metaLogID)
	if errors.Is(err, store.ErrNotFound) || err == nil && id == "" {
		id = NewID()
		if _, err := r.st.Write(ctx, store.Batch{Meta: map[string]string{metaLogID: id}}); err != nil {
			return fmt.Errorf("store log id: %w", err)
		}
		// Read back: where several nodes start on a new database at
		// once, the one written last is everyone's from then on.
		if id, err = r.st.Meta(ctx, metaLogID); err != nil {
			return fmt.Errorf("read log id: %w", err)
		}
	} else if err != nil {
		return fmt.Errorf("read log id: %w", err)
	}
	place := ""
	if p, ok := r.st.(store.Placed); ok {
		if place, err = p.Place(ctx); err != nil {
			return fmt.Errorf("read where the store is: %w", err)
		}
	}
	r.epoch.Store(epochOf(id, place))
	return nil
}

// LogEpoch returns the epoch that names this replica's log in its bundles
// (Bundle.Epoch).
func (r *Replica) LogEpoch() uint64 { return r.epoch.Load() }

// NewLogEpoch names this replica's log anew, for a replica restored in
// place from a backup under its own ID where its store cannot tell (a
// SQLite database copied back): its peers then send it again what it
// lost, and forget what they took from the positions it had before (see
// LogEpoch). Every node of a replica shared by several must be restarted
// after it. A replica restored as a new replica (RestoreAs) needs it not.
func (r *Replica) NewLogEpoch(ctx context.Context) error {
	unlock, err := r.lock()
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := r.st.Write(ctx, store.Batch{Meta: map[string]string{metaLogID: NewID()}}); err != nil {
		return fmt.Errorf("name the log anew: %w", err)
	}
	old := r.epoch.Load()
	if err := r.loadEpoch(ctx); err != nil {
		return fmt.Errorf("name the log anew: %w", err)
	}
	r.log.Warn("log named anew: peers send again what this replica lacks", "old_epoch", old, "epoch", r.epoch.Load())
	return nil
}

// peerEpochs returns the epochs of peer's log this replica learnt, the
// current one first (none if it has not learnt any).
func (r *Replica) peerEpochs(ctx context.Context, peer string) ([]uint64, error) {
	v, err := r.st.Meta(ctx, metaPeerEpoch+peer)
	if errors.Is(err, store.ErrNotFound) || err == nil && v == "" {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the log epochs of %s: %w", peer, err)
	}
	var out []uint64
	for _, f := range strings.Split(v, ",") {
		e, err := strconv.ParseUint(f, 10, 64)
		if err != nil || e == 0 || e > MaxEpoch {
			return nil, nil // not ours: as if nothing were known
		}
		out = append(out, e)
	}
	return out, nil
}

// epochSeen is what a bundle's epochs tell its recipient (see the top of
// this file).
type epochSeen struct {
	// ackStale: the bundle's Ack and CheckAt are of a log of this
	// replica's that it no longer has.
	ackStale bool
	// restarted: the sender's log is new to this replica, after another
	// it knew.
	restarted bool
	// late: the sender's log is one it left before.
	late bool
	// record, if not empty, is the sender's epochs to keep.
	record string
}

// seeEpochs works out what b's epochs tell a replica whose log epoch is
// own and which knows the sender's epochs known (current first).
func seeEpochs(b *Bundle, own uint64, known []uint64) epochSeen {
	var s epochSeen
	s.ackStale = b.AckEpoch != 0 && b.AckEpoch != own
	switch {
	case b.Epoch == 0 || len(known) > 0 && b.Epoch == known[0]:
	case slices.Contains(known, b.Epoch):
		s.late = true
	default:
		s.restarted = len(known) > 0
		kept := append([]uint64{b.Epoch}, known...)
		if len(kept) > keptEpochs {
			kept = kept[:keptEpochs]
		}
		f := make([]string, len(kept))
		for i, e := range kept {
			f[i] = strconv.FormatUint(e, 10)
		}
		s.record = strings.Join(f, ",")
	}
	return s
}
