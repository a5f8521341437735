package main

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/store"
	"github.com/chartsync/chartsync/replica/store/postgres/pgtest"
	"github.com/chartsync/chartsync/transport/httpsync"
)

// checkingDevice is a device replica that checks every change's
// signature, author and scope against the roster its credential carries,
// as the clinic app's does.
func checkingDevice(t *testing.T, name, clinic string, db []string) (*replica.Replica, *httpsync.Credential) {
	t.Helper()
	id, cred := enrolKeys(t, name, clinic, db)
	keys, err := cred.NewRoster()
	require.NoError(t, err)
	rep, err := replica.New(context.Background(), store.NewMem(), replica.Config{Signer: id, Keys: keys})
	require.NoError(t, err)
	t.Cleanup(func() { rep.Close() })
	return rep, cred
}

// TestCloudReferralReachesDevices: a clinician at the district office
// refers a chart with cloud refer while a node serves. The referral is the
// cloud's own change, signed by its identity: the devices of both clinics,
// checking every signature, author and scope, take it, and the referred
// clinic's device receives the chart. Without -db the command says why
// it cannot sign.
func TestCloudReferralReachesDevices(t *testing.T) {
	ctx := context.Background()
	conn, schema := pgtest.ConnString(t), pgtest.Schema(t)
	db := []string{"-db", conn, "-db-schema", schema, "-key-file", t.TempDir() + "/operator.key"}
	code, _, stderr := cloud(t, append([]string{"init"}, db...)...)
	require.Equal(t, 0, code, "init: %s", stderr)
	addr, stop := serverWith(t, append([]string{"serve", "-addr", "127.0.0.1:0", "-dev-cert"}, db...)...)
	defer stop()

	tablet, tabletCred := checkingDevice(t, "kamuga-tablet-1", "kamuga", db)
	lwanda, lwandaCred := checkingDevice(t, "lwanda-tablet-1", "lwanda", db)
	nurse := record.Author{UserID: "u-achieng", Role: record.RoleNurse}
	id, err := tablet.Register(ctx, nurse, record.Register{GivenName: "Wanjiru", Sex: "female", EstimatedBirthYear: 1988, HomeClinic: "kamuga"})
	require.NoError(t, err)
	syncWith(t, tablet, tabletCred, addr)
	syncWith(t, lwanda, lwandaCred, addr)
	_, err = lwanda.Chart(ctx, id)
	require.ErrorIs(t, err, replica.ErrNotFound, "Lwanda does not hold Kamuga's chart before the referral")

	code, stdout, stderr := cloud(t, append([]string{"refer", "-chart", id, "-to", "lwanda", "-reason", "suspected TB: sputum microscopy", "-user", "u-district", "-name", "Dr Otieno"}, db...)...)
	require.Equal(t, 0, code, "refer: %s", stderr)
	assert.Contains(t, stdout, "signed by the cloud's identity")

	syncWith(t, lwanda, lwandaCred, addr)
	syncWith(t, tablet, tabletCred, addr)
	for _, d := range []*replica.Replica{tablet, lwanda} {
		v, err := d.Chart(ctx, id)
		require.NoError(t, err, "device %s holds the chart", d.ID())
		require.Len(t, v.Referrals, 1)
		assert.Equal(t, "lwanda", v.Referrals[0].Clinic)
		q, err := d.Quarantined(ctx)
		require.NoError(t, err)
		assert.Empty(t, q, "device %s refused nothing", d.ID())
	}

	code, _, stderr = cloud(t, "refer", "-dir", t.TempDir(), "-chart", id, "-to", "lwanda", "-user", "u-district", "-name", "Dr Otieno")
	assert.NotEqual(t, 0, code)
	assert.Contains(t, stderr, "refer needs -db")
}
