// Package wire is chartsync's binary framing: a versioned, length-framed,
// checksummed and optionally zstd-compressed envelope, and a bounded reader
// for the fields inside it. Every bundle, acknowledgement and relay file is
// one frame.
//
// Frame layout:
//
//	magic    4 bytes  'C' 'S' kind 0x01
//	version  1 byte
//	flags    1 byte   bit 0: body is zstd-compressed
//	rawLen   uvarint  length of the body once decompressed
//	bodyLen  uvarint  length of the body as stored
//	body     bodyLen bytes
//	crc      4 bytes  CRC-32C (Castagnoli) of everything before it, big-endian
//
// Decoders check every length against a limit before allocating.
package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// Errors returned by Decode and Reader. Callers match them with errors.Is.
var (
	// ErrMalformed: the bytes are not a well-formed frame (bad magic,
	// checksum, lengths, or fields).
	ErrMalformed = errors.New("malformed data")
	// ErrTruncated: the frame ends early. It also matches ErrMalformed.
	ErrTruncated = fmt.Errorf("truncated data: %w", ErrMalformed)
	// ErrVersion: a frame of a version this build does not understand.
	ErrVersion = errors.New("unsupported format version")
	// ErrTooLarge: a declared length is over the configured limit.
	ErrTooLarge = errors.New("data over size limit")
)

// compressAbove is the body size from which Encode compresses.
const compressAbove = 256

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var (
	encOnce sync.Once
	enc     *zstd.Encoder
)

func encoder() *zstd.Encoder {
	encOnce.Do(func() {
		// Errors are impossible with these static options.
		// The encoder lives as long as the process: with lower memory
		// it keeps 13 MB of buffers instead of 21, and bundles come out
		// the same size.
		enc, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBetterCompression), zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true))
	})
	return enc
}

// Encode frames body as a frame of the given kind and version, compressing
// it when that makes it smaller.
func Encode(kind, version byte, body []byte) []byte {
	stored, flags := body, byte(0)
	if len(body) >= compressAbove {
		if z := encoder().EncodeAll(body, nil); len(z) < len(body) {
			stored, flags = z, 1
		}
	}
	out := make([]byte, 0, len(stored)+32)
	out = append(out, 'C', 'S', kind, 0x01, version, flags)
	out = binary.AppendUvarint(out, uint64(len(body)))
	out = binary.AppendUvarint(out, uint64(len(stored)))
	out = append(out, stored...)
	return binary.BigEndian.AppendUint32(out, crc32.Checksum(out, castagnoli))
}

// Decode checks a frame of the given kind and returns its version and body.
// maxVersion is the newest version the caller understands; maxBody bounds
// the decompressed body. The frame must be the whole of data.
func Decode(data []byte, kind, maxVersion byte, maxBody int) (version byte, body []byte, err error) {
	if len(data) < 4+2+1+1+4 {
		return 0, nil, fmt.Errorf("frame of %d bytes: %w", len(data), ErrTruncated)
	}
	if data[0] != 'C' || data[1] != 'S' || data[2] != kind || data[3] != 0x01 {
		return 0, nil, fmt.Errorf("frame magic % x, want kind %q: %w", data[:4], kind, ErrMalformed)
	}
	version, flags := data[4], data[5]
	r := NewReader(data[6:])
	rawLen, err := r.Uvarint()
	if err != nil {
		return 0, nil, fmt.Errorf("frame raw length: %w", err)
	}
	storedLen, err := r.Uvarint()
	if err != nil {
		return 0, nil, fmt.Errorf("frame body length: %w", err)
	}
	if rawLen > uint64(maxBody) {
		return 0, nil, fmt.Errorf("frame body of %d bytes, limit %d: %w", rawLen, maxBody, ErrTooLarge)
	}
	if storedLen+4 > uint64(r.Len()) {
		return 0, nil, fmt.Errorf("frame body of %d bytes, %d present: %w", storedLen, r.Len()-4, ErrTruncated)
	}
	if storedLen+4 < uint64(r.Len()) {
		return 0, nil, fmt.Errorf("frame has %d trailing bytes: %w", uint64(r.Len())-storedLen-4, ErrMalformed)
	}
	end := len(data) - 4
	if got, want := crc32.Checksum(data[:end], castagnoli), binary.BigEndian.Uint32(data[end:]); got != want {
		return 0, nil, fmt.Errorf("frame checksum %08x, want %08x: %w", got, want, ErrMalformed)
	}
	if version == 0 || version > maxVersion {
		return 0, nil, fmt.Errorf("frame version %d, newest understood %d: %w", version, maxVersion, ErrVersion)
	}
	stored := data[end-int(storedLen) : end]
	switch flags {
	case 0:
		if storedLen != rawLen {
			return 0, nil, fmt.Errorf("frame lengths %d and %d differ: %w", rawLen, storedLen, ErrMalformed)
		}
		return version, stored, nil
	case 1:
		body, err := decompress(stored, int(rawLen))
		if err != nil {
			return 0, nil, err
		}
		return version, body, nil
	default:
		return 0, nil, fmt.Errorf("frame flags %#x: %w", flags, ErrMalformed)
	}
}

