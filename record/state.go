package record

import (
	"cmp"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/chartsync/chartsync/crdt"
)

// Document layout. The first change of a chart (Register) creates every
// container, so later concurrent writes never race to create a map:
//
//	chart/id, chart/schema   the chart's identity
//	w/<write id>             one JSON write of one field (see write)
//	notes/<encounter id>     the collaborative text of an encounter note
var (
	pathChart = []string{"chart"}
	pathW     = []string{"w"}
	pathNotes = []string{"notes"}
)

const schemaVersion = "1"

// write is one value written to one field of one entry: the element of
// every multi-value register in a chart. It is stored as JSON under its
// own unique ID, so concurrent writes never overwrite each other. The ID
// is the change that adds it and its place there (see writeKey); charts
// written before carry random UUIDs, which stay valid.
type write struct {
	ID         string   `json:"-"`
	Kind       string   `json:"k"`
	Entry      string   `json:"e"`
	Field      string   `json:"f"`
	Value      string   `json:"v"`
	Supersedes []string `json:"s,omitempty"`
	User       string   `json:"u"`
	Name       string   `json:"n,omitempty"`
	Role       Role     `json:"r"`
	Device     string   `json:"d,omitempty"`
	At         int64    `json:"t"` // Unix milliseconds
}

// writeKey is the ID of the i-th write of the change actor makes as its
// seq-th: "<actor>.<seq>.<i>". No other change can add that key (a
// checking replica refuses a change adding a key of this form that is not
// its own: see boundKey), so writes never collide; and a bundle of a
// device's changes repeats its actor, which compresses, where random IDs
// (16 bytes of noise each, six or so per change) do not.
func writeKey(actor string, seq uint64, i int) string {
	return actor + "." + strconv.FormatUint(seq, 10) + "." + strconv.Itoa(i)
}

// boundKey reports whether a write ID added by the change actor made as
// its seq-th is allowed: any ID with a '.' must be that change's own
// writeKey (the actor, the sequence number and a write index, in decimal
// without leading zeros); an ID without one is one of the random IDs
// earlier writes carry.
func boundKey(id, actor string, seq uint64) bool {
	a, rest, ok := strings.Cut(id, ".")
	if !ok {
		return true
	}
	n, i, ok := strings.Cut(rest, ".")
	if !ok || a != actor || n != strconv.FormatUint(seq, 10) {
		return false
	}
	x, err := strconv.ParseUint(i, 10, 31)
	return err == nil && i == strconv.FormatUint(x, 10)
}

func (w *write) author() Author {
	return Author{UserID: w.User, Name: w.Name, Role: w.Role, Device: w.Device}
}

func (w *write) time() time.Time { return time.UnixMilli(w.At).UTC() }

// later reports whether w is displayed before o when both are current:
// the later time wins, and on equal times the larger write ID, so every
// replica picks the same value without looking at actors or clocks beyond
// the recorded times.
func (w *write) later(o *write) bool {
	if w.At != o.At {
		return w.At > o.At
	}
	return w.ID > o.ID
}

// register is the multi-value register of one field of one entry.
type register struct {
	all     []*write // every write ever made, oldest first
	current []*write // writes nothing supersedes, displayed value first
}

// inConflict reports whether the register's current writes hold
// different values; writes that agree are not a conflict.
func (r *register) inConflict() bool {
	for _, w := range r.current[min(1, len(r.current)):] {
		if w.Value != r.current[0].Value {
			return true
		}
	}
	return false
}

// entry is one chart entry with all its field registers.
type entry struct {
	id      string
	kind    string
	fields  map[string]*register
	created *write // earliest write
}

// value returns the displayed value of a field ("" if never written),
// resolving competing values with the field's rule.
func (e *entry) value(field string) string {
	r := e.fields[field]
	if r == nil || len(r.current) == 0 {
		return ""
	}
	if p := precedenceOf(e.kind, field); p != nil {
		return resolveByPrecedence(p, r.current).Value
	}
	return r.current[0].Value
}

