package httpsync

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/transport"
)

var _ transport.Link = (*Client)(nil)

// ClientConfig configures a Client. Every zero value means the documented
// default.
type ClientConfig struct {
	// Credential authenticates the device and tells it how to recognise
	// the cloud. Required unless HTTPClient is set; it must carry the
	// device's key (Credential.WithIdentity).
	Credential *Credential
	// URL is the cloud's base URL (default Credential.CloudURL).
	URL string
	// CloudReplica is the cloud's replica ID (default
	// Credential.CloudReplica; if both are empty the client asks the cloud
	// with GET /v1/hello before its first sync).
	CloudReplica string
	// Clinic, if set, limits what is sent to the charts in that clinic's
	// scope as this replica knows it (default Credential.Device.Clinic):
	// the cloud refuses a whole bundle that touches any other chart, so a
	// chart that came from elsewhere (a file from another clinic) must not
	// block syncing.
	Clinic string
	// HTTPClient, if set, is used instead of one built from Credential; its
	// transport must present the device's certificate.
	HTTPClient *http.Client
	// SessionFile, if set, keeps the TLS sessions the cloud issues in this
	// file (a SessionCache; mode 0600, as it holds secrets), so that a
	// client made later, after a restart too, resumes its session instead
	// of making a full handshake: an idle sync then costs about 1.4 KB
	// instead of 4.7 KB. Keep it beside the credential. A damaged or
	// foreign file is ignored with a warning. Not with HTTPClient (give
	// its transport a SessionCache instead). If empty, a Credential read
	// from a file (ReadCredentialFile) keeps its sessions beside it
	// (Credential.SessionFileFor); set NoSessionFile to keep none.
	SessionFile string
	// NoSessionFile keeps TLS sessions in memory only: every new client
	// starts with a full handshake.
	NoSessionFile bool
	// Insecure allows a plain http:// URL. No example uses it: it is for a
	// cloud behind a proxy that authenticates devices itself.
	Insecure bool
	// MaxAttempts bounds the tries of one request when the link drops or
	// the cloud is busy or failing (default 6). 4xx answers are never
	// retried.
	MaxAttempts int
	// MinBackoff and MaxBackoff bound the wait before a retry (defaults
	// 500ms and 30s): the n-th retry waits a random time up to
	// min(MaxBackoff, MinBackoff·2ⁿ), or the cloud's Retry-After if longer.
	MinBackoff, MaxBackoff time.Duration
	// StallTimeout cuts a request whose bytes stop moving for this long
	// (default 60s); it is then retried.
	StallTimeout time.Duration
	// MaxRounds bounds the round trips of one Sync (default 1000).
	MaxRounds int
	// MaxResponseBytes bounds a response bundle (default
	// replica.MaxBundleBytes).
	MaxResponseBytes int64
	// Progress, if set, is called as a sync moves bytes and completes
	// round trips, for a progress bar. It must return quickly.
	Progress func(Progress)
	// Logger receives retries and syncs; nil discards them.
	Logger *slog.Logger
}

