package httpsync

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/chartsync/chartsync/internal/wire"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/gate"
)

// Paths served by a Handler.
const (
	PathSync  = "/v1/sync"
	PathHello = "/v1/hello"
)

// ContentType is the media type of a bundle. A sync's request and its
// 200 answer carry no Content-Type header, to keep an idle sync within
// 1 KiB on the wire: POST PathSync takes and gives bundles only, and an
// error answer says application/json. A proxy or file store that must
// name a bundle's type names it so.
const ContentType = "application/vnd.chartsync.bundle"

// Config configures a Handler. Replica and DeviceCA are required; every
// other zero value means the documented default.
type Config struct {
	// Replica is the cloud replica served. It may be left nil when Gate
	// is set: the gate's replica is served.
	Replica *replica.Replica
	// Gate, if set, is the cloud's policy for its devices (package
	// replica/gate), shared with the other couriers the cloud takes
	// bundles from: the Handler authenticates the device and hands its
	// bundle to the gate, which applies it within the device's clinic's
	// scope, admits a few at a time and records the access log. With a
	// Gate, AccessLog, MaxConcurrent and QueueWait are the gate's (those
	// fields here are ignored, but QueueWait still bounds the wait for a
	// transfer, and MaxConcurrent still sets MaxTransfers' default).
	// Without one, the Handler makes its own from Replica, AccessLog,
	// MaxConcurrent and QueueWait.
	Gate *gate.Gate
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
	// MaxRequestMemory is the memory one sync's bundle may cost the cloud
	// (default 64 MiB). The Handler allows 8 bytes of memory for each
	// byte of a bundle once decompressed (decoding it, and applying what
	// it brings), so a bundle over MaxRequestMemory / 8 once
	// decompressed (8 MiB by default, twice what a device's default
	// replica.Config.BundleBytes makes) is refused with 413 from its
	// header, before it is decompressed or applied, whatever its
	// compression ratio. What applying a bundle within that size costs
	// is the replica's to bound (replica.Config.ReceiveMemory).
	MaxRequestMemory int64
	// MaxConcurrent bounds the syncs being applied and answered at once
	// (default 32). A sync takes its slot only once its body has arrived,
	// so a slow link never holds one; a sync that finds no slot within
	// QueueWait gets 503 with Retry-After. Bundles are then applied one
	// or a few at a time, in arrival order (the replica serialises
	// writes).
	MaxConcurrent int
	// MaxTransfers bounds the syncs in progress at once, from the first
	// byte of the body to the last of the answer (default 4 ×
	// MaxConcurrent), and so the memory their bodies hold: at most
	// MaxTransfers × MaxBodyBytes. A sync that finds none free within
	// QueueWait gets 503 with Retry-After. Each device has at most one
	// sync in progress: another from the same device waits up to
	// QueueWait for it to end, and gets 429 with Retry-After if it does
	// not (or at once if one is already waiting).
	MaxTransfers int
	// QueueWait is how long a sync waits for a slot (default 10s): waiting
	// costs a device less than uploading its bundle again.
	QueueWait time.Duration
	// StallTimeout cuts a request body or answer that moves no byte for
	// this long (default 60s); it is also the grace period of
	// MinTransferRate.
	StallTimeout time.Duration
	// MinTransferRate is the slowest average rate, in bytes a second, at
	// which a request body and an answer may move once StallTimeout has
	// passed since each began (default 512, 4 kbit/s: the slowest 2G
	// link moves several times that). A body that falls behind is cut
	// with 408, so trickling a byte now and then holds nothing for long.
	MinTransferRate int64
	// RequestTimeout bounds a whole sync, from its request's headers to
	// the last byte of its answer (default 10m; at MinTransferRate that
	// is some 300 KB each way, and a 2G link at 20 kbit/s moves 1.4 MB
	// in it). A body still arriving then is cut with 408.
	RequestTimeout time.Duration
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
	// CheckDevice, if set, is asked whether a device whose certificate
	// verified may still sync: at every TLS handshake, full or resumed
	// (Handler.VerifyConnection, which NewServer installs), and on every
	// request, so that a revocation also reaches a connection opened
	// before it. It returns nil, an error matching ErrCredentialRevoked
	// for a device the cloud's administrator revoked (the handshake is
	// refused with a bad_certificate alert, which the Client reports as
	// ErrCredentialRevoked; a request is answered 401 revoked-credential),
	// or another error when it cannot tell (the request is answered 503
	// and retried; the handshake goes on). It must be safe for concurrent
	// use and quick: it runs on every connection and request.
	CheckDevice func(ctx context.Context, dev Device) error
	// OnSync, if set, is called once at the end of every POST /v1/sync,
	// answered or not, with what it did: for metrics. It must return
	// quickly.
	OnSync func(SyncRecord)
}

