package device_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/device"
)

type authorities struct {
	cloud, hub, stranger *device.Authority
}

func newAuthorities(t testing.TB) authorities {
	var as authorities
	for _, p := range []**device.Authority{&as.cloud, &as.hub, &as.stranger} {
		a, err := device.NewAuthority()
		require.NoError(t, err)
		*p = a
	}
	return as
}

// trust is what every test roster believes: the cloud for any clinic, the
// hub for its two villages.
func (as authorities) trust() []device.TrustedAuthority {
	return []device.TrustedAuthority{
		{Key: as.cloud.PublicKey()},
		{Key: as.hub.PublicKey(), Clinics: []string{"kamuga", "lwanda"}},
	}
}

func enrol(t testing.TB, a *device.Authority, pub device.Public, issued time.Time, life time.Duration) []byte {
	t.Helper()
	e, err := a.Enrol(pub, issued, life)
	require.NoError(t, err)
	return e
}

func TestRosterAddAndLookup(t *testing.T) {
	as := newAuthorities(t)
	c := &clock{now: t0}
	r := newRoster(t, c, as.trust()...)
	kamuga := newIdentity(t, "kamuga")

	_, err := r.Lookup(kamuga.ReplicaID())
	require.ErrorIs(t, err, device.ErrUnknownDevice, "a device no authority enrolled must be unknown")

	e, err := r.Add(enrol(t, as.hub, kamuga.Public(), t0, 30*24*time.Hour))
	require.NoError(t, err)
	assert.Equal(t, t0, e.Issued)
	assert.Equal(t, as.hub.PublicKey(), e.Authority)

	pub, err := r.Lookup(kamuga.ReplicaID())
	require.NoError(t, err)
	assert.True(t, pub.Equal(kamuga.Public()), "lookup must return the enrolled keys")

	msg := []byte("relay header")
	_, err = r.Verify(kamuga.ReplicaID(), "relay/v1", msg, kamuga.Sign("relay/v1", msg))
	require.NoError(t, err)
	impostor := newIdentity(t, "kamuga")
	_, err = r.Verify(kamuga.ReplicaID(), "relay/v1", msg, impostor.Sign("relay/v1", msg))
	assert.ErrorIs(t, err, device.ErrBadSignature, "a signature by another key must not verify as the enrolled device")

	c.now = t0.Add(30 * 24 * time.Hour)
	_, err = r.Lookup(kamuga.ReplicaID())
	assert.ErrorIs(t, err, device.ErrExpired, "an enrolment must lapse at its expiry")
	_, err = r.Verify(kamuga.ReplicaID(), "relay/v1", msg, kamuga.Sign("relay/v1", msg))
	assert.ErrorIs(t, err, device.ErrExpired)
}

func TestRosterRefuses(t *testing.T) {
	as := newAuthorities(t)
	kamuga := newIdentity(t, "kamuga")
	far := newIdentity(t, "far-away")
	good := enrol(t, as.cloud, kamuga.Public(), t0, time.Hour)

	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"signed by an unknown authority", enrol(t, as.stranger, kamuga.Public(), t0, time.Hour), device.ErrUnknownAuthority},
		{"hub enrols outside its clinics", enrol(t, as.hub, far.Public(), t0, time.Hour), device.ErrOutOfScope},
		{"already expired", enrol(t, as.cloud, kamuga.Public(), t0.Add(-2*time.Hour), time.Hour), device.ErrExpired},
		{"clinic changed after signing", reframe(t, good, func(b []byte) { b[32+1+16+1] = 'K' }), device.ErrBadSignature},
		{"signing key swapped after signing", reframe(t, good, func(b []byte) {
			copy(b[32+1+16+1+len("kamuga")+1:], far.Public().SignKey)
		}), device.ErrBadSignature},
		{"expiry extended after signing", reframe(t, good, func(b []byte) { b[len(b)-64-2] ^= 0x10 }), device.ErrBadSignature},
		{"re-signed under a trusted key's name", reframe(t, enrol(t, as.stranger, kamuga.Public(), t0, time.Hour), func(b []byte) {
			copy(b, as.cloud.PublicKey())
		}), device.ErrBadSignature},
		{"flipped byte", flip(good, 20), device.ErrMalformed},
		{"truncated", good[:len(good)-10], device.ErrMalformed},
		{"trailing bytes", append(append([]byte(nil), good...), 0), device.ErrMalformed},
		{"a request, not an enrolment", kamuga.Request(), device.ErrMalformed},
		{"too large", make([]byte, device.MaxEnrolmentBytes+1), device.ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRoster(t, &clock{now: t0}, as.trust()...)
			_, err := r.Add(tt.data)
			require.ErrorIs(t, err, tt.want)
			assert.Empty(t, r.Enrolments(), "a refused record must leave the roster as it was")
			_, err = r.Lookup(kamuga.ReplicaID())
			assert.ErrorIs(t, err, device.ErrUnknownDevice)
		})
	}
}

