package main

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica/store/postgres/pgtest"
	"github.com/chartsync/chartsync/transport/httpsync"
)

// TestRevokedDeviceCannotConnect: once "cloud revoke" has run, the
// serving cloud refuses the device's next sync, whether its client makes
// a full TLS handshake or resumes its session, with an error that says
// to contact the administrator; another device of the clinic syncs on.
func TestRevokedDeviceCannotConnect(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "cloud-data")
	at := []string{"-dir", dir}
	tablet, tabletCred := enrolledDevice(t, "kamuga-tablet-1", "kamuga", at)
	laptop, laptopCred := enrolledDevice(t, "kamuga-laptop", "kamuga", at)
	addr, stop := server(t, dir)
	t.Cleanup(func() { stop() })

	sessions := filepath.Join(t.TempDir(), "tls-sessions")
	client := func(cred *httpsync.Credential, file string) *httpsync.Client {
		cfg := httpsync.ClientConfig{Credential: cred, URL: "https://" + addr, SessionFile: file, NoSessionFile: file == "", MaxAttempts: 2}
		rep := tablet
		if cred == laptopCred {
			rep = laptop
		}
		c, err := httpsync.NewClient(rep, cfg)
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		return c
	}
	nurse := record.Author{UserID: "u-achieng", Role: record.RoleNurse}
	chart, err := tablet.Register(ctx, nurse, record.Register{GivenName: "Wanjiru", Sex: "female", EstimatedBirthYear: 1988, HomeClinic: "kamuga"})
	require.NoError(t, err)
	first := client(tabletCred, sessions)
	_, err = first.SyncReport(ctx)
	require.NoError(t, err, "the tablet syncs before its revocation")
	require.NoError(t, first.Close(), "the tablet keeps its TLS session")

	code, stdout, stderr := cloud(t, "revoke", "-dir", dir, "-device", "kamuga-tablet-1")
	require.Equal(t, 0, code, "revoke: %s", stderr)
	assert.Contains(t, stdout, "chart "+chart+": changes up to #1 of this device are kept", "revoke says which of the tablet's changes are kept")
	assert.Equal(t, map[string]uint64{chart: 1}, revocationOf(t, where{Dir: dir}, tablet.ID()).Accepted,
		"the revocation accepts the change the serving cloud holds, read beside the server")

	for _, tc := range []struct{ name, sessions string }{
		{name: "a full handshake"},
		{name: "a resumed session", sessions: sessions},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := client(tabletCred, tc.sessions).SyncReport(ctx)
			require.ErrorIs(t, err, httpsync.ErrCredentialRevoked, "the revoked tablet is refused at once")
			assert.Contains(t, err.Error(), "contact the administrator")
		})
	}
	_, err = client(laptopCred, "").SyncReport(ctx)
	require.NoError(t, err, "another device of the clinic syncs on")

	code, logs := stop()
	assert.Equal(t, 0, code)
	assert.Contains(t, logs, "handshake refused: device revoked", "the cloud logs the refusal")
}

// TestRevocationReachesEveryNode: a revocation kept in the database is
// enforced by every node at the device's next connection once the node
// looks at the roster again (revocationRefresh, set to look at every
// connection here, so the test needs no wait).
func TestRevocationReachesEveryNode(t *testing.T) {
	old := revocationRefresh
	revocationRefresh = 0
	t.Cleanup(func() { revocationRefresh = old })
	conn, schema := pgtest.ConnString(t), pgtest.Schema(t)
	db := []string{"-db", conn, "-db-schema", schema, "-key-file", filepath.Join(t.TempDir(), "operator.key")}
	code, _, stderr := cloud(t, append([]string{"init"}, db...)...)
	require.Equal(t, 0, code, "init: %s", stderr)
	serve := append([]string{"serve", "-addr", "127.0.0.1:0", "-dev-cert"}, db...)
	addr1, _ := serverWith(t, serve...)
	addr2, _ := serverWith(t, serve...)
	tablet, cred := enrolledDevice(t, "kamuga-tablet-1", "kamuga", db)
	chart, err := tablet.Register(context.Background(), record.Author{UserID: "u-achieng", Role: record.RoleNurse},
		record.Register{GivenName: "Wanjiru", Sex: "female", EstimatedBirthYear: 1988, HomeClinic: "kamuga"})
	require.NoError(t, err)
	syncWith(t, tablet, cred, addr1)
	syncWith(t, tablet, cred, addr2)

	code, _, stderr = cloud(t, append([]string{"revoke", "-device", "kamuga-tablet-1"}, db...)...)
	require.Equal(t, 0, code, "revoke: %s", stderr)
	assert.Equal(t, map[string]uint64{chart: 1}, revocationOf(t, where{DB: conn, Schema: schema, KeyFile: db[5]}, tablet.ID()).Accepted,
		"the revocation accepts the change the database holds")
	for _, addr := range []string{addr1, addr2} {
		c, err := httpsync.NewClient(tablet, httpsync.ClientConfig{Credential: cred, URL: "https://" + addr, MaxAttempts: 2})
		require.NoError(t, err)
		_, err = c.SyncReport(context.Background())
		require.ErrorIs(t, err, httpsync.ErrCredentialRevoked, "node %s refuses the revoked device", addr)
		c.Close()
	}
}

// revocationOf returns the revocation of replicaID in the cloud's roster.
func revocationOf(t *testing.T, at where, replicaID string) device.Enrolment {
	t.Helper()
	ctx := context.Background()
	st, err := openState(ctx, at)
	require.NoError(t, err)
	defer st.Close()
	a, _, err := st.Authority(ctx)
	require.NoError(t, err)
	r, err := device.NewRoster(device.RosterConfig{Authorities: []device.TrustedAuthority{{Key: a.PublicKey()}}})
	require.NoError(t, err)
	_, err = st.MergeRoster(ctx, r, 0)
	require.NoError(t, err)
	for _, e := range r.Enrolments() {
		if e.Device.ReplicaID == replicaID {
			require.True(t, e.Revoked, "the device is revoked")
			return e
		}
	}
	t.Fatalf("no record of %s in the roster", replicaID)
	return device.Enrolment{}
}
