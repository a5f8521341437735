package replica_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/store"
)

// deployment is an enrolment authority and the devices it enrolled, each
// with a roster that knows only the authority and its own enrolment, as
// a device has after enrolling.
type deployment struct {
	auth *device.Authority
	now  time.Time
}

func newDeployment(t *testing.T) *deployment {
	auth, err := device.NewAuthority()
	require.NoError(t, err)
	return &deployment{auth: auth, now: time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)}
}

func (d *deployment) roster(t *testing.T) *device.Roster {
	r, err := device.NewRoster(device.RosterConfig{
		Authorities: []device.TrustedAuthority{{Key: d.auth.PublicKey()}},
		Now:         func() time.Time { return d.now },
	})
	require.NoError(t, err)
	return r
}

// enrol makes a device of clinic with its own identity, enrolled by the
// authority.
func (d *deployment) enrol(t *testing.T, clinic string) (*device.Identity, []byte) {
	id, err := device.Generate(crdt.NewActorID(), clinic)
	require.NoError(t, err)
	rec, err := d.auth.Enrol(id.Public(), d.now, 365*24*time.Hour)
	require.NoError(t, err)
	return id, rec
}

// signedDevice is a replica that signs its changes and checks everyone's.
type signedDevice struct {
	*replica.Replica
	st  *store.Mem
	id  *device.Identity
	rec []byte
}

func (d *deployment) device(t *testing.T, clinic string) signedDevice {
	id, rec := d.enrol(t, clinic)
	roster := d.roster(t)
	_, err := roster.Add(rec)
	require.NoError(t, err)
	r, st := newMem(t, replica.Config{Signer: id, Keys: roster})
	require.Equal(t, id.ReplicaID(), r.ID(), "a new replica takes its device's replica ID")
	return signedDevice{Replica: r, st: st, id: id, rec: rec}
}

func TestSignedChangesTravelWithTheirSigners(t *testing.T) {
	ctx := context.Background()
	d := newDeployment(t)
	a, b := d.device(t, "north"), d.device(t, "north")
	hubStore := store.NewMem()
	hub, err := replica.New(ctx, keepOpen{hubStore}, replica.Config{Keys: d.roster(t)})
	require.NoError(t, err)

	id := register(t, a.Replica, "Wanjiru", "Mwangi", "Kamuga")
	edit(t, a.Replica, id, prescribe("Amoxicillin", 500))
	_, err = replica.SyncPair(ctx, a.Replica, hub)
	require.NoError(t, err, "the hub learns a's key from a's bundle")
	_, err = replica.SyncPair(ctx, hub, b.Replica)
	require.NoError(t, err, "b, which never met a, checks a's changes with the enrolment the hub passes on")
	assert.Equal(t, view(t, a.Replica, id), view(t, b.Replica, id))

	log, err := b.st.Log(ctx, 0, 0)
	require.NoError(t, err)
	require.Len(t, log, 2)
	auditor := d.roster(t)
	_, err = auditor.LearnSigner(a.rec)
	require.NoError(t, err)
	signedBy := map[[32]byte]store.Change{}
	for _, c := range log {
		signedBy[c.Hash] = c
	}
	covered := 0
	for _, c := range log {
		sig := c.Sig
		if len(sig) == 33 && sig[0] == 'c' {
			// A cover: a later change of the same device, stored with
			// its own signature, vouches for this one.
			covered++
			h, ok := signedBy[[32]byte(sig[1:])]
			require.True(t, ok, "b stores the change that vouches for %s", c.Hash)
			sig = h.Sig
			c = h
		}
		clinic, err := auditor.VerifyChange(a.ID(), c.Chart, [32]byte(c.Hash), sig)
		assert.NoError(t, err, "b stores each change with its author's signature, or with the change whose signature vouches for it")
		assert.Equal(t, "north", clinic, "the signature says which clinic's device made the change")
	}
	assert.Equal(t, 1, covered, "the registration travelled under the prescription's signature")

	// The hub restarts with a roster that has forgotten a: the enrolment
	// it stored with a's changes still goes to a device that never met a.
	require.NoError(t, hub.Close())
	hub, err = replica.New(ctx, keepOpen{hubStore}, replica.Config{Keys: d.roster(t)})
	require.NoError(t, err)
	c := d.device(t, "north")
	_, err = replica.SyncPair(ctx, hub, c.Replica)
	require.NoError(t, err)
	assert.Equal(t, view(t, a.Replica, id), view(t, c.Replica, id))
	edit(t, c.Replica, id, record.AddAllergy{Substance: "Sulfa", Severity: "mild"})
	_, err = replica.SyncPair(ctx, c.Replica, hub)
	require.NoError(t, err, "the restarted hub checks c's change with the enrolment c sends")
	_, err = replica.SyncPair(ctx, hub, a.Replica)
	require.NoError(t, err)
	assert.Equal(t, view(t, c.Replica, id), view(t, a.Replica, id))
}

