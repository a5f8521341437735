// Package store defines what a chartsync replica needs from durable
// storage, an in-memory implementation for tests, and (in storetest) the
// conformance suite every implementation runs.
//
// A store keeps four things: the change log (every raw Automerge change the
// replica holds, each with a local sequence number), chart snapshots, a
// chart index for finding patients, and per-peer sync positions. All
// writes go through Write, which commits a Batch atomically and durably.
//
// # The log by clinic
//
// A cloud serves thousands of clinics, and a sync with one clinic's device
// must cost what that clinic did, not what every clinic did. So a store
// keeps the log by clinic too: LogFor with a LogQuery.Clinic pages the
// changes of the charts whose Chart.Scope, as last written, holds the
// clinic, in Seq order, and reads no other change. What an implementation
// must do:
//
//   - index each change it adds under every clinic of its chart's stored
//     scope;
//   - when Write upserts a chart whose Scope differs from the stored one,
//     index all the chart's changes under the clinics that joined, and
//     unindex them from those that left, in the same transaction (a
//     chart's changes are few: tens, rarely thousands);
//   - page a clinic's log from that index (SQLite: a (clinic, seq) table
//     joined to the log by seq), leaving out with LogQuery.NotFrom the
//     changes received from the peer being synced, so that they are not
//     read in full either;
//   - build the index from the log and the charts' scopes when it opens
//     storage made before the index existed.
//
// Peer looks up one peer's positions by ID, at a cost that does not grow
// with the number of peers.
//
// # Search
//
// A patient's chart entry carries its search keys (Chart.Keys, made by
// record/identity.Keys: folded name and village words, their phonetic
// keys, phones, identifiers). A store keeps an index from key to chart,
// replacing a chart's keys in the transaction that writes its entry, and
// Search answers lookups of exact keys and key prefixes (ranges of the
// sorted keys), intersected across a query's terms, reading only the
// index entries under those keys. Scoring and ranking what it finds is
// the replica's (package identity). Storage made before the index existed
// is indexed when opened, from each chart's names, village and national
// ID (EntryKeys); a chart's phones and other identifiers join when it is
// next written.
//
// # Usage
//
//	st := store.NewMem()
//	seq, err := st.Write(ctx, store.Batch{Changes: []store.NewChange{{Chart: id, Hash: h, Raw: raw}}})
//
// # Caveats
//
// A write that fails says what became of it: nothing stored, or
// ErrOutcomeUnknown when the failure came at a point where the batch may
// already be on disk (a failed fsync of a commit). Callers re-read before
// retrying such a write.
//
// Sequence numbers are local to one store and are meaningless to any other.
// An implementation shared by several writers (a scaled-out PostgreSQL
// cloud) must still hand out sequence numbers in commit order, or a peer
// reading the log could acknowledge past a change not yet visible.
package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/record/identity"
)

// ErrNotFound is returned by reads of a chart, snapshot, peer or meta key
// that does not exist.
var ErrNotFound = errors.New("store: not found")

// ErrClosed is returned by any call after Close.
var ErrClosed = errors.New("store: closed")

// ErrOutcomeUnknown is returned (wrapped) by Write when a batch's commit
// failed at a point where the batch may already have reached the disk: the
// write may or may not be durable. Re-read before retrying, so that a
// batch that was in fact stored is not stored twice (a second allergy, a
// second patient). An implementation returns it only when it cannot tell;
// any other error from Write means nothing of the batch was stored.
var ErrOutcomeUnknown = errors.New("store: outcome unknown: the write may or may not be durable; re-read before retrying")

// ErrDiskFull is returned (wrapped) by writes that failed because the
// disk (or the store's size limit) is full. Free space on the device, then
// retry. Unless the error also matches ErrOutcomeUnknown, nothing was
// stored.
var ErrDiskFull = errors.New("store: the disk is full (free space on the device, then try again)")

// Packer is implemented by stores that keep changes compressed
// (zchange): a writer may then hand them each change's Packed bytes.
type Packer interface {
	// PacksChanges reports whether NewChange.Packed is used.
	PacksChanges() bool
}

// ErrConflict is returned (wrapped) by a Write whose Batch.Expect does not
// hold: a chart's index entry changed since the writer read it (another
// writer on the same store, such as another cloud node, changed the
// chart). Nothing of the batch was stored; read the chart again and retry.
var ErrConflict = errors.New("store: a chart changed since it was read")

