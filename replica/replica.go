package replica

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/internal/dirlock"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica/store"
	"github.com/chartsync/chartsync/replica/store/sqlite"
)

// ErrNotFound is returned for a chart this replica does not hold (or whose
// registration has not arrived yet).
var ErrNotFound = errors.New("chart not found")

// Store errors a write may end with, matched with errors.Is (the store's
// own, re-exported): ErrOutcomeUnknown, the write may or may not be
// durable (re-read before retrying); ErrDiskFull, the disk is full
// (nothing was stored; free space and try again).
var (
	ErrOutcomeUnknown = store.ErrOutcomeUnknown
	ErrDiskFull       = store.ErrDiskFull
)

// ErrClosed is returned by calls on a closed replica.
var ErrClosed = errors.New("replica closed")

// ErrWrongSigner is returned by New when Config.Signer is another
// replica's key pair.
var ErrWrongSigner = errors.New("replica: signer is another device's")

// Config tunes a Replica. The zero value works.
type Config struct {
	// DatabaseKey, if set, is the sqlite.KeySize-byte key the replica's
	// SQLite database (Open) is encrypted with, with SQLCipher: its
	// charts, index, pending changes, quarantine and keys are unreadable
	// without it (package replica/store/sqlite). A database in clear is
	// encrypted with sqlite.Encrypt, not by opening it with a key. Nil:
	// in clear.
	DatabaseKey []byte
	// CacheCharts bounds how many charts the cache keeps (default 256).
	// The cache keeps a chart viewed as its view, not its document
	// (see Chart): a 40-change chart costs about 6 KB of Go heap, 3.8 KB
	// of it the view (BenchmarkCachedChart), where its loaded document
	// cost 215 KB of heap and 765 KB resident. A chart is loaded to be written or
	// received into, and its Automerge memory released as the call
	// ends, but for the four charts most recently edited, whose
	// documents stay open for their next edit.
	CacheCharts int
	// CompactAfter is how many changes may pile up on a chart's snapshot
	// before a new snapshot is written (default 64), or half the chart's
	// history if that is more: a chart's saves then cost about twice its
	// history in all, not its history once every CompactAfter changes.
	CompactAfter int
	// SharedStore says other replicas write the same store at once (the
	// nodes of a cloud on one PostgreSQL database, each with the same
	// replica ID): every write names the index entry it read of each
	// chart it writes (store.Batch.Expect), a write that finds a chart
	// changed by another node is read again and retried, and a cached
	// chart is checked against its entry before use. Without it a node
	// could store a snapshot without another node's change to the chart.
	SharedStore bool
	// BundleBytes is the change bytes a bundle carries at most before the
	// rest is left for the next exchange (default 4 MiB).
	BundleBytes int
	// ReceiveMemory is how far the process may grow while a received
	// bundle's charts are planned before the memory of those already
	// planned is reclaimed (default 64 MiB). Charts are planned in small
	// groups; a bundle of many large charts (long notes cost Automerge
	// hundreds of bytes a character) then costs about this much, not
	// the sum of its charts.
	ReceiveMemory int
	// Logger receives operational logs; nil discards them.
	Logger *slog.Logger
	// Now returns the time recorded on edits; nil means time.Now.
	Now func() time.Time
	// Clinic, on a clinic device, is the clinic it belongs to: Register
	// then accepts only patients of that home clinic, and Edit only charts
	// in its scope (see record.Chart.Scope), as the cloud would refuse
	// anything else. Empty (a cloud or hub) allows everything.
	Clinic string
	// Signer, if set, signs every change made here (the device's key
	// pair); its replica ID must be this replica's.
	Signer Signer
	// Keys, if set, makes every received change prove its author: it must
	// carry a signature that verifies against the key its actor (a device)
	// was enrolled with, or the bundle is refused with ErrForgedChange and
	// quarantined. Bundles made here then carry the enrolments of the
	// devices whose changes they hold, so that a recipient that has not
	// met a device can check them. Set it on every replica of a
	// deployment, together with Signer on every device.
	Keys Keys
	// CheckAuthors checks every received change as
	// ReceiveOptions.CheckAuthors does, on every path a bundle arrives by.
	CheckAuthors bool
	// Unscoped, with Keys and author checks, lists the clinics whose
	// devices may change any chart (the cloud's own, a district
	// hospital's). Any other device may change only charts in its
	// clinic's scope, and only its own clinic's user roster.
	Unscoped []string
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	if c.CacheCharts < 0 || c.CompactAfter < 0 || c.BundleBytes < 0 || c.ReceiveMemory < 0 {
		return errors.New("replica config: limits must not be negative")
	}
	if err := (sqlite.Config{Key: c.DatabaseKey}).Validate(); err != nil {
		return fmt.Errorf("replica config: DatabaseKey: %w", err)
	}
	return nil
}

