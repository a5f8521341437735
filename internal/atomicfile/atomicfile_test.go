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
