package crdt

import (
	"bytes"
	"compress/flate"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
)

// This file checks a change chunk in Go before its bytes reach
// automerge-rs. The pinned automerge-rs panics on some malformed changes
// (for example an operation naming an actor index beyond the change's
// actor table), and a Rust panic under cgo aborts the whole process. So
// every change from outside is checked here first: the chunk checksum
// against the SHA-256 of its content (which catches any corruption in
// transit), the header fields, the column layout, and every actor index.
// See the package documentation's Caveats for what this cannot catch.

// Chunk types of the Automerge binary format.
const (
	chunkDocument   = 0
	chunkChange     = 1
	chunkCompressed = 2
)

// maxInflate bounds a deflated column once inflated.
const maxInflate = 64 << 20

// checkChange validates one raw change chunk (magic, checksum, type, length
// and body, as split by splitChunks).
func checkChange(chunk []byte) error {
	_, err := parseChunk(chunk)
	return err
}

// parseChunk validates one raw change chunk and returns its parsed body.
func parseChunk(chunk []byte) (*changeBody, error) {
	if len(chunk) < 10 || !bytes.Equal(chunk[:4], chunkMagic) {
		return nil, errors.New("no change header")
	}
	switch chunk[8] {
	case chunkChange:
	case chunkCompressed:
		return nil, errors.New("compressed change chunks are not accepted")
	default:
		return nil, fmt.Errorf("chunk type %d is not a change", chunk[8])
	}
	sum := sha256.Sum256(chunk[8:])
	if !bytes.Equal(sum[:4], chunk[4:8]) {
		return nil, errors.New("checksum does not match the content")
	}
	n, k := binary.Uvarint(chunk[9:])
	if k <= 0 || uint64(len(chunk)-9-k) != n {
		return nil, errors.New("bad length")
	}
	b, err := parseChangeBody(chunk[9+k:])
	if err != nil {
		return nil, err
	}
	b.hash = Hash(sum)
	return b, nil
}

// reader reads the fields of a change body, bounding every length by the
// bytes that remain.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("truncated or invalid %s", what)
	}
}

func (r *reader) uvarint(what string) uint64 {
	if r.err != nil {
		return 0
	}
	v, k := binary.Uvarint(r.b)
	if k <= 0 {
		r.fail(what)
		return 0
	}
	r.b = r.b[k:]
	return v
}

// svarint reads a signed LEB128 value (not zig-zag). As in the leb128
// crate Automerge uses, a tenth byte may only carry the sign.
func (r *reader) svarint(what string) int64 {
	if r.err != nil {
		return 0
	}
	var v int64
	var shift uint
	for i := 0; i < len(r.b) && i < 10; i++ {
		c := r.b[i]
		if i == 9 && c != 0x00 && c != 0x7f {
			break
		}
		v |= int64(c&0x7f) << shift
		shift += 7
		if c&0x80 == 0 {
			if shift < 64 && c&0x40 != 0 {
				v |= -1 << shift
			}
			r.b = r.b[i+1:]
			return v
		}
	}
	r.fail(what)
	return 0
}

