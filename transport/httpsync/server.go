package httpsync

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/replica"
)

// Paths served by a Handler.
const (
	PathSync  = "/v1/sync"
	PathHello = "/v1/hello"
)

// ContentType is the media type of a bundle in a request or response.
const ContentType = "application/vnd.chartsync.bundle"

// Config configures a Handler. Replica and DeviceCA are required; every
// other zero value means the documented default.
type Config struct {
	// Replica is the cloud replica served.
	Replica *replica.Replica
	// DeviceCA holds the CA certificates a device certificate must chain
	// to (DeviceCA.Pool). Required unless Authenticate is set.
	DeviceCA *x509.CertPool
	// Authenticate, if set, replaces the check of the TLS client
	// certificate: it returns the device a request comes from, or an error
	// matching ErrUnauthorized. Use it only behind a proxy that has
	// already verified the device.
	Authenticate func(*http.Request) (Device, error)
	// MaxBodyBytes bounds a request body (default 32 MiB; keep it well
	// above the devices' replica.Config.BundleBytes, 4 MiB by default).
	MaxBodyBytes int64
	// MaxConcurrent bounds the syncs in progress at once (default 32),
	// and so the memory they hold: at most MaxConcurrent × MaxBodyBytes
	// of request bodies. A sync that finds no slot within QueueWait gets
	// 503 with Retry-After. Bundles are then applied one or a few at a
	// time, in arrival order (the replica serialises writes); a slow
	// upload or download does not hold up the others.
	MaxConcurrent int
	// QueueWait is how long a sync waits for a slot (default 10s): waiting
	// costs a device less than uploading its bundle again.
	QueueWait time.Duration
	// StallTimeout cuts a request or response that moves no byte for
	// this long (default 60s), so a dead 2G link does not hold a slot.
	StallTimeout time.Duration
	// Logger receives one line per request; nil discards them.
	Logger *slog.Logger
	// Now is the clock credentials are checked against (default
	// time.Now).
	Now func() time.Time
	// AccessLog, if set, records every chart a device writes (before the
	// changes are stored) and reads (before the answer goes out), and
	// every bundle refused as forged, unauthorised or out of scope. A sync
	// whose access cannot be recorded fails with 500, and what it brought
	// is not stored. Syncs that move no change record nothing.
	AccessLog AccessLog
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	switch {
	case c.Replica == nil:
		return errors.New("httpsync config: Replica is required")
	case c.DeviceCA == nil && c.Authenticate == nil:
		return errors.New("httpsync config: DeviceCA (or Authenticate) is required")
	case c.MaxBodyBytes < 0 || c.MaxConcurrent < 0 || c.QueueWait < 0 || c.StallTimeout < 0:
		return errors.New("httpsync config: limits must not be negative")
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 32 << 20
	}
	if c.MaxConcurrent == 0 {
		c.MaxConcurrent = 32
	}
	if c.QueueWait == 0 {
		c.QueueWait = 10 * time.Second
	}
	if c.StallTimeout == 0 {
		c.StallTimeout = 60 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Handler serves a cloud replica to enrolled devices:
//
//	POST /v1/sync   body: a bundle for the cloud; answer: the cloud's bundle
//	GET  /v1/hello  answer: {"replica": cloud ID, "device": who you are}
//
// Every request is authenticated by the device's TLS client certificate.
// It is safe for concurrent use.
type Handler struct {
	cfg   Config
	rep   *replica.Replica
	log   *slog.Logger
	slots chan struct{} // syncs in progress
	apply chan struct{} // syncs applying and building bundles
	stats handlerStats
}

type handlerStats struct {
	syncs, refused, failed, busy, active atomic.Int64
	bytesIn, bytesOut                    atomic.Int64
}

// HandlerStats counts what a Handler has served.
type HandlerStats struct {
	Syncs    int64 // syncs answered 200
	Refused  int64 // requests answered 4xx
	Failed   int64 // requests answered 5xx other than busy
	Busy     int64 // syncs answered 503 for want of a slot
	Active   int64 // syncs in progress now
	BytesIn  int64 // request bundle bytes
	BytesOut int64 // response bundle bytes
}

// NewHandler returns a Handler serving cfg.Replica.
func NewHandler(cfg Config) (*Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &Handler{
		cfg: cfg, rep: cfg.Replica,
		log:   cfg.Logger.With("cloud", cfg.Replica.ID()),
		slots: make(chan struct{}, cfg.MaxConcurrent),
		apply: make(chan struct{}, min(cfg.MaxConcurrent, max(2, runtime.GOMAXPROCS(0)))),
	}, nil
}

// Stats returns the handler's counters.
func (h *Handler) Stats() HandlerStats {
	s := &h.stats
	return HandlerStats{
		Syncs: s.syncs.Load(), Refused: s.refused.Load(), Failed: s.failed.Load(), Busy: s.busy.Load(),
		Active: s.active.Load(), BytesIn: s.bytesIn.Load(), BytesOut: s.bytesOut.Load(),
	}
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	switch r.URL.Path {
	case PathSync:
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			h.fail(w, r, http.StatusMethodNotAllowed, CodeMethod, "use POST with a bundle as the body", nil)
			return
		}
		h.serveSync(w, r)
	case PathHello:
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			h.fail(w, r, http.StatusMethodNotAllowed, CodeMethod, "use GET", nil)
			return
		}
		h.serveHello(w, r)
	default:
		h.fail(w, r, http.StatusNotFound, CodeNotFound, "no such endpoint; this is a chartsync cloud (POST "+PathSync+")", nil)
	}
}

