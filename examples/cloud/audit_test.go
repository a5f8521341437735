package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/audit"
)

// TestAuditRefusesAnAlteredLog: audit says what to do when the access log
// was edited, and that a cloud without one has nothing to export yet.
func TestAuditRefusesAnAlteredLog(t *testing.T) {
	dir := t.TempDir()
	code, _, stderr := cloud(t, "audit", "-dir", dir)
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "no access log yet")

	path := filepath.Join(dir, fileAccess)
	log, err := audit.Open(path, audit.Config{})
	require.NoError(t, err)
	dev := "0123456789abcdef0123456789abcdef"
	require.NoError(t, log.Append(context.Background(),
		audit.Entry{Action: audit.Write, Device: dev, Chart: "c1", User: "u-achieng", Changes: 1},
		audit.Entry{Action: audit.Read, Device: dev, Chart: "c2", Changes: 1}))
	require.NoError(t, log.Close())
	code, stdout, _ := cloud(t, "audit", "-dir", dir)
	require.Equal(t, 0, code)
	assert.Contains(t, stdout, "u-achieng")

	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, bytes.Replace(data, []byte("u-achieng"), []byte("u-someone"), 1), 0o600))
	code, _, stderr = cloud(t, "audit", "-dir", dir)
	assert.Equal(t, 1, code, "an altered log is not exported")
	assert.Contains(t, stderr, "altered or damaged")
}