// Validate reports a configuration that cannot work.
func (c ClientConfig) Validate() error {
	if c.Credential == nil && c.HTTPClient == nil {
		return errors.New("httpsync client: a Credential (or HTTPClient) is required")
	}
	if c.SessionFile != "" && (c.HTTPClient != nil || c.Credential == nil) {
		return errors.New("httpsync client: SessionFile needs a client built from a Credential, not HTTPClient (set a SessionCache as its TLS ClientSessionCache instead)")
	}
	if c.Credential != nil && c.HTTPClient == nil {
		if c.Credential.Key == nil {
			return fmt.Errorf("httpsync client: %w", ErrNoDeviceKey)
		}
		if err := c.Credential.checkKey(c.Credential.Key); err != nil {
			return fmt.Errorf("httpsync client: %w", err)
		}
	}
	u := c.URL
	if u == "" && c.Credential != nil {
		u = c.Credential.CloudURL
	}
	if u == "" {
		return errors.New("httpsync client: no cloud URL (set URL, or enrol the device with one)")
	}
	pu, err := url.Parse(u)
	if err != nil || pu.Host == "" {
		return fmt.Errorf("httpsync client: cloud URL %q is not a URL like https://host:port", u)
	}
	switch {
	case pu.Scheme == "https":
	case pu.Scheme == "http" && c.Insecure:
	case pu.Scheme == "http":
		return fmt.Errorf("httpsync client: cloud URL %q is plain HTTP; use https (Insecure allows http only behind an authenticating proxy)", u)
	default:
		return fmt.Errorf("httpsync client: cloud URL %q must start with https://", u)
	}
	if c.MaxAttempts < 0 || c.MinBackoff < 0 || c.MaxBackoff < 0 || c.StallTimeout < 0 || c.MaxRounds < 0 || c.MaxResponseBytes < 0 {
		return errors.New("httpsync client: limits must not be negative")
	}
	return nil
}

