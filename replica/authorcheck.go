package replica

import (
	"sync"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/record"
)

// authorCheck judges the received changes of one chart, in the bundle's
// order, with record's rules, at a cost that follows the changes (see
// record.Checker), not the chart's history.
type authorCheck struct {
	c     *record.Checker
	chart string
}

// newAuthorCheck starts judging changes to doc, the chart as held before
// the bundle's changes are applied to it: with the Checker kept from the
// sender's last bundle if it holds that very version of the chart (the
// rest of a long history), else with a new one, which reads the chart.
func (r *Replica) newAuthorCheck(chart string, doc *crdt.Doc) (*authorCheck, error) {
	if c := r.kept.take(chart, doc.Heads()); c != nil {
		return &authorCheck{c: c, chart: chart}, nil
	}
	a, err := newChecker(chart, doc)
	if err == nil {
		r.checkersMade.Add(1)
	}
	return a, err
}

// newChecker starts judging changes to chart with a new record.Checker,
// which reads doc whole, where it is (record.NewCheckerOn): a receive
// plans on its own copy of the chart, and applies to it only the changes
// the Checker accepted, so the Checker copies the chart only for a
// change that needs it.
func newChecker(chart string, doc *crdt.Doc) (*authorCheck, error) {
	c, err := record.NewCheckerOn(doc)
	if err != nil {
		return nil, err
	}
	return &authorCheck{c: c, chart: chart}, nil
}

// close releases the checker's copy of the chart.
func (a *authorCheck) close() { _ = a.c.Close() }

// check judges c, whose dependencies are held or were checked before it.
func (a *authorCheck) check(c crdt.Change) (record.Touched, error) { return a.c.Check(c) }

// keptChecker holds the Checker of one chart between a sender's bundles
// while the sender has more to send: a history of thousands of changes
// arrives in several bundles, and a new Checker for each would read the
// whole chart again, making the cost of receiving it grow with the
// square of its length. One is kept at a time (it holds a copy of its
// chart), and only for the version of the chart it judged.
type keptChecker struct {
	mu    sync.Mutex
	chart string
	c     *record.Checker
}

// keep keeps a's Checker, closing the one kept before.
func (k *keptChecker) keep(a *authorCheck) {
	k.mu.Lock()
	old := k.c
	k.chart, k.c = a.chart, a.c
	k.mu.Unlock()
	if old != nil && old != a.c {
		_ = old.Close()
	}
}

// take returns the Checker kept for chart if it holds heads, and forgets
// it (the caller owns it), or nil.
func (k *keptChecker) take(chart string, heads crdt.Heads) *record.Checker {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.c == nil || k.chart != chart || !k.c.Heads().Equal(heads) {
		return nil
	}
	c := k.c
	k.chart, k.c = "", nil
	return c
}

// clear closes the Checker kept, if any.
func (k *keptChecker) clear() {
	k.mu.Lock()
	c := k.c
	k.chart, k.c = "", nil
	k.mu.Unlock()
	if c != nil {
		_ = c.Close()
	}
}
