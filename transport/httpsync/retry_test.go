package httpsync_test

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/audit"
	"github.com/chartsync/chartsync/transport/httpsync"
	"github.com/chartsync/chartsync/transport/transporttest"
)

// scripted answers the first requests from a script of statuses, then
// passes the rest to the handler. It counts every request.
type scripted struct {
	next   http.Handler
	mu     sync.Mutex
	script []int
	seen   atomic.Int64
}

func (s *scripted) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.seen.Add(1)
	s.mu.Lock()
	var status int
	if len(s.script) > 0 {
		status, s.script = s.script[0], s.script[1:]
	}
	s.mu.Unlock()
	if status == 0 {
		s.next.ServeHTTP(w, r)
		return
	}
	_, _ = io.Copy(io.Discard, r.Body)
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "0")
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(`{"error":"scripted","message":"a scripted answer"}`))
}

func scriptedCloud(t *testing.T, script ...int) (*cloud, *scripted) {
	t.Helper()
	s := &scripted{script: script}
	c := newCloud(t, cloudOptions{memory: true, wrap: func(h http.Handler) http.Handler { s.next = h; return s }})
	return c, s
}

func TestRetry(t *testing.T) {
	t.Run("busy and failing clouds are retried", func(t *testing.T) {
		// 408: the cloud cut a body that came too slowly; 429: another
		// sync of the device was in progress.
		c, s := scriptedCloud(t, 503, 500, 502, 408, 429)
		d := c.newDevice(t, "kamuga", "tablet", fastRetries())
		registerAt(t, d.rep, "Wanjiru", "Mwangi", "kamuga")
		rep := d.sync(t)
		assert.Equal(t, 5, rep.Retries, "five failed answers, five retries")
		assert.EqualValues(t, 6, s.seen.Load())
		transporttest.RequireSame(t, d.rep, c.rep)
	})
	t.Run("refusals are not retried", func(t *testing.T) {
		for _, status := range []int{400, 401, 403, 404, 413} {
			c, s := scriptedCloud(t, status)
			d := c.newDevice(t, "kamuga", "tablet", fastRetries())
			_, err := d.client.Sync(t.Context())
			var se *httpsync.StatusError
			require.ErrorAs(t, err, &se, "status %d", status)
			assert.Equal(t, status, se.Status)
			assert.EqualValues(t, 1, s.seen.Load(), "status %d is not retried", status)
		}
	})
	t.Run("retries run out", func(t *testing.T) {
		c, s := scriptedCloud(t, 503, 503, 503, 503)
		cfg := fastRetries()
		cfg.MaxAttempts = 3
		d := c.newDevice(t, "kamuga", "tablet", cfg)
		rep, err := d.client.SyncReport(t.Context())
		require.ErrorIs(t, err, httpsync.ErrBusy, "a cloud busy every time gives ErrBusy")
		assert.NotErrorIs(t, err, httpsync.ErrUnreachable, "a busy cloud was reached")
		assert.EqualValues(t, 3, s.seen.Load(), "MaxAttempts bounds the tries")
		assert.Equal(t, 2, rep.Retries)
	})
	t.Run("an unreachable cloud", func(t *testing.T) {
		c := newCloud(t, cloudOptions{memory: true})
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		closed := "https://" + ln.Addr().String()
		require.NoError(t, ln.Close())
		cfg := fastRetries()
		cfg.URL, cfg.MaxAttempts = closed, 2
		d := c.newDevice(t, "kamuga", "tablet", cfg)
		_, err = d.client.Sync(t.Context())
		require.ErrorIs(t, err, httpsync.ErrUnreachable)
		var opErr *net.OpError
		assert.ErrorAs(t, err, &opErr, "the network error is wrapped")
	})
	t.Run("cancelling stops the wait before a retry", func(t *testing.T) {
		c, _ := scriptedCloud(t, 503, 503)
		cfg := fastRetries()
		cfg.MinBackoff, cfg.MaxBackoff = time.Hour, time.Hour
		var once sync.Once
		ctx, cancel := context.WithCancel(t.Context())
		cfg.Progress = func(p httpsync.Progress) {
			if p.Phase == httpsync.PhaseRetrying {
				once.Do(cancel)
			}
		}
		d := c.newDevice(t, "kamuga", "tablet", cfg)
		_, err := d.client.Sync(ctx)
		require.ErrorIs(t, err, context.Canceled, "a cancelled sync returns the context's error")
	})
	t.Run("a stalled request is cut and retried", func(t *testing.T) {
		var first atomic.Bool
		c := newCloud(t, cloudOptions{memory: true, wrap: func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if first.CompareAndSwap(false, true) {
					_, _ = io.Copy(io.Discard, r.Body)
					<-r.Context().Done() // never answer: the client must give up
					return
				}
				h.ServeHTTP(w, r)
			})
		}})
		cfg := fastRetries()
		cfg.StallTimeout = 50 * time.Millisecond
		d := c.newDevice(t, "kamuga", "tablet", cfg)
		registerAt(t, d.rep, "Wanjiru", "Mwangi", "kamuga")
		rep := d.sync(t)
		assert.Equal(t, 1, rep.Retries, "the stalled request was retried once")
		transporttest.RequireSame(t, d.rep, c.rep)
	})
}

