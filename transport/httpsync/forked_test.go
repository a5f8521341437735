package httpsync_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/transport/httpsync"
)

// TestCopiedDeviceToldOverHTTPS: a tablet's data folder is copied after
// a sync with the cloud; the tablet goes on (an allergy on Wanjiru's
// chart, Amina registered, synced) and the copy is put back in its place
// with a file copy, so it opens as the same replica with an older log.
// Whatever the copy then does, its next sync over HTTPS fails with an
// error matching replica.ErrForkedReplica, whose *ForkedError names the
// tablet itself; the copy is marked forked, and refuses to edit and to
// sync from then on, after a restart too. (a) The copy edited Wanjiru's
// chart, reusing a sequence number of its original's: the cloud refuses
// its bundle with 409 and the code "forked", naming the tablet, and
// takes nothing of it. (b, c) The copy only registered new charts: the
// cloud's answer shows the copy's log is behind what the cloud holds
// from it.
func TestCopiedDeviceToldOverHTTPS(t *testing.T) {
	for _, tc := range []struct {
		name      string
		act       func(t *testing.T, r *replica.Replica, wanjiru string)
		reusesSeq bool
	}{
		{name: "a: an existing chart edited", reusesSeq: true, act: func(t *testing.T, r *replica.Replica, wanjiru string) {
			edit(t, r, wanjiru, allergy(9))
		}},
		{name: "a: the clinic's user roster edited", reusesSeq: true, act: func(t *testing.T, r *replica.Replica, _ string) {
			_, err := r.UpdateUser(context.Background(), "kamuga", admin, record.UserUpdate{UserID: "u-new", Name: "New nurse", Role: record.RoleNurse, PasswordHash: passwordHash(9)})
			require.NoError(t, err)
		}},
		{name: "b: a new chart", act: func(t *testing.T, r *replica.Replica, _ string) {
			registerAt(t, r, "Baraka", "Otieno", "kamuga")
		}},
		{name: "c: the log grown past the acknowledgement", act: func(t *testing.T, r *replica.Replica, _ string) {
			for _, given := range []string{"Baraka", "Chebet", "Daudi"} {
				registerAt(t, r, given, "Otieno", "kamuga")
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			c := newCloud(t, cloudOptions{})
			tab := newFolderDevice(t, c, "kamuga", "tablet")
			r := tab.open(t)
			wanjiru := registerAt(t, r, "Wanjiru", "Mwangi", "kamuga")
			edit(t, r, wanjiru, allergy(1))
			_, err := r.UpdateUser(ctx, "kamuga", admin, record.UserUpdate{UserID: admin.UserID, Name: admin.Name, Role: admin.Role, PasswordHash: passwordHash(0)})
			require.NoError(t, err)
			tab.sync(t, r)
			copied := filepath.Join(tab.dir, "copy.db")
			require.NoError(t, replica.Backup(ctx, tab.path, copied))
			edit(t, r, wanjiru, allergy(2))
			_, err = r.UpdateUser(ctx, "kamuga", admin, record.UserUpdate{UserID: "u-amina", Name: "Amina", Role: record.RoleClinician, PasswordHash: passwordHash(1)})
			require.NoError(t, err)
			registerAt(t, r, "Amina", "Hassan", "kamuga")
			tab.sync(t, r)
			require.NoError(t, r.Close())
			tab.putBack(t, copied)

			cp := tab.open(t)
			require.Equal(t, tab.id.ReplicaID(), cp.ID(), "a copied folder keeps its replica ID")
			tc.act(t, cp, wanjiru)
			before := snapshotOf(t, c.rep)
			_, err = tab.client(t, cp).SyncReport(ctx)
			require.ErrorIs(t, err, replica.ErrForkedReplica, "the copy's sync fails as forked")
			var fe *replica.ForkedError
			require.ErrorAs(t, err, &fe)
			assert.Equal(t, cp.ID(), fe.Replica, "the error names the tablet")
			assert.True(t, fe.Self, "the error says the tablet is the copy")
			if tc.reusesSeq {
				var se *httpsync.StatusError
				require.ErrorAs(t, err, &se, "the cloud refused the bundle")
				assert.Equal(t, http.StatusConflict, se.Status)
				assert.Equal(t, httpsync.CodeForked, se.Code)
				assert.Equal(t, cp.ID(), se.Forked, "the refusal names the forked replica")
				assert.Equal(t, before, snapshotOf(t, c.rep), "the cloud takes nothing of the copy's bundle")
			}
			require.ErrorIs(t, cp.Forked(), replica.ErrForkedReplica, "the copy is marked forked")

			for restart := range 2 {
				if restart == 1 {
					require.NoError(t, cp.Close())
					cp = tab.open(t)
					require.ErrorIs(t, cp.Forked(), replica.ErrForkedReplica, "a restart keeps it forked")
				}
				_, err = cp.Edit(ctx, wanjiru, clinician, allergy(10))
				require.ErrorIs(t, err, replica.ErrForkedReplica, "the copy no longer edits as its original")
				_, err = tab.client(t, cp).SyncReport(ctx)
				require.ErrorIs(t, err, replica.ErrForkedReplica, "the copy no longer syncs as its original")
			}
		})
	}
}

var admin = record.Author{UserID: "u-femi", Name: "Femi", Role: record.RoleAdministrator, Device: "tablet"}

func passwordHash(n int) string {
	return fmt.Sprintf("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ%d$aGFzaGhhc2g%d", n, n)
}

// folderDevice is an enrolled device whose replica lives in a data
// folder on disk, which a test can copy and put back.
type folderDevice struct {
	cloud     *cloud
	id        *device.Identity
	cred      *httpsync.Credential
	cfg       replica.Config
	dir, path string
}

func newFolderDevice(t *testing.T, c *cloud, clinic, name string) *folderDevice {
	t.Helper()
	id, err := device.Generate(replica.NewID(), clinic)
	require.NoError(t, err)
	cred := c.enrol(t, id, name)
	roster, err := cred.NewRoster()
	require.NoError(t, err)
	dir := t.TempDir()
	return &folderDevice{cloud: c, id: id, cred: cred, dir: dir, path: filepath.Join(dir, "tablet", "replica.db"),
		cfg: replica.Config{Signer: id, Keys: roster, CheckAuthors: true, Unscoped: []string{"cloud"}}}
}

// open opens the device's replica from its folder.
func (d *folderDevice) open(t *testing.T) *replica.Replica {
	t.Helper()
	r, err := replica.Open(context.Background(), d.path, d.cfg)
	require.NoError(t, err, "open the device's replica")
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// client is a new client for r, as a restarted app makes.
func (d *folderDevice) client(t *testing.T, r *replica.Replica) *httpsync.Client {
	t.Helper()
	cfg := fastRetries()
	cfg.Credential, cfg.Logger = d.cred, testLogger(t)
	cl, err := httpsync.NewClient(r, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = cl.Close() })
	return cl
}

func (d *folderDevice) sync(t *testing.T, r *replica.Replica) {
	t.Helper()
	_, err := d.client(t, r).SyncReport(context.Background())
	require.NoError(t, err, "the device syncs with the cloud")
}

// putBack puts the database copied at from back in the device's folder
// with a file copy, as a person restoring a copied folder would.
func (d *folderDevice) putBack(t *testing.T, from string) {
	t.Helper()
	for _, suffix := range []string{"", "-wal", "-shm"} {
		_ = os.Remove(d.path + suffix)
	}
	in, err := os.Open(from)
	require.NoError(t, err)
	defer in.Close()
	out, err := os.Create(d.path)
	require.NoError(t, err)
	_, err = io.Copy(out, in)
	require.NoError(t, err)
	require.NoError(t, out.Close())
}
