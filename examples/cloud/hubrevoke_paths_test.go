package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/store"
	"github.com/chartsync/chartsync/transport/file"
	"github.com/chartsync/chartsync/transport/httpsync"
	"github.com/chartsync/chartsync/transport/relay"
	"github.com/chartsync/chartsync/transport/transporttest"
)

// hubWorld is a hub whose authority key was stolen, on every path its
// devices' bundles take: the cloud's authority and the hub's (trusted
// for kamuga by every device), a tablet the hub enrolled before the
// cloud revoked its key (the cloud held the record, so the revocation
// accepts it), and a tablet the thief enrolled with the stolen key
// after the revocation.
type hubWorld struct {
	cloud, hub *device.Authority
	now        time.Time
	revocation []byte // the cloud's revocation of the hub's key
	records    [][]byte
}

// hubSite is one device: its keys, its enrolment and a checking replica
// whose roster trusts the cloud and the hub.
type hubSite struct {
	id     *device.Identity
	rec    []byte
	roster *device.Roster
	r      *replica.Replica
}

var hubNurse = record.Author{UserID: "u-achieng", Role: record.RoleNurse}

func newHubWorld(t *testing.T) *hubWorld {
	w := &hubWorld{now: time.Now().UTC().Truncate(time.Second)}
	var err error
	w.cloud, err = device.NewAuthority()
	require.NoError(t, err)
	w.hub, err = device.NewAuthority()
	require.NoError(t, err)
	return w
}

func (w *hubWorld) trust() device.RosterConfig {
	return device.RosterConfig{Authorities: []device.TrustedAuthority{
		{Key: w.cloud.PublicKey()},
		{Key: w.hub.PublicKey(), Clinics: []string{"kamuga"}},
	}}
}

// enrol makes a device of kamuga enrolled by a at issued, whose roster
// holds every record made so far and its own.
func (w *hubWorld) enrol(t *testing.T, a *device.Authority, issued time.Time) *hubSite {
	t.Helper()
	id, err := device.Generate(replica.NewID(), "kamuga")
	require.NoError(t, err)
	rec, err := a.Enrol(id.Public(), issued, 24*time.Hour)
	require.NoError(t, err)
	w.records = append(w.records, rec)
	roster, err := device.NewRoster(w.trust())
	require.NoError(t, err)
	for _, r := range w.records {
		_, err := roster.Merge(r)
		require.NoError(t, err)
	}
	rep, err := replica.New(context.Background(), store.NewMem(), replica.Config{Signer: id, Keys: roster})
	require.NoError(t, err)
	t.Cleanup(func() { rep.Close() })
	return &hubSite{id: id, rec: rec, roster: roster, r: rep}
}

// meet gives each site's roster the others' enrolments (a roster file
// handed round), as a hub hands them out.
func meet(t *testing.T, sites ...*hubSite) {
	t.Helper()
	for _, s := range sites {
		for _, o := range sites {
			_, err := s.roster.Merge(o.rec)
			require.NoError(t, err)
		}
	}
}

// revoke has the cloud revoke the hub's key an hour ago, accepting the
// records given (those it holds).
func (w *hubWorld) revoke(t *testing.T, accepted ...[]byte) {
	t.Helper()
	var err error
	w.revocation, err = w.cloud.RevokeAuthority(w.hub.PublicKey(), w.now.Add(-time.Hour), accepted)
	require.NoError(t, err)
}

// learn gives a site's roster the revocation, as a roster file or a
// bundle would.
func (w *hubWorld) learn(t *testing.T, s *hubSite) {
	t.Helper()
	_, err := s.roster.Merge(w.revocation)
	require.NoError(t, err)
}

// scene makes the clinic's device (enrolled by the cloud), the tablet
// the hub enrolled before (listed), the cloud's revocation, and the
// thief's tablet enrolled after it. The clinic's roster took the thief's
// enrolment (a roster file the thief handed over) before it learnt of
// the revocation.
func (w *hubWorld) scene(t *testing.T) (clinic, listed, rogue *hubSite) {
	clinic = w.enrol(t, w.cloud, w.now.Add(-3*time.Hour))
	listed = w.enrol(t, w.hub, w.now.Add(-2*time.Hour))
	w.revoke(t, listed.rec)
	rogue = w.enrol(t, w.hub, w.now.Add(-30*time.Minute))
	meet(t, clinic, listed, rogue)
	w.learn(t, clinic)
	return clinic, listed, rogue
}

func registerAt(t *testing.T, s *hubSite, given string) string {
	t.Helper()
	chart, err := s.r.Register(context.Background(), hubNurse, record.Register{
		GivenName: given, Sex: "female", EstimatedBirthYear: 1988, HomeClinic: "kamuga"})
	require.NoError(t, err)
	return chart
}

