package login_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/device/login"
)

var t0 = time.Date(2026, 3, 1, 14, 0, 0, 0, time.UTC)

const (
	aminaPassword = "amina's password"
	wrongPassword = "not her password"
)

// clock is a settable clock for a Guard.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func (c *clock) Advance(d time.Duration) { c.Set(c.Now().Add(d)) }

// fixture is a Guard on a state file in a temporary directory, with a
// settable clock and a count of the hashes it computes.
type fixture struct {
	path     string
	policy   login.Policy
	durable  bool // fsync every write, as in use; otherwise FastWrites
	clock    *clock
	guard    *login.Guard
	verifies *atomic.Int64
	amina    string // amina's roster hash
}

func newFixture(t *testing.T, p login.Policy) *fixture {
	t.Helper()
	return newFixtureDurable(t, p, false)
}

// newFixtureDurable makes a fixture whose Guard writes as in use (fsync
// of the file and the directory) if durable.
func newFixtureDurable(t *testing.T, p login.Policy, durable bool) *fixture {
	t.Helper()
	if p.DecoyParams == (login.Params{}) {
		p.DecoyParams = tiny
	}
	amina, err := login.Hash(aminaPassword, tiny)
	require.NoError(t, err)
	f := &fixture{path: filepath.Join(t.TempDir(), "login-state.json"), policy: p, durable: durable, clock: &clock{t: t0}, amina: amina}
	f.reopen(t)
	return f
}

// reopen simulates a restart of the app: a new Guard from the same file.
func (f *fixture) reopen(t *testing.T) {
	t.Helper()
	g, err := login.OpenGuard(f.path, f.policy, f.clock.Now)
	require.NoError(t, err, "opening the guard")
	f.guard, f.verifies = g, login.CountVerifies(g)
	if !f.durable {
		login.FastWrites(g)
	}
}

func (f *fixture) fail(t *testing.T, user string, times int) error {
	t.Helper()
	var err error
	for range times {
		err = f.guard.Login(user, f.amina, wrongPassword)
		require.ErrorIs(t, err, login.ErrWrongPassword, "a wrong password for %s", user)
	}
	return err
}

func requireLockedUntil(t *testing.T, err error, user string, until time.Time) {
	t.Helper()
	require.ErrorIs(t, err, login.ErrLockedOut, "%s should be locked out", user)
	var locked *login.LockedOutError
	require.ErrorAs(t, err, &locked)
	assert.Equal(t, user, locked.User)
	assert.True(t, until.Equal(locked.Until), "lockout of %s should end at %v, ends at %v", user, until, locked.Until)
}

func TestLockoutAfterMaxFailures(t *testing.T) {
	f := newFixture(t, login.Policy{})
	for i := 1; i <= 4; i++ {
		err := f.guard.Login("amina", f.amina, wrongPassword)
		require.ErrorIs(t, err, login.ErrWrongPassword)
		assert.NotErrorIs(t, err, login.ErrLockedOut, "failure %d should not lock yet", i)
		assert.Contains(t, err.Error(), fmt.Sprintf("%d more ", 5-i), "the error should count the tries left")
		failures, until := f.guard.Status("amina")
		assert.Equal(t, i, failures)
		assert.True(t, until.IsZero(), "not locked after %d failures", i)
		f.clock.Advance(time.Second)
	}
	lockedAt := f.clock.Now()
	err := f.guard.Login("amina", f.amina, wrongPassword)
	require.ErrorIs(t, err, login.ErrWrongPassword, "the fifth failure is a wrong password")
	requireLockedUntil(t, err, "amina", lockedAt.Add(time.Minute))
	assert.EqualValues(t, 5, f.verifies.Load(), "five passwords checked")

	err = f.guard.Login("amina", f.amina, aminaPassword)
	requireLockedUntil(t, err, "amina", lockedAt.Add(time.Minute))
	assert.NotErrorIs(t, err, login.ErrWrongPassword, "a locked name's password is not judged")
	assert.EqualValues(t, 5, f.verifies.Load(), "no hash may be computed for a locked name")
	assert.Equal(t, `login: "amina" is locked out after 5 failed logins until 14:01:04 UTC on 1 Mar 2026; wait, or ask an administrator to unlock`, err.Error())

	failures, until := f.guard.Status("amina")
	assert.Equal(t, 5, failures)
	assert.Equal(t, lockedAt.Add(time.Minute), until)
}

