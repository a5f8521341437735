package replica

import (
	"context"
	"errors"
	"fmt"

	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica/store"
)

// open recognises what l's document is: a chart (only under its own ID),
// a clinic's user roster (only under the roster's own ID, UsersID of its
// clinic), or nothing yet. A chart under another ID gives
// record.ErrNotAChart.
func (l *loaded) open() error {
	if l.chart != nil || l.users != nil {
		return nil
	}
	chart, err := record.Open(l.doc)
	if err == nil {
		if chart.ID() != l.id {
			return fmt.Errorf("document %s holds chart %s: %w", l.id, chart.ID(), record.ErrNotAChart)
		}
		l.chart = chart
		return nil
	}
	if !errors.Is(err, record.ErrNotAChart) {
		return err
	}
	if u, err := record.OpenUsers(l.doc); err == nil && u.ID() == l.id {
		l.users = u
	}
	return nil
}

// Users lists the users of clinic's roster, sorted by ID. A clinic whose
// roster has not been started or received has none.
func (r *Replica) Users(ctx context.Context, clinic string) (out []record.User, err error) {
	err = r.withRoster(ctx, clinic, func(u *record.Users) error {
		out, err = u.List()
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	return out, err
}

// User returns one user of clinic's roster, or an error matching
// ErrNotFound.
func (r *Replica) User(ctx context.Context, clinic, id string) (usr record.User, err error) {
	err = r.withRoster(ctx, clinic, func(u *record.Users) error {
		usr, err = u.User(id)
		return err
	})
	if errors.Is(err, record.ErrNotFound) {
		return record.User{}, fmt.Errorf("user %s of %s: %w", id, clinic, ErrNotFound)
	}
	return usr, err
}

// withRoster runs fn on clinic's user roster while no bundle is being
// received (a received change is applied before it is judged, so a
// reader must not see the roster meanwhile).
func (r *Replica) withRoster(ctx context.Context, clinic string, fn func(*record.Users) error) error {
	unlock, err := r.lock()
	if err != nil {
		return err
	}
	defer unlock()
	l, err := r.load(ctx, record.UsersID(clinic))
	if err != nil {
		return err
	}
	if l.users == nil {
		return fmt.Errorf("user roster of %s: %w", clinic, ErrNotFound)
	}
	return fn(l.users)
}

// UpdateUser adds or changes a user of clinic's roster as by, as one
// durable transaction; the roster is started if this replica holds none
// (see record.NewUsers). It is replicated like a chart, to the devices of
// that clinic. Errors are record.Users.Update's, ErrOutOfScope on a
// device of another clinic, or a forked replica's *ForkedError (Forked).
func (r *Replica) UpdateUser(ctx context.Context, clinic string, by record.Author, up record.UserUpdate) (record.Result, error) {
	unlock, err := r.lock()
	if err != nil {
		return record.Result{}, err
	}
	defer unlock()
	if err := r.Forked(); err != nil {
		return record.Result{}, fmt.Errorf("update user %s of %s: %w", up.UserID, clinic, err)
	}
	if r.cfg.Clinic != "" && clinic != r.cfg.Clinic {
		return record.Result{}, fmt.Errorf("change the users of %s on a device of %s: %w", clinic, r.cfg.Clinic, ErrOutOfScope)
	}
	id := record.UsersID(clinic)
	l, err := r.load(ctx, id)
	var res record.Result
	switch {
	case errors.Is(err, ErrNotFound):
		var u *record.Users
		if u, res, err = record.NewUsers(clinic, r.id, by, r.cfg.Now(), up); err != nil {
			return record.Result{}, fmt.Errorf("start the users of %s: %w", clinic, err)
		}
		l = &loaded{id: id, doc: u.Doc(), users: u}
	case err != nil:
		return record.Result{}, err
	case l.users == nil:
		return record.Result{}, fmt.Errorf("document %s is not the user roster of %s: %w", id, clinic, record.ErrNotAUserRoster)
	default:
		if res, err = l.users.Update(by, r.cfg.Now(), up); err != nil {
			return record.Result{}, fmt.Errorf("update user %s of %s: %w", up.UserID, clinic, err)
		}
	}
	if err := r.storeRosterChange(ctx, l, res); err != nil {
		return record.Result{}, fmt.Errorf("update user %s of %s: %w", up.UserID, clinic, err)
	}
	return res, nil
}

// storeRosterChange stores a change just made to a roster, durably; on
// error the roster is dropped from the cache, so the next read comes from
// disk. r.mu is held.
func (r *Replica) storeRosterChange(ctx context.Context, l *loaded, res record.Result) error {
	l.sinceSnapshot++
	b := store.Batch{Changes: []store.NewChange{{Chart: l.id, Hash: res.Change.Hash, Raw: res.Change.Raw, Sig: r.sign(l.id, res.Change.Hash)}}}
	if err := r.addChartWrites(&b, l); err != nil {
		r.cache.remove(l.id)
		return err
	}
	if _, err := r.st.Write(ctx, b); err != nil {
		r.cache.remove(l.id)
		return err
	}
	if len(b.Snapshots) > 0 {
		l.sinceSnapshot = 0
	}
	r.cache.put(l)
	return nil
}

// ReadPolicy returns what each role of clinic may not read (see
// record.ReadPolicy); empty if the clinic's roster sets nothing or is not
// held.
func (r *Replica) ReadPolicy(ctx context.Context, clinic string) (p record.ReadPolicy, err error) {
	err = r.withRoster(ctx, clinic, func(u *record.Users) error {
		p, err = u.ReadPolicy()
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return record.ReadPolicy{}, nil
	}
	return p, err
}

// SetHidden sets the chart sections role may not read at clinic, as by
// (an administrator), in clinic's roster: one durable transaction,
// replicated to the clinic's devices. A forked replica (Forked) refuses
// with its *ForkedError.
func (r *Replica) SetHidden(ctx context.Context, clinic string, by record.Author, role record.Role, hidden []record.Section) (record.Result, error) {
	unlock, err := r.lock()
	if err != nil {
		return record.Result{}, err
	}
	defer unlock()
	if err := r.Forked(); err != nil {
		return record.Result{}, fmt.Errorf("set the read policy of %s: %w", clinic, err)
	}
	if r.cfg.Clinic != "" && clinic != r.cfg.Clinic {
		return record.Result{}, fmt.Errorf("set the read policy of %s on a device of %s: %w", clinic, r.cfg.Clinic, ErrOutOfScope)
	}
	id := record.UsersID(clinic)
	l, err := r.load(ctx, id)
	if err != nil {
		return record.Result{}, fmt.Errorf("the user roster of %s: %w", clinic, err)
	}
	if l.users == nil {
		return record.Result{}, fmt.Errorf("document %s is not the user roster of %s: %w", id, clinic, record.ErrNotAUserRoster)
	}
	res, err := l.users.SetHidden(by, r.cfg.Now(), role, hidden)
	if err != nil {
		return record.Result{}, err
	}
	return res, r.storeRosterChange(ctx, l, res)
}