// requireRefused checks a refusal of the thief's changes: typed as a
// revoked device's, the stored data unchanged, the bundle quarantined.
func requireRefused(t *testing.T, err error, s *hubSite, before transporttest.State) {
	t.Helper()
	require.ErrorIs(t, err, replica.ErrRevokedChange, "changes of a device the revoked hub enrolled after the revocation are refused")
	require.ErrorIs(t, err, replica.ErrForgedChange)
	var rc *replica.RevokedChangeError
	require.True(t, errors.As(err, &rc))
	assert.Zero(t, rc.Accepted, "the revocation accepts none of its changes")
	assert.Equal(t, before, transporttest.Snapshot(t, s.r), "nothing of the refused bundle is applied")
	q, err := s.r.Quarantined(context.Background())
	require.NoError(t, err)
	assert.Len(t, q, 1, "the refused bundle is kept for review")
}

// TestHubRevokedFileBundle: a file bundle of a tablet the stolen hub key
// enrolled after the cloud's revocation is refused by a clinic whose
// roster holds the revocation (though it took the tablet's enrolment
// before it learnt of it), whole, changing nothing; the file of the
// tablet the hub enrolled before applies.
func TestHubRevokedFileBundle(t *testing.T) {
	ctx := context.Background()
	w := newHubWorld(t)
	clinic, listed, rogue := w.scene(t)
	_, err := clinic.roster.Lookup(rogue.id.ReplicaID())
	require.ErrorIs(t, err, device.ErrRevokedAuthority)

	registerAt(t, rogue, "Rogue")
	stick := t.TempDir()
	_, err = file.Export(ctx, rogue.r, clinic.r.ID(), stick)
	require.NoError(t, err)
	before := transporttest.Snapshot(t, clinic.r)
	_, err = file.Import(ctx, clinic.r, stick)
	requireRefused(t, err, clinic, before)

	chart := registerAt(t, listed, "Wanjiru")
	good := t.TempDir()
	_, err = file.Export(ctx, listed.r, clinic.r.ID(), good)
	require.NoError(t, err)
	_, err = file.Import(ctx, clinic.r, good)
	require.NoError(t, err, "a tablet the hub enrolled before its revocation keeps working")
	_, err = clinic.r.Chart(ctx, chart)
	require.NoError(t, err)
}

// TestHubRevokedRelayBundle: a relay bundle of a tablet the stolen hub
// key enrolled after the revocation is refused by the clinic's endpoint
// (its sender's enrolment is refused); the tablet enrolled before
// reaches the clinic, and learns the revocation from the clinic's relay
// bundle.
func TestHubRevokedRelayBundle(t *testing.T) {
	ctx := context.Background()
	w := newHubWorld(t)
	clinic, listed, rogue := w.scene(t)
	endpoint := func(s *hubSite) *relay.Endpoint {
		e, err := relay.OpenEndpoint(t.TempDir(), s.r, s.id, s.roster, relay.Config{Peers: []string{clinic.r.ID()}})
		require.NoError(t, err)
		t.Cleanup(func() { e.Close() })
		return e
	}
	at := endpoint(clinic)
	listedEnd := endpoint(listed)
	toListed, err := at.Seal(ctx, listed.r.ID())
	require.NoError(t, err)
	_, err = listedEnd.Open(ctx, toListed)
	require.NoError(t, err)
	require.Len(t, listed.roster.AuthorityRevocations(), 1, "a relay bundle carries the revocation")
	registerAt(t, rogue, "Rogue")
	sealed, err := endpoint(rogue).Seal(ctx, clinic.r.ID())
	require.NoError(t, err)
	before := transporttest.Snapshot(t, clinic.r)
	_, err = at.Open(ctx, sealed)
	require.ErrorIs(t, err, device.ErrRevokedAuthority, "the relay bundle of a device the revoked hub enrolled is refused")
	assert.Equal(t, before, transporttest.Snapshot(t, clinic.r), "nothing of it is applied")

	chart := registerAt(t, listed, "Wanjiru")
	sealed, err = listedEnd.Seal(ctx, clinic.r.ID())
	require.NoError(t, err)
	_, err = at.Open(ctx, sealed)
	require.NoError(t, err, "a tablet the hub enrolled before its revocation keeps working")
	_, err = clinic.r.Chart(ctx, chart)
	require.NoError(t, err)
}

