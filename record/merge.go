package record

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/chartsync/chartsync/crdt"
)

// StatusUnmerged is the status of a merge entry whose chart was unmerged
// (or whose merge was settled into another chart).
const StatusUnmerged = "unmerged"

// SectionMerges is which charts a chart absorbed and where it forwards:
// merging duplicate charts and unmerging them.
const SectionMerges Section = "merges"

// AlertMergeConflict: charts merged concurrently in ways that disagree (a
// chart merged into two charts at once, two charts merged into each
// other, a merge whose other half has not arrived). Every replica shows
// the same survivor; a clinician settles it with a new merge or unmerge.
const AlertMergeConflict = "merge-conflict"

// fieldMergedInto is the patient field holding a chart's forwarding
// pointer: the ID of the chart it was merged into, or "" (never merged,
// or unmerged).
const fieldMergedInto = "merged_into"

// MaxMergeChain bounds how many forwarding pointers Survivor follows, and
// how many charts a surviving chart's group gathers.
const MaxMergeChain = 64

// Errors of merges, matched with errors.Is.
var (
	// ErrMergeIntoItself: a chart cannot be merged into itself.
	ErrMergeIntoItself = errors.New("record: a chart cannot be merged into itself")
	// ErrForwarded: the chart named has been merged into another chart
	// (it is a forwarding record); merge into the chart it forwards to,
	// or unmerge it first.
	ErrForwarded = errors.New("record: the chart has been merged into another chart")
	// ErrNotMerged: the chart is not merged into any chart.
	ErrNotMerged = errors.New("record: the chart is not merged into another chart")
)

// MergeInto makes the chart a forwarding record pointing to the chart
// Survivor: the write of one field (the patient's merged_into) like any
// other, so concurrent merges into two charts are an ordinary conflict.
// ShareWith lists clinics the chart is then shared with (a referral each,
// unless it is already in the chart's scope): the survivor's, so that
// the survivor's clinics hold the entries they are shown. Use
// replica.Merge, which writes both charts; this operation alone leaves
// the survivor not knowing it absorbed the chart.
type MergeInto struct {
	Survivor  string
	Reason    string
	ShareWith []string
}

func (o MergeInto) plan(s *state, at time.Time) (*plan, error) {
	if !reID.MatchString(o.Survivor) {
		return nil, invalid("survivor", "%q is not a chart ID", o.Survivor)
	}
	if o.Survivor == s.chartID {
		return nil, fmt.Errorf("merge chart %s: %w", s.chartID, ErrMergeIntoItself)
	}
	if f := s.forwarding(); len(f.Values) == 1 && f.Survivor == o.Survivor {
		return nil, fmt.Errorf("merge chart %s into %s: it is merged into it already: %w", s.chartID, o.Survivor, ErrTransition)
	}
	p := &plan{op: "merge-into", entry: s.chartID}
	p.put(KindPatient, s.chartID, fieldMergedInto, o.Survivor)
	reason := "merged into chart " + o.Survivor
	if err := p.share(s, o.ShareWith, reason); err != nil {
		return nil, err
	}
	p.summary = "Merged into chart " + o.Survivor
	if o.Reason != "" {
		p.summary += ": " + o.Reason
	}
	return p, nil
}

// Unmerge makes a forwarding record a chart of its own again: its
// merged_into is written empty, having seen every value (so it also
// settles concurrent merges into two charts).
type Unmerge struct {
	Reason string
}

func (o Unmerge) plan(s *state, at time.Time) (*plan, error) {
	f := s.forwarding()
	if len(f.Values) == 0 || (len(f.Values) == 1 && f.Survivor == "") {
		return nil, fmt.Errorf("unmerge chart %s: %w", s.chartID, ErrNotMerged)
	}
	p := &plan{op: "unmerge", entry: s.chartID}
	p.put(KindPatient, s.chartID, fieldMergedInto, "")
	p.summary = "Unmerged from chart " + strings.Join(slices.DeleteFunc(slices.Clone(f.Values), func(v string) bool { return v == "" }), " and ")
	if o.Reason != "" {
		p.summary += ": " + o.Reason
	}
	return p, nil
}

