package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestStateKeepsSystems runs on both kinds of state: a system added
// through one handle is found by its token through another, a second
// active system of one name is refused, and a revocation is seen by the
// other handle at its next look-up.
func TestStateKeepsSystems(t *testing.T) {
	for name, mk := range backends(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			open := mk(t)
			st, other := open(), open()
			list, err := other.Systems(ctx)
			require.NoError(t, err)
			assert.Empty(t, list, "no systems at first")

			now := time.Now()
			hie, hieToken, err := newSystem("national-hie", now)
			require.NoError(t, err)
			require.NoError(t, st.AddSystem(ctx, hie))
			dhis, dhisToken, err := newSystem("dhis2-mediator", now.Add(time.Second))
			require.NoError(t, err)
			require.NoError(t, st.AddSystem(ctx, dhis))

			again, _, err := newSystem("national-hie", now)
			require.NoError(t, err)
			assert.ErrorIs(t, other.AddSystem(ctx, again), errSystemExists, "one active system per name")

			got, err := other.SystemByToken(ctx, hashToken(hieToken))
			require.NoError(t, err, "another handle finds the system by its token")
			assert.Equal(t, hie, got)
			got, err = other.SystemByToken(ctx, hashToken(dhisToken))
			require.NoError(t, err)
			assert.Equal(t, "dhis2-mediator", got.Name)
			_, err = other.SystemByToken(ctx, hashToken(hieToken+"x"))
			assert.ErrorIs(t, err, errNoSystem, "an unknown token finds nothing")

			list, err = other.Systems(ctx)
			require.NoError(t, err)
			assert.Equal(t, []system{hie, dhis}, list, "the systems, oldest first")

			at := now.Add(time.Minute)
			rev, err := st.RevokeSystem(ctx, "national-hie", at)
			require.NoError(t, err)
			assert.Equal(t, hie.ID, rev.ID)
			got, err = other.SystemByToken(ctx, hashToken(hieToken))
			require.NoError(t, err)
			assert.Equal(t, at.UTC().Truncate(time.Microsecond), got.Revoked, "the other handle sees the revocation at once")
			_, err = other.RevokeSystem(ctx, "national-hie", at)
			assert.ErrorIs(t, err, errNoSystem, "nothing left to revoke")

			// The name may be given to a new system, with a new token.
			renewed, renewedToken, err := newSystem("national-hie", at)
			require.NoError(t, err)
			require.NoError(t, other.AddSystem(ctx, renewed))
			got, err = st.SystemByToken(ctx, hashToken(renewedToken))
			require.NoError(t, err)
			assert.True(t, got.Revoked.IsZero())
			got, err = st.SystemByToken(ctx, hashToken(hieToken))
			require.NoError(t, err)
			assert.False(t, got.Revoked.IsZero(), "the old token stays revoked")
			list, err = st.Systems(ctx)
			require.NoError(t, err)
			assert.Len(t, list, 3, "revoked systems stay listed")
		})
	}
}

func TestNewSystem(t *testing.T) {
	s, token, err := newSystem("dhis2.kisumu_district-1", time.Now())
	require.NoError(t, err)
	assert.True(t, wellFormedToken(token))
	assert.Len(t, token, 43, "32 bytes, base64url without padding")
	assert.Equal(t, hashToken(token), s.TokenHash)
	assert.Regexp(t, `^[0-9a-f]{32}$`, s.ID)
	s2, token2, err := newSystem("other", time.Now())
	require.NoError(t, err)
	assert.NotEqual(t, token, token2, "every token is fresh")
	assert.NotEqual(t, s.ID, s2.ID)
	for _, bad := range []string{"", "-lead", "has space", "semi;colon", strings.Repeat("a", 65), "ünicode"} {
		_, _, err := newSystem(bad, time.Now())
		assert.ErrorIs(t, err, errBadSystemName, "%q", bad)
	}
	for _, bad := range []string{"", token[:42], token + "A", strings.ReplaceAll(token, token[:1], "+"), token[:42] + "="} {
		assert.False(t, wellFormedToken(bad), "%q is no token", bad)
	}
}

// TestSystemsCommand adds, lists and revokes a system on the command
// line: the token is printed once and kept nowhere.
func TestSystemsCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cloud-data")
	at := []string{"-dir", dir}
	token := addSystem(t, at, "national-hie")
	code, stdout, _ := cloud(t, "systems", "add", "-name", "dhis2-mediator", "-dir", dir)
	require.Equal(t, 0, code)
	assert.Contains(t, stdout, "cloud systems revoke -dir "+dir+" -name dhis2-mediator", "add says how to revoke, here")

	data, err := os.ReadFile(filepath.Join(dir, fileSystems))
	require.NoError(t, err)
	assert.NotContains(t, string(data), token, "the state keeps no token")
	fi, err := os.Stat(filepath.Join(dir, fileSystems))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	code, _, stderr := cloud(t, "systems", "add", "-name", "national-hie", "-dir", dir)
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "already has this name")

	code, stdout, _ = cloud(t, "systems", "list", "-dir", dir)
	require.Equal(t, 0, code)
	assert.Contains(t, stdout, "national-hie")
	assert.Contains(t, stdout, "active")
	assert.NotContains(t, stdout, token, "list never shows a token")

	code, stdout, stderr = cloud(t, "systems", "revoke", "-dir", dir, "-name", "national-hie")
	require.Equal(t, 0, code, "revoke: %s", stderr)
	assert.Contains(t, stdout, "Revoked system national-hie")
	code, stdout, _ = cloud(t, "systems", "list", "-dir", dir)
	require.Equal(t, 0, code)
	assert.Contains(t, stdout, "revoked 20")
	code, _, stderr = cloud(t, "systems", "revoke", "-dir", dir, "-name", "national-hie")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "no active system")

	for _, args := range [][]string{
		{"systems"},
		{"systems", "add", "-dir", dir},
		{"systems", "launch", "-dir", dir},
		{"systems", "list", "-name", "x", "-dir", dir},
		{"systems", "add", "-name", "x", "extra", "-dir", dir},
	} {
		code, _, stderr := cloud(t, args...)
		assert.Equal(t, 2, code, "%q is a usage error", args)
		assert.Contains(t, stderr, "usage: cloud systems")
	}
	code, _, stderr = cloud(t, "systems", "add", "-name", "bad name", "-dir", dir)
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "a system's name is")
}

var reToken = regexp.MustCompile(`\n\n([A-Za-z0-9_-]{43})\n\n`)

// addSystem runs "cloud systems add" and returns the token it prints.
func addSystem(t *testing.T, at []string, name string) string {
	t.Helper()
	code, stdout, stderr := cloud(t, append([]string{"systems", "add", "-name", name}, at...)...)
	require.Equal(t, 0, code, "systems add: %s", stderr)
	m := reToken.FindStringSubmatch(stdout)
	require.NotNil(t, m, "systems add prints the token on a line of its own:\n%s", stdout)
	return m[1]
}
