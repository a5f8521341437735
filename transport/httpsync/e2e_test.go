package httpsync_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/transport/httpsync"
	"github.com/chartsync/chartsync/transport/transporttest"
)

// TestEndToEnd runs a cloud (httpsync.NewServer on a real TLS listener)
// and three clinic devices, two of clinic kamuga and one of clinic lwanda.
// Every device edits offline, then they sync in random order until a
// whole pass moves nothing. Every device then holds exactly the charts in
// its clinic's scope, identical to the cloud's; a referral brings a chart
// into the other clinic's scope; and a device cannot read or write charts
// outside its scope.
func TestEndToEnd(t *testing.T) {
	ctx := context.Background()
	c := newCloud(t, cloudOptions{server: true})
	k1 := c.newDevice(t, "kamuga", "kamuga-tablet-1", fastRetries())
	k2 := c.newDevice(t, "kamuga", "kamuga-laptop-2", fastRetries())
	l1 := c.newDevice(t, "lwanda", "lwanda-phone-1", fastRetries())
	devices := []*clinicDevice{k1, k2, l1}
	rng := rand.New(rand.NewPCG(4, 2026))

	// Round 1: each device registers its own patients and edits offline.
	wanjiru := registerAt(t, k1.rep, "Wanjiru", "Mwangi", "kamuga")
	edit(t, k1.rep, wanjiru, amoxicillin(500))
	achieng := registerAt(t, k2.rep, "Achieng", "Odhiambo", "kamuga")
	edit(t, k2.rep, achieng, record.Diagnose{Code: "B54", Text: "Malaria"})
	nafula := registerAt(t, l1.rep, "Nafula", "Wekesa", "lwanda")
	edit(t, l1.rep, nafula, record.AddEncounter{Complaint: "cough", Vitals: record.Vitals{Temperature: 37.9}})
	syncUntilQuiet(t, rng, devices)
	requireScoped(t, c, devices)
	assert.ElementsMatch(t, []string{wanjiru, achieng}, transporttest.ChartIDs(t, k1.rep), "kamuga devices hold kamuga's charts")
	assert.Equal(t, []string{nafula}, transporttest.ChartIDs(t, l1.rep), "the lwanda device holds only lwanda's chart")

	// Round 2: concurrent offline edits of the same charts on both kamuga
	// devices, and more registrations everywhere.
	rx := firstPrescription(t, k2.rep, wanjiru)
	edit(t, k1.rep, wanjiru, record.ReviseDose{PrescriptionID: rx, Dose: 250, Reason: "weight 40 kg"})
	edit(t, k2.rep, wanjiru, record.ReviseDose{PrescriptionID: rx, Dose: 1000, Reason: "severe infection"})
	edit(t, k1.rep, achieng, allergy(1))
	edit(t, k2.rep, achieng, allergy(2))
	for i := range 5 {
		d := devices[rng.IntN(len(devices))]
		id := registerAt(t, d.rep, fmt.Sprintf("Patient%d", i), "Otieno", d.clinic)
		edit(t, d.rep, id, allergy(10+i))
	}
	syncUntilQuiet(t, rng, devices)
	requireScoped(t, c, devices)
	v, err := k1.rep.Chart(ctx, wanjiru)
	require.NoError(t, err)
	assert.NotEmpty(t, v.Conflicts, "the concurrent doses are shown as a conflict on every device")
	v, err = k2.rep.Chart(ctx, achieng)
	require.NoError(t, err)
	assert.Len(t, v.Allergies, 2, "both concurrently recorded allergies are kept")

	// Round 3: kamuga refers Wanjiru to lwanda, which then sees and edits
	// the chart; the edit comes back to kamuga.
	edit(t, k1.rep, wanjiru, record.Refer{ToClinic: "lwanda", Reason: "specialist review"})
	syncUntilQuiet(t, rng, devices)
	requireScoped(t, c, devices)
	require.Contains(t, transporttest.ChartIDs(t, l1.rep), wanjiru, "a referred chart reaches the other clinic")
	seen := edit(t, l1.rep, wanjiru, record.AddEncounter{Complaint: "review", Note: "seen at lwanda"})
	syncUntilQuiet(t, rng, devices)
	requireScoped(t, c, devices)
	requireHasChanges(t, k1.rep, wanjiru, []crdt.Hash{seen.Change.Hash}, "kamuga tablet")
	assert.NotContains(t, transporttest.ChartIDs(t, l1.rep), achieng, "an unreferred kamuga chart stays out of lwanda")

	t.Run("a lwanda device cannot write a kamuga chart", func(t *testing.T) {
		// A kamuga chart reaches the lwanda device out of band (a file
		// carried from kamuga), and lwanda edits it.
		_, err := replica.SyncPair(ctx, k2.rep, l1.rep)
		require.NoError(t, err)
		require.Contains(t, transporttest.ChartIDs(t, l1.rep), achieng)
		forged := edit(t, l1.rep, achieng, amoxicillin(750))
		before := snapshotOf(t, c.rep)

		raw, err := l1.rep.MakeBundle(ctx, c.rep.ID())
		require.NoError(t, err)
		_, err = l1.client.PostRaw(ctx, raw.Data)
		require.ErrorIs(t, err, httpsync.ErrForbidden, "the cloud refuses a change to a chart outside lwanda's scope")
		assert.Equal(t, before, snapshotOf(t, c.rep), "a refused bundle changes nothing at the cloud")

		l1.sync(t) // the client leaves the out-of-scope chart out
		hashes := historyHashes(t, c.rep, achieng)
		assert.NotContains(t, hashes, forged.Change.Hash, "lwanda's edit of a kamuga chart never reaches the cloud")
	})

	t.Run("a lwanda device cannot read a kamuga chart", func(t *testing.T) {
		fresh := c.newDevice(t, "lwanda", "lwanda-phone-2", fastRetries())
		fresh.sync(t)
		ids := transporttest.ChartIDs(t, fresh.rep)
		assert.NotContains(t, ids, achieng, "a kamuga chart is never sent to lwanda")
		assert.Contains(t, ids, wanjiru, "the referred chart is")
		assert.Contains(t, ids, nafula)
	})
}

