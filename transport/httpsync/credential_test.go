package httpsync_test

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/transport/httpsync"
)

const (
	replicaA = "0123456789abcdef0123456789abcdef"
	replicaB = "fedcba9876543210fedcba9876543210"
)

func newCA(t *testing.T) *httpsync.DeviceCA {
	t.Helper()
	ca, err := httpsync.NewDeviceCA("test CA", time.Now(), 24*time.Hour)
	require.NoError(t, err, "create a device CA")
	return ca
}

func TestCredentialFile(t *testing.T) {
	ca := newCA(t)
	cred, err := ca.Enrol(httpsync.Enrolment{
		Replica: replicaA, Clinic: "kamuga-dispensary", Device: "kamuga-tablet-1", Valid: time.Hour,
		CloudURL: "https://127.0.0.1:8443", CloudReplica: replicaB, ServerTrust: []*x509.Certificate{ca.Cert},
	})
	require.NoError(t, err, "enrol a device")
	assert.Equal(t, httpsync.Device{
		Replica: replicaA, Clinic: "kamuga-dispensary", Name: "kamuga-tablet-1",
		Serial: cred.Device.Serial, NotAfter: cred.Cert.NotAfter,
	}, cred.Device, "the credential names the device it was issued for")

	dir := t.TempDir()
	path := filepath.Join(dir, "device.pem")
	require.NoError(t, cred.WriteFile(path))
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "a credential is readable by its owner only")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, 1, "writing a credential leaves no temporary file behind")

	data, err := os.ReadFile(path)
	require.NoError(t, err)
	pair, err := tls.X509KeyPair(data, data)
	require.NoError(t, err, "standard tools (curl --cert FILE) can load the credential as a key pair")
	assert.True(t, cred.Cert.Equal(pair.Leaf), "the device certificate comes first")

	got, err := httpsync.ReadCredentialFile(path)
	require.NoError(t, err, "read the credential back")
	assert.Equal(t, cred.Device, got.Device)
	assert.True(t, cred.Key.Equal(got.Key), "the key survives the file")
	assert.True(t, cred.Cert.Equal(got.Cert), "the certificate survives the file")
	require.Len(t, got.ServerTrust, 1)
	assert.True(t, ca.Cert.Equal(got.ServerTrust[0]), "the server trust survives the file")
	assert.Equal(t, "https://127.0.0.1:8443", got.CloudURL)
	assert.Equal(t, replicaB, got.CloudReplica)

	require.NoError(t, os.Chmod(path, 0o644))
	_, err = httpsync.ReadCredentialFile(path)
	require.Error(t, err, "a credential other users can read is refused")
	assert.Contains(t, err.Error(), "chmod 600", "the error says how to fix it")

	t.Run("a failed write leaves nothing behind", func(t *testing.T) {
		dir := t.TempDir()
		target := filepath.Join(dir, "taken")
		require.NoError(t, os.Mkdir(target, 0o700))
		require.NoError(t, os.WriteFile(filepath.Join(target, "x"), nil, 0o600))
		require.Error(t, cred.WriteFile(target), "cannot replace a directory")
		entries, err := os.ReadDir(dir)
		require.NoError(t, err)
		require.Len(t, entries, 1, "only the directory remains: no temporary file")
	})
}

func TestParseCredentialRefuses(t *testing.T) {
	ca := newCA(t)
	a, err := ca.Enrol(httpsync.Enrolment{Replica: replicaA, Clinic: "kamuga", Device: "a"})
	require.NoError(t, err)
	b, err := ca.Enrol(httpsync.Enrolment{Replica: replicaB, Clinic: "kamuga", Device: "b"})
	require.NoError(t, err)
	mixed := *a
	mixed.Key = b.Key
	mixedPEM, err := mixed.MarshalPEM()
	require.NoError(t, err)
	caPEM, _, err := ca.MarshalPEM()
	require.NoError(t, err)
	for name, data := range map[string][]byte{
		"empty":                   nil,
		"garbage":                 []byte("hello"),
		"a bare certificate":      caPEM,
		"a key of another device": mixedPEM,
	} {
		_, err := httpsync.ParseCredential(data)
		assert.Error(t, err, "%s is not a credential", name)
	}
}

