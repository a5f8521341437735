package device_test

import (
	"encoding/binary"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/internal/allocs"
)

// frame is a wire frame of the given kind and flags with a correct
// checksum, whose header claims rawLen bytes of body while it stores
// stored: what a forger writes to make a decoder allocate.
func frame(kind, flags byte, rawLen uint64, stored []byte) []byte {
	out := []byte{'C', 'S', kind, 0x01, 1, flags}
	out = binary.AppendUvarint(out, rawLen)
	out = binary.AppendUvarint(out, uint64(len(stored)))
	out = append(out, stored...)
	return binary.BigEndian.AppendUint32(out, crc32.Checksum(out, crc32.MakeTable(crc32.Castagnoli)))
}

// zstdWindow is a zstd frame whose header declares a window of 1<<exp
// bytes (a decoder sizes its history by it) followed by a last raw block
// of one byte.
func zstdWindow(exp byte) []byte {
	return []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, (exp - 10) << 3, 0x09, 0x00, 0x00, 'x'}
}

const smallAlloc = 1 << 20

// TestDecodersRefuseClaimedLengths: for every decoder of the package, a
// file of a few bytes that claims a large body is refused with a typed
// error, and so is a roster whose record count could not fit in its body,
// before anything of the claimed size is allocated.
func TestDecodersRefuseClaimedLengths(t *testing.T) {
	cloud, err := device.NewAuthority()
	require.NoError(t, err)
	dir := t.TempDir()
	fromFile := func(load func(path string) error) func(data []byte) error {
		return func(data []byte) error {
			path := filepath.Join(dir, "file")
			require.NoError(t, os.WriteFile(path, data, 0o600))
			return load(path)
		}
	}
	roster := newRoster(t, &clock{t0}, device.TrustedAuthority{Key: cloud.PublicKey()})
	// A roster whose count says one record per 17 bytes of body: each
	// record takes far more than that, so the count cannot be true.
	body := binary.AppendUvarint(nil, 1<<20/17)
	body = append(body, make([]byte, 1<<20-len(body))...)
	crowded := frame('D', 0, uint64(len(body)), body)

	decoders := []struct {
		name   string
		data   []byte
		decode func(data []byte) error
		want   error // ErrTooLarge: over the decoder's limit; ErrMalformed: more than the bytes hold
	}{
		{"an enrolment", frame('E', 1, 64<<20, zstdWindow(26)), func(data []byte) error {
			_, err := device.DecodeEnrolment(data)
			return err
		}, device.ErrTooLarge},
		{"an enrolment request", frame('Q', 1, 64<<20, zstdWindow(26)), func(data []byte) error {
			_, err := device.ParseRequest(data)
			return err
		}, device.ErrTooLarge},
		{"a roster", frame('D', 1, device.MaxRosterBytes, zstdWindow(26)), func(data []byte) error {
			_, err := roster.Merge(data)
			return err
		}, device.ErrMalformed},
		{"a roster file", frame('D', 1, device.MaxRosterBytes, zstdWindow(26)), fromFile(func(path string) error {
			_, err := device.LoadRoster(path, device.RosterConfig{Authorities: []device.TrustedAuthority{{Key: cloud.PublicKey()}}})
			return err
		}), device.ErrMalformed},
		{"a roster counting more records than fit", crowded, func(data []byte) error {
			_, err := roster.Merge(data)
			return err
		}, device.ErrMalformed},
		{"a device key file", frame('K', 1, 64<<20, zstdWindow(26)), fromFile(func(path string) error {
			_, err := device.Load(path)
			return err
		}), device.ErrTooLarge},
		{"an authority key file", frame('A', 1, 64<<20, zstdWindow(26)), fromFile(func(path string) error {
			_, err := device.LoadAuthority(path)
			return err
		}), device.ErrTooLarge},
	}
	for _, d := range decoders {
		t.Run(d.name, func(t *testing.T) {
			var err error
			n := allocs.Bytes(func() { err = d.decode(d.data) })
			assert.ErrorIs(t, err, d.want, "a %d-byte file cannot be what it claims", len(d.data))
			assert.Less(t, n, uint64(smallAlloc), "decoding %d bytes allocated %d", len(d.data), n)
			assert.Empty(t, roster.Enrolments(), "a refused roster adds nothing")
		})
	}
}

// TestLoadRosterRefusesAnOversizedFile: a roster file over MaxRosterBytes
// is refused by its size, without being read into memory.
func TestLoadRosterRefusesAnOversizedFile(t *testing.T) {
	cloud, err := device.NewAuthority()
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "roster")
	f, err := os.Create(path)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(device.MaxRosterBytes+1<<20)) // sparse: costs no disk
	require.NoError(t, f.Close())
	n := allocs.Bytes(func() {
		_, err = device.LoadRoster(path, device.RosterConfig{Authorities: []device.TrustedAuthority{{Key: cloud.PublicKey()}}})
	})
	require.ErrorIs(t, err, device.ErrTooLarge)
	assert.Less(t, n, uint64(smallAlloc), "refusing a %d-byte roster file allocated %d bytes", device.MaxRosterBytes+1<<20, n)
}

// TestLargeRosterRoundTrips: a roster of many devices, which compresses a
// little (records share their authority and clinic), is well within the
// decoders' bounds and loads back whole.
func TestLargeRosterRoundTrips(t *testing.T) {
	cloud, err := device.NewAuthority()
	require.NoError(t, err)
	c := &clock{t0}
	r := newRoster(t, c, device.TrustedAuthority{Key: cloud.PublicKey()})
	for range 2000 {
		_, err := r.Add(enrol(t, cloud, newIdentity(t, "kamuga").Public(), t0, time.Hour))
		require.NoError(t, err)
	}
	path := filepath.Join(t.TempDir(), "roster")
	require.NoError(t, r.Save(path))
	back, err := device.LoadRoster(path, device.RosterConfig{Authorities: []device.TrustedAuthority{{Key: cloud.PublicKey()}}, Now: c.Now})
	require.NoError(t, err)
	assert.Equal(t, r.Enrolments(), back.Enrolments())
}
