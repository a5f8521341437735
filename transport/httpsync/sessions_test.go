package httpsync_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/transport/httpsync"
)

// sessionFixture makes real TLS 1.3 client sessions, by handshakes in
// memory with a server of a throwaway CA, and device certificates to bind
// session files to.
type sessionFixture struct {
	ca     *httpsync.DeviceCA
	server *tls.Config
	client *tls.Config
}

var (
	sessionFixtureOnce sync.Once
	sharedSessions     *sessionFixture
)

func newSessionFixture(t *testing.T) *sessionFixture {
	t.Helper()
	sessionFixtureOnce.Do(func() {
		ca, err := httpsync.NewDeviceCA("session test CA", time.Now(), 24*time.Hour)
		if err != nil {
			panic(err)
		}
		sharedSessions = &sessionFixture{
			ca:     ca,
			server: &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{serverCert(t, ca)}},
			client: &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: ca.Pool(), ServerName: "127.0.0.1"},
		}
	})
	return sharedSessions
}

// session makes a handshake and returns the session the server's ticket
// gave the client.
func (f *sessionFixture) session(t *testing.T) *tls.ClientSessionState {
	t.Helper()
	got := &captureSessions{}
	cc, sc := net.Pipe()
	defer cc.Close()
	defer sc.Close()
	ccfg := f.client.Clone()
	ccfg.ClientSessionCache = got
	done := make(chan error, 1)
	go func() {
		s := tls.Server(sc, f.server)
		if err := s.Handshake(); err != nil {
			done <- err
			return
		}
		_, err := s.Write([]byte{1}) // after the ticket
		done <- err
	}()
	c := tls.Client(cc, ccfg)
	require.NoError(t, c.Handshake(), "handshake in memory")
	_, err := c.Read(make([]byte, 1)) // reads the ticket first
	require.NoError(t, err)
	require.NoError(t, <-done)
	require.NotNil(t, got.cs, "the server issued a ticket")
	return got.cs
}

// deviceCert is a device certificate to bind a session file to.
func (f *sessionFixture) deviceCert(t *testing.T) *x509.Certificate {
	t.Helper()
	cred := enrolDevice(t, f.ca, httpsync.Enrolment{Replica: "0123456789abcdef0123456789abcdef", Clinic: "kamuga", Device: "tablet"})
	return cred.Cert
}

type captureSessions struct{ cs *tls.ClientSessionState }

func (c *captureSessions) Get(string) (*tls.ClientSessionState, bool) { return nil, false }
func (c *captureSessions) Put(_ string, cs *tls.ClientSessionState) {
	if cs != nil {
		c.cs = cs
	}
}

// warnings is a logger that keeps what it logs at Warn and above.
type warnings struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *warnings) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func (w *warnings) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *warnings) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// requireOnlyFiles checks that dir holds exactly names: no temporary file
// is left behind.
func requireOnlyFiles(t *testing.T, dir string, names ...string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	var have []string
	for _, e := range ents {
		have = append(have, e.Name())
	}
	require.ElementsMatch(t, names, have, "files in %s", dir)
}

func TestSessionCacheKeepsSessionsInAFile(t *testing.T) {
	f := newSessionFixture(t)
	dev := f.deviceCert(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "tls-sessions")
	c, err := httpsync.OpenSessionCache(path, httpsync.SessionCacheConfig{Device: dev})
	require.NoError(t, err)
	require.Zero(t, c.Len(), "a missing file is an empty cache")
	require.NoError(t, c.Flush(), "nothing to write")
	requireOnlyFiles(t, dir)

	cs := f.session(t)
	c.Put("cloud.example:443 cloud.example", cs)
	got, ok := c.Get("cloud.example:443 cloud.example")
	require.True(t, ok)
	assert.Same(t, cs, got)
	_, ok = c.Get("other.example:443 other.example")
	assert.False(t, ok, "a session is offered to the server that issued it only")
	require.NoError(t, c.Flush())
	requireOnlyFiles(t, dir, "tls-sessions")
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "the session file holds secrets: owner only")

	again, err := httpsync.OpenSessionCache(path, httpsync.SessionCacheConfig{Device: dev})
	require.NoError(t, err)
	require.Equal(t, 1, again.Len(), "a restarted device finds its session")
	got, ok = again.Get("cloud.example:443 cloud.example")
	require.True(t, ok)
	wantTicket, wantState, err := cs.ResumptionState()
	require.NoError(t, err)
	gotTicket, gotState, err := got.ResumptionState()
	require.NoError(t, err)
	assert.Equal(t, wantTicket, gotTicket, "the ticket survives the restart")
	wantBytes, err := wantState.Bytes()
	require.NoError(t, err)
	gotBytes, err := gotState.Bytes()
	require.NoError(t, err)
	assert.Equal(t, wantBytes, gotBytes, "the session survives the restart")
	_, ok = again.Get("other.example:443 other.example")
	assert.False(t, ok)

	again.Put("cloud.example:443 cloud.example", nil)
	assert.Zero(t, again.Len(), "crypto/tls forgets a failed session")
	require.NoError(t, again.Flush())
	third, err := httpsync.OpenSessionCache(path, httpsync.SessionCacheConfig{Device: dev})
	require.NoError(t, err)
	assert.Zero(t, third.Len(), "a forgotten session is gone from the file")
}

