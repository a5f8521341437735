package keyring_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/device/keyring"
	"github.com/chartsync/chartsync/replica/store"
	"github.com/chartsync/chartsync/replica/store/sqlite"
)

// small are parameters small enough for tests.
var small = keyring.Config{Params: keyring.Params{Memory: 64, Time: 1, Threads: 1}}

// TestKeyOpensTheDatabase: the key Create returns encrypts a clinic's
// database; the key a user's password unlocks opens it and reads the
// chart, and so does the key recovered with the recovery identity once
// every password is forgotten; a password change leaves the database's
// bytes as they were and the new password opens it; another device's
// key is refused.
func TestKeyOpensTheDatabase(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	ringPath := filepath.Join(dir, "keyring")
	dbPath := filepath.Join(dir, "replica.db")
	cloud, err := age.GenerateX25519Identity()
	require.NoError(t, err)

	key, err := small.Create(ringPath, cloud.Recipient().String(), "amina", "mango tree at the well")
	require.NoError(t, err)
	s, err := sqlite.OpenConfig(ctx, dbPath, sqlite.Config{Key: key})
	require.NoError(t, err)
	_, err = s.Write(ctx, store.Batch{
		Meta: map[string]string{"unsynced": "allergy to penicillin"},
		Charts: []store.Chart{{ID: "chart-1", GivenName: "Nyokabi", FamilyName: "Wambui-Kiprotich", Village: "Lwanda",
			Scope: []string{"north"}, Updated: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}},
	})
	require.NoError(t, err)
	require.NoError(t, s.Close())
	for _, name := range []string{"replica.db", "keyring"} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err)
		assert.False(t, bytes.Contains(data, []byte("Nyokabi")), "%s holds the patient's name", name)
	}

	reads := func(t *testing.T, key []byte, how string) {
		t.Helper()
		s, err := sqlite.OpenConfig(ctx, dbPath, sqlite.Config{Key: key})
		require.NoError(t, err, "the key from %s does not open the database", how)
		defer s.Close()
		v, err := s.Meta(ctx, "unsynced")
		require.NoError(t, err)
		assert.Equal(t, "allergy to penicillin", v, "the key from %s", how)
		c, err := s.Chart(ctx, "chart-1")
		require.NoError(t, err)
		assert.Equal(t, "Nyokabi", c.GivenName, "the key from %s", how)
	}

	unlocked, err := keyring.Unlock(ringPath, "amina", "mango tree at the well")
	require.NoError(t, err)
	reads(t, unlocked, "amina's password")

	before, err := os.ReadFile(dbPath)
	require.NoError(t, err)
	require.NoError(t, small.ChangePassword(ringPath, "amina", "mango tree at the well", "a new password at the clinic"))
	after, err := os.ReadFile(dbPath)
	require.NoError(t, err)
	assert.Equal(t, before, after, "changing a password rewrote the database")
	unlocked, err = keyring.Unlock(ringPath, "amina", "a new password at the clinic")
	require.NoError(t, err)
	reads(t, unlocked, "amina's new password")

	// Every password is forgotten: whoever holds the cloud's identity
	// recovers the key, reads the unsynced change and adds a user.
	recovered, err := keyring.Recover(ringPath, cloud)
	require.NoError(t, err)
	reads(t, recovered, "recovery")
	require.NoError(t, small.AddUser(ringPath, recovered, "admin", "the administrator's password"))
	unlocked, err = keyring.Unlock(ringPath, "admin", "the administrator's password")
	require.NoError(t, err)
	reads(t, unlocked, "the new administrator's password")

	otherDir := t.TempDir()
	otherKey, err := small.Create(filepath.Join(otherDir, "keyring"), cloud.Recipient().String(), "amina", "mango tree at the well")
	require.NoError(t, err)
	_, err = sqlite.OpenConfig(ctx, dbPath, sqlite.Config{Key: otherKey})
	require.ErrorIs(t, err, sqlite.ErrWrongKey, "another device's key (same user, same password) opens the database")
}