func TestServerTrust(t *testing.T) {
	t.Run("a pinned server certificate", func(t *testing.T) {
		c := newCloud(t, cloudOptions{memory: true})
		d := c.newDevice(t, "kamuga", "tablet", fastRetries())
		leaf := c.srv.TLS.Certificates[0].Leaf
		if leaf == nil {
			var err error
			leaf, err = x509.ParseCertificate(c.srv.TLS.Certificates[0].Certificate[0])
			require.NoError(t, err)
		}
		cred := *d.cred
		cred.ServerTrust = []*x509.Certificate{leaf}
		cfg := fastRetries()
		cfg.Credential = &cred
		cl, err := httpsync.NewClient(d.rep, cfg)
		require.NoError(t, err)
		defer cl.Close()
		_, err = cl.Sync(t.Context())
		require.NoError(t, err, "a device pinning the cloud's certificate syncs")

		other := serverCert(t, newCA(t))
		otherLeaf, err := x509.ParseCertificate(other.Certificate[0])
		require.NoError(t, err)
		cred.ServerTrust = []*x509.Certificate{otherLeaf}
		cl2, err := httpsync.NewClient(d.rep, cfg)
		require.NoError(t, err)
		defer cl2.Close()
		rep, err := cl2.SyncReport(t.Context())
		require.ErrorIs(t, err, httpsync.ErrServerNotTrusted, "a device pinning another certificate refuses the cloud")
		assert.NotErrorIs(t, err, httpsync.ErrUnreachable, "a wrong certificate is not a network blip")
		assert.Zero(t, rep.Retries, "a wrong certificate is not retried")
	})
	t.Run("a cloud signed by another CA", func(t *testing.T) {
		c, s := scriptedCloud(t)
		d := c.newDevice(t, "kamuga", "tablet", fastRetries())
		cred := *d.cred
		cred.ServerTrust = []*x509.Certificate{newCA(t).Cert}
		cfg := fastRetries()
		cfg.Credential = &cred
		cl, err := httpsync.NewClient(d.rep, cfg)
		require.NoError(t, err)
		defer cl.Close()
		rep, err := cl.SyncReport(t.Context())
		var unknown x509.UnknownAuthorityError
		require.ErrorAs(t, err, &unknown, "the device does not trust a cloud its credential does not name")
		assert.ErrorIs(t, err, httpsync.ErrServerNotTrusted)
		assert.Zero(t, rep.Retries)
		assert.Zero(t, s.seen.Load(), "no request reached the impostor's handler")
	})
}

