package relay

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/internal/wire"
	"github.com/chartsync/chartsync/record"
)

// tamperFixture: A has a chart B lacks; raw is the relay bundle A sealed
// for B. C is another enrolled device; stranger is not enrolled.
type tamperFixture struct {
	w        *world
	a, b, c  *site
	stranger *device.Identity
	raw      []byte
	env      *Envelope
}

func newTamperFixture(t *testing.T) *tamperFixture {
	ctx := context.Background()
	w := newWorld(t, testDir(t))
	f := &tamperFixture{w: w, a: w.site(t, "a"), b: w.site(t, "b"), c: w.site(t, "c")}
	t.Cleanup(f.a.close)
	t.Cleanup(f.b.close)
	t.Cleanup(f.c.close)
	stranger, err := device.Generate(newID(), "kamuga")
	require.NoError(t, err)
	f.stranger = stranger
	chart := register(t, f.a.r, "Wanjiru")
	_, err = f.a.r.Edit(ctx, chart, nurse, record.AddAllergy{Substance: "Penicillin", Reaction: "rash", Severity: "moderate"})
	require.NoError(t, err)
	f.raw, err = f.a.e.Seal(ctx, f.b.r.ID())
	require.NoError(t, err)
	f.env, err = Parse(f.raw)
	require.NoError(t, err)
	return f
}

// resign builds a relay bundle with the given header and payload, signed
// by signer, as a forger holding that key would.
func resign(t *testing.T, signer *device.Identity, h Header, payload []byte) []byte {
	t.Helper()
	raw, err := seal(signer, h, payload)
	require.NoError(t, err)
	return raw
}

// reframe edits a relay bundle's frame body and frames it again with a
// correct checksum, as a forger would.
func reframe(t *testing.T, raw []byte, edit func(body []byte) []byte) []byte {
	t.Helper()
	_, body, err := wire.Decode(raw, frameKind, Version, MaxBundleBytes)
	require.NoError(t, err)
	return wire.Encode(frameKind, Version, edit(slices.Clone(body)))
}

// deliver hands raw to B as a carrier would (a file landing in its node)
// and runs B's receiving side. It checks that B's replica, its node and
// its endpoint state are unchanged when the bundle is refused.
func (f *tamperFixture) deliver(t *testing.T, raw []byte) error {
	t.Helper()
	ctx := context.Background()
	before := snapshot(t, f.b.r)
	heldBefore, err := f.b.e.Node().Items(ctx)
	require.NoError(t, err)
	seenBefore := len(f.b.e.st.Seen)

	// Straight to the endpoint, and through B's node like a carrier.
	_, openErr := f.b.e.Open(ctx, raw)
	path := filepath.Join(f.b.e.Node().Dir(), "from-phone.relay")
	require.NoError(t, os.WriteFile(path, raw, 0o600))
	_, collectErr := f.b.e.Collect(ctx, "")
	if openErr == nil || collectErr == nil {
		return nil
	}
	assert.Equal(t, before, snapshot(t, f.b.r), "a refused bundle changed B's replica")
	heldAfter, err := f.b.e.Node().Items(ctx)
	require.NoError(t, err)
	if len(heldAfter) > len(heldBefore) {
		// Only a bundle whose signature verifies may stay in the node
		// (acknowledged: it was refused once, and needs no carrying).
		env, err := Parse(raw)
		require.NoError(t, err)
		assert.NoError(t, env.Verify(f.w.roster), "B's node kept a bundle whose signature does not verify")
	} else {
		assert.LessOrEqual(t, len(f.b.e.st.Seen), seenBefore+1)
	}
	_, err = os.Stat(path)
	assert.ErrorIs(t, err, os.ErrNotExist, "a refused file stays in the inbox")
	assert.True(t, isBadInput(collectErr), "B's node or endpoint refused with %v, which is not a typed refusal", collectErr)
	return openErr
}

