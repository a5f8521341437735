package fhir

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/record"
)

// Target is where Import writes: a set of charts, changed only through
// record's operations (so that validation and permissions apply).
// *replica.Replica satisfies it; Memory is an in-memory one.
type Target interface {
	// Register creates a chart and returns its ID.
	Register(ctx context.Context, by record.Author, reg record.Register) (string, error)
	// Edit applies one operation to a chart.
	Edit(ctx context.Context, chartID string, by record.Author, op record.Op) (record.Result, error)
	// Chart returns a chart's view.
	Chart(ctx context.Context, chartID string) (record.View, error)
}

// Result is what Import did.
type Result struct {
	ChartID string `json:"chart_id"`
	// Created is true when the import registered a new chart.
	Created bool `json:"created"`
	// Changes counts the chart's changes the import made: 0 when the
	// chart already held everything the bundle says.
	Changes int `json:"changes"`
	// Added counts new entries, Updated entries changed (status, dose,
	// value, demographics).
	Added   int `json:"added"`
	Updated int `json:"updated"`
	// Unknown lists the resources ("Type/id") of types this mapping
	// does not import: they were not written anywhere.
	Unknown []string `json:"unknown,omitempty"`
	// Skipped lists resources read but not written, or written in part,
	// and why.
	Skipped []Skipped `json:"skipped,omitempty"`
}

// ErrNoPatient is returned (wrapped in a *MalformedError) when a bundle
// without a Patient would need to create a chart.
var ErrNoPatient = errors.New("fhir: the bundle has no Patient")

// step is one write: its operation, built when the entries it refers to
// exist (created maps a step's index to the entry it created).
type step struct {
	build func(created map[int]string) record.Op
	kind  stepKind
	// after is the step whose entry a follow step changes.
	after int
}

type stepKind int

const (
	stepAdd    stepKind = iota // adds an entry
	stepFollow                 // sets the status of the entry step after added
	stepUpdate                 // changes an entry the chart holds
)

// Import writes a decoded bundle into chartID on t, as by; chartID ""
// registers a new chart from the bundle's Patient, at homeClinic, or at
// the clinic the Patient names (its managing organization) when
// homeClinic is empty. Entries are matched to the
// chart's by their external IDs (an entry imported before carries the
// resource's identifier, or "Type/id" in SystemResource) or by entry ID
// (a bundle exported from this chart); a matched entry is updated only
// where the bundle differs and record has an operation for it, so
// importing the same bundle again makes no change at all.
//
// Before writing anything, Import tries every addition on a scratch
// chart as by: an operation record refuses (ErrInvalid, ErrForbidden
// for a role that may not write a section) fails the import with the
// chart unchanged. A write refused by t after that (a status change the
// scratch chart could not try, a storage error) leaves the writes before
// it in place, and the error says how many were made; importing again
// completes it.
func Import(ctx context.Context, t Target, chartID string, by record.Author, homeClinic string, b *Bundle) (Result, error) {
	res := Result{ChartID: chartID, Unknown: slices.Clone(b.unknown), Skipped: slices.Clone(b.skipped)}
	var v record.View
	if chartID != "" {
		var err error
		if v, err = t.Chart(ctx, chartID); err != nil {
			return res, fmt.Errorf("import into chart %s: %w", chartID, err)
		}
	} else if !b.HasPatient {
		return res, &MalformedError{Err: ErrNoPatient, Reason: "a new chart needs one"}
	}
	reg := record.Register(b.Patient)
	if homeClinic != "" && chartID == "" {
		if reg.HomeClinic != "" && reg.HomeClinic != homeClinic {
			res.Skipped = append(res.Skipped, Skipped{Resource: "Patient/" + b.PatientID,
				Reason: "its managing organization " + reg.HomeClinic + " is not the new chart's home clinic " + homeClinic})
		}
		reg.HomeClinic = homeClinic
	}
	var activeIDs []record.Identifier
	for _, id := range reg.Identifiers {
		if id.Status != record.StatusInactive {
			activeIDs = append(activeIDs, record.Identifier{System: id.System, Value: id.Value})
		}
	}
	if id, ok := b.patientResourceID(); ok && !slices.Contains(activeIDs, id) {
		// The chart remembers the Patient it came from, as its entries
		// do, so that the same bundle finds it again.
		activeIDs = append(activeIDs, id)
	}
	reg.Identifiers = activeIDs
	steps := planSteps(&res, b, v, chartID == "")
	if err := dryRun(by, reg, v, chartID == "", steps); err != nil {
		return res, fmt.Errorf("import: %w", err)
	}
	if chartID == "" {
		id, err := t.Register(ctx, by, reg)
		if err != nil {
			return res, fmt.Errorf("import: register the patient: %w", err)
		}
		res.ChartID, res.Created, res.Changes = id, true, 1
		chartID = id
	}
	created := map[int]string{}
	for i, s := range steps {
		op := s.build(created)
		if op == nil {
			continue
		}
		r, err := t.Edit(ctx, chartID, by, op)
		if err != nil {
			return res, fmt.Errorf("import into chart %s, after %d changes: %T: %w", chartID, res.Changes, op, err)
		}
		created[i] = r.EntryID
		res.Changes++
		switch s.kind {
		case stepAdd:
			res.Added++
		case stepUpdate:
			res.Updated++
		}
	}
	return res, nil
}

