package gate_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/audit"
	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/internal/forge"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/gate"
	"github.com/chartsync/chartsync/replica/store"
	"github.com/chartsync/chartsync/transport/transporttest"
)

var (
	nurse     = record.Author{UserID: "u-achieng", Name: "Nurse Achieng", Role: record.RoleNurse, Device: "tablet"}
	clinician = record.Author{UserID: "u-mutua", Name: "Clinical Officer Mutua", Role: record.RoleClinician, Device: "laptop"}
	labTech   = record.Author{UserID: "u-chege", Name: "Chege", Role: record.RoleLabTechnician, Device: "lab"}
)

// memLog is an access log in memory. Its func field, if set, runs
// before each append and may fail it (a full disk) or hold it.
type memLog struct {
	mu      sync.Mutex
	entries []audit.Entry
	before  func() error
}

func (l *memLog) Append(_ context.Context, es ...audit.Entry) error {
	if l.before != nil {
		if err := l.before(); err != nil {
			return err
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries = append(l.entries, es...)
	return nil
}

func (l *memLog) all() []audit.Entry {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]audit.Entry(nil), l.entries...)
}

// world is a cloud replica checking signatures against the roster of its
// authority, and the devices it enrols.
type world struct {
	auth   *device.Authority
	roster *device.Roster
	cloud  *replica.Replica
}

func newWorld(t testing.TB) *world {
	t.Helper()
	auth, err := device.NewAuthority()
	require.NoError(t, err)
	roster, err := device.NewRoster(device.RosterConfig{Authorities: []device.TrustedAuthority{{Key: auth.PublicKey()}}})
	require.NoError(t, err)
	cloud, err := replica.New(context.Background(), store.NewMem(), replica.Config{Keys: roster})
	require.NoError(t, err)
	t.Cleanup(func() { _ = cloud.Close() })
	return &world{auth: auth, roster: roster, cloud: cloud}
}

// clinicDevice is an enrolled device's replica, signing its changes and
// its bundles.
type clinicDevice struct {
	rep    *replica.Replica
	id     *device.Identity
	sender gate.Sender
}

func (w *world) device(t testing.TB, clinic string) *clinicDevice {
	t.Helper()
	id, err := device.Generate(replica.NewID(), clinic)
	require.NoError(t, err)
	rec, err := w.auth.Enrol(id.Public(), time.Now().Truncate(time.Second), time.Hour)
	require.NoError(t, err)
	_, err = w.roster.Add(rec)
	require.NoError(t, err)
	rep, err := replica.New(context.Background(), store.NewMem(), replica.Config{Signer: id, Keys: w.roster})
	require.NoError(t, err)
	t.Cleanup(func() { _ = rep.Close() })
	return &clinicDevice{rep: rep, id: id, sender: gate.Sender{Replica: rep.ID(), Clinic: clinic, Name: clinic + "-tablet"}}
}

func (d *clinicDevice) register(t testing.TB, clinic string) string {
	t.Helper()
	id, err := d.rep.Register(context.Background(), nurse, record.Register{GivenName: "Wanjiru", FamilyName: "Mwangi", Sex: "female",
		EstimatedBirthYear: 1988, HomeClinic: clinic})
	require.NoError(t, err)
	return id
}

func (d *clinicDevice) prescribe(t testing.TB, chart string) {
	t.Helper()
	_, err := d.rep.Edit(context.Background(), chart, clinician, record.Prescribe{Drug: "Amoxicillin", Dose: 500, DoseUnit: "mg",
		Route: "oral", Frequency: "TDS", DurationDays: 5})
	require.NoError(t, err)
}

// bundleFor is the device's bundle for the cloud, signed as a file's is.
func (d *clinicDevice) bundleFor(t testing.TB, cloud *replica.Replica) []byte {
	t.Helper()
	out, err := d.rep.MakeBundle(context.Background(), cloud.ID())
	require.NoError(t, err)
	return out.Data
}

func newGate(t testing.TB, cfg gate.Config) *gate.Gate {
	t.Helper()
	g, err := gate.New(cfg)
	require.NoError(t, err)
	return g
}

