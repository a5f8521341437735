package web

import (
	"context"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	devsession "github.com/chartsync/chartsync/device/session"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
)

// fakeUnlocker opens the fixture's replica for the users of the roster
// with their password, and counts opens and locks.
type fakeUnlocker struct {
	r *replica.Replica

	mu            sync.Mutex
	open          bool
	opens, locks  int
	loggedIn      []string
	wrongPassword int
}

func (u *fakeUnlocker) Unlock(_ context.Context, user, pw string) (*replica.Replica, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, role := range append([]record.Role{record.RoleAdministrator}, record.Roles()...) {
		if user == userID(role) && pw == password(role) {
			if !u.open {
				u.open = true
				u.opens++
			}
			return u.r, nil
		}
	}
	u.wrongPassword++
	return nil, &devsession.WrongPasswordError{User: user, Left: 4}
}

func (u *fakeUnlocker) LoggedIn(_ context.Context, user, _ string) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.loggedIn = append(u.loggedIn, user)
	return nil
}

func (u *fakeUnlocker) Lock() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.open = false
	u.locks++
	return nil
}

func (u *fakeUnlocker) state() (open bool, opens, locks int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.open, u.opens, u.locks
}

// unlockerFixture is the fixture with its replica behind an Unlocker.
func unlockerFixture(t *testing.T, opts ...func(*Config)) (*fixture, *fakeUnlocker) {
	var u *fakeUnlocker
	f := newFixture(t, append([]func(*Config){func(c *Config) {
		u = &fakeUnlocker{r: c.Replica}
		c.Replica, c.Unlocker = nil, u
		c.IdleTimeout = 15 * time.Minute
	}}, opts...)...)
	return f, u
}

// TestUnlockerOpensAtLoginAndLocksWithoutSessions: with an Unlocker, no
// page is served before a login opens the data; a wrong password opens
// nothing and is refused with the login's words; the data stays open
// while any session is logged in, and is locked (the Unlocker's Lock:
// the key forgotten) when the last one logs out or its idle time passes.
func TestUnlockerOpensAtLoginAndLocksWithoutSessions(t *testing.T) {
	f, u := unlockerFixture(t)
	assert.False(t, f.srv.Unlocked(), "nothing is open before a login")
	a := f.client()
	code, _ := a.get("/patients")
	assert.Equal(t, http.StatusSeeOther, code)

	a.get("/login")
	code, body, _ := a.post("/login", url.Values{"user": {userID(record.RoleNurse)}, "password": {"not-the-password"}})
	assert.Equal(t, http.StatusUnauthorized, code)
	assert.Contains(t, body, "Wrong user ID or password. 4 more wrong tries lock u-nurse out on this device.")
	assert.False(t, f.srv.Unlocked(), "a wrong password opens nothing")

	a.login(record.RoleNurse)
	assert.True(t, f.srv.Unlocked())
	b := f.client()
	b.login(record.RoleClinician)
	open, opens, _ := u.state()
	assert.True(t, open)
	assert.Equal(t, 1, opens, "a second login uses the data already open")

	code, _, _ = a.post("/logout", nil)
	assert.Equal(t, http.StatusSeeOther, code)
	assert.True(t, f.srv.Unlocked(), "the clinician's session still holds the data")

	f.clock.advance(16 * time.Minute)
	f.srv.Sweep()
	assert.False(t, f.srv.Unlocked(), "the last session idle: the data is locked")
	open, _, locks := u.state()
	assert.False(t, open)
	assert.Equal(t, 1, locks)
	code, _ = b.get("/patients")
	assert.Equal(t, http.StatusSeeOther, code, "the idle session ended")

	b.login(record.RoleClinician)
	assert.True(t, f.srv.Unlocked())
	code, _, _ = b.post("/logout", nil)
	assert.Equal(t, http.StatusSeeOther, code)
	assert.False(t, f.srv.Unlocked(), "the last logout locks the data")
	_, opens, locks = u.state()
	assert.Equal(t, 2, opens)
	assert.Equal(t, 2, locks)
}

// TestBackgroundSyncOnlyWhileUnlocked: the background sync's turns pass
// without a sync while no one is logged in, sync once someone is, and
// stop syncing again when the data is locked.
func TestBackgroundSyncOnlyWhileUnlocked(t *testing.T) {
	clock := newTurns()
	f, _ := unlockerFixture(t, func(c *Config) { c.After, c.AutoSync = clock.after, 5*time.Minute })
	require.NoError(t, f.srv.Start(context.Background()))
	for range 3 {
		clock.next(t)
		clock.fire <- time.Time{}
	}
	clock.next(t)
	assert.Zero(t, f.sync.syncs, "no sync while the data is locked")

	c := f.client()
	c.login(record.RoleNurse)
	clock.fire <- time.Time{}
	clock.next(t)
	assert.Equal(t, 1, f.sync.syncs, "a sync once someone is logged in")

	c.post("/logout", nil)
	require.False(t, f.srv.Unlocked())
	clock.fire <- time.Time{}
	clock.next(t)
	assert.Equal(t, 1, f.sync.syncs, "no sync once the data is locked again")
}
