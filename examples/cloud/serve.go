package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/chartsync/chartsync/audit"
	"github.com/chartsync/chartsync/audit/pgaudit"
	"github.com/chartsync/chartsync/internal/atomicfile"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/store/postgres"
	"github.com/chartsync/chartsync/transport/httpsync"
	"github.com/jackc/pgx/v5/pgxpool"
)

// listening, if set (by tests), is called with the address once serve
// accepts connections.
var listening func(addr string)

// opsListening, if set (by tests), is called with the operator
// listener's address once it serves.
var opsListening func(addr string)

// shutdownGrace is how long in-flight syncs get to finish on shutdown.
const shutdownGrace = 30 * time.Second

var serveCommand = &command{
	name: "serve",
	args: "[-dir DIR] [-addr 127.0.0.1:8443] [-ops 127.0.0.1:9443] (-dev-cert | -cert FILE -key FILE)",
	help: "Serve the cloud replica to enrolled devices, and its FHIR API to authorised systems, over HTTPS until SIGINT or SIGTERM.",
	flags: func(fs *flag.FlagSet) {
		fs.String("addr", "127.0.0.1:8443", "the address to listen on")
		fs.String("ops", "", "serve the operator's endpoints (GET /healthz, /readyz, /metrics) on this address, e.g. 127.0.0.1:9443; keep it off the devices' network")
		fs.Bool("dev-cert", false, "use a development server certificate signed by the device CA (made in DIR/tls if missing), for 127.0.0.1 and localhost")
		fs.String("cert", "", "the server's TLS certificate (PEM), instead of -dev-cert")
		fs.String("key", "", "the key of -cert (PEM)")
		fs.Int("max-concurrent", 0, "syncs applied and answered at once (default 32)")
		fs.Int("max-transfers", 0, "syncs in progress at once, their uploads included (default 4 × -max-concurrent)")
		fs.Int64("max-body", 0, "largest request in bytes (default 32 MiB)")
		fs.Int64("max-request-memory", 0, "memory one sync's bundle may cost; a bundle declaring more than an eighth of it decompressed is refused (default 64 MiB)")
		fs.Int64("min-rate", 0, "slowest average upload, in bytes a second, before a sync is cut (default 512)")
		fs.Duration("request-timeout", 0, "longest a sync may take, upload to answer (default 10m)")
		fs.Bool("json", false, "log JSON lines instead of text")
		fs.Bool("debug", false, "log debug lines too")
	},
	run: serve,
}

func flagValue[T any](fs *flag.FlagSet, name string) T {
	return fs.Lookup(name).Value.(flag.Getter).Get().(T)
}