func TestTamperingRefused(t *testing.T) {
	f := newTamperFixture(t)
	h := f.env.Header
	a, b, c := f.a.r.ID(), f.b.r.ID(), f.c.r.ID()
	with := func(edit func(*Header)) Header { h2 := h; edit(&h2); return h2 }
	// A bundle signed by its true sender gets a fresh ID: an ID B has
	// refused once is acknowledged, and a copy is no longer taken in.
	fresh := func(edit func(*Header)) Header { return with(func(h *Header) { edit(h); h.ID = newID() }) }
	same := func(*Header) {}
	cPub := f.c.id.Public()
	cRecipient, err := cPub.Recipient()
	require.NoError(t, err)
	inner, err := f.a.r.MakeBundle(context.Background(), b)
	require.NoError(t, err)
	toC, err := encrypt(inner.Data, cRecipient)
	require.NoError(t, err)
	bRecipient, err := f.b.id.Public().Recipient()
	require.NoError(t, err)
	toB, err := encrypt(inner.Data, bRecipient)
	require.NoError(t, err)

	tests := []struct {
		name string
		raw  []byte
		want error
	}{
		{"expiry extended", resignKeep(t, f, with(func(h *Header) { h.Expires = h.Expires.Add(365 * 24 * time.Hour) })), device.ErrBadSignature},
		{"created changed", resignKeep(t, f, with(func(h *Header) { h.Created = h.Created.Add(-time.Hour) })), device.ErrBadSignature},
		{"bundle ID changed", resignKeep(t, f, with(func(h *Header) { h.ID = newID() })), device.ErrBadSignature},
		{"sender changed to another enrolled device", resignKeep(t, f, with(func(h *Header) { h.Sender = c })), device.ErrBadSignature},
		{"sender changed to an unknown device", resignKeep(t, f, with(func(h *Header) { h.Sender = f.stranger.ReplicaID() })), device.ErrUnknownDevice},
		{"recipient changed", resignKeep(t, f, with(func(h *Header) { h.Recipient = c })), ErrWrongRecipient},
		{"payload byte flipped", reframe(t, f.raw, func(body []byte) []byte { body[len(body)-64-100] ^= 1; return body }), device.ErrBadSignature},
		{"signature byte flipped", reframe(t, f.raw, func(body []byte) []byte { body[len(body)-1] ^= 0x80; return body }), device.ErrBadSignature},
		{"signature removed", reframe(t, f.raw, func(body []byte) []byte { return body[:len(body)-64] }), ErrMalformed},
		{"re-signed by an unknown key in A's name", resign(t, f.stranger, h, f.env.Payload), device.ErrBadSignature},
		{"re-signed by an unknown key in its own name", resign(t, f.stranger, with(func(h *Header) { h.Sender = f.stranger.ReplicaID() }), f.env.Payload), device.ErrUnknownDevice},
		{"re-signed by another enrolled device in A's name", resign(t, f.c.id, h, f.env.Payload), device.ErrBadSignature},
		{"encrypted to the wrong recipient", resign(t, f.a.id, fresh(same), toC), ErrUndecryptable},
		{"signed by C, carrying A's bundle", resign(t, f.c.id, with(func(h *Header) { h.Sender = c }), toB), ErrHeaderMismatch},
		{"payload is not age", resign(t, f.a.id, fresh(same), []byte("plain text, not encrypted")), ErrUndecryptable},
		{"an acknowledgement's kind on a bundle of changes", resign(t, f.a.id, fresh(func(h *Header) { h.Kind = KindAck }), f.env.Payload), ErrMalformed},
		{"already expired", resign(t, f.a.id, fresh(func(h *Header) { h.Created = t0.Add(-2 * time.Hour); h.Expires = t0.Add(-time.Hour) }), f.env.Payload), ErrExpired},
		{"another format version", reversion(f.raw, Version+1), ErrVersion},
		{"empty", nil, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := f.deliver(t, tt.raw)
			require.ErrorIs(t, err, tt.want)
		})
	}

	t.Run("every byte flipped", func(t *testing.T) {
		for i := range f.raw {
			bad := slices.Clone(f.raw)
			bad[i] ^= 1 << (i % 8)
			_, err := f.b.e.Open(context.Background(), bad)
			require.Error(t, err, "byte %d flipped was accepted", i)
			require.True(t, isBadInput(err), "byte %d flipped: %v is not a typed refusal", i, err)
		}
	})
	t.Run("every byte flipped past the checksum", func(t *testing.T) {
		// A forger fixes the checksum: only the unsigned hop count may
		// change and still be accepted.
		_, body, err := wire.Decode(f.raw, frameKind, Version, MaxBundleBytes)
		require.NoError(t, err)
		_, hopLen := binary.Uvarint(body)
		step := max(1, len(body)/400)
		for i := hopLen; i < len(body); i += step {
			bad := reframe(t, f.raw, func(body []byte) []byte { body[i] ^= 0x04; return body })
			_, err := f.b.e.Open(context.Background(), bad)
			require.Error(t, err, "body byte %d flipped was accepted", i)
			require.True(t, isBadInput(err), "body byte %d flipped: %v is not a typed refusal", i, err)
		}
	})
	t.Run("truncated", func(t *testing.T) {
		for _, n := range []int{0, 1, 5, 12, len(f.raw) / 3, len(f.raw) / 2, len(f.raw) - 65, len(f.raw) - 1} {
			err := f.deliver(t, f.raw[:n])
			require.ErrorIs(t, err, ErrMalformed, "truncated to %d bytes", n)
		}
	})
	t.Run("sender revoked", func(t *testing.T) {
		rev, err := f.w.cloud.Revoke(a, "kamuga", f.w.clock.Now().Add(time.Second))
		require.NoError(t, err)
		roster, err := device.NewRoster(device.RosterConfig{Authorities: []device.TrustedAuthority{{Key: f.w.cloud.PublicKey()}}, Now: f.w.clock.Now})
		require.NoError(t, err)
		for _, e := range f.w.roster.Enrolments() {
			_, err := roster.Add(e.Raw())
			require.NoError(t, err)
		}
		_, err = roster.Add(rev)
		require.NoError(t, err)
		env, err := Parse(f.raw)
		require.NoError(t, err)
		assert.ErrorIs(t, env.Verify(roster), device.ErrRevoked, "a revoked sender's bundles must be refused")
	})

	// The undamaged bundle is accepted, so the refusals were for the damage.
	_, err = f.b.e.Open(context.Background(), f.raw)
	require.NoError(t, err)
	assert.Equal(t, snapshotCharts(t, f.a), snapshotCharts(t, f.b))
}