// ExpectHeld checks expect against the index entries held, for stores
// that read them inside their write: held returns a chart's stored heads,
// or nil if it has no entry.
func ExpectHeld(expect map[string]crdt.Heads, held func(id string) (crdt.Heads, error)) error {
	for _, id := range slices.Sorted(maps.Keys(expect)) {
		now, err := held(id)
		if err != nil {
			return err
		}
		if want := expect[id]; !slices.Equal(now, want) {
			return fmt.Errorf("chart %s is at %v, not %v: %w", id, now, want, ErrConflict)
		}
	}
	return nil
}

// Change is one stored change.
type Change struct {
	Seq   uint64    // position in this store's log: from 1, increasing in commit order, possibly with gaps
	Chart string    // chart ID
	Hash  crdt.Hash // content address; unique in the store
	Raw   []byte    // the change's bytes
	From  string    // peer it was received from; "" if made here
	Sig   []byte    // its author device's signature; nil if unsigned
}

// NewChange is a change to add. Adding a hash already stored does nothing.
type NewChange struct {
	Chart string
	Hash  crdt.Hash
	Raw   []byte
	From  string
	Sig   []byte // the author device's signature, if any
	// Packed, if set, is Raw as the stores that compress changes keep
	// it (zchange.Compress(Raw)), made by the writer already: a replica
	// compresses a bundle's changes while it plans them, in parallel and
	// outside its write lock. Nil: the store compresses Raw itself.
	Packed []byte
}

// Chart is a chart's index entry: what finding and listing need, without
// loading the chart.
type Chart struct {
	ID string
	// Kind is "" for a patient's chart, or another kind of replicated
	// document (KindUsers: a clinic's user roster).
	Kind       string
	Heads      crdt.Heads
	GivenName  string
	FamilyName string
	Village    string
	NationalID string
	HomeClinic string
	// Scope lists the clinics whose devices may hold the chart (its home
	// clinic and active referrals), sorted.
	Scope   []string
	Updated time.Time
	// Keys are a patient's chart's search keys (record/identity.Keys of
	// its patient). Writing the chart replaces them; Index.Search finds
	// patients' charts by them. A store returns them sorted, without
	// duplicates, and keeps none for other kinds of document.
	Keys []string
}

// Grant records that a clinic joined a chart's scope in the batch that
// starts at log position Seq (its devices must then be sent the chart's
// changes before Seq too: a bundle that covered them may have been made
// while the chart was out of scope), or, when Revoked, that it left the
// scope in the batch that ends at Seq (its devices must still be sent the
// changes up to that point, so they learn of it).
//
// A join is placed at its batch's first position, not its last, because
// every bundle that covers any position of the batch was made after the
// batch committed and so already sent the batch's changes of the chart:
// only changes before the batch can have been skipped.
type Grant struct {
	Chart   string
	Clinic  string
	Seq     uint64
	Revoked bool
}

// NewGrant adds a Grant. Write sets its Seq: for a join, the log head
// before the batch plus one (the batch's first position, or the next
// change's if the batch adds none); for a revocation, the log head once
// the batch's changes are added.
type NewGrant struct {
	Chart   string
	Clinic  string
	Revoked bool
}

// Snapshot is a chart saved whole; Seq is the log position it covers: every
// change of the chart with Seq at most this is in Data.
type Snapshot struct {
	Chart string
	Seq   uint64
	Data  []byte
}

// NewSnapshot replaces a chart's snapshot. Its Seq is set by Write to the
// log head once the batch's changes are added, so the caller must include
// every change of the chart the data holds in the same or an earlier batch.
type NewSnapshot struct {
	Chart string
	Data  []byte
}

// Peer is what this replica knows of one peer's sync progress.
type Peer struct {
	ID string
	// Acked: the peer has acknowledged every change in this log up to Acked.
	Acked uint64
	// Received: this replica holds the peer's log up to Received (in the
	// peer's own numbering).
	Received uint64
	// LastSync is when a bundle from the peer last changed something here
	// (new changes or positions, or the first contact). A bundle that
	// changes nothing, such as a repeat, is not written at all.
	LastSync time.Time
}

// KindUsers is the Chart.Kind of a clinic's user roster.
const KindUsers = "users"