func TestInsecure(t *testing.T) {
	c := newCloud(t, cloudOptions{memory: true})
	d := c.newDevice(t, "kamuga", "tablet", fastRetries())
	_, err := httpsync.NewClient(d.rep, httpsync.ClientConfig{Credential: d.cred, URL: "http://127.0.0.1:1"})
	require.Error(t, err, "plain HTTP is refused without Insecure")

	// Behind a proxy that authenticates devices itself, plain HTTP works
	// when both sides say so.
	h, err := httpsync.NewHandler(httpsync.Config{Replica: c.rep, Authenticate: func(r *http.Request) (httpsync.Device, error) {
		if r.Header.Get("X-Test-Device") != d.rep.ID() {
			return httpsync.Device{}, httpsync.ErrNoCredential
		}
		return d.cred.Device, nil
	}})
	require.NoError(t, err)
	plain := httptest.NewServer(h)
	defer plain.Close()
	cfg := fastRetries()
	cfg.Credential, cfg.URL, cfg.Insecure = d.cred, plain.URL, true
	cfg.HTTPClient = &http.Client{Transport: headerTransport{"X-Test-Device", d.rep.ID()}}
	cl, err := httpsync.NewClient(d.rep, cfg)
	require.NoError(t, err)
	registerAt(t, d.rep, "Wanjiru", "Mwangi", "kamuga")
	_, err = cl.Sync(t.Context())
	require.NoError(t, err)
	transporttest.RequireSame(t, d.rep, c.rep)
}

type headerTransport struct{ k, v string }

func (h headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(h.k, h.v)
	return http.DefaultTransport.RoundTrip(r)
}

// blockingBody is a request body that yields nothing until released.
type blockingBody struct {
	io.ReadCloser
	entered chan<- struct{}
	release <-chan struct{}
	once    sync.Once
}

func (b *blockingBody) Read(p []byte) (int, error) {
	b.once.Do(func() {
		b.entered <- struct{}{}
		<-b.release
	})
	return b.ReadCloser.Read(p)
}

// holdFirst holds the first sync inside the handler, with its slot taken,
// until release is closed.
func holdFirst(entered chan<- struct{}, release <-chan struct{}) func(http.Handler) http.Handler {
	var first atomic.Bool
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == httpsync.PathSync && first.CompareAndSwap(false, true) {
				r.Body = &blockingBody{ReadCloser: r.Body, entered: entered, release: release}
			}
			h.ServeHTTP(w, r)
		})
	}
}

// heldLog is an access log that holds the first write it is asked to
// record, with its sync's slot taken, until release is closed.
type heldLog struct {
	entered chan<- struct{}
	release <-chan struct{}
	once    sync.Once
}

func (l *heldLog) Append(ctx context.Context, es ...audit.Entry) error {
	for _, e := range es {
		if e.Action == audit.Write {
			l.once.Do(func() {
				l.entered <- struct{}{}
				<-l.release
			})
		}
	}
	return nil
}

func TestConcurrencyLimit(t *testing.T) {
	t.Run("syncs in progress", func(t *testing.T) {
		// The first sync holds the only transfer while its body is read.
		entered, release := make(chan struct{}), make(chan struct{})
		c := newCloud(t, cloudOptions{memory: true, config: httpsync.Config{MaxTransfers: 1, QueueWait: time.Millisecond},
			wrap: holdFirst(entered, release)})
		testConcurrencyLimit(t, c, entered, release)
	})
	t.Run("syncs applied", func(t *testing.T) {
		// The first sync holds the only slot while it is applied.
		entered, release := make(chan struct{}), make(chan struct{})
		c := newCloud(t, cloudOptions{memory: true, config: httpsync.Config{MaxConcurrent: 1, QueueWait: time.Millisecond,
			AccessLog: &heldLog{entered: entered, release: release}}})
		testConcurrencyLimit(t, c, entered, release)
	})
}

func testConcurrencyLimit(t *testing.T, c *cloud, entered <-chan struct{}, release chan<- struct{}) {
	cfg := fastRetries()
	cfg.MaxAttempts = 1
	a := c.newDevice(t, "kamuga", "tablet", cfg)
	b := c.newDevice(t, "kamuga", "laptop", cfg)
	registerAt(t, a.rep, "Wanjiru", "Mwangi", "kamuga")

	done := make(chan error, 1)
	go func() { _, err := a.client.Sync(context.Background()); done <- err }()
	<-entered // a holds the only slot
	_, err := b.client.Sync(t.Context())
	require.ErrorIs(t, err, httpsync.ErrBusy, "a second sync finds no slot")
	var se *httpsync.StatusError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, http.StatusServiceUnavailable, se.Status)
	assert.Equal(t, time.Second, se.RetryAfter, "the cloud says when to come back")
	assert.EqualValues(t, 1, c.handler.Stats().Busy)
	close(release)
	require.NoError(t, <-done, "the held sync completes")
	// The device has its answer a moment before the handler returns.
	waitHandler(t, c.handler, "the held sync has ended", func(st httpsync.HandlerStats) bool { return st.Active == 0 })
	_, err = b.client.Sync(t.Context())
	require.NoError(t, err, "the slot is free again")
	assert.Contains(t, transporttest.ChartIDs(t, b.rep), transporttest.ChartIDs(t, a.rep)[0])
}