func TestSessionCacheIsBounded(t *testing.T) {
	f := newSessionFixture(t)
	dev := f.deviceCert(t)
	path := filepath.Join(t.TempDir(), "tls-sessions")
	clock := time.Now()
	cfg := httpsync.SessionCacheConfig{Device: dev, MaxSessions: 2, Now: func() time.Time { return clock }}
	c, err := httpsync.OpenSessionCache(path, cfg)
	require.NoError(t, err)
	for _, k := range []string{"a", "b", "c"} {
		clock = clock.Add(time.Second)
		c.Put(k, f.session(t))
	}
	assert.Equal(t, 2, c.Len(), "no more than MaxSessions")
	_, ok := c.Get("a")
	assert.False(t, ok, "the least recently used session went")
	_, ok = c.Get("b") // b is now used more recently than c
	require.True(t, ok)
	c.Put("d", f.session(t))
	_, ok = c.Get("c")
	assert.False(t, ok, "c was the least recently used")
	_, ok = c.Get("b")
	assert.True(t, ok)
	require.NoError(t, c.Flush())

	cfg.MaxSessions = 1
	small, err := httpsync.OpenSessionCache(path, cfg)
	require.NoError(t, err)
	assert.Equal(t, 1, small.Len(), "a file with more sessions than MaxSessions is cut on loading")
	_, ok = small.Get("d")
	assert.True(t, ok, "the most recently saved session is kept")
}

func TestSessionCacheExpiresSessions(t *testing.T) {
	f := newSessionFixture(t)
	dev := f.deviceCert(t)
	path := filepath.Join(t.TempDir(), "tls-sessions")
	clock := time.Now()
	cfg := httpsync.SessionCacheConfig{Device: dev, Now: func() time.Time { return clock }}
	c, err := httpsync.OpenSessionCache(path, cfg)
	require.NoError(t, err)
	c.Put("k", f.session(t))
	require.NoError(t, c.Flush())

	clock = clock.Add(7*24*time.Hour + time.Second)
	later, err := httpsync.OpenSessionCache(path, cfg)
	require.NoError(t, err)
	assert.Zero(t, later.Len(), "a session older than a ticket's 7 days is not loaded")
	_, ok := c.Get("k")
	assert.False(t, ok, "nor offered")
}

