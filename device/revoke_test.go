package device_test

import (
	"encoding/binary"
	"hash/crc32"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/device"
)

const (
	chartA = "0c3c5c2e-6f1a-4d7e-9a51-5d8c2b7f0e11"
	chartB = "5b1f0c2a-9e3d-4a7b-8c6f-1d2e3f4a5b6c"
)

func TestRevokeAcceptingNamesTheChangesAccepted(t *testing.T) {
	cloud, err := device.NewAuthority()
	require.NoError(t, err)
	tablet := newIdentity(t, "kamuga")

	rec, err := cloud.RevokeAccepting(tablet.ReplicaID(), "kamuga", t0, map[string]uint64{chartA: 7, chartB: 1})
	require.NoError(t, err)
	e, err := device.DecodeEnrolment(rec)
	require.NoError(t, err)
	assert.True(t, e.Revoked)
	assert.Equal(t, map[string]uint64{chartA: 7, chartB: 1}, e.Accepted, "the revocation must carry the changes the authority accepts")
	assert.Equal(t, byte(2), rec[4], "a revocation naming its accepted changes is of format version 2")

	none, err := cloud.RevokeAccepting(tablet.ReplicaID(), "kamuga", t0, nil)
	require.NoError(t, err)
	e, err = device.DecodeEnrolment(none)
	require.NoError(t, err)
	assert.NotNil(t, e.Accepted, "a revocation accepting nothing must differ from one of the first format")
	assert.Empty(t, e.Accepted)

	old, err := cloud.Revoke(tablet.ReplicaID(), "kamuga", t0)
	require.NoError(t, err)
	assert.Equal(t, byte(1), old[4], "a revocation without accepted changes stays of format version 1, which older builds read")
	e, err = device.DecodeEnrolment(old)
	require.NoError(t, err)
	assert.Nil(t, e.Accepted)

	enrolment := enrol(t, cloud, tablet.Public(), t0, time.Hour)
	assert.Equal(t, byte(1), enrolment[4], "an enrolment stays of format version 1")
}

func TestRevokeAcceptingRefusesBadInput(t *testing.T) {
	cloud, err := device.NewAuthority()
	require.NoError(t, err)
	tablet := newIdentity(t, "kamuga")
	for name, accepted := range map[string]map[string]uint64{
		"empty chart ID": {"": 3},
		"sequence 0":     {chartA: 0},
		"long chart ID":  {string(make([]byte, device.MaxChartIDLen+1)): 1},
	} {
		_, err := cloud.RevokeAccepting(tablet.ReplicaID(), "kamuga", t0, accepted)
		assert.ErrorIs(t, err, device.ErrMalformed, name)
	}
	many := map[string]uint64{}
	for i := range 40000 {
		many[time.Unix(int64(i), 0).UTC().Format(time.RFC3339Nano)+"-chart-of-a-busy-clinic"] = uint64(i + 1)
	}
	_, err = cloud.RevokeAccepting(tablet.ReplicaID(), "kamuga", t0, many)
	assert.ErrorIs(t, err, device.ErrTooLarge, "a revocation past MaxRevocationBytes must be refused when made")
}

func TestAcceptedUpTo(t *testing.T) {
	as := newAuthorities(t)
	c := &clock{now: t0.Add(time.Hour)}
	tablet, other, old := newIdentity(t, "kamuga"), newIdentity(t, "kamuga"), newIdentity(t, "kamuga")
	r := newRoster(t, c, as.trust()...)
	for _, id := range []*device.Identity{tablet, other, old} {
		_, err := r.Add(enrol(t, as.cloud, id.Public(), t0, 24*time.Hour))
		require.NoError(t, err)
	}
	rev, err := as.cloud.RevokeAccepting(tablet.ReplicaID(), "kamuga", t0.Add(time.Minute), map[string]uint64{chartA: 7})
	require.NoError(t, err)
	_, err = r.Add(rev)
	require.NoError(t, err)
	oldRev, err := as.cloud.Revoke(old.ReplicaID(), "kamuga", t0.Add(time.Minute))
	require.NoError(t, err)
	_, err = r.Add(oldRev)
	require.NoError(t, err)

	for _, tc := range []struct {
		name, replica, chart string
		seq                  uint64
		revoked              bool
	}{
		{"a chart the revocation names", tablet.ReplicaID(), chartA, 7, true},
		{"a chart it does not name accepts nothing", tablet.ReplicaID(), chartB, 0, true},
		{"a device in force", other.ReplicaID(), chartA, 0, false},
		{"an unknown device", newIdentity(t, "kamuga").ReplicaID(), chartA, 0, false},
		{"a revocation of the first format names no limit", old.ReplicaID(), chartA, math.MaxUint64, true},
	} {
		seq, revoked := r.AcceptedUpTo(tc.replica, tc.chart)
		assert.Equal(t, tc.revoked, revoked, tc.name)
		assert.Equal(t, tc.seq, seq, tc.name)
	}

	// The roster file carries the revocation and its limit.
	again := newRoster(t, c, as.trust()...)
	_, err = again.Merge(r.Encode())
	require.NoError(t, err)
	seq, revoked := again.AcceptedUpTo(tablet.ReplicaID(), chartA)
	assert.True(t, revoked)
	assert.Equal(t, uint64(7), seq, "a roster file must carry the revocation's accepted changes")
}

