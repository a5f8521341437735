package replica_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/replica"
)

// filesHold reports whether any file in dir holds s.
func filesHold(t *testing.T, dir, s string) bool {
	t.Helper()
	found := false
	require.NoError(t, filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		found = found || bytes.Contains(b, []byte(s))
		return nil
	}))
	return found
}

// TestEncryptedReplica: a replica opened with Config.DatabaseKey keeps
// nothing of its charts in clear on disk, its backups neither; without
// the key, or with another, it does not open (ErrWrongKey) and nothing
// is changed; with it, it opens, backs up and restores.
func TestEncryptedReplica(t *testing.T) {
	ctx := context.Background()
	key, other := make([]byte, 32), make([]byte, 32)
	_, _ = rand.Read(key)
	_, _ = rand.Read(other)
	dir := t.TempDir()
	path := filepath.Join(dir, "tablet", "replica.db")
	r, err := replica.Open(ctx, path, replica.Config{DatabaseKey: key})
	require.NoError(t, err)
	id := register(t, r, "Wanjiru", "Nyambura", "Kamuga")
	edit(t, r, id, allergy(1))
	backup := filepath.Join(dir, "backup", "tablet.db")
	require.NoError(t, os.MkdirAll(filepath.Dir(backup), 0o700))
	require.NoError(t, replica.BackupConfig(ctx, path, backup, replica.Config{DatabaseKey: key}), "a backup while the replica is open")
	assert.False(t, filesHold(t, dir, "Nyambura"), "no file holds the patient's name, open")
	require.NoError(t, r.Close())
	assert.False(t, filesHold(t, dir, "Nyambura"), "nor closed")

	for name, cfg := range map[string]replica.Config{"no key": {}, "another key": {DatabaseKey: other}} {
		_, err := replica.Open(ctx, path, cfg)
		require.ErrorIs(t, err, replica.ErrWrongKey, name)
		var damaged *replica.DamagedError
		assert.NotErrorAs(t, err, &damaged, "%s: a wrong key is not damage", name)
	}
	_, err = replica.Open(ctx, path, replica.Config{DatabaseKey: key[:16]})
	require.Error(t, err, "a key of the wrong size is refused")

	r, err = replica.Open(ctx, path, replica.Config{DatabaseKey: key})
	require.NoError(t, err)
	assert.Equal(t, "Nyambura", view(t, r, id).Patient.FamilyName)
	require.NoError(t, r.Close())

	_, err = replica.RestoreAs(ctx, backup, filepath.Join(dir, "without-key", "replica.db"), replica.Config{})
	require.ErrorIs(t, err, replica.ErrWrongKey, "the backup needs the key")
	restored, err := replica.RestoreAs(ctx, backup, filepath.Join(dir, "tablet-2", "replica.db"), replica.Config{DatabaseKey: key})
	require.NoError(t, err)
	defer restored.Close()
	assert.Len(t, view(t, restored, id).Allergies, 1)
	assert.False(t, filesHold(t, dir, "Nyambura"), "the restored replica is encrypted too")
}
