package faultstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/replica/store"
)

// ErrInjected is the error of a write failed by a Fault that names none.
var ErrInjected = errors.New("faultstore: injected write failure")

// ErrCrashed is returned by every call to a store that crashed at a
// failpoint (a Fault with Action Crash), except Close.
var ErrCrashed = errors.New("faultstore: the store crashed at a failpoint")

// When is one side of a write.
type When int

// The two sides of a write.
const (
	// Before the batch reaches the wrapped store: nothing of it is stored.
	Before When = iota
	// After the wrapped store committed the batch, before the caller is
	// told.
	After
)

func (w When) String() string {
	if w == After {
		return "after"
	}
	return "before"
}

// Point is a failpoint: one side of the Write-th write (from 1).
type Point struct {
	Write int
	When  When
}

func (p Point) String() string { return fmt.Sprintf("%s write %d", p.When, p.Write) }

// Action is what a Fault does at its point.
type Action int

// Actions.
const (
	// Fail fails the write there with Fault.Err.
	Fail Action = iota
	// Crash stops the store there (see ErrCrashed).
	Crash
	// Call only runs Fault.OnHit, and the write goes on: a test arms
	// there a fault below the store (faultvfs's) for that write alone.
	Call
)

// Fault is what to do at a failpoint.
type Fault struct {
	// At is the failpoint. Writes numbered before At.Write go through.
	At Point
	// Times is how many writes from At.Write it strikes: 0 or 1 for
	// one, a negative number for every later write. A crash strikes once.
	Times  int
	Action Action
	// Err is the error of a failed write; nil means ErrInjected.
	Err error
	// OnHit, if set, runs each time the fault strikes, before the write
	// goes on or returns, while no other write can run: at a crash, a
	// test takes its copy of the storage there.
	OnHit func(Point)
}

// Write describes one write the wrapper saw: how much of each part of
// the batch it carried.
type Write struct {
	N          int // its number, from 1
	Changes    int
	Charts     int
	Snapshots  int
	Peers      int
	Meta       int
	Grants     int
	Quarantine int
	// Stored is false when a fault stopped it before the wrapped store,
	// or the wrapped store returned an error.
	Stored bool
}

// Snapshot reports whether the write stores a chart's snapshot (a
// compaction).
func (w Write) Snapshot() bool { return w.Snapshots > 0 }

func (w Write) String() string {
	var parts []string
	for _, p := range []struct {
		n    int
		name string
	}{
		{w.Changes, "changes"}, {w.Charts, "charts"}, {w.Snapshots, "snapshots"}, {w.Peers, "peers"},
		{w.Meta, "meta"}, {w.Grants, "grants"}, {w.Quarantine, "quarantined"},
	} {
		if p.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", p.n, p.name))
		}
	}
	if len(parts) == 0 {
		parts = []string{"empty"}
	}
	return fmt.Sprintf("write %d (%s)", w.N, strings.Join(parts, ", "))
}

func describe(n int, b store.Batch) Write {
	return Write{
		N: n, Changes: len(b.Changes), Charts: len(b.Charts), Snapshots: len(b.Snapshots), Peers: len(b.Peers),
		Meta: len(b.Meta), Grants: len(b.Grants), Quarantine: len(b.Quarantine),
	}
}

// Store is a store.Store with failpoints. It is safe for concurrent use.
type Store struct {
	inner   store.Store
	crashed atomic.Bool

	mu     sync.Mutex // serialises writes, and guards what follows
	writes []Write
	fault  *Fault
	fired  int
}

var (
	_ store.Store  = (*Store)(nil)
	_ store.Packer = (*Store)(nil)
	_ store.Placed = (*Store)(nil)
)

// New wraps inner, with no fault armed. The Store owns inner: Close
// closes it.
func New(inner store.Store) *Store { return &Store{inner: inner} }

// Inner returns the wrapped store.
func (s *Store) Inner() store.Store { return s.inner }

// Arm arms f, replacing any fault armed before, and resets Fired.
func (s *Store) Arm(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault = &f
	s.fired = 0
}