// syncUntilQuiet syncs every device with the cloud in random order until
// a whole pass moves no change and every device's changes are
// acknowledged (bounded).
func syncUntilQuiet(t *testing.T, rng *rand.Rand, devices []*clinicDevice) {
	t.Helper()
	for pass := 1; pass <= 20; pass++ {
		moved := 0
		for _, i := range rng.Perm(len(devices)) {
			rep := devices[i].sync(t)
			moved += rep.ChangesSent + rep.ChangesApplied
		}
		if moved == 0 {
			return
		}
	}
	t.Fatal("syncs still move changes after 20 passes")
}

// requireScoped checks that every device holds exactly the cloud's charts
// in its clinic's scope, each with the cloud's heads and view.
func requireScoped(t *testing.T, c *cloud, devices []*clinicDevice) {
	t.Helper()
	ctx := context.Background()
	all, err := c.rep.Find(ctx, "", 0)
	require.NoError(t, err)
	for _, d := range devices {
		var want []string
		for _, ch := range all {
			if slices.Contains(ch.Scope, d.clinic) {
				want = append(want, ch.ID)
			}
		}
		slices.Sort(want)
		have := transporttest.ChartIDs(t, d.rep)
		for _, id := range want {
			require.Contains(t, have, id, "device %s lacks chart %s of its clinic's scope", d.name, id)
			hc, err := c.rep.Heads(ctx, id)
			require.NoError(t, err)
			hd, err := d.rep.Heads(ctx, id)
			require.NoError(t, err)
			require.True(t, hc.Equal(hd), "chart %s: device %s has heads %s, the cloud %s", id, d.name, hd, hc)
			vc, err := c.rep.Chart(ctx, id)
			require.NoError(t, err)
			vd, err := d.rep.Chart(ctx, id)
			require.NoError(t, err)
			jc, _ := json.Marshal(vc)
			jd, _ := json.Marshal(vd)
			require.JSONEq(t, string(jc), string(jd), "chart %s looks different on device %s and the cloud", id, d.name)
		}
		for _, id := range have {
			if !slices.Contains(want, id) {
				t.Fatalf("device %s holds chart %s outside its clinic's scope", d.name, id)
			}
		}
	}
}

func firstPrescription(t *testing.T, r *replica.Replica, chart string) string {
	t.Helper()
	v, err := r.Chart(context.Background(), chart)
	require.NoError(t, err)
	require.NotEmpty(t, v.Prescriptions, "chart %s has a prescription", chart)
	return v.Prescriptions[0].ID
}

func historyHashes(t *testing.T, r *replica.Replica, chart string) []crdt.Hash {
	t.Helper()
	v, err := r.Chart(context.Background(), chart)
	require.NoError(t, err)
	var hs []crdt.Hash
	for _, h := range v.History {
		hs = append(hs, h.Change)
	}
	return hs
}
