package replica_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
	"github.com/stretchr/testify/require"
)

func TestSmoke(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a, err := replica.Open(ctx, filepath.Join(dir, "a.db"), replica.Config{})
	require.NoError(t, err)
	b, err := replica.Open(ctx, filepath.Join(dir, "b.db"), replica.Config{})
	require.NoError(t, err)
	nurse := record.Author{UserID: "n1", Role: record.RoleNurse}
	id, err := a.Register(ctx, nurse, record.Register{GivenName: "A", Sex: "female", EstimatedBirthYear: 1990, HomeClinic: "c1"})
	require.NoError(t, err)
	_, err = a.Edit(ctx, id, nurse, record.AddAllergy{Substance: "penicillin", Severity: "severe"})
	require.NoError(t, err)
	st, err := replica.SyncPair(ctx, a, b)
	require.NoError(t, err)
	t.Logf("%+v", st)
	va, err := a.Chart(ctx, id)
	require.NoError(t, err)
	vb, err := b.Chart(ctx, id)
	require.NoError(t, err)
	require.Equal(t, va, vb)
	st, err = replica.SyncPair(ctx, a, b)
	require.NoError(t, err)
	t.Logf("%+v", st)
	require.NoError(t, a.Close())
	require.NoError(t, b.Close())
	b, err = replica.Open(ctx, filepath.Join(dir, "b.db"), replica.Config{})
	require.NoError(t, err)
	vb2, err := b.Chart(ctx, id)
	require.NoError(t, err)
	require.Equal(t, va.Heads, vb2.Heads)
}