// Size returns the length a frame of the given kind declares for its
// body once decompressed, reading only its header: nothing is checked
// beyond the magic and the lengths, and nothing is decompressed. Decode
// refuses a frame whose body inflates to another length, so a caller that
// bounds Size bounds what Decode allocates, whatever the compression
// ratio. Errors match ErrMalformed (ErrTruncated for a short header).
func Size(data []byte, kind byte) (uint64, error) {
	if len(data) < 6 {
		return 0, fmt.Errorf("frame of %d bytes: %w", len(data), ErrTruncated)
	}
	if data[0] != 'C' || data[1] != 'S' || data[2] != kind || data[3] != 0x01 {
		return 0, fmt.Errorf("frame magic % x, want kind %q: %w", data[:4], kind, ErrMalformed)
	}
	rawLen, err := NewReader(data[6:]).Uvarint()
	if err != nil {
		return 0, fmt.Errorf("frame raw length: %w", err)
	}
	return rawLen, nil
}

// inflateGuess is how many times its stored size a body is first assumed
// to inflate to, at most: a bundle's body inflates 10-15 times. A body
// that inflates more is read again as a stream (inflateStream).
const inflateGuess = 32

// shared decodes whole bodies (DecodeAll), for any number of goroutines at
// once; WithDecodeAllCapLimit makes it stop at the capacity it is given.
var shared = sync.OnceValue(func() *zstd.Decoder {
	// Errors are impossible with these static options.
	d, _ := zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecodeAllCapLimit(true))
	return d
})

// decompress inflates a stored body that claims rawLen bytes. Memory
// follows the bytes actually stored and decompressed, never what the
// header claims: a few bytes claiming a large body cost a few bytes. A
// body is decoded in one call into a buffer of at most inflateGuess times
// its stored size, which a body that claims (in its zstd frame) or
// produces more refuses at once; it is then read as a stream.
func decompress(stored []byte, rawLen int) ([]byte, error) {
	buf := make([]byte, 0, min(rawLen, inflateGuess*len(stored)+4096))
	out, err := shared().DecodeAll(stored, buf)
	switch {
	case err == nil && len(out) == rawLen:
		return out, nil
	case err == nil && len(out) < rawLen:
		return nil, fmt.Errorf("frame body of %d bytes, %d declared: %w", len(out), rawLen, ErrTruncated)
	case err == nil:
		return nil, fmt.Errorf("frame body longer than declared: %w", ErrMalformed)
	case errors.Is(err, zstd.ErrDecoderSizeExceeded):
		return inflateStream(stored, rawLen)
	default:
		return nil, fmt.Errorf("frame body: %v: %w", err, ErrMalformed)
	}
}

