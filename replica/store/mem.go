package store

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/chartsync/chartsync/crdt"
)

// Mem is an in-memory Store for tests and simulations. Its durability ends
// with the process. FailWrites, when set, makes Write fail with its error
// and store nothing, to test error paths.
type Mem struct {
	mu         sync.Mutex
	closed     bool
	log        []Change
	byHash     map[crdt.Hash]int
	byChart    map[string][]int // each chart's changes: indices into log, increasing
	byClinic   map[string][]int // each clinic's log (see LogQuery.Clinic): indices into log, increasing
	charts     map[string]Chart
	byKey      map[string]map[string]bool // search key -> patients' charts indexed under it
	keys       []string                   // the keys of byKey, sorted
	snapshots  map[string]Snapshot
	peers      map[string]Peer
	meta       map[string]string
	grants     []Grant
	quarantine []Quarantined

	FailWrites error
}

var _ Store = (*Mem)(nil)

// NewMem returns an empty in-memory store.
func NewMem() *Mem {
	return &Mem{
		byHash:    map[crdt.Hash]int{},
		byChart:   map[string][]int{},
		byClinic:  map[string][]int{},
		charts:    map[string]Chart{},
		byKey:     map[string]map[string]bool{},
		snapshots: map[string]Snapshot{},
		peers:     map[string]Peer{},
		meta:      map[string]string{},
	}
}

func (m *Mem) lock() (func(), error) {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, ErrClosed
	}
	return m.mu.Unlock, nil
}

func cloneChange(c Change) Change {
	c.Raw = bytes.Clone(c.Raw)
	c.Sig = bytes.Clone(c.Sig)
	return c
}

// Head implements ChangeLog.
func (m *Mem) Head(ctx context.Context) (uint64, error) {
	unlock, err := m.lock()
	if err != nil {
		return 0, err
	}
	defer unlock()
	return uint64(len(m.log)), nil
}

// Log implements ChangeLog.
func (m *Mem) Log(ctx context.Context, after uint64, limit int) ([]Change, error) {
	unlock, err := m.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	var out []Change
	for i := after; i < uint64(len(m.log)) && (limit <= 0 || len(out) < limit); i++ {
		out = append(out, cloneChange(m.log[i]))
	}
	return out, nil
}

// ChartChanges implements ChangeLog.
func (m *Mem) ChartChanges(ctx context.Context, chart string, after uint64) ([]Change, error) {
	unlock, err := m.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	var out []Change
	for _, i := range m.byChart[chart] {
		if m.log[i].Seq > after {
			out = append(out, cloneChange(m.log[i]))
		}
	}
	return out, nil
}

// LogFor implements ChangeLog. It reads only the chart's changes when
// q.Chart is set, and only the clinic's log when q.Clinic is.
func (m *Mem) LogFor(ctx context.Context, q LogQuery) ([]Change, error) {
	unlock, err := m.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	upto := uint64(len(m.log))
	if q.Upto > 0 {
		upto = min(upto, q.Upto)
	}
	var idx []int // the positions to read, increasing; nil: the whole log
	switch {
	case q.Chart != "":
		idx = m.byChart[q.Chart]
		if q.Clinic != "" && !slices.Contains(m.charts[q.Chart].Scope, q.Clinic) {
			idx = nil
		}
		if idx == nil {
			return nil, nil
		}
	case q.Clinic != "":
		if idx = m.byClinic[q.Clinic]; idx == nil {
			return nil, nil
		}
	}
	var out []Change
	next := func(i uint64) bool { // reads position i; false when done
		if i >= upto || q.Limit > 0 && len(out) >= q.Limit {
			return false
		}
		if q.NotFrom == "" || m.log[i].From != q.NotFrom {
			out = append(out, cloneChange(m.log[i]))
		}
		return true
	}
	after := min(q.After, uint64(len(m.log))) // a Seq is its position plus one
	if idx == nil {
		for i := after; next(i); i++ {
		}
		return out, nil
	}
	from, _ := slices.BinarySearch(idx, int(after))
	for _, i := range idx[from:] {
		if !next(uint64(i)) {
			break
		}
	}
	return out, nil
}

// Known implements ChangeLog.
func (m *Mem) Known(ctx context.Context, hashes []crdt.Hash) (map[crdt.Hash]bool, error) {
	unlock, err := m.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	out := map[crdt.Hash]bool{}
	for _, h := range hashes {
		if _, ok := m.byHash[h]; ok {
			out[h] = true
		}
	}
	return out, nil
}

// CountAfter implements ChangeLog.
func (m *Mem) CountAfter(ctx context.Context, after uint64, peer string) (int, error) {
	unlock, err := m.lock()
	if err != nil {
		return 0, err
	}
	defer unlock()
	n := 0
	for i := after; i < uint64(len(m.log)); i++ {
		if m.log[i].From != peer {
			n++
		}
	}
	return n, nil
}

