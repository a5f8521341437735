package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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
	addrs := make(chan string, 1)
	listening = func(a string) { addrs <- a }
	t.Cleanup(func() { listening = nil })
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut lockedBuffer
	exited := make(chan int, 1)
	go func() {
		exited <- run(ctx, []string{"serve", "-dir", dir, "-addr", "127.0.0.1:0", "-dev-cert"}, &out, &errOut)
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
	assert.Contains(t, stderr, "another cloud process")

	tablet, err := replica.New(ctx, store.NewMem(), replica.Config{})
	require.NoError(t, err)
	defer tablet.Close()
	credPath := filepath.Join(t.TempDir(), "kamuga-tablet-1.pem")
	code, stdout, stderr := cloud(t, "enrol", "-dir", dir, "-clinic", "kamuga", "-device", "kamuga-tablet-1", "-replica", tablet.ID(), "-out", credPath)
	require.Equal(t, 0, code, "enrol: %s", stderr)
	assert.Contains(t, stdout, "Enrolled device kamuga-tablet-1 of clinic kamuga")
	assert.Contains(t, stdout, "Next:", "enrol says what to do with the file")
	fi, err := os.Stat(credPath)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	code, _, stderr = cloud(t, "enrol", "-dir", dir, "-clinic", "kamuga", "-device", "kamuga-tablet-1", "-replica", tablet.ID(), "-out", credPath)
	assert.Equal(t, 1, code, "an existing credential file is not overwritten")
	assert.Contains(t, stderr, "-force")
	code, _, stderr = cloud(t, "enrol", "-dir", dir, "-clinic", "kamuga", "-device", "x", "-replica", "tablet-1", "-out", credPath+"2")
	assert.Equal(t, 2, code, "a replica ID that is not one is a usage error")
	assert.Contains(t, stderr, "32 hex digits")

	cred, err := httpsync.ReadCredentialFile(credPath)
	require.NoError(t, err)
	assert.Equal(t, "https://"+addr, cred.CloudURL, "the credential names where the cloud listens")
	client, err := httpsync.NewClient(tablet, httpsync.ClientConfig{Credential: cred})
	require.NoError(t, err)
	defer client.Close()
	nurse := record.Author{UserID: "u-achieng", Role: record.RoleNurse}
	id, err := tablet.Register(ctx, nurse, record.Register{GivenName: "Wanjiru", Sex: "female", EstimatedBirthYear: 1988, HomeClinic: "kamuga"})
	require.NoError(t, err)
	_, err = client.Sync(ctx)
	require.NoError(t, err, "the enrolled device syncs with the cloud")

	code, stdout, _ = cloud(t, "devices", "-dir", dir)
	assert.Equal(t, 0, code)
	assert.Contains(t, stdout, "kamuga-tablet-1")
	assert.Contains(t, stdout, tablet.ID())

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
	assert.Contains(t, stderr, "-clinic is required")
}
