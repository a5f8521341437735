package replica_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
)

// TestCoversAreChecked: a bundle carries one signature per device and
// chart, whose history vouches for the device's earlier changes; a cover
// that names another device's change, or a change whose history in the
// bundle does not hold the covered one, is a forgery.
func TestCoversAreChecked(t *testing.T) {
	ctx := context.Background()
	d := newDeployment(t)
	a, c, hub := d.device(t, "north"), d.device(t, "north"), d.device(t, "north")

	// a registers, c edits, a edits: a's bundle to the hub holds a's
	// registration (covered by a's edit, through c's edit), c's edit and
	// a's edit (each signed).
	id := register(t, a.Replica, "Wanjiru", "Mwangi", "Kamuga")
	_, err := replica.SyncPair(ctx, a.Replica, c.Replica)
	require.NoError(t, err)
	edit(t, c.Replica, id, prescribe("Amoxicillin", 500))
	_, err = replica.SyncPair(ctx, c.Replica, a.Replica)
	require.NoError(t, err)
	edit(t, a.Replica, id, allergy(1))
	out, err := a.MakeBundle(ctx, hub.ID())
	require.NoError(t, err)
	good, err := replica.DecodeBundle(out.Data)
	require.NoError(t, err)
	require.Len(t, good.Changes, 3)
	reg, cEdit, aEdit := good.Changes[0], good.Changes[1], good.Changes[2]
	require.Equal(t, 3, reg.Cover, "a's registration is covered by a's later edit")
	require.Nil(t, reg.Sig, "a covered change travels without its own signature")
	require.NotEmpty(t, cEdit.Sig, "c's edit carries c's signature")
	require.NotEmpty(t, aEdit.Sig)

	// A change a really signed, in another history of the same chart ID.
	other, _, err := record.New(id, a.ID(), nurse, d.now, record.Register{
		GivenName: "Other", Sex: "male", EstimatedBirthYear: 1970, HomeClinic: "north"})
	require.NoError(t, err)
	res, err := other.Do(doctor, d.now, allergy(2))
	require.NoError(t, err)
	otherEdit := replica.BundleChange{Chart: id, Raw: res.Change.Raw, Sig: a.id.SignChange(id, [32]byte(res.Change.Hash))}

	tamper := func(f func(b *replica.Bundle)) []byte {
		b := *good
		b.Changes = append([]replica.BundleChange(nil), good.Changes...)
		f(&b)
		return encode(t, b)
	}
	before := dumpStore(t, hub.st)
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"covered by another device's change", tamper(func(b *replica.Bundle) { b.Changes[0].Cover = 2 })},
		{"covered by a change whose history does not hold it", tamper(func(b *replica.Bundle) {
			b.Changes = []replica.BundleChange{{Chart: reg.Chart, Raw: reg.Raw, Cover: 2}, otherEdit}
		})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := hub.Receive(ctx, tc.data)
			require.ErrorIs(t, err, replica.ErrForgedChange)
			assert.Equal(t, before, dumpStore(t, hub.st), "a forged bundle changes nothing")
		})
	}

	got, err := hub.Receive(ctx, out.Data)
	require.NoError(t, err, "the untampered bundle is accepted")
	assert.Equal(t, 3, got.Applied)
	// The hub passes the covered registration on with its cover, and a
	// device that never met a checks it.
	e := d.device(t, "north")
	_, err = replica.SyncPair(ctx, hub.Replica, e.Replica)
	require.NoError(t, err)
	requireSameCharts(t, a.Replica, hub.Replica, e.Replica)
}

// TestAChangeThatWouldAbortAutomergeIsRefusedBeforeItIsApplied: a signed
// change whose operations set a map key inside a text parses, but
// automerge-rs aborts the process applying it. A checking replica judges
// chart changes before applying them, so it refuses the change.
func TestAChangeThatWouldAbortAutomergeIsRefusedBeforeItIsApplied(t *testing.T) {
	ctx := context.Background()
	d := newDeployment(t)
	a := d.device(t, "north")
	hub, hubStore := newMem(t, replica.Config{Keys: d.roster(t), CheckAuthors: true})
	id := registerAt(t, a.Replica, "Wanjiru", "north")
	_, err := replica.SyncPair(ctx, a.Replica, hub)
	require.NoError(t, err)

	good := edit(t, a.Replica, id, allergy(1)).Change
	info, err := crdt.ChangeOps(good.Raw)
	require.NoError(t, err)
	w := info.Ops[0].Obj // the map of writes
	text := crdt.OpID{Counter: info.StartOp, Actor: info.Actor}
	info.Ops = []crdt.Op{
		{ID: text, Obj: w, Key: crdt.Key{Prop: "t"}, Action: crdt.ActionMakeText},
		{ID: crdt.OpID{Counter: info.StartOp + 1, Actor: info.Actor}, Obj: text, Key: crdt.Key{IsElem: true}, Insert: true, Action: crdt.ActionSet, Value: crdt.Value{Type: crdt.ValueString, Str: "a"}},
		{ID: crdt.OpID{Counter: info.StartOp + 2, Actor: info.Actor}, Obj: text, Key: crdt.Key{Prop: "id"}, Action: crdt.ActionSet, Value: crdt.Value{Type: crdt.ValueString, Str: "x"}},
	}
	raw, err := crdt.EncodeChange(info)
	require.NoError(t, err)
	forged, err := crdt.ParseChange(raw)
	require.NoError(t, err, "the forged change is well formed")

	before := dumpStore(t, hubStore)
	b := replica.Bundle{From: a.ID(), To: hub.ID(), Changes: []replica.BundleChange{
		{Chart: id, Raw: forged.Raw, Sig: a.id.SignChange(id, [32]byte(forged.Hash))}}, Signers: [][]byte{a.rec}}
	_, err = hub.Receive(ctx, encode(t, b))
	require.ErrorIs(t, err, replica.ErrUnauthorizedChange, "the change is refused, and the process is still here to say so")
	q, err := hub.Quarantined(ctx)
	require.NoError(t, err)
	require.Len(t, q, 1, "the bundle is kept for review")
	assert.Equal(t, before, dumpStore(t, hubStore), "nothing else changed")
}