// scratchAuthor registers the scratch chart a dry run tries additions on.
var scratchAuthor = record.Author{UserID: "fhir-import-check", Role: record.RoleClinician, Device: "scratch"}

// dryRun tries the steps that add entries on a scratch chart.
func dryRun(by record.Author, reg record.Register, v record.View, create bool, steps []step) error {
	at := time.Now().UTC()
	r := reg
	if !create {
		r = record.Register(v.Patient)
		r.Identifiers = nil
	}
	scratchBy := scratchAuthor
	if create {
		scratchBy = by
	}
	chart, _, err := record.New(uuid.NewString(), crdt.NewActorID(), scratchBy, at, r)
	if err != nil {
		return fmt.Errorf("register the patient: %w", err)
	}
	defer chart.Doc().Close()
	created := map[int]string{}
	for i, s := range steps {
		if s.kind == stepUpdate || (s.kind == stepFollow && created[s.after] == "") {
			continue // changes an entry the scratch chart does not hold
		}
		op := s.build(created)
		if op == nil {
			continue
		}
		res, err := chart.Do(by, at, op)
		if err != nil {
			return fmt.Errorf("%T: %w", op, err)
		}
		created[i] = res.EntryID
	}
	return nil
}

// Memory is an in-memory Target over record charts, for tests and for
// programs that hold their charts themselves. The zero value is ready;
// it is safe for concurrent use.
type Memory struct {
	// Now gives the time of each write; time.Now when nil.
	Now func() time.Time
	// Actor is the Automerge actor of new charts; a new one when empty.
	Actor string

	mu     sync.Mutex
	charts map[string]*record.Chart
}

var _ Target = (*Memory)(nil)

func (m *Memory) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

// Register creates a chart.
func (m *Memory) Register(_ context.Context, by record.Author, reg record.Register) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.Actor == "" {
		m.Actor = crdt.NewActorID()
	}
	c, _, err := record.New(uuid.NewString(), m.Actor, by, m.now(), reg)
	if err != nil {
		return "", err
	}
	m.add(c)
	return c.ID(), nil
}

// Add puts a chart in m.
func (m *Memory) Add(c *record.Chart) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.add(c)
}

func (m *Memory) add(c *record.Chart) {
	if m.charts == nil {
		m.charts = map[string]*record.Chart{}
	}
	m.charts[c.ID()] = c
}

// Get returns a chart of m, or nil.
func (m *Memory) Get(id string) *record.Chart {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.charts[id]
}

// Edit applies an operation to a chart.
func (m *Memory) Edit(_ context.Context, id string, by record.Author, op record.Op) (record.Result, error) {
	c := m.Get(id)
	if c == nil {
		return record.Result{}, fmt.Errorf("chart %s: %w", id, record.ErrNotFound)
	}
	m.mu.Lock()
	at := m.now()
	m.mu.Unlock()
	return c.Do(by, at, op)
}

// Chart returns a chart's view.
func (m *Memory) Chart(_ context.Context, id string) (record.View, error) {
	c := m.Get(id)
	if c == nil {
		return record.View{}, fmt.Errorf("chart %s: %w", id, record.ErrNotFound)
	}
	return c.View()
}
