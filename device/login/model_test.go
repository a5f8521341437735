package login_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/chartsync/chartsync/device/login"
)

// modelUser is the model's record of a name: what the Guard should know.
type modelUser struct {
	failures, level int
	last, until     time.Time
}

// model is the lockout policy written as plainly as possible, for a
// clock that only moves forward and fewer names than MaxUsers.
type model struct {
	p     login.Policy
	users map[string]*modelUser
}

func (m *model) lockFor(level int) time.Duration {
	if level-1 >= 40 {
		return m.p.MaxLockout
	}
	return min(m.p.Lockout<<(level-1), m.p.MaxLockout)
}

// at returns name's record as of now: a lockout that has ended is lifted
// and its count starts again; a record idle for ForgetAfter is gone.
func (m *model) at(name string, now time.Time) *modelUser {
	u := m.users[name]
	if u == nil {
		return nil
	}
	if !u.until.IsZero() && !now.Before(u.until) {
		u.until, u.failures = time.Time{}, 0
	}
	if u.until.IsZero() && now.Sub(u.last) >= m.p.ForgetAfter {
		delete(m.users, name)
		return nil
	}
	return u
}

type modelOutcome struct {
	locked    bool // refused as locked, unjudged
	wrong     bool // judged wrong (and locked, if lockedNow)
	lockedNow bool
	until     time.Time
}

func (m *model) login(name string, right bool, now time.Time) modelOutcome {
	u := m.at(name, now)
	if u != nil && now.Before(u.until) {
		return modelOutcome{locked: true, until: u.until}
	}
	if right {
		delete(m.users, name)
		return modelOutcome{}
	}
	if u == nil {
		u = &modelUser{}
		m.users[name] = u
	}
	u.failures++
	u.last = now
	if u.failures >= m.p.MaxFailures {
		u.level++
		u.until = now.Add(m.lockFor(u.level))
		return modelOutcome{wrong: true, lockedNow: true, until: u.until}
	}
	return modelOutcome{wrong: true}
}

func (m *model) status(name string, now time.Time) (int, time.Time) {
	u := m.at(name, now)
	switch {
	case u == nil:
		return 0, time.Time{}
	case now.Before(u.until):
		return u.failures, u.until
	}
	return u.failures, time.Time{}
}

var (
	modelKnown   = []string{"amina", "baraka", "chausiku"}
	modelUnknown = []string{"zawadi", "amnia"}
	modelNames   = append(slices.Clone(modelKnown), modelUnknown...)
)

