package main

import (
	"context"
	"encoding/hex"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/store"
	"github.com/chartsync/chartsync/replica/store/postgres/pgtest"
)

// TestRevokeAuthorityCommand: cloud revoke -authority signs the cloud's
// revocation of a hub's key, named by its key file or its public key,
// and keeps it in the roster (and again, named by the fingerprint of
// the key it revoked); the serving cloud hands it to every device
// with its next sync, whose roster then refuses what the hub signs from
// then on. The cloud's own key, and a fingerprint of no key the cloud
// knows, are refused.
func TestRevokeAuthorityCommand(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "cloud-data")
	at := []string{"-dir", dir}
	keys, cred := enrolKeys(t, "kamuga-tablet-1", "kamuga", at)
	addr, stop := server(t, dir)
	t.Cleanup(func() { stop() })

	hub, err := device.NewAuthority()
	require.NoError(t, err)
	hubFile := filepath.Join(t.TempDir(), "hub.authority")
	require.NoError(t, hub.Save(hubFile))

	code, _, stderr := cloud(t, "revoke", "-dir", dir, "-authority", "0000-0000-0000-0000")
	assert.NotEqual(t, 0, code)
	assert.Contains(t, stderr, "give the hub's key file", "a fingerprint of no key the cloud knows is refused")
	code, _, stderr = cloud(t, "revoke", "-dir", dir, "-authority", hubFile, "-device", "kamuga-tablet-1")
	assert.NotEqual(t, 0, code, "-device and -authority together: %s", stderr)

	st, err := openState(ctx, where{Dir: dir})
	require.NoError(t, err)
	own, _, err := st.Authority(ctx)
	require.NoError(t, err)
	require.NoError(t, st.Close())
	code, _, stderr = cloud(t, "revoke", "-dir", dir, "-authority", hex.EncodeToString(own.PublicKey()))
	assert.NotEqual(t, 0, code)
	assert.Contains(t, stderr, "cannot be revoked", "the cloud's own key is not revoked")

	for _, arg := range []string{hubFile, hex.EncodeToString(hub.PublicKey()), device.Fingerprint(hub.PublicKey())} {
		code, stdout, stderr := cloud(t, "revoke", "-dir", dir, "-authority", arg)
		require.Equal(t, 0, code, "revoke -authority %s: %s", arg, stderr)
		assert.Contains(t, stdout, "Revoked the enrolment authority "+device.Fingerprint(hub.PublicKey()))
	}
	revs := authorityRevocationsOf(t, where{Dir: dir})
	require.Len(t, revs, 1, "the roster keeps the revocation in force")
	assert.Equal(t, []byte(hub.PublicKey()), []byte(revs[0].Revoked))

	// A device syncing over HTTPS learns it with the cloud's bundle.
	roster, err := cred.NewRoster()
	require.NoError(t, err)
	rep, err := replica.New(ctx, store.NewMem(), replica.Config{Signer: keys, Keys: roster})
	require.NoError(t, err)
	t.Cleanup(func() { rep.Close() })
	syncWith(t, rep, cred, addr)
	require.Len(t, roster.AuthorityRevocations(), 1, "the device learnt the revocation with its sync")
	clinic, err := device.NewRoster(device.RosterConfig{Authorities: []device.TrustedAuthority{{Key: own.PublicKey()}, {Key: hub.PublicKey(), Clinics: []string{"kamuga"}}}})
	require.NoError(t, err)
	_, err = clinic.Merge(roster.Encode())
	require.NoError(t, err)
	rogue, err := device.Generate(replica.NewID(), "kamuga")
	require.NoError(t, err)
	rec, err := hub.Enrol(rogue.Public(), revs[0].Issued.Add(60e9), 24*60*60e9)
	require.NoError(t, err)
	_, err = clinic.Add(rec)
	require.ErrorIs(t, err, device.ErrRevokedAuthority, "a roster that trusts the hub, given the device's roster, refuses what the stolen key signs")
}

// authorityRevocationsOf returns the authority revocations in the
// cloud's roster.
func authorityRevocationsOf(t *testing.T, at where) []device.AuthorityRevocation {
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
	return r.AuthorityRevocations()
}

// TestRevokeAuthorityInTheDatabase: with -db, the revocation of a hub's
// key is kept in the database's roster, where every node reads it.
func TestRevokeAuthorityInTheDatabase(t *testing.T) {
	conn, schema := pgtest.ConnString(t), pgtest.Schema(t)
	keyFile := filepath.Join(t.TempDir(), "operator.key")
	db := []string{"-db", conn, "-db-schema", schema, "-key-file", keyFile}
	code, _, stderr := cloud(t, append([]string{"init"}, db...)...)
	require.Equal(t, 0, code, "init: %s", stderr)
	hub, err := device.NewAuthority()
	require.NoError(t, err)
	code, stdout, stderr := cloud(t, append([]string{"revoke", "-authority", hex.EncodeToString(hub.PublicKey())}, db...)...)
	require.Equal(t, 0, code, "revoke -authority: %s", stderr)
	assert.Contains(t, stdout, "Revoked the enrolment authority "+device.Fingerprint(hub.PublicKey()))
	revs := authorityRevocationsOf(t, where{DB: conn, Schema: schema, KeyFile: keyFile})
	require.Len(t, revs, 1)
	assert.Equal(t, []byte(hub.PublicKey()), []byte(revs[0].Revoked))
}
