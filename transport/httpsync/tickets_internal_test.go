package httpsync

import (
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fixedSessions is a client session cache offering one given session and
// keeping the last one it is given.
type fixedSessions struct{ offer, got *tls.ClientSessionState }

func (f *fixedSessions) Get(string) (*tls.ClientSessionState, bool) { return f.offer, f.offer != nil }
func (f *fixedSessions) Put(_ string, cs *tls.ClientSessionState) {
	if cs != nil {
		f.got = cs
	}
}

// ticketServer is a TLS server config keeping its sessions in s.
func ticketServer(t testing.TB, s *serverSessions) (server, client *tls.Config) {
	t.Helper()
	ca, err := NewDeviceCA("ticket test CA", time.Now(), time.Hour)
	require.NoError(t, err)
	certPEM, keyPEM, err := ca.IssueServerCert([]string{"127.0.0.1"}, time.Now(), time.Hour)
	require.NoError(t, err)
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	require.NoError(t, err)
	server = &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, WrapSession: s.wrap, UnwrapSession: s.unwrap}
	client = &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: ca.Pool(), ServerName: "127.0.0.1"}
	return server, client
}

// connect makes a handshake in memory, offering offer (nil for none), and
// returns whether it resumed and the session the server's ticket gave.
func connect(t testing.TB, server, client *tls.Config, offer *tls.ClientSessionState) (resumed bool, got *tls.ClientSessionState) {
	t.Helper()
	cc, sc := net.Pipe()
	defer cc.Close()
	defer sc.Close()
	cache := &fixedSessions{offer: offer}
	ccfg := client.Clone()
	ccfg.ClientSessionCache = cache
	done := make(chan error, 1)
	go func() {
		s := tls.Server(sc, server)
		if err := s.Handshake(); err != nil {
			done <- err
			return
		}
		_, err := s.Write([]byte{1})
		done <- err
	}()
	c := tls.Client(cc, ccfg)
	require.NoError(t, c.Handshake())
	_, err := c.Read(make([]byte, 1)) // the ticket comes first
	require.NoError(t, err)
	require.NoError(t, <-done)
	require.NotNil(t, cache.got, "the server issued a ticket")
	return c.ConnectionState().DidResume, cache.got
}

func TestServerSessionsTicketServesOnce(t *testing.T) {
	s := newServerSessions(8)
	server, client := ticketServer(t, s)
	resumed, first := connect(t, server, client, nil)
	require.False(t, resumed)
	ticket, _, err := first.ResumptionState()
	require.NoError(t, err)
	assert.Len(t, ticket, 16, "a ticket is a 16-byte name, not the session")
	assert.Equal(t, 1, s.Len())

	resumed, second := connect(t, server, client, first)
	require.True(t, resumed, "the ticket resumes the session")
	assert.Equal(t, 1, s.Len(), "the used session went; the resumed connection's took its place")

	resumed, _ = connect(t, server, client, first)
	assert.False(t, resumed, "a ticket serves once")
	resumed, _ = connect(t, server, client, second)
	assert.True(t, resumed, "the ticket of the resumed connection serves")
}

func TestServerSessionsBounded(t *testing.T) {
	s := newServerSessions(2)
	server, client := ticketServer(t, s)
	var sessions []*tls.ClientSessionState
	for range 3 {
		_, cs := connect(t, server, client, nil)
		sessions = append(sessions, cs)
	}
	assert.Equal(t, 2, s.Len(), "no more than max sessions")
	resumed, _ := connect(t, server, client, sessions[0])
	assert.False(t, resumed, "the oldest session went first")
	resumed, _ = connect(t, server, client, sessions[2])
	assert.True(t, resumed)
}

func TestServerSessionsExpire(t *testing.T) {
	s := newServerSessions(8)
	server, client := ticketServer(t, s)
	_, cs := connect(t, server, client, nil)
	s.now = func() time.Time { return time.Now().Add(sessionLifetime) }
	resumed, _ := connect(t, server, client, cs)
	assert.False(t, resumed, "a session older than a ticket's lifetime is not resumed")
	assert.Equal(t, 1, s.Len(), "only the new connection's session is kept")
}

// TestTicketKeysResumeOnAnotherServer: two servers given the same ticket
// keys resume each other's sessions; a server given other keys does not;
// after a rotation, a ticket sealed with the previous key still resumes,
// and once the previous key is dropped it no longer does.
func TestTicketKeysResumeOnAnotherServer(t *testing.T) {
	key := func(b byte) [32]byte {
		var k [32]byte
		k[0] = b
		return k
	}
	one, client := ticketServer(t, newServerSessions(8))
	two := one.Clone()
	stranger := one.Clone()
	require.NoError(t, SetTicketKeys(one, [][32]byte{key(1)}))
	require.NoError(t, SetTicketKeys(two, [][32]byte{key(1)}))
	require.NoError(t, SetTicketKeys(stranger, [][32]byte{key(9)}))
	require.Error(t, SetTicketKeys(two, nil), "no key")

	resumed, first := connect(t, one, client, nil)
	require.False(t, resumed)
	resumed, second := connect(t, two, client, first)
	assert.True(t, resumed, "the other server resumes the session")
	resumed, _ = connect(t, stranger, client, first)
	assert.False(t, resumed, "a server with other keys cannot")

	require.NoError(t, SetTicketKeys(two, [][32]byte{key(2), key(1)}))
	resumed, third := connect(t, two, client, second)
	assert.True(t, resumed, "after a rotation, the previous key still opens its tickets")
	require.NoError(t, SetTicketKeys(one, [][32]byte{key(2), key(1)}))
	resumed, _ = connect(t, one, client, third)
	assert.True(t, resumed, "a ticket sealed with the new key resumes on the other server once it has the key")
	require.NoError(t, SetTicketKeys(one, [][32]byte{key(2)}))
	resumed, _ = connect(t, one, client, second)
	assert.False(t, resumed, "a dropped key opens nothing")
}
