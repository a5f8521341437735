package httpsync

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/chartsync/chartsync/internal/atomicfile"
)

var _ tls.ClientSessionCache = (*SessionCache)(nil)

// Limits of a session file.
const (
	// sessionLifetime is how long a TLS 1.3 ticket may be used at most
	// (RFC 8446, Section 4.6.1; crypto/tls issues tickets for as long).
	sessionLifetime = 7 * 24 * time.Hour
	// maxSessionFileBytes bounds a session file read back: a handful of
	// tickets take a few kilobytes.
	maxSessionFileBytes = 1 << 20
	// maxSessionKey and maxTicket bound an entry of the file (a TLS
	// ticket is at most 2¹⁶-1 bytes).
	maxSessionKey = 1024
	maxTicket     = 1<<16 - 1
)

// sessionFileHeader is the first line of a session file; the format's
// version is its last word.
const sessionFileHeader = "chartsync tls sessions 1\n"

// SessionCacheConfig configures a SessionCache. Device is required; every
// other zero value means the documented default.
type SessionCacheConfig struct {
	// Device is the device certificate the sessions are made with. The
	// cloud keeps the certificate of the handshake that issued a ticket
	// and sees it again on every resumption, so a file of sessions made
	// with another certificate (an earlier enrolment, another device) is
	// ignored: resuming them would present the old certificate.
	Device *x509.Certificate
	// MaxSessions bounds the sessions kept, one per server (default 8);
	// the least recently used goes first.
	MaxSessions int
	// Logger receives a warning when the file is ignored or cannot be
	// written; nil discards them.
	Logger *slog.Logger
	// Now is the clock sessions expire by (default time.Now).
	Now func() time.Time
}

// Validate reports a configuration that cannot work.
func (c SessionCacheConfig) Validate() error {
	switch {
	case c.Device == nil:
		return errors.New("session cache: the device certificate is required")
	case c.MaxSessions < 0:
		return errors.New("session cache: MaxSessions must not be negative")
	}
	return nil
}

// SessionCache is a tls.ClientSessionCache that keeps the TLS 1.3 session
// tickets a cloud gives a device in a file, so that the device resumes its
// session after a restart: a resumed handshake sends no certificate and no
// signature, only the ticket.
//
// The file is a secret. It holds resumption secrets, so whoever reads it
// can resume the device's session, and be taken for the device, until the
// cloud has seen the ticket used or it expires (at most 7 days); whoever
// can write it can plant a session that makes the device take an impostor
// for the cloud. It is written mode 0600, and a file that other users may
// read or write is ignored.
//
// OpenSessionCache never fails on the file's content: a missing file is an
// empty cache; a damaged file, a file of another format version or device
// certificate, or one with a loose mode is ignored with a warning and
// replaced at the next Flush. Sessions are kept per key (crypto/tls asks by
// server name; a Client asks by the cloud's address and server name), so a
// ticket is offered only to the server that issued it.
//
// Get and Put work in memory; Flush writes the file, atomically and
// durably, when it has changed. A Client flushes after every sync and on
// Close. A SessionCache is safe for concurrent use; two processes sharing
// a file do not corrupt it (the last Flush wins, and a ticket lost that
// way costs one full handshake).
type SessionCache struct {
	path   string
	device string // hex SHA-256 of the device certificate
	max    int
	log    *slog.Logger
	now    func() time.Time

	flushMu sync.Mutex // one Flush at a time, so the newest state is written last

	mu      sync.Mutex
	entries []*sessionEntry // least recently used first
	dirty   bool
}

type sessionEntry struct {
	key    string
	saved  time.Time
	ticket []byte
	state  []byte // tls.SessionState.Bytes
	cs     *tls.ClientSessionState
}

