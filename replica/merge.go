package replica

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica/store"
)

// Errors of Merge and Unmerge (record's own, re-exported), matched with
// errors.Is.
var (
	// ErrMergeIntoItself: a chart cannot be merged into itself.
	ErrMergeIntoItself = record.ErrMergeIntoItself
	// ErrForwarded: a chart named is a forwarding record (merged into
	// another chart): merge into the chart it forwards to, or unmerge it
	// first.
	ErrForwarded = record.ErrForwarded
	// ErrNotMerged: Unmerge of a chart that is not merged.
	ErrNotMerged = record.ErrNotMerged
	// ErrAlreadyMerged: the chart is merged into that chart already.
	ErrAlreadyMerged = errors.New("replica: the chart is merged into that chart already")
	// ErrMergeOp: a merge operation given to Edit or Preview, which would
	// write one chart of the two a merge changes; use Merge or Unmerge.
	ErrMergeOp = errors.New("replica: merges are made with Merge and Unmerge, not Edit")
)

// forwardKeyPrefix marks, among a chart's search keys, the chart it
// forwards to (its index entry then tells Search where to go without
// loading the chart). identity's keys never start with it.
const forwardKeyPrefix = "f:"

// mergeStep is one operation of a merge on one of its charts.
type mergeStep struct {
	l  *loaded
	op record.Op
	// optional steps that find nothing to do (ErrTransition,
	// ErrNotFound) are left out.
	optional bool
}

// Merge merges the chart absorbed into the chart survivor, as one durable
// write of both charts' changes: absorbed becomes a forwarding record
// (record.MergeInto: its merged_into field names survivor) shared with the
// survivor's clinics, and survivor records that it absorbed it
// (record.Absorb: a merge entry) and is shared with the absorbed chart's
// clinics. From then on Chart, Edit and Search follow the pointer, and
// the survivor's view shows both charts' entries (see Chart).
//
// It is checked like any change: by's role must be permitted the merges
// section (a clinician or an administrator; record.ErrForbidden
// otherwise), and on a clinic's device both charts must be in its scope
// (ErrOutOfScope). A chart merged into itself gives ErrMergeIntoItself; a
// survivor that is itself a forwarding record, or an absorbed chart
// already merged elsewhere, gives ErrForwarded; a chart merged there
// already gives ErrAlreadyMerged. Merge also settles what concurrent
// merges left: a chart merged into several charts at once is merged again
// into survivor (and released by the others this replica holds), and
// charts merged into each other at once are settled with survivor kept
// (its own pointer cleared). A forked replica (Forked) refuses with its
// *ForkedError. Nothing is written on error.
func (r *Replica) Merge(ctx context.Context, absorbed, survivor string, by record.Author, reason string) error {
	for try := 0; ; try++ {
		err := r.merge(ctx, absorbed, survivor, by, reason)
		if errors.Is(err, store.ErrConflict) && try < sharedTries {
			continue
		}
		if err != nil {
			return fmt.Errorf("merge chart %s into %s: %w", absorbed, survivor, err)
		}
		return nil
	}
}

