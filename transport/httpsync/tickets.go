package httpsync

import (
	"container/list"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"sync"
	"time"
)

// maxServerSessions bounds the TLS sessions a server keeps: about 700
// bytes each, so some 45 MB at most.
const maxServerSessions = 1 << 16

// serverSessions keeps the TLS sessions a cloud server can resume, so that
// a ticket is a 16-byte random name for a session kept here. Left to
// itself crypto/tls puts the whole session, encrypted, in the ticket:
// about 600 bytes, most of them the device's certificate, sent once in
// the ticket and again in the device's next ClientHello.
//
// A ticket is good for one resumption: resuming removes it, and the
// resumed connection gets a new one, so a device holds one live ticket
// and the server one session per device. At most max sessions are kept
// (the oldest go first, as do sessions older than crypto/tls's 7 days);
// a device whose session went makes a full handshake. Sessions live in
// this process's memory: see the package doc's caveat on several nodes.
//
// A session keeps the certificates the device presented in the full
// handshake; crypto/tls refuses to resume one whose leaf has expired,
// runs tls.Config.VerifyConnection on every resumption, and gives the
// handler the session's certificates to verify again (VerifyDevice).
// It is safe for concurrent use.
type serverSessions struct {
	max int
	now func() time.Time

	mu    sync.Mutex
	byID  map[[16]byte]*list.Element
	order *list.List // of *serverSession, oldest first
}

type serverSession struct {
	id      [16]byte
	created time.Time
	state   []byte // tls.SessionState.Bytes
}

func newServerSessions(max int) *serverSessions {
	return &serverSessions{max: max, now: time.Now, byID: map[[16]byte]*list.Element{}, order: list.New()}
}

// wrap is tls.Config.WrapSession: it keeps the session and returns its
// name.
func (s *serverSessions) wrap(_ tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
	state, err := ss.Bytes()
	if err != nil {
		return nil, err
	}
	var id [16]byte
	_, _ = rand.Read(id[:]) // never fails (crypto/rand)
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.prune(now)
	s.byID[id] = s.order.PushBack(&serverSession{id: id, created: now, state: state})
	for s.order.Len() > s.max {
		s.drop(s.order.Front())
	}
	return id[:], nil
}

// unwrap is tls.Config.UnwrapSession: it takes the named session out, so
// that its ticket serves once. An unknown name is no session (a full
// handshake follows).
func (s *serverSessions) unwrap(identity []byte, _ tls.ConnectionState) (*tls.SessionState, error) {
	if len(identity) != 16 {
		return nil, nil
	}
	now := s.now()
	s.mu.Lock()
	s.prune(now)
	el, ok := s.byID[[16]byte(identity)]
	if ok {
		s.drop(el)
	}
	s.mu.Unlock()
	if !ok {
		return nil, nil
	}
	ss, err := tls.ParseSessionState(el.Value.(*serverSession).state)
	if err != nil {
		return nil, nil
	}
	return ss, nil
}

// Len returns the number of sessions kept.
func (s *serverSessions) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.order.Len()
}

// prune drops sessions older than a ticket's lifetime.
func (s *serverSessions) prune(now time.Time) {
	for el := s.order.Front(); el != nil && now.Sub(el.Value.(*serverSession).created) >= sessionLifetime; el = s.order.Front() {
		s.drop(el)
	}
}

func (s *serverSessions) drop(el *list.Element) {
	delete(s.byID, el.Value.(*serverSession).id)
	s.order.Remove(el)
}

// TicketKeyLifetime is how long a session ticket key must still be
// accepted after servers stop encrypting new tickets with it: the
// longest a TLS 1.3 ticket may be used (crypto/tls's 7 days).
const TicketKeyLifetime = sessionLifetime

// SetTicketKeys makes the server of cfg (from ServerTLSConfig, before it
// serves) issue stateless session tickets, encrypted with keys[0] and
// decrypted with any of keys, instead of keeping its sessions in memory:
// every server given the same keys resumes a session any of them began,
// so a device that resumed with one node of a cloud resumes with the
// next one too, and a restarted server resumes what it issued before.
// Call it again with new keys to rotate them (first the key to encrypt
// with, then those whose tickets may still be in use: keep each for
// TicketKeyLifetime after it stops encrypting). The keys are secrets:
// whoever holds them can read the sessions in tickets and make tickets
// of their own for the device certificates they saw. It is safe to call
// while the server serves.
//
// A stateless ticket carries the whole session, device certificate
// included, so it is some 500 bytes larger (once in the ticket, once in
// the next ClientHello), and it may be used more than once within its
// lifetime; the session and its device certificate are verified at every
// resumption (VerifyConnection and the Handler) as before.
func SetTicketKeys(cfg *tls.Config, keys [][32]byte) error {
	if len(keys) == 0 {
		return errors.New("set ticket keys: no key")
	}
	cfg.WrapSession, cfg.UnwrapSession = nil, nil
	cfg.SetSessionTicketKeys(keys)
	return nil
}