// writeOf returns the write that set the displayed value of a field.
func (e *entry) writeOf(field string) *write {
	r := e.fields[field]
	if r == nil || len(r.current) == 0 {
		return nil
	}
	if p := precedenceOf(e.kind, field); p != nil {
		return resolveByPrecedence(p, r.current)
	}
	return r.current[0]
}

// statusReason returns the reason given with the displayed value of a
// status field: when concurrent status changes each gave a reason, the
// reason of the status that won, not merely the latest reason. Otherwise
// it is the displayed reason.
func (e *entry) statusReason(statusField string) string {
	w, r := e.writeOf(statusField), e.fields["status_reason"]
	if w != nil && r != nil && len(r.current) > 1 {
		for _, rw := range r.current {
			if rw.At == w.At && rw.User == w.User && rw.Device == w.Device && rw.Role == w.Role {
				return rw.Value
			}
		}
	}
	return e.value("status_reason")
}

func resolveByPrecedence(order []string, ws []*write) *write {
	best, bestRank := ws[0], rank(order, ws[0].Value)
	for _, w := range ws[1:] {
		if r := rank(order, w.Value); r < bestRank || (r == bestRank && w.later(best)) {
			best, bestRank = w, r
		}
	}
	return best
}

func rank(order []string, v string) int {
	if i := slices.Index(order, v); i >= 0 {
		return i
	}
	return len(order)
}

// state is a chart's entries, parsed from its writes.
type state struct {
	chartID    string
	entries    map[string]*entry
	unreadable int // writes that could not be parsed (a damaged or foreign change)
	// superseded holds every write ID a readable write supersedes
	// (known or not); byID, built by indexWrites for add, holds the
	// writes in the entries' registers.
	superseded map[string]bool
	byID       map[string]*write
	// latest is the latest time a readable write records (Unix
	// milliseconds; 0 if none): when the chart last changed, as the
	// clocks of the devices that changed it said.
	latest int64
}

// today returns the time the checks that depend on today's date use for
// an edit of the chart made at at, and whether the clock is wrong (see
// ClockError).
func (s *state) today(at time.Time) (time.Time, *ClockError) {
	var latest time.Time
	if s != nil && s.latest > 0 {
		latest = time.UnixMilli(s.latest)
	}
	return today(at, latest)
}

// clone returns a copy of s that changes to either leave the other as it
// is. Writes never change once parsed, so the copy shares them; entries,
// registers and the maps are copied.
func (s *state) clone() *state {
	out := &state{
		chartID:    s.chartID,
		entries:    make(map[string]*entry, len(s.entries)),
		unreadable: s.unreadable,
		superseded: maps.Clone(s.superseded),
		byID:       maps.Clone(s.byID),
	}
	for id, e := range s.entries {
		ne := &entry{id: e.id, kind: e.kind, created: e.created, fields: make(map[string]*register, len(e.fields))}
		for f, r := range e.fields {
			ne.fields[f] = &register{all: slices.Clone(r.all), current: slices.Clone(r.current)}
		}
		out.entries[id] = ne
	}
	return out
}

// readState parses every write in the document.
func readState(doc *crdt.Doc) (*state, error) {
	id, err := doc.String(pathChart, "id")
	if err != nil {
		return nil, err
	}
	raw, err := doc.Strings(pathW...)
	if err != nil {
		return nil, err
	}
	return stateFrom(id, raw), nil
}

// stateFrom parses the writes raw (the string values of the map of
// writes, by ID) of chart id.
func stateFrom(id string, raw map[string]string) *state {
	superseded := make(map[string]bool)
	s := &state{chartID: id, entries: make(map[string]*entry), superseded: superseded}
	ws := make([]*write, 0, len(raw))
	for wid, js := range raw {
		w, err := parseWrite(js)
		if err != nil || !knownKind(w.Kind) || w.Entry == "" || w.Field == "" {
			s.unreadable++
			continue
		}
		w.ID = wid
		ws = append(ws, w)
		for _, sup := range w.Supersedes {
			superseded[sup] = true
		}
	}
	slices.SortFunc(ws, func(a, b *write) int {
		return cmp.Or(cmp.Compare(a.At, b.At), strings.Compare(a.ID, b.ID))
	})
	if len(ws) > 0 {
		s.latest = ws[len(ws)-1].At
	}
	for _, w := range ws {
		e := s.entries[w.Entry]
		if e == nil {
			e = &entry{id: w.Entry, kind: w.Kind, fields: make(map[string]*register), created: w}
			s.entries[w.Entry] = e
		}
		if e.kind != w.Kind {
			// A write naming an entry under another kind is not ours.
			s.unreadable++
			continue
		}
		r := e.fields[w.Field]
		if r == nil {
			r = &register{}
			e.fields[w.Field] = r
		}
		r.all = append(r.all, w)
		if !superseded[w.ID] {
			r.current = append(r.current, w)
		}
	}
	for _, e := range s.entries {
		for _, r := range e.fields {
			slices.SortFunc(r.current, func(a, b *write) int {
				if a.later(b) {
					return -1
				}
				return 1
			})
		}
	}
	return s
}