// TestReceiveRecordsWritesAndAnswerReads: a device's changes are taken
// and recorded, one entry per chart and author, and the answer to another
// device of the clinic records the charts it carries.
func TestReceiveRecordsWritesAndAnswerReads(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	log := &memLog{}
	g := newGate(t, gate.Config{Replica: w.cloud, AccessLog: log})
	ward, desk := w.device(t, "kamuga"), w.device(t, "kamuga")
	chart := ward.register(t, "kamuga")
	ward.prescribe(t, chart)

	rec, err := g.Receive(ctx, ward.sender, ward.bundleFor(t, w.cloud))
	require.NoError(t, err)
	assert.Equal(t, 2, rec.Applied, "the registration and the prescription are taken")
	assert.Equal(t, []audit.Entry{
		{Action: audit.Write, Device: ward.rep.ID(), Clinic: "kamuga", User: nurse.UserID, Role: string(nurse.Role), Chart: chart, Changes: 1},
		{Action: audit.Write, Device: ward.rep.ID(), Clinic: "kamuga", User: clinician.UserID, Role: string(clinician.Role), Chart: chart, Changes: 1},
	}, log.all(), "each author's write is recorded")

	out, err := g.Answer(ctx, desk.sender, gate.AnswerOptions{})
	require.NoError(t, err)
	assert.Equal(t, 2, out.Changes)
	assert.Equal(t, audit.Entry{Action: audit.Read, Device: desk.rep.ID(), Clinic: "kamuga", Chart: chart, Changes: 2},
		log.all()[2], "the desk is recorded as sent the chart")
	_, err = desk.rep.Receive(ctx, out.Data)
	require.NoError(t, err)
	assert.Equal(t, transporttest.ChartIDs(t, w.cloud), transporttest.ChartIDs(t, desk.rep))
}

// TestReceiveRefusals: a bundle refused for who sent it or what its
// changes do is refused with its code, recorded as refused, and changes
// nothing at the cloud.
func TestReceiveRefusals(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name string
		code string
		is   error
		// bundle returns the bundle and whom the courier says sent it.
		bundle func(t *testing.T, w *world) ([]byte, gate.Sender)
		check  func(context.Context, gate.Sender) error
	}{
		{"a chart of another clinic", gate.CodeOutOfScope, replica.ErrOutOfScope, func(t *testing.T, w *world) ([]byte, gate.Sender) {
			d := w.device(t, "kamuga")
			d.register(t, "lwanda")
			return d.bundleFor(t, w.cloud), d.sender
		}, nil},
		{"another device's bundle", gate.CodeWrongSender, replica.ErrWrongSender, func(t *testing.T, w *world) ([]byte, gate.Sender) {
			d, other := w.device(t, "kamuga"), w.device(t, "kamuga")
			d.register(t, "kamuga")
			return d.bundleFor(t, w.cloud), other.sender
		}, nil},
		{"a lab technician's prescription", gate.CodeUnauthorizedChange, replica.ErrUnauthorizedChange, func(t *testing.T, w *world) ([]byte, gate.Sender) {
			d := w.device(t, "kamuga")
			forged, err := forge.Prescription(d.rep.ID(), nurse, labTech, "kamuga", time.Now().Add(-time.Hour))
			require.NoError(t, err)
			require.NoError(t, d.rep.Import(ctx, []*record.Chart{forged}))
			return d.bundleFor(t, w.cloud), d.sender
		}, nil},
		{"another device's chart", gate.CodeForgedChange, replica.ErrForgedChange, func(t *testing.T, w *world) ([]byte, gate.Sender) {
			d, other := w.device(t, "kamuga"), w.device(t, "kamuga")
			impostor, _, err := record.New(uuid.NewString(), other.rep.ID(), nurse, time.Now().Add(-time.Hour), record.Register{
				GivenName: "Fake", Sex: "male", EstimatedBirthYear: 1970, HomeClinic: "kamuga"})
			require.NoError(t, err)
			require.NoError(t, d.rep.Import(ctx, []*record.Chart{impostor}))
			return d.bundleFor(t, w.cloud), d.sender
		}, nil},
		{"a revoked device", gate.CodeRevokedCredential, gate.ErrRevoked, func(t *testing.T, w *world) ([]byte, gate.Sender) {
			d := w.device(t, "kamuga")
			d.register(t, "kamuga")
			return d.bundleFor(t, w.cloud), d.sender
		}, func(context.Context, gate.Sender) error { return gate.ErrRevoked }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			log := &memLog{}
			g := newGate(t, gate.Config{Replica: w.cloud, AccessLog: log, CheckSender: tc.check})
			data, from := tc.bundle(t, w)
			before := transporttest.ChartIDs(t, w.cloud)
			_, err := g.Receive(ctx, from, data)
			require.ErrorIs(t, err, tc.is)
			assert.Equal(t, tc.code, gate.CodeOf(err), "the refusal's code")
			assert.Equal(t, before, transporttest.ChartIDs(t, w.cloud), "nothing of the refused bundle is stored")
			entries := log.all()
			require.Len(t, entries, 1, "one refused entry, no write")
			e := entries[0]
			assert.Equal(t, audit.Refused, e.Action)
			assert.Equal(t, from.Replica, e.Device, "the refusal names the sender")
			assert.Equal(t, from.Clinic, e.Clinic)
			assert.Equal(t, "*", e.Chart)
			assert.True(t, strings.HasPrefix(e.Detail, tc.code+": "), "the detail starts with the code: %q", e.Detail)
		})
	}
}

