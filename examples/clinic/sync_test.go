package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/transport/httpsync"
)

// TestClinicsSyncThroughCloud follows the README: a cloud over TLS on
// 127.0.0.1, two enrolled devices of one clinic used offline, then synced;
// both show the same charts.
func TestClinicsSyncThroughCloud(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	ca, err := httpsync.NewDeviceCA("test cloud", now, time.Hour)
	require.NoError(t, err)
	cloud, err := replica.Open(ctx, filepath.Join(t.TempDir(), "cloud.db"), replica.Config{})
	require.NoError(t, err)
	t.Cleanup(func() { cloud.Close() })
	h, err := httpsync.NewHandler(httpsync.Config{Replica: cloud, DeviceCA: ca.Pool()})
	require.NoError(t, err)
	certPEM, keyPEM, err := ca.IssueServerCert([]string{"127.0.0.1"}, now, time.Hour)
	require.NoError(t, err)
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	require.NoError(t, err)
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = httpsync.ServerTLSConfig(cert)
	var full, resumed atomic.Int64 // handshakes of enrolled devices
	srv.TLS.VerifyConnection = func(cs tls.ConnectionState) error {
		switch {
		case len(cs.PeerCertificates) == 0:
		case cs.DidResume:
			resumed.Add(1)
		default:
			full.Add(1)
		}
		return nil
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)

	devices := map[string]string{"tab": t.TempDir(), "laptop": t.TempDir()}
	creds := map[string]string{}
	for _, name := range []string{"tab", "laptop"} {
		dir := devices[name]
		initArgs := []string{"init", "-clinic", "kamuga", "-device", name}
		if name == "tab" { // the clinic's first device sets up its administrator
			initArgs = append(initArgs, "-admin", "u-admin", "-admin-name", "Wairimu")
		}
		code, out, errOut := clinicIn(t, dir, twice("admin-pass-1"), initArgs...)
		require.Zero(t, code, errOut)
		id := regexp.MustCompile(`replica ([0-9a-f]{32})`).FindStringSubmatch(out)
		require.Len(t, id, 2)
		reqPath := filepath.Join(dir, "enrol-request.pem")
		assert.Contains(t, out, reqPath, "init says which file to give the administrator")

		// The keys stay on the device, readable by its owner only; the
		// request holds public keys only.
		fi, err := os.Stat(filepath.Join(dir, "identity.key"))
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
		keys, err := device.Load(filepath.Join(dir, "identity.key"))
		require.NoError(t, err)
		assert.Equal(t, id[1], keys.ReplicaID(), "the keys are bound to the device's replica")
		assert.Contains(t, out, device.Fingerprint(keys.Public().SignKey), "init shows the key's fingerprint")

		code, _, errOut = clinic(t, dir, "sync")
		assert.Equal(t, 1, code, "a device without a credential cannot sync")
		assert.Contains(t, errOut, "clinic connect")

		// The administrator: check the request, issue a certificate for its key.
		req, err := os.ReadFile(reqPath)
		require.NoError(t, err)
		assert.NotContains(t, string(req), "SECRET")
		pub, err := device.ParseRequest(req)
		require.NoError(t, err)
		require.Equal(t, id[1], pub.ReplicaID)
		cred, err := ca.Enrol(httpsync.Enrolment{Replica: pub.ReplicaID, Clinic: pub.Clinic, Device: name, PublicKey: pub.SignKey, Now: now,
			CloudURL: srv.URL, CloudReplica: cloud.ID(), ServerTrust: []*x509.Certificate{ca.Cert}})
		require.NoError(t, err)
		creds[name] = filepath.Join(t.TempDir(), name+".pem")
		require.NoError(t, cred.WriteFile(creds[name]))

		// A credential for the same replica but another key (made from
		// someone else's request) is refused.
		thief, err := device.Generate(pub.ReplicaID, pub.Clinic)
		require.NoError(t, err)
		stolen, err := ca.Enrol(httpsync.Enrolment{Replica: pub.ReplicaID, Clinic: pub.Clinic, Device: name, PublicKey: thief.Public().SignKey,
			CloudURL: srv.URL, CloudReplica: cloud.ID(), ServerTrust: []*x509.Certificate{ca.Cert}})
		require.NoError(t, err)
		stolenPath := filepath.Join(t.TempDir(), "stolen.pem")
		require.NoError(t, stolen.WriteFile(stolenPath))
		code, _, errOut = clinic(t, dir, "connect", "-credential", stolenPath)
		assert.Equal(t, 1, code, "a credential for another key is refused")
		assert.Contains(t, errOut, "not for this device")
	}
	code, _, errOut := clinic(t, devices["tab"], "connect", "-credential", creds["laptop"])
	assert.Equal(t, 1, code, "the laptop's credential does not connect the tablet")
	assert.Contains(t, errOut, "enrol-request.pem", "the error says which file to give the administrator")
	for name, dir := range devices {
		code, _, errOut = clinic(t, dir, "connect", "-credential", creds[name])
		require.Zero(t, code, errOut)
		stored, err := os.ReadFile(filepath.Join(dir, "credential.pem"))
		require.NoError(t, err)
		assert.NotContains(t, string(stored), "PRIVATE KEY", "the stored credential holds no key")
		code, out, errOut := clinic(t, dir, "status")
		require.Zero(t, code, errOut)
		assert.Contains(t, out, "Cloud: "+srv.URL)
	}
	// The administrator adds the staff on the tablet; the laptop gets the
	// clinic's users from the cloud.
	code, _, errOut = clinicIn(t, devices["tab"], "admin-pass-1\n", "login", "-user", "u-admin")
	require.Zero(t, code, errOut)
	for name := range devices {
		code, _, errOut = clinicIn(t, devices["tab"], twice("pass-of-"+name), "user", "add", "-id", "u-"+name, "-name", "Nurse "+name, "-role", "nurse")
		require.Zero(t, code, errOut)
	}
	code, _, errOut = clinicIn(t, devices["laptop"], "pass-of-laptop\n", "login", "-user", "u-laptop")
	assert.Equal(t, 1, code, "the laptop has no users before it syncs")
	assert.Contains(t, errOut, "sync with the cloud")
	for _, name := range []string{"tab", "laptop"} {
		code, _, errOut = clinic(t, devices[name], "sync", "-quiet")
		require.Zero(t, code, errOut)
	}
	for name, dir := range devices {
		code, _, errOut = clinicIn(t, dir, "pass-of-"+name+"\n", "login", "-user", "u-"+name)
		require.Zero(t, code, errOut)
	}
	// Offline work on both.
	code, _, errOut = clinic(t, devices["tab"], "register", "-given", "Wanjiru", "-sex", "female", "-born-year", "1988")
	require.Zero(t, code, errOut)
	code, _, errOut = clinic(t, devices["laptop"], "register", "-given", "Otieno", "-sex", "male", "-born", "2019-06-14")
	require.Zero(t, code, errOut)
	code, out, _ := clinic(t, devices["tab"], "status")
	require.Zero(t, code)
	assert.Contains(t, out, "Changes waiting to be sent: 1")

	for _, name := range []string{"tab", "laptop", "tab"} {
		code, out, errOut := clinic(t, devices[name], "sync", "-quiet")
		require.Zero(t, code, errOut)
		assert.Contains(t, out, "Synced with "+srv.URL)
	}
	_, tab, _ := clinic(t, devices["tab"], "find")
	_, laptop, _ := clinic(t, devices["laptop"], "find")
	assert.Equal(t, tab, laptop, "both devices show the same charts")
	assert.Contains(t, tab, "Wanjiru")
	assert.Contains(t, tab, "Otieno")
	code, out, _ = clinic(t, devices["laptop"], "status")
	require.Zero(t, code)
	assert.Contains(t, out, "Changes waiting to be sent: 0")

	// A password changed on the laptop works on the tablet after both sync.
	code, _, errOut = clinicIn(t, devices["laptop"], "pass-of-laptop\n"+twice("new-pass-of-laptop"), "passwd")
	require.Zero(t, code, errOut)
	for _, name := range []string{"laptop", "tab"} {
		code, _, errOut = clinic(t, devices[name], "sync", "-quiet")
		require.Zero(t, code, errOut)
	}
	// Each sync is a new process: after its first, a device resumes its
	// TLS session, kept in a file only it may read.
	assert.EqualValues(t, 2, full.Load(), "one full TLS handshake per device")
	assert.EqualValues(t, 5, resumed.Load(), "every later sync resumes the device's TLS session")
	for name, dir := range devices {
		fi, err := os.Stat(filepath.Join(dir, "tls-sessions"))
		require.NoError(t, err, "%s keeps its TLS sessions", name)
		assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "%s's TLS sessions are its own", name)
	}
	// Sessions made with one credential are no use with another: connect
	// drops them.
	code, _, errOut = clinic(t, devices["tab"], "connect", "-credential", creds["tab"])
	require.Zero(t, code, errOut)
	_, err = os.Stat(filepath.Join(devices["tab"], "tls-sessions"))
	assert.ErrorIs(t, err, os.ErrNotExist, "connect drops the TLS sessions of the earlier credential")

	code, _, _ = clinicIn(t, devices["tab"], "pass-of-laptop\n", "login", "-user", "u-laptop")
	assert.Equal(t, 1, code, "the old password no longer works on the tablet")
	code, _, errOut = clinicIn(t, devices["tab"], "new-pass-of-laptop\n", "login", "-user", "u-laptop")
	require.Zero(t, code, errOut)

	// After the cloud is restored from a backup, sync -cloud-restored
	// forgets what the cloud was known to hold: the tablet sends all its
	// changes again (the cloud skips those it holds), where a plain sync
	// sends none.
	code, out, errOut = clinic(t, devices["tab"], "sync", "-quiet")
	require.Zero(t, code, errOut)
	assert.Contains(t, out, ": 0 changes sent")
	assert.Contains(t, out, "(0 charts changed)")
	assert.Contains(t, out, " in 1 round trip,", "plurals in words")
	code, out, errOut = clinic(t, devices["tab"], "sync", "-quiet", "-cloud-restored")
	require.Zero(t, code, errOut)
	assert.Contains(t, out, "Forgot what the cloud held")
	sent := regexp.MustCompile(`: (\d+) changes sent`).FindStringSubmatch(out)
	require.Len(t, sent, 2, out)
	assert.NotEqual(t, "0", sent[1], "every change is sent again")

	srv.Close()
	code, _, errOut = clinic(t, devices["tab"], "sync", "-quiet")
	assert.Equal(t, 1, code, "with the cloud gone, sync fails")
	assert.Contains(t, errOut, "everything is saved on this device", "the error tells the nurse what to do")
}
