package web

import (
	"context"
	"errors"
	"time"

	"github.com/chartsync/chartsync/replica"
)

// Unlocker opens a device's encrypted data for the web app (Config.Unlocker):
// the replica is opened with the data key at a login, and closed, the
// key forgotten, when no session remains logged in (after a logout, or
// when the last session's idle time passes). Meanwhile no page is
// served and no background sync runs. The server calls its methods one
// at a time.
type Unlocker interface {
	// Unlock checks user's password against the device's keys and
	// returns the replica, opened with the data key (the one already
	// open, if another session holds it). A password that does not
	// open the data gives a *devsession.WrongPasswordError (counted as
	// a wrong try), a locked name the guard's *login.LockedOutError,
	// and a user without a key on this device while no session holds
	// it ErrNoKey. The roster's checks follow (Config.Guard).
	Unlock(ctx context.Context, user, password string) (*replica.Replica, error)
	// LoggedIn is called once the roster accepted user's login with
	// password: a user without a key entry on this device gets one.
	LoggedIn(ctx context.Context, user, password string) error
	// Lock closes the replica and forgets the data key.
	Lock() error
}

// ErrNoKey: the user has no key on this device yet, and no session
// holds it: a colleague who has logged in here must log in first.
var ErrNoKey = errors.New("web: no key on this device for this user while no one is logged in")

// SweepEvery is how often a server with an Unlocker looks for sessions
// whose idle time has passed, to lock the data when none remains.
const SweepEvery = 30 * time.Second

// Sweep ends the sessions unused for longer than Config.IdleTimeout and,
// with an Unlocker, locks the data (closes the replica, forgets the key)
// when no session remains logged in. The server sweeps every SweepEvery
// once started (Start).
func (s *Server) Sweep() {
	now := s.cfg.Now()
	s.mu.Lock()
	for id, o := range s.sessions {
		if now.Sub(o.seen) > s.cfg.IdleTimeout {
			delete(s.sessions, id)
		}
	}
	s.mu.Unlock()
	s.lockIfNoSession()
}

// Unlocked reports whether the data is open: always without an
// Unlocker, and with one while some session is logged in.
func (s *Server) Unlocked() bool {
	s.data.RLock()
	defer s.data.RUnlock()
	return s.r != nil
}

// loggedIn counts the sessions of logged-in users.
func (s *Server) loggedIn() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, o := range s.sessions {
		if o.user != "" {
			n++
		}
	}
	return n
}

// lockIfNoSession locks the data when an Unlocker opened it and no
// session remains logged in. It must not be called with s.data held.
func (s *Server) lockIfNoSession() {
	if s.cfg.Unlocker == nil || s.loggedIn() > 0 {
		return
	}
	s.data.Lock()
	defer s.data.Unlock()
	if s.r == nil || s.loggedIn() > 0 {
		return
	}
	s.lockData()
}

// lockData closes the data; s.data is held for writing.
func (s *Server) lockData() {
	if err := s.cfg.Unlocker.Lock(); err != nil {
		s.log.Warn("lock the data", "err", err)
	}
	s.r = nil
	s.policy.Users = nil
	s.forgetStatus()
	s.log.Info("no one logged in: data locked")
}

// sweeper sweeps every SweepEvery until the server closes.
func (s *Server) sweeper() {
	defer s.wg.Done()
	t := time.NewTicker(SweepEvery)
	defer t.Stop()
	for {
		select {
		case <-s.base.Done():
			return
		case <-t.C:
			s.Sweep()
		}
	}
}
