package httpsync_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/store"
	"github.com/chartsync/chartsync/transport/httpsync"
	"github.com/chartsync/chartsync/transport/transporttest"
)

// Fixtures shared by the httpsync tests.

var (
	nurse     = record.Author{UserID: "u-achieng", Name: "Nurse Achieng", Role: record.RoleNurse, Device: "tablet"}
	clinician = record.Author{UserID: "u-mutua", Name: "Clinical Officer Mutua", Role: record.RoleClinician, Device: "laptop"}
)

// cloud is a cloud replica served over real TLS on 127.0.0.1. Its devices
// sign their changes, and it checks them against the roster of devices
// its authority enrolled.
type cloud struct {
	rep     *replica.Replica
	ca      *httpsync.DeviceCA
	auth    *device.Authority
	roster  *device.Roster
	handler *httpsync.Handler
	srv     *httptest.Server // nil when served by httpsync.NewServer
	server  *http.Server     // nil when served by httptest
	url     string
}

// cloudOptions varies newCloud.
type cloudOptions struct {
	config  httpsync.Config                 // limits; Replica, DeviceCA and Logger are filled in
	wrap    func(http.Handler) http.Handler // wraps the handler, to inject faults
	http2   bool                            // serve HTTP/2
	replica replica.Config                  // the cloud replica's config
	memory  bool                            // an in-memory store instead of SQLite
	listen  func(t *testing.T) net.Listener // the listener (default 127.0.0.1:0)
	tls     func(*tls.Config)               // adjusts the server's TLS config
	server  bool                            // serve with httpsync.NewServer on a real listener
	_       struct{}                        // keep literals keyed
}

// newCloud starts a cloud: a replica, a device CA, a development server
// certificate for 127.0.0.1, and the Handler behind httptest's TLS server.
func newCloud(t testing.TB, o cloudOptions) *cloud {
	t.Helper()
	ctx := context.Background()
	auth, err := device.NewAuthority()
	require.NoError(t, err, "create the enrolment authority")
	roster, err := device.NewRoster(device.RosterConfig{Authorities: []device.TrustedAuthority{{Key: auth.PublicKey()}}})
	require.NoError(t, err)
	if o.replica.Keys == nil {
		// The cloud checks signatures, and signs what it writes itself
		// (the conformance suite edits on both sides) as an enrolled
		// device would.
		o.replica.Keys = roster
		own, err := device.Generate(replica.NewID(), "cloud")
		require.NoError(t, err)
		rec, err := auth.Enrol(own.Public(), time.Now().Truncate(time.Second), time.Hour)
		require.NoError(t, err)
		_, err = roster.Add(rec)
		require.NoError(t, err)
		o.replica.Signer = own
	}
	var rep *replica.Replica
	if o.memory {
		rep, err = replica.New(ctx, store.NewMem(), o.replica)
	} else {
		rep, err = replica.Open(ctx, filepath.Join(t.TempDir(), "cloud.db"), o.replica)
	}
	require.NoError(t, err, "open the cloud replica")
	t.Cleanup(func() { _ = rep.Close() })
	ca, err := httpsync.NewDeviceCA("test device CA", time.Now(), 24*time.Hour)
	require.NoError(t, err, "create the device CA")
	cfg := o.config
	cfg.Replica, cfg.DeviceCA = rep, ca.Pool()
	cfg.Logger = testLogger(t)
	h, err := httpsync.NewHandler(cfg)
	require.NoError(t, err, "new handler")
	var handler http.Handler = h
	if o.wrap != nil {
		handler = o.wrap(h)
	}
	if o.server {
		var ln net.Listener
		if o.listen != nil {
			ln = o.listen(t.(*testing.T))
		} else {
			ln, err = net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err, "listen on 127.0.0.1")
		}
		ln = httpsync.RefusalListener(ln)
		server := httpsync.NewServer(ln.Addr().String(), handler, serverCert(t, ca), cfg.Logger)
		if o.tls != nil {
			o.tls(server.TLSConfig)
		}
		served := make(chan error, 1)
		go func() { served <- server.ServeTLS(ln, "", "") }()
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = server.Shutdown(ctx)
			require.ErrorIs(t, <-served, http.ErrServerClosed, "the server stops cleanly")
		})
		return &cloud{rep: rep, ca: ca, auth: auth, roster: roster, handler: h, server: server, url: "https://" + ln.Addr().String()}
	}
	srv := httptest.NewUnstartedServer(handler)
	if o.listen != nil {
		srv.Listener.Close()
		srv.Listener = o.listen(t.(*testing.T))
	}
	srv.TLS = httpsync.ServerTLSConfig(serverCert(t, ca))
	if o.tls != nil {
		o.tls(srv.TLS)
	}
	srv.EnableHTTP2 = o.http2
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // cut handshakes are expected in some tests
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return &cloud{rep: rep, ca: ca, auth: auth, roster: roster, handler: h, srv: srv, url: srv.URL}
}