// SyncRecord is what a Handler tells Config.OnSync of one sync.
type SyncRecord struct {
	// RequestID names the sync in the Handler's log lines and in an
	// error answer's body (StatusError.RequestID).
	RequestID string
	// Device is who the sync came from (zero if not authenticated).
	Device Device
	// Status is the HTTP status answered: 200, a refusal or failure, or
	// 0 if the device went away before an answer could be sent.
	Status int
	// Code is the error code of a status other than 200.
	Code string
	// Duration runs from the request's headers to the answer's last
	// byte.
	Duration time.Duration
	// BytesIn and BytesOut are the bundle bytes received and sent.
	BytesIn, BytesOut int64
	// ChangesIn counts the device's changes applied, Duplicates those
	// the cloud held already, ChangesOut the changes sent to the device.
	ChangesIn, Duplicates, ChangesOut int
	// Resumed says the sync came on a resumed TLS session.
	Resumed bool
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	switch {
	case c.Replica == nil && c.Gate == nil:
		return errors.New("httpsync config: Replica (or Gate) is required")
	case c.Replica != nil && c.Gate != nil && c.Replica != c.Gate.Replica():
		return errors.New("httpsync config: Replica is not the Gate's replica")
	case c.DeviceCA == nil && c.Authenticate == nil:
		return errors.New("httpsync config: DeviceCA (or Authenticate) is required")
	case c.MaxBodyBytes < 0 || c.MaxRequestMemory < 0 || c.MaxConcurrent < 0 || c.MaxTransfers < 0 || c.QueueWait < 0 || c.StallTimeout < 0 ||
		c.MinTransferRate < 0 || c.RequestTimeout < 0:
		return errors.New("httpsync config: limits must not be negative")
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 32 << 20
	}
	if c.MaxRequestMemory == 0 {
		c.MaxRequestMemory = 64 << 20
	}
	if c.MaxConcurrent == 0 {
		c.MaxConcurrent = 32
	}
	if c.MaxTransfers == 0 {
		c.MaxTransfers = 4 * c.MaxConcurrent
	}
	if c.MinTransferRate == 0 {
		c.MinTransferRate = 512
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 10 * time.Minute
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
	cfg       Config
	rep       *replica.Replica
	gate      *gate.Gate // the cloud's policy: scope, admission, access log
	log       *slog.Logger
	transfers chan struct{} // syncs in progress
	stats     handlerStats
}

type handlerStats struct {
	syncs, refused, failed, busy, cut, active, receiving, waiting atomic.Int64
	bytesIn, bytesOut, revoked                                    atomic.Int64
}

// HandlerStats counts what a Handler has served.
type HandlerStats struct {
	Syncs     int64 // syncs answered 200
	Refused   int64 // requests answered 4xx, other than 408 and 429
	Failed    int64 // requests answered 5xx other than busy
	Busy      int64 // syncs answered 503 for want of a slot, or 429 for another of the device's in progress
	Cut       int64 // syncs cut for moving too slowly or past RequestTimeout
	Active    int64 // syncs in progress now
	Receiving int64 // request bodies being received now
	Waiting   int64 // syncs waiting now for a slot, or for another of their device's to end
	BytesIn   int64 // request bundle bytes
	BytesOut  int64 // response bundle bytes
	Revoked   int64 // handshakes and requests refused because the device was revoked (Config.CheckDevice)
}

// NewHandler returns a Handler serving cfg.Replica.
func NewHandler(cfg Config) (*Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	g := cfg.Gate
	if g == nil {
		// The device's channel is checked at every handshake and
		// request (CheckDevice): the gate need not check it again.
		var err error
		g, err = gate.New(gate.Config{Replica: cfg.Replica, AccessLog: cfg.AccessLog, MaxConcurrent: cfg.MaxConcurrent,
			QueueWait: cfg.QueueWait, Logger: cfg.Logger})
		if err != nil {
			return nil, fmt.Errorf("httpsync handler: %w", err)
		}
	}
	rep := g.Replica()
	return &Handler{
		cfg: cfg, rep: rep, gate: g,
		log:       cfg.Logger.With("cloud", rep.ID()),
		transfers: make(chan struct{}, cfg.MaxTransfers),
	}, nil
}

// Stats returns the handler's counters.
func (h *Handler) Stats() HandlerStats {
	s := &h.stats
	return HandlerStats{
		Syncs: s.syncs.Load(), Refused: s.refused.Load(), Failed: s.failed.Load(), Busy: s.busy.Load(), Cut: s.cut.Load(),
		Active: s.active.Load(), Receiving: s.receiving.Load(), Waiting: s.waiting.Load() + h.gate.Stats().Waiting, BytesIn: s.bytesIn.Load(), BytesOut: s.bytesOut.Load(),
		Revoked: s.revoked.Load(),
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
	if err == nil && h.cfg.CheckDevice != nil {
		if cerr := h.cfg.CheckDevice(r.Context(), dev); errors.Is(cerr, ErrCredentialRevoked) {
			h.stats.revoked.Add(1)
			h.gate.Refused(r.Context(), dev.sender(), gate.CodeRevokedCredential, cerr)
			err = cerr
		} else if cerr != nil {
			h.fail(w, r, http.StatusServiceUnavailable, CodeUnavailable, "the cloud cannot check the device's enrolment just now; try again shortly", cerr)
			return Device{}, false
		}
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
	case errors.Is(err, ErrCredentialRevoked):
		code, msg = CodeRevokedCredential, revokedMessage
	}
	h.fail(w, r, http.StatusUnauthorized, code, msg, err)
	return Device{}, false
}

// revokedMessage is what a revoked device is told.
const revokedMessage = "this device has been revoked by the cloud's administrator and may no longer sync; contact the administrator (a device found again after it was lost must be enrolled anew)"

// checkTimeout bounds Config.CheckDevice at a handshake.
const checkTimeout = 10 * time.Second

// VerifyConnection is a tls.Config.VerifyConnection for the cloud's
// server (NewServer installs it when Config.CheckDevice is set): it
// refuses the handshake, full or resumed, of a device whose certificate
// verifies and which CheckDevice says was revoked. Crypto/tls calls it on
// resumed handshakes too, where it skips VerifyPeerCertificate. Any other
// failure it leaves to the Handler, which answers with a status saying
// what to do: a connection without a certificate or with a bad one, or a
// CheckDevice that cannot tell just now.
func (h *Handler) VerifyConnection(cs tls.ConnectionState) error {
	if h.cfg.CheckDevice == nil || h.cfg.DeviceCA == nil || len(cs.PeerCertificates) == 0 {
		return nil
	}
	dev, err := VerifyDevice(cs.PeerCertificates, h.cfg.DeviceCA, h.cfg.Now())
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), checkTimeout)
	defer cancel()
	err = h.cfg.CheckDevice(ctx, dev)
	if !errors.Is(err, ErrCredentialRevoked) {
		return nil
	}
	h.stats.revoked.Add(1)
	h.log.Info("handshake refused: device revoked", "device", dev.Name, "replica", dev.Replica, "clinic", dev.Clinic, "resumed", cs.DidResume)
	h.gate.Refused(ctx, dev.sender(), gate.CodeRevokedCredential, err)
	return fmt.Errorf("device %s (replica %s): %w", dev.Name, dev.Replica, err)
}