// Hello is the answer to GET /v1/hello.
type Hello struct {
	Replica  string    `json:"replica"` // the cloud's replica ID
	Protocol int       `json:"protocol"`
	Device   Device    `json:"device"` // the device as the cloud sees it
	Time     time.Time `json:"time"`   // the cloud's clock, to spot a wrong device clock
}

func (h *Handler) serveHello(w http.ResponseWriter, r *http.Request) {
	dev, ok := h.authenticate(w, r)
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(Hello{Replica: h.rep.ID(), Protocol: 1, Device: dev, Time: h.cfg.Now().UTC()})
}

func (h *Handler) authenticate(w http.ResponseWriter, r *http.Request) (Device, bool) {
	var dev Device
	var err error
	switch {
	case h.cfg.Authenticate != nil:
		dev, err = h.cfg.Authenticate(r)
	case r.TLS == nil:
		err = fmt.Errorf("%w: plain HTTP carries no device certificate; use https", ErrNoCredential)
	default:
		dev, err = VerifyDevice(r.TLS.PeerCertificates, h.cfg.DeviceCA, h.cfg.Now())
	}
	if err == nil {
		return dev, true
	}
	code := CodeBadCredential
	msg := "the device credential is not valid here: " + err.Error() + "; enrol the device again at this cloud"
	switch {
	case errors.Is(err, ErrNoCredential):
		code, msg = CodeNoCredential, "no device credential was presented; enrol the device and give the client its credential file"
	case errors.Is(err, ErrCredentialExpired):
		code, msg = CodeExpiredCredential, err.Error()+"; enrol the device again to get a new credential"
	}
	h.fail(w, r, http.StatusUnauthorized, code, msg, err)
	return Device{}, false
}