func TestSignerMustBeTheReplicasDevice(t *testing.T) {
	d := newDeployment(t)
	a := d.device(t, "north")
	other, _ := d.enrol(t, "north")
	_, err := replica.New(context.Background(), keepOpen{a.st}, replica.Config{Signer: other})
	require.ErrorIs(t, err, replica.ErrWrongSigner)
}

// TestForgedChangesAreRefused sends a device bundles whose bytes are well
// formed but whose changes do not prove their author: each is refused
// with ErrForgedChange, quarantined, and changes nothing else.
func TestForgedChangesAreRefused(t *testing.T) {
	ctx := context.Background()
	d := newDeployment(t)
	a, b := d.device(t, "north"), d.device(t, "north")
	rogue, rogueRec := d.enrol(t, "north") // enrolled, with its own key

	id := register(t, a.Replica, "Wanjiru", "Mwangi", "Kamuga")
	_, err := replica.SyncPair(ctx, a.Replica, b.Replica)
	require.NoError(t, err)
	edit(t, a.Replica, id, prescribe("Amoxicillin", 500))
	up, err := a.MakeBundle(ctx, b.ID())
	require.NoError(t, err)
	good, err := replica.DecodeBundle(up.Data)
	require.NoError(t, err)
	require.Len(t, good.Changes, 1)
	require.Len(t, good.Signers, 1, "the bundle carries a's enrolment")
	legit := good.Changes[0]

	// A change credited to a but made and signed by the rogue device.
	impostor, _, err := record.New(uuid.NewString(), a.ID(), nurse, d.now, record.Register{
		GivenName: "Fake", Sex: "male", EstimatedBirthYear: 1970, HomeClinic: "north"})
	require.NoError(t, err)
	ichs, err := impostor.Doc().Changes(nil)
	require.NoError(t, err)
	require.Len(t, ichs, 1)
	icharts := impostor.ID()

	// A device no trusted authority enrolled, vouched for by its own
	// authority.
	stranger, err := device.Generate(crdt.NewActorID(), "north")
	require.NoError(t, err)
	strangerAuth, err := device.NewAuthority()
	require.NoError(t, err)
	strangerRec, err := strangerAuth.Enrol(stranger.Public(), d.now, time.Hour)
	require.NoError(t, err)
	sc, _, err := record.New(uuid.NewString(), stranger.ReplicaID(), nurse, d.now, record.Register{
		GivenName: "Stranger", Sex: "male", EstimatedBirthYear: 1970, HomeClinic: "north"})
	require.NoError(t, err)
	schs, err := sc.Doc().Changes(nil)
	require.NoError(t, err)

	flipped := bytes.Clone(legit.Sig)
	flipped[10] ^= 1
	bundle := func(signers [][]byte, chs ...replica.BundleChange) []byte {
		return encode(t, replica.Bundle{From: good.From, To: good.To, Changes: chs, Signers: signers})
	}
	cases := []struct {
		name string
		data []byte
	}{
		{"signature with a bit flipped", bundle(good.Signers, replica.BundleChange{Chart: legit.Chart, Raw: legit.Raw, Sig: flipped})},
		{"signature missing", bundle(good.Signers, replica.BundleChange{Chart: legit.Chart, Raw: legit.Raw})},
		{"another change's signature", bundle(good.Signers, replica.BundleChange{Chart: legit.Chart, Raw: legit.Raw,
			Sig: a.id.SignChange(legit.Chart, [32]byte(ichs[0].Hash))})},
		{"moved to another chart", bundle(good.Signers, replica.BundleChange{Chart: icharts, Raw: legit.Raw, Sig: legit.Sig})},
		{"another device's actor ID, signed by the rogue device", bundle([][]byte{a.rec, rogueRec},
			replica.BundleChange{Chart: icharts, Raw: ichs[0].Raw, Sig: rogue.SignChange(icharts, [32]byte(ichs[0].Hash))})},
		{"signed by a device of an untrusted authority", bundle([][]byte{strangerRec},
			replica.BundleChange{Chart: sc.ID(), Raw: schs[0].Raw, Sig: stranger.SignChange(sc.ID(), [32]byte(schs[0].Hash))})},
		{"signed by a device nobody sent the enrolment of", bundle(nil,
			replica.BundleChange{Chart: sc.ID(), Raw: schs[0].Raw, Sig: stranger.SignChange(sc.ID(), [32]byte(schs[0].Hash))})},
		{"a good change, then a forged one", bundle(good.Signers, legit,
			replica.BundleChange{Chart: icharts, Raw: ichs[0].Raw, Sig: rogue.SignChange(icharts, [32]byte(ichs[0].Hash))})},
	}
	before := dumpStore(t, b.st)
	vBefore := view(t, b.Replica, id)
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := b.Receive(ctx, tc.data)
			require.ErrorIs(t, err, replica.ErrForgedChange)
			assert.Equal(t, before, dumpStore(t, b.st), "a forged bundle changes nothing")
			assert.Equal(t, vBefore, view(t, b.Replica, id))
			q, err := b.Quarantined(ctx)
			require.NoError(t, err)
			require.Len(t, q, i+1, "the forged bundle is kept for review")
			assert.Equal(t, tc.data, q[i].Data)
		})
	}
	// The good bundle still applies.
	res, err := b.Receive(ctx, up.Data)
	require.NoError(t, err)
	assert.Equal(t, 1, res.Applied)
	assert.Equal(t, view(t, a.Replica, id), view(t, b.Replica, id))
}

