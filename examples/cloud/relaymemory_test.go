package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestFileRelayMemory: the data directory's relay memory remembers the
// bundles applied across runs, forgets those expired, and refuses a
// damaged file with an error naming it instead of forgetting everything.
func TestFileRelayMemory(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), fileRelayApplied)
	now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	m, err := openFileRelayMemory(path, now)
	require.NoError(t, err)
	require.NoError(t, m.Remember(ctx, "a-1", now.Add(time.Hour)))
	require.NoError(t, m.Remember(ctx, "a-2", now.Add(48*time.Hour)))
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	for _, tc := range []struct {
		at   time.Time
		want map[string]bool
	}{
		{now, map[string]bool{"a-1": true, "a-2": true, "b-1": false}},
		{now.Add(2 * time.Hour), map[string]bool{"a-1": false, "a-2": true}},
	} {
		again, err := openFileRelayMemory(path, tc.at)
		require.NoError(t, err)
		for key, want := range tc.want {
			got, err := again.Applied(ctx, key)
			require.NoError(t, err)
			assert.Equal(t, want, got, "%s at %v", key, tc.at)
		}
	}

	require.NoError(t, os.WriteFile(path, []byte(`{"a-1": "soon"`), 0o600))
	_, err = openFileRelayMemory(path, now)
	require.Error(t, err)
	assert.Contains(t, err.Error(), path)
}

// FuzzFileRelayMemory: any file where the relay memory lives opens with a
// memory or an error, never a panic, and what opens answers and
// remembers.
func FuzzFileRelayMemory(f *testing.F) {
	f.Add([]byte(`{"0123-4567":1767225600}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"a":-1,"b":9223372036854775807}`))
	f.Add([]byte(`[1,2]`))
	now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), fileRelayApplied)
		require.NoError(t, os.WriteFile(path, data, 0o600))
		m, err := openFileRelayMemory(path, now)
		if err != nil {
			return
		}
		ctx := context.Background()
		require.NoError(t, m.Remember(ctx, "k", now.Add(time.Hour)))
		again, err := openFileRelayMemory(path, now)
		require.NoError(t, err, "a memory this program wrote opens")
		ok, err := again.Applied(ctx, "k")
		require.NoError(t, err)
		assert.True(t, ok)
	})
}