func (r *Replica) merge(ctx context.Context, absorbed, survivor string, by record.Author, reason string) error {
	if absorbed == survivor {
		return ErrMergeIntoItself
	}
	if err := by.Validate(); err != nil {
		return err
	}
	if !record.Permitted(by.Role, record.SectionMerges) {
		return &record.ForbiddenError{Role: by.Role, Section: record.SectionMerges}
	}
	unlock, err := r.lock()
	if err != nil {
		return err
	}
	defer unlock()
	if err := r.Forked(); err != nil {
		return err
	}
	lx, err := r.editable(ctx, absorbed)
	if err != nil {
		return fmt.Errorf("chart %s: %w", absorbed, err)
	}
	ls, err := r.editable(ctx, survivor)
	if err != nil {
		return fmt.Errorf("chart %s: %w", survivor, err)
	}
	fx, err := lx.chart.Forwarding()
	if err != nil {
		return err
	}
	fs, err := ls.chart.Forwarding()
	if err != nil {
		return err
	}
	chainS, err := r.chain(ctx, survivor)
	if err != nil {
		return err
	}
	chainX, err := r.chain(ctx, absorbed)
	if err != nil {
		return err
	}
	// A survivor that forwards is refused, unless its pointers lead back
	// to the absorbed chart: two charts merged into each other, settled
	// now by keeping survivor.
	clearS := forwards(fs)
	if clearS && !slices.Contains(chainS, absorbed) {
		return fmt.Errorf("chart %s forwards to %s: %w", survivor, fs.Survivor, ErrForwarded)
	}
	writeX := true
	if forwards(fx) {
		switch {
		case fx.Survivor == survivor && !fx.InConflict():
			if !clearS {
				return ErrAlreadyMerged
			}
			writeX = false
		case !fx.InConflict() && !slices.Contains(chainX, absorbed):
			return fmt.Errorf("chart %s forwards to %s (unmerge it first): %w", absorbed, fx.Survivor, ErrForwarded)
		}
	}
	scopeX, err := lx.chart.Scope()
	if err != nil {
		return err
	}
	scopeS, err := ls.chart.Scope()
	if err != nil {
		return err
	}
	var steps []mergeStep
	if writeX {
		steps = append(steps, mergeStep{l: lx, op: record.MergeInto{Survivor: survivor, Reason: reason, ShareWith: scopeS}})
	}
	if clearS {
		steps = append(steps, mergeStep{l: ls, op: record.Unmerge{Reason: "kept as the survivor of chart " + absorbed}})
	}
	steps = append(steps, mergeStep{l: ls, op: record.Absorb{ChartID: absorbed, Reason: reason, ShareWith: scopeX}, optional: true})
	// Charts that absorbed absorbed (concurrently) or survivor (in a
	// cycle) release it, where this replica may write them.
	release := func(of string, claimants []string) {
		for _, t := range claimants {
			if t == "" || t == survivor && of == absorbed {
				continue
			}
			lt, err := r.editable(ctx, t)
			if err != nil {
				continue
			}
			steps = append(steps, mergeStep{l: lt, op: record.Release{ChartID: of, Reason: "merged into chart " + survivor}, optional: true})
		}
	}
	if writeX {
		release(absorbed, fx.Values)
	}
	if clearS {
		release(survivor, fs.Values)
	}
	if err := r.writeSteps(ctx, by, steps); err != nil {
		return err
	}
	r.log.Info("charts merged", "absorbed", absorbed, "survivor", survivor, "user", by.UserID, "role", by.Role)
	return nil
}

// Unmerge makes the chart absorbed, merged into another, a chart of its
// own again: its pointer is cleared (settling concurrent merges into
// several charts too) and each chart it was merged into that this replica
// may write releases it (its merge entry's status becomes unmerged), in
// one durable write. The survivor's view no longer shows its entries; both
// charts keep every entry and their whole history. Referrals the merge
// made stay: both clinics keep the charts they were shown. Checked as
// Merge is (a forked replica refuses too); a chart not merged gives
// ErrNotMerged.
func (r *Replica) Unmerge(ctx context.Context, absorbed string, by record.Author, reason string) error {
	for try := 0; ; try++ {
		err := r.unmerge(ctx, absorbed, by, reason)
		if errors.Is(err, store.ErrConflict) && try < sharedTries {
			continue
		}
		if err != nil {
			return fmt.Errorf("unmerge chart %s: %w", absorbed, err)
		}
		return nil
	}
}

