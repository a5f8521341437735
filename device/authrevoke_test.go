package device_test

import (
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/chartsync/chartsync/device"
)

// hubScene is a hub whose key was stolen: devices it enrolled before the
// cloud revoked it (the cloud holds their records), one it enrolled
// before that the cloud never saw, and what the thief signs afterwards.
type hubScene struct {
	as authorities
	// listed: enrolled by the hub, held by the cloud when it revoked.
	listed      *device.Identity
	listedRec   []byte
	unseen      *device.Identity // enrolled by the hub before, never seen by the cloud
	unseenRec   []byte
	rogue       *device.Identity // enrolled by the stolen key after the revocation
	rogueRec    []byte
	renewal     []byte // the stolen key renews listed's enrolment with the thief's key
	thief       *device.Identity
	revokedByID *device.Identity // a device of the cloud the cloud revoked
	cloudRec    []byte
	cloudRev    []byte
	reEnrol     []byte // the stolen key enrols revokedByID again, undoing its revocation
	hubRevokes  []byte // the stolen key revokes a device of the cloud
	revocation  []byte // the cloud's revocation of the hub's key
}

func newHubScene(t testing.TB) hubScene {
	as := newAuthorities(t)
	s := hubScene{as: as, listed: newIdentity(t, "kamuga"), unseen: newIdentity(t, "lwanda"), rogue: newIdentity(t, "kamuga"),
		revokedByID: newIdentity(t, "kamuga")}
	s.listedRec = enrol(t, as.hub, s.listed.Public(), t0, 365*24*time.Hour)
	s.unseenRec = enrol(t, as.hub, s.unseen.Public(), t0, 365*24*time.Hour)
	s.cloudRec = enrol(t, as.cloud, s.revokedByID.Public(), t0, 365*24*time.Hour)
	var err error
	s.cloudRev, err = as.cloud.RevokeAccepting(s.revokedByID.ReplicaID(), "kamuga", t0.Add(time.Hour), nil)
	require.NoError(t, err)
	s.revocation, err = as.cloud.RevokeAuthority(as.hub.PublicKey(), t0.Add(2*time.Hour), [][]byte{s.listedRec})
	require.NoError(t, err)
	// After the revocation, with the stolen key:
	later := t0.Add(3 * time.Hour)
	s.rogueRec = enrol(t, as.hub, s.rogue.Public(), later, 365*24*time.Hour)
	s.thief, err = device.Generate(s.listed.ReplicaID(), "kamuga")
	require.NoError(t, err)
	s.renewal = enrol(t, as.hub, s.thief.Public(), later, 365*24*time.Hour)
	s.reEnrol = enrol(t, as.hub, s.revokedByID.Public(), later, 365*24*time.Hour)
	s.hubRevokes, err = as.hub.RevokeAccepting(s.listed.ReplicaID(), "kamuga", later, nil)
	require.NoError(t, err)
	return s
}

