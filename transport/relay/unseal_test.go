package relay

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/replica"
)

// TestUnsealChecksAsOpenDoes: Unseal hands back the replica bundle a
// genuine relay bundle carries, with its sender's enrolment, and refuses
// what an endpoint refuses, with the same errors, applying nothing; what
// it hands back applies as Open would have applied it.
func TestUnsealChecksAsOpenDoes(t *testing.T) {
	f := newTamperFixture(t)
	ctx := context.Background()
	a, b := f.a.r.ID(), f.b.r.ID()
	inner, err := f.a.r.MakeBundle(ctx, b)
	require.NoError(t, err)
	before := snapshot(t, f.b.r)

	u, err := Unseal(f.raw, f.b.id, f.w.roster, f.w.clock.Now())
	require.NoError(t, err)
	assert.Equal(t, f.env.Header, u.Header)
	assert.Equal(t, a, u.From.ReplicaID)
	assert.Equal(t, "kamuga", u.From.Clinic, "the sender's clinic, as its enrolment says")
	decoded, err := replica.DecodeBundle(u.Bundle)
	require.NoError(t, err)
	assert.Equal(t, a, decoded.From)
	assert.Equal(t, b, decoded.To)
	assert.Equal(t, before, snapshot(t, f.b.r), "Unseal applies nothing")

	ack, err := seal(f.b.id, Header{Kind: KindAck, Sender: b, Recipient: a, ID: newID(), Created: t0, Expires: t0.Add(time.Hour)}, mustAck(t, f.env.ID))
	require.NoError(t, err)
	lying, err := f.c.e.SealBundle(b, inner.Data) // C seals A's bundle as its own
	require.NoError(t, err)
	tests := []struct {
		name string
		raw  []byte
		id   *device.Identity
		now  time.Time
		want error
	}{
		{"truncated", f.raw[:len(f.raw)/2], f.b.id, t0, ErrMalformed},
		{"addressed to another replica", f.raw, f.c.id, t0, ErrWrongRecipient},
		{"an acknowledgement", ack, f.a.id, t0, ErrMalformed},
		{"expired", f.raw, f.b.id, f.env.Expires, ErrExpired},
		{"from a stranger", resign(t, f.stranger, Header{Kind: KindChanges, Sender: f.stranger.ReplicaID(), Recipient: b, ID: newID(), Created: t0, Expires: t0.Add(time.Hour)}, f.env.Payload), f.b.id, t0, device.ErrUnknownDevice},
		{"signed by another key", resign(t, f.c.id, f.env.Header, f.env.Payload), f.b.id, t0, device.ErrBadSignature},
		{"carrying another sender's bundle", lying, f.b.id, t0, ErrHeaderMismatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Unseal(tc.raw, tc.id, f.w.roster, tc.now)
			require.ErrorIs(t, err, tc.want)
			assert.True(t, isBadInput(err), "a refusal matches BadInput: %v", err)
		})
	}

	rec, err := f.b.r.ReceiveFrom(ctx, u.Bundle, replica.ReceiveOptions{Sender: u.Sender})
	require.NoError(t, err)
	assert.Positive(t, rec.Applied, "the unsealed bundle applies")
}

// TestSealedAnswerOpensAtTheSender: a bundle a recipient seals with Seal
// for the sender of what it unsealed opens at the sender's endpoint, and
// its acknowledgement (Acknowledge) lets the sender's node drop the
// bundle it sent.
func TestSealedAnswerOpensAtTheSender(t *testing.T) {
	f := newTamperFixture(t)
	ctx := context.Background()
	a := f.a.r.ID()
	pr, err := f.a.e.Node().Put(ctx, f.raw) // A's outbox holds what it sent
	require.NoError(t, err)
	require.True(t, pr.Stored)

	u, err := Unseal(f.raw, f.b.id, f.w.roster, f.w.clock.Now())
	require.NoError(t, err)
	_, err = f.b.r.ReceiveFrom(ctx, u.Bundle, replica.ReceiveOptions{Sender: u.Sender})
	require.NoError(t, err)
	register(t, f.b.r, "Achieng")
	answer, err := f.b.r.MakeBundle(ctx, a)
	require.NoError(t, err)
	sealed, err := Seal(f.b.id, f.w.roster, a, answer.Data, f.w.clock.Now(), time.Hour)
	require.NoError(t, err)
	_, err = Seal(f.b.id, f.w.roster, f.stranger.ReplicaID(), answer.Data, f.w.clock.Now(), time.Hour)
	require.ErrorIs(t, err, device.ErrUnknownDevice, "nothing is sealed for a replica the roster does not know")

	rec, err := f.a.e.Open(ctx, sealed)
	require.NoError(t, err)
	assert.Equal(t, 1, rec.Applied, "the answer's new chart")
	assert.Equal(t, heads(t, f.b.r), heads(t, f.a.r), "A holds what B holds")

	acks, err := Acknowledge(f.b.id, a, []Header{u.Header, {Sender: f.c.r.ID(), ID: newID()}}, f.w.clock.Now())
	require.NoError(t, err)
	require.Len(t, acks, 1)
	env, err := Parse(acks[0])
	require.NoError(t, err)
	assert.Equal(t, []string{f.env.ID}, env.Acked(), "only the sender's bundles are acknowledged to it")
	pr, err = f.a.e.Node().Put(ctx, acks[0])
	require.NoError(t, err)
	assert.Equal(t, []string{f.env.Key()}, pr.Pruned, "the acknowledgement lets A's node drop the bundle")
}

// TestVerifyEnrolledAuthenticatesARevokedSender: Verify refuses a revoked
// sender without looking at its signature; VerifyEnrolled tells whether
// the device itself signed the bundle (its key as enrolled before the
// revocation), or someone naming it, or a device never enrolled.
func TestVerifyEnrolledAuthenticatesARevokedSender(t *testing.T) {
	f := newTamperFixture(t)
	a := f.a.r.ID()
	forged := mustParse(t, resign(t, f.c.id, f.env.Header, f.env.Payload))
	stranger := mustParse(t, resign(t, f.stranger, Header{Kind: KindChanges, Sender: f.stranger.ReplicaID(), Recipient: f.b.r.ID(),
		ID: newID(), Created: t0, Expires: t0.Add(time.Hour)}, f.env.Payload))

	pub, err := f.env.VerifyEnrolled(f.w.roster)
	require.NoError(t, err, "an enrolled sender's own bundle")
	assert.Equal(t, f.a.id.Public(), pub)

	rev, err := f.w.cloud.Revoke(a, "kamuga", f.w.clock.Now())
	require.NoError(t, err)
	_, err = f.w.roster.Add(rev)
	require.NoError(t, err)
	require.ErrorIs(t, f.env.Verify(f.w.roster), device.ErrRevoked)
	require.ErrorIs(t, forged.Verify(f.w.roster), device.ErrRevoked, "Verify cannot tell the device from someone naming it")

	pub, err = f.env.VerifyEnrolled(f.w.roster)
	require.NoError(t, err, "the revoked device's own bundle is still its own")
	assert.Equal(t, a, pub.ReplicaID)
	assert.Equal(t, "kamuga", pub.Clinic)
	_, err = forged.VerifyEnrolled(f.w.roster)
	assert.ErrorIs(t, err, device.ErrBadSignature, "a bundle naming the revoked device, signed by another")
	_, err = stranger.VerifyEnrolled(f.w.roster)
	assert.ErrorIs(t, err, device.ErrUnknownDevice)
}