// syncWriter is the ResponseWriter of a sync: it keeps what OnSync is
// told.
type syncWriter struct {
	http.ResponseWriter
	rec SyncRecord
}

func (w *syncWriter) WriteHeader(status int) {
	if w.rec.Status == 0 {
		w.rec.Status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *syncWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// newRequestID names a sync in logs and error answers: 16 hex digits.
func newRequestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

func (h *Handler) serveSync(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := &syncWriter{ResponseWriter: w, rec: SyncRecord{RequestID: newRequestID(), Resumed: r.TLS != nil && r.TLS.DidResume}}
	w = sw
	if h.cfg.OnSync != nil {
		defer func() {
			sw.rec.Duration = time.Since(start)
			h.cfg.OnSync(sw.rec)
		}()
	}
	// Until the body has been read, an answer closes the connection:
	// net/http would otherwise read the rest of a small body first, as
	// slowly as the device cares to send it, before answering.
	w.Header().Set("Connection", "close")
	dev, ok := h.authenticate(w, r)
	if !ok {
		return
	}
	sw.rec.Device = dev
	log := h.log.With("request_id", sw.rec.RequestID, "device", dev.Name, "replica", dev.Replica, "clinic", dev.Clinic)
	if r.ContentLength > h.cfg.MaxBodyBytes {
		h.fail(w, r, http.StatusRequestEntityTooLarge, CodeTooLarge, fmt.Sprintf("the bundle of %d bytes is over this cloud's limit of %d; send smaller bundles (replica Config.BundleBytes)", r.ContentLength, h.cfg.MaxBodyBytes), nil)
		return
	}
	// One sync per device at a time: more would only hold the cloud.
	leave, err := h.gate.Enter(r.Context(), dev.Replica)
	if err != nil {
		h.stats.busy.Add(1)
		w.Header().Set("Retry-After", "1")
		h.fail(w, r, http.StatusTooManyRequests, CodeSyncInProgress, "another sync of this device is in progress at the cloud; try again when it has ended", nil)
		return
	}
	defer leave()
	if !h.take(r.Context(), h.transfers) {
		h.busy(w, r)
		return
	}
	defer func() { <-h.transfers }()
	h.stats.active.Add(1)
	defer h.stats.active.Add(-1)

	rc := http.NewResponseController(w)
	end := start.Add(h.cfg.RequestTimeout)
	h.stats.receiving.Add(1)
	in := &pacedReader{r: http.MaxBytesReader(w, r.Body, h.cfg.MaxBodyBytes), rc: rc, pace: h.pace(end)}
	data, err := io.ReadAll(in)
	h.stats.receiving.Add(-1)
	// The body is in: keep the connection's read deadline at the end of
	// the request, or the server's background read would cancel the
	// request's context when a paced deadline passed.
	_ = rc.SetReadDeadline(end)
	_ = rc.SetWriteDeadline(end)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			h.fail(w, r, http.StatusRequestEntityTooLarge, CodeTooLarge, fmt.Sprintf("the bundle is over this cloud's limit of %d bytes; send smaller bundles (replica Config.BundleBytes)", h.cfg.MaxBodyBytes), nil)
			return
		}
		if isTimeout(err) {
			// Too slow: say so, in case the device is still listening.
			h.stats.cut.Add(1)
			log.Info("sync request cut: too slow", "received_bytes", len(data), "after", time.Since(start), "err", err)
			h.fail(w, r, http.StatusRequestTimeout, CodeTooSlow, fmt.Sprintf("the bundle arrived too slowly (%d bytes in %s); this cloud needs %d bytes a second after the first %s, and a sync within %s", len(data), time.Since(start).Round(time.Millisecond), h.cfg.MinTransferRate, h.cfg.StallTimeout, h.cfg.RequestTimeout), err)
			return
		}
		// The link dropped mid-request: nobody is listening for an answer.
		log.Info("sync request cut", "received_bytes", len(data), "err", err)
		return
	}
	w.Header().Del("Connection")
	h.stats.bytesIn.Add(int64(len(data)))
	sw.rec.BytesIn = int64(len(data))
	// Refuse a bundle over the memory budget from the size its frame
	// declares, before anything inflates it.
	if size, err := wire.Size(data, bundleKind); err == nil && size > uint64(h.maxBundle()) {
		h.fail(w, r, http.StatusRequestEntityTooLarge, CodeTooLarge, fmt.Sprintf("the bundle is %d bytes once decompressed, over this cloud's limit of %d (its memory budget for one sync is %d bytes); send smaller bundles (replica Config.BundleBytes)", size, h.maxBundle(), h.cfg.MaxRequestMemory), nil)
		return
	}
	// The gate applies the bundle within the device's clinic's scope,
	// records it in the access log (refused, too), and makes the answer
	// from the clinic's charts. TLS authenticates the cloud to the
	// device: the answer needs no signature of its own.
	sender := dev.sender()
	out, rec, err := h.gate.Sync(r.Context(), sender, data, gate.AnswerOptions{NoAuth: true})
	sw.rec.ChangesIn, sw.rec.Duplicates = rec.Applied, rec.Duplicates
	if errors.Is(err, gate.ErrBusy) {
		h.busy(w, r)
		return
	}
	if errors.Is(err, gate.ErrGone) {
		log.Info("device went away", "request_bytes", len(data), "applied", rec.Applied, "err", err)
		return
	}
	if err != nil {
		status, code, msg := classify(err)
		body := errorBody{Error: code, Message: msg}
		if code == CodeRevokedChange {
			// The device took the changes before it learnt of their
			// device's revocation: with it, its next bundle leaves
			// them out instead of being refused again.
			body.Revocations = h.gate.RefusalRevocations(sender, err)
			body.Message += "; the revocations this answer carries let the device leave those changes out of its next sync"
		}
		if code == CodeForked {
			body.Forked = gate.ForkedReplica(err)
		}
		h.failWith(w, r, status, body, err)
		return
	}
	// A device has no use for a Date, a Cache-Control (an answer to a
	// POST is not cached) or a Content-Type (see ContentType); on a 2G
	// link every byte counts. Nil, not deleted: net/http would sniff a
	// type and add it.
	w.Header()["Content-Type"] = nil
	w.Header().Del("Cache-Control")
	w.Header().Set("Content-Length", strconv.Itoa(len(out.Data)))
	w.Header()["Date"] = nil
	w.WriteHeader(http.StatusOK)
	sent, err := writePaced(w, rc, out.Data, h.pace(end))
	h.stats.bytesOut.Add(int64(sent))
	sw.rec.BytesOut = int64(sent)
	if err != nil {
		sw.rec.Status = 0
		if isTimeout(err) {
			h.stats.cut.Add(1)
		}
		log.Info("sync response cut", "sent_bytes", sent, "response_bytes", len(out.Data), "err", err)
		return
	}
	h.stats.syncs.Add(1)
	sw.rec.ChangesOut = out.Changes
	log.Info("sync", "status", http.StatusOK, "request_bytes", len(data), "response_bytes", len(out.Data),
		"applied", rec.Applied, "duplicates", rec.Duplicates, "sent_changes", out.Changes,
		"complete", rec.Complete && out.Complete, "tls_resumed", sw.rec.Resumed, "duration", time.Since(start))
}