// Absorb records, in the surviving chart, that the chart ChartID was
// merged into it: a merge entry (or the earlier one for that chart, made
// active again). ShareWith lists clinics the survivor is then shared
// with (a referral each, unless already in its scope): the absorbed
// chart's, so that a merge of charts of two clinics makes the survivor
// visible to both. Use replica.Merge.
type Absorb struct {
	ChartID   string
	Reason    string
	ShareWith []string
}

func (o Absorb) plan(s *state, at time.Time) (*plan, error) {
	if !reID.MatchString(o.ChartID) {
		return nil, invalid("chart_id", "%q is not a chart ID", o.ChartID)
	}
	if o.ChartID == s.chartID {
		return nil, fmt.Errorf("absorb chart %s: %w", s.chartID, ErrMergeIntoItself)
	}
	e := s.mergeEntry(o.ChartID)
	p := &plan{op: "absorb"}
	switch {
	case e == nil:
		id := newID()
		p.entry = id
		p.put(KindMerge, id, "chart", o.ChartID)
		if o.Reason != "" {
			p.put(KindMerge, id, "reason", o.Reason)
		}
		p.put(KindMerge, id, "status", StatusActive)
	case e.value("status") != StatusActive || e.fields["status"].inConflict():
		p.entry = e.id
		p.put(KindMerge, e.id, "status", StatusActive)
		if o.Reason != "" {
			p.put(KindMerge, e.id, "status_reason", o.Reason)
		}
	default:
		p.entry = e.id
	}
	if err := p.share(s, o.ShareWith, "merged with chart "+o.ChartID); err != nil {
		return nil, err
	}
	if len(p.sets) == 0 {
		return nil, fmt.Errorf("absorb chart %s: it is absorbed already: %w", o.ChartID, ErrTransition)
	}
	p.summary = "Absorbed chart " + o.ChartID
	if o.Reason != "" {
		p.summary += ": " + o.Reason
	}
	return p, nil
}

// Release records, in a chart that absorbed the chart ChartID, that it no
// longer does (an unmerge, or a concurrent merge settled into another
// chart): its merge entry's status becomes unmerged.
type Release struct {
	ChartID string
	Reason  string
}

func (o Release) plan(s *state, at time.Time) (*plan, error) {
	e := s.mergeEntry(o.ChartID)
	if e == nil {
		return nil, fmt.Errorf("merge of chart %q: %w", o.ChartID, ErrNotFound)
	}
	if e.value("status") != StatusActive {
		return nil, transition("release merged chart", e.value("status"))
	}
	p := &plan{op: "release", entry: e.id}
	p.put(KindMerge, e.id, "status", StatusUnmerged)
	if o.Reason != "" {
		p.put(KindMerge, e.id, "status_reason", o.Reason)
	}
	p.summary = "Released chart " + o.ChartID
	if o.Reason != "" {
		p.summary += ": " + o.Reason
	}
	return p, nil
}

// share adds a referral to each of clinics not in the chart's scope.
func (p *plan) share(s *state, clinics []string, reason string) error {
	scope := s.scope()
	done := map[string]bool{}
	for _, c := range clinics {
		c = strings.TrimSpace(c)
		if c == "" || slices.Contains(scope, c) || done[c] {
			continue
		}
		done[c] = true
		id := newID()
		p.put(KindReferral, id, "clinic", c)
		p.put(KindReferral, id, "reason", reason)
		p.put(KindReferral, id, "status", StatusActive)
	}
	return nil
}

// mergeEntry returns the merge entry naming chart id (the oldest, if
// concurrent merges made two), or nil.
func (s *state) mergeEntry(id string) *entry {
	for _, e := range s.entriesOf(KindMerge) {
		if e.value("chart") == id {
			return e
		}
	}
	return nil
}

// Forwarding is where a chart forwards to.
type Forwarding struct {
	// Survivor is the chart this one was merged into, as shown (the
	// latest merge when concurrent merges disagree); "" if none.
	Survivor string `json:"survivor,omitempty"`
	// Values are the competing values of the pointer, sorted: more than
	// one while concurrent merges (or a merge and an unmerge) are not
	// settled. "" stands for "not merged".
	Values []string `json:"values,omitempty"`
}