// Disarm removes the armed fault. A store that crashed stays crashed.
func (s *Store) Disarm() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault = nil
}

// Fired returns how many writes the armed fault has struck since Arm.
func (s *Store) Fired() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fired
}

// Count returns how many writes have reached the wrapper so far.
func (s *Store) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.writes)
}

// Writes returns the writes numbered from..to (1-based, inclusive; to 0
// means the last), in order.
func (s *Store) Writes(from, to int) []Write {
	s.mu.Lock()
	defer s.mu.Unlock()
	from = max(from, 1)
	if to <= 0 || to > len(s.writes) {
		to = len(s.writes)
	}
	if from > to {
		return nil
	}
	return append([]Write(nil), s.writes[from-1:to]...)
}

// Crashed reports whether the store crashed at a failpoint.
func (s *Store) Crashed() bool { return s.crashed.Load() }

// strikes reports whether the armed fault strikes point p. s.mu is held.
func (s *Store) strikes(p Point) *Fault {
	f := s.fault
	if f == nil || f.At.When != p.When || p.Write < f.At.Write {
		return nil
	}
	times := f.Times
	if f.Action == Crash || times == 0 {
		times = 1
	}
	if times > 0 && p.Write >= f.At.Write+times {
		return nil
	}
	return f
}

// hit carries out fault f at point p, and returns the error the write
// returns (nil for Call). s.mu is held.
func (s *Store) hit(f *Fault, p Point) error {
	s.fired++
	if f.Action == Crash {
		s.crashed.Store(true)
	}
	if f.OnHit != nil {
		f.OnHit(p)
	}
	switch {
	case f.Action == Call:
		return nil
	case f.Action == Crash && p.When == After:
		return fmt.Errorf("%w at %s: %w", ErrCrashed, p, store.ErrOutcomeUnknown)
	case f.Action == Crash:
		return fmt.Errorf("%w at %s", ErrCrashed, p)
	}
	err := f.Err
	if err == nil {
		err = ErrInjected
	}
	if p.When == After {
		return fmt.Errorf("faultstore: %s: %w: %w", p, err, store.ErrOutcomeUnknown)
	}
	return fmt.Errorf("faultstore: %s: %w", p, err)
}

// Write commits b through the wrapped store unless a fault strikes one of
// its two points.
func (s *Store) Write(ctx context.Context, b store.Batch) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.crashed.Load() {
		return 0, ErrCrashed
	}
	n := len(s.writes) + 1
	s.writes = append(s.writes, describe(n, b))
	w := &s.writes[n-1]
	if f := s.strikes(Point{n, Before}); f != nil {
		if err := s.hit(f, Point{n, Before}); err != nil {
			return 0, err
		}
	}
	head, err := s.inner.Write(ctx, b)
	if err != nil {
		return head, err
	}
	w.Stored = true
	if f := s.strikes(Point{n, After}); f != nil {
		if err := s.hit(f, Point{n, After}); err != nil {
			return 0, err
		}
	}
	return head, nil
}

// Close closes the wrapped store, crashed or not.
func (s *Store) Close() error { return s.inner.Close() }

// up returns ErrCrashed once the store crashed.
func (s *Store) up() error {
	if s.crashed.Load() {
		return ErrCrashed
	}
	return nil
}

// PacksChanges reports whether the wrapped store keeps changes packed
// (store.Packer); false if it does not say.
func (s *Store) PacksChanges() bool {
	p, ok := s.inner.(store.Packer)
	return ok && p.PacksChanges()
}

// Place returns the wrapped store's place (store.Placed), or "" if it has
// none, as a replica takes a store that cannot tell.
func (s *Store) Place(ctx context.Context) (string, error) {
	if err := s.up(); err != nil {
		return "", err
	}
	p, ok := s.inner.(store.Placed)
	if !ok {
		return "", nil
	}
	return p.Place(ctx)
}

// checker is a store that checks its own integrity (package sqlite's).
type checker interface {
	Check(ctx context.Context, full bool, max int) ([]string, error)
}

