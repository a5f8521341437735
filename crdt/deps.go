package crdt

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// DepsSpan finds the dependency hashes in a change chunk, reading only
// its header: raw[at:at+32*n] holds the n hashes the change depends on.
// Nothing beyond the header is checked, not even the chunk's length or
// checksum, so that a bundle can carry a change with some of those
// hashes cut out (a hash of a change the same bundle carries) and its
// recipient can find where to put them back; ReadChange checks the
// change once it is whole.
func DepsSpan(raw []byte) (at, n int, err error) {
	if len(raw) < 10 || !bytes.Equal(raw[:4], chunkMagic) || raw[8] != chunkChange {
		return 0, 0, fmt.Errorf("deps span: no change header: %w", ErrMalformed)
	}
	_, k := binary.Uvarint(raw[9:])
	if k <= 0 {
		return 0, 0, fmt.Errorf("deps span: bad length: %w", ErrMalformed)
	}
	at = 9 + k
	c, k := binary.Uvarint(raw[at:])
	if k <= 0 || c > maxDeps {
		return 0, 0, fmt.Errorf("deps span: bad dependency count: %w", ErrMalformed)
	}
	return at + k, int(c), nil
}

// maxDeps bounds the dependencies DepsSpan accepts: far more than a chart
// change has (one per concurrent head it merges).
const maxDeps = 1 << 16
