package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/store"
	"github.com/chartsync/chartsync/replica/store/postgres/pgtest"
	"github.com/chartsync/chartsync/transport/httpsync"
)

// enrolledDevice makes a device of clinic, enrols it with the cloud
// command line args (-dir or -db ...) and returns it with a credential
// that syncs it with url.
func enrolledDevice(t *testing.T, name, clinic string, at []string) (*replica.Replica, *httpsync.Credential) {
	t.Helper()
	keys, cred := enrolKeys(t, name, clinic, at)
	rep, err := replica.New(context.Background(), store.NewMem(), replica.Config{Signer: keys})
	require.NoError(t, err)
	t.Cleanup(func() { rep.Close() })
	return rep, cred
}

// enrolKeys makes a device identity and enrols it with cloud enrol.
func enrolKeys(t *testing.T, name, clinic string, at []string) (*device.Identity, *httpsync.Credential) {
	t.Helper()
	keys, err := device.Generate(replica.NewID(), clinic)
	require.NoError(t, err)
	req := filepath.Join(t.TempDir(), "enrol-request.pem")
	require.NoError(t, os.WriteFile(req, keys.RequestPEM(), 0o644))
	out := filepath.Join(t.TempDir(), name+".pem")
	code, _, stderr := cloud(t, append([]string{"enrol", "-request", req, "-device", name, "-out", out}, at...)...)
	require.Equal(t, 0, code, "enrol %s: %s", name, stderr)
	cred, err := httpsync.ReadCredentialFile(out)
	require.NoError(t, err)
	cred, err = cred.WithIdentity(keys)
	require.NoError(t, err)
	return keys, cred
}

func syncWith(t *testing.T, rep *replica.Replica, cred *httpsync.Credential, addr string) httpsync.Report {
	t.Helper()
	c, err := httpsync.NewClient(rep, httpsync.ClientConfig{Credential: cred, URL: "https://" + addr})
	require.NoError(t, err)
	defer c.Close()
	r, err := c.SyncReport(context.Background())
	require.NoError(t, err, "sync with %s", addr)
	return r
}

