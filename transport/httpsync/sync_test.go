package httpsync_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/transport/httpsync"
	"github.com/chartsync/chartsync/transport/transporttest"
)

func TestSyncOverTLS(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		name := "HTTP/1.1"
		if h2 {
			name = "HTTP/2"
		}
		t.Run(name, func(t *testing.T) {
			c := newCloud(t, cloudOptions{http2: h2})
			a := c.newDevice(t, "kamuga", "kamuga-tablet-1", fastRetries())
			b := c.newDevice(t, "kamuga", "kamuga-laptop-2", fastRetries())

			wanjiru := registerAt(t, a.rep, "Wanjiru", "Mwangi", "kamuga")
			edit(t, a.rep, wanjiru, amoxicillin(500))
			rep := a.sync(t)
			assert.Equal(t, 1, rep.RoundTrips, "a small sync is one round trip")
			assert.Equal(t, 2, rep.ChangesSent, "the registration and the prescription go up")
			assert.Zero(t, rep.Retries, "nothing to retry on a healthy link")

			rep = b.sync(t)
			assert.Equal(t, 2, rep.ChangesApplied, "the second device receives both changes")
			transporttest.RequireSame(t, a.rep, c.rep)
			transporttest.RequireSame(t, b.rep, c.rep)

			// Replicas that agree cost one round trip of a few bytes.
			a.sync(t) // carries a's acknowledgement of the cloud's answer
			rep = a.sync(t)
			assert.Equal(t, 1, rep.RoundTrips, "an idle sync is one round trip")
			assert.Less(t, rep.BytesSent+rep.BytesReceived, 200, "an idle sync costs a few dozen bytes each way")
			assert.Zero(t, rep.ChangesSent+rep.ChangesApplied, "an idle sync moves no change")
		})
	}
}

func TestHello(t *testing.T) {
	c := newCloud(t, cloudOptions{memory: true})
	d := c.newDevice(t, "kamuga", "kamuga-tablet-1", fastRetries())
	h, err := d.client.Hello(t.Context())
	require.NoError(t, err, "hello from an enrolled device")
	assert.Equal(t, c.rep.ID(), h.Replica, "hello names the cloud replica")
	assert.Equal(t, d.rep.ID(), h.Device.Replica, "the cloud sees the device's replica")
	assert.Equal(t, "kamuga", h.Device.Clinic, "the cloud sees the device's clinic")
	assert.Equal(t, "kamuga-tablet-1", h.Device.Name)
}

func TestSyncLearnsCloudReplica(t *testing.T) {
	c := newCloud(t, cloudOptions{memory: true})
	d := c.newDevice(t, "kamuga", "kamuga-tablet-1", fastRetries())
	cred := *d.cred
	cred.CloudReplica = "" // an older credential without the cloud's ID
	cfg := fastRetries()
	cfg.Credential = &cred
	cl, err := httpsync.NewClient(d.rep, cfg)
	require.NoError(t, err)
	assert.Empty(t, cl.CloudReplica(), "unknown before the first sync")
	registerAt(t, d.rep, "Achieng", "Odhiambo", "kamuga")
	_, err = cl.Sync(t.Context())
	require.NoError(t, err, "sync asks the cloud who it is first")
	assert.Equal(t, c.rep.ID(), cl.CloudReplica())
	transporttest.RequireSame(t, d.rep, c.rep)
}

func TestProgress(t *testing.T) {
	c := newCloud(t, cloudOptions{memory: true})
	var seen []httpsync.Progress
	cfg := fastRetries()
	cfg.Progress = func(p httpsync.Progress) { seen = append(seen, p) }
	d := c.newDevice(t, "kamuga", "kamuga-tablet-1", cfg)
	for i := range 40 {
		id := registerAt(t, d.rep, "Patient", "Otieno", "kamuga")
		_, err := d.rep.Edit(context.Background(), id, clinician, record.AddEncounter{Complaint: "fever", Note: fmt.Sprintf("visit %d: ", i) + strings.Repeat("patient observed, vitals stable. ", 60)})
		require.NoError(t, err)
	}
	rep := d.sync(t)
	require.NotEmpty(t, seen, "progress is reported")
	last := seen[len(seen)-1]
	assert.Equal(t, httpsync.PhaseDone, last.Phase, "the last report says the sync is done")
	assert.Equal(t, rep.RoundTrips, last.RoundTrips)
	assert.EqualValues(t, rep.BytesSent, last.Sent, "progress counts every byte sent")
	assert.EqualValues(t, rep.BytesReceived, last.Received, "progress counts every byte received")
	var sending bool
	for i, p := range seen {
		if p.Phase == httpsync.PhaseSending && p.Done > 0 {
			sending = true
			assert.LessOrEqual(t, p.Done, p.Total, "report %d: no more bytes sent than the bundle holds", i)
		}
		if i > 0 {
			assert.GreaterOrEqual(t, p.Sent, seen[i-1].Sent, "report %d: bytes sent never go down", i)
		}
	}
	assert.True(t, sending, "upload progress is reported with the bundle's size")
}
