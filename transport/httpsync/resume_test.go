package httpsync_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/transport/httpsync"
)

// handshakes records, at a server, every ClientHello (the key exchanges
// it offered) and every handshake that reached verification.
type handshakes struct {
	mu       sync.Mutex
	hellos   [][]tls.CurveID
	verified []tls.ConnectionState
	// refuse, if set, refuses a connection in VerifyConnection, as a
	// revocation check would.
	refuse func(tls.ConnectionState) error
	// peerChecks counts calls of VerifyPeerCertificate.
	peerChecks atomic.Int64
}

// install hooks h into a server's TLS configuration.
// A VerifyConnection installed already (the Handler's revocation check)
// runs after the recording.
func (h *handshakes) install(cfg *tls.Config) {
	prev, prevConfig := cfg.VerifyConnection, cfg.GetConfigForClient
	verify := func(prev func(tls.ConnectionState) error) func(tls.ConnectionState) error {
		return func(cs tls.ConnectionState) error {
			h.mu.Lock()
			h.verified = append(h.verified, cs)
			refuse := h.refuse
			h.mu.Unlock()
			if refuse != nil {
				if err := refuse(cs); err != nil {
					return err
				}
			}
			if prev != nil {
				return prev(cs)
			}
			return nil
		}
	}
	cfg.GetConfigForClient = func(hi *tls.ClientHelloInfo) (*tls.Config, error) {
		h.mu.Lock()
		h.hellos = append(h.hellos, slices.Clone(hi.SupportedCurves))
		h.mu.Unlock()
		if prevConfig == nil {
			return nil, nil
		}
		c, err := prevConfig(hi)
		if c != nil {
			c.VerifyConnection = verify(c.VerifyConnection)
		}
		return c, err
	}
	cfg.VerifyConnection = verify(prev)
	cfg.VerifyPeerCertificate = func([][]byte, [][]*x509.Certificate) error {
		h.peerChecks.Add(1)
		return nil
	}
}

// take returns what was recorded since the last take.
func (h *handshakes) take() (hellos [][]tls.CurveID, verified []tls.ConnectionState) {
	h.mu.Lock()
	defer h.mu.Unlock()
	hellos, verified = h.hellos, h.verified
	h.hellos, h.verified = nil, nil
	return hellos, verified
}

func (h *handshakes) setRefuse(f func(tls.ConnectionState) error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.refuse = f
}

// countingListener counts the bytes of every connection it accepts and
// reports each connection's total when the server closes it.
type countingListener struct {
	net.Listener
	closed chan connBytes
}

type connBytes struct{ in, out int64 }

func (b connBytes) total() int64 { return b.in + b.out }

func newCountingListener(t *testing.T) *countingListener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err, "listen on 127.0.0.1")
	return &countingListener{Listener: ln, closed: make(chan connBytes, 64)}
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, l: l}, nil
}

// next waits for the next connection to close and returns its bytes.
func (l *countingListener) next(t *testing.T) connBytes {
	t.Helper()
	select {
	case b := <-l.closed:
		return b
	case <-time.After(10 * time.Second):
		t.Fatal("no connection closed")
		return connBytes{}
	}
}

type countingConn struct {
	net.Conn
	l       *countingListener
	in, out atomic.Int64
	once    sync.Once
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.in.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.out.Add(int64(n))
	return n, err
}

func (c *countingConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.closed <- connBytes{in: c.in.Load(), out: c.out.Load()} })
	return err
}

// resumeCloud is a cloud served by httpsync.NewServer on a counting
// listener, recording its handshakes.
func resumeCloud(t *testing.T, o cloudOptions) (*cloud, *handshakes, *countingListener) {
	t.Helper()
	hs := &handshakes{}
	ln := newCountingListener(t)
	o.server = true
	o.listen = func(*testing.T) net.Listener { return ln }
	o.tls = hs.install
	return newCloud(t, o), hs, ln
}

