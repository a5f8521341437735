package login

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Errors returned by this package. Match them with errors.Is (and
// *LockedOutError and *MalformedHashError with errors.As). Their text is
// written to be shown to the person at the keyboard: it says what happened
// and what to do next, and never whether a user name exists.
var (
	// ErrWrongPassword: the password does not match, or the user name is
	// not on the roster (the two are deliberately indistinguishable).
	ErrWrongPassword = errors.New("login: wrong user name or password; check both and try again")
	// ErrLockedOut: the user name is locked after too many failed logins.
	// The error is a *LockedOutError saying until when.
	ErrLockedOut = errors.New("login: locked out after too many failed logins; wait, or ask an administrator to unlock")
	// ErrWeakPassword: Hash refused a password shorter than
	// MinPasswordLength characters (or empty).
	ErrWeakPassword = fmt.Errorf("login: password too short; choose one of at least %d characters", MinPasswordLength)
	// ErrPasswordTooLong: Hash refused a password longer than
	// MaxPasswordLength bytes.
	ErrPasswordTooLong = fmt.Errorf("login: password too long; choose one of at most %d bytes", MaxPasswordLength)
	// ErrMalformedHash: an encoded hash is not a well-formed argon2id PHC
	// string within this package's bounds. The error is a
	// *MalformedHashError saying what is wrong.
	ErrMalformedHash = errors.New("login: stored password hash is unusable; ask an administrator to set this user's password again")
	// ErrInvalidParams: argon2 parameters outside the bounds of
	// Params.Validate.
	ErrInvalidParams = errors.New("login: invalid argon2 parameters")
	// ErrInvalidPolicy: a Policy outside the bounds of Policy.Validate.
	ErrInvalidPolicy = errors.New("login: invalid lockout policy")
	// ErrBadUserName: a user name that is empty, longer than MaxUserName
	// bytes, not UTF-8, or holding control characters. Nothing is
	// recorded for it.
	ErrBadUserName = fmt.Errorf("login: user name must be 1 to %d bytes of printable text; check it and try again", MaxUserName)
	// ErrCorruptState: the lockout state file cannot be read back (damaged,
	// truncated, too large, or of an unknown format version). OpenGuard
	// refuses it rather than forget every lockout; an administrator
	// removes it with ResetGuard.
	ErrCorruptState = errors.New("login: the saved record of failed logins is damaged; ask an administrator to reset it")
	// ErrStateNotSaved: the lockout state file could not be written. The
	// login is refused whatever the password, so that a full or failing
	// disk cannot switch the lockout off.
	ErrStateNotSaved = errors.New("login: could not save the record of login attempts; free some storage on the device, or ask an administrator")
	// ErrTooManyLockouts: the state holds Policy.MaxUsers names and every
	// one is locked, so an attempt for another name could not be counted
	// and is refused.
	ErrTooManyLockouts = errors.New("login: too many user names are locked out on this device to check another; wait, or ask an administrator to unlock")
)

// LockedOutError is returned by Guard.Login for a locked user name. It
// matches ErrLockedOut.
type LockedOutError struct {
	User     string
	Until    time.Time // the lockout ends at this instant (by the device clock)
	Failures int       // failed logins in a row that caused it
}

func (e *LockedOutError) Error() string {
	return fmt.Sprintf("login: %q is locked out after %d failed logins until %s; wait, or ask an administrator to unlock",
		e.User, e.Failures, clockTime(e.Until))
}

// Is reports whether target is ErrLockedOut.
func (e *LockedOutError) Is(target error) bool { return target == ErrLockedOut }

// MalformedHashError is returned for an encoded hash that does not parse
// or whose parameters are out of bounds. It matches ErrMalformedHash.
type MalformedHashError struct {
	Reason string // what is wrong, without the hash's content
	Err    error  // the underlying error, if any (ErrInvalidParams)
}

func (e *MalformedHashError) Error() string {
	return fmt.Sprintf("login: stored password hash is unusable (%s); ask an administrator to set this user's password again", e.Reason)
}

// Is reports whether target is ErrMalformedHash.
func (e *MalformedHashError) Is(target error) bool { return target == ErrMalformedHash }

func (e *MalformedHashError) Unwrap() error { return e.Err }

func malformed(format string, args ...any) error {
	return &MalformedHashError{Reason: fmt.Sprintf(format, args...)}
}

// failedLogin is Guard.Login's error for a wrong password (or unknown
// name): it matches ErrWrongPassword, and also ErrLockedOut (as a
// *LockedOutError) when this failure locked the name.
type failedLogin struct {
	remaining int           // failures left before a lockout
	next      time.Duration // length of that lockout
	locked    *LockedOutError
}

func (e *failedLogin) Error() string {
	if e.locked != nil {
		return "login: wrong user name or password; " + strings.TrimPrefix(e.locked.Error(), "login: ")
	}
	tries := "tries"
	if e.remaining == 1 {
		tries = "try"
	}
	return fmt.Sprintf("login: wrong user name or password; %d more %s before this name is locked for %s",
		e.remaining, tries, humanDuration(e.next))
}

func (e *failedLogin) Unwrap() []error {
	if e.locked != nil {
		return []error{ErrWrongPassword, e.locked}
	}
	return []error{ErrWrongPassword}
}

// clockTime formats an instant for a person: "14:05:30 UTC on 1 Mar 2026".
func clockTime(t time.Time) string {
	return t.UTC().Format("15:04:05 MST on 2 Jan 2006")
}

// humanDuration formats a lockout length: "1 minute", "2 hours", "90 seconds".
func humanDuration(d time.Duration) string {
	unit := func(n int64, name string) string {
		if n == 1 {
			return "1 " + name
		}
		return fmt.Sprintf("%d %ss", n, name)
	}
	switch {
	case d > 0 && d%time.Hour == 0:
		return unit(int64(d/time.Hour), "hour")
	case d > 0 && d%time.Minute == 0:
		return unit(int64(d/time.Minute), "minute")
	case d > 0 && d%time.Second == 0:
		return unit(int64(d/time.Second), "second")
	}
	return d.String()
}