// TestAuthorityRevocation: a roster holding the cloud's revocation of a
// hub's key keeps the hub's records the revocation accepts, and refuses
// every other record of the key with ErrRevokedAuthority, whether it
// arrived before the revocation or after. A device only refused records
// enrol counts as revoked accepting nothing (AcceptedUpTo), so its
// changes are refused as a revoked device's; a change signed with a key
// a refused record gave a device in force otherwise is refused by
// VerifyChange.
func TestAuthorityRevocation(t *testing.T) {
	hash := sha256.Sum256([]byte("a change"))
	for _, tc := range []struct {
		name string
		// records added in order; the revocation is among them
		recs [][]byte
		// who is looked up, and what VerifyChange of whose signature gives
		lookup  *device.Identity
		wantErr error // Lookup's error, nil: in force
		signer  *device.Identity
		signErr error // VerifyChange's error for signer's signature
	}{
		{name: "listed, added before", lookup: nil},
		{name: "listed, added after the revocation"},
		{name: "unlisted, added before"},
		{name: "unlisted, added after"},
		{name: "rogue renewal of a listed device, before"},
		{name: "rogue renewal of a listed device, after"},
		{name: "rogue re-enrolment undoing the cloud's revocation, before"},
		{name: "rogue revocation of a listed device, after"},
	} {
		s := newHubScene(t)
		switch tc.name {
		case "listed, added before":
			tc.recs, tc.lookup, tc.signer = [][]byte{s.listedRec, s.revocation}, s.listed, s.listed
		case "listed, added after the revocation":
			tc.recs, tc.lookup, tc.signer = [][]byte{s.revocation, s.listedRec}, s.listed, s.listed
		case "unlisted, added before":
			tc.recs, tc.lookup, tc.wantErr, tc.signer = [][]byte{s.unseenRec, s.revocation}, s.unseen, device.ErrRevokedAuthority, s.unseen
		case "unlisted, added after":
			tc.recs, tc.lookup, tc.wantErr, tc.signer = [][]byte{s.revocation, s.rogueRec}, s.rogue, device.ErrRevokedAuthority, s.rogue
		case "rogue renewal of a listed device, before":
			tc.recs, tc.lookup, tc.signer, tc.signErr = [][]byte{s.listedRec, s.renewal, s.revocation}, s.listed, s.thief, device.ErrRevokedAuthority
		case "rogue renewal of a listed device, after":
			tc.recs, tc.lookup, tc.signer, tc.signErr = [][]byte{s.listedRec, s.revocation, s.renewal}, s.listed, s.thief, device.ErrRevokedAuthority
		case "rogue re-enrolment undoing the cloud's revocation, before":
			tc.recs, tc.lookup, tc.wantErr, tc.signer = [][]byte{s.cloudRec, s.cloudRev, s.reEnrol, s.revocation}, s.revokedByID, device.ErrRevoked, s.revokedByID
		case "rogue revocation of a listed device, after":
			tc.recs, tc.lookup, tc.signer = [][]byte{s.listedRec, s.revocation, s.hubRevokes}, s.listed, s.listed
		}
		t.Run(tc.name, func(t *testing.T) {
			c := &clock{now: t0.Add(4 * time.Hour)}
			check := func(t *testing.T, r *device.Roster, how string) {
				pub, err := r.Lookup(tc.lookup.ReplicaID())
				if tc.wantErr == nil {
					require.NoError(t, err, how)
					assert.Equal(t, tc.lookup.Public().SignKey, pub.SignKey, "%s: the device is in force with its own key", how)
				} else {
					require.ErrorIs(t, err, tc.wantErr, how)
				}
				upto, revoked := r.AcceptedUpTo(tc.lookup.ReplicaID(), chartA)
				assert.Equal(t, tc.wantErr != nil, revoked, "%s: a device refused counts as revoked, its changes refused as a revoked device's", how)
				assert.Zero(t, upto, how)
				_, err = r.VerifyChange(tc.signer.ReplicaID(), chartA, hash, tc.signer.SignChange(chartA, hash))
				if tc.signErr == nil {
					require.NoError(t, err, how)
				} else {
					require.ErrorIs(t, err, tc.signErr, how)
				}
			}
			// One record at a time (Add), as LearnSigner takes them, and
			// as a roster file (Merge), then saved and read again.
			added := newRoster(t, c, s.as.trust()...)
			for _, rec := range tc.recs {
				_, err := added.Add(rec)
				if err != nil && !errors.Is(err, device.ErrRevokedAuthority) {
					require.NoError(t, err)
				}
			}
			check(t, added, "added")
			merged := newRoster(t, c, s.as.trust()...)
			for _, rec := range tc.recs {
				_, err := merged.Merge(rec)
				require.NoError(t, err, "a refused record is skipped, not an error of the merge")
			}
			check(t, merged, "merged one by one")
			again := newRoster(t, c, s.as.trust()...)
			_, err := again.Merge(added.Encode())
			require.NoError(t, err)
			check(t, again, "its roster file merged")
		})
	}
}

