package crdt

// NewHistoryOf builds, for tests and benchmarks, the state Apply keeps for
// d's history, as a Fork of d builds it at its first Apply.
func NewHistoryOf(d *Doc) (any, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	keep := d.hist
	defer func() { d.hist = keep }()
	d.hist = nil
	if err := d.ensureHistory(); err != nil {
		return nil, err
	}
	return d.hist, nil
}