func TestLockoutEndsAndSuccessResets(t *testing.T) {
	f := newFixture(t, login.Policy{})
	f.fail(t, "amina", 5)
	f.clock.Advance(time.Minute - time.Nanosecond)
	requireLockedUntil(t, f.guard.Login("amina", f.amina, aminaPassword), "amina", t0.Add(time.Minute))

	f.clock.Advance(time.Nanosecond)
	require.NoError(t, f.guard.Login("amina", f.amina, aminaPassword), "the lockout is over")
	failures, until := f.guard.Status("amina")
	assert.Zero(t, failures, "a success resets the count")
	assert.True(t, until.IsZero())

	// A success also forgets past lockouts: the next one is a first one.
	err := f.fail(t, "amina", 5)
	requireLockedUntil(t, err, "amina", f.clock.Now().Add(time.Minute))
}

func TestLockoutsDoubleUpToMaxLockout(t *testing.T) {
	f := newFixture(t, login.Policy{MaxFailures: 3, Lockout: time.Minute, MaxLockout: 5 * time.Minute})
	for _, want := range []time.Duration{1, 2, 4, 5, 5} {
		err := f.fail(t, "amina", 3)
		requireLockedUntil(t, err, "amina", f.clock.Now().Add(want*time.Minute))
		f.clock.Advance(want * time.Minute)
		failures, until := f.guard.Status("amina")
		assert.Zero(t, failures, "the count starts again when a lockout ends")
		assert.True(t, until.IsZero(), "the lockout of %d minutes is over", want)
	}
	err := f.guard.Login("amina", f.amina, wrongPassword)
	assert.Contains(t, err.Error(), "2 more tries before this name is locked for 5 minutes")
}

func TestLockoutSurvivesRestart(t *testing.T) {
	f := newFixtureDurable(t, login.Policy{}, true)
	f.fail(t, "amina", 3)
	f.reopen(t)
	failures, _ := f.guard.Status("amina")
	assert.Equal(t, 3, failures, "failures survive a restart")

	err := f.fail(t, "amina", 2)
	requireLockedUntil(t, err, "amina", t0.Add(time.Minute))

	f.reopen(t)
	err = f.guard.Login("amina", f.amina, aminaPassword)
	requireLockedUntil(t, err, "amina", t0.Add(time.Minute))
	assert.Zero(t, f.verifies.Load(), "no hash is computed for a name locked before the restart")

	f.clock.Advance(time.Minute)
	f.reopen(t)
	require.NoError(t, f.guard.Login("amina", f.amina, aminaPassword))
	f.reopen(t)
	failures, until := f.guard.Status("amina")
	assert.Zero(t, failures, "the success was saved")
	assert.True(t, until.IsZero())
}

func TestLockoutLevelSurvivesRestart(t *testing.T) {
	f := newFixture(t, login.Policy{})
	f.fail(t, "amina", 5)
	f.clock.Advance(time.Minute)
	f.reopen(t)
	err := f.fail(t, "amina", 5)
	requireLockedUntil(t, err, "amina", f.clock.Now().Add(2*time.Minute))
}

func TestClockSetBack(t *testing.T) {
	tests := []struct {
		name string
		back time.Time
	}{
		{"a day", t0.Add(-24 * time.Hour)},
		{"a second", t0.Add(-time.Second)},
		{"to 1970", time.Unix(0, 0).UTC()},
		{"to year 1", time.Date(1, 1, 1, 0, 0, 1, 0, time.UTC)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, login.Policy{})
			f.fail(t, "amina", 5) // locked until t0+1m
			f.clock.Set(tt.back)

			err := f.guard.Login("amina", f.amina, aminaPassword)
			requireLockedUntil(t, err, "amina", tt.back.Add(time.Minute))
			assert.EqualValues(t, 5, f.verifies.Load(), "no hash for a locked name")

			// A restart while the clock is still behind does not extend
			// the lockout again.
			f.clock.Advance(30 * time.Second)
			f.reopen(t)
			_, until := f.guard.Status("amina")
			assert.Equal(t, tt.back.Add(time.Minute), until, "the lockout is re-dated once")

			f.clock.Advance(30 * time.Second)
			require.NoError(t, f.guard.Login("amina", f.amina, aminaPassword),
				"the lockout ends one lockout after the clock was set back")
		})
	}
}