// ErrWrongKey matches the error of Open (and Backup, RestoreAs) for a
// database encrypted with another key than Config.DatabaseKey, or
// encrypted when no key is given. The database is not touched, and it is
// not reported as damaged.
var ErrWrongKey = sqlite.ErrWrongKey

// storeConfig is the SQLite store's configuration for c.
func (c Config) storeConfig() sqlite.Config { return sqlite.Config{Key: c.DatabaseKey} }

func (c Config) withDefaults() Config {
	if c.CacheCharts == 0 {
		c.CacheCharts = 256
	}
	if c.CompactAfter == 0 {
		c.CompactAfter = 64
	}
	if c.BundleBytes == 0 {
		c.BundleBytes = 4 << 20
	}
	if c.ReceiveMemory == 0 {
		c.ReceiveMemory = 64 << 20
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Replica holds many charts durably and syncs them with peers. It is safe
// for concurrent use; writes (edits and received bundles) are serialised.
type Replica struct {
	st     store.Store
	id     string
	cfg    Config
	log    *slog.Logger
	closed atomic.Bool // set under mu; read without it by the store-only reads

	mu    sync.Mutex // serialises writes, chart loads and the cache
	cache *lru
	held  *heldStore // received changes waiting for their dependencies
	// fileLock is the database's lock, held from Open to Close (nil for
	// a replica made with New over another Store).
	fileLock *dirlock.Lock
	// authRevStored is the metaAuthorityRevocations value last stored.
	authRevMu     sync.Mutex
	authRevStored string
	// rebuilt counts charts rebuilt from their log because their stored
	// snapshot did not load.
	rebuilt atomic.Int64
	// forked is set once the replica is found to be a copy of one that
	// went on without it (forked.go).
	forked atomic.Pointer[ForkedError]
	// epoch names the replica's log in its bundles (epoch.go).
	epoch atomic.Uint64
	// kept is the Checker of a long history kept between the bundles
	// that bring it (authorcheck.go).
	kept keptChecker
	// checkersMade counts the Checkers made, for tests.
	checkersMade atomic.Int64
	// chartsCopied counts the cached charts a receive copied to plan on
	// (see takeCached), for tests.
	chartsCopied atomic.Int64
	// loads counts the charts loaded from the store (loadStored), for
	// tests.
	loads atomic.Int64

	// afterPlan, if set (by tests), is called with a bundle's sender
	// once the bundle is planned without the write lock.
	afterPlan func(from string)
}

const metaReplicaID = "replica_id"

// Open opens (or creates) a replica in the SQLite database at path,
// creating the parent directory if needed.
//
// The database is this process's until Close: a second Open of it, here or
// in another program, fails with an error matching ErrInUse that names the
// process holding it. Two processes writing one replica would write as one
// Automerge actor, reusing sequence numbers that every peer then refuses.
// The lock is a file beside the database (its name and ".lock"); where
// that file cannot be made (a full disk) the replica opens without it, and
// says so in its log.
func Open(ctx context.Context, path string, cfg Config) (*Replica, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open replica: %w", err)
	}
	lock, err := dirlock.AcquireNamed(filepath.Dir(path), filepath.Base(path)+".lock")
	if errors.Is(err, dirlock.ErrLocked) {
		return nil, fmt.Errorf("open replica %s: %w", path, err)
	}
	var lockErr error
	if err != nil {
		lock, lockErr = nil, err
	}
	st, err := openChecked(ctx, path, cfg) // sqlite.Open, then a bounded integrity check (integrity.go)
	if err != nil {
		_ = lock.Release()
		return nil, fmt.Errorf("open replica: %w", err)
	}
	r, err := New(ctx, st, cfg)
	if err != nil {
		st.Close()
		_ = lock.Release()
		return nil, err
	}
	if lockErr != nil {
		r.log.Warn("replica opened without its lock: no other program must open it now", "path", path, "err", lockErr)
	}
	r.fileLock = lock
	return r, nil
}

// ErrInUse matches the error of Open for a replica another process (or
// another Open in this one) has open.
var ErrInUse = dirlock.ErrLocked

// NewID returns a fresh random replica ID (32 lower-case hex digits), for
// a device's identity made before its replica (see Config.Signer).
func NewID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("replica: no randomness: %v", err)) // crypto/rand never fails on supported systems
	}
	return hex.EncodeToString(b[:])
}