// restart makes a new Client for d, as a restarted device would, keeping
// its TLS sessions in file ("" for none).
func (d *clinicDevice) restart(t *testing.T, file string, cfg httpsync.ClientConfig) *httpsync.Client {
	t.Helper()
	cfg.Credential = d.cred
	cfg.SessionFile = file
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	cl, err := httpsync.NewClient(d.rep, cfg)
	require.NoError(t, err, "a client for %s", d.name)
	return cl
}

// idleSync makes one sync with a new client, which must move no change,
// closes the client and returns the bytes of its connection.
func idleSync(t *testing.T, d *clinicDevice, ln *countingListener, file string) connBytes {
	t.Helper()
	cl := d.restart(t, file, fastRetries())
	rep, err := cl.SyncReport(t.Context())
	require.NoError(t, err, "%s syncs", d.name)
	require.Zero(t, rep.ChangesSent+rep.ChangesApplied, "the device and the cloud already agree")
	require.NoError(t, cl.Close(), "the client closes and saves its sessions")
	return ln.next(t)
}

// agreed is a device of a cloud that already holds all the cloud has and
// has told the cloud so.
func agreed(t *testing.T, c *cloud, ln *countingListener) *clinicDevice {
	t.Helper()
	d := c.newDevice(t, "kamuga", "kamuga-tablet-1", fastRetries())
	registerAt(t, d.rep, "Wanjiru", "Mwangi", "kamuga")
	d.sync(t)
	d.sync(t) // carries the acknowledgement of the cloud's answer
	require.NoError(t, d.client.Close())
	ln.next(t)
	return d
}

func requireFullPQ(t *testing.T, hellos [][]tls.CurveID, verified []tls.ConnectionState, what string) {
	t.Helper()
	require.Len(t, hellos, 1, "%s: one ClientHello", what)
	require.Len(t, verified, 1, "%s: one handshake", what)
	assert.False(t, verified[0].DidResume, "%s: a full handshake", what)
	assert.Equal(t, tls.X25519MLKEM768, verified[0].CurveID, "%s: a full handshake uses the post-quantum hybrid key exchange", what)
	assert.Len(t, verified[0].PeerCertificates, 1, "%s: the device presents its certificate", what)
}

func requireResumed(t *testing.T, hellos [][]tls.CurveID, verified []tls.ConnectionState, what string) {
	t.Helper()
	require.Len(t, hellos, 1, "%s: one ClientHello, no failed attempt", what)
	assert.Equal(t, []tls.CurveID{tls.X25519}, hellos[0], "%s: a resumption offers the small X25519 key share only", what)
	require.Len(t, verified, 1, "%s: one handshake", what)
	assert.True(t, verified[0].DidResume, "%s: the session is resumed", what)
	assert.Equal(t, tls.X25519, verified[0].CurveID, "%s", what)
	assert.Len(t, verified[0].PeerCertificates, 1, "%s: a resumed connection carries the device certificate of the full handshake", what)
	assert.Empty(t, verified[0].NegotiatedProtocol, "%s: no ALPN, HTTP/1.1", what)
}

// TestSessionResumesAfterRestart: a device that keeps its TLS sessions
// makes a full handshake once, then resumes on every restart, and the
// cloud still knows it by its certificate.
func TestSessionResumesAfterRestart(t *testing.T) {
	c, hs, ln := resumeCloud(t, cloudOptions{memory: true})
	d := agreed(t, c, ln)
	hs.take()
	file := filepath.Join(t.TempDir(), "tls-sessions")

	idleSync(t, d, ln, file)
	hellos, verified := hs.take()
	requireFullPQ(t, hellos, verified, "the first sync")
	fi, err := os.Stat(file)
	require.NoError(t, err, "the client saved its session")
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "the session file is the owner's only")

	for i := range 3 {
		idleSync(t, d, ln, file)
		hellos, verified = hs.take()
		requireResumed(t, hellos, verified, "a sync after a restart")
		if i == 0 {
			assert.Equal(t, d.cred.Cert.Raw, verified[0].PeerCertificates[0].Raw, "the resumed session is the device's")
		}
	}

	// The handler authenticates the device on a resumed connection.
	cl := d.restart(t, file, fastRetries())
	h, err := cl.Hello(t.Context())
	require.NoError(t, err)
	assert.Equal(t, d.rep.ID(), h.Device.Replica, "the cloud knows the device on a resumed connection")
	assert.Equal(t, "kamuga", h.Device.Clinic)
	require.NoError(t, cl.Close())
	_, verified = hs.take()
	require.Len(t, verified, 1)
	assert.True(t, verified[0].DidResume)
}

