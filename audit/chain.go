package audit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
)

// Chain is the end of a log's hash chain: the Seq of its last record and
// the SHA-256 of that record's line (without the newline); the zero Chain
// is an empty log's. With Next and ExportLines, a log kept somewhere other
// than a file (a database table, one row per record) writes and checks the
// same records as a Log, which Verify and every reader accept.
type Chain struct {
	Seq  uint64
	Head [sha256.Size]byte
}

// String gives the head as Log.Head does: the hex SHA-256 of the last
// record's line.
func (c Chain) String() string { return hex.EncodeToString(c.Head[:]) }

// Next validates e and encodes it as the record following c, and advances
// c past it. It assigns e's Seq and converts its Time to UTC; a zero Time
// is refused (the caller stamps it). It returns the record's line without
// the newline, in the log's one encoding (see the package doc), or an
// *EntryError (ErrInvalidEntry) and leaves c as it was.
func (c *Chain) Next(e Entry) ([]byte, error) {
	if field, reason := e.check(); field != "" {
		return nil, &EntryError{Field: field, Reason: reason}
	}
	if e.Time.IsZero() {
		return nil, &EntryError{Field: "time", Reason: "is required"}
	}
	e.Seq = c.Seq + 1
	e.Time = e.Time.UTC()
	line := appendRecord(nil, &e, &c.Head)
	c.Seq, c.Head = e.Seq, sha256.Sum256(line)
	return line, nil
}

// ExportLines reads a log's records from r, one line each with its
// newline, as a Log's file holds them, checks the chain as Export does,
// and writes the entries f selects to w in the given format (w may be
// io.Discard to check the chain only). It returns how many it wrote and
// the end of the chain it read; a caller holding a head recorded
// elsewhere compares it with that, to catch a removed tail. Damage gives
// a *CorruptError (ErrCorrupt), as does a last line without a newline.
// On any error, what reached w is incomplete and must be discarded.
func ExportLines(ctx context.Context, r io.Reader, w io.Writer, f Filter, format Format) (n int, end Chain, err error) {
	if format != JSONLines && format != CSV {
		return 0, Chain{}, fmt.Errorf("audit: export: unknown format %v", format)
	}
	s := newScanner(r)
	n, err = exportScan(ctx, s, w, f, format, func(err error) error {
		var torn *tornError
		if errors.As(err, &torn) {
			return corrupt(s.line+1, "last line has no newline (a record cut short)")
		}
		return err
	})
	return n, Chain{Seq: s.seq, Head: s.head}, err
}