// InConflict reports whether concurrent merges or unmerges left the
// pointer with several values.
func (f Forwarding) InConflict() bool { return len(f.Values) > 1 }

func (s *state) forwarding() Forwarding {
	e := s.patient()
	f := Forwarding{Survivor: e.value(fieldMergedInto)}
	if r := e.fields[fieldMergedInto]; r != nil {
		for _, w := range r.current {
			f.Values = append(f.Values, w.Value)
		}
	}
	slices.Sort(f.Values)
	f.Values = slices.Compact(f.Values)
	return f
}

// Forwarding returns where the chart forwards to: the chart it was merged
// into, if any.
func (c *Chart) Forwarding() (Forwarding, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, err := c.state()
	if err != nil {
		return Forwarding{}, err
	}
	return s.forwarding(), nil
}

// MergedCharts returns the IDs of every chart a merge entry of this chart
// names, whatever its status, sorted: the charts that may be merged into
// it. Which of them are is decided by their own forwarding pointers.
func (c *Chart) MergedCharts() ([]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, err := c.state()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range s.entriesOf(KindMerge) {
		if id := e.value("chart"); id != "" {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// Merge is a chart merged into this one (a merge entry).
type Merge struct {
	ID string `json:"id"`
	// ChartID is the chart merged in.
	ChartID      string `json:"chart_id"`
	Reason       string `json:"reason,omitempty"`
	Status       string `json:"status"`
	StatusReason string `json:"status_reason,omitempty"`
	// Absorbed, in a view of a merged group (Combine), is true when the
	// chart's forwarding pointer resolves to this chart, so its entries
	// are shown here.
	Absorbed bool `json:"absorbed,omitempty"`
	Recorded
}

// AbsorbedChart is a chart whose entries a combined view shows.
type AbsorbedChart struct {
	ChartID string     `json:"chart_id"`
	Heads   crdt.Heads `json:"heads"`
	Patient Patient    `json:"patient"`
}

// Survivor follows forwarding pointers from the chart id and returns the
// chart that survives: the first that forwards nowhere. forward gives a
// chart's pointer (its Forwarding().Survivor) and false for a chart not
// held, where the walk stops at the last chart held. Charts merged into
// each other concurrently form a cycle; its survivor is the chart with
// the smallest ID in it, and cycle lists the cycle's charts, sorted (nil
// when there is none). At most MaxMergeChain pointers are followed. The
// answer depends only on the pointers, so every replica holding the same
// charts finds the same survivor.
func Survivor(id string, forward func(id string) (string, bool)) (survivor string, cycle []string) {
	path := []string{id}
	cur := id
	for range MaxMergeChain {
		next, ok := forward(cur)
		if !ok && cur != id {
			return path[len(path)-2], nil
		}
		if next == "" || !ok {
			return cur, nil
		}
		if i := slices.Index(path, next); i >= 0 {
			cycle = slices.Clone(path[i:])
			slices.Sort(cycle)
			return cycle[0], cycle
		}
		path = append(path, next)
		cur = next
	}
	return cur, nil
}

// Combine returns the view of a surviving chart together with the charts
// merged into it (those whose pointers resolve to it, see Survivor): its
// own view with every absorbed chart's entries, entries entered in error,
// conflicts and history (each history entry names its chart) added, lists
// kept oldest first, and alerts worked out over them all (an allergy
// recorded in one chart against a prescription in the other). Patient,
// referrals and heads are the survivor's; Absorbed lists the absorbed
// charts with their heads, and each of the survivor's Merges says whether
// its chart is absorbed. Merge conflicts raise a merge-conflict alert: an
// absorbed chart (or the survivor) whose pointer is in conflict, a
// survivor that forwards itself (charts merged into each other at once),
// and an active merge entry whose chart is not absorbed. Charts are read
// under their locks, taken in order of ID.
func Combine(survivor *Chart, absorbed []*Chart) (View, error) {
	absorbed = slices.Clone(absorbed)
	absorbed = slices.DeleteFunc(absorbed, func(c *Chart) bool { return c == nil || c.id == survivor.id })
	slices.SortFunc(absorbed, func(a, b *Chart) int { return strings.Compare(a.id, b.id) })
	absorbed = slices.CompactFunc(absorbed, func(a, b *Chart) bool { return a.id == b.id })
	all := append([]*Chart{survivor}, absorbed...)
	locked := slices.Clone(all)
	slices.SortFunc(locked, func(a, b *Chart) int { return strings.Compare(a.id, b.id) })
	for _, c := range locked {
		c.mu.Lock()
		defer c.mu.Unlock()
	}
	states := make([]*state, len(all))
	views := make([]View, len(all))
	for i, c := range all {
		s, err := c.state()
		if err != nil {
			return View{}, err
		}
		if views[i], err = buildView(c.doc, s, c.heads); err != nil {
			return View{}, fmt.Errorf("view chart %s: %w", c.id, err)
		}
		states[i] = s
	}
	v := views[0]
	combined := &state{chartID: survivor.id, entries: map[string]*entry{}}
	for _, s := range states {
		for id, e := range s.entries {
			if _, dup := combined.entries[id]; !dup {
				combined.entries[id] = e
			}
		}
	}
	v.Absorbed = []AbsorbedChart{}
	for i, av := range views[1:] {
		v.Absorbed = append(v.Absorbed, AbsorbedChart{ChartID: av.ChartID, Heads: av.Heads, Patient: av.Patient})
		for _, k := range entryKinds {
			if k.clinical {
				k.list.appendFrom(&v, &av)
			}
		}
		v.EnteredInError = append(v.EnteredInError, av.EnteredInError...)
		v.Conflicts = append(v.Conflicts, av.Conflicts...)
		v.Unreadable += av.Unreadable
		for _, h := range av.History {
			h.Chart = absorbed[i].id
			v.History = append(v.History, h)
		}
	}
	for _, k := range entryKinds {
		if k.clinical {
			k.list.sort(&v)
		}
	}
	slices.SortStableFunc(v.History, func(a, b HistoryEntry) int {
		return cmp.Or(a.At.Compare(b.At), strings.Compare(a.Change.String(), b.Change.String()))
	})
	nka := combined.patient().value("nka") == "true"
	v.NoKnownAllergies = nka && !slices.ContainsFunc(v.Allergies, func(a Allergy) bool { return a.Status == StatusActive })
	v.Alerts = alerts(&v, combined)

	in := map[string]bool{survivor.id: true}
	for _, c := range absorbed {
		in[c.id] = true
	}
	for i := range v.Merges {
		v.Merges[i].Absorbed = in[v.Merges[i].ChartID]
	}
	v.Alerts = append(v.Alerts, mergeAlerts(v, states)...)
	slices.SortFunc(v.Alerts, func(a, b Alert) int {
		return cmp.Or(strings.Compare(a.Kind, b.Kind), slices.Compare(a.Entries, b.Entries))
	})
	return v, nil
}

// mergeAlerts are the merge conflicts a combined view v of the charts of
// states (the survivor's first) shows.
func mergeAlerts(v View, states []*state) []Alert {
	var out []Alert
	for i, s := range states {
		f := s.forwarding()
		switch {
		case f.InConflict():
			out = append(out, Alert{Kind: AlertMergeConflict, Severity: "warning", Entries: []string{s.chartID},
				Message: fmt.Sprintf("Chart %s was merged into several charts at once (%s); its entries are shown with chart %s. Merge it again into the right chart, or unmerge it.",
					s.chartID, strings.Join(f.Values, ", "), v.ChartID)})
		case i == 0 && f.Survivor != "":
			out = append(out, Alert{Kind: AlertMergeConflict, Severity: "warning", Entries: []string{s.chartID},
				Message: fmt.Sprintf("This chart was merged into chart %s while charts were merged into it: it was kept as the survivor. Merge again to choose the survivor, or unmerge.",
					f.Survivor)})
		}
	}
	for _, m := range v.Merges {
		if m.Status == StatusActive && !m.Absorbed {
			out = append(out, Alert{Kind: AlertMergeConflict, Severity: "warning", Entries: []string{m.ID},
				Message: fmt.Sprintf("Chart %s was merged into this chart, but its entries are not shown here: it was merged elsewhere at the same time, or that half of the merge has not arrived.",
					m.ChartID)})
		}
	}
	return out
}
