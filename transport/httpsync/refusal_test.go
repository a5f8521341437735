package httpsync_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/transport/httpsync"
	"github.com/chartsync/chartsync/transport/transporttest"
)

// counting counts the sync requests that reach the handler.
type counting struct {
	next     http.Handler
	requests atomic.Int64
}

func (c *counting) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == httpsync.PathSync {
		c.requests.Add(1)
	}
	c.next.ServeHTTP(w, r)
}

// fileDevice is a clinic device whose replica is a SQLite file, so that a
// copy of it can be restored, as from a backup.
type fileDevice struct {
	path string
	id   *device.Identity
	cred *httpsync.Credential
	cfg  httpsync.ClientConfig
	rep  *replica.Replica
	cl   *httpsync.Client
}

func (c *cloud) newFileDevice(t *testing.T, clinic, name string, cfg httpsync.ClientConfig) *fileDevice {
	t.Helper()
	id, err := device.Generate(replica.NewID(), clinic)
	require.NoError(t, err)
	d := &fileDevice{path: filepath.Join(t.TempDir(), "device.db"), id: id, cred: c.enrol(t, id, name), cfg: cfg}
	d.open(t)
	return d
}

func (d *fileDevice) open(t *testing.T) {
	t.Helper()
	roster, err := d.cred.NewRoster()
	require.NoError(t, err)
	d.rep, err = replica.Open(context.Background(), d.path, replica.Config{Signer: d.id, Keys: roster, CheckAuthors: true, Unscoped: []string{"cloud"}})
	require.NoError(t, err, "open the device's replica")
	cfg := d.cfg
	cfg.Credential, cfg.NoSessionFile = d.cred, true
	d.cl, err = httpsync.NewClient(d.rep, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.cl.Close(); _ = d.rep.Close() })
}

func (d *fileDevice) close(t *testing.T) {
	t.Helper()
	require.NoError(t, d.cl.Close())
	require.NoError(t, d.rep.Close())
}

// copyFiles copies the replica's database files (with any journal) from
// one name to another.
func copyFiles(t *testing.T, from, to string) {
	t.Helper()
	for _, suffix := range []string{"", "-wal", "-shm"} {
		data, err := os.ReadFile(from + suffix)
		if os.IsNotExist(err) {
			_ = os.Remove(to + suffix)
			continue
		}
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(to+suffix, data, 0o600))
	}
}

// A device restored from a backup makes a change with the sequence number
// of one the cloud already took from it: two different changes of one
// actor with one sequence number, each honestly signed, to a chart or to
// the clinic's user roster. The cloud cannot take it: it answers a
// refusal (not 500, which the device would retry for ever), keeps the
// bundle for review, stores nothing of it, and the client sends it once:
// a refusal is not retried. Where the cloud names the author forked (409
// forked), the device is marked forked; otherwise it answers 400
// malformed-bundle. Either matches replica.ErrMalformedBundle.
func TestCloudRefusesReusedSequenceNumber(t *testing.T) {
	admin := record.Author{UserID: "u-femi", Name: "Femi", Role: record.RoleAdministrator, Device: "kamuga-tablet"}
	password := func(n int) string {
		return fmt.Sprintf("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ%d$aGFzaGhhc2g%d", n, n)
	}
	for _, tc := range []struct {
		name  string
		start func(t *testing.T, r *replica.Replica) // before the backup
		edit  func(t *testing.T, r *replica.Replica, n int)
	}{
		{"a chart", func(t *testing.T, r *replica.Replica) {
			registerAt(t, r, "Wanjiru", "Mwangi", "kamuga")
		}, func(t *testing.T, r *replica.Replica, n int) {
			edit(t, r, transporttest.ChartIDs(t, r)[0], allergy(n))
		}},
		{"the user roster", func(t *testing.T, r *replica.Replica) {
			_, err := r.UpdateUser(context.Background(), "kamuga", admin, record.UserUpdate{UserID: admin.UserID, Name: admin.Name, Role: admin.Role, PasswordHash: password(0)})
			require.NoError(t, err)
		}, func(t *testing.T, r *replica.Replica, n int) {
			_, err := r.UpdateUser(context.Background(), "kamuga", admin, record.UserUpdate{UserID: fmt.Sprintf("u-%d", n), Name: "Nurse", Role: record.RoleNurse, PasswordHash: password(n)})
			require.NoError(t, err)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			count := &counting{}
			c := newCloud(t, cloudOptions{wrap: func(h http.Handler) http.Handler { count.next = h; return count }})
			d := c.newFileDevice(t, "kamuga", "kamuga-tablet", fastRetries())
			tc.start(t, d.rep)
			_, err := d.cl.Sync(ctx)
			require.NoError(t, err)

			d.close(t)
			backup := d.path + ".backup"
			copyFiles(t, d.path, backup)
			d.open(t)
			tc.edit(t, d.rep, 1)
			_, err = d.cl.Sync(ctx)
			require.NoError(t, err, "the edit made after the backup reaches the cloud")

			// The device is restored from its backup and edits again.
			d.close(t)
			copyFiles(t, backup, d.path)
			d.open(t)
			tc.edit(t, d.rep, 2)
			before := snapshotOf(t, c.rep)
			sent := count.requests.Load()

			_, err = d.cl.Sync(ctx)
			require.Error(t, err, "the cloud took a change reusing a sequence number")
			var se *httpsync.StatusError
			require.ErrorAs(t, err, &se)
			switch se.Status {
			case http.StatusConflict:
				assert.Equal(t, httpsync.CodeForked, se.Code)
				assert.Equal(t, d.rep.ID(), se.Forked, "the refusal names the device forked")
				assert.ErrorIs(t, err, replica.ErrForkedReplica)
				assert.ErrorIs(t, d.rep.Forked(), replica.ErrForkedReplica, "the device knows it is forked")
			default:
				assert.Equal(t, http.StatusBadRequest, se.Status, "a change the cloud cannot take is the device's fault: %v", err)
				assert.Equal(t, httpsync.CodeMalformed, se.Code)
				assert.ErrorIs(t, err, httpsync.ErrMalformed)
			}
			assert.ErrorIs(t, err, replica.ErrMalformedBundle)
			assert.NotErrorIs(t, err, httpsync.ErrServer)
			assert.EqualValues(t, 1, count.requests.Load()-sent, "the refused bundle is sent once, not retried")
			assert.Equal(t, before, snapshotOf(t, c.rep), "nothing of the refused bundle reached the cloud")
			q, err := c.rep.Quarantined(ctx)
			require.NoError(t, err)
			require.Len(t, q, 1, "the refused bundle is kept for review")
			assert.Equal(t, d.rep.ID(), q[0].From)
			assert.EqualValues(t, 1, c.handler.Stats().Refused, "the handler counts a refusal")
			assert.Zero(t, c.handler.Stats().Failed, "and no failure of its own")
		})
	}
}

