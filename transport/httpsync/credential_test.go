package httpsync_test

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/store"
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

// newIdentity makes a device identity, as clinic init does on the device.
func newIdentity(t testing.TB, replicaID, clinic string) *device.Identity {
	t.Helper()
	id, err := device.Generate(replicaID, clinic)
	require.NoError(t, err)
	return id
}

func TestCredentialFile(t *testing.T) {
	ca := newCA(t)
	id := newIdentity(t, replicaA, "kamuga-dispensary")
	neighbour := newIdentity(t, replicaB, "kamuga-dispensary")
	authority, err := device.NewAuthority()
	require.NoError(t, err)
	now := time.Now()
	enrolment, err := authority.EnrolRequest(id.Request(), now, time.Hour)
	require.NoError(t, err)
	neighbourEnrolment, err := authority.Enrol(neighbour.Public(), now, time.Hour)
	require.NoError(t, err)
	roster, err := device.NewRoster(device.RosterConfig{Authorities: []device.TrustedAuthority{{Key: authority.PublicKey()}}})
	require.NoError(t, err)
	_, err = roster.Add(neighbourEnrolment)
	require.NoError(t, err)

	cred, err := ca.Enrol(httpsync.Enrolment{
		Replica: replicaA, Clinic: "kamuga-dispensary", Device: "kamuga-tablet-1", PublicKey: id.Public().SignKey, Valid: time.Hour,
		CloudURL: "https://127.0.0.1:8443", CloudReplica: replicaB, ServerTrust: []*x509.Certificate{ca.Cert},
	})
	require.NoError(t, err, "enrol a device")
	assert.Equal(t, httpsync.Device{
		Replica: replicaA, Clinic: "kamuga-dispensary", Name: "kamuga-tablet-1",
		Serial: cred.Device.Serial, NotAfter: cred.Cert.NotAfter,
	}, cred.Device, "the credential names the device it was issued for")
	assert.Equal(t, id.Public().SignKey, cred.Cert.PublicKey, "the certificate is for the device's own key")
	assert.Nil(t, cred.Key, "the cloud never has the device's private key")
	cred.Authority, cred.Enrolment, cred.Roster = authority.PublicKey(), enrolment, roster.Encode()

	dir := t.TempDir()
	path := filepath.Join(dir, "device.pem")
	require.NoError(t, cred.WriteFile(path))
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, 1, "writing a credential leaves no temporary file behind")

	data, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.NotContains(t, string(data), "PRIVATE KEY", "a credential file holds no private key")
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		assert.Contains(t, []string{"CERTIFICATE", "CHARTSYNC ENROLMENT", "CHARTSYNC ROSTER", "CHARTSYNC CLOUD"}, b.Type, "block %q", b.Type)
	}
	_, err = tls.X509KeyPair(data, data)
	assert.Error(t, err, "the file alone is not a TLS key pair")

	got, err := httpsync.ReadCredentialFile(path)
	require.NoError(t, err, "read the credential back")
	assert.Equal(t, cred.Device, got.Device)
	assert.Nil(t, got.Key, "no key is read from the file")
	assert.True(t, cred.Cert.Equal(got.Cert), "the certificate survives the file")
	require.Len(t, got.ServerTrust, 1)
	assert.True(t, ca.Cert.Equal(got.ServerTrust[0]), "the server trust survives the file")
	assert.Equal(t, "https://127.0.0.1:8443", got.CloudURL)
	assert.Equal(t, replicaB, got.CloudReplica)
	assert.Equal(t, authority.PublicKey(), got.Authority)
	assert.Equal(t, enrolment, got.Enrolment)

	// The relay roster: the device's own enrolment and its neighbour's,
	// verified against the cloud's authority.
	r, err := got.NewRoster()
	require.NoError(t, err)
	for _, want := range []*device.Identity{id, neighbour} {
		pub, err := r.Lookup(want.ReplicaID())
		require.NoError(t, err, "the roster holds %s", want)
		assert.True(t, pub.Equal(want.Public()), "the roster has %s's keys", want)
	}

	// A client needs the device's key: the file alone cannot sync.
	local, err := replica.New(context.Background(), store.NewMem(), replica.Config{})
	require.NoError(t, err)
	defer local.Close()
	_, err = httpsync.NewClient(local, httpsync.ClientConfig{Credential: got})
	assert.ErrorIs(t, err, httpsync.ErrNoDeviceKey, "a credential without the device's key is refused")

	withKey, err := got.WithIdentity(id)
	require.NoError(t, err, "the device's own identity fits")
	assert.Equal(t, id.Public().SignKey, withKey.Key.Public())
	assert.Nil(t, got.Key, "WithIdentity returns a copy")
	cl, err := httpsync.NewClient(local, httpsync.ClientConfig{Credential: withKey})
	require.NoError(t, err)
	cl.Close()

	// Another device's key is refused, even for the same replica and clinic.
	thief := newIdentity(t, replicaA, "kamuga-dispensary")
	_, err = got.WithIdentity(thief)
	assert.ErrorIs(t, err, httpsync.ErrKeyMismatch, "a credential works only with the key it was issued for")
	_, err = got.WithKey(thief.TLSSigner())
	assert.ErrorIs(t, err, httpsync.ErrKeyMismatch)
	_, err = got.WithIdentity(neighbour)
	assert.ErrorIs(t, err, httpsync.ErrKeyMismatch, "another replica's identity is refused")
	_, err = got.WithIdentity(newIdentity(t, replicaA, "lwanda"))
	assert.ErrorIs(t, err, httpsync.ErrKeyMismatch, "another clinic's identity is refused")
	forced := *got
	forced.Key = thief.TLSSigner()
	_, err = httpsync.NewClient(local, httpsync.ClientConfig{Credential: &forced})
	assert.ErrorIs(t, err, httpsync.ErrKeyMismatch, "the client checks the key too")

	require.NoError(t, os.Chmod(path, 0o644))
	_, err = httpsync.ReadCredentialFile(path)
	require.NoError(t, err, "others may read a credential: it holds no secret")
	require.NoError(t, os.Chmod(path, 0o666))
	_, err = httpsync.ReadCredentialFile(path)
	require.Error(t, err, "a credential other users can change (its server trust) is refused")
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
	id := newIdentity(t, replicaA, "kamuga")
	authority, err := device.NewAuthority()
	require.NoError(t, err)
	otherAuthority, err := device.NewAuthority()
	require.NoError(t, err)
	cred, err := ca.Enrol(httpsync.Enrolment{Replica: replicaA, Clinic: "kamuga", Device: "a", PublicKey: id.Public().SignKey})
	require.NoError(t, err)
	enrolment, err := authority.Enrol(id.Public(), time.Now(), time.Hour)
	require.NoError(t, err)
	cred.Authority, cred.Enrolment = authority.PublicKey(), enrolment
	good, err := cred.MarshalPEM()
	require.NoError(t, err)
	_, err = httpsync.ParseCredential(good)
	require.NoError(t, err, "the unaltered credential parses")

	variant := func(edit func(c *httpsync.Credential)) []byte {
		c := *cred
		edit(&c)
		data, err := c.MarshalPEM()
		require.NoError(t, err)
		return data
	}
	keyPEM, err := x509.MarshalPKCS8PrivateKey(ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)))
	require.NoError(t, err)
	withKey := append(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyPEM}), good...)
	otherKey := newIdentity(t, replicaA, "kamuga").Public()
	caPEM, _, err := ca.MarshalPEM()
	require.NoError(t, err)
	for name, data := range map[string][]byte{
		"empty":              nil,
		"garbage":            []byte("hello"),
		"a bare certificate": caPEM,
		"a private key":      withKey,
		"an enrolment of another key": variant(func(c *httpsync.Credential) {
			c.Enrolment, err = authority.Enrol(otherKey, time.Now(), time.Hour)
			require.NoError(t, err)
		}),
		"an enrolment of another authority than named": variant(func(c *httpsync.Credential) {
			c.Enrolment, err = otherAuthority.Enrol(id.Public(), time.Now(), time.Hour)
			require.NoError(t, err)
		}),
		"an enrolment without an authority": variant(func(c *httpsync.Credential) { c.Authority = nil }),
		"a damaged enrolment":               variant(func(c *httpsync.Credential) { c.Enrolment = flip(c.Enrolment, len(c.Enrolment)/2) }),
		"a roster of another authority": variant(func(c *httpsync.Credential) {
			r, err := device.NewRoster(device.RosterConfig{Authorities: []device.TrustedAuthority{{Key: otherAuthority.PublicKey()}}})
			require.NoError(t, err)
			e, err := otherAuthority.Enrol(otherKey, time.Now(), time.Hour)
			require.NoError(t, err)
			_, err = r.Add(e)
			require.NoError(t, err)
			c.Roster = r.Encode()
		}),
	} {
		_, err := httpsync.ParseCredential(data)
		assert.Error(t, err, "%s is not a credential", name)
	}
}

