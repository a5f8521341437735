package httpsync_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/audit"
	"github.com/chartsync/chartsync/internal/forge"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/transport/httpsync"
)

// TestAccessLog: the cloud records who wrote which chart, which device was
// sent which chart, and which bundles it refused, in an append-only log
// an auditor can export and verify.
func TestAccessLog(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "access.log")
	log, err := audit.Open(path, audit.Config{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = log.Close() })
	c := newCloud(t, cloudOptions{memory: true, config: httpsync.Config{AccessLog: log}})
	ward := c.newDevice(t, "kamuga", "kamuga-ward", fastRetries())
	desk := c.newDevice(t, "kamuga", "kamuga-desk", fastRetries())
	lab := c.newDevice(t, "kamuga", "kamuga-lab", fastRetries())

	id := registerAt(t, ward.rep, "Wanjiru", "Mwangi", "kamuga")
	edit(t, ward.rep, id, amoxicillin(500))
	ward.sync(t)
	desk.sync(t)
	desk.sync(t) // idle: records nothing

	labTech := record.Author{UserID: "u-chege", Name: "Chege", Role: record.RoleLabTechnician}
	forged, err := forge.Prescription(lab.rep.ID(), nurse, labTech, "kamuga", time.Now().Add(-time.Hour))
	require.NoError(t, err)
	require.NoError(t, lab.rep.Import(ctx, []*record.Chart{forged}))
	_, err = lab.client.Sync(ctx)
	require.ErrorIs(t, err, httpsync.ErrForbidden)

	var out bytes.Buffer
	n, err := log.Export(ctx, &out, audit.Filter{Chart: id}, audit.JSONLines)
	require.NoError(t, err)
	var got []audit.Entry
	dec := json.NewDecoder(&out)
	for dec.More() {
		var e audit.Entry
		require.NoError(t, dec.Decode(&e))
		got = append(got, e)
	}
	require.Len(t, got, n)
	type seen struct {
		action audit.Action
		device string
		user   string
		count  int
	}
	var have []seen
	for _, e := range got {
		have = append(have, seen{e.Action, e.Device, e.User, e.Changes})
	}
	assert.Equal(t, []seen{
		{audit.Write, ward.rep.ID(), nurse.UserID, 1},     // the registration, by the nurse
		{audit.Write, ward.rep.ID(), clinician.UserID, 1}, // the prescription, by the clinician
		{audit.Read, desk.rep.ID(), "", 2},                // the desk was sent both
	}, have, "the chart's accesses, in order")

	var refused bytes.Buffer
	n, err = log.Export(ctx, &refused, audit.Filter{Device: lab.rep.ID()}, audit.CSV)
	require.NoError(t, err)
	require.Equal(t, 1, n, "the lab device's refused bundle is recorded")
	assert.Contains(t, refused.String(), "refused")
	assert.Contains(t, refused.String(), httpsync.CodeUnauthorizedChange)

	// An auditor's copy verifies; an edited one does not.
	require.NoError(t, log.Close())
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	total, err := audit.Verify(ctx, bytes.NewReader(data))
	require.NoError(t, err)
	assert.Equal(t, 4, total)
	edited := bytes.Replace(data, []byte(nurse.UserID), []byte("u-someone"), 1)
	_, err = audit.Verify(ctx, bytes.NewReader(edited))
	assert.ErrorIs(t, err, audit.ErrCorrupt)
}

// failingLog fails its first n appends, as a full disk would.
type failingLog struct {
	httpsync.AccessLog
	fail int
}

func (f *failingLog) Append(ctx context.Context, es ...audit.Entry) error {
	if f.fail > 0 {
		f.fail--
		return errors.New("disk full")
	}
	return f.AccessLog.Append(ctx, es...)
}

// TestAccessLogLosesNoWrite: when the access log cannot record a sync,
// the cloud stores nothing of it; the device's retry is recorded.
func TestAccessLogLosesNoWrite(t *testing.T) {
	ctx := context.Background()
	log, err := audit.Open(filepath.Join(t.TempDir(), "access.log"), audit.Config{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = log.Close() })
	flaky := &failingLog{AccessLog: log, fail: 1}
	c := newCloud(t, cloudOptions{memory: true, config: httpsync.Config{AccessLog: flaky}})
	ward := c.newDevice(t, "kamuga", "kamuga-ward", fastRetries())
	id := registerAt(t, ward.rep, "Wanjiru", "Mwangi", "kamuga")

	before := snapshotOf(t, c.rep)
	_, err = ward.client.PostRaw(ctx, func() []byte {
		out, err := ward.rep.MakeBundle(ctx, c.rep.ID())
		require.NoError(t, err)
		return out.Data
	}())
	require.ErrorIs(t, err, httpsync.ErrServer, "a sync the log cannot record fails")
	assert.Equal(t, before, snapshotOf(t, c.rep), "and nothing of it is stored")

	ward.sync(t)
	var out bytes.Buffer
	n, err := log.Export(ctx, &out, audit.Filter{Chart: id}, audit.JSONLines)
	require.NoError(t, err)
	assert.Equal(t, 1, n, "the retried write is recorded: %s", out.String())
	assert.Contains(t, out.String(), `"action":"write"`)
}

// TestAccessLogRecordsMerges: merging two charts is recorded in the
// cloud's access log as a merge on each of them (the chart merged away
// and the chart that absorbs it), apart from the author's other writes.
func TestAccessLogRecordsMerges(t *testing.T) {
	ctx := context.Background()
	log, err := audit.Open(filepath.Join(t.TempDir(), "access.log"), audit.Config{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = log.Close() })
	c := newCloud(t, cloudOptions{memory: true, config: httpsync.Config{AccessLog: log}})
	ward := c.newDevice(t, "kamuga", "kamuga-ward", fastRetries())

	a := registerAt(t, ward.rep, "Wanjiru", "Mwangi", "kamuga")
	b := registerAt(t, ward.rep, "Wanjiro", "Mwangi", "kamuga")
	ward.sync(t)
	require.NoError(t, ward.rep.Merge(ctx, b, a, clinician, "the same woman, registered twice"))
	ward.sync(t)

	details := map[string][]string{}
	for _, chart := range []string{a, b} {
		var out bytes.Buffer
		_, err := log.Export(ctx, &out, audit.Filter{Chart: chart}, audit.JSONLines)
		require.NoError(t, err)
		dec := json.NewDecoder(&out)
		for dec.More() {
			var e audit.Entry
			require.NoError(t, dec.Decode(&e))
			if e.Action == audit.Write && e.User == clinician.UserID {
				details[chart] = append(details[chart], e.Detail)
			}
		}
	}
	assert.Contains(t, details[b], "merge-into", "the chart merged away")
	assert.Contains(t, details[a], "absorb", "the chart that absorbs it")
}