// TestRevocationTravelsWithTheDevicesRecords: a replica passes a revoked
// device's revocation on with its signing records (SignerEnrolments), and
// one that learns them (LearnSigner) holds the device revoked with the
// same limit, as Add would.
func TestRevocationTravelsWithTheDevicesRecords(t *testing.T) {
	as := newAuthorities(t)
	c := &clock{now: t0.Add(time.Hour)}
	tablet := newIdentity(t, "kamuga")
	cloud := newRoster(t, c, as.trust()...)
	_, err := cloud.Add(enrol(t, as.cloud, tablet.Public(), t0, 24*time.Hour))
	require.NoError(t, err)
	rev, err := as.cloud.RevokeAccepting(tablet.ReplicaID(), "kamuga", t0.Add(time.Minute), map[string]uint64{chartA: 3})
	require.NoError(t, err)
	_, err = cloud.Add(rev)
	require.NoError(t, err)

	recs := cloud.SignerEnrolments(tablet.ReplicaID())
	require.Len(t, recs, 2, "the device's records must be its enrolment and its revocation")
	assert.Equal(t, rev, recs[1], "the revocation must travel last")

	peer := newRoster(t, c, as.trust()...)
	for _, rec := range recs {
		id, err := peer.LearnSigner(rec)
		require.NoError(t, err, "a trusted revocation must be learnt with the device's records")
		assert.Equal(t, tablet.ReplicaID(), id)
	}
	_, err = peer.Lookup(tablet.ReplicaID())
	assert.ErrorIs(t, err, device.ErrRevoked, "a revocation learnt with the device's records must cut it off")
	seq, revoked := peer.AcceptedUpTo(tablet.ReplicaID(), chartA)
	assert.True(t, revoked)
	assert.Equal(t, uint64(3), seq)
	hash := [32]byte{1}
	_, err = peer.VerifyChange(tablet.ReplicaID(), chartA, hash, tablet.SignChange(chartA, hash))
	assert.NoError(t, err, "a revoked device's signatures still verify: the limit is the caller's to apply")

	// Learning the same records again changes nothing; an earlier
	// enrolment learnt after the revocation does not undo it.
	for _, rec := range recs {
		_, err := peer.LearnSigner(rec)
		require.NoError(t, err)
	}
	_, err = peer.Lookup(tablet.ReplicaID())
	assert.ErrorIs(t, err, device.ErrRevoked)

	// A revocation by an authority that may not enrol the clinic is refused.
	strangerRev, err := as.hub.RevokeAccepting(newIdentity(t, "elsewhere").ReplicaID(), "elsewhere", t0, nil)
	require.NoError(t, err)
	_, err = peer.LearnSigner(strangerRev)
	assert.ErrorIs(t, err, device.ErrOutOfScope)
}

func TestRevocationsFor(t *testing.T) {
	as := newAuthorities(t)
	c := &clock{now: t0.Add(time.Hour)}
	r := newRoster(t, c, as.trust()...)
	kamuga1, kamuga2, lwanda := newIdentity(t, "kamuga"), newIdentity(t, "kamuga"), newIdentity(t, "lwanda")
	for _, id := range []*device.Identity{kamuga1, kamuga2, lwanda} {
		_, err := r.Add(enrol(t, as.cloud, id.Public(), t0, 24*time.Hour))
		require.NoError(t, err)
	}
	revLwanda, err := as.cloud.RevokeAccepting(lwanda.ReplicaID(), "lwanda", t0.Add(time.Minute), nil)
	require.NoError(t, err)
	_, err = r.Add(revLwanda)
	require.NoError(t, err)
	assert.Empty(t, r.RevocationsFor(kamuga2.ReplicaID()), "no device of kamuga is revoked")
	revKamuga, err := as.cloud.RevokeAccepting(kamuga1.ReplicaID(), "kamuga", t0.Add(time.Minute), nil)
	require.NoError(t, err)
	_, err = r.Add(revKamuga)
	require.NoError(t, err)
	assert.Equal(t, [][]byte{revKamuga}, r.RevocationsFor(kamuga2.ReplicaID()), "a device of kamuga is sent its clinic's revocations")
	assert.Len(t, r.RevocationsFor(newIdentity(t, "kamuga").ReplicaID()), 2, "a recipient the roster does not know (the cloud) is sent every revocation")
}

func TestDecodeRevocationRefusesNonCanonicalAccepted(t *testing.T) {
	cloud, err := device.NewAuthority()
	require.NoError(t, err)
	tablet := newIdentity(t, "kamuga")
	rec, err := cloud.RevokeAccepting(tablet.ReplicaID(), "kamuga", t0, map[string]uint64{chartA: 7})
	require.NoError(t, err)
	// A version 1 frame around a version 2 body, and a version 2 frame
	// around a version 1 body, are both malformed.
	v1 := append([]byte(nil), rec...)
	v1[4] = 1
	_, err = device.DecodeEnrolment(refresh(v1))
	assert.ErrorIs(t, err, device.ErrMalformed, "accepted changes on a record of the first format")
	old, err := cloud.Revoke(tablet.ReplicaID(), "kamuga", t0)
	require.NoError(t, err)
	v2 := append([]byte(nil), old...)
	v2[4] = 2
	_, err = device.DecodeEnrolment(refresh(v2))
	assert.ErrorIs(t, err, device.ErrMalformed, "a record of the second format must name its accepted changes")
	v3 := append([]byte(nil), rec...)
	v3[4] = 3
	_, err = device.DecodeEnrolment(refresh(v3))
	assert.ErrorIs(t, err, device.ErrVersion)
}

// refresh recomputes the checksum of a frame whose header was changed.
func refresh(data []byte) []byte {
	end := len(data) - 4
	return binary.BigEndian.AppendUint32(data[:end:end], crc32.Checksum(data[:end], crc32.MakeTable(crc32.Castagnoli)))
}