// TestSignerMustBeInTheChartsScope: a device of another clinic that got
// hold of a chart (through a hub that checks nothing but signatures)
// cannot change it: a checking replica refuses the change, whoever
// forwards it; a device of a clinic listed in Config.Unscoped may.
func TestSignerMustBeInTheChartsScope(t *testing.T) {
	ctx := context.Background()
	d := newDeployment(t)
	north, south := d.device(t, "north"), d.device(t, "south")
	hub, _ := newMem(t, replica.Config{Keys: d.roster(t)})
	id := registerAt(t, north.Replica, "Amina", "north")
	for _, pair := range [][2]*replica.Replica{{north.Replica, hub}, {hub, south.Replica}} {
		_, err := replica.SyncPair(ctx, pair[0], pair[1])
		require.NoError(t, err)
	}
	edit(t, south.Replica, id, record.AddAllergy{Substance: "Sulfa", Severity: "mild"})
	_, err := replica.SyncPair(ctx, south.Replica, hub)
	require.NoError(t, err, "the hub checks signatures only")

	out, err := hub.MakeBundle(ctx, north.ID())
	require.NoError(t, err)
	before := dumpStore(t, north.st)
	_, err = north.ReceiveFrom(ctx, out.Data, replica.ReceiveOptions{CheckAuthors: true})
	require.ErrorIs(t, err, replica.ErrUnauthorizedChange)
	assert.Contains(t, err.Error(), "a device of clinic south")
	assert.Equal(t, before, dumpStore(t, north.st))

	district, _ := newMem(t, replica.Config{Keys: d.roster(t), CheckAuthors: true, Unscoped: []string{"south"}})
	_, err = replica.SyncPair(ctx, hub, district)
	require.NoError(t, err, "a replica that lets south's devices change any chart takes it")
}

// TestChangesSignedBeforeReEnrolmentStillVerify: a device enrolled again
// with new keys (a lost key file) keeps its earlier changes: a replica
// that never met the old key checks them with the old enrolment, which
// bundles carry along with the new one.
func TestChangesSignedBeforeReEnrolmentStillVerify(t *testing.T) {
	ctx := context.Background()
	d := newDeployment(t)
	a := d.device(t, "north")
	id := register(t, a.Replica, "Wanjiru", "Mwangi", "Kamuga")

	again, _ := d.reEnrol(t, a)
	edit(t, again, id, record.AddAllergy{Substance: "Sulfa", Severity: "mild"})

	fresh := d.device(t, "north")
	_, err := replica.SyncPair(ctx, again, fresh.Replica)
	require.NoError(t, err, "changes signed with the old key and the new one both verify")
	assert.Equal(t, view(t, again, id), view(t, fresh.Replica, id))
}