// memoryDir is a temporary directory in memory (/dev/shm) where there is
// one, else on disk: the property tests save the state thousands of
// times, and on a busy disk even a rename without fsync waits for a flush.
func memoryDir(t *testing.T) string {
	dir, err := os.MkdirTemp("/dev/shm", "login-test-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func rosterHashes(t *testing.T) map[string]string {
	hashes := map[string]string{}
	for _, name := range modelKnown {
		h, err := login.Hash(name+" password", tiny)
		require.NoError(t, err)
		hashes[name] = h
	}
	return hashes
}

// drawPolicy draws a small policy: few failures, lockouts of seconds to
// minutes.
func drawPolicy(t *rapid.T) login.Policy {
	p := login.Policy{
		MaxFailures: rapid.IntRange(1, 4).Draw(t, "maxFailures"),
		Lockout:     time.Duration(rapid.IntRange(1, 120).Draw(t, "lockoutSeconds")) * time.Second,
		DecoyParams: tiny,
	}
	p.MaxLockout = p.Lockout * time.Duration(rapid.IntRange(1, 9).Draw(t, "capTimesLockout"))
	p.ForgetAfter = p.MaxLockout + time.Duration(rapid.IntRange(0, 7200).Draw(t, "forgetSecondsAfterCap"))*time.Second
	return p
}

// guardUnderTest is a Guard on a file, reopened at will, with its clock
// and hash counter.
type guardUnderTest struct {
	path     string
	policy   login.Policy
	clock    *clock
	guard    *login.Guard
	verifies int64 // hashes computed by earlier Guards on the file
	counter  interface{ Load() int64 }
}

func openGuardUnderTest(t *rapid.T, dir string, p login.Policy) *guardUnderTest {
	sub, err := os.MkdirTemp(dir, "")
	require.NoError(t, err)
	g := &guardUnderTest{path: filepath.Join(sub, "state.json"), policy: p, clock: &clock{t: t0}}
	g.reopen(t)
	return g
}

func (g *guardUnderTest) reopen(t *rapid.T) {
	if g.counter != nil {
		g.verifies += g.counter.Load()
	}
	guard, err := login.OpenGuard(g.path, g.policy, g.clock.Now)
	require.NoError(t, err, "reopening the guard from its file")
	g.guard, g.counter = guard, login.CountVerifies(guard)
	login.FastWrites(guard)
}

func (g *guardUnderTest) hashes() int64 { return g.verifies + g.counter.Load() }

// TestGuardMatchesModel runs random logins (right and wrong passwords,
// roster and unknown names), clock advances, restarts and unlocks against
// the Guard and the model, and checks they agree on every answer and
// every name's status.
func TestGuardMatchesModel(t *testing.T) {
	hashes := rosterHashes(t)
	dir := memoryDir(t)
	rapid.Check(t, func(t *rapid.T) {
		p := drawPolicy(t)
		g := openGuardUnderTest(t, dir, p)
		m := &model{p: p, users: map[string]*modelUser{}}

		t.Repeat(map[string]func(*rapid.T){
			"login": func(t *rapid.T) {
				name := rapid.SampledFrom(modelNames).Draw(t, "name")
				_, known := hashes[name]
				right := known && rapid.Bool().Draw(t, "right")
				password := name + " password"
				if !right {
					password = "a wrong guess"
				}
				now := g.clock.Now()
				before := g.hashes()
				err := g.guard.Login(name, hashes[name], password)
				want := m.login(name, right, now)

				var locked *login.LockedOutError
				switch {
				case want.locked:
					require.ErrorAs(t, err, &locked, "%s should be refused as locked", name)
					require.NotErrorIs(t, err, login.ErrWrongPassword)
					require.Equal(t, before, g.hashes(), "no hash for a locked name")
				case want.wrong:
					require.ErrorIs(t, err, login.ErrWrongPassword, "%s's attempt should be wrong", name)
					require.Equal(t, want.lockedNow, errors.As(err, &locked), "%s locked by this failure", name)
					require.Equal(t, before+1, g.hashes(), "one hash per judged attempt")
				default:
					require.NoError(t, err, "%s should log in", name)
					require.Equal(t, before+1, g.hashes(), "one hash per judged attempt")
				}
				if locked != nil {
					require.True(t, want.until.Equal(locked.Until), "%s locked until %v, model says %v", name, locked.Until, want.until)
				}
			},
			"wait": func(t *rapid.T) {
				limit := int64(2 * p.MaxLockout / time.Second)
				if rapid.IntRange(0, 9).Draw(t, "long") == 0 {
					limit = int64(2 * p.ForgetAfter / time.Second)
				}
				g.clock.Advance(time.Duration(rapid.Int64Range(0, limit).Draw(t, "seconds")) * time.Second)
			},
			"restart": func(t *rapid.T) { g.reopen(t) },
			"unlock": func(t *rapid.T) {
				name := rapid.SampledFrom(modelNames).Draw(t, "name")
				require.NoError(t, g.guard.Unlock(name))
				delete(m.users, name)
			},
			"": func(t *rapid.T) {
				now := g.clock.Now()
				for _, name := range modelNames {
					failures, until := g.guard.Status(name)
					wantFailures, wantUntil := m.status(name, now)
					require.Equal(t, wantFailures, failures, "failures of %s", name)
					require.True(t, wantUntil.Equal(until), "%s locked until %v, model says %v", name, until, wantUntil)
				}
			},
		})
	})
}

// TestGuardClockSetBack runs random logins while the clock jumps back as
// well as forward, and checks what the Guard promises about the clock: a
// lockout never runs past MaxLockout from the present reading, a jump back
// never shortens what remains of one, a locked name's password is never
// judged, and restarts change nothing.
func TestGuardClockSetBack(t *testing.T) {
	hashes := rosterHashes(t)
	dir := memoryDir(t)
	rapid.Check(t, func(t *rapid.T) {
		p := drawPolicy(t)
		g := openGuardUnderTest(t, dir, p)
		// When each name's lockout started (by the clock) and its length.
		lockStart := map[string]time.Time{}
		lockLength := map[string]time.Duration{}

		remaining := func() map[string]time.Duration {
			r := map[string]time.Duration{}
			now := g.clock.Now()
			for _, name := range modelNames {
				if _, until := g.guard.Status(name); !until.IsZero() {
					r[name] = until.Sub(now)
				}
			}
			return r
		}
		t.Repeat(map[string]func(*rapid.T){
			"login": func(t *rapid.T) {
				name := rapid.SampledFrom(modelNames).Draw(t, "name")
				right := rapid.Bool().Draw(t, "right")
				password := name + " password"
				if !right {
					password = "a wrong guess"
				}
				_, lockedBefore := g.guard.Status(name)
				before := g.hashes()
				err := g.guard.Login(name, hashes[name], password)
				if !lockedBefore.IsZero() {
					require.ErrorIs(t, err, login.ErrLockedOut, "%s was locked", name)
					require.Equal(t, before, g.hashes(), "no hash for a locked name")
					return
				}
				require.Equal(t, before+1, g.hashes())
				_, known := hashes[name]
				if right && known {
					require.NoError(t, err)
					return
				}
				require.ErrorIs(t, err, login.ErrWrongPassword)
				var locked *login.LockedOutError
				if errors.As(err, &locked) {
					lockStart[name] = g.clock.Now()
					lockLength[name] = locked.Until.Sub(lockStart[name])
				}
			},
			"wait": func(t *rapid.T) {
				g.clock.Advance(time.Duration(rapid.Int64Range(0, int64(2*p.MaxLockout/time.Second)).Draw(t, "seconds")) * time.Second)
			},
			"set clock back": func(t *rapid.T) {
				before := remaining()
				back := rapid.SampledFrom([]time.Duration{time.Second, time.Minute, 25 * time.Hour, 10 * 365 * 24 * time.Hour}).Draw(t, "back")
				g.clock.Advance(-back)
				after := remaining()
				now := g.clock.Now()
				for name, r := range before {
					require.GreaterOrEqual(t, after[name], r, "setting the clock back shortened %s's lockout", name)
					if now.Before(lockStart[name]) {
						require.Equal(t, lockLength[name], after[name],
							"the clock went back past the start of %s's lockout: it should restart in full", name)
						lockStart[name] = now
					} else {
						require.Equal(t, r+back, after[name], "the clock went back within %s's lockout", name)
					}
				}
			},
			"restart": func(t *rapid.T) {
				before := remaining()
				g.reopen(t)
				require.Equal(t, before, remaining(), "a restart changes no lockout")
			},
			"": func(t *rapid.T) {
				for name, r := range remaining() {
					require.Positive(t, r, name)
					require.LessOrEqual(t, r, p.MaxLockout, "%s locked for longer than MaxLockout", name)
				}
			},
		})
	})
}
