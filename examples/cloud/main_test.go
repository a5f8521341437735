package main

import (
	"bytes"
	"context"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/internal/wire"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/store"
	"github.com/chartsync/chartsync/transport/httpsync"
)

// lockedBuffer is a buffer safe for the server's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func cloud(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut lockedBuffer
	code = run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// server runs "cloud serve" until the returned stop is called, which
// waits for it to exit and returns its exit code and logs.
func server(t *testing.T, dir string) (addr string, stop func() (int, string)) {
	t.Helper()
	return serverWith(t, "serve", "-dir", dir, "-addr", "127.0.0.1:0", "-dev-cert")
}

// serverWith runs the serve command line args as server does.
func serverWith(t *testing.T, args ...string) (addr string, stop func() (int, string)) {
	t.Helper()
	addrs := make(chan string, 1)
	listening = func(a string) { addrs <- a }
	t.Cleanup(func() { listening = nil })
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut lockedBuffer
	exited := make(chan int, 1)
	go func() {
		exited <- run(ctx, args, &out, &errOut)
	}()
	select {
	case addr = <-addrs:
	case code := <-exited:
		cancel()
		t.Fatalf("serve exited with %d before listening:\n%s", code, errOut.String())
	}
	var once sync.Once
	var code int
	stop = func() (int, string) {
		once.Do(func() {
			cancel()
			code = <-exited
		})
		return code, errOut.String()
	}
	t.Cleanup(func() { stop() })
	return addr, stop
}