func (c ClientConfig) withDefaults() ClientConfig {
	if c.Credential != nil {
		if c.URL == "" {
			c.URL = c.Credential.CloudURL
		}
		if c.CloudReplica == "" {
			c.CloudReplica = c.Credential.CloudReplica
		}
		if c.Clinic == "" {
			c.Clinic = c.Credential.Device.Clinic
		}
	}
	c.URL = strings.TrimRight(c.URL, "/")
	if c.MaxAttempts == 0 {
		c.MaxAttempts = 6
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = 500 * time.Millisecond
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = 30 * time.Second
	}
	if c.StallTimeout == 0 {
		c.StallTimeout = 60 * time.Second
	}
	if c.MaxRounds == 0 {
		c.MaxRounds = 1000
	}
	if c.MaxResponseBytes == 0 {
		c.MaxResponseBytes = replica.MaxBundleBytes
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Phase is what a sync is doing when it reports Progress.
type Phase string

// Phases of a sync.
const (
	PhaseSending   Phase = "sending"   // uploading this replica's bundle
	PhaseReceiving Phase = "receiving" // downloading the cloud's bundle
	PhaseApplying  Phase = "applying"  // storing what the cloud sent
	PhaseRetrying  Phase = "retrying"  // waiting before a retry
	PhaseDone      Phase = "done"      // the sync finished
)

// Progress is a snapshot of a sync in progress.
type Progress struct {
	Phase Phase
	// Round is the round trip in progress (from 1); RoundTrips those done.
	Round, RoundTrips int
	// Done and Total are the bytes moved and expected of the current
	// transfer (Total is -1 when unknown).
	Done, Total int64
	// Sent and Received count every byte of this sync so far, retries
	// included.
	Sent, Received int64
	// Retries counts requests retried so far; RetryIn is the wait before
	// the next one (PhaseRetrying).
	Retries int
	RetryIn time.Duration
}

// Report is what a sync did: transport.Stats (bundles, bytes and changes
// each way; bytes include retries) and the HTTP details.
type Report struct {
	transport.Stats
	RoundTrips int           // requests answered
	Retries    int           // requests retried after a dropped link or a busy cloud
	Charts     int           // charts changed here
	Duration   time.Duration // the whole sync, retries included
}

// Client syncs a local replica with the cloud over HTTPS. It is safe for
// concurrent use; concurrent Syncs run one after another.
type Client struct {
	local *replica.Replica
	cfg   ClientConfig
	http  *http.Client
	log   *slog.Logger

	sessions *SessionCache // nil without SessionFile

	mu sync.Mutex // one sync at a time

	cloudMu sync.Mutex
	cloud   string // the cloud's replica ID, once known

	// refused is the digest of the last bundle the cloud refused (a
	// final 4xx answer), and that answer; cleared by a complete sync.
	// Guarded by mu.
	refused    [sha256.Size]byte
	refusedErr error

	// probe is the TLS configuration of probeRefusal (nil: no probe).
	probe *tls.Config
}

// NewClient returns a client syncing local with the cloud.
func NewClient(local *replica.Replica, cfg ClientConfig) (*Client, error) {
	if local == nil {
		return nil, errors.New("httpsync client: a local replica is required")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if cfg.CloudReplica != "" {
		if err := checkReplicaID(cfg.CloudReplica); err != nil {
			return nil, fmt.Errorf("httpsync client: cloud %w", err)
		}
	}
	c := &Client{local: local, cfg: cfg, http: cfg.HTTPClient, log: cfg.Logger.With("cloud_url", cfg.URL), cloud: cfg.CloudReplica}
	if c.http == nil {
		tc := cfg.Credential.TLSConfig()
		if cfg.SessionFile == "" && !cfg.NoSessionFile && !cfg.Insecure {
			cfg.SessionFile = cfg.Credential.SessionFileFor()
			c.cfg.SessionFile = cfg.SessionFile
		}
		if cfg.SessionFile != "" && !cfg.NoSessionFile {
			sc, err := OpenSessionCache(cfg.SessionFile, SessionCacheConfig{Device: cfg.Credential.Cert, Logger: cfg.Logger})
			if err != nil {
				return nil, fmt.Errorf("httpsync client: %w", err)
			}
			c.sessions = sc
			tc.ClientSessionCache = sc
		}
		if !proxied(cfg.URL) {
			c.probe = cfg.Credential.TLSConfig()
			c.probe.NextProtos = []string{"h2"}
		}
		t := newTransport(tc)
		if c.sessions != nil && !proxied(cfg.URL) {
			t.DialTLSContext = (&resumingDialer{tls: tc, cache: c.sessions, net: dialer(), timeout: t.TLSHandshakeTimeout, log: c.log}).DialTLSContext
		}
		c.http = &http.Client{Transport: t}
	}
	return c, nil
}

func newTransport(tc *tls.Config) *http.Transport {
	return &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         dialer().DialContext,
		TLSClientConfig:     tc,
		TLSHandshakeTimeout: 30 * time.Second,
		ForceAttemptHTTP2:   true,
		// Bundles are compressed already: no Accept-Encoding.
		DisableCompression:  true,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     90 * time.Second,
	}
}

func dialer() *net.Dialer { return &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second} }

// proxied reports whether requests to rawURL go through a proxy (from the
// environment). Through a proxy, http.Transport does TLS itself, with the
// default key exchange: sessions still resume, with larger key shares.
func proxied(rawURL string) bool {
	u, err := url.Parse(rawURL)
	if err != nil {
		return false
	}
	p, err := http.ProxyFromEnvironment(&http.Request{URL: u})
	return err != nil || p != nil
}

// Close closes the client's idle connections and saves the TLS sessions
// (ClientConfig.SessionFile) if they changed; an error means they could
// not be saved, and the next client makes a full handshake.
func (c *Client) Close() error {
	c.http.CloseIdleConnections()
	if c.sessions != nil {
		return c.sessions.Flush()
	}
	return nil
}

// saveSessions saves the TLS sessions after a sync. A failure costs the
// next client a full handshake, not the sync.
func (c *Client) saveSessions() {
	if c.sessions == nil {
		return
	}
	if err := c.sessions.Flush(); err != nil {
		c.log.Warn("cannot save the TLS sessions; the next start makes a full TLS handshake", "err", err)
	}
}

// CloudReplica returns the cloud's replica ID, or "" until the first
// sync has asked the cloud.
func (c *Client) CloudReplica() string {
	c.cloudMu.Lock()
	defer c.cloudMu.Unlock()
	return c.cloud
}

// Local returns the replica the client syncs.
func (c *Client) Local() *replica.Replica { return c.local }

// Hello asks the cloud who it is and who it takes this device to be.
func (c *Client) Hello(ctx context.Context) (Hello, error) {
	var h Hello
	var st Report
	data, err := c.retry(ctx, c.cfg.MaxAttempts, &st, nil, func(ctx context.Context, pr *progress) ([]byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.cfg.URL+PathHello, nil)
		if err != nil {
			return nil, &permanentError{err}
		}
		return c.do(req, pr)
	})
	if err != nil {
		return h, fmt.Errorf("hello %s: %w", c.cfg.URL, err)
	}
	if err := json.Unmarshal(data, &h); err != nil {
		return h, fmt.Errorf("hello %s: the answer is not a chartsync cloud's: %w", c.cfg.URL, err)
	}
	if err := checkReplicaID(h.Replica); err != nil {
		return h, fmt.Errorf("hello %s: cloud %w", c.cfg.URL, err)
	}
	return h, nil
}