func snapshotCharts(t *testing.T, s *site) map[string]string { return heads(t, s.r) }

// resignKeep re-encodes the fixture's bundle with a changed header but the
// original signature, as a relay that edits a header would.
func resignKeep(t *testing.T, f *tamperFixture, h Header) []byte {
	t.Helper()
	hb, err := encodeHeader(h)
	require.NoError(t, err)
	body := binary.AppendUvarint(nil, uint64(h.Hops))
	body = wire.AppendBytes(body, hb)
	body = wire.AppendBytes(body, f.env.Payload)
	body = append(body, f.env.sig...)
	return wire.Encode(frameKind, Version, body)
}

func reversion(raw []byte, v byte) []byte {
	_, body, _ := wire.Decode(raw, frameKind, Version, MaxBundleBytes)
	return wire.Encode(frameKind, v, body)
}

func TestHopCountIsOutsideTheSignature(t *testing.T) {
	f := newTamperFixture(t)
	ctx := context.Background()
	hopped := f.env.withHops(7)
	env, err := Parse(hopped)
	require.NoError(t, err)
	assert.Equal(t, 7, env.Hops)
	require.NoError(t, env.Verify(f.w.roster), "relays change the hop count; the signature must still hold")
	rec, err := f.b.e.Open(ctx, hopped)
	require.NoError(t, err)
	assert.Positive(t, rec.Applied)

	// A node refuses a copy that made more hops than it accepts.
	n := f.w.node(t, "strict", NodeConfig{MaxHops: 3})
	defer n.Close()
	_, err = n.Put(ctx, f.env.withHops(4))
	require.ErrorIs(t, err, ErrTooManyHops)
	_, err = n.Put(ctx, f.env.withHops(3))
	require.NoError(t, err)
}