func TestAuthorityRevocationRefusesRecordsAfterIt(t *testing.T) {
	s := newHubScene(t)
	r := newRoster(t, &clock{now: t0.Add(4 * time.Hour)}, s.as.trust()...)
	_, err := r.Add(s.revocation)
	require.NoError(t, err)
	for name, rec := range map[string][]byte{"an enrolment": s.rogueRec, "a renewal": s.renewal, "a revocation": s.hubRevokes} {
		_, err := r.Add(rec)
		assert.ErrorIs(t, err, device.ErrRevokedAuthority, name)
		assert.ErrorIs(t, err, device.ErrRevoked, "%s: it matches ErrRevoked too", name)
	}
	res, err := r.Merge(s.rogueRec)
	require.NoError(t, err)
	assert.Equal(t, device.MergeResult{Skipped: 1, Refused: 1}, res)
	_, err = r.LearnSigner(s.rogueRec)
	assert.ErrorIs(t, err, device.ErrRevokedAuthority, "a record learnt with changes is refused too")
}

// TestAuthorityRevocationScope: only an authority that may enrol every
// clinic of the hub, and more, revokes it; an authority never revokes
// itself, and no one revokes the cloud; forged and untrusted revocations
// are refused.
func TestAuthorityRevocationScope(t *testing.T) {
	as := newAuthorities(t)
	region, err := device.NewAuthority() // kamuga, lwanda and siaya: broader than the hub
	require.NoError(t, err)
	narrow, err := device.NewAuthority() // siaya only
	require.NoError(t, err)
	trust := append(as.trust(),
		device.TrustedAuthority{Key: region.PublicKey(), Clinics: []string{"kamuga", "lwanda", "siaya"}},
		device.TrustedAuthority{Key: narrow.PublicKey(), Clinics: []string{"siaya"}})
	revoke := func(by *device.Authority, key *device.Authority) []byte {
		rec, err := by.RevokeAuthority(key.PublicKey(), t0, nil)
		require.NoError(t, err)
		return rec
	}
	good := revoke(as.cloud, as.hub)
	for _, tc := range []struct {
		name string
		rec  []byte
		want error
	}{
		{"the cloud revokes the hub", good, nil},
		{"a broader region revokes the hub", revoke(region, as.hub), nil},
		{"the hub revokes the cloud", revoke(as.hub, as.cloud), device.ErrOutOfScope},
		{"the hub revokes the region", revoke(as.hub, region), device.ErrOutOfScope},
		{"an authority of other clinics revokes the hub", revoke(narrow, as.hub), device.ErrOutOfScope},
		{"an untrusted key revokes the hub", revoke(as.stranger, as.hub), device.ErrUnknownAuthority},
		{"an altered revocation", reframe(t, good, func(body []byte) { body[40] ^= 1 }), device.ErrBadSignature},
		{"a revocation of a key the roster does not trust, by the cloud", revoke(as.cloud, as.stranger), nil},
		{"a revocation of a key the roster does not trust, by a hub", revoke(narrow, as.stranger), device.ErrOutOfScope},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRoster(t, &clock{now: t0}, trust...)
			_, err := r.AddAuthorityRevocation(tc.rec)
			if tc.want == nil {
				require.NoError(t, err)
				assert.Len(t, r.AuthorityRevocations(), 1)
				return
			}
			require.ErrorIs(t, err, tc.want)
			assert.Empty(t, r.AuthorityRevocations(), "a refused revocation is not kept")
			_, err = r.Merge(tc.rec)
			require.ErrorIs(t, err, tc.want, "a roster file holding it is refused as a whole")
		})
	}
	_, err = as.hub.RevokeAuthority(as.hub.PublicKey(), t0, nil)
	assert.ErrorIs(t, err, device.ErrMalformed, "an authority cannot revoke itself")
	_, err = as.cloud.RevokeAuthority(as.hub.PublicKey(), t0, [][]byte{enrol(t, as.cloud, newIdentity(t, "kamuga").Public(), t0, time.Hour)})
	assert.ErrorIs(t, err, device.ErrMalformed, "a revocation accepts records of the key it revokes only")
	self := reframe(t, good, func(body []byte) { copy(body[32:64], body[:32]) })
	_, err = device.DecodeAuthorityRevocation(self)
	assert.ErrorIs(t, err, device.ErrMalformed, "a record revoking its own signer is malformed")
}