func TestClockSetBackKeepsCounts(t *testing.T) {
	f := newFixture(t, login.Policy{})
	f.fail(t, "amina", 4)
	f.clock.Set(t0.Add(-365 * 24 * time.Hour))
	failures, _ := f.guard.Status("amina")
	assert.Equal(t, 4, failures, "a clock set back does not reset the count")
	err := f.fail(t, "amina", 1)
	requireLockedUntil(t, err, "amina", f.clock.Now().Add(time.Minute))
}

func TestClockSetBackNeverLocksLongerThanMaxLockout(t *testing.T) {
	f := newFixture(t, login.Policy{MaxFailures: 1, Lockout: time.Minute, MaxLockout: 4 * time.Minute})
	for range 5 {
		f.fail(t, "amina", 1)
		f.clock.Set(f.clock.Now().Add(-48 * time.Hour))
		_, until := f.guard.Status("amina")
		assert.LessOrEqual(t, until.Sub(f.clock.Now()), 4*time.Minute, "a lockout never runs past MaxLockout from now")
		f.clock.Advance(4 * time.Minute)
		_, until = f.guard.Status("amina")
		assert.True(t, until.IsZero(), "MaxLockout after the clock was set back, the name is unlocked")
	}
}

func TestForgetAfter(t *testing.T) {
	f := newFixture(t, login.Policy{})
	f.fail(t, "amina", 5)
	f.clock.Advance(time.Minute)
	f.fail(t, "amina", 2)
	f.clock.Advance(24 * time.Hour)
	failures, _ := f.guard.Status("amina")
	assert.Zero(t, failures, "failures are forgotten after a day")
	err := f.fail(t, "amina", 5)
	requireLockedUntil(t, err, "amina", f.clock.Now().Add(time.Minute))
}

func TestUnlock(t *testing.T) {
	f := newFixture(t, login.Policy{})
	f.fail(t, "amina", 5)
	require.NoError(t, f.guard.Unlock("amina"))
	failures, until := f.guard.Status("amina")
	assert.Zero(t, failures)
	assert.True(t, until.IsZero(), "unlocked")

	f.fail(t, "amina", 5)
	require.NoError(t, f.guard.Unlock("amina"))
	f.reopen(t)
	require.NoError(t, f.guard.Login("amina", f.amina, aminaPassword), "the unlock was saved")
	assert.NoFileExists(t, f.path+".fast", "FastWrites leaves nothing behind")
	assert.EqualValues(t, 1, f.verifies.Load())

	assert.NoError(t, f.guard.Unlock("nobody"), "unlocking a name with no record does nothing")
	assert.ErrorIs(t, f.guard.Unlock(""), login.ErrBadUserName)
}

func TestUnknownNameLooksLikeWrongPassword(t *testing.T) {
	f := newFixture(t, login.Policy{})
	for i := 1; i <= 5; i++ {
		known := f.guard.Login("amina", f.amina, wrongPassword)
		unknown := f.guard.Login("zawadi", "", wrongPassword)
		require.ErrorIs(t, unknown, login.ErrWrongPassword, "an unknown name is a wrong password")
		assert.Equal(t, known.Error(), strings.ReplaceAll(unknown.Error(), "zawadi", "amina"),
			"attempt %d: an unknown name must read exactly like a wrong password", i)
		assert.Equal(t, errors.Is(known, login.ErrLockedOut), errors.Is(unknown, login.ErrLockedOut))
		assert.EqualValues(t, 2*i, f.verifies.Load(), "a hash is computed for the unknown name too")
	}
	known := f.guard.Login("amina", f.amina, aminaPassword)
	unknown := f.guard.Login("zawadi", "", aminaPassword)
	assert.Equal(t, known.Error(), strings.ReplaceAll(unknown.Error(), "zawadi", "amina"), "unknown names lock alike")
	failures, until := f.guard.Status("zawadi")
	assert.Equal(t, 5, failures)
	assert.Equal(t, t0.Add(time.Minute), until)
}