func TestRosterSupersedeAndRevoke(t *testing.T) {
	as := newAuthorities(t)
	c := &clock{now: t0}
	old := newIdentity(t, "kamuga")
	// The phone was lost: the same replica is enrolled again with new keys.
	renewed, err := device.Generate(old.ReplicaID(), "kamuga")
	require.NoError(t, err)
	first := enrol(t, as.hub, old.Public(), t0, 24*time.Hour)
	second := enrol(t, as.hub, renewed.Public(), t0.Add(time.Minute), 24*time.Hour)
	revoked, err := as.cloud.Revoke(old.ReplicaID(), "kamuga", t0.Add(2*time.Minute))
	require.NoError(t, err)

	orders := map[string][][]byte{
		"in order":       {first, second, revoked},
		"reversed":       {revoked, second, first},
		"shuffled twice": {second, revoked, first, second, first, revoked},
	}
	for name, recs := range orders {
		t.Run(name, func(t *testing.T) {
			r := newRoster(t, c, as.trust()...)
			for i, rec := range recs {
				_, err := r.Add(rec)
				require.NoError(t, err, "record %d", i)
				if i == 1 && name == "in order" {
					pub, err := r.Lookup(old.ReplicaID())
					require.NoError(t, err)
					assert.True(t, pub.Equal(renewed.Public()), "a later enrolment must replace the earlier keys")
				}
			}
			_, err := r.Lookup(old.ReplicaID())
			assert.ErrorIs(t, err, device.ErrRevoked, "a revocation must win whatever order records arrive in")
			require.Len(t, r.Enrolments(), 1)
		})
	}
}

func TestRosterScopeProtectsOtherClinics(t *testing.T) {
	as := newAuthorities(t)
	r := newRoster(t, &clock{now: t0}, as.trust()...)
	city := newIdentity(t, "city-hospital")
	_, err := r.Add(enrol(t, as.cloud, city.Public(), t0, time.Hour))
	require.NoError(t, err)

	// The hub may enrol kamuga devices, but not take over a city replica
	// ID by enrolling it, later, as a kamuga device with its own keys.
	hijack, err := device.Generate(city.ReplicaID(), "kamuga")
	require.NoError(t, err)
	_, err = r.Add(enrol(t, as.hub, hijack.Public(), t0.Add(time.Minute), time.Hour))
	require.ErrorIs(t, err, device.ErrOutOfScope)
	pub, err := r.Lookup(city.ReplicaID())
	require.NoError(t, err)
	assert.True(t, pub.Equal(city.Public()), "the city device's keys must be unchanged")

	_, err = r.Add(mustRevoke(t, as.hub, city.ReplicaID(), "city-hospital"))
	assert.ErrorIs(t, err, device.ErrOutOfScope, "a hub must not revoke another clinic's device")
}

func mustRevoke(t testing.TB, a *device.Authority, id, clinic string) []byte {
	rec, err := a.Revoke(id, clinic, t0.Add(time.Minute))
	require.NoError(t, err)
	return rec
}

