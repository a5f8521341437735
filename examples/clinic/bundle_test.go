package main

import (
	"context"
	"crypto/x509"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/transport/file"
	"github.com/chartsync/chartsync/transport/httpsync"
)

// TestBundleFilesByUSB: a device with no signal exports its changes to a
// stick's folder; the cloud imports them and writes its reply there; the
// device imports the reply, and the next export has nothing new; the
// reply imported again is reported as imported before, not refused. A
// folder that is not there is named in the error.
func TestBundleFilesByUSB(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	short := nurseWithPatient(t, dir)
	cloud, err := replica.Open(ctx, filepath.Join(t.TempDir(), "cloud.db"), replica.Config{})
	require.NoError(t, err)
	t.Cleanup(func() { cloud.Close() })
	now := time.Now()
	ca, err := httpsync.NewDeviceCA("test cloud", now, time.Hour)
	require.NoError(t, err)
	req, err := device.ParseRequest(mustRead(t, filepath.Join(dir, "enrol-request.pem")))
	require.NoError(t, err)
	cred, err := ca.Enrol(httpsync.Enrolment{Replica: req.ReplicaID, Clinic: req.Clinic, Device: "tab-1", PublicKey: req.SignKey, Now: now,
		CloudURL: "https://127.0.0.1:1", CloudReplica: cloud.ID(), ServerTrust: []*x509.Certificate{ca.Cert}})
	require.NoError(t, err)
	credPath := filepath.Join(t.TempDir(), "tab.pem")
	require.NoError(t, cred.WriteFile(credPath))
	code, _, errOut := clinic(t, dir, "connect", "-credential", credPath)
	require.Zero(t, code, errOut)

	stick := t.TempDir()
	code, _, errOut = clinic(t, dir, "export-bundle")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "-to is required")
	code, _, errOut = clinic(t, dir, "export-bundle", "-to", filepath.Join(stick, "missing"))
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "missing")
	assert.Contains(t, errOut, "not a folder")

	code, out, errOut := clinic(t, dir, "export-bundle", "-to", stick)
	require.Zero(t, code, errOut)
	assert.Regexp(t, `Wrote .*\.bundle: \d+ changes, `, out)

	// At the cloud: the device's file in, the reply out.
	im, err := file.Import(ctx, cloud, stick)
	require.NoError(t, err)
	require.Equal(t, 1, im.Accepted)
	got, err := cloud.Find(ctx, "", 0)
	require.NoError(t, err)
	require.Len(t, got, 1, "the cloud holds the device's chart")
	assert.Equal(t, short, got[0].ID[:8])
	_, err = file.Export(ctx, cloud, req.ReplicaID, stick)
	require.NoError(t, err)

	code, out, errOut = clinic(t, dir, "import-bundle", "-from", stick)
	require.Zero(t, code, errOut)
	assert.Contains(t, out, "Imported 1 bundle file of 1")
	code, out, errOut = clinic(t, dir, "status")
	require.Zero(t, code, errOut)
	assert.Contains(t, out, "Changes waiting to be sent: 0", "the cloud's reply acknowledged the device's changes")

	// The same stick again: the reply, imported before, changes nothing.
	code, out, errOut = clinic(t, dir, "import-bundle", "-from", stick)
	require.Zero(t, code, "a file imported before is no failure: %s", errOut)
	assert.Contains(t, out, "Already imported")
	assert.NotContains(t, out, "Refused")

	code, out, errOut = clinic(t, dir, "import-bundle", "-from", t.TempDir())
	require.Zero(t, code, errOut)
	assert.Contains(t, out, "No bundle file for this device")

	code, _, errOut = clinic(t, dir, "relay")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "-phone is required")
	code, _, errOut = clinic(t, dir, "relay", "-phone", filepath.Join(stick, "no-phone"))
	assert.Equal(t, 1, code)
	assert.Regexp(t, regexp.MustCompile(`no-phone.*not a folder`), errOut)
}
