package replica_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/store"
)

// hub is a replica that checks every change's signature against the
// deployment's authority, and its author if checkAuthors, over a store
// the test reads.
func (d *deployment) hub(t *testing.T, checkAuthors bool) (*replica.Replica, *store.Mem) {
	t.Helper()
	st := store.NewMem()
	hub, err := replica.New(context.Background(), keepOpen{st}, replica.Config{Keys: d.roster(t), CheckAuthors: checkAuthors})
	require.NoError(t, err)
	t.Cleanup(func() { _ = hub.Close() })
	return hub, st
}

// TestOneSignatureCoversADevicesCharts: a device that edited several
// charts offline sends one signature for all of them; the hub that checks
// it keeps a proof with each chart's change, passes the changes on with
// the signature once (all of them, or some), and a device that never met
// the sender checks them. Every stored proof verifies alone.
func TestOneSignatureCoversADevicesCharts(t *testing.T) {
	ctx := context.Background()
	d := newDeployment(t)
	const clinic = "kamuga-dispensary" // the scope register gives
	a, c := d.device(t, clinic), d.device(t, clinic)
	hub, hubStore := d.hub(t, true)

	var charts []string
	for i := range 5 {
		id := register(t, a.Replica, "Wanjiru", "Mwangi", "Kamuga")
		edit(t, a.Replica, id, prescribe("Amoxicillin", float64(250*(i+1))))
		charts = append(charts, id)
	}
	up, err := a.MakeBundle(ctx, hub.ID())
	require.NoError(t, err)
	b, err := replica.DecodeBundle(up.Data)
	require.NoError(t, err)
	require.Len(t, b.Changes, 10)
	sigs := map[string]bool{}
	for _, ch := range b.Changes {
		if ch.Cover != 0 {
			continue
		}
		sig, ok := replica.ProofSignature(ch.Sig)
		require.True(t, ok, "the change of chart %s is vouched for by the batch signature", ch.Chart)
		sigs[string(sig)] = true
	}
	assert.Len(t, sigs, 1, "one signature for the five charts")

	_, err = hub.Receive(ctx, up.Data)
	require.NoError(t, err)
	auditor := d.roster(t)
	_, err = auditor.LearnSigner(a.rec)
	require.NoError(t, err)
	requireStoredSignaturesVerify := func(st store.Store, want int) {
		t.Helper()
		log, err := st.Log(ctx, 0, 0)
		require.NoError(t, err)
		require.Len(t, log, want)
		proofs := 0
		for _, ch := range log {
			if _, ok := replica.ProofSignature(ch.Sig); !ok {
				continue
			}
			proofs++
			signer, err := replica.VerifyStored(auditor, a.ID(), ch.Chart, ch.Hash, ch.Sig)
			require.NoError(t, err, "the stored proof of %s verifies alone", ch.Hash)
			assert.Equal(t, clinic, signer)
		}
		assert.Equal(t, 5, proofs, "each chart's latest change is stored with its proof")
	}
	requireStoredSignaturesVerify(hubStore, 10)

	// The hub passes everything on to c: one tree, no sibling hashes.
	_, err = replica.SyncPair(ctx, hub, c.Replica)
	require.NoError(t, err)
	requireStoredSignaturesVerify(c.st, 10)
	for _, id := range charts {
		assert.Equal(t, view(t, a.Replica, id), view(t, c.Replica, id))
	}

	// Two of the charts passed on alone, to a device that never met a:
	// the bundle carries the sibling hashes the two leaves do not give.
	e := d.device(t, clinic)
	out, err := hub.MakeBundle(ctx, e.ID())
	require.NoError(t, err)
	all, err := replica.DecodeBundle(out.Data)
	require.NoError(t, err)
	some := replica.Bundle{From: all.From, To: all.To, Signers: all.Signers}
	index := map[int]int{}
	for i, ch := range all.Changes {
		if ch.Chart == charts[1] || ch.Chart == charts[4] {
			index[i] = len(some.Changes)
			some.Changes = append(some.Changes, ch)
		}
	}
	for i := range some.Changes {
		if cv := some.Changes[i].Cover; cv != 0 {
			some.Changes[i].Cover = index[cv-1] + 1
		}
	}
	require.Len(t, some.Changes, 4)
	part := encode(t, some)
	_, err = e.Receive(ctx, part)
	require.NoError(t, err)
	assert.Equal(t, view(t, a.Replica, charts[4]), view(t, e.Replica, charts[4]))
	got, err := replica.DecodeBundle(part)
	require.NoError(t, err)
	for i, ch := range got.Changes {
		assert.Equal(t, some.Changes[i].Sig, ch.Sig, "change %d comes with its proof", i)
	}
}