// bundleKind is the wire frame kind of a replica bundle.
const bundleKind = 'B'

// memoryPerBundleByte is the memory the Handler allows for each byte of a
// bundle once decompressed (see Config.MaxRequestMemory).
const memoryPerBundleByte = 8

// maxBundle is the largest bundle, once decompressed, the memory budget
// allows.
func (h *Handler) maxBundle() int64 { return h.cfg.MaxRequestMemory / memoryPerBundleByte }

// busy answers 503 for want of a slot.
func (h *Handler) busy(w http.ResponseWriter, r *http.Request) {
	h.stats.busy.Add(1)
	w.Header().Set("Retry-After", "1")
	h.fail(w, r, http.StatusServiceUnavailable, CodeBusy, "the cloud is serving as many syncs as it can; try again shortly", nil)
}

// take takes a slot of sem, waiting up to QueueWait.
func (h *Handler) take(ctx context.Context, sem chan struct{}) bool {
	select {
	case sem <- struct{}{}:
		return true
	default:
	}
	h.stats.waiting.Add(1)
	defer h.stats.waiting.Add(-1)
	t := time.NewTimer(h.cfg.QueueWait)
	defer t.Stop()
	select {
	case sem <- struct{}{}:
		return true
	case <-t.C:
		return false
	case <-ctx.Done():
		return false
	}
}