// TestRevokedHubsRevocationsAreRefused: a revocation of another
// authority signed by a revoked key is refused unless accepted.
func TestRevokedHubsRevocationsAreRefused(t *testing.T) {
	as := newAuthorities(t)
	village, err := device.NewAuthority()
	require.NoError(t, err)
	trust := append(as.trust(), device.TrustedAuthority{Key: village.PublicKey(), Clinics: []string{"kamuga"}})
	tablet := newIdentity(t, "kamuga")
	villageRec := enrol(t, village, tablet.Public(), t0, time.Hour*24)
	hubRevokesVillage, err := as.hub.RevokeAuthority(village.PublicKey(), t0.Add(3*time.Hour), nil)
	require.NoError(t, err)
	cloudRevokesHub, err := as.cloud.RevokeAuthority(as.hub.PublicKey(), t0.Add(2*time.Hour), nil)
	require.NoError(t, err)
	r := newRoster(t, &clock{now: t0.Add(4 * time.Hour)}, trust...)
	for _, rec := range [][]byte{villageRec, hubRevokesVillage, cloudRevokesHub} {
		_, err := r.Merge(rec)
		require.NoError(t, err)
	}
	_, err = r.Lookup(tablet.ReplicaID())
	require.NoError(t, err, "the stolen hub key's revocation of the village authority is not in force once the hub is revoked")
	_, err = r.AddAuthorityRevocation(hubRevokesVillage)
	assert.ErrorIs(t, err, device.ErrRevokedAuthority)
}

// TestAuthorityRevocationTravels: the revocation goes with every bundle
// (RevocationsFor, first), with a hub-enrolled device's records
// (SignerEnrolments), and in the roster file; a roster that learns it
// there (LearnSigner) refuses the hub's later records.
func TestAuthorityRevocationTravels(t *testing.T) {
	s := newHubScene(t)
	c := &clock{now: t0.Add(4 * time.Hour)}
	cloud := newRoster(t, c, s.as.trust()...)
	_, err := cloud.Add(s.listedRec)
	require.NoError(t, err)
	_, err = cloud.Add(s.revocation)
	require.NoError(t, err)

	assert.Equal(t, [][]byte{s.revocation}, cloud.RevocationsFor(s.listed.ReplicaID()), "every bundle carries it")
	assert.Equal(t, [][]byte{s.revocation, s.listedRec}, cloud.SignerEnrolments(s.listed.ReplicaID()),
		"a hub-enrolled device's records go with the revocation of its hub, first")

	for name, recs := range map[string][][]byte{
		"learnt with a bundle":    cloud.RevocationsFor("someone"),
		"learnt with its changes": cloud.SignerEnrolments(s.listed.ReplicaID()),
	} {
		t.Run(name, func(t *testing.T) {
			clinic := newRoster(t, c, s.as.trust()...)
			for _, rec := range recs {
				_, err := clinic.LearnSigner(rec)
				require.NoError(t, err)
			}
			_, err := clinic.Add(s.rogueRec)
			require.ErrorIs(t, err, device.ErrRevokedAuthority)
		})
	}
	clinic := newRoster(t, c, s.as.trust()...)
	res, err := clinic.Merge(cloud.Encode())
	require.NoError(t, err)
	assert.Equal(t, 2, res.Added)
	require.Len(t, clinic.AuthorityRevocations(), 1, "the roster file carries it")
	_, err = clinic.Add(s.rogueRec)
	require.ErrorIs(t, err, device.ErrRevokedAuthority)
	assert.Equal(t, [][]byte{s.listedRec}, cloud.RecordsBy(s.as.hub.PublicKey()), "what the cloud holds of the hub")
}

// TestLaterAuthorityRevocationReplacesEarlier: a revocation issued later
// (one accepting a record the first did not know) replaces the earlier,
// whatever order they arrive in.
func TestLaterAuthorityRevocationReplacesEarlier(t *testing.T) {
	s := newHubScene(t)
	wider, err := s.as.cloud.RevokeAuthority(s.as.hub.PublicKey(), t0.Add(5*time.Hour), [][]byte{s.listedRec, s.unseenRec})
	require.NoError(t, err)
	for name, order := range map[string][][]byte{"in order": {s.revocation, wider}, "reversed": {wider, s.revocation}} {
		t.Run(name, func(t *testing.T) {
			r := newRoster(t, &clock{now: t0.Add(6 * time.Hour)}, s.as.trust()...)
			for _, rec := range append(order, s.unseenRec) {
				_, err := r.Add(rec)
				require.NoError(t, err)
			}
			_, err := r.Lookup(s.unseen.ReplicaID())
			require.NoError(t, err)
		})
	}
}

