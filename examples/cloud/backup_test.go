package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/store/postgres"
	"github.com/chartsync/chartsync/replica/store/postgres/pgtest"
	"github.com/chartsync/chartsync/transport/httpsync"
)

// pgTool returns the path of a PostgreSQL client program (pg_dump,
// pg_restore) from $CHARTSYNC_POSTGRES_BIN (.ci/postgres sets it) or the
// newest /usr/lib/postgresql/*/bin (Debian's postgresql package), or
// skips t saying so.
func pgTool(t *testing.T, name string) string {
	t.Helper()
	dirs := []string{os.Getenv("CHARTSYNC_POSTGRES_BIN")}
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(found, func(a, b string) int { return versionOf(b) - versionOf(a) })
	dirs = append(dirs, found...)
	for _, d := range dirs {
		if d == "" {
			continue
		}
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	t.Skipf("no %s: install Debian's postgresql package (apt-get install postgresql) or set CHARTSYNC_POSTGRES_BIN to its bin directory", name)
	return ""
}

// versionOf is the major version in a /usr/lib/postgresql/N/bin path, 0
// if there is none.
func versionOf(dir string) int {
	n := 0
	for _, c := range filepath.Base(filepath.Dir(dir)) {
		if c < '0' || c > '9' {
			return 0
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// runTool runs a PostgreSQL client program and fails t with its output
// if it fails.
func runTool(t *testing.T, path string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, args...).CombinedOutput()
	require.NoError(t, err, "%s %q:\n%s", filepath.Base(path), args, out)
}

// freshDatabase creates a new, empty database on the server of conn,
// dropped when t ends, and returns its connection string.
func freshDatabase(t *testing.T, conn string) string {
	t.Helper()
	var b [6]byte
	_, err := rand.Read(b[:])
	require.NoError(t, err)
	name := "restored_" + hex.EncodeToString(b[:])
	u, err := url.Parse(conn)
	require.NoError(t, err, "the connection string of %s must be a URL", pgtest.EnvVar)
	sql := func(q string) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		c, err := pgx.Connect(ctx, conn)
		require.NoError(t, err)
		defer c.Close(ctx)
		_, err = c.Exec(ctx, q)
		require.NoError(t, err, "%s (the test's database user needs CREATEDB)", q)
	}
	sql("CREATE DATABASE " + pgx.Identifier{name}.Sanitize())
	t.Cleanup(func() { sql("DROP DATABASE " + pgx.Identifier{name}.Sanitize() + " WITH (FORCE)") })
	u.Path = "/" + name
	return u.String()
}

// TestBackupAndRestore backs a database cloud up with pg_dump while it
// serves, lets the devices go on past the backup, restores the dump into
// a new database with pg_restore and starts a node on it with the same
// operator key. The devices hold edits the restored cloud lacks and sync
// positions beyond its log, and a third device grows the restored log
// past those positions before they sync. They then sync with it and
// converge with it and with each other, every edit kept, and the access
// log's chain, restored and appended to, verifies.
//
// Told nothing, the devices learn of the restore from the cloud's
// bundles: its log, in another database, has another epoch
// (replica.LogEpoch, postgres.Store.Place), so each device sends it again
// what it lost and takes its log from the start. A device may also be
// told (clinic sync -cloud-restored, replica.ResetPeer), to the same end.
func TestBackupAndRestore(t *testing.T) {
	for _, tc := range []struct {
		name  string
		reset bool
	}{
		{name: "devices told nothing"},
		{name: "devices reset their positions for the cloud", reset: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testBackupAndRestore(t, tc.reset)
		})
	}
}

func testBackupAndRestore(t *testing.T, reset bool) {
	ctx := context.Background()
	pgDump, pgRestore := pgTool(t, "pg_dump"), pgTool(t, "pg_restore")
	conn, schema := pgtest.ConnString(t), pgtest.Schema(t)
	keyFile := filepath.Join(t.TempDir(), "operator.key")
	db := []string{"-db", conn, "-db-schema", schema, "-key-file", keyFile}
	code, _, stderr := cloud(t, append([]string{"init"}, db...)...)
	require.Equal(t, 0, code, "init: %s", stderr)
	addr, stop := serverWith(t, append([]string{"serve", "-addr", "127.0.0.1:0", "-dev-cert"}, db...)...)

	tablet, tabletCred := enrolledDevice(t, "kamuga-tablet-1", "kamuga", db)
	laptop, laptopCred := enrolledDevice(t, "kamuga-laptop", "kamuga", db)
	phone, phoneCred := enrolledDevice(t, "kamuga-phone", "kamuga", db)
	nurse := record.Author{UserID: "u-achieng", Role: record.RoleNurse}
	edit := func(rep *replica.Replica, id string, op record.Op) {
		t.Helper()
		_, err := rep.Edit(ctx, id, nurse, op)
		require.NoError(t, err)
	}
	register := func(rep *replica.Replica, name string) string {
		t.Helper()
		id, err := rep.Register(ctx, nurse, record.Register{GivenName: name, Sex: "female", EstimatedBirthYear: 1988, HomeClinic: "kamuga"})
		require.NoError(t, err)
		return id
	}
	allergy := func(s string) record.Op {
		return record.AddAllergy{Substance: s, Severity: "mild", Reaction: "rash"}
	}
	wanjiru := register(tablet, "Wanjiru")
	edit(tablet, wanjiru, allergy("Penicillin"))
	syncWith(t, tablet, tabletCred, addr)
	syncWith(t, laptop, laptopCred, addr)
	syncWith(t, phone, phoneCred, addr)

	// The backup, taken while the node serves.
	dump := filepath.Join(t.TempDir(), "cloud.dump")
	runTool(t, pgDump, "--format=custom", "--schema="+schema, "--file="+dump, "--dbname="+conn)

	// After the backup: the tablet and the laptop edit and sync, so the
	// cloud is ahead of the dump and their positions are beyond its log.
	otieno := register(tablet, "Otieno")
	edit(tablet, wanjiru, allergy("Sulfa"))
	syncWith(t, tablet, tabletCred, addr)
	edit(laptop, wanjiru, allergy("Aspirin"))
	syncWith(t, laptop, laptopCred, addr)
	syncWith(t, tablet, tabletCred, addr)
	code, _ = stop()
	require.Equal(t, 0, code)

	// The cloud is lost; its dump is restored into a new database, and a
	// node starts on it with the same operator key.
	restored := freshDatabase(t, conn)
	runTool(t, pgRestore, "--exit-on-error", "--no-owner", "--dbname="+restored, dump)
	rdb := []string{"-db", restored, "-db-schema", schema, "-key-file", keyFile}
	addr, stop = serverWith(t, append([]string{"serve", "-addr", "127.0.0.1:0", "-dev-cert"}, rdb...)...)
	devices := []struct {
		rep  *replica.Replica
		cred *httpsync.Credential
	}{{tablet, tabletCred}, {laptop, laptopCred}, {phone, phoneCred}}
	if reset {
		for _, d := range devices {
			require.NoError(t, d.rep.ResetPeer(ctx, d.cred.CloudReplica))
		}
	}

	// The phone registers patients and syncs first: the restored cloud's
	// log grows past the positions the tablet and the laptop reached.
	// Then each device edits on and syncs a few times (bounded).
	var phones []string
	for i := range 8 {
		phones = append(phones, register(phone, fmt.Sprintf("Akinyi %d", i)))
	}
	syncWith(t, phone, phoneCred, addr)
	edit(tablet, otieno, allergy("Codeine"))
	edit(laptop, wanjiru, allergy("Latex"))
	for range 3 {
		for _, d := range devices {
			syncWith(t, d.rep, d.cred, addr)
		}
	}

	st, err := postgres.Open(ctx, restored, postgres.Config{Schema: schema})
	require.NoError(t, err)
	defer st.Close()
	for _, id := range append([]string{wanjiru, otieno}, phones...) {
		c, err := st.Chart(ctx, id)
		if !assert.NoError(t, err, "the restored cloud holds chart %s", id) {
			continue
		}
		for _, d := range devices {
			h, err := d.rep.Heads(ctx, id)
			if assert.NoError(t, err, "%s holds chart %s", d.cred.Device.Name, id) {
				assert.Equal(t, c.Heads, h, "%s converges with the restored cloud on chart %s", d.cred.Device.Name, id)
			}
		}
	}
	for _, d := range devices {
		v, err := d.rep.Chart(ctx, wanjiru)
		require.NoError(t, err)
		var got []string
		for _, a := range v.Allergies {
			got = append(got, a.Substance)
		}
		assert.ElementsMatch(t, []string{"Penicillin", "Sulfa", "Aspirin", "Latex"}, got, "%s keeps every allergy, from before, across and after the backup", d.cred.Device.Name)
		v, err = d.rep.Chart(ctx, otieno)
		require.NoError(t, err)
		require.Len(t, v.Allergies, 1)
		assert.Equal(t, "Codeine", v.Allergies[0].Substance)
		n, err := d.rep.Pending(ctx, d.cred.CloudReplica)
		require.NoError(t, err)
		assert.Zero(t, n, "%s has nothing left to send the restored cloud", d.cred.Device.Name)
	}

	code, _ = stop()
	require.Equal(t, 0, code)
	code, stdout, stderr := cloud(t, append([]string{"audit", "-chart", otieno}, rdb...)...)
	require.Equal(t, 0, code, "audit: %s", stderr)
	assert.Contains(t, stderr, "chain verified", "the restored access log's chain, appended to since, verifies")
	assert.Contains(t, stdout, `"action":"write"`, "it holds the restored cloud's writes")
}