// TestChartCannotBeRegisteredAgain: a change that starts a held chart's
// history again (a second registration, which would replace the chart on
// merge), or a chart filed under another chart's ID, is refused by a
// checking replica, whoever signed it.
func TestChartCannotBeRegisteredAgain(t *testing.T) {
	ctx := context.Background()
	d := newDeployment(t)
	north, other := d.device(t, "north"), d.device(t, "north")
	id := registerAt(t, north.Replica, "Amina", "north")
	_, err := replica.SyncPair(ctx, north.Replica, other.Replica)
	require.NoError(t, err)

	again, res, err := record.New(id, other.ID(), nurse, d.now, record.Register{GivenName: "Squatter", Sex: "male", EstimatedBirthYear: 1970, HomeClinic: "north"})
	require.NoError(t, err)
	_, res2, err := record.New(uuid.NewString(), other.ID(), nurse, d.now, record.Register{GivenName: "Elsewhere", Sex: "male", EstimatedBirthYear: 1970, HomeClinic: "north"})
	require.NoError(t, err)
	cases := []struct {
		name  string
		chart string
		raw   []byte
		sig   []byte
	}{
		{"a second registration of a held chart", id, res.Change.Raw, other.id.SignChange(again.ID(), [32]byte(res.Change.Hash))},
		{"a chart filed under another ID", uuid.NewString(), res2.Change.Raw, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sig := tc.sig
			if sig == nil {
				sig = other.id.SignChange(tc.chart, [32]byte(res2.Change.Hash))
			}
			data := encode(t, replica.Bundle{From: other.ID(), To: north.ID(), Signers: [][]byte{other.rec},
				Changes: []replica.BundleChange{{Chart: tc.chart, Raw: tc.raw, Sig: sig}}})
			before := dumpStore(t, north.st)
			_, err := north.ReceiveFrom(ctx, data, replica.ReceiveOptions{CheckAuthors: true})
			require.Error(t, err)
			assert.True(t, errors.Is(err, replica.ErrUnauthorizedChange) || errors.Is(err, replica.ErrMalformedBundle), "error %v", err)
			assert.Equal(t, before, dumpStore(t, north.st))
			assert.Equal(t, "Amina", view(t, north.Replica, id).Patient.GivenName)
		})
	}
}

// TestSignersSurviveARosterReload: a hub whose roster was reloaded from a
// file (which keeps only each device's enrolment in force) still passes
// on the earlier key of a re-enrolled device, from its store.
func TestSignersSurviveARosterReload(t *testing.T) {
	ctx := context.Background()
	d := newDeployment(t)
	a := d.device(t, "north")
	id := register(t, a.Replica, "Wanjiru", "Mwangi", "Kamuga")
	hubStore := store.NewMem()
	hub, err := replica.New(ctx, keepOpen{hubStore}, replica.Config{Keys: d.roster(t)})
	require.NoError(t, err)
	_, err = replica.SyncPair(ctx, a.Replica, hub)
	require.NoError(t, err)

	a2, rec := d.reEnrol(t, a)
	edit(t, a2, id, record.AddAllergy{Substance: "Sulfa", Severity: "mild"})
	_, err = replica.SyncPair(ctx, a2, hub)
	require.NoError(t, err)

	// The hub restarts with a roster file: only the new record survives.
	reloaded, err := device.LoadRoster("/nonexistent", device.RosterConfig{Authorities: []device.TrustedAuthority{{Key: d.auth.PublicKey()}}})
	require.NoError(t, err)
	_, err = reloaded.Add(rec)
	require.NoError(t, err)
	require.NoError(t, hub.Close())
	hub, err = replica.New(ctx, keepOpen{hubStore}, replica.Config{Keys: reloaded})
	require.NoError(t, err)
	t.Cleanup(func() { _ = hub.Close() })
	fresh := d.device(t, "north")
	_, err = replica.SyncPair(ctx, hub, fresh.Replica)
	require.NoError(t, err, "the earlier key travels from the hub's store")
	assert.Equal(t, view(t, a2, id), view(t, fresh.Replica, id))
}

// reEnrol gives device a new keys, enrolled an hour later, closes it and
// opens its store again signing with them; it returns the reopened
// replica and the new enrolment.
func (d *deployment) reEnrol(t *testing.T, a signedDevice) (*replica.Replica, []byte) {
	t.Helper()
	newKeys, err := device.Generate(a.ID(), "north")
	require.NoError(t, err)
	rec, err := d.auth.Enrol(newKeys.Public(), d.now.Add(time.Hour), 365*24*time.Hour)
	require.NoError(t, err)
	roster := d.roster(t)
	for _, r := range [][]byte{a.rec, rec} {
		_, err = roster.Add(r)
		require.NoError(t, err)
	}
	require.NoError(t, a.Close())
	again, err := replica.New(context.Background(), keepOpen{a.st}, replica.Config{Signer: newKeys, Keys: roster})
	require.NoError(t, err)
	t.Cleanup(func() { _ = again.Close() })
	return again, rec
}