// TestReceiveStoresNothingUnrecorded: a bundle whose writes the access
// log cannot record is not stored; sent again, it is taken and recorded.
func TestReceiveStoresNothingUnrecorded(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	fail := true
	log := &memLog{before: func() error {
		if fail {
			return errors.New("disk full")
		}
		return nil
	}}
	g := newGate(t, gate.Config{Replica: w.cloud, AccessLog: log})
	d := w.device(t, "kamuga")
	d.register(t, "kamuga")
	data := d.bundleFor(t, w.cloud)
	_, err := g.Receive(ctx, d.sender, data)
	require.ErrorIs(t, err, gate.ErrAccessLog)
	assert.Empty(t, gate.CodeOf(err), "the cloud's own failure is no refusal of the bundle")
	assert.Empty(t, transporttest.ChartIDs(t, w.cloud), "nothing unrecorded is stored")

	_, err = g.Answer(ctx, d.sender, gate.AnswerOptions{})
	require.NoError(t, err, "an answer carrying no chart records nothing")

	fail = false
	rec, err := g.Receive(ctx, d.sender, data)
	require.NoError(t, err)
	assert.Equal(t, 1, rec.Applied)
	require.Len(t, log.all(), 1)
	assert.Equal(t, audit.Write, log.all()[0].Action)
}

// TestAnswerKeepsToTheClinic: the answer to a device carries its
// clinic's charts only, and records reads of those only; an answer whose
// reads cannot be recorded is not given.
func TestAnswerKeepsToTheClinic(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	log := &memLog{}
	g := newGate(t, gate.Config{Replica: w.cloud, AccessLog: log})
	kamuga, lwanda, desk := w.device(t, "kamuga"), w.device(t, "lwanda"), w.device(t, "kamuga")
	ours, theirs := kamuga.register(t, "kamuga"), lwanda.register(t, "lwanda")
	for _, d := range []*clinicDevice{kamuga, lwanda} {
		_, err := g.Receive(ctx, d.sender, d.bundleFor(t, w.cloud))
		require.NoError(t, err)
	}
	writes := len(log.all())

	log.before = func() error { return errors.New("disk full") }
	_, err := g.Answer(ctx, desk.sender, gate.AnswerOptions{})
	require.ErrorIs(t, err, gate.ErrAccessLog, "an answer that cannot be recorded is not given")
	log.before = nil

	out, err := g.Answer(ctx, desk.sender, gate.AnswerOptions{})
	require.NoError(t, err)
	assert.Equal(t, map[string]int{ours: 1}, out.Charts, "only the clinic's chart is sent")
	reads := log.all()[writes:]
	require.Len(t, reads, 1)
	assert.Equal(t, ours, reads[0].Chart)
	assert.NotEqual(t, theirs, reads[0].Chart)
}

