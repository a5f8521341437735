package postgres_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/store"
	"github.com/chartsync/chartsync/replica/store/postgres"
)

// TestReplicaOnPostgres runs a cloud replica on the PostgreSQL store
// between two clinics that edit one chart offline: both clinics and the
// cloud converge, and the cloud, restarted on the same database, holds the
// same chart and knows its peers' positions.
func TestReplicaOnPostgres(t *testing.T) {
	ctx := context.Background()
	o := newOpener(t)
	openCloud := func() *replica.Replica {
		r, err := replica.New(ctx, o.open(t), replica.Config{})
		require.NoError(t, err)
		t.Cleanup(func() { _ = r.Close() })
		return r
	}
	cloud := openCloud()
	clinic := func() *replica.Replica {
		r, err := replica.New(ctx, store.NewMem(), replica.Config{})
		require.NoError(t, err)
		t.Cleanup(func() { _ = r.Close() })
		return r
	}
	kamuga, lwanda := clinic(), clinic()
	nurse := record.Author{UserID: "u-achieng", Name: "Nurse Achieng", Role: record.RoleNurse, Device: "kamuga-tablet"}
	doctor := record.Author{UserID: "u-mutua", Name: "Dr Mutua", Role: record.RoleClinician, Device: "lwanda-laptop"}

	id, err := kamuga.Register(ctx, nurse, record.Register{GivenName: "Wanjiru", FamilyName: "Mwangi", Sex: "female", EstimatedBirthYear: 1988, Village: "Kamuga", HomeClinic: "kamuga"})
	require.NoError(t, err)
	rx, err := kamuga.Edit(ctx, id, nurse, record.Prescribe{Drug: "Amoxicillin", Dose: 500, DoseUnit: "mg", Route: "oral", Frequency: "TDS"})
	require.NoError(t, err)
	sync := func(a, b *replica.Replica) {
		t.Helper()
		_, err := replica.SyncPair(ctx, a, b)
		require.NoError(t, err)
	}
	sync(kamuga, cloud)
	sync(lwanda, cloud)
	_, err = kamuga.Edit(ctx, id, nurse, record.ReviseDose{PrescriptionID: rx.EntryID, Dose: 250, Reason: "weight 38 kg"})
	require.NoError(t, err)
	_, err = lwanda.Edit(ctx, id, doctor, record.AddAllergy{Substance: "Penicillin", Severity: "severe"})
	require.NoError(t, err)
	sync(kamuga, cloud)
	sync(lwanda, cloud)
	sync(kamuga, cloud)

	want, err := cloud.Chart(ctx, id)
	require.NoError(t, err)
	require.Len(t, want.Allergies, 1, "the cloud has Lwanda's allergy")
	for name, r := range map[string]*replica.Replica{"kamuga": kamuga, "lwanda": lwanda} {
		got, err := r.Chart(ctx, id)
		require.NoError(t, err)
		assert.Equal(t, want, got, "%s shows the cloud's chart", name)
	}
	found, err := cloud.Find(ctx, "mwangi", 0)
	require.NoError(t, err)
	require.Len(t, found, 1, "the cloud's index finds the patient")

	require.NoError(t, cloud.Close())
	again := openCloud()
	got, err := again.Chart(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, want, got, "a restarted cloud holds the same chart")
	st, err := postgres.Open(ctx, o.conn, postgres.Config{Schema: o.schema})
	require.NoError(t, err)
	defer st.Close()
	p, err := st.Peer(ctx, kamuga.ID())
	require.NoError(t, err)
	assert.NotZero(t, p.Acked, "the cloud knows what Kamuga has acknowledged")
}