func TestReplayChangesNothing(t *testing.T) {
	f := newTamperFixture(t)
	ctx := context.Background()
	path := filepath.Join(f.b.e.Node().Dir(), "x.relay")
	require.NoError(t, os.WriteFile(path, f.raw, 0o600))
	st, err := f.b.e.Collect(ctx, "")
	require.NoError(t, err)
	require.Equal(t, 1, st.BundlesReceived)
	after := snapshot(t, f.b.r)
	stateAfter, err := os.ReadFile(f.b.e.state)
	require.NoError(t, err)

	for i, name := range []string{"x.relay", "x (1).relay", "again.relay"} {
		require.NoError(t, os.WriteFile(filepath.Join(f.b.e.Node().Dir(), name), f.raw, 0o600))
		st, err := f.b.e.Collect(ctx, "")
		require.NoError(t, err, "replay %d", i)
		assert.Zero(t, st.BundlesReceived, "a replayed bundle must not be opened again")
		assert.Equal(t, after, snapshot(t, f.b.r), "a replayed bundle changed B")
	}
	stateNow, err := os.ReadFile(f.b.e.state)
	require.NoError(t, err)
	assert.Equal(t, stateAfter, stateNow, "a replay changed B's relay state")

	// Even with B's node wiped (its tombstones gone), the remembered ID
	// keeps the bundle from being opened twice.
	require.NoError(t, os.RemoveAll(filepath.Join(f.b.e.Node().Dir(), heldDir)))
	require.NoError(t, f.b.e.Close())
	e, err := OpenEndpoint(filepath.Dir(f.b.e.Node().Dir()), f.b.r, f.b.id, f.w.roster, Config{Now: f.w.clock.Now})
	require.NoError(t, err)
	f.b.e = e
	require.NoError(t, os.WriteFile(filepath.Join(e.Node().Dir(), "late.relay"), f.raw, 0o600))
	st, err = e.Collect(ctx, "")
	require.NoError(t, err)
	assert.Zero(t, st.BundlesReceived, "a bundle remembered as seen must not be opened again after a restart")
	assert.Equal(t, after, snapshot(t, f.b.r))
}

func TestRelayCannotRead(t *testing.T) {
	f := newTamperFixture(t)
	// Nothing of the chart is in the clear: the patient's name and the
	// allergy do not appear in the relay bundle.
	for _, s := range []string{"Wanjiru", "Penicillin", "Otieno"} {
		assert.NotContains(t, string(f.raw), s, "a relay can read %q", s)
	}
	// C, enrolled and holding its own keys, cannot decrypt A's bundle for B.
	_, err := decrypt(f.env.Payload, f.c.id.AgeIdentity())
	assert.ErrorIs(t, err, ErrUndecryptable)
	_, err = f.c.e.Open(context.Background(), f.raw)
	assert.ErrorIs(t, err, ErrWrongRecipient)
}

// Opening a relay bundle that was opened before is a clear refusal naming
// it (it used to apply nothing and say nothing), here or after Collect.
func TestOpeningABundleAgainIsAReplay(t *testing.T) {
	f := newTamperFixture(t)
	ctx := context.Background()
	rec, err := f.b.e.Open(ctx, f.raw)
	require.NoError(t, err)
	require.Positive(t, rec.Applied)
	before := snapshot(t, f.b.r)
	_, err = f.b.e.Open(ctx, f.raw)
	require.ErrorIs(t, err, ErrReplayed)
	assert.Contains(t, err.Error(), f.env.ID, "the refusal names the bundle")
	assert.Contains(t, err.Error(), f.env.Sender, "the refusal names the bundle's sender")
	assert.True(t, isBadInput(err))
	assert.Equal(t, before, snapshot(t, f.b.r))
}