// OpenSessionCache returns a cache kept in the file at path, loading the
// sessions it holds for cfg.Device. It fails only on a configuration that
// cannot work; see SessionCache for what happens to a file that cannot be
// used.
func OpenSessionCache(path string, cfg SessionCacheConfig) (*SessionCache, error) {
	if path == "" {
		return nil, errors.New("session cache: a file path is required")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxSessions == 0 {
		cfg.MaxSessions = 8
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	sum := sha256.Sum256(cfg.Device.Raw)
	c := &SessionCache{path: path, device: hex.EncodeToString(sum[:]), max: cfg.MaxSessions, log: cfg.Logger.With("session_file", path), now: cfg.Now}
	c.load()
	return c, nil
}

// load reads the file, ignoring it (with a warning) if it cannot be used.
func (c *SessionCache) load() {
	data, err := readSessionFile(c.path)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	if err != nil {
		c.log.Warn("ignoring the TLS session file; the next sync makes a full TLS handshake", "err", err)
		c.dirty = true // replace it at the next Flush
		return
	}
	entries, dropped, err := parseSessionFile(data, c.device, c.now())
	if err != nil {
		c.log.Warn("ignoring the TLS session file; the next sync makes a full TLS handshake", "err", err)
		c.dirty = true
		return
	}
	if dropped > 0 {
		c.log.Info("dropped expired or unreadable TLS sessions", "dropped", dropped)
		c.dirty = true
	}
	if len(entries) > c.max {
		entries = entries[len(entries)-c.max:]
		c.dirty = true
	}
	c.entries = entries
}

// readSessionFile reads a session file that only its owner may read and
// write, of at most maxSessionFileBytes.
func readSessionFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	switch {
	case err != nil:
		return nil, err
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("%s is not a regular file", path)
	case fi.Mode().Perm()&0o077 != 0:
		return nil, fmt.Errorf("other users may read or change %s (mode %v): it holds secrets, so it must be 0600", path, fi.Mode().Perm())
	case fi.Size() > maxSessionFileBytes:
		return nil, fmt.Errorf("%s is %d bytes, over the %d a session file may hold", path, fi.Size(), maxSessionFileBytes)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxSessionFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxSessionFileBytes {
		return nil, fmt.Errorf("%s is over the %d bytes a session file may hold", path, maxSessionFileBytes)
	}
	return data, nil
}

// sessionFile is the JSON body of a session file.
type sessionFile struct {
	Device   string        `json:"device"` // hex SHA-256 of the device certificate
	Sessions []fileSession `json:"sessions"`
}

type fileSession struct {
	Key    string `json:"key"`
	Saved  int64  `json:"saved"` // Unix seconds
	Ticket []byte `json:"ticket"`
	State  []byte `json:"state"` // tls.SessionState.Bytes
}

// encodeSessionFile writes the header line, the JSON body on one line and
// a last line "sha256 HEX" over the two before it.
func encodeSessionFile(f sessionFile) ([]byte, error) {
	body, err := json.Marshal(f)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	buf.WriteString(sessionFileHeader)
	buf.Write(body)
	buf.WriteByte('\n')
	sum := sha256.Sum256(buf.Bytes())
	buf.WriteString("sha256 " + hex.EncodeToString(sum[:]) + "\n")
	return buf.Bytes(), nil
}

// decodeSessionFile checks a session file's header and checksum and
// decodes its body.
func decodeSessionFile(data []byte) (sessionFile, error) {
	var f sessionFile
	if !bytes.HasPrefix(data, []byte(sessionFileHeader)) {
		if bytes.HasPrefix(data, []byte("chartsync tls sessions ")) {
			return f, errors.New("the session file is of another format version")
		}
		return f, errors.New("not a chartsync TLS session file")
	}
	if len(data) == 0 || data[len(data)-1] != '\n' {
		return f, errors.New("the session file is truncated")
	}
	i := bytes.LastIndexByte(data[:len(data)-1], '\n')
	body, last := data[:i+1], data[i+1:len(data)-1]
	sum := sha256.Sum256(body)
	if len(body) <= len(sessionFileHeader) || string(last) != "sha256 "+hex.EncodeToString(sum[:]) {
		return f, errors.New("the session file is damaged (its checksum does not match)")
	}
	if err := json.Unmarshal(body[len(sessionFileHeader):], &f); err != nil {
		return f, fmt.Errorf("the session file is damaged: %w", err)
	}
	return f, nil
}

// parseSessionFile decodes a session file for the device whose
// certificate hashes to device, and returns its usable sessions, least
// recently saved first, and how many it dropped as expired or unreadable
// (a session saved by another Go version may not parse).
func parseSessionFile(data []byte, device string, now time.Time) (entries []*sessionEntry, dropped int, err error) {
	f, err := decodeSessionFile(data)
	if err != nil {
		return nil, 0, err
	}
	if f.Device != device {
		return nil, 0, errors.New("the session file is for another device certificate (another device, or an earlier enrolment of this one)")
	}
	seen := map[string]bool{}
	for _, s := range f.Sessions {
		saved := time.Unix(s.Saved, 0)
		switch {
		case s.Key == "" || len(s.Key) > maxSessionKey || seen[s.Key],
			len(s.Ticket) == 0 || len(s.Ticket) > maxTicket,
			saved.After(now.Add(time.Hour)), now.Sub(saved) >= sessionLifetime:
			dropped++
			continue
		}
		st, err := tls.ParseSessionState(s.State)
		if err != nil {
			dropped++
			continue
		}
		cs, err := tls.NewResumptionState(s.Ticket, st)
		if err != nil {
			dropped++
			continue
		}
		seen[s.Key] = true
		entries = append(entries, &sessionEntry{key: s.Key, saved: saved, ticket: s.Ticket, state: s.State, cs: cs})
	}
	slices.SortStableFunc(entries, func(a, b *sessionEntry) int { return a.saved.Compare(b.saved) })
	return entries, dropped, nil
}

// Get implements tls.ClientSessionCache: it returns the session kept for
// key, unless it has expired.
func (c *SessionCache) Get(key string) (*tls.ClientSessionState, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	i := c.find(key)
	if i < 0 {
		return nil, false
	}
	e := c.entries[i]
	if c.now().Sub(e.saved) >= sessionLifetime {
		c.remove(i)
		return nil, false
	}
	// Most recently used last.
	c.entries = append(append(c.entries[:i], c.entries[i+1:]...), e)
	return e.cs, true
}

// Put implements tls.ClientSessionCache: it keeps cs for key, or forgets
// key's session if cs is nil (crypto/tls does so when a session fails).
// The least recently used session goes when there are more than
// MaxSessions.
func (c *SessionCache) Put(key string, cs *tls.ClientSessionState) {
	var e *sessionEntry
	if cs != nil {
		ticket, st, err := cs.ResumptionState()
		var state []byte
		if err == nil && st != nil && len(ticket) > 0 && len(ticket) <= maxTicket {
			state, err = st.Bytes()
		}
		if err != nil || state == nil {
			c.log.Debug("a TLS session cannot be kept", "err", err)
			cs = nil
		} else {
			e = &sessionEntry{key: key, saved: c.now(), ticket: ticket, state: state, cs: cs}
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if i := c.find(key); i >= 0 {
		c.remove(i)
	}
	if e == nil {
		return
	}
	c.entries = append(c.entries, e)
	if len(c.entries) > c.max {
		c.entries = c.entries[len(c.entries)-c.max:]
	}
	c.dirty = true
}

// has reports whether the cache holds an unexpired session for key.
func (c *SessionCache) has(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	i := c.find(key)
	return i >= 0 && c.now().Sub(c.entries[i].saved) < sessionLifetime
}

// Len returns the number of sessions kept.
func (c *SessionCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

func (c *SessionCache) find(key string) int {
	for i, e := range c.entries {
		if e.key == key {
			return i
		}
	}
	return -1
}

func (c *SessionCache) remove(i int) {
	c.entries = append(c.entries[:i], c.entries[i+1:]...)
	c.dirty = true
}

// Flush writes the sessions to the file, mode 0600, atomically and
// durably (a temporary file, fsync, rename, fsync of the directory), if
// they changed since the last Flush. On error the file is as it was and
// the next Flush tries again.
func (c *SessionCache) Flush() error {
	c.flushMu.Lock()
	defer c.flushMu.Unlock()
	c.mu.Lock()
	if !c.dirty {
		c.mu.Unlock()
		return nil
	}
	f := sessionFile{Device: c.device, Sessions: []fileSession{}}
	now := c.now()
	for _, e := range c.entries {
		if now.Sub(e.saved) < sessionLifetime {
			f.Sessions = append(f.Sessions, fileSession{Key: e.key, Saved: e.saved.Unix(), Ticket: e.ticket, State: e.state})
		}
	}
	c.dirty = false
	c.mu.Unlock()
	data, err := encodeSessionFile(f)
	if err == nil {
		err = atomicfile.Write(c.path, data, atomicfile.Options{Perm: 0o600})
	}
	if err != nil {
		c.mu.Lock()
		c.dirty = true
		c.mu.Unlock()
		return fmt.Errorf("save TLS sessions: %w", err)
	}
	return nil
}

// scoped returns a view of the cache whose keys are prefixed with scope
// (a server's address), for one connection's tls.Config.
func (c *SessionCache) scoped(scope string) tls.ClientSessionCache {
	return scopedSessions{c: c, scope: scope}
}

// scopeKey is the key under which a Client keeps the session for a
// connection to addr with TLS server name name.
func scopeKey(addr, name string) string { return addr + " " + name }

type scopedSessions struct {
	c     *SessionCache
	scope string
}

func (s scopedSessions) Get(key string) (*tls.ClientSessionState, bool) {
	return s.c.Get(scopeKey(s.scope, key))
}

func (s scopedSessions) Put(key string, cs *tls.ClientSessionState) {
	s.c.Put(scopeKey(s.scope, key), cs)
}