// indexWrites builds s.byID, which add needs.
func (s *state) indexWrites() {
	s.byID = map[string]*write{}
	for _, e := range s.entries {
		for _, r := range e.fields {
			for _, w := range r.all {
				s.byID[w.ID] = w
			}
		}
	}
}

// before reports whether readState orders w before o: by time, then ID.
func (w *write) before(o *write) bool {
	return cmp.Or(cmp.Compare(w.At, o.At), strings.Compare(w.ID, o.ID)) < 0
}

// add adds one more readable write (w.ID set) to a state built by
// readState and indexWrites, leaving it as readState would have read it
// with the others. It returns false, having changed nothing, when the
// write would change an entry's kind (it names the entry under another
// kind and sorts before the entry's first write): only readState can
// sort that out.
func (s *state) add(w *write) bool {
	e := s.entries[w.Entry]
	if e != nil && e.kind != w.Kind && w.before(e.created) {
		return false
	}
	s.latest = max(s.latest, w.At)
	for _, sup := range w.Supersedes {
		if s.superseded[sup] {
			continue
		}
		s.superseded[sup] = true
		if o := s.byID[sup]; o != nil {
			r := s.entries[o.Entry].fields[o.Field]
			r.current = slices.DeleteFunc(r.current, func(x *write) bool { return x == o })
		}
	}
	switch {
	case e == nil:
		e = &entry{id: w.Entry, kind: w.Kind, fields: make(map[string]*register), created: w}
		s.entries[w.Entry] = e
	case e.kind != w.Kind:
		s.unreadable++
		return true
	case w.before(e.created):
		e.created = w
	}
	r := e.fields[w.Field]
	if r == nil {
		r = &register{}
		e.fields[w.Field] = r
	}
	i, _ := slices.BinarySearchFunc(r.all, w, func(a, b *write) int {
		if a.before(b) {
			return -1
		}
		return 1
	})
	r.all = slices.Insert(r.all, i, w)
	s.byID[w.ID] = w
	if !s.superseded[w.ID] {
		r.current = append(r.current, w)
		slices.SortFunc(r.current, func(a, b *write) int {
			if a.later(b) {
				return -1
			}
			return 1
		})
	}
	return true
}

// entriesOf returns the entries of one kind, oldest first.
func (s *state) entriesOf(kind string) []*entry {
	var out []*entry
	for _, e := range s.entries {
		if e.kind == kind {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b *entry) int {
		return cmp.Or(cmp.Compare(a.created.At, b.created.At), strings.Compare(a.id, b.id))
	})
	return out
}

// patient returns the patient entry (the chart ID names it).
func (s *state) patient() *entry {
	if e := s.entries[s.chartID]; e != nil && e.kind == KindPatient {
		return e
	}
	return &entry{id: s.chartID, kind: KindPatient, fields: map[string]*register{}}
}

// supersedes returns the IDs a new write of (entry, field) supersedes:
// every current value, so the new write has seen them all.
func (s *state) supersedes(entryID, field string) []string {
	e := s.entries[entryID]
	if e == nil {
		return nil
	}
	r := e.fields[field]
	if r == nil {
		return nil
	}
	ids := make([]string, len(r.current))
	for i, w := range r.current {
		ids[i] = w.ID
	}
	slices.Sort(ids)
	return ids
}
