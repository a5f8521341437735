package relay

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/chartsync/chartsync/internal/wire"
)

// FuzzParseRelayBundle: parsing arbitrary bytes never panics; what parses
// re-encodes to the same bytes (hop count included), and neither a relay
// node nor the recipient accepts anything but the one genuine bundle.
func FuzzParseRelayBundle(f *testing.F) {
	w := newWorld(f, f.TempDir())
	a, b := w.site(f, "a"), w.site(f, "b")
	defer a.close()
	defer b.close()
	register(f, a.r, "Wanjiru")
	ctx := context.Background()
	good, err := a.e.Seal(ctx, b.r.ID())
	if err != nil {
		f.Fatal(err)
	}
	ack, err := seal(b.id, Header{Kind: KindAck, Sender: b.r.ID(), Recipient: a.r.ID(), ID: newID(), Created: t0, Expires: t0.Add(time.Hour)}, mustAckF(newID()))
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range [][]byte{good, ack, good[:len(good)/2], nil, []byte("CSY\x01\x01\x00\x00\x00")} {
		f.Add(s)
	}
	genuine := map[string][]byte{}
	for _, raw := range [][]byte{good, ack} {
		env := mustParseF(raw)
		genuine[env.Key()] = env.signed
	}
	// Each input is tried as a file, and as a frame body with a correct
	// checksum (as a forger would write it), so the fuzzer reaches the
	// fields behind the checksum.
	for _, raw := range [][]byte{good, ack} {
		_, body, err := wire.Decode(raw, frameKind, Version, MaxBundleBytes)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(body)
	}
	check := func(t *testing.T, data []byte) {
		env, err := Parse(data)
		if err != nil {
			if !isBadInput(err) {
				t.Fatalf("parse refused with an untyped error: %v", err)
			}
			return
		}
		again, err := Parse(env.withHops(env.Hops))
		if err != nil || again.Header != env.Header || !bytes.Equal(again.Payload, env.Payload) || !bytes.Equal(again.signed, env.signed) {
			t.Fatalf("a parsed bundle does not parse back the same once re-encoded: %v", err)
		}
		if env.Kind == KindAck && len(env.Acked()) == 0 {
			t.Fatal("an acknowledgement naming nothing parsed")
		}
		// Only the genuine bundles verify, whatever their hop count.
		if env.Verify(w.roster) == nil && !bytes.Equal(genuine[env.Key()], env.signed) {
			t.Fatal("a changed bundle verified")
		}
		before := snapshot(t, b.r)
		if _, err := b.e.Open(ctx, data); err != nil {
			if !isBadInput(err) {
				t.Fatalf("refused with an untyped error: %v", err)
			}
			if snapshot(t, b.r) != before {
				t.Fatal("a refused bundle changed the recipient")
			}
		} else if !bytes.Equal(genuine[env.Key()], env.signed) {
			t.Fatal("the recipient accepted a changed bundle")
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		check(t, data)
		check(t, wire.Encode(frameKind, Version, data))
	})
}

func mustAckF(ids ...string) []byte {
	p, err := encodeAck(ids)
	if err != nil {
		panic(err)
	}
	return p
}

func mustParseF(raw []byte) *Envelope {
	env, err := Parse(raw)
	if err != nil {
		panic(err)
	}
	return env
}