// inflateStream is decompress for a body that inflates more than
// inflateGuess times: its buffer grows as the bytes arrive, never past
// rawLen.
func inflateStream(stored []byte, rawLen int) ([]byte, error) {
	d, err := zstd.NewReader(bytes.NewReader(stored), zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(uint64(rawLen)+1<<20))
	if err != nil {
		return nil, fmt.Errorf("frame body: %v: %w", err, ErrMalformed)
	}
	defer d.Close()
	// Start from a size the stored bytes could plausibly inflate to, and
	// grow, never past the declared length, as the data proves longer: a
	// header's claim alone allocates nothing.
	buf := make([]byte, 0, min(rawLen, 4*len(stored)+512))
	for len(buf) < rawLen {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, min(rawLen, 2*cap(buf))-len(buf))
		}
		n, err := d.Read(buf[len(buf):min(cap(buf), rawLen)])
		buf = buf[:len(buf)+n]
		if err == io.EOF && len(buf) < rawLen {
			return nil, fmt.Errorf("frame body of %d bytes, %d declared: %w", len(buf), rawLen, ErrTruncated)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("frame body: %v: %w", err, ErrMalformed)
		}
	}
	var more [1]byte
	if n, err := d.Read(more[:]); n > 0 {
		return nil, fmt.Errorf("frame body longer than declared: %w", ErrMalformed)
	} else if err != nil && err != io.EOF {
		return nil, fmt.Errorf("frame body: %v: %w", err, ErrMalformed)
	}
	return buf, nil
}

// Reader reads fields from a decoded body. Every method bounds what it
// reads by the bytes that remain, so no length from the data can cause a
// large allocation.
type Reader struct{ b []byte }

// NewReader reads from b.
func NewReader(b []byte) *Reader { return &Reader{b: b} }

// Len returns the number of unread bytes.
func (r *Reader) Len() int { return len(r.b) }

// Uvarint reads an unsigned varint.
func (r *Reader) Uvarint() (uint64, error) {
	v, n := binary.Uvarint(r.b)
	if n == 0 {
		return 0, ErrTruncated
	}
	if n < 0 {
		return 0, fmt.Errorf("varint overflows: %w", ErrMalformed)
	}
	if n > 1 && r.b[n-1] == 0 {
		// Longer than it needs to be: an encoder never writes that, and a
		// second spelling of one value would make one frame read alike
		// from two byte strings (a digest over the bytes then differs).
		return 0, fmt.Errorf("varint of %d bytes for %d, not its shortest form: %w", n, v, ErrMalformed)
	}
	r.b = r.b[n:]
	return v, nil
}

// Fixed reads exactly n bytes. The result aliases the body.
func (r *Reader) Fixed(n int) ([]byte, error) {
	if n < 0 || n > len(r.b) {
		return nil, fmt.Errorf("field of %d bytes, %d left: %w", n, len(r.b), ErrTruncated)
	}
	out := r.b[:n:n]
	r.b = r.b[n:]
	return out, nil
}

// Bytes reads a uvarint length, at most max, and that many bytes. The
// result aliases the body.
func (r *Reader) Bytes(max int) ([]byte, error) {
	n, err := r.Uvarint()
	if err != nil {
		return nil, err
	}
	if n > uint64(max) {
		return nil, fmt.Errorf("field of %d bytes, limit %d: %w", n, max, ErrTooLarge)
	}
	return r.Fixed(int(n))
}

// Count reads a uvarint item count and checks that count items of at least
// minSize bytes each can fit in what remains.
func (r *Reader) Count(minSize int) (int, error) {
	n, err := r.Uvarint()
	if err != nil {
		return 0, err
	}
	if minSize < 1 {
		minSize = 1
	}
	if n > uint64(len(r.b)/minSize) {
		return 0, fmt.Errorf("count %d cannot fit in %d bytes: %w", n, len(r.b), ErrMalformed)
	}
	return int(n), nil
}

// Done returns ErrMalformed if bytes remain unread.
func (r *Reader) Done() error {
	if len(r.b) != 0 {
		return fmt.Errorf("%d trailing bytes: %w", len(r.b), ErrMalformed)
	}
	return nil
}

// AppendBytes appends a uvarint length and b.
func AppendBytes(dst, b []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}
