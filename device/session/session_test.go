package session_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/device/login"
	"github.com/chartsync/chartsync/device/session"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
)

var light = login.Params{Memory: 64, Time: 1, Threads: 1}

var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// policy is a device of clinic kamuga whose roster holds an
// administrator, a nurse (password "nurse-pass-1") and a disabled
// clerk (password "clerk-pass-1"); noUsers leaves the roster empty.
func policy(t *testing.T, noUsers bool) (session.Policy, *replica.Replica) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	r, err := replica.Open(ctx, filepath.Join(dir, "replica.db"), replica.Config{Clinic: "kamuga"})
	require.NoError(t, err)
	t.Cleanup(func() { r.Close() })
	if !noUsers {
		admin := record.Author{UserID: "u-admin", Name: "Admin", Role: record.RoleAdministrator, Device: "tab"}
		for _, u := range []struct {
			id, pw string
			role   record.Role
		}{{"u-admin", "admin-pass-1", record.RoleAdministrator}, {"u-amina", "nurse-pass-1", record.RoleNurse}, {"u-clerk", "clerk-pass-1", record.RoleRegistrationClerk}} {
			h, err := login.Hash(u.pw, light)
			require.NoError(t, err)
			_, err = r.UpdateUser(ctx, "kamuga", admin, record.UserUpdate{UserID: u.id, Name: u.id, Role: u.role, PasswordHash: h})
			require.NoError(t, err)
		}
		_, err = r.UpdateUser(ctx, "kamuga", admin, record.UserUpdate{UserID: "u-clerk", Disable: true})
		require.NoError(t, err)
	}
	g, err := login.OpenGuard(filepath.Join(dir, "guard.json"), login.Policy{DecoyParams: light}, func() time.Time { return t0 })
	require.NoError(t, err)
	return session.Policy{Clinic: "kamuga", Device: "tab", Users: r, Guard: g}, r
}

// TestLogin: each way a login ends, as a typed error a caller can word
// its own way, and the user as an Author of the device when it succeeds.
func TestLogin(t *testing.T) {
	tests := []struct {
		name     string
		noUsers  bool
		user, pw string
		want     error
		left     int // for a wrong password
	}{
		{"the right password", false, "u-amina", "nurse-pass-1", nil, 0},
		{"a wrong password", false, "u-amina", "wrong-pass-1", session.ErrWrongPassword, 4},
		{"a name not on the roster counts alike", false, "u-nobody", "nurse-pass-1", session.ErrWrongPassword, 4},
		{"a disabled account, with its password", false, "u-clerk", "clerk-pass-1", session.ErrDisabled, 0},
		{"a disabled account, with a wrong password, says nothing of it", false, "u-clerk", "wrong-pass-1", session.ErrWrongPassword, 4},
		{"no roster yet", true, "u-amina", "nurse-pass-1", session.ErrNoUsers, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, _ := policy(t, tt.noUsers)
			au, err := p.Login(context.Background(), tt.user, tt.pw)
			if tt.want == nil {
				require.NoError(t, err)
				assert.Equal(t, record.Author{UserID: "u-amina", Name: "u-amina", Role: record.RoleNurse, Device: "tab"}, au)
				return
			}
			require.ErrorIs(t, err, tt.want)
			var wp *session.WrongPasswordError
			if errors.As(err, &wp) {
				assert.Equal(t, tt.left, wp.Left, "tries left before the lockout")
			} else {
				assert.Zero(t, tt.left, "a wrong password says how many tries are left")
			}
		})
	}
}

// TestLockout: five wrong passwords lock the name out; then even the
// right one is refused with the guard's lockout, until it ends.
func TestLockout(t *testing.T) {
	p, _ := policy(t, false)
	ctx := context.Background()
	for i := 4; i >= 0; i-- {
		_, err := p.Login(ctx, "u-amina", "wrong-pass-1")
		var wp *session.WrongPasswordError
		require.ErrorAs(t, err, &wp)
		assert.Equal(t, i, wp.Left)
	}
	_, err := p.Login(ctx, "u-amina", "nurse-pass-1")
	var lo *login.LockedOutError
	require.ErrorAs(t, err, &lo, "locked out")
	assert.ErrorIs(t, err, login.ErrLockedOut)
}