// Sync implements transport.Link: it runs SyncReport and returns its
// Stats.
func (c *Client) Sync(ctx context.Context) (transport.Stats, error) {
	r, err := c.SyncReport(ctx)
	return r.Stats, err
}

// SyncReport exchanges bundles with the cloud until neither side has more to
// send: one round trip when everything fits in one bundle each way. A
// request cut by a dropped link, a stall, a busy or failing cloud is
// retried with backoff; bundles are idempotent and this replica's record
// of what the cloud holds moves only when the cloud's answer is applied,
// so a retry neither loses nor duplicates anything.
//
// Errors match ErrUnreachable (with the network error), ErrBusy,
// ErrServer, ErrUnauthorized, ErrForbidden, ErrTooLarge, ErrMalformed, or
// the context's error. The report counts what was done, even on error.
func (c *Client) SyncReport(ctx context.Context) (Report, error) {
	return c.sync(ctx, c.cfg.MaxAttempts, false)
}

// errNotResent is returned by sync with holdRefused when the bundle to
// send is the one the cloud last refused: it is not sent again. It wraps
// that refusal.
type errNotResent struct{ refusal error }

func (e *errNotResent) Error() string {
	return "not sent again, the cloud refused the same bundle: " + e.refusal.Error()
}
func (e *errNotResent) Unwrap() error { return e.refusal }

// refusal reports whether err is the cloud's final answer to a request: a
// 4xx that retrying the same request cannot change.
func refusal(err error) bool {
	var se *StatusError
	return errors.As(err, &se) && !se.transient()
}