func (r *reader) bytes(n uint64, what string) []byte {
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.fail(what)
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

// changeBody is a change chunk's body, parsed: the header fields and the
// operation columns (deflated ones inflated), each already checked by
// checkColumn.
type changeBody struct {
	hash    Hash
	deps    []byte // 32 bytes a dependency
	actor   []byte
	seq     uint64
	startOp uint64
	time    int64
	message []byte
	others  [][]byte
	cols    []column
}

// column is one operation column: its specification (id << 4 | deflate
// bit | type), its data, and how many values it describes.
type column struct {
	spec  uint64
	data  []byte
	count uint64
}

// checkChangeBody validates a change chunk's body.
func checkChangeBody(body []byte) error {
	_, err := parseChangeBody(body)
	return err
}

// parseChangeBody parses and validates a change chunk's body:
// dependencies, actor, sequence numbers, time, message, other actors,
// then the operation columns, whose actor indices must name an actor of
// the change.
func parseChangeBody(body []byte) (*changeBody, error) {
	r := &reader{b: body}
	b := &changeBody{}
	deps := r.uvarint("dependency count")
	if r.err == nil && deps > uint64(len(r.b))/32 {
		r.fail("dependencies")
	}
	b.deps = r.bytes(deps*32, "dependencies")
	if n := r.uvarint("actor length"); r.err == nil && n == 0 {
		return nil, errors.New("empty actor id")
	} else {
		b.actor = r.bytes(n, "actor")
	}
	if b.seq = r.uvarint("sequence number"); r.err == nil && b.seq == 0 {
		return nil, errors.New("sequence number 0")
	}
	b.startOp = r.uvarint("start op")
	b.time = r.svarint("time")
	b.message = r.bytes(r.uvarint("message length"), "message")
	others := r.uvarint("actor count")
	if r.err == nil && others > uint64(len(r.b)) {
		r.fail("actors")
	}
	for i := uint64(0); i < others && r.err == nil; i++ {
		if n := r.uvarint("actor length"); r.err == nil && n == 0 {
			return nil, errors.New("empty actor id")
		} else {
			b.others = append(b.others, r.bytes(n, "actor"))
		}
	}
	actors := others + 1
	ncols := r.uvarint("column count")
	if r.err == nil && ncols > uint64(len(r.b)) {
		r.fail("columns")
	}
	type colSpec struct{ spec, length uint64 }
	specs := make([]colSpec, 0, min(ncols, 64))
	var total uint64
	for i := uint64(0); i < ncols && r.err == nil; i++ {
		c := colSpec{spec: r.uvarint("column spec"), length: r.uvarint("column length")}
		if r.err == nil && len(specs) > 0 && c.spec <= specs[len(specs)-1].spec {
			return nil, errors.New("columns out of order")
		}
		total += c.length
		if total > uint64(len(r.b)) {
			r.fail("column data")
		}
		specs = append(specs, c)
	}
	if r.err != nil {
		return nil, r.err
	}
	b.cols = make([]column, 0, len(specs))
	for _, c := range specs {
		data := r.bytes(c.length, "column data")
		if c.spec&0x08 != 0 { // deflated
			inflated, err := io.ReadAll(io.LimitReader(flate.NewReader(bytes.NewReader(data)), maxInflate+1))
			if err != nil || len(inflated) > maxInflate {
				return nil, fmt.Errorf("column %d: bad deflate data", c.spec>>4)
			}
			data = inflated
		}
		count, err := checkColumn(c.spec&0x07, data, actors)
		if err != nil {
			return nil, fmt.Errorf("column %d: %w", c.spec>>4, err)
		}
		b.cols = append(b.cols, column{spec: c.spec, data: data, count: count})
	}
	if r.err != nil {
		return nil, r.err
	}
	return b, nil
}

// maxOps bounds the operations one change may describe. Run-length
// encoding lets a few bytes claim billions of operations, which
// automerge-rs would then try to expand; a chart change has far fewer
// (a note is at most 20,000 characters).
const maxOps = 1 << 20

// Column types of the Automerge binary format.
const (
	colGroup     = 0 // RLE of uLEB counts
	colActor     = 1 // RLE of uLEB actor indices
	colULEB      = 2 // RLE of uLEB
	colDelta     = 3 // RLE of signed LEB deltas
	colBool      = 4 // alternating uLEB run lengths
	colString    = 5 // RLE of length-prefixed strings
	colValueMeta = 6 // RLE of uLEB
	colValueRaw  = 7 // raw bytes
)

// checkColumn walks a column of the given type, checking that it decodes,
// that it describes at most maxOps values, and, for an actor column, that
// each index is below actors. It returns how many values the column
// describes (0 for a raw value column, which holds bytes, not values).
func checkColumn(typ uint64, data []byte, actors uint64) (uint64, error) {
	r := &reader{b: data}
	var count uint64
	add := func(n uint64) error {
		if count += n; count > maxOps || n > maxOps {
			return fmt.Errorf("describes more than %d operations", maxOps)
		}
		return nil
	}
	value := func() error {
		switch typ {
		case colDelta:
			r.svarint("value")
		case colString:
			r.bytes(r.uvarint("string length"), "string")
		default:
			if v := r.uvarint("value"); r.err == nil && typ == colActor && v >= actors {
				return fmt.Errorf("actor index %d beyond the %d actors of the change", v, actors)
			}
		}
		return r.err
	}
	switch typ {
	case colValueRaw:
		return 0, nil
	case colBool:
		for len(r.b) > 0 && r.err == nil {
			if err := add(r.uvarint("run length")); err != nil {
				return 0, err
			}
		}
		return count, r.err
	}
	for len(r.b) > 0 && r.err == nil {
		n := r.svarint("run length")
		switch {
		case n > 0: // a run of one repeated value
			if err := add(uint64(n)); err != nil {
				return 0, err
			}
			if err := value(); err != nil {
				return 0, err
			}
		case n < 0: // -n literal values
			if n < -maxOps || uint64(-n) > uint64(len(r.b)) {
				return 0, errors.New("literal run longer than the column")
			}
			if err := add(uint64(-n)); err != nil {
				return 0, err
			}
			for i := int64(0); i < -n && r.err == nil; i++ {
				if err := value(); err != nil {
					return 0, err
				}
			}
		default: // a run of nulls
			if err := add(r.uvarint("null run")); err != nil {
				return 0, err
			}
		}
	}
	return count, r.err
}

// ChangeActor returns the actor of one raw change (a Change.Raw) by
// reading its header only, much more cheaply than ParseChange. It does not
// check the rest of the change. Bytes that do not begin with a change
// header give ErrMalformed.
func ChangeActor(raw []byte) (string, error) {
	actor, _, err := ChangeHeader(raw)
	return actor, err
}

// ChangeHeader returns the actor and dependencies of one raw change by
// reading its header only, as ChangeActor does.
func ChangeHeader(raw []byte) (actor string, deps []Hash, err error) {
	if len(raw) < 10 || !bytes.Equal(raw[:4], chunkMagic) || raw[8] != chunkChange {
		return "", nil, fmt.Errorf("change header: no change header: %w", ErrMalformed)
	}
	n, k := binary.Uvarint(raw[9:])
	if k <= 0 || n > uint64(len(raw)-9-k) {
		return "", nil, fmt.Errorf("change header: bad length: %w", ErrMalformed)
	}
	r := &reader{b: raw[9+k : 9+k+int(n)]}
	count := r.uvarint("dependency count")
	if r.err == nil && count > uint64(len(r.b))/32 {
		r.fail("dependencies")
	}
	depBytes := r.bytes(count*32, "dependencies")
	a := r.bytes(r.uvarint("actor length"), "actor")
	if r.err != nil || len(a) == 0 {
		return "", nil, fmt.Errorf("change header: %w", ErrMalformed)
	}
	deps = make([]Hash, count)
	for i := range deps {
		deps[i] = Hash(depBytes[32*i : 32*i+32])
	}
	return hex.EncodeToString(a), deps, nil
}