func serve(ctx context.Context, fs *flag.FlagSet, at where, stdout, stderr io.Writer) error {
	dir := at.Dir
	if fs.NArg() > 0 {
		return usagef("unexpected arguments %q", fs.Args())
	}
	addr := flagValue[string](fs, "addr")
	devCert := flagValue[bool](fs, "dev-cert")
	certFile, keyFile := flagValue[string](fs, "cert"), flagValue[string](fs, "key")
	switch {
	case devCert && (certFile != "" || keyFile != ""):
		return usagef("use either -dev-cert or -cert and -key, not both")
	case !devCert && (certFile == "" || keyFile == ""):
		return usagef("no TLS certificate: pass -dev-cert to make a development certificate for 127.0.0.1 and localhost, or -cert FILE -key FILE")
	}
	level := slog.LevelInfo
	if flagValue[bool](fs, "debug") {
		level = slog.LevelDebug
	}
	var handler slog.Handler = slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})
	if flagValue[bool](fs, "json") {
		handler = slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level})
	}
	log := slog.New(handler)

	if at.DB == "" {
		// One process per data directory: a database takes any number.
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("create data directory: %w", err)
		}
		unlock, err := lockDir(dir)
		if errors.Is(err, errLocked) {
			return fmt.Errorf("%w (%s); stop the other \"cloud serve\" first", err, dir)
		}
		if err != nil {
			return err
		}
		defer unlock()
	}
	st, err := openState(ctx, at)
	if err != nil {
		return err
	}
	defer st.Close()
	ca, created, err := st.DeviceCA(ctx)
	if err != nil {
		return err
	}
	if created {
		log.Info("created the device CA; back it up: losing it locks out every enrolled device", "where", at.describe(dirCA))
	}

	var cert tls.Certificate
	switch {
	case devCert && at.DB != "":
		// Each node makes its own, in memory, from the CA every
		// credential trusts.
		cert, err = issueDevCert(ca, addr)
	case devCert:
		cert, err = developmentCert(dir, ca, addr, log)
	default:
		cert, err = tls.LoadX509KeyPair(certFile, keyFile)
	}
	if err != nil {
		return fmt.Errorf("server certificate: %w", err)
	}

	// Every change a device sends must carry its device's signature. The
	// roster holds the devices enrolled so far; a device enrolled since
	// this server started sends its enrolment with its changes.
	roster, rep, access, db, err := openCloud(ctx, at, st, log)
	if err != nil {
		return err
	}
	defer rep.Close()
	defer access.Close()
	var metrics *opsMetrics
	var h *httpsync.Handler
	var ops *opsServer
	if opsAddr := flagValue[string](fs, "ops"); opsAddr != "" {
		var pool func() *pgxpool.Stat
		ready := func(context.Context) error { return nil } // the replica is open
		if db != nil {
			pool, ready = db.Stat, db.Ready
		}
		metrics = newOpsMetrics(func() httpsync.HandlerStats { return h.Stats() }, rep, pool)
		if ops, err = startOps(opsAddr, metrics, ready, log); err != nil {
			return err
		}
		defer ops.Close()
		log.Info("operator endpoints serving", "url", "http://"+ops.Addr(), "paths", []string{pathHealth, pathReady, pathMetrics})
		if opsListening != nil {
			opsListening(ops.Addr())
		}
	}
	var onSync func(httpsync.SyncRecord)
	if metrics != nil {
		onSync = metrics.observe
	}
	// The cloud's policy (scope, authors, admission, the access log) is
	// the gate's, shared with cloud import: a bundle file is checked and
	// recorded as a sync is.
	g, err := newGate(rep, access, roster, flagValue[int](fs, "max-concurrent"), log)
	if err != nil {
		return err
	}
	h, err = httpsync.NewHandler(httpsync.Config{
		Gate: g, DeviceCA: ca.Pool(), Logger: log, CheckDevice: roster.CheckDevice,
		MaxConcurrent: flagValue[int](fs, "max-concurrent"), MaxTransfers: flagValue[int](fs, "max-transfers"),
		MaxBodyBytes: flagValue[int64](fs, "max-body"), MaxRequestMemory: flagValue[int64](fs, "max-request-memory"),
		MinTransferRate: flagValue[int64](fs, "min-rate"), RequestTimeout: flagValue[time.Duration](fs, "request-timeout"),
		OnSync: onSync,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (is another server using the port? choose another with -addr)", addr, err)
	}
	url := "https://" + ln.Addr().String()
	if err := st.SetServed(ctx, info{Replica: rep.ID(), URL: url}); err != nil {
		ln.Close()
		return err
	}
	srv := httpsync.NewServer(ln.Addr().String(), h, cert, log)
	// The FHIR API for authorised systems shares the listener: NewServer
	// set the TLS configuration up for h (device certificates requested,
	// checked by h; revoked devices refused at the handshake), and only
	// the routing changes.
	api, err := newFHIRAPI(fhirConfig{Replica: rep, Systems: st, AccessLog: access, Logger: log})
	if err != nil {
		ln.Close()
		return err
	}
	srv.Handler = withFHIR(h, api)
	// Session tickets sealed with the keys every node shares: a device
	// resumes with any node, and with this one after a restart.
	tctx, stopTickets := context.WithCancel(ctx)
	tickets, err := refreshTickets(tctx, st, func(keys [][32]byte) error { return httpsync.SetTicketKeys(srv.TLSConfig, keys) }, log)
	if err != nil {
		stopTickets()
		ln.Close()
		return err
	}
	defer func() { stopTickets(); <-tickets }()
	served := make(chan error, 1)
	go func() { served <- srv.ServeTLS(httpsync.RefusalListener(ln), "", "") }()
	where := "-dir " + dir
	if at.DB != "" {
		where = "-db DATABASE"
		log.Info("cloud serving", "url", url, "replica", rep.ID(), "db", "postgres")
	} else {
		log.Info("cloud serving", "url", url, "replica", rep.ID(), "dir", dir)
	}
	fmt.Fprintf(stdout, "Cloud replica %s is serving on %s.\nEnrol a device: cloud enrol %s -request DEVICE-DIR/enrol-request.pem -device NAME -out NAME.pem\nFHIR API for authorised systems: %s%s (cloud systems add %s -name NAME issues a token)\nStop with Ctrl-C; syncs in flight finish first.\n", rep.ID(), url, where, url, fhirPrefix, where)
	if listening != nil {
		listening(ln.Addr().String())
	}

	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	if ops != nil {
		ops.Draining() // readyz says so, for a load balancer
	}
	log.Info("shutting down: finishing syncs in flight", "grace", shutdownGrace)
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("syncs still running at the deadline were cut; their devices will resend", "err", err)
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	stats := h.Stats()
	log.Info("stopped", "syncs", stats.Syncs, "refused", stats.Refused, "failed", stats.Failed, "busy", stats.Busy)
	return nil
}

// accessLog is the access log serve keeps: a file, or rows of -db.
type accessLog interface {
	httpsync.AccessLog
	Close() error
}

