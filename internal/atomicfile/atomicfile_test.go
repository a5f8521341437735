package atomicfile_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/internal/atomicfile"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "key")
	require.NoError(t, atomicfile.Write(path, []byte("one"), atomicfile.Options{}))
	require.NoError(t, atomicfile.Write(path, []byte("two"), atomicfile.Options{}))
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, "two", string(got))
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "files are private by default")

	require.NoError(t, atomicfile.Write(path, []byte("three"), atomicfile.Options{Perm: 0o644}))
	fi, err = os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o644), fi.Mode().Perm())
}

func TestWriteFailureLeavesOldContentAndNoTemporary(t *testing.T) {
	boom := errors.New("disk on fire")
	for name, o := range map[string]atomicfile.Options{
		"sync fails":   {Sync: func(*os.File) error { return boom }},
		"rename fails": {Rename: func(string, string) error { return boom }},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "f")
			require.NoError(t, os.WriteFile(path, []byte("old"), 0o600))
			err := atomicfile.Write(path, []byte("new"), o)
			require.ErrorIs(t, err, boom)
			got, err := os.ReadFile(path)
			require.NoError(t, err)
			assert.Equal(t, "old", string(got))
			entries, err := os.ReadDir(dir)
			require.NoError(t, err)
			assert.Len(t, entries, 1, "the temporary file was left behind")
		})
	}
	err := atomicfile.Write(filepath.Join(t.TempDir(), "missing", "f"), []byte("x"), atomicfile.Options{})
	assert.ErrorIs(t, err, os.ErrNotExist, "the directory is not created")
}

// TestWriteDirSyncFailureIsReportedAndRetryable: when the directory cannot
// be synced after the rename, the new content is in place but not yet
// durable; Write says so with ErrDirNotSynced, and a later SyncDir of the
// same directory is what makes it durable (and reports its own failure
// the same way).
func TestWriteDirSyncFailureIsReportedAndRetryable(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	require.NoError(t, os.WriteFile(path, []byte("old"), 0o600))
	boom := errors.New("directory sync: I/O error")
	var synced []string
	err := atomicfile.Write(path, []byte("new"), atomicfile.Options{SyncDir: func(d string) error {
		synced = append(synced, d)
		return boom
	}})
	require.ErrorIs(t, err, boom)
	require.ErrorIs(t, err, atomicfile.ErrDirNotSynced, "a failed directory sync is told apart from a write that left the old content")
	assert.Equal(t, []string{dir}, synced, "the directory of the file is synced, once")
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, "new", string(got), "the rename happened: the new content is in place, only its durability is in doubt")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, 1, "no temporary file is left behind")

	require.NoError(t, atomicfile.SyncDir(dir), "SyncDir can be run again on its own")
	err = atomicfile.SyncDir(filepath.Join(dir, "missing"))
	require.ErrorIs(t, err, atomicfile.ErrDirNotSynced, "SyncDir's own failures are ErrDirNotSynced too")
	require.ErrorIs(t, err, os.ErrNotExist)
}

// TestWriteReportsALeftoverTemporary: a temporary file that cannot be
// removed after a failure is reported with the failure, not hidden.
func TestWriteReportsALeftoverTemporary(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	boom := errors.New("disk on fire")
	err := atomicfile.Write(path, []byte("new"), atomicfile.Options{Rename: func(oldpath, newpath string) error {
		// Replace the temporary with a non-empty directory, which
		// os.Remove cannot remove.
		require.NoError(t, os.Remove(oldpath))
		require.NoError(t, os.MkdirAll(filepath.Join(oldpath, "x"), 0o700))
		return boom
	}})
	require.ErrorIs(t, err, boom)
	assert.Contains(t, err.Error(), "remove temporary", "the leftover temporary is reported")
}