// Chart implements Index.
func (m *Mem) Chart(ctx context.Context, id string) (Chart, error) {
	unlock, err := m.lock()
	if err != nil {
		return Chart{}, err
	}
	defer unlock()
	c, ok := m.charts[id]
	if !ok {
		return Chart{}, ErrNotFound
	}
	return cloneChart(c), nil
}

func cloneChart(c Chart) Chart {
	c.Heads, c.Scope, c.Keys = slices.Clone(c.Heads), slices.Clone(c.Scope), slices.Clone(c.Keys)
	return c
}

// NormalKeys returns a chart entry's keys as a store keeps them: sorted,
// without duplicates, and none for a document that is not a patient's
// chart. It does not modify c.Keys.
func NormalKeys(c Chart) []string {
	if c.Kind != "" || len(c.Keys) == 0 {
		return nil
	}
	keys := slices.Clone(c.Keys)
	slices.Sort(keys)
	return slices.Compact(keys)
}

// Charts implements Index.
func (m *Mem) Charts(ctx context.Context, q Query) ([]Chart, error) {
	unlock, err := m.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	var out []Chart
	for _, c := range m.charts {
		if c.Kind == q.Kind && Matches(c, q.Text) {
			out = append(out, cloneChart(c))
		}
	}
	SortCharts(out)
	if q.Limit > 0 && len(out) > q.Limit {
		out = out[:q.Limit]
	}
	return out, nil
}

// Quarantined implements Store.
func (m *Mem) Quarantined(ctx context.Context) ([]Quarantined, error) {
	unlock, err := m.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	out := make([]Quarantined, len(m.quarantine))
	for i, q := range m.quarantine {
		q.Data = bytes.Clone(q.Data)
		out[i] = q
	}
	return out, nil
}

// Grants implements Index.
func (m *Mem) Grants(ctx context.Context, clinic string, after, upto uint64) ([]Grant, error) {
	unlock, err := m.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	var out []Grant
	for _, g := range m.grants {
		if g.Clinic == clinic && g.Seq > after && g.Seq <= upto {
			out = append(out, g)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Seq != out[j].Seq {
			return out[i].Seq < out[j].Seq
		}
		if out[i].Chart != out[j].Chart {
			return out[i].Chart < out[j].Chart
		}
		return !out[i].Revoked && out[j].Revoked
	})
	return out, nil
}

// Snapshot implements Index.
func (m *Mem) Snapshot(ctx context.Context, chart string) (Snapshot, error) {
	unlock, err := m.lock()
	if err != nil {
		return Snapshot{}, err
	}
	defer unlock()
	s, ok := m.snapshots[chart]
	if !ok {
		return Snapshot{}, ErrNotFound
	}
	s.Data = bytes.Clone(s.Data)
	return s, nil
}

// Meta implements Store.
func (m *Mem) Meta(ctx context.Context, key string) (string, error) {
	unlock, err := m.lock()
	if err != nil {
		return "", err
	}
	defer unlock()
	v, ok := m.meta[key]
	if !ok {
		return "", ErrNotFound
	}
	return v, nil
}

// Peer implements Store.
func (m *Mem) Peer(ctx context.Context, id string) (Peer, error) {
	unlock, err := m.lock()
	if err != nil {
		return Peer{}, err
	}
	defer unlock()
	p, ok := m.peers[id]
	if !ok {
		return Peer{}, ErrNotFound
	}
	return p, nil
}