// Check runs the wrapped store's integrity check, or returns an error
// matching errors.ErrUnsupported if it has none.
func (s *Store) Check(ctx context.Context, full bool, max int) ([]string, error) {
	if err := s.up(); err != nil {
		return nil, err
	}
	c, ok := s.inner.(checker)
	if !ok {
		return nil, fmt.Errorf("faultstore: the wrapped store cannot check itself: %w", errors.ErrUnsupported)
	}
	return c.Check(ctx, full, max)
}

// Head implements store.ChangeLog.
func (s *Store) Head(ctx context.Context) (uint64, error) {
	if err := s.up(); err != nil {
		return 0, err
	}
	return s.inner.Head(ctx)
}

// Log implements store.ChangeLog.
func (s *Store) Log(ctx context.Context, after uint64, limit int) ([]store.Change, error) {
	if err := s.up(); err != nil {
		return nil, err
	}
	return s.inner.Log(ctx, after, limit)
}

// ChartChanges implements store.ChangeLog.
func (s *Store) ChartChanges(ctx context.Context, chart string, after uint64) ([]store.Change, error) {
	if err := s.up(); err != nil {
		return nil, err
	}
	return s.inner.ChartChanges(ctx, chart, after)
}

// Known implements store.ChangeLog.
func (s *Store) Known(ctx context.Context, hashes []crdt.Hash) (map[crdt.Hash]bool, error) {
	if err := s.up(); err != nil {
		return nil, err
	}
	return s.inner.Known(ctx, hashes)
}

// CountAfter implements store.ChangeLog.
func (s *Store) CountAfter(ctx context.Context, after uint64, peer string) (int, error) {
	if err := s.up(); err != nil {
		return 0, err
	}
	return s.inner.CountAfter(ctx, after, peer)
}

// LogFor implements store.ChangeLog.
func (s *Store) LogFor(ctx context.Context, q store.LogQuery) ([]store.Change, error) {
	if err := s.up(); err != nil {
		return nil, err
	}
	return s.inner.LogFor(ctx, q)
}

// Chart implements store.Index.
func (s *Store) Chart(ctx context.Context, id string) (store.Chart, error) {
	if err := s.up(); err != nil {
		return store.Chart{}, err
	}
	return s.inner.Chart(ctx, id)
}

// Charts implements store.Index.
func (s *Store) Charts(ctx context.Context, q store.Query) ([]store.Chart, error) {
	if err := s.up(); err != nil {
		return nil, err
	}
	return s.inner.Charts(ctx, q)
}

// Snapshot implements store.Index.
func (s *Store) Snapshot(ctx context.Context, chart string) (store.Snapshot, error) {
	if err := s.up(); err != nil {
		return store.Snapshot{}, err
	}
	return s.inner.Snapshot(ctx, chart)
}

// Grants implements store.Index.
func (s *Store) Grants(ctx context.Context, clinic string, after, upto uint64) ([]store.Grant, error) {
	if err := s.up(); err != nil {
		return nil, err
	}
	return s.inner.Grants(ctx, clinic, after, upto)
}

// Search implements store.Index.
func (s *Store) Search(ctx context.Context, q store.Search) ([]store.Chart, error) {
	if err := s.up(); err != nil {
		return nil, err
	}
	return s.inner.Search(ctx, q)
}

// Meta implements store.Store.
func (s *Store) Meta(ctx context.Context, key string) (string, error) {
	if err := s.up(); err != nil {
		return "", err
	}
	return s.inner.Meta(ctx, key)
}

// Peer implements store.Store.
func (s *Store) Peer(ctx context.Context, id string) (store.Peer, error) {
	if err := s.up(); err != nil {
		return store.Peer{}, err
	}
	return s.inner.Peer(ctx, id)
}

// Peers implements store.Store.
func (s *Store) Peers(ctx context.Context) ([]store.Peer, error) {
	if err := s.up(); err != nil {
		return nil, err
	}
	return s.inner.Peers(ctx)
}

// Quarantined implements store.Store.
func (s *Store) Quarantined(ctx context.Context) ([]store.Quarantined, error) {
	if err := s.up(); err != nil {
		return nil, err
	}
	return s.inner.Quarantined(ctx)
}