func TestMalformedHashIsNotCounted(t *testing.T) {
	f := newFixture(t, login.Policy{})
	for range 10 {
		err := f.guard.Login("amina", "$argon2id$v=19$m=64,t=99,p=1$"+goodSalt+"$"+goodKey, aminaPassword)
		require.ErrorIs(t, err, login.ErrMalformedHash)
	}
	failures, _ := f.guard.Status("amina")
	assert.Zero(t, failures, "no password could match a malformed hash, so nothing was tried")
}

func TestBadUserName(t *testing.T) {
	f := newFixture(t, login.Policy{})
	for _, name := range []string{"", strings.Repeat("a", login.MaxUserName+1), "amina\x00", "amina\n", "\xff\xfe", "a\u0085b"} {
		err := f.guard.Login(name, f.amina, aminaPassword)
		assert.ErrorIs(t, err, login.ErrBadUserName, "name %q", name)
		failures, _ := f.guard.Status(name)
		assert.Zero(t, failures)
	}
	assert.Zero(t, f.verifies.Load(), "no hash for a name that cannot be recorded")
	assert.NoError(t, f.guard.Login(strings.Repeat("é", login.MaxUserName/2), f.amina, aminaPassword),
		"a name of MaxUserName bytes is fine")
}

func TestOpenGuardCreatesPrivateFile(t *testing.T) {
	f := newFixtureDurable(t, login.Policy{}, true)
	fi, err := os.Stat(f.path)
	require.NoError(t, err, "OpenGuard should create the state file")
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "the state file is private")

	_, err = login.OpenGuard(filepath.Join(t.TempDir(), "missing", "login-state.json"), login.Policy{DecoyParams: tiny}, nil)
	assert.ErrorIs(t, err, login.ErrStateNotSaved, "a directory that cannot be written is reported at once")
}

func TestCorruptStateRefused(t *testing.T) {
	f := newFixture(t, login.Policy{})
	f.fail(t, "amina", 5)
	good, err := os.ReadFile(f.path)
	require.NoError(t, err)
	require.Contains(t, string(good), `"failures":5`)

	tests := map[string][]byte{
		"empty file":          {},
		"garbage":             []byte("\x00\x01garbage"),
		"empty object":        []byte("{}"),
		"JSON null":           []byte("null"),
		"truncated":           good[:len(good)/2],
		"count changed":       []byte(strings.Replace(string(good), `"failures":5`, `"failures":1`, 1)),
		"lockout removed":     []byte(strings.Replace(string(good), `"locked_until"`, `"locked_untix"`, 1)),
		"version changed":     []byte(strings.Replace(string(good), `"version":1`, `"version":2`, 1)),
		"checksum dropped":    []byte(string(good[:strings.Index(string(good), `,"sha256"`)]) + "}"),
		"second document":     append(append([]byte{}, good...), good...),
		"over MaxStateSize":   []byte(strings.Repeat(" ", login.MaxStateSize+1)),
		"unknown field":       []byte(strings.Replace(string(good), `{"format"`, `{"extra":1,"format"`, 1)),
		"field twice":         []byte(strings.Replace(string(good), `{"format"`, `{"version":1,"format"`, 1)),
		"users not an array":  []byte(`{"format":"chartsync-login-guard","version":1,"users":{},"sha256":""}`),
		"another app's state": []byte(strings.Replace(string(good), `chartsync-login-guard`, `chartsync-login-guarx`, 1)),
	}
	for name, data := range tests {
		t.Run(name, func(t *testing.T) {
			require.NoError(t, os.WriteFile(f.path, data, 0o600))
			g, err := login.OpenGuard(f.path, f.policy, f.clock.Now)
			require.ErrorIs(t, err, login.ErrCorruptState, "a damaged file must not unlock everyone")
			assert.Nil(t, g)

			require.NoError(t, login.ResetGuard(f.path), "an administrator resets the state")
			f.reopen(t)
			failures, _ := f.guard.Status("amina")
			assert.Zero(t, failures, "after a reset the counts start again")
		})
	}
	require.NoError(t, os.WriteFile(f.path, good, 0o600))
	f.reopen(t)
	_, until := f.guard.Status("amina")
	assert.Equal(t, t0.Add(time.Minute), until, "the undamaged file still reads")
}