// TestHubRevokedChangesForwarded: a phone that has not learnt of the
// revocation takes the thief's tablet's changes and forwards them: the
// clinic refuses that bundle, whole, and answers with the revocation;
// once the phone has it, it leaves those changes out, and its next
// bundle, with its own work and the listed tablet's, is taken (nothing
// wedged).
func TestHubRevokedChangesForwarded(t *testing.T) {
	ctx := context.Background()
	w := newHubWorld(t)
	clinic, listed, rogue := w.scene(t)
	phone := w.enrol(t, w.cloud, w.now.Add(-3*time.Hour))
	meet(t, phone, clinic, listed, rogue)
	carry := func(from, to *hubSite) error {
		dir := t.TempDir()
		_, err := file.Export(ctx, from.r, to.r.ID(), dir)
		require.NoError(t, err)
		_, err = file.Import(ctx, to.r, dir)
		return err
	}
	registerAt(t, rogue, "Rogue")
	require.NoError(t, carry(rogue, phone), "the phone, not knowing of the revocation, takes the thief's change")
	before := transporttest.Snapshot(t, clinic.r)
	err := carry(phone, clinic)
	requireRefused(t, err, clinic, before)

	require.NoError(t, carry(clinic, phone), "the clinic's bundle carries the revocation")
	require.Len(t, phone.roster.AuthorityRevocations(), 1, "the phone learnt it")
	own := registerAt(t, phone, "Akinyi")
	village := registerAt(t, listed, "Wanjiru")
	require.NoError(t, carry(listed, phone))
	require.NoError(t, carry(phone, clinic), "the phone leaves the refused changes out and is taken")
	for _, chart := range []string{own, village} {
		_, err := clinic.r.Chart(ctx, chart)
		require.NoError(t, err, "the phone's own work and the listed tablet's reach the clinic")
	}
}

// TestHubRevokedHTTPS: a cloud whose roster holds the revocation refuses
// the TLS handshake of a tablet the stolen hub key enrolled after it
// (its credential, issued on the hub's word, is refused as revoked),
// and a laptop that took that tablet's change is refused once, learns
// the revocation from the refusal, and syncs its own work.
func TestHubRevokedHTTPS(t *testing.T) {
	ctx := context.Background()
	w := newHubWorld(t)
	clinic, listed, rogue := w.scene(t)
	laptop := w.enrol(t, w.cloud, w.now.Add(-3*time.Hour))
	meet(t, laptop, clinic, listed, rogue)

	cloudRoster, err := device.NewRoster(w.trust())
	require.NoError(t, err)
	for _, rec := range append([][]byte{w.revocation}, w.records...) {
		_, err := cloudRoster.Merge(rec)
		require.NoError(t, err)
	}
	cloudRep, err := replica.New(ctx, store.NewMem(), replica.Config{Keys: cloudRoster})
	require.NoError(t, err)
	t.Cleanup(func() { cloudRep.Close() })
	ca, err := httpsync.NewDeviceCA("test device CA", w.now.Add(-time.Hour), 48*time.Hour)
	require.NoError(t, err)
	certPEM, keyPEM, err := ca.IssueServerCert([]string{"127.0.0.1"}, w.now.Add(-time.Hour), 48*time.Hour)
	require.NoError(t, err)
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	require.NoError(t, err)
	h, err := httpsync.NewHandler(httpsync.Config{Replica: cloudRep, DeviceCA: ca.Pool(),
		CheckDevice: func(_ context.Context, dev httpsync.Device) error {
			if _, err := cloudRoster.Lookup(dev.Replica); errors.Is(err, device.ErrRevoked) {
				return fmt.Errorf("%w: %w", httpsync.ErrCredentialRevoked, err)
			}
			return nil
		}})
	require.NoError(t, err)
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = httpsync.ServerTLSConfig(cert)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	client := func(s *hubSite, name string) *httpsync.Client {
		cred, err := ca.Enrol(httpsync.Enrolment{Replica: s.id.ReplicaID(), Clinic: "kamuga", Device: name, PublicKey: s.id.Public().SignKey,
			Valid: time.Hour, CloudURL: srv.URL, CloudReplica: cloudRep.ID(), ServerTrust: []*x509.Certificate{ca.Cert}})
		require.NoError(t, err)
		cred, err = cred.WithIdentity(s.id)
		require.NoError(t, err)
		c, err := httpsync.NewClient(s.r, httpsync.ClientConfig{Credential: cred, MaxAttempts: 2})
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		return c
	}

	registerAt(t, rogue, "Rogue")
	_, err = client(rogue, "rogue-tablet").SyncReport(ctx)
	require.ErrorIs(t, err, httpsync.ErrCredentialRevoked, "the tablet the stolen key enrolled is refused at the handshake")

	dir := t.TempDir()
	_, err = file.Export(ctx, rogue.r, laptop.r.ID(), dir)
	require.NoError(t, err)
	_, err = file.Import(ctx, laptop.r, dir)
	require.NoError(t, err, "the laptop, not knowing of the revocation, takes the thief's change")
	own := registerAt(t, laptop, "Akinyi")
	before := transporttest.Snapshot(t, cloudRep)
	lc := client(laptop, "kamuga-laptop")
	_, err = lc.SyncReport(ctx)
	require.ErrorIs(t, err, replica.ErrRevokedChange, "the laptop's bundle with the thief's change is refused")
	assert.Equal(t, before, transporttest.Snapshot(t, cloudRep), "nothing of it is applied")
	require.Len(t, laptop.roster.AuthorityRevocations(), 1, "the refusal taught the laptop the revocation")
	_, err = lc.SyncReport(ctx)
	require.NoError(t, err, "the laptop leaves the thief's change out and syncs")
	_, err = cloudRep.Chart(ctx, own)
	require.NoError(t, err, "the laptop's own work reaches the cloud")
}