func TestEnrolRefuses(t *testing.T) {
	ca := newCA(t)
	key := newIdentity(t, replicaA, "kamuga").Public().SignKey
	for name, e := range map[string]httpsync.Enrolment{
		"no replica":            {Clinic: "kamuga", Device: "a", PublicKey: key},
		"a short replica":       {Replica: "abcd", Clinic: "kamuga", Device: "a", PublicKey: key},
		"an upper-case replica": {Replica: "0123456789ABCDEF0123456789ABCDEF", Clinic: "kamuga", Device: "a", PublicKey: key},
		"no clinic":             {Replica: replicaA, Device: "a", PublicKey: key},
		"a clinic with a space": {Replica: replicaA, Clinic: "kamuga dispensary", Device: "a", PublicKey: key},
		"no device name":        {Replica: replicaA, Clinic: "kamuga", PublicKey: key},
		"no public key":         {Replica: replicaA, Clinic: "kamuga", Device: "a"},
		"a short public key":    {Replica: replicaA, Clinic: "kamuga", Device: "a", PublicKey: key[:16]},
		"the CA's own key":      {Replica: replicaA, Clinic: "kamuga", Device: "a", PublicKey: ca.Cert.PublicKey.(ed25519.PublicKey)},
		"negative validity":     {Replica: replicaA, Clinic: "kamuga", Device: "a", PublicKey: key, Valid: -time.Hour},
		"a bad cloud replica":   {Replica: replicaA, Clinic: "kamuga", Device: "a", PublicKey: key, CloudReplica: "x"},
	} {
		_, err := ca.Enrol(e)
		assert.Error(t, err, "enrolment with %s is refused", name)
	}
	_, err := ca.Enrol(httpsync.Enrolment{Replica: replicaA, Clinic: "kamuga", Device: "a", PublicKey: key})
	assert.NoError(t, err, "the same enrolment with every field right is accepted")
}

func TestVerifyDevice(t *testing.T) {
	ca := newCA(t)
	other := newCA(t)
	now := time.Now()
	enrol := func(ca *httpsync.DeviceCA, at time.Time, valid time.Duration) []*x509.Certificate {
		cred := enrolDevice(t, ca, httpsync.Enrolment{Replica: replicaA, Clinic: "kamuga", Device: "tablet", Now: at, Valid: valid})
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
