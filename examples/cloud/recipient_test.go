package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/device/keyring"
	"github.com/chartsync/chartsync/replica/store/postgres/pgtest"
)

// TestRecipientOpensAKeyring: cloud recipient prints the age recipient of
// the cloud's key pair. A device keyring made with it as the recovery
// recipient is opened with the cloud's identity file (what clinic
// unlock-recovery -identity does); a cloud that has no key pair yet says
// so and makes none.
func TestRecipientOpensAKeyring(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cloud")
	code, _, stderr := cloud(t, "recipient", "-dir", dir)
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "no key pair yet")
	assert.NoFileExists(t, filepath.Join(dir, dirCA, fileIdentity), "asking makes no key pair")

	_, stop := server(t, dir)
	defer stop()
	enrolKeys(t, "kamuga-tablet-1", "kamuga", []string{"-dir", dir})
	code, stdout, stderr := cloud(t, "recipient", "-dir", dir)
	require.Equal(t, 0, code, stderr)
	rcpt := strings.TrimSpace(stdout)
	require.True(t, strings.HasPrefix(rcpt, "age1"), "an age recipient: %q", rcpt)

	ring := filepath.Join(t.TempDir(), "keyring")
	key, err := keyring.Create(ring, rcpt, "u-admin", "admin-pass-1")
	require.NoError(t, err)
	id, err := device.Load(filepath.Join(dir, dirCA, fileIdentity))
	require.NoError(t, err)
	got, err := keyring.Recover(ring, id.AgeIdentity())
	require.NoError(t, err, "the cloud's identity opens a keyring made for its recipient")
	assert.Equal(t, key, got)
}

// TestRecipientInTheDatabase: with -db, the recipient is the one key pair
// every node shares, the same at each asking.
func TestRecipientInTheDatabase(t *testing.T) {
	conn, schema := pgtest.ConnString(t), pgtest.Schema(t)
	db := []string{"-db", conn, "-db-schema", schema, "-key-file", t.TempDir() + "/operator.key"}
	code, _, stderr := cloud(t, append([]string{"init"}, db...)...)
	require.Equal(t, 0, code, "init: %s", stderr)
	code, first, stderr := cloud(t, append([]string{"recipient"}, db...)...)
	require.Equal(t, 0, code, stderr)
	code, again, stderr := cloud(t, append([]string{"recipient"}, db...)...)
	require.Equal(t, 0, code, stderr)
	assert.True(t, strings.HasPrefix(first, "age1"))
	assert.Equal(t, first, again)
}
