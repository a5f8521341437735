package session_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/device/session"
)

// FuzzDecode: a session file's decoder never panics, and what it accepts
// names a user and a valid role.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"user":"u-amina","name":"Amina","role":"nurse","device":"tab","since":"2026-03-02T09:00:00Z","last":"2026-03-02T09:05:00Z","idle":900000000000}`))
	f.Add([]byte(`{"user":"u1","role":"administrator","since":"2026-03-02T09:00:00Z"}`))
	f.Add([]byte(`{"user":"u1","role":"nurse","idle":-1}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var s session.File
		if err := session.Decode(b, &s); err != nil {
			require.ErrorIs(t, err, session.ErrCorruptFile)
			return
		}
		require.NotEmpty(t, s.UserID)
		require.True(t, s.Role.Valid())
		require.GreaterOrEqual(t, s.Idle, time.Duration(0))
	})
}
