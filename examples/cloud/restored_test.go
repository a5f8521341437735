package main

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
)

// TestDataDirectoryRestoredInPlace: a data-directory cloud is copied
// back from a backup taken before its devices' last syncs. After cloud
// restored, the devices, told nothing, send it again what the backup
// lacks; without it, the cloud would never get those changes back (the
// devices hold positions in its log that it no longer has).
func TestDataDirectoryRestoredInPlace(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "cloud")
	addr, stop := server(t, dir)
	at := []string{"-dir", dir}
	tablet, tabletCred := enrolledDevice(t, "kamuga-tablet-1", "kamuga", at)
	laptop, laptopCred := enrolledDevice(t, "kamuga-laptop", "kamuga", at)
	nurse := record.Author{UserID: "u-achieng", Role: record.RoleNurse}
	allergy := func(rep *replica.Replica, chart, s string) {
		t.Helper()
		_, err := rep.Edit(ctx, chart, nurse, record.AddAllergy{Substance: s, Severity: "mild", Reaction: "rash"})
		require.NoError(t, err)
	}
	wanjiru, err := tablet.Register(ctx, nurse, record.Register{GivenName: "Wanjiru", Sex: "female", EstimatedBirthYear: 1988, HomeClinic: "kamuga"})
	require.NoError(t, err)
	allergy(tablet, wanjiru, "Penicillin")
	syncWith(t, tablet, tabletCred, addr)
	syncWith(t, laptop, laptopCred, addr)
	code, logs := stop()
	require.Equal(t, 0, code, logs)

	backup := filepath.Join(t.TempDir(), "backup")
	copyKeepingModes(t, dir, backup) // the backup: a copy of the stopped cloud's directory

	// After the backup, both devices edit and sync.
	addr, stop = server(t, dir)
	otieno, err := tablet.Register(ctx, nurse, record.Register{GivenName: "Otieno", Sex: "male", EstimatedBirthYear: 1979, HomeClinic: "kamuga"})
	require.NoError(t, err)
	allergy(tablet, wanjiru, "Sulfa")
	syncWith(t, tablet, tabletCred, addr)
	allergy(laptop, wanjiru, "Aspirin")
	syncWith(t, laptop, laptopCred, addr)
	code, logs = stop()
	require.Equal(t, 0, code, logs)

	// The directory is lost and the backup copied back in its place.
	require.NoError(t, os.RemoveAll(dir))
	copyKeepingModes(t, backup, dir)
	code, stdout, stderr := cloud(t, "restored", "-dir", dir)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "named anew")

	addr, stop = server(t, dir)
	for range 2 {
		syncWith(t, tablet, tabletCred, addr)
		syncWith(t, laptop, laptopCred, addr)
	}
	code, logs = stop()
	require.Equal(t, 0, code, logs)

	rep, err := replica.Open(ctx, filepath.Join(dir, fileReplica), replica.Config{})
	require.NoError(t, err)
	defer rep.Close()
	v, err := rep.Chart(ctx, wanjiru)
	require.NoError(t, err)
	var got []string
	for _, a := range v.Allergies {
		got = append(got, a.Substance)
	}
	assert.ElementsMatch(t, []string{"Penicillin", "Sulfa", "Aspirin"}, got, "the restored cloud gets back every allergy made after its backup")
	_, err = rep.Chart(ctx, otieno)
	assert.NoError(t, err, "and the chart registered after it")
	for _, d := range []*replica.Replica{tablet, laptop} {
		n, err := d.Pending(ctx, rep.ID())
		require.NoError(t, err)
		assert.Zero(t, n, "nothing is left to send the restored cloud")
	}
}

// copyKeepingModes copies the directory tree from into to, as cp -a
// would: every file keeps its mode (the cloud refuses a key file others
// may read).
func copyKeepingModes(t *testing.T, from, to string) {
	t.Helper()
	require.NoError(t, filepath.WalkDir(from, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(from, path)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		target := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(target, info.Mode().Perm())
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, info.Mode().Perm())
	}))
}