func TestRosterFileOfflineHandover(t *testing.T) {
	as := newAuthorities(t)
	c := &clock{now: t0}
	// At the hub: enrol a new village clinic from its request, and hand it a
	// roster with the hub's own enrolment.
	hubDev := newIdentity(t, "hub")
	village := newIdentity(t, "lwanda")
	hubRoster := newRoster(t, c, as.trust()...)
	_, err := hubRoster.Add(enrol(t, as.cloud, hubDev.Public(), t0, 365*24*time.Hour))
	require.NoError(t, err)
	villageEnrolment, err := as.hub.EnrolRequest(village.Request(), t0, 365*24*time.Hour)
	require.NoError(t, err)
	_, err = hubRoster.Add(villageEnrolment)
	require.NoError(t, err)
	usb := filepath.Join(t.TempDir(), "roster.chartsync")
	require.NoError(t, hubRoster.Save(usb))

	// At the village, never online: only the authority keys were installed.
	got, err := device.LoadRoster(usb, device.RosterConfig{Authorities: as.trust(), Now: c.Now})
	require.NoError(t, err)
	for _, d := range []*device.Identity{hubDev, village} {
		pub, err := got.Lookup(d.ReplicaID())
		require.NoError(t, err)
		assert.True(t, pub.Equal(d.Public()))
	}

	// A village that trusts only the cloud refuses the hub-signed record,
	// and so the whole file.
	_, err = device.LoadRoster(usb, device.RosterConfig{Authorities: as.trust()[:1], Now: c.Now})
	assert.ErrorIs(t, err, device.ErrUnknownAuthority)

	// A missing roster file is an empty roster.
	empty, err := device.LoadRoster(filepath.Join(t.TempDir(), "none"), device.RosterConfig{Authorities: as.trust()})
	require.NoError(t, err)
	assert.Empty(t, empty.Enrolments())
}

func TestRosterMergeIsAllOrNothing(t *testing.T) {
	as := newAuthorities(t)
	c := &clock{now: t0}
	src := newRoster(t, c, as.trust()...)
	ids := []*device.Identity{newIdentity(t, "kamuga"), newIdentity(t, "lwanda"), newIdentity(t, "kamuga")}
	for _, id := range ids {
		_, err := src.Add(enrol(t, as.hub, id.Public(), t0, time.Hour))
		require.NoError(t, err)
	}
	file := src.Encode()

	// Trusting the cloud only: every record is refused, nothing is added.
	strict := newRoster(t, c, as.trust()[0])
	_, err := strict.Merge(file)
	require.ErrorIs(t, err, device.ErrUnknownAuthority)
	assert.Empty(t, strict.Enrolments())

	dst := newRoster(t, c, as.trust()...)
	res, err := dst.Merge(file)
	require.NoError(t, err)
	assert.Equal(t, device.MergeResult{Added: 3}, res)
	res, err = dst.Merge(file)
	require.NoError(t, err)
	assert.Equal(t, 3, res.Added+res.Skipped)
	assert.Len(t, dst.Enrolments(), 3, "merging the same roster twice must change nothing")

	// Expired records are skipped, not refused.
	c.now = t0.Add(2 * time.Hour)
	later := newRoster(t, c, as.trust()...)
	res, err = later.Merge(file)
	require.NoError(t, err)
	assert.Equal(t, device.MergeResult{Skipped: 3}, res)

	// A single enrolment file merges too.
	c.now = t0
	one := newRoster(t, c, as.trust()...)
	res, err = one.Merge(enrol(t, as.cloud, ids[0].Public(), t0, time.Hour))
	require.NoError(t, err)
	assert.Equal(t, 1, res.Added)

	for _, bad := range [][]byte{file[:len(file)-3], flip(file, 9), nil} {
		_, err := dst.Merge(bad)
		assert.ErrorIs(t, err, device.ErrMalformed)
	}
}

func TestRosterSaveIsAtomic(t *testing.T) {
	as := newAuthorities(t)
	r := newRoster(t, &clock{now: t0}, as.trust()...)
	dir := t.TempDir()
	path := filepath.Join(dir, "roster")
	require.NoError(t, r.Save(path))
	require.NoError(t, r.Save(path))
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, 1, "saving a roster must leave no temporary file")
}

func TestRosterConfigValidate(t *testing.T) {
	as := newAuthorities(t)
	for _, cfg := range []device.RosterConfig{
		{},
		{Authorities: []device.TrustedAuthority{{Key: as.cloud.PublicKey()[:31]}}},
		{Authorities: []device.TrustedAuthority{{Key: as.cloud.PublicKey(), Clinics: []string{"a b"}}}},
	} {
		_, err := device.NewRoster(cfg)
		assert.Error(t, err)
	}
}