// Query finds charts. Text matches, case-insensitively, a substring of the
// given or family name, the village or the national ID, or a whole chart
// ID. An empty Text lists every chart. Results are sorted by family name,
// given name, then ID.
type Query struct {
	Text  string
	Kind  string // only documents of this kind ("" is patients' charts)
	Limit int    // 0 means no limit
}

// EntryKeys returns the search keys of a patient's chart as far as its
// index entry tells them: identity.Keys of a patient with the entry's
// names, village and national ID, but not its phones or other
// identifiers, which the entry does not hold. A store indexes charts
// written before Chart.Keys existed with them, until each chart is
// written again. Other kinds of document have none.
func EntryKeys(c Chart) []string {
	if c.Kind != "" {
		return nil
	}
	return identity.Keys(record.Patient{GivenName: c.GivenName, FamilyName: c.FamilyName, Village: c.Village, NationalID: c.NationalID})
}

// Lookup finds the charts indexed under Key (Chart.Keys), or, if Prefix,
// under any key that starts with Key (a range of the sorted keys).
type Lookup struct {
	Key    string
	Prefix bool
}

// Matches reports whether key answers the lookup.
func (l Lookup) Matches(key string) bool {
	if l.Prefix {
		return strings.HasPrefix(key, l.Key)
	}
	return key == l.Key
}

// Search selects patients' charts by their search keys, for Index.Search.
// Keys and lookups are UTF-8 text, compared byte by byte.
// A chart is selected when every term has a lookup that finds one of the
// chart's keys; a term with no lookups selects nothing, and so does a
// Search with no terms.
type Search struct {
	Terms [][]Lookup
	Limit int // 0 means no limit
}

// Selects reports whether a chart with these keys is selected by s (the
// terms alone; Index.Search also keeps only patients' charts).
func (s Search) Selects(keys []string) bool {
	if len(s.Terms) == 0 {
		return false
	}
	for _, term := range s.Terms {
		if !slices.ContainsFunc(term, func(l Lookup) bool {
			return slices.ContainsFunc(keys, l.Matches)
		}) {
			return false
		}
	}
	return true
}

// PrefixEnd returns the smallest UTF-8 string greater than every string
// that starts with prefix (its last character replaced by the next one),
// for a range scan [prefix, end) over keys compared byte by byte, which
// for UTF-8 is the order of code points; ok is false when there is none
// (prefix is empty, or ends in characters that have no next one: scan to
// the end). prefix must be valid UTF-8, as keys are.
func PrefixEnd(prefix string) (end string, ok bool) {
	for prefix != "" {
		r, size := utf8.DecodeLastRuneInString(prefix)
		prefix = prefix[:len(prefix)-size]
		switch {
		case r == utf8.MaxRune:
			continue
		case r == 0xD7FF: // the surrogates are not characters
			return prefix + "\uE000", true
		default:
			return prefix + string(r+1), true
		}
	}
	return "", false
}

// Quarantined is a bundle refused because a change in it was not its
// author's to make, kept for review and never applied.
type Quarantined struct {
	From   string    // the sending replica
	At     time.Time // when it was refused
	Reason string
	Data   []byte // the bundle as received
}

// Batch is one atomic write.
type Batch struct {
	Meta      map[string]string
	Changes   []NewChange
	Charts    []Chart // upserted by ID
	Snapshots []NewSnapshot
	Peers     []Peer // upserted by ID
	Grants    []NewGrant
	// Quarantine appends refused bundles for review.
	Quarantine []Quarantined
	// Expect, if set, names charts whose index entries must hold these
	// heads (none: no entry yet) when the batch is written, checked in the
	// same transaction; otherwise nothing is written and Write returns an
	// error matching ErrConflict. Writers sharing a store (several cloud
	// nodes) set it for every chart they write, so that none overwrites a
	// chart another changed after it read it.
	Expect map[string]crdt.Heads
}