func TestResetGuardRemovesLeftovers(t *testing.T) {
	f := newFixture(t, login.Policy{})
	dir := filepath.Dir(f.path)
	leftover := filepath.Join(dir, ".login-state.json.tmp-12345")
	require.NoError(t, os.WriteFile(leftover, []byte("half a write"), 0o600))
	other := filepath.Join(dir, "roster.bin")
	require.NoError(t, os.WriteFile(other, []byte("not ours"), 0o600))

	f.reopen(t)
	assert.NoFileExists(t, leftover, "OpenGuard removes temporary files a crash left")
	require.NoError(t, os.WriteFile(leftover, []byte("half a write"), 0o600))
	require.NoError(t, login.ResetGuard(f.path))
	assert.NoFileExists(t, leftover)
	assert.NoFileExists(t, f.path)
	assert.FileExists(t, other, "other files are left alone")
	assert.NoError(t, login.ResetGuard(f.path), "resetting twice is fine")
}

func TestStateNotSavedRefusesLogin(t *testing.T) {
	f := newFixtureDurable(t, login.Policy{}, true)
	diskFull := errors.New("no space left on device")
	login.FailRenames(f.guard, diskFull)

	err := f.guard.Login("amina", f.amina, wrongPassword)
	require.ErrorIs(t, err, login.ErrStateNotSaved, "a failure that cannot be saved refuses the login")
	assert.ErrorIs(t, err, diskFull, "the cause is kept")
	failures, _ := f.guard.Status("amina")
	assert.Equal(t, 1, failures, "the failure still counts in memory")

	err = f.guard.Login("amina", f.amina, aminaPassword)
	assert.ErrorIs(t, err, login.ErrStateNotSaved, "even the right password is refused while the state cannot be saved")

	entries, err := os.ReadDir(filepath.Dir(f.path))
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	assert.Equal(t, []string{"login-state.json", "login-state.json.lock"}, names, "no temporary file is left behind")

	login.FailRenames(f.guard, nil)
	require.NoError(t, f.guard.Login("amina", f.amina, aminaPassword), "once the disk has room the login works")
}

func TestEvictsOldestUnlockedName(t *testing.T) {
	f := newFixture(t, login.Policy{MaxFailures: 2, MaxUsers: 3})
	f.fail(t, "locked", 2)
	for _, name := range []string{"b", "c", "d"} {
		f.clock.Advance(time.Second)
		f.fail(t, name, 1)
	}
	status := func(name string) int { n, _ := f.guard.Status(name); return n }
	_, until := f.guard.Status("locked")
	assert.False(t, until.IsZero(), "a locked name is never dropped")
	assert.Zero(t, status("b"), "the oldest unlocked name was dropped")
	assert.Equal(t, 1, status("c"))
	assert.Equal(t, 1, status("d"))

	f.reopen(t)
	assert.Equal(t, 1, status("d"), "the bounded state was saved")
}

func TestTooManyLockouts(t *testing.T) {
	f := newFixture(t, login.Policy{MaxFailures: 1, MaxUsers: 2})
	f.fail(t, "a", 1)
	f.fail(t, "b", 1)
	before := f.verifies.Load()
	err := f.guard.Login("amina", f.amina, aminaPassword)
	require.ErrorIs(t, err, login.ErrTooManyLockouts, "an attempt that could not be counted is refused")
	assert.Equal(t, before, f.verifies.Load(), "no hash computed")

	f.clock.Advance(time.Minute)
	require.NoError(t, f.guard.Login("amina", f.amina, aminaPassword), "once a lockout ends there is room again")
}

