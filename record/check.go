package record

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/chartsync/chartsync/crdt"
)

// Touched is what CheckChange found a change to modify.
type Touched struct {
	// Author is who the change's commit message says made it.
	Author Author
	// Sections are the sections the change writes, sorted.
	Sections []Section
	// Registers is true for a chart's first change, which creates it.
	Registers bool
	// Scope is the chart's scope (see Chart.Scope) on the version the
	// change was made on; for a chart's first change, the scope it
	// creates. A device may only change charts in its clinic's scope.
	Scope []string
}

// AuthorOf reads who a change's commit message says made it (a chart or
// user roster change), without judging the change; false if the message
// names no valid author.
func AuthorOf(ch crdt.Change) (Author, bool) {
	msg, err := parseMessage(ch.Message)
	if err != nil {
		return Author{}, false
	}
	a := Author{UserID: msg.User, Name: msg.Name, Role: msg.Role, Device: msg.Device}
	return a, a.Validate() == nil
}

// CheckChange works out what a change received from elsewhere modifies,
// and refuses it if the role its commit message records may not change
// every section it touches. doc is the chart's document holding the
// change's dependencies (the change itself may already be applied); it is
// not modified.
//
// The change is applied to a fork of doc at its dependencies, and the
// sections are those of the field writes and note edits it adds there:
// the operation name in the message is not trusted. A change must also be
// one this package could have made: it adds writes, never rewrites or
// removes one; every write it adds is well formed, attributed to the
// message's author, names its entry under the entry's kind, and
// supersedes only earlier writes of the same field; it touches the
// chart's identity only when it creates the chart; and its operations
// name only objects, elements and operations its dependencies hold (see
// crdt.OpIndex.CheckRefs), so that every replica applies it alike.
//
// CheckChange reads the whole chart, and its cost grows with the chart's
// history; a Checker judges a run of changes to one chart at the cost of
// each change.
//
// Errors: ErrInvalid (a *ValidationError) for an unreadable message or
// author, or a change this package would never make; ErrForbidden (a
// *ForbiddenError) for a section the role may not change, returned with
// the Touched found; ErrNotAChart if the change is not made on a chart;
// crdt.ErrNotFound if doc lacks a dependency; crdt.ErrMalformed for
// bytes that do not apply.
func CheckChange(doc *crdt.Doc, ch crdt.Change) (Touched, error) {
	msg, err := parseMessage(ch.Message)
	if err != nil {
		return Touched{}, invalid("message", "change %s carries no chart message: %v", ch.Hash, err)
	}
	t := Touched{Author: Author{UserID: msg.User, Name: msg.Name, Role: msg.Role, Device: msg.Device}}
	if err := t.Author.Validate(); err != nil {
		return Touched{}, fmt.Errorf("change %s: %w", ch.Hash, err)
	}
	t.Registers = len(ch.Deps) == 0

	// before is the chart the change was made on; a chart's first change
	// was made on nothing.
	var f *crdt.Doc
	if t.Registers {
		f, err = crdt.New(crdt.NewActorID())
	} else {
		f, err = doc.Fork(ch.Deps, crdt.NewActorID())
	}
	if err != nil {
		return Touched{}, fmt.Errorf("check change %s: %w", ch.Hash, err)
	}
	defer f.Close() // a scratch copy: its Automerge memory is freed now
	bs := &state{entries: map[string]*entry{}}
	probe := ""
	idx := crdt.NewOpIndex() // what the change's dependencies hold
	if !t.Registers {
		if _, err := Open(f); err != nil {
			return Touched{}, fmt.Errorf("check change %s: %w", ch.Hash, err)
		}
		if bs, err = readState(f); err != nil {
			return Touched{}, fmt.Errorf("check change %s: %w", ch.Hash, err)
		}
		if idx, err = f.OpIndex(); err != nil {
			return Touched{}, fmt.Errorf("check change %s: %w", ch.Hash, err)
		}
		// A probe written concurrently into every container disappears
		// if the change replaces a container (which would drop
		// concurrent writes on merge), whatever the container held.
		probe = "probe-" + newID()
		if _, err := f.Edit("", time.Unix(0, 0), func(tx *crdt.Tx) error {
			for _, p := range [][]string{pathChart, pathW, pathNotes} {
				if err := tx.Put(p, probe, probe); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return Touched{}, fmt.Errorf("check change %s: %w", ch.Hash, err)
		}
	}
	before, err := snapshot(f)
	if err != nil {
		return Touched{}, fmt.Errorf("check change %s: %w", ch.Hash, err)
	}
	// Before Automerge sees the change: automerge-rs panics, aborting
	// the process, on some operations that name the wrong kind of
	// object (an element key in a map, say), which CheckRefs refuses.
	info, err := crdt.ChangeOps(ch.Raw)
	if err != nil {
		return Touched{}, fmt.Errorf("check change %s: %w", ch.Hash, err)
	}
	if err := idx.CheckRefs(&info); err != nil {
		return Touched{}, fmt.Errorf("change %s: %w", ch.Hash, invalid("change", "%v", err))
	}
	applied, err := f.Apply(ch)
	if err != nil {
		return Touched{}, fmt.Errorf("check change %s: %w", ch.Hash, err)
	}
	if !slices.Contains(applied, ch.Hash) {
		return Touched{}, fmt.Errorf("check change %s: its dependencies are not held: %w", ch.Hash, crdt.ErrNotFound)
	}
	after, err := snapshot(f)
	if err != nil {
		return Touched{}, invalid("change", "change %s breaks the chart's layout: %v", ch.Hash, err)
	}
	if err := before.sameLayout(after, t.Registers, probe); err != nil {
		return Touched{}, fmt.Errorf("change %s: %w", ch.Hash, err)
	}
	chartID := bs.chartID
	if !t.Registers {
		t.Scope = bs.scope()
	}
	if t.Registers {
		c, err := Open(f)
		if err != nil {
			return Touched{}, invalid("change", "change %s starts a document that is not a chart: %v", ch.Hash, err)
		}
		chartID = c.ID()
		t.Sections = addSection(t.Sections, SectionDemographics)
		if t.Scope, err = c.Scope(); err != nil {
			return Touched{}, invalid("change", "change %s starts a chart without a readable scope: %v", ch.Hash, err)
		}
	}

	// The writes the change adds.
	known := map[string]*write{} // every readable write of before, by ID
	for _, e := range bs.entries {
		for _, r := range e.fields {
			for _, w := range r.all {
				known[w.ID] = w
			}
		}
	}
	j := newJudge(ch, chartID, &t, func(e string) (string, bool) {
		if x := bs.entries[e]; x != nil {
			return x.kind, true
		}
		return "", false
	}, func(id string) *write { return known[id] })
	for _, id := range sortedKeys(after.w) {
		js := after.w[id]
		if id == probe {
			continue
		}
		if old, ok := before.w[id]; ok {
			if old != js {
				return t, invalid("w", "change %s rewrites the stored write %s", ch.Hash, id)
			}
			continue
		}
		if _, err := j.write(id, js); err != nil {
			return t, err
		}
	}

	// The notes it creates or edits.
	for _, id := range sortedKeys(after.notes) {
		if id == probe || before.notes[id] == after.notes[id] {
			continue
		}
		if err := j.note(id); err != nil {
			return t, err
		}
	}
	if err := authorize(t.Author.Role, t.Sections); err != nil {
		return t, fmt.Errorf("change %s: %w", ch.Hash, err)
	}
	return t, nil
}

// judge holds the rules every write and note a change adds must follow,
// which CheckChange and Checker share. It adds to t the sections of what
// it accepts.
type judge struct {
	hash    crdt.Hash
	actor   string // the change's author actor and sequence number
	seq     uint64
	chartID string
	t       *Touched
	kindOf  func(entry string) (string, bool) // kinds of the entries before the change
	known   func(id string) *write            // the readable writes before the change
	kinds   map[string]string                 // kinds the change's writes give entries
}

func newJudge(ch crdt.Change, chartID string, t *Touched, kindOf func(string) (string, bool), known func(string) *write) *judge {
	return &judge{hash: ch.Hash, actor: ch.Actor, seq: ch.Seq, chartID: chartID, t: t, kindOf: kindOf, known: known, kinds: map[string]string{}}
}

// kind returns the kind of an entry, counting the writes judged so far.
func (j *judge) kind(entry string) (string, bool) {
	if k, ok := j.kinds[entry]; ok {
		return k, true
	}
	return j.kindOf(entry)
}

// write judges a write the change adds under ID id, whose JSON is js,
// and returns it parsed (with its ID).
func (j *judge) write(id, js string) (*write, error) {
	if !boundKey(id, j.actor, j.seq) {
		return nil, invalid("w", "change %s (%s's %d) adds a write under %q, another change's ID", j.hash, j.actor, j.seq, id)
	}
	w, err := parseWrite(js)
	if err != nil || !knownKind(w.Kind) || w.Entry == "" || w.Field == "" {
		return nil, invalid("w", "change %s adds an unreadable write %s", j.hash, id)
	}
	w.ID = id
	if err := checkField(w.Kind, w.Field, w.Value); err != nil {
		return nil, fmt.Errorf("change %s: %s %s: %w", j.hash, w.Kind, w.Entry, err)
	}
	if w.author() != j.t.Author {
		return nil, invalid("author", "change %s by %s adds a write attributed to %s", j.hash, j.t.Author, w.author())
	}
	if k, ok := j.kind(w.Entry); ok && k != w.Kind {
		return nil, invalid("w", "change %s writes %s %s, which is a %s", j.hash, w.Kind, w.Entry, k)
	}
	if (w.Kind == KindPatient) != (w.Entry == j.chartID) {
		return nil, invalid("w", "change %s writes %s %s, which is not the chart's patient", j.hash, w.Kind, w.Entry)
	}
	j.kinds[w.Entry] = w.Kind
	for _, sup := range w.Supersedes {
		if o := j.known(sup); o == nil || o.Entry != w.Entry || o.Field != w.Field {
			return nil, invalid("w", "change %s: write %s of %s supersedes %s, which is not an earlier value of that field", j.hash, id, w.Field, sup)
		}
	}
	s, _ := sectionOf(w.Kind, w.Field)
	j.t.Sections = addSection(j.t.Sections, s)
	return w, nil
}

// note judges a change to the note of entry id (its text differs after
// the change).
func (j *judge) note(id string) error {
	s, ok := j.noteSection(id)
	if !ok {
		return invalid("notes", "change %s writes a note for %s, which is not an encounter", j.hash, id)
	}
	j.t.Sections = addSection(j.t.Sections, s)
	return nil
}

// noteSection returns the section of the note of entry id, counting the
// writes judged so far; false if the entry is none whose kind carries a
// note.
func (j *judge) noteSection(id string) (Section, bool) {
	k, _ := j.kind(id)
	return noteSection(k)
}

// noteAt returns what CheckChange compares of notes/key: the text, a
// string (such as the probe), or a marker no text equals.
func noteAt(d *crdt.Doc, key string) string {
	s, err := d.Text(pathNotes, key)
	if err != nil {
		// A string (the probe) or anything else; only a text is a note.
		if s, err = d.String(pathNotes, key); err != nil {
			s = notAString
		}
	}
	return s
}

// layout is what CheckChange compares of a document before and after a
// change: the root's keys and the contents of the chart's three
// containers. A value that is not a string (or, for notes, not text) is
// recorded as a marker no string can equal.
type layout struct {
	root            []string
	chart, w, notes map[string]string
}

const notAString = "\x00not a string"

func snapshot(d *crdt.Doc) (*layout, error) {
	l := &layout{}
	var err error
	if l.root, err = d.Keys(); err != nil {
		return nil, err
	}
	slices.Sort(l.root)
	if l.chart, err = stringsAt(d, pathChart); err != nil {
		return nil, err
	}
	if l.w, err = stringsAt(d, pathW); err != nil {
		return nil, err
	}
	keys, err := d.Keys(pathNotes...)
	if errors.Is(err, crdt.ErrNotFound) {
		keys, err = nil, nil
	}
	if err != nil {
		return nil, err
	}
	l.notes = make(map[string]string, len(keys))
	for _, k := range keys {
		l.notes[k] = noteAt(d, k)
	}
	return l, nil
}

// stringsAt returns the map at path with non-string values as notAString;
// a missing map is empty.
func stringsAt(d *crdt.Doc, path []string) (map[string]string, error) {
	keys, err := d.Keys(path...)
	if errors.Is(err, crdt.ErrNotFound) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, err
	}
	strs, err := d.Strings(path...)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(keys))
	for _, k := range keys {
		if s, ok := strs[k]; ok {
			out[k] = s
		} else {
			out[k] = notAString
		}
	}
	return out, nil
}