// classify maps an error from the gate to a status, a code and a
// message for the device: the gate's refusal code (gate.CodeOf) says why
// the bundle was refused, whatever courier brought it; HTTP only adds the
// status.
func classify(err error) (status int, code, msg string) {
	switch code := gate.CodeOf(err); code {
	case CodeTooLarge:
		return http.StatusRequestEntityTooLarge, code, err.Error()
	case CodeVersion:
		return http.StatusBadRequest, code, err.Error() + "; this cloud and the device run incompatible versions of chartsync"
	case CodeWrongRecipient:
		return http.StatusBadRequest, code, err.Error() + "; the device's credential names another cloud replica"
	case CodeMalformed:
		return http.StatusBadRequest, code, err.Error()
	case CodeForked:
		// The bundle is well formed; its author's log conflicts with
		// what the cloud holds of it.
		return http.StatusConflict, code, err.Error()
	case CodeWrongSender, CodeOutOfScope, CodeUnauthorizedChange, CodeRevokedChange, CodeForgedChange:
		return http.StatusForbidden, code, err.Error()
	case CodeRevokedCredential:
		return http.StatusUnauthorized, code, revokedMessage
	}
	switch {
	case errors.Is(err, replica.ErrClosed):
		return http.StatusServiceUnavailable, CodeUnavailable, "the cloud is shutting down; try again shortly"
	case errors.Is(err, gate.ErrAccessLog):
		return http.StatusInternalServerError, CodeInternal, "the cloud could not record this sync in its access log; try again later"
	}
	return http.StatusInternalServerError, CodeInternal, "the cloud failed to process the sync; try again later"
}

