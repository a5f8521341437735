package main

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"

	"github.com/chartsync/chartsync/device/keyring"
	"github.com/chartsync/chartsync/device/login"
	"github.com/chartsync/chartsync/device/session"
	"github.com/chartsync/chartsync/examples/clinic/web"
	"github.com/chartsync/chartsync/replica"
)

// webUnlocker is the web app's web.Unlocker on the device's keyring (see
// keys.go): "clinic serve" keeps the data key in memory only, from the
// first login until no session remains, and never writes it to the
// disk. Its methods are called one at a time.
type webUnlocker struct {
	a *app
	g *login.Guard
	// entry is the user whose keyring entry LoggedIn makes or
	// re-seals: one without an entry, or whose password the keyring
	// refused while the data was open (changed on another device).
	entry string
	// recovery, for a device whose data is still in clear, is the
	// recovery recipient its keyring is made for at the first login.
	recovery string
}

var _ web.Unlocker = (*webUnlocker)(nil)

func (u *webUnlocker) Unlock(ctx context.Context, user, password string) (*replica.Replica, error) {
	a := u.a
	u.entry = ""
	if u.recovery != "" {
		return u.firstLogin(ctx, user, password)
	}
	known, err := a.inKeyring(user)
	if err != nil {
		return nil, err
	}
	if !known {
		if a.r == nil {
			return nil, web.ErrNoKey
		}
		u.entry = user // the roster checks the password
		return a.r, nil
	}
	if err := lockedOut(u.g, user); err != nil {
		return nil, err
	}
	key, err := keyring.Unlock(a.path(keyringFile), user, password)
	switch {
	case errors.Is(err, keyring.ErrWrongPassword) && a.r != nil:
		u.entry = user // the roster decides: a password changed elsewhere
		return a.r, nil
	case errors.Is(err, keyring.ErrWrongPassword):
		return nil, countWrongTry(u.g, user, password)
	case err != nil:
		return nil, fmt.Errorf("unlock this device's data: %w", err)
	}
	if a.r != nil {
		defer clear(key)
		if subtle.ConstantTimeCompare(key, a.key) != 1 {
			return nil, fmt.Errorf("%s's key entry holds another key than the one the data is open with: %w", user, keyring.ErrWrongKey)
		}
		return a.r, nil
	}
	a.key = key
	r, err := a.replica(ctx)
	if err != nil {
		a.dropMemoryKey()
		return nil, err
	}
	return r, nil
}

func (u *webUnlocker) LoggedIn(ctx context.Context, user, password string) error {
	if u.entry != user {
		return nil
	}
	u.entry = ""
	return u.a.setKeyEntry(user, password)
}

func (u *webUnlocker) Lock() error {
	a := u.a
	var err error
	if a.r != nil {
		err = a.r.Close()
		a.r = nil
	}
	a.dropMemoryKey()
	return err
}

// dropMemoryKey forgets the data key this process holds.
func (a *app) dropMemoryKey() {
	clear(a.key)
	a.key = nil
}

// firstLogin logs the first user in on a device whose data is in clear,
// as the command line's first login does: the roster checks the
// password, then the keyring is made for the user and the recovery
// recipient, and the database encrypted in place. The web app then
// checks the roster again, on the encrypted database.
func (u *webUnlocker) firstLogin(ctx context.Context, user, password string) (*replica.Replica, error) {
	a := u.a
	d, err := a.device()
	if err != nil {
		return nil, err
	}
	r, err := a.replica(ctx)
	if err != nil {
		return nil, err
	}
	p := session.Policy{Clinic: d.Clinic, Device: d.Device, Users: r, Guard: u.g}
	if _, err := p.Login(ctx, user, password); err != nil {
		return nil, err
	}
	key, err := keyringConfig.Create(a.path(keyringFile), u.recovery, user, password)
	if err != nil {
		return nil, fmt.Errorf("make this device's keyring: %w", err)
	}
	if err := a.encryptInPlace(ctx, key); err != nil {
		return nil, err
	}
	if err := tightenModes(a.dir); err != nil {
		return nil, fmt.Errorf("make this device's files private: %w", err)
	}
	fmt.Fprintf(a.out, "This device's data is now encrypted (%s's first login since the app encrypts data); the recovery key %s opens it if every password is lost.\n", user, u.recovery)
	u.recovery = ""
	return a.r, nil
}