func TestCloudWorkflow(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "cloud-data")

	code, _, stderr := cloud(t, "serve", "-dir", dir)
	assert.Equal(t, 2, code, "serve without a certificate is a usage error")
	assert.Contains(t, stderr, "-dev-cert", "the error says how to get a certificate")

	addr, stop := server(t, dir)
	code, _, stderr = cloud(t, "serve", "-dir", dir, "-addr", "127.0.0.1:0", "-dev-cert")
	assert.Equal(t, 1, code, "a second server on the same data is refused")
	assert.Contains(t, stderr, "is in use by process", "the error names the process holding the data")
	assert.Contains(t, stderr, `stop the other "cloud serve"`)

	// The device makes its keys and its request; only the request travels.
	// Its replica signs every change with those keys.
	keys, err := device.Generate(replica.NewID(), "kamuga")
	require.NoError(t, err)
	tablet, err := replica.New(ctx, store.NewMem(), replica.Config{Signer: keys})
	require.NoError(t, err)
	defer tablet.Close()
	reqPath := filepath.Join(t.TempDir(), "enrol-request.pem")
	require.NoError(t, os.WriteFile(reqPath, keys.RequestPEM(), 0o644))

	credPath := filepath.Join(t.TempDir(), "kamuga-tablet-1.pem")
	code, _, stderr = cloud(t, "enrol", "-dir", dir, "-clinic", "lwanda", "-request", reqPath, "-device", "kamuga-tablet-1", "-out", credPath)
	assert.Equal(t, 1, code, "a request from another clinic than -clinic is refused")
	assert.Contains(t, stderr, "clinic kamuga, not lwanda")
	assert.NoFileExists(t, credPath)

	forged := filepath.Join(t.TempDir(), "forged.pem")
	block, _ := pem.Decode(keys.RequestPEM())
	require.NotNil(t, block)
	thief, err := device.Generate(tablet.ID(), "kamuga")
	require.NoError(t, err)
	// Swap in another key (after the replica ID and clinic): the
	// signature no longer proves possession.
	_, body, err := wire.Decode(block.Bytes, block.Bytes[2], block.Bytes[4], 1024)
	require.NoError(t, err)
	body = bytes.Clone(body)
	copy(body[16+1+len("kamuga"):], thief.Public().SignKey)
	block.Bytes = wire.Encode(block.Bytes[2], block.Bytes[4], body)
	require.NoError(t, os.WriteFile(forged, pem.EncodeToMemory(block), 0o644))
	code, _, stderr = cloud(t, "enrol", "-dir", dir, "-request", forged, "-device", "kamuga-tablet-1", "-out", credPath)
	assert.Equal(t, 1, code, "a request whose proof of possession fails is refused")
	assert.Contains(t, stderr, "not a valid enrolment request")
	assert.NoFileExists(t, credPath)

	code, stdout, stderr := cloud(t, "enrol", "-dir", dir, "-clinic", "kamuga", "-request", reqPath, "-device", "kamuga-tablet-1", "-out", credPath)
	require.Equal(t, 0, code, "enrol: %s", stderr)
	assert.Contains(t, stdout, "Enrolled device kamuga-tablet-1 of clinic kamuga")
	assert.Contains(t, stdout, device.Fingerprint(keys.Public().SignKey), "enrol shows the key's fingerprint to check with the device")
	assert.Contains(t, stdout, "clinic connect -credential", "enrol says what to do with the file")

	code, _, stderr = cloud(t, "enrol", "-dir", dir, "-request", reqPath, "-device", "kamuga-tablet-1", "-out", credPath)
	assert.Equal(t, 1, code, "an existing credential file is not overwritten")
	assert.Contains(t, stderr, "-force")

	data, err := os.ReadFile(credPath)
	require.NoError(t, err)
	assert.NotContains(t, string(data), "PRIVATE KEY", "the credential holds no private key")
	cred, err := httpsync.ReadCredentialFile(credPath)
	require.NoError(t, err)
	assert.Equal(t, "https://"+addr, cred.CloudURL, "the credential names where the cloud listens")
	assert.Equal(t, keys.Public().SignKey, cred.Cert.PublicKey, "the certificate is for the device's own key")
	authority, err := device.LoadAuthority(filepath.Join(dir, "ca", "authority.key"))
	require.NoError(t, err, "the cloud keeps its enrolment authority next to the CA")
	assert.Equal(t, authority.PublicKey(), cred.Authority)
	roster, err := cred.NewRoster()
	require.NoError(t, err)
	pub, err := roster.Lookup(tablet.ID())
	require.NoError(t, err, "the credential carries the device's relay enrolment")
	assert.True(t, pub.Equal(keys.Public()), "the relay enrolment has the device's own keys")

	_, err = httpsync.NewClient(tablet, httpsync.ClientConfig{Credential: cred})
	assert.ErrorIs(t, err, httpsync.ErrNoDeviceKey, "the credential alone cannot sync")
	_, err = cred.WithIdentity(thief)
	assert.ErrorIs(t, err, httpsync.ErrKeyMismatch, "the credential works only with the key of the request")
	cred, err = cred.WithIdentity(keys)
	require.NoError(t, err)
	client, err := httpsync.NewClient(tablet, httpsync.ClientConfig{Credential: cred})
	require.NoError(t, err)
	defer client.Close()
	nurse := record.Author{UserID: "u-achieng", Role: record.RoleNurse}
	id, err := tablet.Register(ctx, nurse, record.Register{GivenName: "Wanjiru", Sex: "female", EstimatedBirthYear: 1988, HomeClinic: "kamuga"})
	require.NoError(t, err)
	_, err = client.Sync(ctx)
	require.NoError(t, err, "the enrolled device syncs with the cloud")

	// The access log records the write, and audit exports it while the
	// cloud serves.
	code, stdout, stderr = cloud(t, "audit", "-dir", dir, "-chart", id)
	require.Equal(t, 0, code, "audit: %s", stderr)
	assert.Contains(t, stdout, `"action":"write"`)
	assert.Contains(t, stdout, tablet.ID())
	assert.Contains(t, stdout, `"user":"u-achieng"`)
	assert.Contains(t, stderr, "chain verified")
	code, stdout, _ = cloud(t, "audit", "-dir", dir, "-chart", "no-such-chart", "-csv")
	require.Equal(t, 0, code)
	assert.Equal(t, "seq,time,action,device,clinic,user,role,chart,changes,detail\n", stdout, "a filter that matches nothing exports the header only")

	// A second device: its credential's roster holds the first too.
	laptopKeys, err := device.Generate(strings.Repeat("ab", 16), "kamuga")
	require.NoError(t, err)
	laptopReq := filepath.Join(t.TempDir(), "laptop-request.pem")
	require.NoError(t, os.WriteFile(laptopReq, laptopKeys.RequestPEM(), 0o644))
	laptopCred := filepath.Join(t.TempDir(), "laptop.pem")
	code, _, stderr = cloud(t, "enrol", "-dir", dir, "-request", laptopReq, "-device", "kamuga-laptop", "-out", laptopCred)
	require.Equal(t, 0, code, "enrol: %s", stderr)
	lc, err := httpsync.ReadCredentialFile(laptopCred)
	require.NoError(t, err)
	lr, err := lc.NewRoster()
	require.NoError(t, err)
	_, err = lr.Lookup(tablet.ID())
	assert.NoError(t, err, "the roster holds every device the cloud enrolled")

	code, stdout, _ = cloud(t, "devices", "-dir", dir)
	assert.Equal(t, 0, code)
	assert.Contains(t, stdout, "kamuga-tablet-1")
	assert.Contains(t, stdout, tablet.ID())
	assert.Contains(t, stdout, device.Fingerprint(keys.Public().SignKey))

	code, logs := stop()
	assert.Equal(t, 0, code, "serve exits cleanly on a signal")
	assert.Contains(t, logs, "msg=sync ", "serve logs each sync")
	assert.Contains(t, logs, "msg=stopped")

	// A restarted cloud keeps its CA, certificate and data.
	addr2, stop2 := server(t, dir)
	client2, err := httpsync.NewClient(tablet, httpsync.ClientConfig{Credential: cred, URL: "https://" + addr2})
	require.NoError(t, err)
	defer client2.Close()
	_, err = tablet.Edit(ctx, id, nurse, record.AddAllergy{Substance: "Penicillin", Severity: "severe", Reaction: "rash"})
	require.NoError(t, err)
	rep, err := client2.SyncReport(ctx)
	require.NoError(t, err, "the same credential works after a restart")
	assert.Positive(t, rep.ChangesSent, "the allergy goes up")
	code, logs = stop2()
	assert.Equal(t, 0, code)
	assert.False(t, strings.Contains(logs, "made a development server certificate"), "the development certificate is reused")
}

func TestUsage(t *testing.T) {
	code, _, stderr := cloud(t)
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "serve")
	code, stdout, _ := cloud(t, "help")
	assert.Equal(t, 0, code)
	assert.Contains(t, stdout, "enrol")
	code, _, stderr = cloud(t, "launch")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, `no command "launch"`)
	code, _, stderr = cloud(t, "enrol", "-dir", t.TempDir())
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "-request is required")
}
