package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/transport/httpsync"
)

// The operator's endpoints, served on their own listener (-ops), never on
// the devices' TLS port:
//
//	GET /healthz   200 while the process serves
//	GET /readyz    200 when the node can take syncs: the database answers
//	               and its schema is migrated (-db), or the replica is open
//	               (-dir); 503 saying why otherwise, and while shutting down
//	GET /metrics   Prometheus metrics (below)
const (
	pathHealth  = "/healthz"
	pathReady   = "/readyz"
	pathMetrics = "/metrics"
)

// readyTimeout bounds one readiness check.
const readyTimeout = 5 * time.Second

// syncBuckets are the sync latency histogram's buckets, in seconds: from
// an idle sync on a LAN to a first sync over 2G.
var syncBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}

// opsMetrics are the node's metrics, in a registry of their own.
type opsMetrics struct {
	reg      *prometheus.Registry
	syncs    *prometheus.CounterVec   // by result
	bytes    *prometheus.CounterVec   // by direction
	changes  *prometheus.CounterVec   // by direction
	duration *prometheus.HistogramVec // by result: ok or refused
}

// resultOK is the result label of a sync answered 200; resultGone of one
// whose device went away before the answer. Any other result is the
// error code answered (httpsync's Code constants).
const (
	resultOK   = "ok"
	resultGone = "gone"
)

// newOpsMetrics registers the node's metrics: the syncs (by result, with
// their bundle bytes, changes and latency), the handler's syncs in
// progress and handshakes refused, the quarantined bundles, and the
// database pool when there is one (pool may be nil).
func newOpsMetrics(h func() httpsync.HandlerStats, rep *replica.Replica, pool func() *pgxpool.Stat) *opsMetrics {
	m := &opsMetrics{
		reg: prometheus.NewRegistry(),
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chartsync_syncs_total", Help: "Syncs ended, by result: ok, gone (the device left before the answer), or the error code answered.",
		}, []string{"result"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chartsync_sync_bundle_bytes_total", Help: "Bundle bytes received from devices (in) and sent to them (out).",
		}, []string{"direction"}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chartsync_sync_changes_total", Help: "Changes applied from devices (in), already held (duplicate), and sent to devices (out).",
		}, []string{"direction"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "chartsync_sync_duration_seconds", Help: "Time from a sync's request headers to its answer's last byte.", Buckets: syncBuckets,
		}, []string{"result"}),
	}
	m.reg.MustRegister(m.syncs, m.bytes, m.changes, m.duration,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "chartsync_syncs_in_progress", Help: "Syncs in progress, their uploads included."},
			func() float64 { return float64(h().Active) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "chartsync_syncs_waiting", Help: "Syncs waiting for a slot or for another of their device's."},
			func() float64 { return float64(h().Waiting) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "chartsync_revoked_refusals_total", Help: "TLS handshakes and requests of revoked devices refused."},
			func() float64 { return float64(h().Revoked) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "chartsync_quarantined_bundles", Help: "Bundles held in quarantine for review (-1: the store could not be read)."},
			func() float64 {
				ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
				defer cancel()
				q, err := rep.Quarantined(ctx)
				if err != nil {
					return -1
				}
				return float64(len(q))
			}),
	)
	if pool != nil {
		gauge := func(name, help string, f func(*pgxpool.Stat) float64) prometheus.Collector {
			return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return f(pool()) })
		}
		counter := func(name, help string, f func(*pgxpool.Stat) float64) prometheus.Collector {
			return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return f(pool()) })
		}
		m.reg.MustRegister(
			gauge("chartsync_db_pool_max_conns", "The store's connection pool size.", func(s *pgxpool.Stat) float64 { return float64(s.MaxConns()) }),
			gauge("chartsync_db_pool_total_conns", "Connections open.", func(s *pgxpool.Stat) float64 { return float64(s.TotalConns()) }),
			gauge("chartsync_db_pool_acquired_conns", "Connections in use.", func(s *pgxpool.Stat) float64 { return float64(s.AcquiredConns()) }),
			gauge("chartsync_db_pool_idle_conns", "Connections idle.", func(s *pgxpool.Stat) float64 { return float64(s.IdleConns()) }),
			counter("chartsync_db_pool_acquires_total", "Connections taken from the pool.", func(s *pgxpool.Stat) float64 { return float64(s.AcquireCount()) }),
			counter("chartsync_db_pool_empty_acquires_total", "Connections taken that had to wait for one.", func(s *pgxpool.Stat) float64 { return float64(s.EmptyAcquireCount()) }),
			counter("chartsync_db_pool_acquire_wait_seconds_total", "Time spent waiting for a connection.", func(s *pgxpool.Stat) float64 { return s.AcquireDuration().Seconds() }),
		)
	}
	return m
}

// observe is httpsync.Config.OnSync.
func (m *opsMetrics) observe(r httpsync.SyncRecord) {
	result := resultOK
	switch {
	case r.Status == 0:
		result = resultGone
	case r.Status != http.StatusOK:
		result = r.Code
		if result == "" {
			result = fmt.Sprint(r.Status)
		}
	}
	m.syncs.WithLabelValues(result).Inc()
	m.bytes.WithLabelValues("in").Add(float64(r.BytesIn))
	m.bytes.WithLabelValues("out").Add(float64(r.BytesOut))
	m.changes.WithLabelValues("in").Add(float64(r.ChangesIn))
	m.changes.WithLabelValues("duplicate").Add(float64(r.Duplicates))
	m.changes.WithLabelValues("out").Add(float64(r.ChangesOut))
	latency := "ok"
	if result != resultOK {
		latency = "failed"
	}
	m.duration.WithLabelValues(latency).Observe(r.Duration.Seconds())
}

// opsServer serves the operator's endpoints.
type opsServer struct {
	srv      *http.Server
	closing  atomic.Bool
	served   chan error
	listener net.Listener
}

// startOps serves the operator's endpoints on addr until Close. ready
// tells whether the node can take syncs.
func startOps(addr string, m *opsMetrics, ready func(context.Context) error, log *slog.Logger) (*opsServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("operator listener on %s: %w (choose another with -ops)", addr, err)
	}
	o := &opsServer{listener: ln, served: make(chan error, 1)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+pathHealth, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET "+pathReady, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		err := errShuttingDown
		if !o.closing.Load() {
			ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
			err = ready(ctx)
			cancel()
		}
		if err != nil {
			log.Warn("not ready", "err", err)
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready:", err)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.Handle("GET "+pathMetrics, promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg}))
	o.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, WriteTimeout: time.Minute,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	go func() { o.served <- o.srv.Serve(ln) }()
	return o, nil
}

// errShuttingDown: readyz while the node shuts down.
var errShuttingDown = errors.New("shutting down")

// Addr returns the address the endpoints are served on.
func (o *opsServer) Addr() string { return o.listener.Addr().String() }

// Draining makes readyz answer 503 from now on, so that a load balancer
// stops sending syncs while those in flight finish.
func (o *opsServer) Draining() { o.closing.Store(true) }

// Close stops serving and waits for the server to end.
func (o *opsServer) Close() error {
	o.closing.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := o.srv.Shutdown(ctx)
	if serr := <-o.served; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}
