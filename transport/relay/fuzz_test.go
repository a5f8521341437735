package relay

import (
	"bytes"
	"context"
	"encoding/binary"
	"hash/crc32"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/chartsync/chartsync/internal/fuzzseed"
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
	fuzzseed.Bytes(f, "FuzzParseRelayBundle", good, ack)
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
		// Unseal, the checks without the applying, refuses and opens
		// what Open does.
		if u, err := Unseal(data, b.id, w.roster, w.clock.Now()); err != nil {
			if !isBadInput(err) {
				t.Fatalf("unseal refused with an untyped error: %v", err)
			}
		} else if !bytes.Equal(genuine[u.Key()], env.signed) {
			t.Fatal("unseal opened a changed bundle")
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
		check(t, plainFrame(frameKind, Version, data))
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

// FuzzDecodeEndpointState: decoding an endpoint's state file never panics
// and refuses with a typed error; what decodes encodes to a file that
// decodes to the same state.
func FuzzDecodeEndpointState(f *testing.F) {
	files := endpointStateFiles(f)
	for _, data := range files {
		f.Add(data)
		_, body, err := wire.Decode(data, stateKind, stateVersion, maxStateBytes)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(body)
	}
	fuzzseed.Bytes(f, "FuzzDecodeEndpointState", files...)
	f.Add([]byte(`{"seen":null,"sent":{"x":{}},"peers":["0"]}`))
	f.Add([]byte("null"))
	f.Add([]byte{})

	check := func(t *testing.T, data []byte) {
		st, err := decodeState(data)
		if err != nil {
			if !isBadInput(err) {
				t.Fatalf("refused with an untyped error: %v", err)
			}
			return
		}
		if st.Seen == nil || st.Sent == nil {
			t.Fatal("a decoded state has nil maps")
		}
		enc, err := encodeState(st)
		if err != nil {
			t.Fatalf("a decoded state does not encode: %v", err)
		}
		again, err := decodeState(enc)
		if err != nil || !reflect.DeepEqual(again, st) {
			t.Fatalf("a decoded state does not decode the same once encoded: %v", err)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		check(t, data)
		check(t, plainFrame(stateKind, stateVersion, data))
	})
}

// endpointStateFiles returns the state files of a sender and a recipient
// after one bundle went between them, closing both before it returns.
func endpointStateFiles(f *testing.F) [][]byte {
	ctx := context.Background()
	w := newWorld(f, f.TempDir())
	b := w.site(f, "b")
	a := w.site(f, "a", b.r.ID())
	defer a.close()
	defer b.close()
	register(f, a.r, "Wanjiru")
	if _, err := a.e.Sync(ctx); err != nil {
		f.Fatal(err)
	}
	if _, _, err := Exchange(ctx, a.e.Node(), b.e.Node()); err != nil {
		f.Fatal(err)
	}
	if _, err := b.e.Sync(ctx); err != nil {
		f.Fatal(err)
	}
	var files [][]byte
	for _, s := range []*site{a, b} {
		data, err := os.ReadFile(s.e.state)
		if err != nil {
			f.Fatal(err)
		}
		files = append(files, data)
	}
	return files
}

// plainFrame frames body, uncompressed, as a wire frame of the given kind
// and version with a correct checksum, as a forger would write it. Fuzz
// targets use it rather than wire.Encode, whose compressor can hold a fuzz
// worker for the whole run on some inputs.
func plainFrame(kind, version byte, body []byte) []byte {
	out := []byte{'C', 'S', kind, 0x01, version, 0}
	out = binary.AppendUvarint(out, uint64(len(body)))
	out = binary.AppendUvarint(out, uint64(len(body)))
	out = append(out, body...)
	return binary.BigEndian.AppendUint32(out, crc32.Checksum(out, crc32.MakeTable(crc32.Castagnoli)))
}
