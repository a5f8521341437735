package replica

import (
	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/record"
)

// authorCheck judges the received changes of one chart, in the bundle's
// order, with record's rules, at a cost that follows the changes (see
// record.Checker), not the chart's history.
type authorCheck struct{ c *record.Checker }

// newAuthorCheck starts judging changes to doc, the chart as held before
// the bundle's changes are applied to it.
func newAuthorCheck(doc *crdt.Doc) (*authorCheck, error) {
	c, err := record.NewChecker(doc)
	if err != nil {
		return nil, err
	}
	return &authorCheck{c: c}, nil
}

// close releases the checker's copy of the chart.
func (a *authorCheck) close() { _ = a.c.Close() }

// check judges c, whose dependencies are held or were checked before it.
func (a *authorCheck) check(c crdt.Change) (record.Touched, error) { return a.c.Check(c) }
