package replica

import (
	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/record"
)

// authorCheck judges the received changes of one chart, in the bundle's
// order, with record's rules.
type authorCheck struct{ doc *crdt.Doc }

// newAuthorCheck starts judging changes to doc, the chart as held before
// the bundle's changes are applied to it.
func newAuthorCheck(doc *crdt.Doc) (*authorCheck, error) { return &authorCheck{doc: doc}, nil }

// check judges c, whose dependencies doc holds by then.
func (a *authorCheck) check(c crdt.Change) (record.Touched, error) {
	return record.CheckChange(a.doc, c)
}