// TestRosterScopeHoldsInEitherOrder: a hub record that claims a city
// replica ID first, dated years later, still loses to the cloud's record
// when that arrives (whatever a device's clock says, so a device whose
// clock is behind still takes its records); and a change signed with the
// hub's key verifies as the hub's clinic, never the city's.
func TestRosterScopeHoldsInEitherOrder(t *testing.T) {
	as := newAuthorities(t)
	city := newIdentity(t, "city-hospital")
	hijack, err := device.Generate(city.ReplicaID(), "kamuga")
	require.NoError(t, err)
	real := enrol(t, as.cloud, city.Public(), t0, time.Hour)
	claim := enrol(t, as.hub, hijack.Public(), t0.Add(5*365*24*time.Hour), 6*365*24*time.Hour)

	for _, order := range [][][]byte{{claim, real}, {real, claim}} {
		r := newRoster(t, &clock{now: t0}, as.trust()...)
		for _, rec := range order {
			_, _ = r.Add(rec)
			_, _ = r.LearnSigner(rec)
		}
		pub, err := r.Lookup(city.ReplicaID())
		require.NoError(t, err)
		assert.True(t, pub.Equal(city.Public()), "the cloud's record is in force whatever the order")
		h := [32]byte{1}
		clinic, err := r.VerifyChange(city.ReplicaID(), "c", h, hijack.SignChange("c", h))
		if err == nil {
			assert.Equal(t, "kamuga", clinic, "the hub's key signs only as a kamuga device")
		}
		clinic, err = r.VerifyChange(city.ReplicaID(), "c", h, city.SignChange("c", h))
		require.NoError(t, err)
		assert.Equal(t, "city-hospital", clinic)
	}

}

// TestRosterSkipsAStaleOutOfScopeRecord: a roster file that still holds a
// hub's older record of a device the cloud has since moved to a clinic
// the hub does not serve merges (that record is skipped), with the file's
// other devices.
func TestRosterSkipsAStaleOutOfScopeRecord(t *testing.T) {
	as := newAuthorities(t)
	dev := newIdentity(t, "kamuga")
	moved, err := device.Generate(dev.ReplicaID(), "city-hospital")
	require.NoError(t, err)
	r := newRoster(t, &clock{now: t0.Add(time.Hour)}, as.trust()...)
	_, err = r.Add(enrol(t, as.cloud, moved.Public(), t0.Add(time.Hour), 48*time.Hour))
	require.NoError(t, err)

	hubFile := newRoster(t, &clock{now: t0.Add(time.Hour)}, as.trust()...)
	lwanda := newIdentity(t, "lwanda")
	for _, rec := range [][]byte{enrol(t, as.hub, dev.Public(), t0, 48*time.Hour), enrol(t, as.hub, lwanda.Public(), t0, 48*time.Hour)} {
		_, err = hubFile.Add(rec)
		require.NoError(t, err)
	}
	res, err := r.Merge(hubFile.Encode())
	require.NoError(t, err, "a stale record is skipped, not a forgery")
	assert.Equal(t, 1, res.Skipped)
	pub, err := r.Lookup(dev.ReplicaID())
	require.NoError(t, err)
	assert.True(t, pub.Equal(moved.Public()), "the cloud's move stands")
	_, err = r.Lookup(lwanda.ReplicaID())
	assert.NoError(t, err, "the file's other devices are added")
}

// A roster saved after a device was revoked, or enrolled again with new
// keys, and read back still verifies the changes the device signed
// before with its old key, while the device stays revoked.
func TestEncodedRosterKeepsEarlierKeys(t *testing.T) {
	as := newAuthorities(t)
	c := &clock{now: t0}
	tablet := newIdentity(t, "kamuga")
	r := newRoster(t, c, as.trust()...)
	_, err := r.Add(enrol(t, as.hub, tablet.Public(), t0, 24*time.Hour))
	require.NoError(t, err)
	hash := [32]byte{1, 2, 3}
	sig := tablet.SignChange("chart", hash)
	_, err = r.Add(mustRevoke(t, as.hub, tablet.ReplicaID(), "kamuga"))
	require.NoError(t, err)
	_, err = r.VerifyChange(tablet.ReplicaID(), "chart", hash, sig)
	require.NoError(t, err, "the roster that saw the enrolment verifies the change")

	read := newRoster(t, c, as.trust()...)
	_, err = read.Merge(r.Encode())
	require.NoError(t, err)
	clinic, err := read.VerifyChange(tablet.ReplicaID(), "chart", hash, sig)
	require.NoError(t, err, "the roster read back verifies the change made before the revocation")
	assert.Equal(t, "kamuga", clinic)
	_, err = read.Lookup(tablet.ReplicaID())
	require.ErrorIs(t, err, device.ErrRevoked, "and the device stays revoked")
	assert.Len(t, read.Enrolments(), 1, "one record in force")
	assert.Equal(t, r.Encode(), read.Encode(), "read back, the roster encodes alike")
}