// sameLayout checks that a change left the chart's layout alone: it adds
// no root key, keeps every container (the probe is still in each), does
// not touch the chart's identity, and removes no write or note. The first
// change of a chart creates the layout instead.
func (b *layout) sameLayout(a *layout, registers bool, probe string) error {
	if registers {
		for _, k := range a.root {
			if !slices.Contains([]string{"chart", "w", "notes"}, k) {
				return invalid("change", "it creates %q, which is not part of a chart", k)
			}
		}
		return nil
	}
	if !slices.Equal(a.root, b.root) {
		return invalid("change", "it changes the document's root (%q to %q)", b.root, a.root)
	}
	for name, m := range map[string]map[string]string{"chart": a.chart, "w": a.w, "notes": a.notes} {
		if m[probe] != probe {
			return invalid(name, "it replaces the chart's %s container", name)
		}
	}
	if len(a.chart) != len(b.chart) {
		return invalid("chart", "it changes the chart's identity")
	}
	for k, v := range b.chart {
		if a.chart[k] != v {
			return invalid("chart", "it changes the chart's identity")
		}
	}
	for k := range b.w {
		if _, ok := a.w[k]; !ok {
			return invalid("w", "it removes the stored write %s", k)
		}
	}
	for k := range b.notes {
		if _, ok := a.notes[k]; !ok {
			return invalid("notes", "it removes the note of %s", k)
		}
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