// TestForgedBatchSignaturesAreRefused: a change cannot borrow a batch
// signature it is not a leaf of: moved to another chart, given another
// leaf's proof, or made by another device, it is refused with
// ErrForgedChange and the bundle changes nothing.
func TestForgedBatchSignaturesAreRefused(t *testing.T) {
	ctx := context.Background()
	d := newDeployment(t)
	a, b := d.device(t, "north"), d.device(t, "north")
	rogue := d.device(t, "north")
	var charts []string
	for range 3 {
		charts = append(charts, register(t, a.Replica, "Amina", "Okafor", "Siaya"))
	}
	up, err := a.MakeBundle(ctx, b.ID())
	require.NoError(t, err)
	good, err := replica.DecodeBundle(up.Data)
	require.NoError(t, err)
	require.Len(t, good.Changes, 3)
	for _, ch := range good.Changes {
		_, ok := replica.ProofSignature(ch.Sig)
		require.True(t, ok)
	}
	rogueChart := register(t, rogue.Replica, "Fake", "Person", "Siaya")
	rch, err := rogue.st.ChartChanges(ctx, rogueChart, 0)
	require.NoError(t, err)
	require.Len(t, rch, 1)

	with := func(f func(chs []replica.BundleChange) []replica.BundleChange) []byte {
		chs := make([]replica.BundleChange, len(good.Changes))
		copy(chs, good.Changes)
		return encode(t, replica.Bundle{From: good.From, To: good.To, Changes: f(chs), Signers: append(good.Signers, rogue.rec)})
	}
	cases := []struct {
		name string
		data []byte
	}{
		{"a leaf moved to another chart", with(func(chs []replica.BundleChange) []replica.BundleChange {
			chs[1].Chart = uuid.NewString()
			return chs
		})},
		{"two leaves' proofs swapped", with(func(chs []replica.BundleChange) []replica.BundleChange {
			chs[0].Sig, chs[2].Sig = chs[2].Sig, chs[0].Sig
			return chs
		})},
		{"another device's change given a leaf's proof", with(func(chs []replica.BundleChange) []replica.BundleChange {
			return append(chs[:2], replica.BundleChange{Chart: rogueChart, Raw: rch[0].Raw, Sig: chs[2].Sig})
		})},
		{"a proof with a sibling hash changed", with(func(chs []replica.BundleChange) []replica.BundleChange {
			sig := bytes.Clone(chs[0].Sig)
			sig[len(sig)-1] ^= 1
			chs[0].Sig = sig
			return chs
		})},
	}
	before := dumpStore(t, b.st)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := b.Receive(ctx, tc.data)
			require.ErrorIs(t, err, replica.ErrForgedChange)
			assert.Equal(t, before, dumpStore(t, b.st), "a forged bundle changes nothing")
		})
	}
	res, err := b.Receive(ctx, up.Data)
	require.NoError(t, err)
	assert.Equal(t, 3, res.Applied)
	for _, id := range charts {
		assert.Equal(t, view(t, a.Replica, id), view(t, b.Replica, id))
	}
}

// TestBatchSignatureNeedsTwoCharts: a bundle with one change of its
// sender's keeps the change's own signature, which is no larger.
func TestBatchSignatureNeedsTwoCharts(t *testing.T) {
	ctx := context.Background()
	d := newDeployment(t)
	a, b := d.device(t, "north"), d.device(t, "north")
	id := register(t, a.Replica, "Amina", "Okafor", "Siaya")
	edit(t, a.Replica, id, record.AddAllergy{Substance: "Sulfa", Severity: "mild"})
	out, err := a.MakeBundle(ctx, b.ID())
	require.NoError(t, err)
	got, err := replica.DecodeBundle(out.Data)
	require.NoError(t, err)
	require.Len(t, got.Changes, 2)
	assert.Len(t, got.Changes[1].Sig, 64)
	_, isProof := replica.ProofSignature(got.Changes[1].Sig)
	assert.False(t, isProof)
	_, err = b.Receive(ctx, out.Data)
	require.NoError(t, err)
}

// TestASignatureHoldsForItsChartOnly: a change its device signed for one
// chart, carried in the same bundle in another chart with a signature
// that is not its device's, is checked again there and refused: what
// checking a change found holds for the chart it was checked in.
func TestASignatureHoldsForItsChartOnly(t *testing.T) {
	ctx := context.Background()
	for _, checkAuthors := range []bool{false, true} {
		d := newDeployment(t)
		a, rogue := d.device(t, "kamuga-dispensary"), d.device(t, "kamuga-dispensary")
		hub, hubStore := d.hub(t, checkAuthors)
		victim := register(t, rogue.Replica, "Victim", "Patient", "Kamuga")
		_, err := replica.SyncPair(ctx, rogue.Replica, hub)
		require.NoError(t, err)

		chartA := register(t, a.Replica, "Other", "Person", "Siaya")
		edit(t, a.Replica, chartA, prescribe("Amoxicillin", 500))
		chs, err := a.st.ChartChanges(ctx, chartA, 0)
		require.NoError(t, err)
		require.Len(t, chs, 2)
		require.Len(t, chs[1].Sig, 64)
		data := encode(t, replica.Bundle{From: rogue.ID(), To: hub.ID(), Signers: [][]byte{a.rec, rogue.rec}, Changes: []replica.BundleChange{
			{Chart: chartA, Raw: chs[1].Raw, Sig: chs[1].Sig},                  // a's, for chart A
			{Chart: victim, Raw: chs[0].Raw, Cover: 3},                         // covered by the next
			{Chart: victim, Raw: chs[1].Raw, Sig: bytes.Repeat([]byte{7}, 64)}, // not a's signature
		}})
		before := dumpStore(t, hubStore)
		_, err = hub.Receive(ctx, data)
		require.ErrorIs(t, err, replica.ErrForgedChange, "checking authors: %v", checkAuthors)
		assert.Equal(t, before, dumpStore(t, hubStore))
	}
}