// TestIdleSyncBytes measures an idle sync on the wire (every byte of the
// TCP stream, both ways, TLS and HTTP included, from connect to close):
// with a full handshake, as a device made every sync before it kept
// sessions, and resumed.
func TestIdleSyncBytes(t *testing.T) {
	c, hs, ln := resumeCloud(t, cloudOptions{memory: true})
	d := agreed(t, c, ln)
	hs.take()
	file := filepath.Join(t.TempDir(), "tls-sessions")

	full := idleSync(t, d, ln, "")
	first := idleSync(t, d, ln, file)
	resumed := idleSync(t, d, ln, file)
	again := idleSync(t, d, ln, file)
	hellos, verified := hs.take()
	require.Len(t, hellos, 4, "one handshake per sync")
	require.Len(t, verified, 4)
	for i, want := range []bool{false, false, true, true} {
		require.Equal(t, want, verified[i].DidResume, "sync %d resumed", i+1)
	}

	t.Logf("idle sync, full handshake, no session file: %d bytes (%d up, %d down)", full.total(), full.in, full.out)
	t.Logf("idle sync, full handshake, first with a session file: %d bytes (%d up, %d down)", first.total(), first.in, first.out)
	t.Logf("idle sync, resumed: %d bytes (%d up, %d down)", resumed.total(), resumed.in, resumed.out)
	t.Logf("idle sync, resumed again: %d bytes (%d up, %d down)", again.total(), again.in, again.out)
	assert.Greater(t, full.total(), int64(4000), "a full mutual-TLS handshake costs kilobytes")
	assert.LessOrEqual(t, resumed.total(), int64(1024), "a resumed idle sync costs at most 1 KiB")
	assert.LessOrEqual(t, again.total(), int64(1024), "and so does the next")
	assert.Less(t, 3*resumed.total(), full.total(), "resuming cuts an idle sync to under a third")
}

// TestSessionFileDamaged: a damaged session file is ignored with a
// warning; the sync makes a full handshake, and the next one resumes.
func TestSessionFileDamaged(t *testing.T) {
	c, hs, ln := resumeCloud(t, cloudOptions{memory: true})
	d := agreed(t, c, ln)
	file := filepath.Join(t.TempDir(), "tls-sessions")
	idleSync(t, d, ln, file)
	data, err := os.ReadFile(file)
	require.NoError(t, err)
	data[len(data)/3] ^= 0x20
	require.NoError(t, os.WriteFile(file, data, 0o600))
	hs.take()

	var w warnings
	cfg := fastRetries()
	cfg.Logger = w.logger()
	cl := d.restart(t, file, cfg)
	assert.Contains(t, w.String(), "ignoring the TLS session file", "the damaged file is reported")
	_, err = cl.SyncReport(t.Context())
	require.NoError(t, err, "a damaged session file does not stop the sync")
	require.NoError(t, cl.Close())
	ln.next(t)
	hellos, verified := hs.take()
	requireFullPQ(t, hellos, verified, "the sync with a damaged file")

	idleSync(t, d, ln, file)
	hellos, verified = hs.take()
	requireResumed(t, hellos, verified, "the sync after")
}

