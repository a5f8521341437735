package httpsync

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"time"
)

// errNotResumed aborts a handshake that offered a session with the small
// key share but that the server answered with a full handshake.
var errNotResumed = errors.New("the cloud did not resume the TLS session")

// resumingDialer makes a Client's TLS connections when it keeps sessions
// (ClientConfig.SessionFile).
//
// Resuming alone saves little: crypto/tls's default key exchange is the
// post-quantum hybrid X25519MLKEM768, whose key shares take 2.3 KB of
// the 4.7 KB of an idle sync, resumed or not. So when it holds a session
// for the server, the dialer offers it with an X25519 key share only.
// That keeps what the hybrid gives: a resumed handshake's keys come from
// both the X25519 exchange (forward secrecy) and the session's secret,
// which the full handshake that began the chain of sessions derived with
// X25519MLKEM768, so breaking X25519 alone reveals nothing. It holds only
// if that full handshake did use the hybrid, so a handshake that offered
// X25519 alone must resume: if the server declines the session (it
// restarted, or the ticket expired), the dialer aborts it, forgets the
// session and makes a full handshake with the default key exchange.
type resumingDialer struct {
	tls     *tls.Config // the Client's: verifies the cloud, presents the device
	cache   *SessionCache
	net     *net.Dialer
	timeout time.Duration // of the TLS handshake
	log     *slog.Logger
}

// DialTLSContext is http.Transport.DialTLSContext.
func (d *resumingDialer) DialTLSContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	full := d.tls.Clone()
	if full.ServerName == "" {
		full.ServerName = host
	}
	// No ALPN: HTTP/1.1. A sync is one request a round; HTTP/2's
	// preface, settings and window frames, each its own TLS record, cost
	// an idle sync about a seventh of its bytes and give it nothing.
	full.NextProtos = nil
	full.ClientSessionCache = d.cache.scoped(addr)
	key := scopeKey(addr, full.ServerName)
	if d.cache.has(key) {
		conn, err := d.handshake(ctx, network, addr, resumeOnly(full))
		if !errors.Is(err, errNotResumed) {
			return conn, err
		}
		d.cache.Put(key, nil)
		d.log.Debug("the cloud declined the TLS session; making a full handshake", "addr", addr)
	}
	return d.handshake(ctx, network, addr, full)
}

// resumeOnly returns cfg offering the X25519 key share only and refusing
// a handshake that does not resume.
func resumeOnly(cfg *tls.Config) *tls.Config {
	r := cfg.Clone()
	r.CurvePreferences = []tls.CurveID{tls.X25519}
	verify := cfg.VerifyConnection
	r.VerifyConnection = func(cs tls.ConnectionState) error {
		if verify != nil {
			if err := verify(cs); err != nil {
				return err
			}
		}
		if !cs.DidResume {
			return errNotResumed
		}
		return nil
	}
	return r
}

func (d *resumingDialer) handshake(ctx context.Context, network, addr string, cfg *tls.Config) (*tls.Conn, error) {
	raw, err := d.net.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	hctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	conn := tls.Client(raw, cfg)
	if err := conn.HandshakeContext(hctx); err != nil {
		raw.Close()
		return nil, err
	}
	return conn, nil
}
