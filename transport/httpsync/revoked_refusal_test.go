package httpsync_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/transport/httpsync"
)

// TestRefusalForRevokedChangesTeachesTheRevocation: a device that took a
// revoked tablet's change made after the revocation (device to device,
// before it learnt of it) is refused once over HTTPS with
// replica.ErrRevokedChange; the refusal carries the revocation, which
// the device learns, so its next sync leaves the refused change out and
// succeeds, and its own new work reaches the cloud. The tablet's late
// change never does.
func TestRefusalForRevokedChangesTeachesTheRevocation(t *testing.T) {
	ctx := context.Background()
	c := newCloud(t, cloudOptions{memory: true})
	tablet := c.newDevice(t, "kamuga", "kamuga-tablet", fastRetries())
	b := c.newDevice(t, "kamuga", "kamuga-laptop", fastRetries())
	chart := registerAt(t, tablet.rep, "Wanjiru", "Mwangi", "kamuga")
	tablet.sync(t)
	accepted, err := c.rep.ActorSeqs(ctx, tablet.rep.ID())
	require.NoError(t, err)
	rec, err := c.auth.RevokeAccepting(tablet.rep.ID(), "kamuga", time.Now().Truncate(time.Second), accepted)
	require.NoError(t, err)
	_, err = c.roster.Add(rec)
	require.NoError(t, err)

	late := edit(t, tablet.rep, chart, allergy(2)).Change
	_, err = b.rep.Receive(ctx, mustBundle(t, tablet.rep, b.rep.ID()))
	require.NoError(t, err, "b has not learnt of the revocation")

	_, err = b.client.Sync(ctx)
	require.Error(t, err, "the cloud took a change the tablet made after its revocation")
	assert.ErrorIs(t, err, replica.ErrRevokedChange, "the refusal says why")
	assert.ErrorIs(t, err, replica.ErrForgedChange, "a revoked change is refused as a forged one is")
	var se *httpsync.StatusError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, httpsync.CodeRevokedChange, se.Code)
	assert.NotEmpty(t, se.Revocations, "the refusal carries the revocation b needs")
	var learnt *httpsync.LearntRevocationsError
	require.ErrorAs(t, err, &learnt, "b learnt the revocation from the refusal")
	assert.Equal(t, []string{tablet.rep.ID()}, learnt.Devices)

	_, err = b.client.Sync(ctx)
	require.NoError(t, err, "b learnt the revocation from the refusal: its next sync leaves the refused change out")
	own := registerAt(t, b.rep, "Njeri", "Kamau", "kamuga")
	edit(t, b.rep, chart, allergy(3))
	b.sync(t)
	want, err := b.rep.Chart(ctx, own)
	require.NoError(t, err)
	got, err := c.rep.Chart(ctx, own)
	require.NoError(t, err, "b's own new work reaches the cloud")
	assert.Equal(t, want, got)
	v, err := c.rep.Chart(ctx, chart)
	require.NoError(t, err)
	for _, h := range v.History {
		assert.NotEqual(t, late.Hash, h.Change, "the tablet's late change must not reach the cloud")
	}
	q, err := c.rep.Quarantined(ctx)
	require.NoError(t, err)
	assert.Len(t, q, 1, "the cloud refused b's bundle once")
}