// TestIdentifyBundle: a bundle carried by hand is taken as its sender's
// only with the sender's valid signature over it.
func TestIdentifyBundle(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	d := w.device(t, "kamuga")
	d.register(t, "kamuga")
	s, err := gate.IdentifyBundle(d.bundleFor(t, w.cloud), w.roster)
	require.NoError(t, err)
	assert.Equal(t, gate.Sender{Replica: d.rep.ID(), Clinic: "kamuga"}, s, "the enrolled sender, in its enrolled clinic")

	unsigned, err := d.rep.MakeBundleFor(ctx, w.cloud.ID(), replica.BundleOptions{NoAuth: true})
	require.NoError(t, err)
	_, err = gate.IdentifyBundle(unsigned.Data, w.roster)
	assert.ErrorIs(t, err, gate.ErrUnauthenticated, "an unsigned bundle names no one")

	// A thief with the device's replica ID but its own key.
	thief, err := device.Generate(d.rep.ID(), "kamuga")
	require.NoError(t, err)
	impostor, err := replica.New(ctx, store.NewMem(), replica.Config{Signer: thief})
	require.NoError(t, err)
	defer impostor.Close()
	_, err = impostor.Register(ctx, nurse, record.Register{GivenName: "Fake", Sex: "male", EstimatedBirthYear: 1970, HomeClinic: "kamuga"})
	require.NoError(t, err)
	forged, err := impostor.MakeBundle(ctx, w.cloud.ID())
	require.NoError(t, err)
	_, err = gate.IdentifyBundle(forged.Data, w.roster)
	assert.ErrorIs(t, err, gate.ErrUnauthenticated, "a bundle signed with another key than the device's")

	_, err = gate.IdentifyBundle([]byte("not a bundle"), w.roster)
	assert.ErrorIs(t, err, replica.ErrMalformedBundle)
}

// TestEnterOneBundleOfASenderAtATime: a sender's second bundle waits for
// the first, and is turned away if its turn does not come; other senders
// are not held up.
func TestEnterOneBundleOfASenderAtATime(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	g := newGate(t, gate.Config{Replica: w.cloud, QueueWait: time.Millisecond})
	leave, err := g.Enter(ctx, "a")
	require.NoError(t, err)
	_, err = g.Enter(ctx, "a")
	assert.ErrorIs(t, err, gate.ErrSenderBusy, "the sender's first bundle never ends")
	leaveB, err := g.Enter(ctx, "b")
	require.NoError(t, err, "another sender goes ahead")
	leaveB()
	leave()
	leave, err = g.Enter(ctx, "a")
	require.NoError(t, err, "the turn is free again")
	leave()
}

// TestSyncAdmission: with every slot taken, a bundle is turned away once
// its wait is over (ErrBusy), or at once if its sender has gone (ErrGone);
// nothing of it is applied.
func TestSyncAdmission(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	inside, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	log := &memLog{before: func() error {
		once.Do(func() { close(inside); <-release })
		return nil
	}}
	g := newGate(t, gate.Config{Replica: w.cloud, AccessLog: log, MaxConcurrent: 1, QueueWait: time.Millisecond})
	first, second := w.device(t, "kamuga"), w.device(t, "kamuga")
	first.register(t, "kamuga")
	second.register(t, "kamuga")
	done := make(chan error, 1)
	go func() {
		_, _, err := g.Sync(ctx, first.sender, first.bundleFor(t, w.cloud), gate.AnswerOptions{})
		done <- err
	}()
	<-inside // the first holds the only slot, recording its writes
	_, rec, err := g.Sync(ctx, second.sender, second.bundleFor(t, w.cloud), gate.AnswerOptions{})
	assert.ErrorIs(t, err, gate.ErrBusy)
	assert.Zero(t, rec.Applied)
	gone, cancel := context.WithCancel(ctx)
	cancel()
	_, _, err = g.Sync(gone, second.sender, second.bundleFor(t, w.cloud), gate.AnswerOptions{})
	assert.ErrorIs(t, err, gate.ErrGone)
	close(release)
	require.NoError(t, <-done)
	assert.Len(t, transporttest.ChartIDs(t, w.cloud), 1, "only the first bundle was applied")
}