// sync is SyncReport with a bound on the tries of each request. With
// holdRefused, a bundle identical to the one the cloud last refused is
// not sent: sync returns an *errNotResent.
func (c *Client) sync(ctx context.Context, attempts int, holdRefused bool) (st Report, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.saveSessions()
	cloud := c.CloudReplica()
	if cloud == "" {
		h, err := c.Hello(ctx)
		if err != nil {
			return st, fmt.Errorf("sync: %w", err)
		}
		cloud = h.Replica
		c.cloudMu.Lock()
		c.cloud = cloud
		c.cloudMu.Unlock()
	}
	pr := &progress{fn: c.cfg.Progress}
	start := time.Now()
	defer func() {
		pr.count(&st)
		st.Duration = time.Since(start)
	}()
	for round := 1; round <= c.cfg.MaxRounds; round++ {
		// The device certificate authenticates this replica to the
		// cloud: the bundle needs no signature of its own.
		out, err := c.local.MakeBundleFor(ctx, cloud, replica.BundleOptions{Clinic: c.cfg.Clinic, NoAuth: true})
		if err != nil {
			return st, fmt.Errorf("sync: %w", err)
		}
		sum := sha256.Sum256(out.Data)
		if holdRefused && c.refusedErr != nil && sum == c.refused {
			return st, fmt.Errorf("sync with %s: %w", c.cfg.URL, &errNotResent{c.refusedErr})
		}
		pr.round(round, st.RoundTrips)
		answer, err := c.retry(ctx, attempts, &st, pr, func(ctx context.Context, pr *progress) ([]byte, error) {
			return c.post(ctx, out.Data, pr)
		})
		if err != nil {
			if refusal(err) {
				c.refused, c.refusedErr = sum, err
			}
			if ferr := c.learnForked(ctx, err); ferr != nil {
				return st, fmt.Errorf("sync with %s: %w: %w", c.cfg.URL, err, ferr)
			}
			if ids := c.learnRevocations(ctx, err); len(ids) > 0 {
				return st, fmt.Errorf("sync with %s: %w", c.cfg.URL, &LearntRevocationsError{Devices: ids, Err: err})
			}
			return st, fmt.Errorf("sync with %s: %w", c.cfg.URL, err)
		}
		st.RoundTrips++
		st.BundlesSent++
		st.ChangesSent += out.Changes
		pr.phase(PhaseApplying, int64(len(answer)))
		// The server's certificate authenticated the cloud: its
		// positions count.
		rec, err := c.local.ReceiveFrom(ctx, answer, replica.ReceiveOptions{Sender: cloud})
		if err != nil {
			st.BundlesRejected++
			return st, fmt.Errorf("sync: apply the cloud's bundle: %w", err)
		}
		st.BundlesReceived++
		st.ChangesApplied += rec.Applied
		st.Duplicates += rec.Duplicates
		st.Charts += len(rec.Charts)
		if out.Complete && rec.Complete {
			c.refused, c.refusedErr = [sha256.Size]byte{}, nil
			pr.done(st.RoundTrips)
			pr.count(&st)
			c.log.Debug("synced", "round_trips", st.RoundTrips, "sent_bytes", st.BytesSent, "received_bytes", st.BytesReceived,
				"sent_changes", st.ChangesSent, "applied", st.ChangesApplied, "retries", st.Retries, "duration", time.Since(start))
			return st, nil
		}
	}
	return st, fmt.Errorf("sync with %s: not complete after %d round trips", c.cfg.URL, c.cfg.MaxRounds)
}

// LearntRevocationsError is the error of a sync the cloud refused with
// CodeRevokedChange, once the local replica has learnt the revocations
// the refusal carried: the replica took changes of revoked devices made
// after their revocation before it knew of it, and from now on leaves
// them out of its bundles, so the next sync is not refused for them. It
// wraps the cloud's *StatusError (matching replica.ErrRevokedChange and
// replica.ErrForgedChange).
type LearntRevocationsError struct {
	Devices []string // replica IDs of the devices learnt to be revoked
	Err     error
}

func (e *LearntRevocationsError) Error() string {
	return fmt.Sprintf("%v (learnt the revocation of %d devices from the refusal: the next sync leaves their refused changes out)", e.Err, len(e.Devices))
}

func (e *LearntRevocationsError) Unwrap() error { return e.Err }

// learnRevocations has the local replica learn the revocations a
// refusal with CodeRevokedChange carries, and returns the devices it
// learnt are revoked. The replica took the refused changes before it
// knew of their devices' revocations; knowing them, it leaves those
// changes out of its bundles (see replica.Revocations), so the next sync
// is not refused again. A record the replica cannot take is logged.
func (c *Client) learnRevocations(ctx context.Context, err error) []string {
	var se *StatusError
	if !errors.As(err, &se) || se.Code != CodeRevokedChange || len(se.Revocations) == 0 {
		return nil
	}
	ids, lerr := c.local.LearnRevocations(ctx, se.Revocations)
	if lerr != nil {
		c.log.Warn("revocations sent with the cloud's refusal not all learnt", "learnt", len(ids), "err", lerr)
	}
	if len(ids) > 0 {
		c.log.Info("the cloud refused changes of revoked devices; learnt their revocations, so the next sync leaves them out",
			"devices", ids, "request_id", se.RequestID)
	}
	return ids
}