// TestAuthor: the roster's word on a logged-in user at every use.
func TestAuthor(t *testing.T) {
	p, r := policy(t, false)
	ctx := context.Background()
	au, err := p.Author(ctx, "u-amina")
	require.NoError(t, err)
	assert.Equal(t, record.RoleNurse, au.Role)
	admin := record.Author{UserID: "u-admin", Name: "Admin", Role: record.RoleAdministrator, Device: "tab"}
	_, err = r.UpdateUser(ctx, "kamuga", admin, record.UserUpdate{UserID: "u-amina", Role: record.RoleClinician})
	require.NoError(t, err)
	au, err = p.Author(ctx, "u-amina")
	require.NoError(t, err)
	assert.Equal(t, record.RoleClinician, au.Role, "a changed role applies at once")
	_, err = p.Author(ctx, "u-clerk")
	assert.ErrorIs(t, err, session.ErrDisabled)
	_, err = p.Author(ctx, "u-gone")
	assert.ErrorIs(t, err, session.ErrRemoved)
}

// TestExpired: a session ends after its idle time without use, or when
// its last use is in the future by more than the clock skew.
func TestExpired(t *testing.T) {
	tests := []struct {
		name string
		last time.Time
		idle time.Duration
		want bool
	}{
		{"just used", t0, 0, false},
		{"idle exactly the default", t0.Add(-session.DefaultIdle), 0, false},
		{"idle longer than the default", t0.Add(-session.DefaultIdle - time.Second), 0, true},
		{"idle less than its own idle time", t0.Add(-time.Hour), 2 * time.Hour, false},
		{"idle longer than its own idle time", t0.Add(-2 * time.Minute), time.Minute, true},
		{"a little in the future", t0.Add(30 * time.Second), 0, false},
		{"a clock set back", t0.Add(2 * time.Minute), 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, session.Expired(tt.last, t0, tt.idle))
		})
	}
}

// TestFile: a session file round-trips; Use records a use and ends an
// idle session, removing its file; a missing file is ErrNotLoggedIn and
// a damaged one ErrCorruptFile.
func TestFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "session.json")
	_, err := session.ReadFile(path)
	require.ErrorIs(t, err, session.ErrNotLoggedIn)
	f := session.File{Author: record.Author{UserID: "u-amina", Name: "Amina", Role: record.RoleNurse, Device: "tab"}, Since: t0, Idle: 10 * time.Minute}
	require.NoError(t, f.WriteFile(path))
	got, err := session.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, f, got)

	used, err := session.Use(path, t0.Add(9*time.Minute))
	require.NoError(t, err)
	assert.Equal(t, t0.Add(9*time.Minute), used.Last)
	_, err = session.Use(path, t0.Add(18*time.Minute))
	require.NoError(t, err, "idle time counts from the last use")
	_, err = session.Use(path, t0.Add(29*time.Minute))
	assert.ErrorIs(t, err, session.ErrIdle)
	assert.ErrorIs(t, err, session.ErrNotLoggedIn)
	_, err = os.Stat(path)
	assert.ErrorIs(t, err, os.ErrNotExist, "an ended session's file is removed")

	for _, bad := range []string{"", "{", `{"user":"u1","role":"nurse"} {}`, `{"user":"u1","role":"wizard"}`, `{"role":"nurse"}`, `{"user":"u1","role":"nurse","idle":-1}`, `{"user":"u1","role":"nurse","extra":1}`} {
		require.NoError(t, os.WriteFile(path, []byte(bad), 0o600))
		_, err := session.ReadFile(path)
		assert.ErrorIs(t, err, session.ErrCorruptFile, "%q", bad)
	}
	require.NoError(t, session.RemoveFile(path))
	require.NoError(t, session.RemoveFile(path), "logging out twice is no error")
}