// serverCert issues a server certificate for 127.0.0.1 from ca.
func serverCert(t testing.TB, ca *httpsync.DeviceCA) tls.Certificate {
	t.Helper()
	certPEM, keyPEM, err := ca.IssueServerCert([]string{"127.0.0.1", "localhost"}, time.Now(), time.Hour)
	require.NoError(t, err, "issue a server certificate")
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	require.NoError(t, err, "load the server certificate")
	return cert
}

// clinicDevice is a clinic device with its own replica and credential.
type clinicDevice struct {
	name   string
	clinic string
	rep    *replica.Replica
	id     *device.Identity
	cred   *httpsync.Credential
	client *httpsync.Client
}

// enrol issues a credential for the device id, as cloud enrol does: a
// client certificate, and an enrolment by the cloud's authority, which the
// cloud's roster keeps and the credential carries.
func (c *cloud) enrol(t testing.TB, id *device.Identity, name string) *httpsync.Credential {
	t.Helper()
	cred := enrolIdentity(t, c.ca, httpsync.Enrolment{
		Replica: id.ReplicaID(), Clinic: id.Clinic(), Device: name, Valid: time.Hour,
		CloudURL: c.url, CloudReplica: c.rep.ID(), ServerTrust: []*x509.Certificate{c.ca.Cert},
	}, id)
	rec, err := c.auth.Enrol(id.Public(), time.Now().Truncate(time.Second), time.Hour)
	require.NoError(t, err)
	_, err = c.roster.Add(rec)
	require.NoError(t, err)
	cred.Authority, cred.Enrolment, cred.Roster = c.auth.PublicKey(), rec, c.roster.Encode()
	return cred
}

// enrolDevice makes a device identity for e.Replica of e.Clinic, as the
// device would, enrols its public key at ca, and returns the credential
// with the device's key added.
func enrolDevice(t testing.TB, ca *httpsync.DeviceCA, e httpsync.Enrolment) *httpsync.Credential {
	t.Helper()
	id, err := device.Generate(e.Replica, e.Clinic)
	require.NoError(t, err, "device identity")
	return enrolIdentity(t, ca, e, id)
}

// enrolIdentity enrols id's public key at ca and returns the credential
// with the device's key added.
func enrolIdentity(t testing.TB, ca *httpsync.DeviceCA, e httpsync.Enrolment, id *device.Identity) *httpsync.Credential {
	t.Helper()
	e.PublicKey = id.Public().SignKey
	cred, err := ca.Enrol(e)
	require.NoError(t, err, "enrol device %s of %s", e.Device, e.Clinic)
	cred, err = cred.WithIdentity(id)
	require.NoError(t, err, "the credential fits the device's identity")
	return cred
}

// fastRetries is a client config that retries quickly, for tests.
func fastRetries() httpsync.ClientConfig {
	return httpsync.ClientConfig{MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond, StallTimeout: 10 * time.Second}
}