func (r *Replica) unmerge(ctx context.Context, absorbed string, by record.Author, reason string) error {
	if err := by.Validate(); err != nil {
		return err
	}
	if !record.Permitted(by.Role, record.SectionMerges) {
		return &record.ForbiddenError{Role: by.Role, Section: record.SectionMerges}
	}
	unlock, err := r.lock()
	if err != nil {
		return err
	}
	defer unlock()
	if err := r.Forked(); err != nil {
		return err
	}
	lx, err := r.editable(ctx, absorbed)
	if err != nil {
		return err
	}
	fx, err := lx.chart.Forwarding()
	if err != nil {
		return err
	}
	if !forwards(fx) {
		return ErrNotMerged
	}
	steps := []mergeStep{{l: lx, op: record.Unmerge{Reason: reason}}}
	for _, t := range fx.Values {
		if t == "" {
			continue
		}
		if lt, err := r.editable(ctx, t); err == nil {
			steps = append(steps, mergeStep{l: lt, op: record.Release{ChartID: absorbed, Reason: reason}, optional: true})
		}
	}
	if err := r.writeSteps(ctx, by, steps); err != nil {
		return err
	}
	r.log.Info("chart unmerged", "chart", absorbed, "from", strings.Join(fx.Values, ","), "user", by.UserID, "role", by.Role)
	return nil
}

// forwards reports whether a pointer has any value but "".
func forwards(f record.Forwarding) bool {
	return slices.ContainsFunc(f.Values, func(v string) bool { return v != "" })
}

// writeSteps makes each step's change and stores them all in one batch
// with the charts' index entries. On error nothing is stored and the
// charts changed in memory are dropped from the cache. r.mu is held.
func (r *Replica) writeSteps(ctx context.Context, by record.Author, steps []mergeStep) error {
	var b store.Batch
	var touched []*loaded
	drop := func() {
		for _, l := range touched {
			r.cache.remove(l.id)
		}
	}
	at := r.cfg.Now()
	for _, s := range steps {
		res, err := s.l.chart.Do(by, at, s.op)
		if s.optional && (errors.Is(err, record.ErrTransition) || errors.Is(err, record.ErrNotFound)) {
			continue
		}
		if err != nil {
			drop()
			return fmt.Errorf("chart %s: %w", s.l.id, err)
		}
		s.l.sinceSnapshot++
		b.Changes = append(b.Changes, store.NewChange{Chart: s.l.id, Hash: res.Change.Hash, Raw: res.Change.Raw, Sig: r.sign(s.l.id, res.Change.Hash)})
		if !slices.Contains(touched, s.l) {
			touched = append(touched, s.l)
		}
	}
	for _, l := range touched {
		if err := r.addChartWrites(&b, l); err != nil {
			drop()
			return err
		}
	}
	if _, err := r.st.Write(ctx, b); err != nil {
		drop()
		return err
	}
	for _, l := range touched {
		if slices.ContainsFunc(b.Snapshots, func(s store.NewSnapshot) bool { return s.Chart == l.id }) {
			l.sinceSnapshot = 0
		}
	}
	return nil
}