// TestSessionNotOfferedToAnotherServer: a session is offered only to the
// server that issued it, not to another on the same host.
func TestSessionNotOfferedToAnotherServer(t *testing.T) {
	c, hs, ln := resumeCloud(t, cloudOptions{memory: true})
	d := agreed(t, c, ln)
	file := filepath.Join(t.TempDir(), "tls-sessions")
	idleSync(t, d, ln, file)
	hs.take()

	// Another server on 127.0.0.1, with the same handler and CA.
	other := &handshakes{}
	srv := httptest.NewUnstartedServer(c.handler)
	srv.TLS = httpsync.ServerTLSConfig(serverCert(t, c.ca))
	other.install(srv.TLS)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	cfg := fastRetries()
	cfg.URL = srv.URL
	cl := d.restart(t, file, cfg)
	_, err := cl.SyncReport(t.Context())
	require.NoError(t, err)
	require.NoError(t, cl.Close())
	hellos, verified := other.take()
	requireFullPQ(t, hellos, verified, "the other server")
	assert.Contains(t, hellos[0], tls.X25519MLKEM768, "no session was offered to the other server (a resumption offers X25519 only)")

	idleSync(t, d, ln, file)
	hellos, verified = hs.take()
	requireResumed(t, hellos, verified, "the first server's session is kept")
}

// TestSessionDeclined: when the cloud no longer knows the session (it
// restarted), the device does not settle for the X25519-only handshake it
// offered with the session, but makes a full one with the post-quantum
// key exchange, so that later resumptions build on it.
func TestSessionDeclined(t *testing.T) {
	var forget atomic.Bool
	hs := &handshakes{}
	ln := newCountingListener(t)
	c := newCloud(t, cloudOptions{memory: true, server: true, listen: func(*testing.T) net.Listener { return ln }, tls: func(cfg *tls.Config) {
		hs.install(cfg)
		unwrap := cfg.UnwrapSession
		cfg.UnwrapSession = func(id []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
			if forget.Load() {
				return nil, nil
			}
			return unwrap(id, cs)
		}
	}})
	d := agreed(t, c, ln)
	file := filepath.Join(t.TempDir(), "tls-sessions")
	idleSync(t, d, ln, file)
	hs.take()

	forget.Store(true)
	idleSync(t, d, ln, file)
	hellos, verified := hs.take()
	require.Len(t, hellos, 2, "the declined attempt, then a full handshake")
	assert.Equal(t, []tls.CurveID{tls.X25519}, hellos[0], "the first attempt offered the session")
	assert.Contains(t, hellos[1], tls.X25519MLKEM768, "the second is a full handshake with the hybrid key exchange")
	require.NotEmpty(t, verified)
	last := verified[len(verified)-1]
	assert.False(t, last.DidResume)
	assert.Equal(t, tls.X25519MLKEM768, last.CurveID, "the device never completes a full handshake with X25519 alone")

	forget.Store(false)
	idleSync(t, d, ln, file)
	hellos, verified = hs.take()
	requireResumed(t, hellos, verified, "the session of the new full handshake")
}

// TestRevokedDeviceCannotResume: a revocation check in the server's
// VerifyConnection runs on resumed handshakes too (VerifyPeerCertificate
// does not), so a device revoked after it got its ticket cannot resume.
func TestRevokedDeviceCannotResume(t *testing.T) {
	c, hs, ln := resumeCloud(t, cloudOptions{memory: true})
	d := agreed(t, c, ln)
	file := filepath.Join(t.TempDir(), "tls-sessions")
	idleSync(t, d, ln, file)
	checks := hs.peerChecks.Load()
	idleSync(t, d, ln, file)
	_, verified := hs.take()
	require.True(t, verified[len(verified)-1].DidResume)
	assert.Equal(t, checks, hs.peerChecks.Load(), "VerifyPeerCertificate is not called on a resumption: it is no place for a revocation check")

	errRevoked := errors.New("device revoked")
	serial := d.cred.Cert.SerialNumber
	hs.setRefuse(func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) > 0 && cs.PeerCertificates[0].SerialNumber.Cmp(serial) == 0 {
			return errRevoked
		}
		return nil
	})
	syncs := c.handler.Stats().Syncs
	cfg := fastRetries()
	cfg.MaxAttempts = 2
	cl := d.restart(t, file, cfg)
	_, err := cl.SyncReport(t.Context())
	require.Error(t, err, "a revoked device cannot sync")
	require.NoError(t, cl.Close())
	hellos, verified := hs.take()
	require.NotEmpty(t, verified)
	assert.Equal(t, []tls.CurveID{tls.X25519}, hellos[0], "the device offered its session")
	assert.True(t, verified[0].DidResume, "the resumption reached VerifyConnection, which refused it")
	assert.Equal(t, syncs, c.handler.Stats().Syncs, "no request of the revoked device reached the handler")
}