// openCloud opens what every command serving devices needs: the roster of
// the devices the cloud's authority enrolled, kept up to date from st,
// and the replica (with its access log and store, as openReplica) that
// checks their changes against it.
func openCloud(ctx context.Context, at where, st state, log *slog.Logger) (roster liveRoster, rep *replica.Replica, access accessLog, db *postgres.Store, err error) {
	authority, _, err := st.Authority(ctx)
	if err != nil {
		return roster, nil, nil, nil, err
	}
	if roster, err = openLiveRoster(ctx, st, rosterConfig(authority)); err != nil {
		return roster, nil, nil, nil, err
	}
	rep, access, db, err = openReplica(ctx, at, st, log, roster)
	return roster, rep, access, db, err
}

// openReplica opens the cloud's replica and access log: in the data
// directory (SQLite and a file), or in -db, where the replica is named
// and its own changes signed by the cloud's identity, which every node
// shares, and db is its PostgreSQL store (nil with the data directory).
func openReplica(ctx context.Context, at where, st state, log *slog.Logger, keys replica.Keys) (rep *replica.Replica, access accessLog, db *postgres.Store, err error) {
	if at.DB == "" {
		rep, err := replica.Open(ctx, filepath.Join(at.Dir, fileReplica), replica.Config{Logger: log, Keys: keys})
		if err != nil {
			return nil, nil, nil, err
		}
		access, err := audit.Open(filepath.Join(at.Dir, fileAccess), audit.Config{Logger: log})
		if err != nil {
			rep.Close()
			return nil, nil, nil, fmt.Errorf("%w (an altered or damaged access log must be looked into before the cloud serves again)", err)
		}
		return rep, access, nil, nil
	}
	id, created, err := st.Identity(ctx, replica.NewID())
	if err != nil {
		return nil, nil, nil, err
	}
	if created {
		log.Info("made the cloud's identity", "replica", id.ReplicaID())
	}
	store, err := postgres.Open(ctx, at.DB, postgres.Config{Schema: at.Schema})
	if err != nil {
		return nil, nil, nil, err
	}
	// Other nodes write the same database: every write names the chart
	// entries it read (replica.Config.SharedStore).
	rep, err = replica.New(ctx, store, replica.Config{Logger: log, Keys: keys, Signer: id, SharedStore: true})
	if err != nil {
		store.Close()
		return nil, nil, nil, err
	}
	pga, err := pgaudit.Open(ctx, at.DB, pgaudit.Config{Schema: at.Schema})
	if err != nil {
		rep.Close()
		return nil, nil, nil, err
	}
	return rep, pga, store, nil
}

// issueDevCert makes a development server certificate, signed by the
// device CA, for 127.0.0.1, localhost and the host of addr.
func issueDevCert(ca *httpsync.DeviceCA, addr string) (tls.Certificate, error) {
	hosts, err := devCertHosts(addr)
	if err != nil {
		return tls.Certificate{}, err
	}
	certPEM, keyPEM, err := ca.IssueServerCert(hosts, time.Now(), 365*24*time.Hour)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}

func devCertHosts(addr string) ([]string, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("address %q: %w", addr, err)
	}
	hosts := []string{"127.0.0.1", "localhost"}
	if host != "" && host != "127.0.0.1" && host != "localhost" {
		hosts = append(hosts, host)
	}
	return hosts, nil
}

// developmentCert loads the development server certificate from DIR/tls,
// or makes one signed by the device CA (which every credential trusts)
// when it is missing, expiring within a week, not signed by this CA, or
// not valid for the host of addr.
func developmentCert(dir string, ca *httpsync.DeviceCA, addr string, log *slog.Logger) (tls.Certificate, error) {
	certPath, keyPath := filepath.Join(dir, dirTLS, "server.crt"), filepath.Join(dir, dirTLS, "server.key")
	hosts, err := devCertHosts(addr)
	if err != nil {
		return tls.Certificate{}, err
	}
	if cert, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil && cert.Leaf != nil && devCertFits(cert.Leaf, ca, hosts) {
		return cert, nil
	}
	certPEM, keyPEM, err := ca.IssueServerCert(hosts, time.Now(), 365*24*time.Hour)
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := os.MkdirAll(filepath.Join(dir, dirTLS), 0o700); err != nil {
		return tls.Certificate{}, err
	}
	if err := atomicfile.Write(keyPath, keyPEM, atomicfile.Options{Perm: 0o600}); err != nil {
		return tls.Certificate{}, err
	}
	if err := atomicfile.Write(certPath, certPEM, atomicfile.Options{Perm: 0o644}); err != nil {
		return tls.Certificate{}, err
	}
	log.Info("made a development server certificate", "hosts", hosts, "cert", certPath)
	return tls.X509KeyPair(certPEM, keyPEM)
}

func devCertFits(leaf *x509.Certificate, ca *httpsync.DeviceCA, hosts []string) bool {
	if time.Until(leaf.NotAfter) < 7*24*time.Hour {
		return false
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return false
	}
	for _, h := range hosts {
		if leaf.VerifyHostname(h) != nil {
			return false
		}
	}
	return true
}