// learnForked marks the local replica forked when the cloud refused its
// bundle with CodeForked naming the replica itself: a change it sent
// reuses a sequence number it had used for another change the cloud
// holds, so its data folder is a copy of the device's, or was restored
// from one, and it must not write or sync as that replica again
// (replica.Replica.MarkForked). It returns the replica's *ForkedError,
// or nil if err says nothing of this replica being forked.
func (c *Client) learnForked(ctx context.Context, err error) error {
	var se *StatusError
	if !errors.As(err, &se) || se.Code != CodeForked || se.Forked != c.local.ID() {
		return nil
	}
	why := &replica.ForkedError{Replica: c.local.ID(), Reason: "the cloud refused its bundle: " + se.Message}
	ferr := c.local.MarkForked(ctx, why)
	c.log.Error("the cloud found this device's data folder to be a copy of the device's (restored or copied): it no longer edits or syncs until it is recovered as a new replica",
		"request_id", se.RequestID, "err", ferr)
	return ferr
}

// errStalled cancels a request whose bytes stopped moving.
var errStalled = errors.New("link stalled")

// retry runs one request until it succeeds, fails for good, or runs out of
// attempts, waiting with capped exponential backoff and full jitter.
func (c *Client) retry(ctx context.Context, attempts int, st *Report, pr *progress, try func(context.Context, *progress) ([]byte, error)) ([]byte, error) {
	for attempt := 1; ; attempt++ {
		tctx, cancel := context.WithCancelCause(ctx)
		watch := time.AfterFunc(c.cfg.StallTimeout, func() { cancel(errStalled) })
		tp := pr.forTry(func() { watch.Reset(c.cfg.StallTimeout) })
		data, err := try(tctx, tp)
		watch.Stop()
		stalled := errors.Is(context.Cause(tctx), errStalled)
		cancel(nil)
		if err == nil {
			return data, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if stalled {
			err = fmt.Errorf("%w: no bytes moved for %s: %w", errStalled, c.cfg.StallTimeout, err)
		}
		var se *StatusError
		isStatus := errors.As(err, &se)
		if !retryable(err) {
			return nil, err
		}
		if attempt >= attempts {
			if isStatus {
				return nil, fmt.Errorf("gave up after %d attempts: %w", attempt, err)
			}
			return nil, fmt.Errorf("%w after %d attempts: %w", ErrUnreachable, attempt, err)
		}
		wait := c.backoff(attempt)
		if isStatus && se.RetryAfter > wait {
			wait = min(se.RetryAfter, c.cfg.MaxBackoff)
		}
		st.Retries++
		pr.retrying(st, wait)
		c.log.Info("sync request failed; retrying", "attempt", attempt, "wait", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// backoff is the wait before retry n (from 1): full jitter over a capped
// exponential.
func (c *Client) backoff(n int) time.Duration {
	ceil := c.cfg.MaxBackoff
	if n < 30 {
		ceil = min(ceil, c.cfg.MinBackoff<<n)
	}
	if ceil <= 0 {
		return 0
	}
	return rand.N(ceil) + 1
}

// retryable reports whether a failed request may succeed if tried again:
// a dropped or stalled link, a busy or failing cloud. A refusal (4xx) or a
// cloud that is not the one the credential trusts is final.
func retryable(err error) bool {
	var se *StatusError
	if errors.As(err, &se) {
		return se.transient()
	}
	var permanent *permanentError
	return !errors.As(err, &permanent) && !errors.Is(err, ErrServerNotTrusted)
}

// untrusted reports whether err is the failure to verify the cloud's
// certificate.
func untrusted(err error) bool {
	var (
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		verify    *tls.CertificateVerificationError
	)
	return errors.As(err, &unknownCA) || errors.As(err, &hostname) || errors.As(err, &invalid) || errors.As(err, &verify)
}

// handshakeRefused reports whether err is the cloud's TLS alert
// bad_certificate: a chartsync cloud verifies a device's certificate in
// its Handler, and refuses a handshake (Handler.VerifyConnection) only
// for a device that was revoked. Crypto/tls gives a received alert as a
// *net.OpError of Op "remote error" whose Err, of an unexported type,
// prints as tls.AlertError does.
func handshakeRefused(err error) bool {
	const alertBadCertificate = 42
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "remote error" && op.Err != nil &&
		op.Err.Error() == tls.AlertError(alertBadCertificate).Error()
}

// probeRefusal tells, after a request failed on a connection that the
// cloud may have refused at its handshake, whether it did. A refusal
// comes as a TLS alert, which the client does not always get to read:
// after a resumed handshake the cloud may refuse and close before the
// request is written (a broken pipe), and HTTP/2 reports a connection
// closed before its first request without the cause. So the client
// makes one more handshake, writes nothing, and reads the cloud's first
// record: an HTTP/2 server speaks first (its SETTINGS), a refusing one
// sends the alert. Only a client built from a Credential, not through a
// proxy, probes; not after a dial error, a timeout or a cancelled
// request, which no handshake refusal causes.
func (c *Client) probeRefusal(ctx context.Context, err error) bool {
	if c.probe == nil || ctx.Err() != nil {
		return false
	}
	var op *net.OpError
	var ne net.Error
	if errors.As(err, &op) && op.Op == "dial" || errors.As(err, &ne) && ne.Timeout() || untrusted(err) {
		return false
	}
	u, perr := url.Parse(c.cfg.URL)
	if perr != nil {
		return false
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "443")
	}
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	conn, derr := (&tls.Dialer{NetDialer: dialer(), Config: c.probe}).DialContext(pctx, "tcp", addr)
	if derr != nil {
		return handshakeRefused(derr)
	}
	defer conn.Close()
	tc := conn.(*tls.Conn)
	if tc.ConnectionState().NegotiatedProtocol != "h2" {
		return false // an HTTP/1.1 server says nothing first
	}
	_ = tc.SetReadDeadline(time.Now().Add(probeTimeout))
	_, rerr := tc.Read(make([]byte, 1))
	return handshakeRefused(rerr)
}

// probeTimeout bounds probeRefusal.
const probeTimeout = 15 * time.Second

// permanentError marks a failure no retry can mend.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// post sends one bundle and returns the cloud's.
func (c *Client) post(ctx context.Context, bundle []byte, pr *progress) ([]byte, error) {
	body := &countingReader{r: bytes.NewReader(bundle), on: pr.sent}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.cfg.URL+PathSync, body)
	if err != nil {
		return nil, &permanentError{err}
	}
	req.ContentLength = int64(len(bundle))
	req.GetBody = func() (io.ReadCloser, error) {
		return io.NopCloser(&countingReader{r: bytes.NewReader(bundle), on: pr.sent}), nil
	}
	pr.phase(PhaseSending, int64(len(bundle)))
	return c.do(req, pr)
}

// do sends a request and reads a 200 answer, or turns another answer into
// a *StatusError.
func (c *Client) do(req *http.Request, pr *progress) ([]byte, error) {
	// No Accept (the cloud answers a bundle or a JSON error whatever is
	// asked) and no User-Agent: on a 2G link every header byte counts.
	req.Header["User-Agent"] = []string{""}
	resp, err := c.http.Do(req)
	if err != nil {
		if handshakeRefused(err) || c.probeRefusal(req.Context(), err) {
			return nil, &StatusError{Status: http.StatusUnauthorized, Code: CodeRevokedCredential,
				Message: "the cloud refused this device's certificate when it connected (TLS alert bad_certificate), as a chartsync cloud does only for a revoked device: " + revokedMessage}
		}
		if untrusted(err) && !errors.Is(err, ErrServerNotTrusted) {
			err = fmt.Errorf("%w: %w", ErrServerNotTrusted, err)
		}
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, statusError(resp)
	}
	if resp.ContentLength > c.cfg.MaxResponseBytes {
		return nil, &permanentError{fmt.Errorf("the cloud's answer of %d bytes is over the limit of %d", resp.ContentLength, c.cfg.MaxResponseBytes)}
	}
	pr.phase(PhaseReceiving, resp.ContentLength)
	body := io.LimitReader(&countingReader{r: resp.Body, on: pr.received}, c.cfg.MaxResponseBytes+1)
	data, err := io.ReadAll(body)
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > c.cfg.MaxResponseBytes {
		return nil, &permanentError{fmt.Errorf("the cloud's answer is over the limit of %d bytes", c.cfg.MaxResponseBytes)}
	}
	return data, nil
}

// statusError reads an error answer.
func statusError(resp *http.Response) *StatusError {
	se := &StatusError{Status: resp.StatusCode}
	if s := resp.Header.Get("Retry-After"); s != "" {
		if secs, err := strconv.Atoi(s); err == nil && secs >= 0 {
			se.RetryAfter = time.Duration(secs) * time.Second
		} else if t, err := http.ParseTime(s); err == nil {
			se.RetryAfter = max(0, time.Until(t))
		}
	}
	data, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBodyBytes))
	var eb errorBody
	if json.Unmarshal(data, &eb) == nil && eb.Error != "" {
		se.Code, se.Message, se.RequestID = eb.Error, eb.Message, eb.RequestID
		if eb.Error == CodeForked {
			se.Forked = eb.Forked
		}
		if eb.Error == CodeRevokedChange && len(eb.Revocations) <= maxRefusalRevocations {
			size := 0
			for _, rec := range eb.Revocations {
				size += len(rec)
			}
			if size <= MaxRefusalRevocationBytes {
				se.Revocations = eb.Revocations
			}
		}
	} else {
		se.Message = strings.TrimSpace(string(data))
		if len(se.Message) > 200 {
			se.Message = se.Message[:200] + "…"
		}
	}
	return se
}