func (h *Handler) serveSync(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	dev, ok := h.authenticate(w, r)
	if !ok {
		return
	}
	log := h.log.With("device", dev.Name, "replica", dev.Replica, "clinic", dev.Clinic)
	if r.ContentLength > h.cfg.MaxBodyBytes {
		h.fail(w, r, http.StatusRequestEntityTooLarge, CodeTooLarge, fmt.Sprintf("the bundle of %d bytes is over this cloud's limit of %d; send smaller bundles (replica Config.BundleBytes)", r.ContentLength, h.cfg.MaxBodyBytes), nil)
		return
	}
	if !h.acquire(r.Context()) {
		h.stats.busy.Add(1)
		w.Header().Set("Retry-After", "1")
		h.fail(w, r, http.StatusServiceUnavailable, CodeBusy, "the cloud is serving as many syncs as it can; try again shortly", nil)
		return
	}
	defer h.release()

	rc := http.NewResponseController(w)
	data, err := io.ReadAll(&stallReader{r: http.MaxBytesReader(w, r.Body, h.cfg.MaxBodyBytes), rc: rc, stall: h.cfg.StallTimeout})
	// Clear the rolling read deadline, or the server's background read
	// would cancel the request's context while the bundle is applied.
	_ = rc.SetReadDeadline(time.Time{})
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			h.fail(w, r, http.StatusRequestEntityTooLarge, CodeTooLarge, fmt.Sprintf("the bundle is over this cloud's limit of %d bytes; send smaller bundles (replica Config.BundleBytes)", h.cfg.MaxBodyBytes), nil)
			return
		}
		// The link dropped mid-request: nobody is listening for an answer.
		log.Info("sync request cut", "received_bytes", len(data), "err", err)
		return
	}
	h.stats.bytesIn.Add(int64(len(data)))
	// Apply in arrival order (a channel queues its waiters first come,
	// first served) rather than all at once on the replica's lock.
	select {
	case h.apply <- struct{}{}:
	case <-r.Context().Done():
		log.Info("device went away while its bundle waited", "request_bytes", len(data))
		return
	}
	// A bundle received whole is applied even if the device has gone
	// meanwhile: it is idempotent, and its resend is then cheap.
	rec, err := h.receive(context.WithoutCancel(r.Context()), data, dev)
	received := err == nil
	var out replica.Outgoing
	if received {
		out, err = h.bundleFor(r.Context(), dev)
	}
	<-h.apply
	if err != nil && received && r.Context().Err() != nil {
		log.Info("device went away before the answer", "applied", rec.Applied, "err", err)
		return
	}
	if err != nil {
		status, code, msg := classify(err)
		if _, _, refused := classifyScope(err); refused && h.cfg.AccessLog != nil {
			if lerr := h.cfg.AccessLog.Append(context.WithoutCancel(r.Context()), refusedEntry(dev, code, msg)); lerr != nil {
				log.Error("access log: cannot record a refused bundle", "err", lerr)
			}
		}
		h.fail(w, r, status, code, msg, err)
		return
	}
	if h.cfg.AccessLog != nil {
		if entries := readEntries(dev, out); len(entries) > 0 {
			if err := h.cfg.AccessLog.Append(context.WithoutCancel(r.Context()), entries...); err != nil {
				h.fail(w, r, http.StatusInternalServerError, CodeInternal, "the cloud could not record this sync in its access log; try again later", err)
				return
			}
		}
	}
	w.Header().Set("Content-Type", ContentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(out.Data)))
	w.Header()["Date"] = nil // a device has no use for it; on a 2G link every byte counts
	w.WriteHeader(http.StatusOK)
	sent, err := writeStalling(w, rc, out.Data, h.cfg.StallTimeout)
	h.stats.bytesOut.Add(int64(sent))
	if err != nil {
		log.Info("sync response cut", "sent_bytes", sent, "response_bytes", len(out.Data), "err", err)
		return
	}
	h.stats.syncs.Add(1)
	log.Info("sync", "status", http.StatusOK, "request_bytes", len(data), "response_bytes", len(out.Data),
		"applied", rec.Applied, "duplicates", rec.Duplicates, "sent_changes", out.Changes,
		"complete", rec.Complete && out.Complete, "duration", time.Since(start))
}

// acquire takes a sync slot, waiting up to QueueWait.
func (h *Handler) acquire(ctx context.Context) bool {
	select {
	case h.slots <- struct{}{}:
		h.stats.active.Add(1)
		return true
	default:
	}
	t := time.NewTimer(h.cfg.QueueWait)
	defer t.Stop()
	select {
	case h.slots <- struct{}{}:
		h.stats.active.Add(1)
		return true
	case <-t.C:
		return false
	case <-ctx.Done():
		return false
	}
}

func (h *Handler) release() {
	h.stats.active.Add(-1)
	<-h.slots
}

// classify maps an error from receiving or building a bundle to a status,
// a code and a message for the device.
func classify(err error) (status int, code, msg string) {
	switch {
	case errors.Is(err, replica.ErrBundleTooLarge):
		return http.StatusRequestEntityTooLarge, CodeTooLarge, err.Error()
	case errors.Is(err, replica.ErrBundleVersion):
		return http.StatusBadRequest, CodeVersion, err.Error() + "; this cloud and the device run incompatible versions of chartsync"
	case errors.Is(err, replica.ErrWrongRecipient):
		return http.StatusBadRequest, CodeWrongRecipient, err.Error() + "; the device's credential names another cloud replica"
	case errors.Is(err, replica.ErrMalformedBundle), errors.Is(err, crdt.ErrMalformed):
		// A change Automerge will not take (a sequence number used
		// twice, say) is the sender's fault whatever wraps it: answered
		// 500, the device would send it again for ever.
		return http.StatusBadRequest, CodeMalformed, err.Error()
	}
	if status, code, ok := classifyScope(err); ok {
		return status, code, err.Error()
	}
	if errors.Is(err, replica.ErrClosed) {
		return http.StatusServiceUnavailable, CodeUnavailable, "the cloud is shutting down; try again shortly"
	}
	return http.StatusInternalServerError, CodeInternal, "the cloud failed to process the sync; try again later"
}