// TestExpiredDeviceCannotResume: a device whose certificate expired after
// it got its ticket is refused, whether crypto/tls (by the server's TLS
// clock) declines the session or the handler (by its clock) refuses the
// resumed connection.
func TestExpiredDeviceCannotResume(t *testing.T) {
	for _, tc := range []struct {
		name    string
		tlsTime bool // the server's TLS clock is late too
		resumed bool // the connection refused was a resumed one
	}{
		{name: "the handler refuses the resumed connection", resumed: true},
		{name: "crypto/tls declines the session", tlsTime: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var late atomic.Bool
			clock := func() time.Time {
				if late.Load() {
					return time.Now().Add(2 * time.Hour) // devices are enrolled for an hour
				}
				return time.Now()
			}
			hs := &handshakes{}
			ln := newCountingListener(t)
			c := newCloud(t, cloudOptions{memory: true, server: true, config: httpsync.Config{Now: clock},
				listen: func(*testing.T) net.Listener { return ln },
				tls: func(cfg *tls.Config) {
					hs.install(cfg)
					if tc.tlsTime {
						cfg.Time = clock
					}
				}})
			d := agreed(t, c, ln)
			file := filepath.Join(t.TempDir(), "tls-sessions")
			idleSync(t, d, ln, file)
			hs.take()

			late.Store(true)
			cl := d.restart(t, file, fastRetries())
			_, err := cl.SyncReport(t.Context())
			require.ErrorIs(t, err, httpsync.ErrCredentialExpired, "an expired device is refused")
			require.NoError(t, cl.Close())
			_, verified := hs.take()
			require.NotEmpty(t, verified)
			assert.Equal(t, tc.resumed, verified[len(verified)-1].DidResume)
		})
	}
}

func TestSessionFileNeedsACredentialClient(t *testing.T) {
	c := newCloud(t, cloudOptions{memory: true})
	d := c.newDevice(t, "kamuga", "kamuga-tablet-1", fastRetries())
	_, err := httpsync.NewClient(d.rep, httpsync.ClientConfig{HTTPClient: c.srv.Client(), URL: c.url, SessionFile: filepath.Join(t.TempDir(), "s")})
	assert.Error(t, err, "SessionFile with a caller's HTTPClient is refused")
}

// TestCredentialFileKeepsSessionsBesideIt: a device whose credential was
// read from a file keeps its TLS sessions beside it without being told,
// so its restarts resume; NoSessionFile keeps none.
func TestCredentialFileKeepsSessionsBesideIt(t *testing.T) {
	c, hs, ln := resumeCloud(t, cloudOptions{memory: true})
	d := agreed(t, c, ln)
	hs.take()
	path := filepath.Join(t.TempDir(), "credential.pem")
	require.NoError(t, d.cred.WriteFile(path))
	read, err := httpsync.ReadCredentialFile(path)
	require.NoError(t, err)
	read, err = read.WithKey(d.cred.Key)
	require.NoError(t, err)
	require.Equal(t, path+".sessions", read.SessionFileFor())

	sync := func(cfg httpsync.ClientConfig) {
		t.Helper()
		cfg.Credential, cfg.Logger = read, testLogger(t)
		cl, err := httpsync.NewClient(d.rep, cfg)
		require.NoError(t, err)
		_, err = cl.SyncReport(t.Context())
		require.NoError(t, err)
		require.NoError(t, cl.Close())
		ln.next(t)
	}
	sync(fastRetries())
	hellos, verified := hs.take()
	requireFullPQ(t, hellos, verified, "the first sync")
	fi, err := os.Stat(path + ".sessions")
	require.NoError(t, err, "the sessions are kept beside the credential")
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	sync(fastRetries())
	hellos, verified = hs.take()
	requireResumed(t, hellos, verified, "a restart with the credential file")

	cfg := fastRetries()
	cfg.NoSessionFile = true
	sync(cfg)
	hellos, verified = hs.take()
	requireFullPQ(t, hellos, verified, "a client told to keep no sessions")
}
