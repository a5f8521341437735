package dirlock_test

import (
	"errors"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/internal/dirlock"
)

func TestASecondHolderIsRefusedUntilTheFirstReleases(t *testing.T) {
	dir := t.TempDir()
	first, err := dirlock.Acquire(dir)
	require.NoError(t, err)

	// flock locks belong to an open file, so a second open in this
	// process stands for a second program.
	_, err = dirlock.Acquire(dir)
	require.ErrorIs(t, err, dirlock.ErrLocked)
	var le *dirlock.LockedError
	require.True(t, errors.As(err, &le))
	assert.Equal(t, dir, le.Dir)
	assert.Equal(t, os.Getpid(), le.PID, "the error names the process holding the directory")
	assert.Contains(t, err.Error(), dir)

	require.NoError(t, first.Release())
	require.NoError(t, first.Release(), "releasing twice is safe")
	second, err := dirlock.Acquire(dir)
	require.NoError(t, err, "a released directory can be taken again")
	require.NoError(t, second.Release())
}

func TestAcquireNeedsTheDirectory(t *testing.T) {
	_, err := dirlock.Acquire(t.TempDir() + "/missing")
	require.Error(t, err)
	assert.NotErrorIs(t, err, dirlock.ErrLocked)
}
