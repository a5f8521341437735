package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/device/session"
)

// backdate moves the session's last use back by d, as if the tablet had
// been left alone that long.
func backdate(t *testing.T, dir string, d time.Duration) {
	t.Helper()
	path := filepath.Join(dir, "session.json")
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var s session.File
	require.NoError(t, json.Unmarshal(b, &s))
	s.Since, s.Last = s.Since.Add(-d), s.Last.Add(-d)
	require.NoError(t, writeJSON(path, s))
}

// TestIdleLogout: a user who has not used the app for longer than the
// session's idle time is logged out, and told so; one who keeps using it,
// or chose a longer idle time at login, is not.
func TestIdleLogout(t *testing.T) {
	tests := []struct {
		name      string
		login     []string // extra login flags
		away      time.Duration
		loggedOut bool
	}{
		{"within the default 15 minutes", nil, 10 * time.Minute, false},
		{"past the default 15 minutes", nil, 16 * time.Minute, true},
		{"past an idle time of 1h chosen at login", []string{"-idle", "1h"}, 61 * time.Minute, true},
		{"within an idle time of 1h chosen at login", []string{"-idle", "1h"}, 40 * time.Minute, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			clinicianDevice(t, dir, "kamuga", "tab-1")
			code, _, errOut := clinicIn(t, dir, "doctor-pass-1\n", append([]string{"login", "-user", "u1"}, tt.login...)...)
			require.Zero(t, code, errOut)
			code, _, errOut = clinic(t, dir, "register", "-given", "Wanjiru", "-family", "Mwangi", "-sex", "female", "-born-year", "1988")
			require.Zero(t, code, errOut)

			backdate(t, dir, tt.away)
			code, _, errOut = clinic(t, dir, "register", "-given", "Amina", "-family", "Okafor", "-sex", "female", "-born-year", "1990")
			if !tt.loggedOut {
				require.Zero(t, code, errOut)
				return
			}
			assert.NotZero(t, code, "nothing is saved for a user logged out")
			assert.Contains(t, errOut, "without use")
			assert.Contains(t, errOut, "clinic login")
			_, err := os.Stat(filepath.Join(dir, "session.json"))
			assert.ErrorIs(t, err, os.ErrNotExist, "the session is gone")
			_, err = os.Stat(filepath.Join(dir, "session.key"))
			assert.ErrorIs(t, err, os.ErrNotExist, "the data's key went with the session")
			code, _, errOut = clinic(t, dir, "find")
			assert.Equal(t, 1, code, "the data is locked once the session ended")
			assert.Contains(t, errOut, "encrypted")
			code, _, errOut = clinicIn(t, dir, "doctor-pass-1\n", "login", "-user", "u1")
			require.Zero(t, code, errOut)
			code, out, _ := clinic(t, dir, "find")
			require.Zero(t, code)
			assert.NotContains(t, out, "Amina")
		})
	}
	dir := t.TempDir()
	clinicianDevice(t, dir, "kamuga", "tab-1")
	code, _, errOut := clinicIn(t, dir, "doctor-pass-1\n", "login", "-user", "u1", "-idle", "30s")
	assert.Equal(t, 2, code, "an idle time under a minute is refused")
	assert.Contains(t, errOut, "-idle")
}
