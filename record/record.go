package record

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/chartsync/chartsync/crdt"
)

// ErrNotAChart is returned by Open for a document that is not a chart (or
// whose registration has not arrived yet).
var ErrNotAChart = errors.New("record: document is not a chart")

// Chart is one patient's chart over a crdt.Doc. It is safe for concurrent
// use. Changes applied to the Doc directly (by a sync engine) are seen by
// the next call.
type Chart struct {
	mu  sync.Mutex
	id  string
	doc *crdt.Doc

	// parsed state, valid while the document's heads equal heads
	st    *state
	heads crdt.Heads
}

// Result is what a write made: the change to store and send, and the ID of
// the entry it created or changed.
type Result struct {
	Change  crdt.Change
	EntryID string
	// Clock, if not nil, is a *ClockError: the device's clock is
	// obviously wrong, and the checks that depend on today's date used
	// another reference. The change was made, with the clock's time; an
	// app shows the error so that someone sets the clock.
	Clock error
}

// message is the JSON commit message of every change: who did what.
type message struct {
	Op      string `json:"op"`
	User    string `json:"user"`
	Name    string `json:"name,omitempty"`
	Role    Role   `json:"role"`
	Device  string `json:"device,omitempty"`
	Entry   string `json:"entry"`
	Summary string `json:"summary"`
	At      int64  `json:"at"`
}

// New creates the chart of a newly registered patient in a new document
// that writes as actor (see crdt.NewActorID). chartID must be a UUID.
// Registering writes the demographics section: a role that may not change
// it gets ErrForbidden.
func New(chartID, actor string, by Author, at time.Time, reg Register) (*Chart, Result, error) {
	if !reID.MatchString(chartID) || isRosterID(chartID) {
		return nil, Result{}, invalid("chart_id", "%q is not a lower-case random UUID", chartID)
	}
	if err := by.Validate(); err != nil {
		return nil, Result{}, err
	}
	pl, err := reg.registerPlan(chartID, at)
	_, clock := today(at, time.Time{})
	if err != nil {
		return nil, Result{}, blameClock(err, clock)
	}
	if err := pl.check(); err != nil {
		return nil, Result{}, err
	}
	if err := authorize(by.Role, pl.sections()); err != nil {
		return nil, Result{}, err
	}
	doc, err := crdt.New(actor)
	if err != nil {
		return nil, Result{}, fmt.Errorf("new chart: %w", err)
	}
	ch, err := doc.Edit(pl.message(by, at), at, func(tx *crdt.Tx) error {
		for _, k := range []string{"chart", "w", "notes"} {
			if err := tx.PutMap(nil, k); err != nil {
				return err
			}
		}
		if err := tx.Put(pathChart, "id", chartID); err != nil {
			return err
		}
		if err := tx.Put(pathChart, "schema", schemaVersion); err != nil {
			return err
		}
		return pl.write(tx, (&state{chartID: chartID, entries: map[string]*entry{}}), by, at)
	})
	if err != nil {
		return nil, Result{}, fmt.Errorf("new chart: %w", err)
	}
	res := Result{Change: ch, EntryID: chartID}
	if clock != nil {
		res.Clock = clock
	}
	return &Chart{id: chartID, doc: doc}, res, nil
}

// Open reads a chart from a document, which the Chart then owns. It gives
// ErrNotAChart if the document holds no chart.
func Open(doc *crdt.Doc) (*Chart, error) {
	id, err := doc.String(pathChart, "id")
	if err != nil {
		return nil, fmt.Errorf("open chart: %v: %w", err, ErrNotAChart)
	}
	if v, err := doc.String(pathChart, "schema"); err != nil || v != schemaVersion {
		return nil, fmt.Errorf("open chart %s: schema %q is not %s: %w", id, v, schemaVersion, ErrNotAChart)
	}
	if !reID.MatchString(id) || isRosterID(id) {
		return nil, fmt.Errorf("open chart: id %q is not a random UUID: %w", id, ErrNotAChart)
	}
	for _, p := range [][]string{pathW, pathNotes} {
		if err := doc.IsMap(p...); err != nil {
			return nil, fmt.Errorf("open chart %s: %v: %w", id, err, ErrNotAChart)
		}
	}
	return &Chart{id: id, doc: doc}, nil
}