func TestConcurrentLogins(t *testing.T) {
	f := newFixture(t, login.Policy{})
	var wrong, locked, ok atomic.Int64
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			err := f.guard.Login("amina", f.amina, wrongPassword)
			if errors.Is(err, login.ErrWrongPassword) {
				wrong.Add(1)
			} else if errors.Is(err, login.ErrLockedOut) {
				locked.Add(1)
			}
		})
		wg.Go(func() {
			if f.guard.Login("baraka", f.amina, aminaPassword) == nil {
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	assert.EqualValues(t, 5, wrong.Load(), "exactly MaxFailures guesses are judged")
	assert.EqualValues(t, 15, locked.Load(), "the rest are refused unjudged")
	assert.EqualValues(t, 20, ok.Load(), "other names log in meanwhile")
}

func TestPolicyValidate(t *testing.T) {
	tests := []struct {
		name string
		p    login.Policy
		ok   bool
	}{
		{"zero is the default", login.Policy{}, true},
		{"one failure", login.Policy{MaxFailures: 1}, true},
		{"a day", login.Policy{MaxLockout: 24 * time.Hour, ForgetAfter: 24 * time.Hour}, true},
		{"negative failures", login.Policy{MaxFailures: -1}, false},
		{"101 failures", login.Policy{MaxFailures: 101}, false},
		{"lockout under a second", login.Policy{Lockout: time.Millisecond}, false},
		{"negative lockout", login.Policy{Lockout: -time.Minute}, false},
		{"cap below first lockout", login.Policy{Lockout: 2 * time.Hour}, false},
		{"cap over a day", login.Policy{MaxLockout: 25 * time.Hour, ForgetAfter: 48 * time.Hour}, false},
		{"forget before the cap", login.Policy{ForgetAfter: time.Minute}, false},
		{"too many users", login.Policy{MaxUsers: login.MaxUsersLimit + 1}, false},
		{"negative users", login.Policy{MaxUsers: -1}, false},
		{"bad decoy", login.Policy{DecoyParams: login.Params{Memory: 64, Time: 1}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.p.Validate()
			if tt.ok {
				assert.NoError(t, err)
				return
			}
			assert.ErrorIs(t, err, login.ErrInvalidPolicy)
			_, err = login.OpenGuard(filepath.Join(t.TempDir(), "s.json"), tt.p, nil)
			assert.ErrorIs(t, err, login.ErrInvalidPolicy, "OpenGuard refuses the policy")
		})
	}
	g, err := login.OpenGuard(filepath.Join(t.TempDir(), "s.json"), login.Policy{DecoyParams: tiny}, nil)
	require.NoError(t, err)
	assert.Equal(t, login.Policy{MaxFailures: 5, Lockout: time.Minute, MaxLockout: time.Hour,
		ForgetAfter: 24 * time.Hour, MaxUsers: login.MaxUsersLimit, DecoyParams: tiny}, g.Policy(), "the defaults")
}

// TestGuardsInSeveralProcessesShareTheCount: copies of an app started at
// once (each with its own Guard on the one state file) cannot each get
// MaxFailures guesses.
func TestGuardsInSeveralProcessesShareTheCount(t *testing.T) {
	path := filepath.Join(t.TempDir(), "login-state.json")
	hash, err := login.Hash(aminaPassword, tiny)
	require.NoError(t, err)
	var guards []*login.Guard
	for range 10 {
		g, err := login.OpenGuard(path, login.Policy{DecoyParams: tiny}, nil)
		require.NoError(t, err)
		guards = append(guards, g)
	}
	var wg sync.WaitGroup
	for _, g := range guards {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = g.Login("amina", hash, wrongPassword)
		}()
	}
	wg.Wait()
	for i, g := range guards {
		err := g.Login("amina", hash, aminaPassword)
		require.ErrorIs(t, err, login.ErrLockedOut, "guard %d let amina in after 10 wrong guesses made at once", i)
	}
}

// TestUnsavedFailuresMergeWithOtherProcesses: a guard whose save failed
// keeps its failure and, once it can save again, adds it to what other
// processes recorded meanwhile instead of overwriting it.
func TestUnsavedFailuresMergeWithOtherProcesses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "login-state.json")
	hash, err := login.Hash(aminaPassword, tiny)
	require.NoError(t, err)
	open := func() *login.Guard {
		g, err := login.OpenGuard(path, login.Policy{DecoyParams: tiny}, nil)
		require.NoError(t, err)
		return g
	}
	a, b := open(), open()
	login.FailRenames(a, errors.New("disk full"))
	require.ErrorIs(t, a.Login("amina", hash, wrongPassword), login.ErrStateNotSaved)
	for range 3 {
		require.ErrorIs(t, b.Login("amina", hash, wrongPassword), login.ErrWrongPassword)
	}
	login.FailRenames(a, nil)
	err = a.Login("amina", hash, wrongPassword)
	require.ErrorIs(t, err, login.ErrLockedOut, "1 unsaved + 3 + 1 failures lock amina out")
	require.ErrorIs(t, b.Login("amina", hash, aminaPassword), login.ErrLockedOut, "the other process sees the lockout")
}