// TestAuthorityRevocationOrderProperty: whatever order a roster takes
// the records of a revoked hub and its devices in, and whether one by
// one, learnt or as a roster file, it settles on the same devices in
// force as a roster that took the revocation first.
func TestAuthorityRevocationOrderProperty(t *testing.T) {
	s := newHubScene(t)
	recs := [][]byte{s.listedRec, s.unseenRec, s.rogueRec, s.renewal, s.cloudRec, s.cloudRev, s.reEnrol, s.hubRevokes, s.revocation}
	ids := []*device.Identity{s.listed, s.unseen, s.rogue, s.revokedByID, s.thief}
	hash := sha256.Sum256([]byte("a change"))
	c := &clock{now: t0.Add(4 * time.Hour)}
	type outcome struct {
		key    string
		err    error
		signed error
	}
	classify := func(err error) error {
		for _, target := range []error{device.ErrRevokedAuthority, device.ErrRevoked, device.ErrUnknownDevice, device.ErrBadSignature} {
			if errors.Is(err, target) {
				return target
			}
		}
		return err
	}
	outcomes := func(r *device.Roster) []outcome {
		var out []outcome
		for _, id := range ids {
			pub, err := r.Lookup(id.ReplicaID())
			_, serr := r.VerifyChange(id.ReplicaID(), chartA, hash, id.SignChange(chartA, hash))
			out = append(out, outcome{key: device.Fingerprint(pub.SignKey), err: classify(err), signed: classify(serr)})
		}
		return out
	}
	first := newRoster(t, c, s.as.trust()...)
	for _, rec := range append([][]byte{s.revocation}, recs...) {
		_, _ = first.Add(rec)
	}
	want := outcomes(first)
	rapid.Check(t, func(rt *rapid.T) {
		order := rapid.Permutation(recs).Draw(rt, "order")
		how := rapid.SampledFrom([]string{"add", "merge", "learn-then-add"}).Draw(rt, "how")
		r, err := device.NewRoster(device.RosterConfig{Authorities: s.as.trust(), Now: c.Now})
		require.NoError(rt, err)
		for _, rec := range order {
			switch how {
			case "add":
				_, _ = r.Add(rec)
			case "merge":
				_, err := r.Merge(rec)
				require.NoError(rt, err)
			case "learn-then-add":
				_, _ = r.LearnSigner(rec)
				_, _ = r.Add(rec)
			}
		}
		assert.Equal(rt, want, outcomes(r), "order %d", len(order))
		again, err := device.NewRoster(device.RosterConfig{Authorities: s.as.trust(), Now: c.Now})
		require.NoError(rt, err)
		_, err = again.Merge(r.Encode())
		require.NoError(rt, err)
		assert.Equal(rt, want, outcomes(again), "its roster file read again")
	})
}

// TestRevokeAuthorityBounds: a revocation accepting a thousand records
// is read back accepting exactly those; a file over MaxRevocationBytes
// is refused unread.
func TestRevokeAuthorityBounds(t *testing.T) {
	as := newAuthorities(t)
	pub := newIdentity(t, "kamuga").Public()
	recs := make([][]byte, 1001)
	for i := range recs {
		recs[i] = enrol(t, as.hub, pub, t0.Add(time.Duration(i)*time.Second), time.Hour)
	}
	rec, err := as.cloud.RevokeAuthority(as.hub.PublicKey(), t0, recs[:1000])
	require.NoError(t, err)
	v, err := device.DecodeAuthorityRevocation(rec)
	require.NoError(t, err)
	assert.Len(t, v.Accepted, 1000)
	for _, r := range recs[:1000] {
		require.True(t, v.Accepts(r))
	}
	assert.False(t, v.Accepts(recs[1000]))
	_, err = device.DecodeAuthorityRevocation(append(rec, make([]byte, device.MaxRevocationBytes)...))
	assert.ErrorIs(t, err, device.ErrTooLarge)
}