// Peers implements Store.
func (m *Mem) Peers(ctx context.Context) ([]Peer, error) {
	unlock, err := m.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	out := make([]Peer, 0, len(m.peers))
	for _, p := range m.peers {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Write implements Store.
func (m *Mem) Write(ctx context.Context, b Batch) (uint64, error) {
	unlock, err := m.lock()
	if err != nil {
		return 0, err
	}
	defer unlock()
	if m.FailWrites != nil {
		return 0, m.FailWrites
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := ExpectHeld(b.Expect, func(id string) (crdt.Heads, error) {
		if c, ok := m.charts[id]; ok {
			return c.Heads, nil
		}
		return nil, nil
	}); err != nil {
		return 0, fmt.Errorf("write: %w", err)
	}
	for k, v := range b.Meta {
		m.meta[k] = v
	}
	before := uint64(len(m.log))
	for _, c := range b.Changes {
		if _, ok := m.byHash[c.Hash]; ok {
			continue
		}
		m.log = append(m.log, Change{Seq: uint64(len(m.log) + 1), Chart: c.Chart, Hash: c.Hash, Raw: bytes.Clone(c.Raw), From: c.From, Sig: bytes.Clone(c.Sig)})
		i := len(m.log) - 1
		m.byHash[c.Hash] = i
		m.byChart[c.Chart] = append(m.byChart[c.Chart], i)
		for j, clinic := range m.charts[c.Chart].Scope {
			if !slices.Contains(m.charts[c.Chart].Scope[:j], clinic) {
				m.byClinic[clinic] = append(m.byClinic[clinic], i)
			}
		}
	}
	for _, c := range b.Charts {
		c = cloneChart(c)
		c.Keys = NormalKeys(c)
		m.rescope(c.ID, m.charts[c.ID].Scope, c.Scope)
		m.rekey(c.ID, m.charts[c.ID].Keys, c.Keys)
		m.charts[c.ID] = c
	}
	head := uint64(len(m.log))
	for _, q := range b.Quarantine {
		q.Data = bytes.Clone(q.Data)
		m.quarantine = append(m.quarantine, q)
	}
	for _, g := range b.Grants {
		seq := before + 1 // a join: the batch's first position
		if g.Revoked {
			seq = head
		}
		m.grants = append(m.grants, Grant{Chart: g.Chart, Clinic: g.Clinic, Seq: seq, Revoked: g.Revoked})
	}
	for _, s := range b.Snapshots {
		m.snapshots[s.Chart] = Snapshot{Chart: s.Chart, Seq: head, Data: bytes.Clone(s.Data)}
	}
	for _, p := range b.Peers {
		m.peers[p.ID] = p
	}
	return head, nil
}

// rescope moves a chart's changes into the logs of the clinics that
// joined its scope and out of those of the clinics that left it.
func (m *Mem) rescope(chart string, was, is []string) {
	own := m.byChart[chart]
	for i, clinic := range is {
		if !slices.Contains(was, clinic) && !slices.Contains(is[:i], clinic) && len(own) > 0 {
			m.byClinic[clinic] = mergeSorted(m.byClinic[clinic], own)
		}
	}
	for i, clinic := range was {
		if !slices.Contains(is, clinic) && !slices.Contains(was[:i], clinic) {
			m.byClinic[clinic] = slices.DeleteFunc(slices.Clone(m.byClinic[clinic]), func(i int) bool { return m.log[i].Chart == chart })
		}
	}
}

// rekey replaces a chart's search keys in the index.
func (m *Mem) rekey(chart string, was, is []string) {
	for _, k := range was {
		if _, keep := slices.BinarySearch(is, k); keep {
			continue
		}
		delete(m.byKey[k], chart)
		if len(m.byKey[k]) == 0 {
			delete(m.byKey, k)
			if i, ok := slices.BinarySearch(m.keys, k); ok {
				m.keys = slices.Delete(m.keys, i, i+1)
			}
		}
	}
	for _, k := range is {
		set := m.byKey[k]
		if set == nil {
			set = map[string]bool{}
			m.byKey[k] = set
			i, _ := slices.BinarySearch(m.keys, k)
			m.keys = slices.Insert(m.keys, i, k)
		}
		set[chart] = true
	}
}

// Search implements Index: each term's charts are read from the index
// (a prefix as a range of the sorted keys), starting with the term that
// finds the fewest.
func (m *Mem) Search(ctx context.Context, s Search) ([]Chart, error) {
	unlock, err := m.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	if len(s.Terms) == 0 {
		return nil, nil
	}
	sets := make([]map[string]bool, len(s.Terms))
	for i, term := range s.Terms {
		set := map[string]bool{}
		for _, l := range term {
			if !l.Prefix {
				for id := range m.byKey[l.Key] {
					set[id] = true
				}
				continue
			}
			from, _ := slices.BinarySearch(m.keys, l.Key)
			for _, k := range m.keys[from:] {
				if !strings.HasPrefix(k, l.Key) {
					break
				}
				for id := range m.byKey[k] {
					set[id] = true
				}
			}
		}
		sets[i] = set
	}
	slices.SortFunc(sets, func(a, b map[string]bool) int { return len(a) - len(b) })
	var ids []string
	for id := range sets[0] {
		if !slices.ContainsFunc(sets[1:], func(set map[string]bool) bool { return !set[id] }) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	if s.Limit > 0 && len(ids) > s.Limit {
		ids = ids[:s.Limit]
	}
	out := make([]Chart, len(ids))
	for i, id := range ids {
		out[i] = cloneChart(m.charts[id])
	}
	return out, nil
}

// mergeSorted merges two increasing slices without common elements.
func mergeSorted(a, b []int) []int {
	if len(a) == 0 || a[len(a)-1] < b[0] {
		return append(a, b...)
	}
	out := make([]int, 0, len(a)+len(b))
	for len(a) > 0 && len(b) > 0 {
		if a[0] < b[0] {
			out, a = append(out, a[0]), a[1:]
		} else {
			out, b = append(out, b[0]), b[1:]
		}
	}
	return append(append(out, a...), b...)
}

// Close implements Store.
func (m *Mem) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return nil
}