// countingReader reports every read to on.
type countingReader struct {
	r  io.Reader
	on func(int)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.on(n)
	}
	return n, err
}

// progress tracks a sync for ClientConfig.Progress and the stall watchdog.
// Reads of a request body may run on the transport's goroutine, so it
// locks.
type progress struct {
	fn func(Progress)

	mu    sync.Mutex
	p     Progress
	alive func()
}

// forTry returns the tracker for one attempt: every byte moved resets
// the stall watchdog.
func (pr *progress) forTry(alive func()) *progress {
	if pr == nil {
		return &progress{alive: alive}
	}
	pr.mu.Lock()
	defer pr.mu.Unlock()
	pr.alive = alive
	return pr
}

// count copies the bytes moved into st.
func (pr *progress) count(st *Report) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	st.BytesSent, st.BytesReceived = int(pr.p.Sent), int(pr.p.Received)
}

func (pr *progress) report() {
	if pr.fn != nil {
		pr.fn(pr.p)
	}
}

func (pr *progress) round(round, done int) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	pr.p.Round, pr.p.RoundTrips = round, done
}

func (pr *progress) phase(ph Phase, total int64) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	pr.p.Phase, pr.p.Done, pr.p.Total, pr.p.RetryIn = ph, 0, total, 0
	pr.report()
}

func (pr *progress) sent(n int) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	pr.alive()
	pr.p.Sent += int64(n)
	pr.p.Done += int64(n)
	pr.report()
}

func (pr *progress) received(n int) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	pr.alive()
	pr.p.Received += int64(n)
	pr.p.Done += int64(n)
	pr.report()
}

func (pr *progress) retrying(st *Report, wait time.Duration) {
	if pr == nil {
		return
	}
	pr.mu.Lock()
	defer pr.mu.Unlock()
	pr.p.Phase, pr.p.Retries, pr.p.RetryIn, pr.p.Done, pr.p.Total = PhaseRetrying, st.Retries, wait, 0, -1
	pr.report()
}

func (pr *progress) done(roundTrips int) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	pr.p.Phase, pr.p.RoundTrips, pr.p.Done, pr.p.Total, pr.p.RetryIn = PhaseDone, roundTrips, 0, 0, 0
	pr.report()
}