// A device has one sync in progress at the cloud: more wait for it to end
// (up to four, each up to QueueWait), and one more is turned away at once
// with 429, which the client takes as busy (and retries). Another device
// is not held up.
func TestOneSyncPerDevice(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	c := newCloud(t, cloudOptions{memory: true, config: httpsync.Config{QueueWait: time.Hour},
		wrap: holdFirst(entered, release)})
	cfg := fastRetries()
	cfg.MaxAttempts = 1
	a := c.newDevice(t, "kamuga", "tablet", cfg)
	b := c.newDevice(t, "kamuga", "laptop", cfg)
	registerAt(t, a.rep, "Wanjiru", "Mwangi", "kamuga")
	out, err := a.rep.MakeBundle(t.Context(), c.rep.ID())
	require.NoError(t, err)

	results := make(chan error, 5)
	post := func() { _, err := a.client.PostRaw(context.Background(), out.Data); results <- err }
	go post()
	<-entered // a's first sync is in progress
	for range 4 {
		go post()
	}
	waitHandler(t, c.handler, "four syncs of the device wait", func(st httpsync.HandlerStats) bool { return st.Waiting == 4 })
	_, err = a.client.PostRaw(t.Context(), out.Data)
	require.ErrorIs(t, err, httpsync.ErrSyncInProgress, "one more sync of the device is turned away")
	assert.ErrorIs(t, err, httpsync.ErrBusy, "as a busy answer, which is retried")
	var se *httpsync.StatusError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, http.StatusTooManyRequests, se.Status)
	assert.Positive(t, se.RetryAfter)
	assert.Equal(t, int64(1), c.handler.Stats().Active, "one sync of the device is in progress")

	_, err = b.client.Sync(t.Context())
	require.NoError(t, err, "another device is not held up")
	close(release)
	for range 5 {
		require.NoError(t, <-results, "the waiting syncs go through once the first has ended")
	}
	assert.Zero(t, c.handler.Stats().Refused, "turning a sync away is not a refusal")
}

func TestGracefulShutdown(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	c := newCloud(t, cloudOptions{memory: true, server: true, wrap: holdFirst(entered, release)})
	d := c.newDevice(t, "kamuga", "tablet", fastRetries())
	id := registerAt(t, d.rep, "Wanjiru", "Mwangi", "kamuga")

	synced := make(chan error, 1)
	go func() { _, err := d.client.Sync(context.Background()); synced <- err }()
	<-entered
	shuttingDown := make(chan struct{})
	var once sync.Once
	c.server.RegisterOnShutdown(func() { once.Do(func() { close(shuttingDown) }) })
	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		stopped <- c.server.Shutdown(ctx)
	}()
	<-shuttingDown
	close(release)
	require.NoError(t, <-synced, "a sync in flight when shutdown starts completes")
	require.NoError(t, <-stopped, "shutdown waits for it and then returns")
	assert.Contains(t, transporttest.ChartIDs(t, c.rep), id, "the in-flight sync's chart is at the cloud")
	_, err := d.client.Sync(t.Context())
	assert.True(t, errors.Is(err, httpsync.ErrUnreachable), "after shutdown the cloud is unreachable: %v", err)
}

// waitHandler waits until the handler's counters satisfy ok, failing the
// test after a generous bound (a guard against hanging, not a timing).
func waitHandler(t *testing.T, h *httpsync.Handler, what string, ok func(httpsync.HandlerStats) bool) httpsync.HandlerStats {
	t.Helper()
	guard := time.Now().Add(20 * time.Second)
	for {
		st := h.Stats()
		if ok(st) {
			return st
		}
		require.True(t, time.Now().Before(guard), "the handler never reached %q: %+v", what, st)
		time.Sleep(time.Millisecond) // poll the counters; no timing is asserted
	}
}