// ChangeLog is the log of changes.
type ChangeLog interface {
	// Head returns the highest sequence number in the log (0 if empty).
	Head(ctx context.Context) (uint64, error)
	// Log returns up to limit changes with Seq > after, in Seq order.
	Log(ctx context.Context, after uint64, limit int) ([]Change, error)
	// ChartChanges returns a chart's changes with Seq > after, in Seq order.
	ChartChanges(ctx context.Context, chart string, after uint64) ([]Change, error)
	// Known returns the subset of hashes that are stored.
	Known(ctx context.Context, hashes []crdt.Hash) (map[crdt.Hash]bool, error)
	// CountAfter counts changes with Seq > after not received from peer.
	CountAfter(ctx context.Context, after uint64, peer string) (int, error)
	// LogFor returns up to q.Limit changes of the log that q selects, in
	// Seq order: a page of what a sync may send one peer. Its cost follows
	// the changes it returns, not the log: with q.Clinic set, an
	// implementation reads only the changes of charts in that clinic's
	// scope (an index by clinic and Seq, kept by Write as charts' scopes
	// change), with q.Chart only that chart's, and it never returns, so
	// never reads in full, a change it leaves out.
	LogFor(ctx context.Context, q LogQuery) ([]Change, error)
}

// LogQuery selects, for LogFor, the part of the log one peer may be sent.
// Every field set narrows the selection.
type LogQuery struct {
	// After: only changes with Seq > After.
	After uint64
	// Upto, if not 0: only changes with Seq <= Upto.
	Upto uint64
	// Limit bounds the changes returned; 0 means no limit.
	Limit int
	// Chart, if set, keeps only that chart's changes.
	Chart string
	// Clinic, if set, keeps only the changes of charts whose Scope, as
	// last written (Batch.Charts), holds Clinic, whenever those changes
	// were stored: a chart that joins the clinic's scope brings all its
	// changes into the clinic's log, and one that leaves takes them out.
	// A change whose chart has no index entry is in no clinic's log.
	Clinic string
	// NotFrom, if set, leaves out the changes received from that peer
	// (Change.From).
	NotFrom string
}

// Index finds charts and their snapshots.
type Index interface {
	// Chart returns a chart's index entry, or ErrNotFound.
	Chart(ctx context.Context, id string) (Chart, error)
	// Charts returns the charts matching q.
	Charts(ctx context.Context, q Query) ([]Chart, error)
	// Snapshot returns a chart's snapshot, or ErrNotFound.
	Snapshot(ctx context.Context, chart string) (Snapshot, error)
	// Grants returns the grants to clinic with after < Seq <= upto, in
	// Seq order.
	Grants(ctx context.Context, clinic string, after, upto uint64) ([]Grant, error)
	// Search returns the patients' charts (Kind "") that s selects by
	// their keys as last written, each once, sorted by ID, at most
	// s.Limit. Its cost follows the index entries its lookups read, not
	// the number of charts: an implementation keeps an index from key to
	// chart, replaced with a chart's keys in the transaction that writes
	// the chart.
	Search(ctx context.Context, s Search) ([]Chart, error)
}

// Store is durable storage for one replica.
//
// Implementations are safe for concurrent use. Returned slices belong to
// the caller. When Write returns nil the batch is durable: it survives a
// crash or power loss. When it returns an error nothing of the batch was
// stored, before or after a restart, unless the error matches
// ErrOutcomeUnknown: then the batch may or may not have been stored, and
// reads (made after the error) show which. A disk that is full makes
// writes fail with ErrDiskFull; reads keep working where the
// implementation can.
type Store interface {
	ChangeLog
	Index
	// Meta returns a replica-level value, or ErrNotFound.
	Meta(ctx context.Context, key string) (string, error)
	// Peer returns what is known of one peer, or ErrNotFound. Its cost
	// does not grow with the number of peers.
	Peer(ctx context.Context, id string) (Peer, error)
	// Peers returns every known peer, sorted by ID.
	Peers(ctx context.Context) ([]Peer, error)
	// Quarantined returns the quarantined bundles, oldest first.
	Quarantined(ctx context.Context) ([]Quarantined, error)
	// Write commits b atomically and durably and returns the log head.
	Write(ctx context.Context, b Batch) (uint64, error)
	// Close releases the store. Calls after Close return ErrClosed.
	Close() error
}

// Placed is implemented by a Store that can tell where its data lives, in
// a form that changes when the data is restored from a backup into
// another place (another database or schema) while it stays the same for
// every process opening the data where it is. The replica names its log
// by it (replica.Replica.LogEpoch), so its peers learn of a restore.
type Placed interface {
	// Place returns the store's place. It is not secret and not unique
	// across unrelated deployments; it only has to differ between a
	// store and its restored copy.
	Place(ctx context.Context) (string, error)
}