// newDevice enrols a new device (an in-memory replica) of clinic at the
// cloud and gives it a client configured by cfg (Credential filled in).
func (c *cloud) newDevice(t testing.TB, clinic, name string, cfg httpsync.ClientConfig) *clinicDevice {
	t.Helper()
	id, err := device.Generate(replica.NewID(), clinic)
	require.NoError(t, err, "device identity")
	cred := c.enrol(t, id, name)
	roster, err := cred.NewRoster()
	require.NoError(t, err, "the device's roster from its credential")
	rep, err := replica.New(context.Background(), store.NewMem(), replica.Config{CacheCharts: 32, Signer: id, Keys: roster, CheckAuthors: true, Unscoped: []string{"cloud"}})
	require.NoError(t, err, "open device replica")
	t.Cleanup(func() { _ = rep.Close() })
	cfg.Credential = cred
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	cl, err := httpsync.NewClient(rep, cfg)
	require.NoError(t, err, "new client for %s", name)
	t.Cleanup(func() { _ = cl.Close() })
	return &clinicDevice{name: name, clinic: clinic, rep: rep, id: id, cred: cred, client: cl}
}

func (d *clinicDevice) sync(t testing.TB) httpsync.Report {
	t.Helper()
	rep, err := d.client.SyncReport(context.Background())
	require.NoError(t, err, "device %s syncs with the cloud", d.name)
	return rep
}

func registerAt(t testing.TB, r *replica.Replica, given, family, clinic string) string {
	t.Helper()
	id, err := r.Register(context.Background(), nurse, record.Register{
		GivenName: given, FamilyName: family, Sex: "female", EstimatedBirthYear: 1988,
		Village: "Kamuga", HomeClinic: clinic,
	})
	require.NoError(t, err, "register %s %s at %s", given, family, clinic)
	return id
}

func edit(t testing.TB, r *replica.Replica, chart string, op record.Op) record.Result {
	t.Helper()
	res, err := r.Edit(context.Background(), chart, clinician, op)
	require.NoError(t, err, "edit chart %s with %T", chart, op)
	return res
}

func amoxicillin(dose float64) record.Prescribe {
	return record.Prescribe{Drug: "Amoxicillin", Dose: dose, DoseUnit: "mg", Route: "oral", Frequency: "TDS", DurationDays: 5}
}

func allergy(n int) record.AddAllergy {
	return record.AddAllergy{Substance: fmt.Sprintf("substance-%d", n), Reaction: "rash", Severity: "mild"}
}

// snapshot is what a replica holds, as far as a refused request could
// have changed it: every chart's heads and every peer's positions.
type snapshot struct {
	Heads map[string]crdt.Heads
	Peers []replica.PeerStatus
}

func snapshotOf(t testing.TB, r *replica.Replica) snapshot {
	t.Helper()
	s := snapshot{Heads: map[string]crdt.Heads{}}
	for _, id := range transporttest.ChartIDs(t, r) {
		h, err := r.Heads(context.Background(), id)
		require.NoError(t, err)
		s.Heads[id] = h
	}
	ps, err := r.Peers(context.Background())
	require.NoError(t, err)
	s.Peers = ps
	return s
}

// testLogger logs to stderr when HTTPSYNC_LOG is set, to nowhere
// otherwise.
func testLogger(t testing.TB) *slog.Logger {
	t.Helper()
	if os.Getenv("HTTPSYNC_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

// requireHas checks that r holds every change of hashes on chart.
func requireHasChanges(t testing.TB, r *replica.Replica, chart string, hashes []crdt.Hash, who string) {
	t.Helper()
	v, err := r.Chart(context.Background(), chart)
	require.NoError(t, err, "%s cannot show chart %s", who, chart)
	have := map[crdt.Hash]int{}
	for _, h := range v.History {
		have[h.Change]++
	}
	for _, h := range hashes {
		require.Equal(t, 1, have[h], "%s holds change %s of chart %s %d times, want once", who, h, chart, have[h])
	}
}

func memStore() store.Store { return store.NewMem() }