// TestSessionCacheIgnoresUnusableFiles: a session file that cannot be
// used is ignored with a warning, never an error or a panic, and the next
// Flush replaces it with a good one.
func TestSessionCacheIgnoresUnusableFiles(t *testing.T) {
	f := newSessionFixture(t)
	dev := f.deviceCert(t)
	other := f.deviceCert(t)

	// A good file of dev's, and one of another device's.
	goodDir := t.TempDir()
	good := filepath.Join(goodDir, "good")
	c, err := httpsync.OpenSessionCache(good, httpsync.SessionCacheConfig{Device: dev})
	require.NoError(t, err)
	c.Put("k", f.session(t))
	require.NoError(t, c.Flush())
	goodData, err := os.ReadFile(good)
	require.NoError(t, err)
	foreign := filepath.Join(goodDir, "foreign")
	c, err = httpsync.OpenSessionCache(foreign, httpsync.SessionCacheConfig{Device: other})
	require.NoError(t, err)
	c.Put("k", f.session(t))
	require.NoError(t, c.Flush())
	foreignData, err := os.ReadFile(foreign)
	require.NoError(t, err)

	flipped := bytes.Clone(goodData)
	flipped[len(flipped)/2] ^= 0x04
	for _, tc := range []struct {
		name string
		data []byte
		mode os.FileMode
		dir  bool
		want string // in the warning
	}{
		{name: "garbage", data: []byte("\x00\x01 not a session file"), want: "not a chartsync TLS session file"},
		{name: "empty", data: []byte{}, want: "not a chartsync TLS session file"},
		{name: "truncated", data: goodData[:len(goodData)/2], want: "truncated"},
		{name: "a flipped bit", data: flipped, want: "damaged"},
		{name: "no checksum line", data: goodData[:bytes.LastIndex(goodData[:len(goodData)-1], []byte("\n"))+1], want: "damaged"},
		{name: "another format version", data: append([]byte("chartsync tls sessions 2\n"), goodData[len("chartsync tls sessions 1\n"):]...), want: "another format version"},
		{name: "another device's", data: foreignData, want: "another device certificate"},
		{name: "readable by others", data: goodData, mode: 0o644, want: "must be 0600"},
		{name: "writable by the group", data: goodData, mode: 0o620, want: "must be 0600"},
		{name: "too large", data: append(bytes.Clone(goodData), bytes.Repeat([]byte{' '}, 1<<20)...), want: "over the"},
		{name: "a directory", dir: true, want: "not a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "tls-sessions")
			if tc.dir {
				require.NoError(t, os.Mkdir(path, 0o700))
			} else {
				mode := tc.mode
				if mode == 0 {
					mode = 0o600
				}
				require.NoError(t, os.WriteFile(path, tc.data, mode))
				require.NoError(t, os.Chmod(path, mode))
			}
			var w warnings
			c, err := httpsync.OpenSessionCache(path, httpsync.SessionCacheConfig{Device: dev, Logger: w.logger()})
			require.NoError(t, err, "an unusable session file is never fatal")
			assert.Zero(t, c.Len(), "no session is taken from an unusable file")
			assert.Contains(t, w.String(), "ignoring the TLS session file", "the device's log says the file was ignored")
			assert.Contains(t, w.String(), tc.want, "the warning says why")
			if tc.dir {
				return
			}
			require.NoError(t, c.Flush(), "the unusable file is replaced")
			fi, err := os.Stat(path)
			require.NoError(t, err)
			assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
			var w2 warnings
			_, err = httpsync.OpenSessionCache(path, httpsync.SessionCacheConfig{Device: dev, Logger: w2.logger()})
			require.NoError(t, err)
			assert.Empty(t, w2.String(), "the replacement is a good, empty file")
		})
	}
}

func TestSessionCacheFlushFailureLeavesNothingBehind(t *testing.T) {
	f := newSessionFixture(t)
	dev := f.deviceCert(t)
	dir := t.TempDir()
	sub := filepath.Join(dir, "device")
	path := filepath.Join(sub, "tls-sessions")
	c, err := httpsync.OpenSessionCache(path, httpsync.SessionCacheConfig{Device: dev})
	require.NoError(t, err)
	c.Put("k", f.session(t))
	require.Error(t, c.Flush(), "the directory does not exist")
	requireOnlyFiles(t, dir)

	require.NoError(t, os.Mkdir(sub, 0o700))
	require.NoError(t, c.Flush(), "a failed Flush is tried again")
	requireOnlyFiles(t, sub, "tls-sessions")
	again, err := httpsync.OpenSessionCache(path, httpsync.SessionCacheConfig{Device: dev})
	require.NoError(t, err)
	assert.Equal(t, 1, again.Len())
}

func TestSessionCacheConfig(t *testing.T) {
	_, err := httpsync.OpenSessionCache("", httpsync.SessionCacheConfig{Device: newSessionFixture(t).deviceCert(t)})
	assert.Error(t, err, "a path is required")
	_, err = httpsync.OpenSessionCache(filepath.Join(t.TempDir(), "s"), httpsync.SessionCacheConfig{})
	assert.Error(t, err, "the device certificate is required")
}