// fail writes an error response and logs it. cause, if given, is logged
// but not sent.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, status int, code, msg string, cause error) {
	h.failWith(w, r, status, errorBody{Error: code, Message: msg}, cause)
}

// failWith is fail with the body given.
func (h *Handler) failWith(w http.ResponseWriter, r *http.Request, status int, body errorBody, cause error) {
	code := body.Error
	switch {
	case status == http.StatusServiceUnavailable, status == http.StatusTooManyRequests, status == http.StatusRequestTimeout:
		// Counted as busy or cut by the caller.
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
	if len(body.Revocations) > 0 {
		attrs = append(attrs, "revocations_sent", len(body.Revocations))
	}
	if sw, ok := w.(*syncWriter); ok {
		sw.rec.Code = code
		body.RequestID = sw.rec.RequestID
		attrs = append(attrs, "request_id", sw.rec.RequestID)
		if sw.rec.Device.Replica != "" {
			attrs = append(attrs, "device", sw.rec.Device.Name, "replica", sw.rec.Device.Replica)
		}
	}
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
	_ = json.NewEncoder(w).Encode(body)
}

// pace times one direction of a sync: a transfer may not stand still for
// StallTimeout, must average MinTransferRate once StallTimeout has passed
// since it began, and must end by the request's end.
type pace struct {
	begin, end time.Time
	stall      time.Duration
	rate       int64 // bytes a second
	moved      int64
}

func (h *Handler) pace(end time.Time) *pace {
	return &pace{begin: time.Now(), end: end, stall: h.cfg.StallTimeout, rate: h.cfg.MinTransferRate}
}

// deadline is when the transfer is cut unless another byte moves: the
// next byte may come StallTimeout after the last, and no later than the
// bytes moved so far at MinTransferRate justify; each byte moves it only
// as far as that byte earns, never past the request's end.
func (p *pace) deadline(now time.Time) time.Time {
	d := now.Add(p.stall)
	if earned := float64(p.moved) / float64(p.rate); earned < p.end.Sub(p.begin).Seconds() {
		if e := p.begin.Add(max(p.stall, time.Duration(earned*float64(time.Second)))); e.Before(d) {
			d = e
		}
	}
	if p.end.Before(d) {
		d = p.end
	}
	return d
}

// isTimeout reports whether err is a transfer cut by its deadline.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// pacedReader sets the connection's read deadline by its pace before
// every read.
type pacedReader struct {
	r    io.Reader
	rc   *http.ResponseController
	pace *pace
}

func (p *pacedReader) Read(b []byte) (int, error) {
	_ = p.rc.SetReadDeadline(p.pace.deadline(time.Now()))
	n, err := p.r.Read(b)
	p.pace.moved += int64(n)
	return n, err
}

// writePaced writes data in pieces, setting the write deadline by the
// pace before each, and returns the bytes written.
func writePaced(w io.Writer, rc *http.ResponseController, data []byte, p *pace) (int, error) {
	const piece = 32 << 10
	n := 0
	for n < len(data) {
		_ = rc.SetWriteDeadline(p.deadline(time.Now()))
		m, err := w.Write(data[n:min(n+piece, len(data))])
		n += m
		p.moved += int64(m)
		if err != nil {
			return n, err
		}
	}
	// The last piece may still be buffered: send it within the pace too.
	_ = rc.SetWriteDeadline(p.deadline(time.Now()))
	if err := rc.Flush(); err != nil {
		return n, err
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

// RefusalListener wraps the listener a server made by NewServer serves
// on, so that a device whose handshake the Handler refuses (a revoked
// device: Config.CheckDevice) is told so. Crypto/tls sends a TLS alert
// and the server closes the connection at once; if the device's next
// flight (its Finished message, its request) arrived meanwhile, closing
// a connection with unread data resets it, the alert may be lost, and
// the device sees a broken pipe, retries, and reports the cloud
// unreachable. A connection from RefusalListener whose handshake was
// refused is closed gracefully instead: the alert goes out, the server
// stops writing and reads what the device still sends until it closes
// its end (within 5 seconds, 64 KiB at most).
func RefusalListener(ln net.Listener) net.Listener { return refusalListener{ln} }

type refusalListener struct{ net.Listener }

func (l refusalListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &lingerConn{Conn: c}, nil
}

// lingerTimeout bounds a refused connection's graceful close.
const lingerTimeout = 5 * time.Second

// lingerConn is a connection of RefusalListener.
type lingerConn struct {
	net.Conn
	refused atomic.Bool // its handshake was refused
}

func (c *lingerConn) Close() error {
	if c.refused.Load() {
		if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		_ = c.Conn.SetReadDeadline(time.Now().Add(lingerTimeout))
		_, _ = io.CopyN(io.Discard, c.Conn, 64<<10)
	}
	return c.Conn.Close()
}

// NewServer returns an *http.Server for h on addr with TLS and limits
// fitting slow links: headers within 10s (at most 16 KiB), an idle
// connection kept 2 minutes; the request body and the answer of a sync
// are timed by the Handler (Config.StallTimeout, MinTransferRate and
// RequestTimeout), which sets the connection's deadlines in place of the
// server's ReadTimeout and WriteTimeout. Serve it with
// ServeTLS(RefusalListener(ln), "", "") (or ListenAndServeTLS("", ""),
// where a revoked device may see its refusal as a dropped link) and stop
// it with Shutdown, which lets syncs in flight finish. With a Handler
// whose Config.CheckDevice is set, the server refuses the TLS handshake
// of a revoked device (Handler.VerifyConnection).
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
	if hh, ok := h.(*Handler); ok && hh.cfg.CheckDevice != nil {
		tc := srv.TLSConfig
		tc.VerifyConnection = hh.VerifyConnection
		// On a connection from RefusalListener, a refused handshake
		// marks the connection, so that closing it lets the alert
		// reach the device.
		tc.GetConfigForClient = func(hi *tls.ClientHelloInfo) (*tls.Config, error) {
			lc, ok := hi.Conn.(*lingerConn)
			if !ok {
				return nil, nil
			}
			c := tc.Clone()
			c.GetConfigForClient = nil
			c.VerifyConnection = func(cs tls.ConnectionState) error {
				err := hh.VerifyConnection(cs)
				if err != nil {
					lc.refused.Store(true)
				}
				return err
			}
			return c, nil
		}
	}
	if log != nil {
		srv.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	}
	return srv
}
