package transport

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"

	"github.com/chartsync/chartsync/replica"
)

// Memory is an in-memory courier: a network of mailboxes, one for each
// direction between two replicas. A MemoryLink's Sync applies what waits in
// its replica's mailbox from the peer and posts a bundle in the peer's.
// Nothing moves between syncs, so a test decides exactly what is in flight
// and may drop, duplicate, reorder or forge it, cut replicas apart, or set
// random faults. It is safe for concurrent use.
type Memory struct {
	mu       sync.Mutex
	inFlight map[route][][]byte
	cut      map[route]bool
	faults   Faults
	rng      *rand.Rand
}

type route struct{ from, to string }

// Faults are random faults the Memory courier applies to bundles. The zero
// value is a perfect courier.
type Faults struct {
	// Drop is the probability that a posted bundle is lost.
	Drop float64
	// Duplicate is the probability that a posted bundle arrives twice.
	Duplicate float64
	// Reorder delivers what waits in a mailbox in random order instead of
	// the order it was posted.
	Reorder bool
}

// NewMemory returns an empty, fault-free in-memory network.
func NewMemory() *Memory {
	return &Memory{
		inFlight: map[route][][]byte{},
		cut:      map[route]bool{},
		rng:      rand.New(rand.NewPCG(1, 1)),
	}
}

var _ Link = (*MemoryLink)(nil)

// MemoryLink joins a local replica to one peer over a Memory network.
type MemoryLink struct {
	net   *Memory
	local *replica.Replica
	peer  string
}

// Link returns the link from local to the replica whose ID is peer.
// Several links may share one replica and one network.
func (m *Memory) Link(local *replica.Replica, peer string) *MemoryLink {
	return &MemoryLink{net: m, local: local, peer: peer}
}

// Sync applies every bundle waiting from the peer (Receive), then posts the
// bundle the peer needs (Send).
func (l *MemoryLink) Sync(ctx context.Context) (Stats, error) {
	st, rerr := l.Receive(ctx)
	sent, serr := l.Send(ctx)
	st.Add(sent)
	return st, errors.Join(rerr, serr)
}

// Send posts the bundle the peer needs in its mailbox (unless the network
// drops it: see Faults and Partition).
func (l *MemoryLink) Send(ctx context.Context) (Stats, error) {
	if err := ctx.Err(); err != nil {
		return Stats{}, err
	}
	out, err := l.local.MakeBundle(ctx, l.peer)
	if err != nil {
		return Stats{}, fmt.Errorf("memory link to %s: %w", l.peer, err)
	}
	l.net.post(l.local.ID(), l.peer, out.Data)
	return Stats{BundlesSent: 1, BytesSent: len(out.Data), ChangesSent: out.Changes}, nil
}

// Receive applies every bundle waiting in the local replica's mailbox from
// the peer and empties it. A refused bundle is discarded and reported in
// the error; the others are still applied.
func (l *MemoryLink) Receive(ctx context.Context) (Stats, error) {
	if err := ctx.Err(); err != nil {
		return Stats{}, err
	}
	var st Stats
	var errs []error
	for i, data := range l.net.take(l.peer, l.local.ID()) {
		got, err := l.local.Receive(ctx, data)
		if err != nil {
			st.BundlesRejected++
			errs = append(errs, fmt.Errorf("memory link: bundle %d from %s: %w", i, l.peer, err))
			continue
		}
		st.BundlesReceived++
		st.BytesReceived += len(data)
		st.ChangesApplied += got.Applied
		st.Duplicates += got.Duplicates
	}
	return st, errors.Join(errs...)
}

func (m *Memory) post(from, to string, data []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := route{from, to}
	if m.cut[r] {
		return
	}
	if m.faults.Drop > 0 && m.rng.Float64() < m.faults.Drop {
		return
	}
	m.inFlight[r] = append(m.inFlight[r], slices.Clone(data))
	if m.faults.Duplicate > 0 && m.rng.Float64() < m.faults.Duplicate {
		m.inFlight[r] = append(m.inFlight[r], slices.Clone(data))
	}
}

func (m *Memory) take(from, to string) [][]byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := route{from, to}
	out := m.inFlight[r]
	delete(m.inFlight, r)
	if m.faults.Reorder {
		m.rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	}
	return out
}

// SetFaults applies f to every bundle posted from now on, drawing from a
// random source seeded with seed so that a failing run can be repeated.
func (m *Memory) SetFaults(f Faults, seed uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.faults = f
	m.rng = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

// Partition cuts replicas a and b apart: bundles either posts to the other
// are lost until Heal. Bundles already in flight stay in flight.
func (m *Memory) Partition(a, b string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cut[route{a, b}] = true
	m.cut[route{b, a}] = true
}

// Heal undoes Partition(a, b).
func (m *Memory) Heal(a, b string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.cut, route{a, b})
	delete(m.cut, route{b, a})
}

// InFlight returns copies of the bundles waiting from one replica to
// another, oldest first.
func (m *Memory) InFlight(from, to string) [][]byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([][]byte, len(m.inFlight[route{from, to}]))
	for i, b := range m.inFlight[route{from, to}] {
		out[i] = slices.Clone(b)
	}
	return out
}

// Inject puts data in flight from one replica to another as if the first
// had posted it, bypassing faults and partitions.
func (m *Memory) Inject(from, to string, data []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := route{from, to}
	m.inFlight[r] = append(m.inFlight[r], slices.Clone(data))
}

// Rearrange replaces the bundles in flight from one replica to another by
// what f returns for them (oldest first): a test drops, duplicates or
// reorders bundles in flight with it. f must not keep the slice.
func (m *Memory) Rearrange(from, to string, f func(inFlight [][]byte) [][]byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := route{from, to}
	out := f(slices.Clone(m.inFlight[r]))
	if len(out) == 0 {
		delete(m.inFlight, r)
		return
	}
	m.inFlight[r] = out
}

// Drop loses every bundle in flight from one replica to another and
// returns how many there were.
func (m *Memory) Drop(from, to string) int {
	n := 0
	m.Rearrange(from, to, func(b [][]byte) [][]byte { n = len(b); return nil })
	return n
}

// Duplicate makes every bundle in flight from one replica to another
// arrive twice.
func (m *Memory) Duplicate(from, to string) {
	m.Rearrange(from, to, func(b [][]byte) [][]byte {
		out := make([][]byte, 0, 2*len(b))
		for _, d := range b {
			out = append(out, d, slices.Clone(d))
		}
		return out
	})
}

// Reverse makes the bundles in flight from one replica to another arrive
// newest first.
func (m *Memory) Reverse(from, to string) {
	m.Rearrange(from, to, func(b [][]byte) [][]byte { slices.Reverse(b); return b })
}
