package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/internal/dirlock"
)

// Two copies of the app on one data directory would write as one actor:
// a command that opens the replica while another holds the directory is
// refused, with a message naming the directory and the holder, and runs
// once the other has finished.
func TestOneProcessPerDataDirectory(t *testing.T) {
	dir := t.TempDir()
	code, _, errOut := clinicIn(t, dir, twice("admin-pass-1"), "init", "-clinic", "kamuga", "-device", "tab-1", "-admin", "u-admin", "-admin-name", "Admin")
	require.Zero(t, code, errOut)
	code, _, errOut = clinicIn(t, dir, "admin-pass-1\n", "login", "-user", "u-admin")
	require.Zero(t, code, errOut)

	other, err := dirlock.Acquire(dir) // another clinic process, e.g. a sync
	require.NoError(t, err)
	code, _, errOut = clinic(t, dir, "find")
	assert.Equal(t, 1, code, "the second copy is refused")
	assert.Contains(t, errOut, dir)
	assert.Contains(t, errOut, "is in use by process")
	assert.Contains(t, errOut, "still running")

	require.NoError(t, other.Release())
	code, _, errOut = clinic(t, dir, "find")
	assert.Zero(t, code, errOut)
}