// forwardOf returns the pointer of a chart held (its Forwarding's
// Survivor), and false for a chart not held. r.mu is held.
func (r *Replica) forwardOf(ctx context.Context, id string) (string, bool, error) {
	l, err := r.load(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	if l.chart == nil {
		return "", false, nil
	}
	f, err := l.chart.Forwarding()
	if err != nil {
		return "", false, err
	}
	return f.Survivor, true, nil
}

// survivorOf returns the chart id's pointers lead to (record.Survivor).
// r.mu is held.
func (r *Replica) survivorOf(ctx context.Context, id string) (string, error) {
	var ferr error
	s, _ := record.Survivor(id, func(c string) (string, bool) {
		if ferr != nil {
			return "", false
		}
		next, ok, err := r.forwardOf(ctx, c)
		ferr = err
		return next, ok && err == nil
	})
	return s, ferr
}

// chain returns the charts reached from id by following pointers, id
// itself last if they lead back to it. r.mu is held.
func (r *Replica) chain(ctx context.Context, id string) ([]string, error) {
	var out []string
	cur := id
	for range record.MaxMergeChain {
		next, ok, err := r.forwardOf(ctx, cur)
		if err != nil {
			return nil, err
		}
		if !ok || next == "" || slices.Contains(out, next) {
			return out, nil
		}
		out = append(out, next)
		if next == id {
			return out, nil
		}
		cur = next
	}
	return out, nil
}

// group returns the charts merged into the surviving chart survivor: those
// its merge entries (and theirs, for chains) name whose pointers resolve
// to it, and those of also's chain that do, sorted by ID, at most
// MaxMergeChain. r.mu is held.
func (r *Replica) group(ctx context.Context, survivor string, also ...string) ([]*loaded, error) {
	seen := map[string]bool{survivor: true}
	var queue []string
	ls, err := r.load(ctx, survivor)
	if err != nil {
		return nil, err
	}
	if ls.chart != nil {
		if queue, err = ls.chart.MergedCharts(); err != nil {
			return nil, err
		}
	}
	for _, a := range also {
		c, err := r.chain(ctx, a)
		if err != nil {
			return nil, err
		}
		queue = append(queue, a)
		queue = append(queue, c...)
	}
	var out []*loaded
	for len(queue) > 0 && len(out) < record.MaxMergeChain {
		id := queue[0]
		queue = queue[1:]
		if seen[id] {
			continue
		}
		seen[id] = true
		l, err := r.load(ctx, id)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if l.chart == nil {
			continue
		}
		s, err := r.survivorOf(ctx, id)
		if err != nil {
			return nil, err
		}
		if s != survivor {
			continue
		}
		out = append(out, l)
		more, err := l.chart.MergedCharts()
		if err != nil {
			return nil, err
		}
		queue = append(queue, more...)
	}
	slices.SortFunc(out, func(a, b *loaded) int { return strings.Compare(a.id, b.id) })
	return out, nil
}

// mergedView returns the view of chart id as Chart does: the surviving
// chart its pointers lead to, with the charts merged into it. r.mu is
// held.
func (r *Replica) mergedView(ctx context.Context, id string) (record.View, error) {
	l, err := r.load(ctx, id)
	if err != nil {
		return record.View{}, err
	}
	if l.chart == nil {
		return record.View{}, fmt.Errorf("chart %s: registration not received yet: %w", id, ErrNotFound)
	}
	plain, err := unmerged(l)
	if err != nil {
		return record.View{}, err
	}
	if plain {
		return l.chart.View()
	}
	s, err := r.survivorOf(ctx, id)
	if err != nil {
		return record.View{}, err
	}
	ls, err := r.load(ctx, s)
	if err != nil {
		return record.View{}, err
	}
	grp, err := r.group(ctx, s, id)
	if err != nil {
		return record.View{}, err
	}
	charts := make([]*record.Chart, len(grp))
	for i, g := range grp {
		charts[i] = g.chart
	}
	return record.Combine(ls.chart, charts)
}

// unmerged reports whether a chart takes no part in any merge: no
// pointer ever written and no merge entry.
func unmerged(l *loaded) (bool, error) {
	f, err := l.chart.Forwarding()
	if err != nil {
		return false, err
	}
	m, err := l.chart.MergedCharts()
	if err != nil {
		return false, err
	}
	return len(f.Values) == 0 && len(m) == 0, nil
}

// editTarget returns the chart an edit of chart chartID writes: the chart
// itself when it takes no part in a merge; otherwise, of its surviving
// chart and the charts merged into it, the first (survivor, then by ID)
// on which op finds what it names, so that an edit of an existing entry
// goes to the document holding it and a new entry to the survivor. r.mu
// is held.
func (r *Replica) editTarget(ctx context.Context, chartID string, op record.Op) (*loaded, error) {
	switch op.(type) {
	case record.MergeInto, record.Unmerge, record.Absorb, record.Release,
		*record.MergeInto, *record.Unmerge, *record.Absorb, *record.Release:
		return nil, ErrMergeOp
	}
	l, err := r.load(ctx, chartID)
	if err != nil {
		return nil, err
	}
	if l.chart == nil {
		return r.editable(ctx, chartID)
	}
	plain, err := unmerged(l)
	if err != nil {
		return nil, err
	}
	if plain {
		return r.editable(ctx, chartID)
	}
	s, err := r.survivorOf(ctx, chartID)
	if err != nil {
		return nil, err
	}
	ls, err := r.load(ctx, s)
	if err != nil {
		return nil, err
	}
	grp, err := r.group(ctx, s, chartID)
	if err != nil {
		return nil, err
	}
	at := r.cfg.Now()
	for _, g := range append([]*loaded{ls}, grp...) {
		if _, err := g.chart.Sections(at, op); !errors.Is(err, record.ErrNotFound) {
			return r.editable(ctx, g.id)
		}
	}
	return r.editable(ctx, s)
}

// OwnChart returns the view of chart chartID's own document, without
// following its forwarding pointer or gathering the charts merged into
// it: a forwarding record's original chart and history.
func (r *Replica) OwnChart(ctx context.Context, chartID string) (record.View, error) {
	unlock, err := r.lock()
	if err != nil {
		return record.View{}, err
	}
	defer unlock()
	l, err := r.load(ctx, chartID)
	if err != nil {
		return record.View{}, err
	}
	if l.chart == nil {
		return record.View{}, fmt.Errorf("chart %s: registration not received yet: %w", chartID, ErrNotFound)
	}
	v, err := l.chart.View()
	if err != nil {
		return record.View{}, fmt.Errorf("chart %s: %w", chartID, err)
	}
	return v, nil
}

// Survivor returns the chart that chart chartID's forwarding pointers lead
// to (chartID itself when it is not merged), as record.Survivor finds it
// over the charts held here.
func (r *Replica) Survivor(ctx context.Context, chartID string) (string, error) {
	unlock, err := r.lock()
	if err != nil {
		return "", err
	}
	defer unlock()
	if _, err := r.load(ctx, chartID); err != nil {
		return "", err
	}
	return r.survivorOf(ctx, chartID)
}

// forwardKey returns the forwarding mark among a chart's search keys, if
// any.
func forwardKey(keys []string) (string, bool) {
	for _, k := range keys {
		if v, ok := strings.CutPrefix(k, forwardKeyPrefix); ok {
			return v, true
		}
	}
	return "", false
}

// indexSurvivor returns the surviving chart of a chart by the forwarding
// marks of the store's index entries (no chart is loaded), and that
// chart's entry.
func (r *Replica) indexSurvivor(ctx context.Context, c store.Chart) (store.Chart, error) {
	if _, ok := forwardKey(c.Keys); !ok {
		return c, nil
	}
	rows := map[string]store.Chart{c.ID: c}
	var ferr error
	s, _ := record.Survivor(c.ID, func(id string) (string, bool) {
		row, ok := rows[id]
		if !ok {
			got, err := r.st.Chart(ctx, id)
			if err != nil {
				if !errors.Is(err, store.ErrNotFound) {
					ferr = err
				}
				return "", false
			}
			row, rows[id] = got, got
		}
		next, _ := forwardKey(row.Keys)
		return next, true
	})
	if ferr != nil {
		return store.Chart{}, ferr
	}
	return rows[s], nil
}

// withForwardKey adds to a chart's index entry the forwarding mark of its
// pointer, if it has one.
func withForwardKey(e *store.Chart, ch *record.Chart) error {
	f, err := ch.Forwarding()
	if err != nil {
		return err
	}
	if f.Survivor != "" {
		e.Keys = append(e.Keys, forwardKeyPrefix+f.Survivor)
		slices.Sort(e.Keys)
	}
	return nil
}
