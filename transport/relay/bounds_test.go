package relay

import (
	"context"
	"encoding/binary"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/internal/allocs"
	"github.com/chartsync/chartsync/internal/wire"
)

// claimingFrame is a wire frame of the given kind, marked compressed,
// whose header claims rawLen bytes of body while what it stores is z, with
// a correct checksum: what a forger writes to make a decoder allocate.
func claimingFrame(kind byte, rawLen uint64, z []byte) []byte {
	out := []byte{'C', 'S', kind, 0x01, 1, 1}
	out = binary.AppendUvarint(out, rawLen)
	out = binary.AppendUvarint(out, uint64(len(z)))
	out = append(out, z...)
	return binary.BigEndian.AppendUint32(out, crc32.Checksum(out, crc32.MakeTable(crc32.Castagnoli)))
}

// zstdWindow is a zstd frame whose header declares a window of 1<<exp
// bytes (a decoder sizes its history by it) followed by a last raw block
// of one byte.
func zstdWindow(exp byte) []byte {
	return []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, (exp - 10) << 3, 0x09, 0x00, 0x00, 'x'}
}

// zstdContent is a single-segment zstd frame declaring size bytes of
// content (a decoder may size its output by it) followed by one raw byte.
func zstdContent(size uint64) []byte {
	b := []byte{0x28, 0xb5, 0x2f, 0xfd, 0xe0}
	b = binary.LittleEndian.AppendUint64(b, size)
	return append(b, 0x09, 0x00, 0x00, 'x')
}

const smallAlloc = 1 << 20

// TestDecodersRefuseClaimedLengths: a file of a few bytes that claims a
// large body (in the frame header, or in the zstd header inside it) is
// refused with a typed error before anything of the claimed size is
// allocated, by every decoder of this package.
func TestDecodersRefuseClaimedLengths(t *testing.T) {
	bodies := map[string][]byte{
		"a 64 MiB zstd window":        zstdWindow(26),
		"60 MiB of zstd content":      zstdContent(60 << 20),
		"a 32 MiB window, 1 MiB body": zstdWindow(25),
	}
	claims := map[string]uint64{
		"a 64 MiB body": MaxBundleBytes,
		"a 32 MiB body": 32 << 20,
	}
	dir := testDir(t)
	for bname, z := range bodies {
		for cname, claim := range claims {
			t.Run("relay bundle claiming "+cname+" behind "+bname, func(t *testing.T) {
				data := claimingFrame(frameKind, claim, z)
				require.Less(t, len(data), 64)
				var err error
				n := allocs.Bytes(func() { _, err = Parse(data) })
				require.Error(t, err)
				assert.True(t, isBadInput(err), "refusal %v is not typed", err)
				assert.ErrorIs(t, err, ErrMalformed, "a %d-byte bundle cannot hold a body of %d bytes", len(data), claim)
				assert.Less(t, n, uint64(smallAlloc), "parsing a %d-byte bundle allocated %d bytes", len(data), n)
			})
			t.Run("endpoint state claiming "+cname+" behind "+bname, func(t *testing.T) {
				path := filepath.Join(dir, "endpoint.state")
				require.NoError(t, os.WriteFile(path, claimingFrame(stateKind, claim, z), 0o600))
				e := &Endpoint{state: path}
				var err error
				n := allocs.Bytes(func() { err = e.load() })
				assert.ErrorIs(t, err, ErrMalformed)
				assert.Less(t, n, uint64(smallAlloc), "loading a tiny state file allocated %d bytes", n)
			})
		}
	}
}

// TestOversizedFilesAreNotRead: a file over the size of any relay bundle,
// left in a node's inbox, is refused (and removed) without being read into
// memory; an endpoint state file over its limit is refused alike.
func TestOversizedFilesAreNotRead(t *testing.T) {
	w := newWorld(t, testDir(t))
	inbox := filepath.Join(w.dir, "inbox")
	require.NoError(t, os.MkdirAll(inbox, 0o700))
	n := w.node(t, "phone", NodeConfig{Inboxes: []string{inbox}})
	defer n.Close()
	big := filepath.Join(inbox, "huge.relay")
	f, err := os.Create(big)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(MaxBundleBytes+1<<20)) // sparse: costs no disk
	require.NoError(t, f.Close())

	var res ScanResult
	got := allocs.Bytes(func() { res, err = n.Scan(context.Background()) })
	require.NoError(t, err)
	require.Len(t, res.Rejected, 1)
	assert.ErrorIs(t, res.Rejected[0].Err, ErrTooLarge)
	assert.NoFileExists(t, big, "a refused file is removed")
	assert.Less(t, got, uint64(smallAlloc), "refusing a %d-byte file allocated %d bytes", MaxBundleBytes+1<<20, got)

	state := filepath.Join(w.dir, "endpoint.state")
	f, err = os.Create(state)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(maxStateBytes+1<<20))
	require.NoError(t, f.Close())
	e := &Endpoint{state: state}
	got = allocs.Bytes(func() { err = e.load() })
	require.ErrorIs(t, err, ErrTooLarge)
	assert.Less(t, got, uint64(smallAlloc), "refusing a large state file allocated %d bytes", got)
}

// TestLargeStateLoads: an endpoint's state of many remembered bundles,
// which compresses, is within the inflation bound and loads back whole.
func TestLargeStateLoads(t *testing.T) {
	path := filepath.Join(testDir(t), "endpoint.state")
	e := &Endpoint{cfg: Config{Now: func() time.Time { return t0 }}.withDefaults(), state: path}
	e.st = endpointState{Seen: map[string]int64{}, Sent: map[string]sentBundle{}}
	for i := range 20000 {
		e.st.Seen[newID()+"-"+newID()] = t0.Add(time.Duration(i) * time.Minute).Unix()
	}
	e.st.Sent[newID()] = sentBundle{ID: newID(), Upto: 1 << 40, Head: 1 << 40, Ack: 12, Changes: 300, Expires: t0.Unix() + 1}
	require.NoError(t, e.save())
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	_, body, err := wire.Decode(data, stateKind, stateVersion, maxStateBytes)
	require.NoError(t, err)
	t.Logf("state of %d bytes in a file of %d", len(body), len(data))
	assert.Less(t, len(body), len(data)*maxInflation/4, "an honest state file is well within the inflation bound")

	again := &Endpoint{state: path}
	require.NoError(t, again.load())
	assert.Equal(t, e.st, again.st)
}
