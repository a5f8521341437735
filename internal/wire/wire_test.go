package wire_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/internal/wire"
)

func TestRoundTrip(t *testing.T) {
	for _, body := range [][]byte{nil, []byte("short"), bytes.Repeat([]byte("prescription "), 500)} {
		f := wire.Encode('B', 1, body)
		v, got, err := wire.Decode(f, 'B', 1, 1<<20)
		require.NoError(t, err)
		assert.Equal(t, byte(1), v)
		assert.Equal(t, len(body), len(got))
		assert.True(t, bytes.Equal(body, got))
	}
	big := bytes.Repeat([]byte("prescription "), 500)
	assert.Less(t, len(wire.Encode('B', 1, big)), len(big)/4, "repetitive bodies are compressed")
}

func TestDecodeRefusesBadFrames(t *testing.T) {
	body := bytes.Repeat([]byte("lab result "), 100)
	good := wire.Encode('B', 1, body)
	tests := []struct {
		name  string
		frame []byte
		kind  byte
		max   int
		want  error
	}{
		{"empty", nil, 'B', 1 << 20, wire.ErrTruncated},
		{"wrong kind", good, 'A', 1 << 20, wire.ErrMalformed},
		{"truncated", good[:len(good)-1], 'B', 1 << 20, wire.ErrMalformed},
		{"trailing", append(append([]byte(nil), good...), 0), 'B', 1 << 20, wire.ErrMalformed},
		{"too large", good, 'B', 10, wire.ErrTooLarge},
		{"future version", wire.Encode('B', 2, body), 'B', 1 << 20, wire.ErrVersion},
		{"version zero", wire.Encode('B', 0, body), 'B', 1 << 20, wire.ErrVersion},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := wire.Decode(tt.frame, tt.kind, 1, tt.max)
			require.ErrorIs(t, err, tt.want)
		})
	}
	for i := range good {
		bad := append([]byte(nil), good...)
		bad[i] ^= 0x10
		_, _, err := wire.Decode(bad, 'B', 1, 1<<20)
		require.Error(t, err, "flip at byte %d went unnoticed", i)
		assert.True(t, errors.Is(err, wire.ErrMalformed) || errors.Is(err, wire.ErrTooLarge) || errors.Is(err, wire.ErrVersion), "flip at %d: %v", i, err)
	}
}

func TestReaderBoundsLengths(t *testing.T) {
	r := wire.NewReader([]byte{0xff, 0xff, 0xff, 0xff, 0x0f})
	_, err := r.Bytes(1 << 30)
	require.ErrorIs(t, err, wire.ErrTooLarge, "a 4 GiB length is over the limit")
	r = wire.NewReader([]byte{0xff, 0xff, 0xff, 0xff, 0x0f})
	_, err = r.Bytes(1 << 40)
	require.ErrorIs(t, err, wire.ErrTruncated, "a 4 GiB length over 0 bytes is refused before allocating")

	r = wire.NewReader([]byte{100, 1, 2})
	_, err = r.Count(1)
	require.ErrorIs(t, err, wire.ErrMalformed)

	r = wire.NewReader(wire.AppendBytes(nil, []byte("abc")))
	_, err = r.Bytes(2)
	require.ErrorIs(t, err, wire.ErrTooLarge)
}

// TestReaderTakesOnlyShortestVarints: a varint has one spelling, the
// shortest, as encoders write it; a longer one (a value padded with
// continuation bytes) is malformed, so that no frame reads alike from two
// byte strings.
func TestReaderTakesOnlyShortestVarints(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		want uint64
		ok   bool
	}{
		{"zero", []byte{0x00}, 0, true},
		{"one byte", []byte{0x7f}, 127, true},
		{"two bytes", binary.AppendUvarint(nil, 0x3231), 0x3231, true},
		{"zero in two bytes", []byte{0x80, 0x00}, 0, false},
		{"one in two bytes", []byte{0x81, 0x00}, 0, false},
		{"0x3231 in three bytes", []byte{0xb1, 0xe4, 0x00}, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := wire.NewReader(tc.in).Uvarint()
			if !tc.ok {
				require.ErrorIs(t, err, wire.ErrMalformed)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, v)
		})
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(wire.Encode('B', 1, []byte("x")))
	f.Add(wire.Encode('B', 1, bytes.Repeat([]byte("diagnosis "), 100)))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, body, err := wire.Decode(data, 'B', 1, 1<<16)
		if err != nil {
			return
		}
		require.LessOrEqual(t, len(body), 1<<16)
	})
}

// frameClaiming builds a valid compressed frame whose header claims rawLen
// bytes while its body inflates to body.
func frameClaiming(body []byte, rawLen uint64) []byte {
	enc, _ := zstd.NewWriter(nil)
	return frameStoring(enc.EncodeAll(body, nil), rawLen)
}

// frameStoring frames stored as a compressed body that claims rawLen
// bytes, with a valid checksum.
func frameStoring(z []byte, rawLen uint64) []byte {
	out := []byte{'C', 'S', 'B', 0x01, 1, 1}
	out = binary.AppendUvarint(out, rawLen)
	out = binary.AppendUvarint(out, uint64(len(z)))
	out = append(out, z...)
	return binary.BigEndian.AppendUint32(out, crc32.Checksum(out, crc32.MakeTable(crc32.Castagnoli)))
}