func TestEnrolRefuses(t *testing.T) {
	ca := newCA(t)
	for name, e := range map[string]httpsync.Enrolment{
		"no replica":            {Clinic: "kamuga", Device: "a"},
		"a short replica":       {Replica: "abcd", Clinic: "kamuga", Device: "a"},
		"an upper-case replica": {Replica: "0123456789ABCDEF0123456789ABCDEF", Clinic: "kamuga", Device: "a"},
		"no clinic":             {Replica: replicaA, Device: "a"},
		"a clinic with a space": {Replica: replicaA, Clinic: "kamuga dispensary", Device: "a"},
		"no device name":        {Replica: replicaA, Clinic: "kamuga"},
		"negative validity":     {Replica: replicaA, Clinic: "kamuga", Device: "a", Valid: -time.Hour},
		"a bad cloud replica":   {Replica: replicaA, Clinic: "kamuga", Device: "a", CloudReplica: "x"},
	} {
		_, err := ca.Enrol(e)
		assert.Error(t, err, "enrolment with %s is refused", name)
	}
}

func TestVerifyDevice(t *testing.T) {
	ca := newCA(t)
	other := newCA(t)
	now := time.Now()
	enrol := func(ca *httpsync.DeviceCA, at time.Time, valid time.Duration) []*x509.Certificate {
		cred, err := ca.Enrol(httpsync.Enrolment{Replica: replicaA, Clinic: "kamuga", Device: "tablet", Now: at, Valid: valid})
		require.NoError(t, err)
		return []*x509.Certificate{cred.Cert}
	}
	serverPEM, keyPEM, err := ca.IssueServerCert([]string{"127.0.0.1"}, now, time.Hour)
	require.NoError(t, err)
	server, err := tls.X509KeyPair(serverPEM, keyPEM)
	require.NoError(t, err)
	serverCert, err := x509.ParseCertificate(server.Certificate[0])
	require.NoError(t, err)

	dev, err := httpsync.VerifyDevice(enrol(ca, now, time.Hour), ca.Pool(), now)
	require.NoError(t, err, "a device enrolled by this CA is accepted")
	assert.Equal(t, replicaA, dev.Replica)
	assert.Equal(t, "kamuga", dev.Clinic)

	for _, tc := range []struct {
		name  string
		chain []*x509.Certificate
		want  error
	}{
		{"no certificate", nil, httpsync.ErrNoCredential},
		{"expired", enrol(ca, now.Add(-2*time.Hour), time.Hour), httpsync.ErrCredentialExpired},
		{"not yet valid", enrol(ca, now.Add(2*time.Hour), time.Hour), httpsync.ErrCredentialExpired},
		{"issued by another CA", enrol(other, now, time.Hour), httpsync.ErrCredentialRejected},
		{"a server certificate", []*x509.Certificate{serverCert}, httpsync.ErrCredentialRejected},
		{"the CA itself", []*x509.Certificate{ca.Cert}, httpsync.ErrCredentialRejected},
	} {
		_, err := httpsync.VerifyDevice(tc.chain, ca.Pool(), now)
		assert.ErrorIs(t, err, tc.want, "%s", tc.name)
		assert.ErrorIs(t, err, httpsync.ErrUnauthorized, "%s is unauthorised", tc.name)
	}
}

func TestOpenDeviceCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	ca, created, err := httpsync.OpenDeviceCA(dir, time.Now())
	require.NoError(t, err)
	assert.True(t, created, "a CA is created in an empty directory")
	fi, err := os.Stat(filepath.Join(dir, "ca.key"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "the CA key is readable by its owner only")

	again, created, err := httpsync.OpenDeviceCA(dir, time.Now())
	require.NoError(t, err)
	assert.False(t, created, "an existing CA is loaded, not replaced")
	assert.True(t, ca.Cert.Equal(again.Cert), "the same CA is loaded")

	require.NoError(t, os.Remove(filepath.Join(dir, "ca.crt")))
	_, _, err = httpsync.OpenDeviceCA(dir, time.Now())
	require.Error(t, err, "a CA with a missing certificate is not silently replaced")
	assert.Contains(t, err.Error(), "backup")
}