// ID returns the chart's ID.
func (c *Chart) ID() string { return c.id }

// Doc returns the document the chart lives in.
func (c *Chart) Doc() *crdt.Doc { return c.doc }

// state returns the parsed state for the document's current heads.
// c.mu must be held.
func (c *Chart) state() (*state, error) {
	h := c.doc.Heads()
	if c.st != nil && c.heads.Equal(h) {
		return c.st, nil
	}
	s, err := readState(c.doc)
	if err != nil {
		return nil, fmt.Errorf("read chart %s: %w", c.id, err)
	}
	if after := c.doc.Heads(); !after.Equal(h) {
		// A change was applied while reading: read again, so the state
		// is never tagged with heads older than its content.
		h = after
		if s, err = readState(c.doc); err != nil {
			return nil, fmt.Errorf("read chart %s: %w", c.id, err)
		}
		if !c.doc.Heads().Equal(h) {
			return nil, fmt.Errorf("read chart %s: the document keeps changing while it is read", c.id)
		}
	}
	if s.chartID != c.id {
		// Another chart's first change was merged in and its containers
		// won: showing them, or writing into them, would put one
		// patient's data under another's chart.
		return nil, fmt.Errorf("read chart %s: the document now shows chart %q: %w", c.id, s.chartID, ErrNotAChart)
	}
	c.st, c.heads = s, h
	return s, nil
}

