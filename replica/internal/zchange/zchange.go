// Package zchange stores a change's raw bytes compressed: each change on
// its own (a store reads changes one by one and in any order), as a zstd
// frame made with a dictionary shipped in the binary, trained on chart
// changes. A chart change is mostly JSON whose keys, field names, roles
// and dates recur from change to change; compressed alone it shrinks about
// 2.6×, with the dictionary about 4×.
//
// Compress's output is a zstd frame when that is smaller, else its input
// unchanged; Decompress tells the two apart by their first bytes (an
// Automerge chunk and a zstd frame have different magic numbers), so rows
// written before compression, or not worth compressing, read as they are.
// Only Automerge changes are compressed; other bytes a store is given
// (tests write any) are kept as they are, unless they start as a zstd
// frame does, which no change does.
//
// A dictionary is named by the ID in each frame's header. Stored frames
// need their dictionary for ever: a new dictionary gets a new ID and is
// added beside the old ones, never in their place (TestDictionariesAreFrozen).
package zchange

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// dict1 is the first dictionary (ID 1), trained by TestTrainDictionary.
//
//go:embed dict1.zdict
var dict1 []byte

// MaxChangeBytes bounds a decompressed change. A chart change is at most a
// few hundred kilobytes (a 20,000-character note); a stored frame claiming
// more is damaged.
const MaxChangeBytes = 16 << 20

// ErrCorrupt is returned by Decompress for stored bytes that are neither a
// raw change nor a frame that decompresses to one.
var ErrCorrupt = errors.New("zchange: stored change is damaged")

var (
	automergeMagic = []byte{0x85, 0x6f, 0x4a, 0x83}
	zstdMagic      = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

var codec = sync.OnceValues(func() (*zstd.Encoder, *zstd.Decoder) {
	enc, err := zstd.NewWriter(nil,
		zstd.WithEncoderDict(dict1),
		zstd.WithEncoderLevel(zstd.SpeedFastest),           // on a change: as small as SpeedDefault and better, in half the time
		zstd.WithEncoderCRC(false),                         // the change's own checksum and hash cover it
		zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)), // a receive compresses its charts' changes in parallel
		zstd.WithSingleSegment(true),
	)
	if err != nil {
		panic(fmt.Sprintf("zchange: encoder: %v", err)) // the shipped dictionary is tested
	}
	dec, err := zstd.NewReader(nil,
		zstd.WithDecoderDicts(dict1),
		zstd.WithDecoderConcurrency(0),
		zstd.WithDecoderMaxMemory(MaxChangeBytes),
		zstd.WithDecoderMaxWindow(MaxChangeBytes),
	)
	if err != nil {
		panic(fmt.Sprintf("zchange: decoder: %v", err))
	}
	return enc, dec
})

// Compress returns what to store for the raw change: a zstd frame if it is
// smaller, else raw itself. It is safe for concurrent use.
func Compress(raw []byte) []byte {
	if len(raw) < 64 || !bytes.HasPrefix(raw, automergeMagic) {
		return raw
	}
	enc, _ := codec()
	// Compressed into a buffer kept for the next change, then copied at
	// its size: a store batch holds what Compress returns until it
	// commits, and a change shrinks about five times.
	buf := scratch.Get().(*[]byte)
	defer scratch.Put(buf)
	*buf = enc.EncodeAll(raw, (*buf)[:0])
	if len(*buf) >= len(raw) {
		return raw
	}
	return bytes.Clone(*buf)
}

var scratch = sync.Pool{New: func() any { return new([]byte) }}

// Decompress returns the bytes stored as b by Compress (or stored raw
// before it). A zstd frame that does not decompress to an Automerge change
// gives an error matching ErrCorrupt.
// It is safe for concurrent use.
func Decompress(b []byte) ([]byte, error) {
	if !bytes.HasPrefix(b, zstdMagic) {
		return b, nil // stored as it came
	}
	_, dec := codec()
	raw, err := dec.DecodeAll(b, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if !bytes.HasPrefix(raw, automergeMagic) {
		return nil, fmt.Errorf("%w: decompresses to something that is not a change", ErrCorrupt)
	}
	return raw, nil
}