// TestTwoNodesOnOneDatabase starts two cloud nodes on one PostgreSQL
// database: a device enrolled once syncs with either, each node serves
// what the other took in, and the access log holds both nodes' entries in
// one chain.
func TestTwoNodesOnOneDatabase(t *testing.T) {
	ctx := context.Background()
	conn, schema := pgtest.ConnString(t), pgtest.Schema(t)
	keyFile := filepath.Join(t.TempDir(), "operator.key")
	db := []string{"-db", conn, "-db-schema", schema, "-key-file", keyFile}

	code, stdout, stderr := cloud(t, append([]string{"init"}, db...)...)
	require.Equal(t, 0, code, "init: %s", stderr)
	assert.Contains(t, stdout, "Made the operator key")
	assert.Contains(t, stdout, "The database is ready")

	addr1, stop1 := serverWith(t, append([]string{"serve", "-addr", "127.0.0.1:0", "-dev-cert"}, db...)...)
	addr2, stop2 := serverWith(t, append([]string{"serve", "-addr", "127.0.0.1:0", "-dev-cert"}, db...)...)

	tablet, tabletCred := enrolledDevice(t, "kamuga-tablet-1", "kamuga", append(db, "-url", "https://"+addr1))
	assert.Equal(t, "https://"+addr1, tabletCred.CloudURL)
	nurse := record.Author{UserID: "u-achieng", Role: record.RoleNurse}
	id, err := tablet.Register(ctx, nurse, record.Register{GivenName: "Wanjiru", Sex: "female", EstimatedBirthYear: 1988, HomeClinic: "kamuga"})
	require.NoError(t, err)
	r := syncWith(t, tablet, tabletCred, addr1)
	assert.Positive(t, r.ChangesSent, "the registration goes up to node 1")

	_, err = tablet.Edit(ctx, id, nurse, record.AddAllergy{Substance: "Penicillin", Severity: "severe", Reaction: "rash"})
	require.NoError(t, err)
	r = syncWith(t, tablet, tabletCred, addr2)
	assert.Positive(t, r.ChangesSent, "the allergy goes up to node 2, with the same credential")

	// A second device, enrolled after both nodes started, syncs with
	// node 1 and receives what node 2 took in.
	laptop, laptopCred := enrolledDevice(t, "kamuga-laptop", "kamuga", db)
	syncWith(t, laptop, laptopCred, addr1)
	_, err = laptop.Edit(ctx, id, nurse, record.AddAllergy{Substance: "Sulfa", Severity: "mild", Reaction: "itch"})
	require.NoError(t, err, "the laptop holds the chart")
	r = syncWith(t, laptop, laptopCred, addr2)
	assert.Positive(t, r.ChangesSent)
	syncWith(t, tablet, tabletCred, addr1)
	syncWith(t, laptop, laptopCred, addr1)

	th, err := tablet.Heads(ctx, id)
	require.NoError(t, err)
	lh, err := laptop.Heads(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, th, lh, "both devices converge")
	tv, err := tablet.Chart(ctx, id)
	require.NoError(t, err)
	lv, err := laptop.Chart(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, tv, lv, "and show the same chart")
	assert.Len(t, tv.Allergies, 2, "both allergies, each written through another node")

	code1, logs1 := stop1()
	code2, logs2 := stop2()
	assert.Equal(t, 0, code1)
	assert.Equal(t, 0, code2)
	assert.Contains(t, logs1, "msg=sync ", "node 1 served syncs")
	assert.Contains(t, logs2, "msg=sync ", "node 2 served syncs")

	// The access log: one verified chain holding the writes taken in by
	// each node.
	code, stdout, stderr = cloud(t, append([]string{"audit", "-chart", id}, db...)...)
	require.Equal(t, 0, code, "audit: %s", stderr)
	assert.Contains(t, stderr, "chain verified")
	writes := 0
	for line := range strings.Lines(stdout) {
		if strings.Contains(line, `"action":"write"`) {
			writes++
		}
	}
	assert.Equal(t, 3, writes, "the registration (node 1), the tablet's allergy (node 2) and the laptop's (node 2)")
	assert.Contains(t, stdout, tablet.ID())
	assert.Contains(t, stdout, laptop.ID())

	code, stdout, _ = cloud(t, append([]string{"devices"}, db...)...)
	assert.Equal(t, 0, code)
	assert.Contains(t, stdout, "kamuga-tablet-1")
	assert.Contains(t, stdout, "kamuga-laptop")

	// The wrong operator key opens nothing.
	wrong := filepath.Join(t.TempDir(), "wrong.key")
	_, text := newOperatorKey()
	require.NoError(t, os.WriteFile(wrong, []byte(text), 0o600))
	code, _, stderr = cloud(t, "serve", "-addr", "127.0.0.1:0", "-dev-cert", "-db", conn, "-db-schema", schema, "-key-file", wrong)
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "operator key does not open", "a node with the wrong key says so")
}

// TestRevoke revokes an enrolled device: the list shows it, the roster
// refuses its key, and a second revocation finds nothing to revoke.
func TestRevoke(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cloud-data")
	at := []string{"-dir", dir}
	tablet, _ := enrolledDevice(t, "kamuga-tablet-1", "kamuga", at)
	code, stdout, stderr := cloud(t, "revoke", "-dir", dir, "-device", "kamuga-tablet-1")
	require.Equal(t, 0, code, "revoke: %s", stderr)
	assert.Contains(t, stdout, "Revoked device kamuga-tablet-1")
	code, stdout, _ = cloud(t, "devices", "-dir", dir)
	require.Equal(t, 0, code)
	assert.Contains(t, stdout, "(revoked ", "the list marks the device revoked")

	st, err := openFileState(dir)
	require.NoError(t, err)
	a, _, err := st.Authority(context.Background())
	require.NoError(t, err)
	roster, err := device.NewRoster(rosterConfig(a))
	require.NoError(t, err)
	_, err = st.MergeRoster(context.Background(), roster, 0)
	require.NoError(t, err)
	_, err = roster.Lookup(tablet.ID())
	assert.ErrorIs(t, err, device.ErrRevoked, "the roster holds the revocation")

	code, _, stderr = cloud(t, "revoke", "-dir", dir, "-device", tablet.ID())
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "no device")
}