// TestUnsavedStateMergesWithoutSurprises: a failed save that landed all
// the same is not counted twice; an administrator's Unlock in another
// process is not undone by this one's unsaved failures; this process's own
// Unlock, unsaved, is kept.
func TestUnsavedStateMergesWithoutSurprises(t *testing.T) {
	hash, err := login.Hash(aminaPassword, tiny)
	require.NoError(t, err)
	open := func(path string) *login.Guard {
		g, err := login.OpenGuard(path, login.Policy{DecoyParams: tiny}, nil)
		require.NoError(t, err)
		return g
	}
	t.Run("a failed save that landed", func(t *testing.T) {
		g := open(filepath.Join(t.TempDir(), "s.json"))
		login.WriteThenFail(g, errors.New("directory sync failed"))
		require.ErrorIs(t, g.Login("amina", hash, wrongPassword), login.ErrStateNotSaved)
		login.FailRenames(g, nil)
		failures, _ := g.Status("amina")
		assert.Equal(t, 1, failures, "the failure is counted once")
	})
	t.Run("a failed save that landed, then another process's failure", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "s.json")
		a, b := open(path), open(path)
		login.WriteThenFail(a, errors.New("directory sync failed"))
		require.ErrorIs(t, a.Login("amina", hash, wrongPassword), login.ErrStateNotSaved)
		require.ErrorIs(t, b.Login("amina", hash, wrongPassword), login.ErrWrongPassword)
		login.FailRenames(a, nil)
		failures, _ := a.Status("amina")
		assert.Equal(t, 2, failures, "two wrong passwords, each counted once")
	})
	t.Run("an administrator's unlock elsewhere", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "s.json")
		a, admin := open(path), open(path)
		for range 4 {
			require.ErrorIs(t, a.Login("amina", hash, wrongPassword), login.ErrWrongPassword)
		}
		login.FailRenames(a, errors.New("disk full"))
		require.ErrorIs(t, a.Login("amina", hash, wrongPassword), login.ErrStateNotSaved)
		require.NoError(t, admin.Unlock("amina"))
		login.FailRenames(a, nil)
		failures, until := a.Status("amina")
		assert.LessOrEqual(t, failures, 1, "the administrator's unlock stands; at most the unsaved failure counts")
		assert.True(t, until.IsZero(), "no lockout comes back")
		require.NoError(t, a.Login("amina", hash, aminaPassword))
	})
	t.Run("its own unlock, unsaved", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "s.json")
		g := open(path)
		for range 5 {
			_ = g.Login("amina", hash, wrongPassword)
		}
		require.ErrorIs(t, g.Login("amina", hash, aminaPassword), login.ErrLockedOut)
		login.FailRenames(g, errors.New("disk full"))
		require.ErrorIs(t, g.Unlock("amina"), login.ErrStateNotSaved)
		login.FailRenames(g, nil)
		require.NoError(t, g.Login("amina", hash, aminaPassword), "the unlock is kept and saved at the next chance")
	})
}