// fail writes an error response and logs it. cause, if given, is logged
// but not sent.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, status int, code, msg string, cause error) {
	switch {
	case status == http.StatusServiceUnavailable:
	case status >= 500:
		h.stats.failed.Add(1)
	default:
		h.stats.refused.Add(1)
	}
	level := slog.LevelInfo
	if status >= 500 && status != http.StatusServiceUnavailable {
		level = slog.LevelError
	}
	attrs := []any{"status", status, "code", code, "path", r.URL.Path, "remote", r.RemoteAddr}
	if cause != nil {
		attrs = append(attrs, "err", cause)
	}
	h.log.Log(r.Context(), level, "request refused", attrs...)
	if status == http.StatusServiceUnavailable && w.Header().Get("Retry-After") == "" {
		w.Header().Set("Retry-After", "1")
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(errorBody{Error: code, Message: msg})
}

// stallReader moves the connection's read deadline forward before every
// read: a body may take long on a slow link, but not stand still.
type stallReader struct {
	r     io.Reader
	rc    *http.ResponseController
	stall time.Duration
}

func (s *stallReader) Read(p []byte) (int, error) {
	_ = s.rc.SetReadDeadline(time.Now().Add(s.stall))
	return s.r.Read(p)
}

// writeStalling writes data in pieces, moving the write deadline forward
// before each, and returns the bytes written.
func writeStalling(w io.Writer, rc *http.ResponseController, data []byte, stall time.Duration) (int, error) {
	const piece = 32 << 10
	n := 0
	for n < len(data) {
		_ = rc.SetWriteDeadline(time.Now().Add(stall))
		m, err := w.Write(data[n:min(n+piece, len(data))])
		n += m
		if err != nil {
			return n, err
		}
	}
	_ = rc.SetWriteDeadline(time.Time{})
	return n, nil
}

// ServerTLSConfig returns the TLS configuration of a cloud server: TLS 1.3,
// the server's certificate, and client certificates requested but verified
// by the Handler (so a missing or bad credential gets a 401 with an
// explanation rather than a failed handshake).
//
// Devices that keep sessions (ClientConfig.SessionFile) resume them: the
// server keeps each session in memory, at most 65,536 of them, and gives
// the device a 16-byte ticket good for one resumption. A resumed
// connection carries the certificates of the full handshake that began
// it: the Handler verifies them on every request as it does on a full
// handshake, crypto/tls refuses to resume a session whose device
// certificate has expired, and VerifyConnection, if set, runs on
// resumptions too (VerifyPeerCertificate does not: check revocation in
// VerifyConnection). To use stateless tickets instead (for several
// servers sharing keys with SetSessionTicketKeys), set WrapSession and
// UnwrapSession to nil.
func ServerTLSConfig(cert tls.Certificate) *tls.Config {
	sessions := newServerSessions(maxServerSessions)
	return &tls.Config{
		MinVersion:    tls.VersionTLS13,
		Certificates:  []tls.Certificate{cert},
		ClientAuth:    tls.RequestClientCert,
		WrapSession:   sessions.wrap,
		UnwrapSession: sessions.unwrap,
	}
}

// NewServer returns an *http.Server for h on addr with TLS and limits
// fitting slow links: headers within 10s (at most 16 KiB), an idle
// connection kept 2 minutes; the request and response of a sync are timed
// by the Handler's StallTimeout rather than a total, so a large bundle may
// take long on a slow link. Serve it with ListenAndServeTLS("", "") and
// stop it with Shutdown, which lets syncs in flight finish.
func NewServer(addr string, h http.Handler, cert tls.Certificate, log *slog.Logger) *http.Server {
	srv := &http.Server{
		Addr:              addr,
		Handler:           h,
		TLSConfig:         ServerTLSConfig(cert),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       2 * time.Minute,
		WriteTimeout:      2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
	}
	if log != nil {
		srv.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	}
	return srv
}