// TestRefusalRevocationsAreCheckedAndBounded: the revocations a
// revoked-change answer carries are learnt only if a trusted authority
// signed them, and taken only within MaxRefusalRevocationBytes: a forged
// one or too many bytes teach the device nothing, and the refusal is
// still reported.
func TestRefusalRevocationsAreCheckedAndBounded(t *testing.T) {
	for _, tc := range []struct {
		name string
		recs func(real []byte) [][]byte
		kept bool // the StatusError keeps them
	}{
		{"a forged revocation", func(real []byte) [][]byte {
			forged := append([]byte(nil), real...)
			forged[len(forged)-1] ^= 1
			return [][]byte{forged}
		}, true},
		{"revocations over the bound", func(real []byte) [][]byte {
			return [][]byte{real, make([]byte, httpsync.MaxRefusalRevocationBytes)}
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			var body []byte
			c := newCloud(t, cloudOptions{memory: true, wrap: func(h http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if r.URL.Path != httpsync.PathSync {
						h.ServeHTTP(w, r)
						return
					}
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(http.StatusForbidden)
					_, _ = w.Write(body)
				})
			}})
			tablet := c.newDevice(t, "kamuga", "kamuga-tablet", fastRetries())
			b := c.newDevice(t, "kamuga", "kamuga-laptop", fastRetries())
			chart := registerAt(t, tablet.rep, "Wanjiru", "Mwangi", "kamuga")
			rec, err := c.auth.RevokeAccepting(tablet.rep.ID(), "kamuga", time.Now().Truncate(time.Second), map[string]uint64{chart: 1})
			require.NoError(t, err)
			edit(t, tablet.rep, chart, allergy(1))
			_, err = b.rep.Receive(ctx, mustBundle(t, tablet.rep, b.rep.ID()))
			require.NoError(t, err)
			body, err = json.Marshal(map[string]any{"error": httpsync.CodeRevokedChange, "message": "refused", "revocations": tc.recs(rec)})
			require.NoError(t, err)

			_, err = b.client.Sync(ctx)
			require.ErrorIs(t, err, replica.ErrRevokedChange, "the refusal is reported")
			var learnt *httpsync.LearntRevocationsError
			assert.False(t, errors.As(err, &learnt), "nothing is learnt: %v", err)
			var se *httpsync.StatusError
			require.ErrorAs(t, err, &se)
			assert.Equal(t, tc.kept, len(se.Revocations) > 0)
			out, err := b.rep.MakeBundle(ctx, tablet.rep.ID())
			require.NoError(t, err)
			got, err := replica.DecodeBundle(out.Data)
			require.NoError(t, err)
			assert.NotContains(t, got.Signers, rec, "b holds no revocation of the tablet")
		})
	}
}

// TestSyncerSyncsAgainAfterLearningARevocation: a Syncer whose sync is
// refused for a revoked device's changes, and which learnt the
// revocation from the refusal, syncs again at once (not at the next
// Interval, an hour here): no one has to act, and the device's own work
// reaches the cloud.
func TestSyncerSyncsAgainAfterLearningARevocation(t *testing.T) {
	ctx := context.Background()
	c := newCloud(t, cloudOptions{memory: true})
	tablet := c.newDevice(t, "kamuga", "kamuga-tablet", fastRetries())
	b := c.newDevice(t, "kamuga", "kamuga-laptop", fastRetries())
	chart := registerAt(t, tablet.rep, "Wanjiru", "Mwangi", "kamuga")
	tablet.sync(t)
	accepted, err := c.rep.ActorSeqs(ctx, tablet.rep.ID())
	require.NoError(t, err)
	rec, err := c.auth.RevokeAccepting(tablet.rep.ID(), "kamuga", time.Now().Truncate(time.Second), accepted)
	require.NoError(t, err)
	_, err = c.roster.Add(rec)
	require.NoError(t, err)
	edit(t, tablet.rep, chart, allergy(2))
	_, err = b.rep.Receive(ctx, mustBundle(t, tablet.rep, b.rep.ID()))
	require.NoError(t, err)
	own := registerAt(t, b.rep, "Njeri", "Kamau", "kamuga")

	s := startSyncer(t, b.client, fastSyncer())
	st := waitStatus(t, s, "a sync after the refusal", func(st httpsync.Status) bool { return st.Syncs >= 1 })
	assert.Empty(t, st.LastError)
	_, err = c.rep.Chart(ctx, own)
	require.NoError(t, err, "b's own work reached the cloud")
}
