package session

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/chartsync/chartsync/device/login"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
)

// DefaultIdle is how long a user stays logged in without using the app.
const DefaultIdle = 15 * time.Minute

// ClockSkew is how far in the future a session's last use may be before
// the session is taken for one from a clock set back, and ended.
const ClockSkew = time.Minute

// Errors of logging in and of a logged-in user, matched with errors.Is.
var (
	// ErrNoUsers: the device holds no users of its clinic yet.
	ErrNoUsers = errors.New("session: this device holds no users of its clinic yet")
	// ErrWrongPassword: a wrong user ID or password (a
	// *WrongPasswordError says how many more tries lock the name out).
	ErrWrongPassword = errors.New("session: wrong user ID or password")
	// ErrDisabled: an administrator disabled the user's account.
	ErrDisabled = errors.New("session: the account is disabled")
	// ErrRemoved: the roster no longer holds the user.
	ErrRemoved = errors.New("session: the user is no longer on the clinic's roster")
	// ErrIdle: the session ended after a while without use.
	ErrIdle = errors.New("logged out after a while without use")
	// ErrNotLoggedIn: no session.
	ErrNotLoggedIn = errors.New("no one is logged in")
	// ErrCorruptFile: a session file that is not one.
	ErrCorruptFile = errors.New("session: the session file is damaged")
)

// WrongPasswordError is a failed login: Left more wrong tries lock User
// out on this device.
type WrongPasswordError struct {
	User string
	Left int
}

func (e *WrongPasswordError) Error() string {
	return fmt.Sprintf("wrong user ID or password: %d more wrong tries lock %s out on this device", e.Left, e.User)
}

// Unwrap makes it match ErrWrongPassword.
func (e *WrongPasswordError) Unwrap() error { return ErrWrongPassword }

// Users is the clinic's roster as a device holds it (a *replica.Replica).
// User returns an error matching replica.ErrNotFound for a user it does
// not hold.
type Users interface {
	Users(ctx context.Context, clinic string) ([]record.User, error)
	User(ctx context.Context, clinic, id string) (record.User, error)
}

var _ Users = (*replica.Replica)(nil)

// Policy is how staff log in on a device and stay logged in. Clinic,
// Device, Users and Guard are required.
type Policy struct {
	// Clinic is the device's clinic, whose roster holds who may log in;
	// Device the device's name, recorded in every Author.
	Clinic, Device string
	Users          Users
	// Guard checks passwords and locks a name out after failures.
	Guard *login.Guard
	// Idle ends a session after this long without use (default
	// DefaultIdle).
	Idle time.Duration
}

// Validate says what is missing from p.
func (p Policy) Validate() error {
	switch {
	case p.Clinic == "" || p.Device == "":
		return errors.New("session: Policy.Clinic and Policy.Device are required")
	case p.Users == nil || p.Guard == nil:
		return errors.New("session: Policy.Users and Policy.Guard are required")
	case p.Idle < 0:
		return errors.New("session: Policy.Idle is negative")
	}
	return nil
}

// IdleTime is p.Idle, or DefaultIdle when it is zero.
func (p Policy) IdleTime() time.Duration {
	if p.Idle == 0 {
		return DefaultIdle
	}
	return p.Idle
}

// Login checks user's password against the roster's hash with the guard
// and returns the user as an Author of this device. It refuses with
// ErrNoUsers, a *WrongPasswordError, the guard's *login.LockedOutError,
// or ErrDisabled (checked after the password, so that it tells nothing
// to someone without it). A name the roster does not hold costs and
// counts as a wrong password.
func (p Policy) Login(ctx context.Context, user, password string) (record.Author, error) {
	if err := p.Validate(); err != nil {
		return record.Author{}, err
	}
	users, err := p.Users.Users(ctx, p.Clinic)
	if err != nil {
		return record.Author{}, fmt.Errorf("log in %s: %w", user, err)
	}
	if len(users) == 0 {
		return record.Author{}, ErrNoUsers
	}
	u, err := p.Users.User(ctx, p.Clinic, user)
	switch {
	case errors.Is(err, replica.ErrNotFound):
		u = record.User{} // an unknown user costs the same, and counts
	case err != nil:
		return record.Author{}, fmt.Errorf("log in %s: %w", user, err)
	}
	if err := p.Guard.Login(user, u.PasswordHash, password); err != nil {
		if errors.Is(err, login.ErrWrongPassword) {
			failures, _ := p.Guard.Status(user)
			return record.Author{}, &WrongPasswordError{User: user, Left: p.Guard.Policy().MaxFailures - failures}
		}
		return record.Author{}, err
	}
	if u.Disabled {
		return record.Author{}, fmt.Errorf("%s: %w", user, ErrDisabled)
	}
	return p.author(u), nil
}

// Author returns the logged-in user as the roster has them now, as an
// Author of this device: a user removed gives ErrRemoved, one disabled
// ErrDisabled, and a changed role applies at once.
func (p Policy) Author(ctx context.Context, user string) (record.Author, error) {
	if p.Users == nil {
		return record.Author{}, errors.New("session: Policy.Users is required")
	}
	u, err := p.Users.User(ctx, p.Clinic, user)
	if errors.Is(err, replica.ErrNotFound) {
		return record.Author{}, fmt.Errorf("%s: %w", user, ErrRemoved)
	}
	if err != nil {
		return record.Author{}, fmt.Errorf("user %s: %w", user, err)
	}
	if u.Disabled {
		return record.Author{}, fmt.Errorf("%s: %w", user, ErrDisabled)
	}
	return p.author(u), nil
}

func (p Policy) author(u record.User) record.Author {
	return record.Author{UserID: u.ID, Name: u.Name, Role: u.Role, Device: p.Device}
}

// Expired reports whether a session last used at last has ended at now:
// unused for longer than idle (DefaultIdle when zero), or last used more
// than ClockSkew in the future (a clock set back).
func Expired(last, now time.Time, idle time.Duration) bool {
	if idle == 0 {
		idle = DefaultIdle
	}
	return now.Sub(last) > idle || last.After(now.Add(ClockSkew))
}