// Do validates op against the chart and, if it is valid, applies it as one
// change made by by at time at. On error the chart is unchanged: errors
// match ErrInvalid (a *ValidationError), ErrNotFound, ErrTransition or,
// when the author's role may not change a section the operation writes
// (see Permitted), ErrForbidden (a *ForbiddenError).
func (c *Chart) Do(by Author, at time.Time, op Op) (Result, error) {
	if v := reflect.ValueOf(op); op == nil || (v.Kind() == reflect.Pointer && v.IsNil()) {
		return Result{}, invalid("op", "no operation")
	}
	if err := by.Validate(); err != nil {
		return Result{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s, err := c.state()
	if err != nil {
		return Result{}, err
	}
	pl, err := op.plan(s, at)
	_, clock := s.today(at)
	if err != nil {
		return Result{}, blameClock(err, clock)
	}
	if err := pl.check(); err != nil {
		return Result{}, err
	}
	if err := authorize(by.Role, pl.sections()); err != nil {
		return Result{}, err
	}
	if err := c.noteChanges(pl); err != nil {
		return Result{}, err
	}
	ch, err := c.doc.Edit(pl.message(by, at), at, func(tx *crdt.Tx) error {
		pl.made = pl.made[:0]
		return pl.write(tx, s, by, at)
	})
	if err != nil {
		return Result{}, fmt.Errorf("%s: %w", pl.op, err)
	}
	c.advance(s, ch, pl.made)
	res := Result{Change: ch, EntryID: pl.entry}
	if clock != nil {
		res.Clock = clock
	}
	return res, nil
}

// Preview returns the view the chart would have after op, without
// changing it: the alerts op would raise are in the view's Alerts (compare
// with View's). The operation is checked as Do checks it (validation,
// the author's role) and made on a copy of the chart, which is then let
// go: nothing is stored, and the chart's own state is untouched. A
// clinical app shows the alerts before the clinician confirms.
func (c *Chart) Preview(by Author, at time.Time, op Op) (View, error) {
	f, err := c.doc.Fork(nil, crdt.NewActorID())
	if err != nil {
		return View{}, fmt.Errorf("preview on chart %s: %w", c.id, err)
	}
	defer f.Close()
	cp, err := Open(f)
	if err != nil {
		return View{}, err
	}
	if _, err := cp.Do(by, at, op); err != nil {
		return View{}, err
	}
	return cp.View()
}

// advance brings the cached state s over a change this chart just made on
// it, adding the change's writes as readState would read them, so that
// the next operation does not read the whole chart again (a chart's
// edits would otherwise cost in proportion to its history, each). When
// the change was not made on exactly the cached state, or a write cannot
// be added so, the cache is dropped and read again when next needed.
func (c *Chart) advance(s *state, ch crdt.Change, made []*write) {
	heads := c.doc.Heads()
	if c.st != s || len(heads) != 1 || heads[0] != ch.Hash {
		c.st = nil
		return
	}
	for _, h := range c.heads {
		if !slices.Contains(ch.Deps, h) {
			c.st = nil
			return
		}
	}
	if s.byID == nil {
		s.indexWrites()
	}
	for _, w := range made {
		if !s.add(w) {
			c.st = nil
			return
		}
	}
	c.heads = heads
}

func (pl *plan) message(by Author, at time.Time) string {
	b, _ := json.Marshal(message{
		Op: pl.op, User: by.UserID, Name: by.Name, Role: by.Role, Device: by.Device,
		Entry: pl.entry, Summary: pl.summary, At: at.UnixMilli(),
	})
	return string(b)
}

// write puts the plan's writes into the document.
func (pl *plan) write(tx *crdt.Tx, s *state, by Author, at time.Time) error {
	actor, seq, err := tx.Change()
	if err != nil {
		return err
	}
	for i, st := range pl.sets {
		w := write{
			Kind: st.kind, Entry: st.entry, Field: st.field, Value: st.value,
			Supersedes: s.supersedes(st.entry, st.field),
			User:       by.UserID, Name: by.Name, Role: by.Role, Device: by.Device, At: at.UnixMilli(),
		}
		b, err := json.Marshal(w)
		if err != nil {
			return err
		}
		id := writeKey(actor, seq, i)
		if err := tx.Put(pathW, id, string(b)); err != nil {
			return err
		}
		w.ID = id
		if len(w.Supersedes) == 0 {
			w.Supersedes = nil // as a write read back from the document
		}
		pl.made = append(pl.made, &w)
	}
	switch {
	case pl.newNote:
		return tx.PutText(pathNotes, pl.entry, pl.noteText)
	case pl.splice:
		err := tx.SpliceText(pathNotes, pl.entry, pl.splicePos, pl.spliceN, pl.noteText)
		if errors.Is(err, crdt.ErrOutOfRange) {
			return invalid("pos", "%v", err)
		}
		return err
	}
	return nil
}

// Patient returns the patient's current demographics.
func (c *Chart) Patient() (Patient, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, err := c.state()
	if err != nil {
		return Patient{}, err
	}
	return s.patientView(), nil
}

func (s *state) patientView() Patient {
	p := s.patient().demographics()
	p.Identifiers = s.identifiers()
	return p
}

// demographics returns the patient as a patient entry holds it: without
// the identifiers, which are entries of their own.
func (e *entry) demographics() Patient {
	var p Patient
	for _, f := range patientFields {
		*f.get(&p) = e.value(f.field)
	}
	if y, ok := parseFloat(e.value("birth_year")); ok {
		p.EstimatedBirthYear = int(y)
	}
	return p
}

// View returns the chart as it is now.
func (c *Chart) View() (View, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, err := c.state()
	if err != nil {
		return View{}, err
	}
	return buildView(c.doc, s, c.heads)
}

// ViewAt returns the chart as it was at heads (a version named by an
// earlier View's Heads or a history entry's change). Unknown heads give an
// error matching crdt.ErrNotFound.
func (c *Chart) ViewAt(heads crdt.Heads) (View, error) {
	if len(heads) == 0 {
		return View{}, invalid("heads", "a version is required")
	}
	f, err := c.doc.Fork(heads, crdt.NewActorID())
	if err != nil {
		return View{}, fmt.Errorf("view chart %s at %s: %w", c.id, heads, err)
	}
	defer f.Close() // read once into the View
	past, err := Open(f)
	if err != nil {
		return View{}, err
	}
	return past.View()
}

// noteChanges refuses a note edit that leaves the text as it was (such as
// replacing a character by the same one): it would change nothing a
// clinician can see, and a change must show what it touched.
func (c *Chart) noteChanges(pl *plan) error {
	if !pl.splice {
		return nil
	}
	text, err := c.doc.Text(pathNotes, pl.entry)
	if err != nil {
		return nil // the splice itself reports it
	}
	r := []rune(text)
	if pl.splicePos+pl.spliceN > len(r) {
		return nil // out of range: the splice reports it
	}
	after := string(r[:pl.splicePos]) + pl.noteText + string(r[pl.splicePos+pl.spliceN:])
	if after == text {
		return invalid("insert", "the edit leaves the note as it was")
	}
	return nil
}
