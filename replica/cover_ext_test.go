package replica_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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