// The same refusal for a change crafted by hand: a copy of the device's
// last change with another time, so another hash and the same sequence
// number, signed by the device (409 forked where the cloud names the
// device forked, 400 malformed-bundle otherwise).
func TestCloudRefusesCraftedReusedSequenceNumber(t *testing.T) {
	ctx := context.Background()
	c := newCloud(t, cloudOptions{})
	d := c.newDevice(t, "kamuga", "kamuga-tablet", fastRetries())
	chart := registerAt(t, d.rep, "Wanjiru", "Mwangi", "kamuga")
	edit(t, d.rep, chart, amoxicillin(500))
	out, err := d.rep.MakeBundle(ctx, c.rep.ID())
	require.NoError(t, err)
	own, err := replica.DecodeBundle(out.Data)
	require.NoError(t, err)
	require.Len(t, own.Changes, 2, "the registration and the prescription")
	raw := own.Changes[1].Raw
	d.sync(t)

	info, err := crdt.ChangeOps(raw)
	require.NoError(t, err)
	info.Time = info.Time.Add(time.Second)
	twin, err := crdt.EncodeChange(info)
	require.NoError(t, err)
	parsed, err := crdt.ParseChange(twin)
	require.NoError(t, err)
	require.NotEqual(t, own.Changes[1].Raw, twin)
	b := replica.Bundle{From: d.rep.ID(), To: c.rep.ID(), Signers: own.Signers,
		Changes: []replica.BundleChange{{Chart: chart, Raw: twin, Sig: d.id.SignChange(chart, [32]byte(parsed.Hash))}}}
	data, err := b.Encode()
	require.NoError(t, err)

	before := snapshotOf(t, c.rep)
	_, err = d.client.PostRaw(ctx, data)
	var se *httpsync.StatusError
	require.ErrorAs(t, err, &se)
	if se.Status == http.StatusConflict {
		// The cloud names the device forked: the twin reuses the
		// number of a change it holds.
		assert.Equal(t, httpsync.CodeForked, se.Code)
		assert.Equal(t, d.rep.ID(), se.Forked)
	} else {
		assert.Equal(t, http.StatusBadRequest, se.Status, "%v", err)
		assert.ErrorIs(t, err, httpsync.ErrMalformed)
	}
	assert.ErrorIs(t, err, replica.ErrMalformedBundle)
	assert.Equal(t, before, snapshotOf(t, c.rep))
	q, err := c.rep.Quarantined(ctx)
	require.NoError(t, err)
	assert.Len(t, q, 1, "the refused bundle is kept for review")
}