func TestDecodeMemoryFollowsTheBodyNotTheHeader(t *testing.T) {
	const claimed = 255 << 20
	data := frameClaiming([]byte("a short body"), claimed)
	require.Less(t, len(data), 64, "the hostile frame is tiny")

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, _, err := wire.Decode(data, 'B', 1, 256<<20)
	runtime.ReadMemStats(&after)
	require.ErrorIs(t, err, wire.ErrTruncated, "a body shorter than its header claims is refused")
	allocated := after.TotalAlloc - before.TotalAlloc
	assert.Less(t, allocated, uint64(8<<20), "decoding a %d-byte frame that claims %d bytes allocated %d bytes", len(data), claimed, allocated)

	// A compressed body that is no zstd frame, or a damaged one, is
	// refused as malformed.
	_, _, err = wire.Decode(frameStoring([]byte("not a zstd frame at all"), 100), 'B', 1, 1<<20)
	require.ErrorIs(t, err, wire.ErrMalformed)
	enc, _ := zstd.NewWriter(nil)
	z := enc.EncodeAll(bytes.Repeat([]byte("clinic "), 500), nil)
	z[len(z)/2] ^= 0xff
	_, _, err = wire.Decode(frameStoring(z, 3500), 'B', 1, 1<<20)
	require.ErrorIs(t, err, wire.ErrMalformed)

	// A body longer than claimed is refused too, and an honest one decodes.
	_, _, err = wire.Decode(frameClaiming(bytes.Repeat([]byte("x"), 1000), 999), 'B', 1, 1<<20)
	require.ErrorIs(t, err, wire.ErrMalformed)
	_, body, err := wire.Decode(frameClaiming(bytes.Repeat([]byte("x"), 1000), 1000), 'B', 1, 1<<20)
	require.NoError(t, err)
	assert.Equal(t, bytes.Repeat([]byte("x"), 1000), body)
}

// TestDecodeAnyRatio: bodies that inflate little, about as much as a
// bundle, and far more than Decode first assumes (a run of zeros) all
// come back whole; the last are read again as a stream.
func TestDecodeAnyRatio(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 4))
	random := make([]byte, 64<<10)
	for i := range random {
		random[i] = byte(rnd.Uint32())
	}
	bundleLike := make([]byte, 0, 1<<20)
	for len(bundleLike) < 1<<20 {
		bundleLike = append(bundleLike, `{"k":"prescription","f":"dose","v":"1","u":"u-mutua","r":"clinician"}`...)
		bundleLike = append(bundleLike, random[len(bundleLike)%(len(random)-8):][:8]...)
	}
	for _, tc := range []struct {
		name string
		body []byte
	}{
		{"random", random},
		{"like a bundle", bundleLike},
		{"zeros", make([]byte, 8<<20)},
		{"one repeated line", bytes.Repeat([]byte("visit recorded\n"), 200_000)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			frame := wire.Encode('B', 1, tc.body)
			_, got, err := wire.Decode(frame, 'B', 1, 16<<20)
			require.NoError(t, err)
			require.Equal(t, tc.body, got)
			_, _, err = wire.Decode(frame, 'B', 1, len(tc.body)-1)
			require.ErrorIs(t, err, wire.ErrTooLarge)
		})
	}
}

func TestSize(t *testing.T) {
	body := bytes.Repeat([]byte("clinical note "), 10_000)
	frame := wire.Encode('B', 1, body)
	raw, err := wire.Size(frame, 'B')
	require.NoError(t, err)
	assert.EqualValues(t, len(body), raw, "the size is the body's once decompressed")
	assert.Less(t, len(frame), len(body)/20, "the frame is compressed")

	for _, tt := range []struct {
		name  string
		frame []byte
		kind  byte
		want  error
	}{
		{"empty", nil, 'B', wire.ErrTruncated},
		{"wrong kind", frame, 'A', wire.ErrMalformed},
		{"cut in its lengths", frame[:7], 'B', wire.ErrTruncated},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := wire.Size(tt.frame, tt.kind)
			require.ErrorIs(t, err, tt.want)
		})
	}
	// A header claiming more than its body holds states the claim: Decode
	// refuses such a frame, so a bound on Size bounds what Decode
	// allocates.
	raw, err = wire.Size(frameClaiming([]byte("short"), 255<<20), 'B')
	require.NoError(t, err)
	assert.EqualValues(t, 255<<20, raw)
}

// FuzzSize holds Size to Decode: whatever Decode accepts, Size reads the
// same length, and Decode never returns a body longer than Size said.
func FuzzSize(f *testing.F) {
	f.Add(wire.Encode('B', 1, []byte("x")))
	f.Add(wire.Encode('B', 1, bytes.Repeat([]byte("diagnosis "), 100)))
	f.Add(frameClaiming([]byte("short"), 1000))
	f.Fuzz(func(t *testing.T, data []byte) {
		raw, serr := wire.Size(data, 'B')
		_, body, err := wire.Decode(data, 'B', 1, 1<<16)
		if err != nil {
			return
		}
		require.NoError(t, serr, "Decode took a frame Size refused")
		require.EqualValues(t, raw, len(body))
	})
}

// BenchmarkDecode decodes a compressed frame of a 1 MiB body shaped like a
// bundle's (repetitive records with random bytes among them): its
// allocations per decode are what receiving pays besides the body itself.
func BenchmarkDecode(b *testing.B) {
	body := make([]byte, 0, 1<<20)
	rnd := rand.New(rand.NewPCG(1, 2))
	for len(body) < 1<<20 {
		body = append(body, `{"op":"prescribe","drug":"amoxicillin","dose":"250 mg"}`...)
		for range 16 {
			body = append(body, byte(rnd.Uint32()))
		}
	}
	frame := wire.Encode('B', 1, body)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := wire.Decode(frame, 'B', 1, 4<<20); err != nil {
			b.Fatal(err)
		}
	}
}