// New returns a replica over st, which it owns from then on (Close closes
// it). A new store is given Config.Signer's replica ID, or else a fresh
// random one.
func New(ctx context.Context, st store.Store, cfg Config) (*Replica, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	id, err := st.Meta(ctx, metaReplicaID)
	if errors.Is(err, store.ErrNotFound) {
		id = NewID()
		if cfg.Signer != nil {
			id = cfg.Signer.ReplicaID() // the device's identity names its replica
			if _, err := idBytes(id); err != nil {
				return nil, fmt.Errorf("signer's %w", err)
			}
		}
		if _, err := st.Write(ctx, store.Batch{Meta: map[string]string{metaReplicaID: id}}); err != nil {
			return nil, fmt.Errorf("store replica id: %w", err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("read replica id: %w", err)
	}
	if _, err := idBytes(id); err != nil {
		return nil, fmt.Errorf("stored %w", err)
	}
	if cfg.Signer != nil && cfg.Signer.ReplicaID() != id {
		return nil, fmt.Errorf("open replica %s with the key pair of device %s: %w", id, cfg.Signer.ReplicaID(), ErrWrongSigner)
	}
	r := &Replica{st: st, id: id, cfg: cfg, log: cfg.Logger.With("replica", id), cache: newLRU(cfg.CacheCharts)}
	if err := r.loadHeld(ctx); err != nil {
		return nil, err
	}
	if err := r.loadForked(ctx); err != nil {
		return nil, err
	}
	if err := r.loadEpoch(ctx); err != nil {
		return nil, err
	}
	if err := r.loadAuthorityRevocations(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// ID returns the replica's stable ID (32 hex digits). It is also the
// Automerge actor of every change made here.
func (r *Replica) ID() string { return r.id }

// Close closes the replica and its store.
func (r *Replica) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed.Swap(true) {
		return nil
	}
	r.cache.clear()
	r.cache.release()
	r.kept.clear()
	err := r.st.Close()
	if lerr := r.fileLock.Release(); err == nil {
		err = lerr
	}
	return err
}

// checkOpen returns ErrClosed once Close has been called. Reads that go
// to the store alone use it instead of taking the write lock.
func (r *Replica) checkOpen() error {
	if r.closed.Load() {
		return ErrClosed
	}
	return nil
}

// lock takes the write lock. Its unlock closes the documents of the
// charts the cache let go of meanwhile (see lru): nothing that read them
// under the lock can use them after it.
func (r *Replica) lock() (func(), error) {
	r.mu.Lock()
	if r.closed.Load() {
		r.mu.Unlock()
		return nil, ErrClosed
	}
	return r.unlock, nil
}

func (r *Replica) unlock() {
	r.cache.release()
	r.mu.Unlock()
}

// Register creates a chart for a new patient and returns its ID. When it
// returns nil the registration is on disk; when its error matches
// ErrOutcomeUnknown it may be (search for the patient before registering
// again); on any other error it is not.
func (r *Replica) Register(ctx context.Context, by record.Author, reg record.Register) (string, error) {
	unlock, err := r.lock()
	if err != nil {
		return "", err
	}
	defer unlock()
	if err := r.Forked(); err != nil {
		return "", fmt.Errorf("register patient: %w", err)
	}
	if r.cfg.Clinic != "" && reg.HomeClinic != r.cfg.Clinic {
		return "", fmt.Errorf("register patient of %q on a device of %q (register at the home clinic, or here and refer): %w",
			reg.HomeClinic, r.cfg.Clinic, ErrOutOfScope)
	}
	id := uuid.NewString()
	chart, res, err := record.New(id, r.id, by, r.cfg.Now(), reg)
	if err != nil {
		return "", fmt.Errorf("register patient: %w", err)
	}
	l := &loaded{id: id, doc: chart.Doc(), chart: chart, sinceSnapshot: 1}
	b := store.Batch{Changes: []store.NewChange{{Chart: id, Hash: res.Change.Hash, Raw: res.Change.Raw, Sig: r.sign(id, res.Change.Hash)}}}
	if err := r.addChartWrites(&b, l); err != nil {
		return "", err
	}
	if _, err := r.st.Write(ctx, b); err != nil {
		return "", fmt.Errorf("register patient: %w", err)
	}
	r.cache.put(l)
	return id, nil
}

// Edit applies one typed operation to a chart as one durable transaction.
// On error the chart is unchanged, in memory and on disk, unless the error
// matches ErrOutcomeUnknown: the store could not tell whether the write
// reached the disk, and the chart must be read again before the edit is
// offered again.
func (r *Replica) Edit(ctx context.Context, chartID string, by record.Author, op record.Op) (record.Result, error) {
	// On a shared store another node may change the chart between this
	// read and the write: the write is then refused whole, and the edit
	// made again on the chart as it now is (a few times at most).
	for try := 0; ; try++ {
		res, err := r.edit(ctx, chartID, by, op)
		if errors.Is(err, store.ErrConflict) && try < sharedTries {
			continue
		}
		return res, err
	}
}

// edit is one try of Edit.
func (r *Replica) edit(ctx context.Context, chartID string, by record.Author, op record.Op) (record.Result, error) {
	unlock, err := r.lock()
	if err != nil {
		return record.Result{}, err
	}
	defer unlock()
	if err := r.Forked(); err != nil {
		return record.Result{}, fmt.Errorf("edit chart %s: %w", chartID, err)
	}
	// A chart taking part in a merge is edited through its survivor:
	// see editTarget.
	l, err := r.editTarget(ctx, chartID, op)
	if err != nil {
		return record.Result{}, fmt.Errorf("edit chart %s: %w", chartID, err)
	}
	res, err := l.chart.Do(by, r.cfg.Now(), op)
	if err != nil {
		return record.Result{}, fmt.Errorf("edit chart %s: %w", chartID, err)
	}
	l.sinceSnapshot++
	b := store.Batch{Changes: []store.NewChange{{Chart: l.id, Hash: res.Change.Hash, Raw: res.Change.Raw, Sig: r.sign(l.id, res.Change.Hash)}}}
	if err := r.addChartWrites(&b, l); err != nil {
		r.cache.remove(l.id)
		return record.Result{}, err
	}
	if _, err := r.st.Write(ctx, b); err != nil {
		// The change is in memory only: forget the loaded chart so the
		// next read comes from disk.
		r.cache.remove(l.id)
		return record.Result{}, fmt.Errorf("edit chart %s: %w", chartID, err)
	}
	if len(b.Snapshots) > 0 {
		l.sinceSnapshot = 0
	}
	return res, nil
}

// editable loads a chart this replica may edit: its registration has
// arrived and, on a clinic's device, it is in the clinic's scope. r.mu is
// held.
func (r *Replica) editable(ctx context.Context, chartID string) (*loaded, error) {
	l, err := r.load(ctx, chartID)
	if err != nil {
		return nil, err
	}
	if l.chart == nil {
		return nil, fmt.Errorf("registration not received yet: %w", ErrNotFound)
	}
	if r.cfg.Clinic != "" {
		scope, err := l.chart.Scope()
		if err != nil {
			return nil, err
		}
		if !slices.Contains(scope, r.cfg.Clinic) {
			return nil, fmt.Errorf("it is not shared with clinic %s (ask its home clinic to refer it): %w", r.cfg.Clinic, ErrOutOfScope)
		}
	}
	return l, nil
}

// Preview returns the view a chart would have after op, without changing
// it (record.Chart.Preview): the alerts the edit would raise, to show
// before it is confirmed. It refuses what Edit would refuse.
func (r *Replica) Preview(ctx context.Context, chartID string, by record.Author, op record.Op) (record.View, error) {
	unlock, err := r.lock()
	if err != nil {
		return record.View{}, err
	}
	defer unlock()
	l, err := r.editTarget(ctx, chartID, op)
	if err != nil {
		return record.View{}, fmt.Errorf("preview on chart %s: %w", chartID, err)
	}
	v, err := l.chart.Preview(by, r.cfg.Now(), op)
	if err != nil {
		return record.View{}, fmt.Errorf("preview on chart %s: %w", chartID, err)
	}
	return v, nil
}

// Chart returns the current view of a chart. For a chart taking part in
// a merge it follows the forwarding pointers to the surviving chart and
// returns its view with the charts merged into it (record.Combine), whose
// ChartID is the survivor's; OwnChart gives a chart's own document.
//
// A chart that takes part in no merge is answered from the cache's copy
// of its view while its index entry has the heads the view was read at,
// without loading its document (see Config.CacheCharts).
func (r *Replica) Chart(ctx context.Context, chartID string) (record.View, error) {
	unlock, err := r.lock()
	if err != nil {
		return record.View{}, err
	}
	defer unlock()
	if v, ok, err := r.cachedView(ctx, chartID); err != nil {
		return record.View{}, fmt.Errorf("chart %s: %w", chartID, err)
	} else if ok {
		return v, nil
	}
	v, err := r.mergedView(ctx, chartID)
	if err != nil {
		return record.View{}, fmt.Errorf("chart %s: %w", chartID, err)
	}
	r.keepView(chartID, v)
	return v, nil
}

// cachedView returns a chart's view as the cache keeps it, and true, if
// its index entry still has the heads the view was read at: no Automerge
// document is loaded. A view kept of a chart that has changed since is
// forgotten. r.mu is held.
func (r *Replica) cachedView(ctx context.Context, id string) (record.View, bool, error) {
	cv := r.cache.viewOf(id)
	if cv == nil {
		return record.View{}, false, nil
	}
	c, err := r.st.Chart(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		r.cache.remove(id)
		return record.View{}, false, nil
	case err != nil:
		return record.View{}, false, err
	case !c.Heads.Equal(cv.heads):
		r.cache.remove(id)
		return record.View{}, false, nil
	}
	v, err := cv.decode()
	if err != nil {
		r.log.Error("cached view of a chart does not decode: reading the chart again", "chart", id, "err", err)
		r.cache.remove(id)
		return record.View{}, false, nil
	}
	return v, true, nil
}

// keepView has the cache keep v, just read of chart id, as the chart's
// view between calls, if the chart takes no part in a merge (the view of
// a merged chart is made of other charts too). r.mu is held.
func (r *Replica) keepView(id string, v record.View) {
	l := r.cache.get(id)
	if l == nil || l.chart == nil || v.ChartID != id {
		return
	}
	if plain, err := unmerged(l); err != nil || !plain {
		return
	}
	if err := r.cache.keepView(id, v); err != nil {
		r.log.Warn("chart view not cached", "chart", id, "err", err)
	}
}

// Heads returns a chart's heads as stored in the index.
func (r *Replica) Heads(ctx context.Context, chartID string) (crdt.Heads, error) {
	if err := r.checkOpen(); err != nil {
		return nil, err
	}
	c, err := r.st.Chart(ctx, chartID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("chart %s: %w", chartID, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return c.Heads, nil
}

// Find lists charts whose name, village or national ID contains text (or
// whose ID is text), sorted by family then given name; "" lists all.
func (r *Replica) Find(ctx context.Context, text string, limit int) ([]store.Chart, error) {
	if err := r.checkOpen(); err != nil {
		return nil, err
	}
	cs, err := r.st.Charts(ctx, store.Query{Text: text, Limit: limit})
	if err != nil {
		return nil, fmt.Errorf("find charts: %w", err)
	}
	return cs, nil
}

// Pending counts the changes held here that peer has not acknowledged
// (excluding those it sent): all of them for a peer never synced with.
func (r *Replica) Pending(ctx context.Context, peer string) (int, error) {
	if err := r.checkOpen(); err != nil {
		return 0, err
	}
	p, err := r.peer(ctx, peer)
	if err != nil {
		return 0, fmt.Errorf("pending for %s: %w", peer, err)
	}
	n, err := r.st.CountAfter(ctx, p.Acked, peer)
	if err != nil {
		return 0, fmt.Errorf("pending for %s: %w", peer, err)
	}
	return n, nil
}

// PeerStatus is what this replica knows of a peer.
type PeerStatus struct {
	ID       string
	LastSync time.Time
	// Unacknowledged counts changes held here that the peer has not
	// acknowledged (excluding those it sent).
	Unacknowledged int
}

// Peers lists every peer this replica has synced with.
func (r *Replica) Peers(ctx context.Context) ([]PeerStatus, error) {
	if err := r.checkOpen(); err != nil {
		return nil, err
	}
	ps, err := r.st.Peers(ctx)
	if err != nil {
		return nil, fmt.Errorf("peers: %w", err)
	}
	out := make([]PeerStatus, len(ps))
	for i, p := range ps {
		n, err := r.st.CountAfter(ctx, p.Acked, p.ID)
		if err != nil {
			return nil, fmt.Errorf("peers: %w", err)
		}
		out[i] = PeerStatus{ID: p.ID, LastSync: p.LastSync, Unacknowledged: n}
	}
	return out, nil
}

// load returns a chart, from the cache or from the store. r.mu is held.
func (r *Replica) load(ctx context.Context, id string) (*loaded, error) {
	if l, err := r.cachedCurrent(ctx, id); l != nil || err != nil {
		return l, err
	}
	l, err := r.loadStored(ctx, id)
	if err != nil {
		return nil, err
	}
	r.cache.put(l)
	return l, nil
}

// cachedCurrent returns a chart the cache holds loaded, or nil. A cached
// chart whose index entry has since been rewritten past the cache (by
// another node of a shared store, or another replica over the same
// store) is dropped (and nil returned), so that it is read again. r.mu
// is held.
func (r *Replica) cachedCurrent(ctx context.Context, id string) (*loaded, error) {
	l := r.cache.get(id)
	if l == nil {
		return nil, nil
	}
	c, err := r.st.Chart(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		c = store.Chart{}
	case err != nil:
		return nil, fmt.Errorf("chart %s: %w", id, err)
	}
	if l.row == nil || !slices.Equal(c.Heads, l.row) {
		r.cache.remove(id)
		return nil, nil
	}
	return l, nil
}

// loadStored builds a chart from its snapshot and the changes after it.
// It returns ErrNotFound if nothing of the chart is stored. The caller
// owns the chart's document: it caches it or closes it when done.
func (r *Replica) loadStored(ctx context.Context, id string) (_ *loaded, err error) {
	var doc *crdt.Doc
	defer func() {
		if err != nil && doc != nil {
			_ = doc.Close()
		}
	}()
	// The index entry is read first: what is read of the chart after it
	// holds at least what the entry says, so a write that expects the
	// entry (Config.SharedStore) never overwrites a change it did not read.
	var row store.Chart
	hasRow := false
	if c, err := r.st.Chart(ctx, id); err == nil {
		row, hasRow = c, true
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("load chart %s: %w", id, err)
	}
	var after uint64
	snap, err := r.st.Snapshot(ctx, id)
	if err == nil {
		if doc, err = crdt.Load(snap.Data, r.id); err == nil {
			after = snap.Seq
		} else {
			// Every change of the chart is in the log: a snapshot that
			// does not load (damaged, or saved by an older build) is
			// rebuilt from it, and the next one replaces it.
			r.log.Error("chart snapshot does not load: rebuilding the chart from its changes", "chart", id, "err", err)
			r.rebuilt.Add(1)
			err = store.ErrNotFound
		}
	}
	switch {
	case err == nil:
	case errors.Is(err, store.ErrNotFound):
		if doc, err = crdt.New(r.id); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("load chart %s: %w", id, err)
	}
	chs, err := r.st.ChartChanges(ctx, id, after)
	if err != nil {
		return nil, fmt.Errorf("load chart %s: %w", id, err)
	}
	if len(chs) == 0 && after == 0 {
		return nil, fmt.Errorf("chart %s: %w", id, ErrNotFound)
	}
	if err := applyStored(doc, chs); errors.Is(err, crdt.ErrInvalidChange) {
		// A change stored before this build judged every change as
		// Automerge does (a sequence number skipped, an operation on
		// nothing) would break the chart for good: the chart is read
		// without it, and that is logged.
		if err := r.applyStoredSkipping(doc, id, chs); err != nil {
			return nil, fmt.Errorf("load chart %s: %w", id, err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("load chart %s: %w", id, err)
	}
	l := &loaded{id: id, doc: doc, sinceSnapshot: len(chs)}
	if hasRow {
		l.scope, l.row = row.Scope, slices.Clone(row.Heads)
		if l.row == nil {
			l.row = crdt.Heads{}
		}
	}
	if err := l.open(); err != nil {
		return nil, fmt.Errorf("load chart %s: %w", id, err)
	}
	r.loads.Add(1)
	return l, nil
}

// applyStoredSkipping applies stored changes one by one, leaving out (and
// logging) those the chart cannot take.
func (r *Replica) applyStoredSkipping(doc *crdt.Doc, id string, chs []store.Change) error {
	for _, c := range chs {
		parsed, err := crdt.ParseChange(c.Raw)
		if err == nil {
			_, err = doc.Apply(parsed)
		}
		if errors.Is(err, crdt.ErrInvalidChange) || errors.Is(err, crdt.ErrMalformed) {
			r.log.Error("stored change left out of its chart: the chart cannot take it", "chart", id, "change", c.Hash, "seq", c.Seq, "err", err)
			r.rebuilt.Add(1)
			continue
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func applyStored(doc *crdt.Doc, chs []store.Change) error {
	return applyAll(doc, chs, func(c store.Change) ([]byte, crdt.Hash) { return c.Raw, c.Hash })
}

// applyAll applies changes whose raw bytes and hashes part gives to doc,
// in one bulk load when their dependencies are all held (the usual case),
// else one by one, holding what cannot apply yet. On error doc is
// unchanged.
func applyAll[C any](doc *crdt.Doc, chs []C, part func(C) ([]byte, crdt.Hash)) error {
	if len(chs) == 0 {
		return nil
	}
	size := 0
	for _, c := range chs {
		r, _ := part(c)
		size += len(r)
	}
	raw := make([]byte, 0, size)
	hashes := make([]crdt.Hash, len(chs))
	for i, c := range chs {
		r, h := part(c)
		raw = append(raw, r...)
		hashes[i] = h
	}
	return doc.ApplyStored(raw, hashes)
}

// indexEntry computes a chart's index row, with its search keys.
func indexEntry(cfg Config, l *loaded) (store.Chart, error) {
	e := store.Chart{ID: l.id, Heads: l.doc.Heads(), Updated: cfg.Now().UTC()}
	if l.users != nil {
		e.Kind, e.HomeClinic, e.Scope = store.KindUsers, l.users.Clinic(), []string{l.users.Clinic()}
		return e, nil
	}
	if l.chart == nil {
		return e, nil
	}
	p, err := l.chart.Patient()
	if err != nil {
		return e, fmt.Errorf("index chart %s: %w", l.id, err)
	}
	if e.Scope, err = l.chart.Scope(); err != nil {
		return e, fmt.Errorf("index chart %s: %w", l.id, err)
	}
	e.GivenName, e.FamilyName, e.Village, e.NationalID, e.HomeClinic = p.GivenName, p.FamilyName, p.Village, p.NationalID, p.HomeClinic
	e.Keys = searchKeys(p)
	if err := withForwardKey(&e, l.chart); err != nil {
		return e, fmt.Errorf("index chart %s: %w", l.id, err)
	}
	return e, nil
}

// addChartWrites adds a chart's index row, and a snapshot when enough
// changes have piled up and none is held waiting for a dependency (a held
// change is not in a saved document, so a snapshot then could cover a log
// position whose change it lacks).
func (r *Replica) addChartWrites(b *store.Batch, l *loaded) error {
	return chartWrites(r.cfg, b, l, true)
}

// chartWrites is addChartWrites with the replica's configuration. A chart
// received whole (new to this replica, as a first sync or a long history
// brings it) is stored without a snapshot (snapshot false): it is not kept
// loaded, saving and checking its whole history would double the work and
// the memory of receiving it, and its first snapshot is made by the first
// write after it is next loaded.
func chartWrites(cfg Config, b *store.Batch, l *loaded, snapshot bool) error {
	e, err := indexEntry(cfg, l)
	if err != nil {
		return err
	}
	if cfg.SharedStore {
		if b.Expect == nil {
			b.Expect = map[string]crdt.Heads{}
		}
		if _, ok := b.Expect[l.id]; !ok {
			b.Expect[l.id] = l.row // as read: nil if the chart had no entry
		}
	}
	b.Charts = append(b.Charts, e)
	l.row = e.Heads
	// A clinic joining the chart's scope must be sent its earlier changes:
	// record where in the log that happened.
	for _, clinic := range e.Scope {
		if !slices.Contains(l.scope, clinic) {
			b.Grants = append(b.Grants, store.NewGrant{Chart: l.id, Clinic: clinic})
		}
	}
	for _, clinic := range l.scope {
		if !slices.Contains(e.Scope, clinic) {
			b.Grants = append(b.Grants, store.NewGrant{Chart: l.id, Clinic: clinic, Revoked: true})
		}
	}
	l.scope = e.Scope
	// A chart is saved again once CompactAfter changes and half its
	// history have piled up on its snapshot: the work of saving a chart
	// over and over then adds up to about twice its history, however it
	// grows, and loading it applies at most half its history from the
	// log.
	if snapshot && l.sinceSnapshot >= cfg.CompactAfter && 2*l.sinceSnapshot >= l.doc.Len() && len(l.doc.Pending()) == 0 {
		// A snapshot is stored only once it is known to load again: a
		// chart whose snapshot did not would be lost to every later
		// read. Its changes stay in the log either way.
		data, err := l.doc.SaveChecked()
		if err != nil {
			cfg.Logger.Error("chart snapshot not stored: it does not load back", "chart", l.id, "err", err)
			return nil
		}
		b.Snapshots = append(b.Snapshots, store.NewSnapshot{Chart: l.id, Data: data})
	}
	return nil
}

// Import stores whole charts built elsewhere (a migration from another
// system, a bulk registration) in one durable transaction. Charts already
// held are merged. Each chart's document is written with every change and
// an index entry; a chart with many changes is stored with a snapshot.
// With a Config.Signer, the changes made as this replica (the charts were
// built with its ID as actor) are signed; others stay unsigned, and
// replicas with Config.Keys will refuse them. A forked replica (Forked)
// refuses charts holding changes made as its ID, as it refuses every
// write as its actor, with its *ForkedError; nothing is stored.
func (r *Replica) Import(ctx context.Context, charts []*record.Chart) error {
	unlock, err := r.lock()
	if err != nil {
		return err
	}
	defer unlock()
	var b store.Batch
	// merged holds, for a chart already held (or imported twice), the
	// stored chart merged with the imported one: its index row and
	// snapshot must cover the stored changes too, or a snapshot would hide
	// them from every later load.
	merged := map[string]*loaded{}
	// The documents made here (loaded or forked, never the caller's) are
	// closed once the import is done; none is cached.
	callers := make(map[*crdt.Doc]bool, len(charts))
	for _, c := range charts {
		callers[c.Doc()] = true
	}
	var made []*crdt.Doc
	defer func() {
		for _, d := range made {
			if !callers[d] {
				_ = d.Close()
			}
		}
	}()
	for _, c := range charts {
		chs, err := c.Doc().Changes(nil)
		if err != nil {
			return fmt.Errorf("import chart %s: %w", c.ID(), err)
		}
		chs = append(chs, c.Doc().Pending()...)
		for _, ch := range chs {
			nc := store.NewChange{Chart: c.ID(), Hash: ch.Hash, Raw: ch.Raw}
			if ch.Actor == r.id {
				if err := r.Forked(); err != nil {
					return fmt.Errorf("import chart %s, made as this replica: %w", c.ID(), err)
				}
				nc.Sig = r.sign(c.ID(), ch.Hash) // made as this device: it vouches for it
			}
			b.Changes = append(b.Changes, nc)
		}
		r.cache.remove(c.ID())
		l, err := r.importInto(ctx, merged[c.ID()], c, len(chs))
		if err != nil {
			return fmt.Errorf("import chart %s: %w", c.ID(), err)
		}
		merged[c.ID()] = l
		made = append(made, l.doc)
		if err := r.addChartWrites(&b, l); err != nil {
			return err
		}
	}
	if _, err := r.st.Write(ctx, b); err != nil {
		return fmt.Errorf("import %d charts: %w", len(charts), err)
	}
	return nil
}

// importInto returns the chart to index and snapshot for an imported chart
// c of n changes: c itself when nothing of it is held, otherwise a copy of
// what is held (prev, from earlier in the same import, or the store) with
// c merged in. c is not modified. r.mu is held.
func (r *Replica) importInto(ctx context.Context, prev *loaded, c *record.Chart, n int) (*loaded, error) {
	if prev == nil {
		_, err := r.st.Chart(ctx, c.ID())
		if errors.Is(err, store.ErrNotFound) {
			return &loaded{id: c.ID(), doc: c.Doc(), chart: c, sinceSnapshot: n}, nil
		}
		if err != nil {
			return nil, err
		}
		if prev, err = r.loadStored(ctx, c.ID()); err != nil {
			return nil, err
		}
	} else {
		// Merge into a fork, leaving the earlier imported chart as it was.
		doc, err := prev.doc.Fork(nil, r.id)
		if err != nil {
			return nil, err
		}
		if _, err := doc.Merge(prev.doc); err != nil { // carries held changes over
			return nil, err
		}
		prev = &loaded{id: prev.id, doc: doc, sinceSnapshot: prev.sinceSnapshot, scope: prev.scope}
	}
	if _, err := prev.doc.Merge(c.Doc()); err != nil {
		return nil, err
	}
	chart, err := record.Open(prev.doc)
	if err != nil && !errors.Is(err, record.ErrNotAChart) {
		return nil, err
	}
	return &loaded{id: c.ID(), doc: prev.doc, chart: chart, sinceSnapshot: prev.sinceSnapshot + n, scope: prev.scope}, nil
}

// RebuiltCharts counts the charts rebuilt from their changes since Open
// because their stored snapshot did not load (each is logged too).
func (r *Replica) RebuiltCharts() int { return int(r.rebuilt.Load()) }
