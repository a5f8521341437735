package audit

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
)

// Filter selects entries for Export. A zero field matches every entry; an
// entry is selected when it matches every field.
type Filter struct {
	Chart  string // exact chart ID
	Device string // exact replica ID
	User   string // exact user ID
	Clinic string // exact clinic
	Action Action // one action
	Since  time.Time
	Until  time.Time // Since <= Time < Until
}

// Match reports whether f selects e.
func (f Filter) Match(e Entry) bool {
	return (f.Chart == "" || e.Chart == f.Chart) &&
		(f.Device == "" || e.Device == f.Device) &&
		(f.User == "" || e.User == f.User) &&
		(f.Clinic == "" || e.Clinic == f.Clinic) &&
		(f.Action == "" || e.Action == f.Action) &&
		(f.Since.IsZero() || !e.Time.Before(f.Since)) &&
		(f.Until.IsZero() || e.Time.Before(f.Until))
}

// Format is an export format.
type Format int

// Formats.
const (
	// JSONLines writes the selected records byte for byte as the log holds
	// them, one per line, "prev" included: each unmarshals into an Entry,
	// and an export of every entry is a copy of the log that Verify
	// accepts.
	JSONLines Format = iota
	// CSV writes RFC 4180 CSV (encoding/csv) with a header row, the
	// columns named and ordered as the record keys, without prev; time is
	// RFC 3339 in UTC.
	CSV
)

// csvHeader names the CSV columns.
var csvHeader = []string{"seq", "time", "action", "device", "clinic", "user", "role", "chart", "changes", "detail"}

func (f Format) String() string {
	switch f {
	case JSONLines:
		return "jsonl"
	case CSV:
		return "csv"
	}
	return "Format(" + strconv.Itoa(int(f)) + ")"
}

// Export writes the entries f selects, in log order, to w in the given
// format, and returns how many it wrote. It reads the log as it was when
// Export began (Appends carry on meanwhile) and checks the chain as it
// reads, up to the head Append left: a file changed underneath gives a
// *CorruptError (ErrCorrupt). On any error, what reached w is incomplete
// and must be discarded; the count is of entries handed to w so far.
// Close waits for Exports in progress; cancel ctx to stop one.
func (l *Log) Export(ctx context.Context, w io.Writer, f Filter, format Format) (int, error) {
	if format != JSONLines && format != CSV {
		return 0, fmt.Errorf("audit: export: unknown format %v", format)
	}
	l.life.RLock()
	defer l.life.RUnlock()
	l.mu.Lock()
	seq, head, size, closed := l.seq, l.head, l.size, l.closed
	l.mu.Unlock()
	if closed {
		return 0, ErrClosed
	}

	s := newScanner(io.NewSectionReader(l.f, 0, size))
	n, err := exportScan(ctx, s, w, f, format, func(err error) error {
		var torn *tornError
		if errors.As(err, &torn) {
			err = corrupt(s.line+1, "line cut short: the log changed underneath")
		}
		if s.seq < seq && err == nil {
			err = corrupt(s.line+1, "the log ends at seq %d, but seq %d was appended: it changed underneath", s.seq, seq)
		}
		if err == nil && s.head != head {
			err = corrupt(s.line, "line %d is not the line appended: the log changed underneath", s.line)
		}
		if err != nil {
			return fmt.Errorf("export audit log %s: %w", l.path, err)
		}
		return nil
	})
	return n, err
}

// exportScan writes the entries f selects from s to w. check is called
// with the scanner's error other than io.EOF (a *tornError, a
// *CorruptError, the reader's), and once with nil at the end of the data,
// before anything is flushed: it returns the error to give, or nil to go
// on.
func exportScan(ctx context.Context, s *scanner, w io.Writer, f Filter, format Format, check func(error) error) (int, error) {
	bw := bufio.NewWriterSize(w, 64<<10)
	var cw *csv.Writer
	var rec []string
	if format == CSV {
		cw = csv.NewWriter(bw)
		if err := cw.Write(csvHeader); err != nil {
			return 0, fmt.Errorf("export audit log: %w", err)
		}
		rec = make([]string, len(csvHeader))
	}
	n := 0
	for {
		if s.line%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return n, err
			}
		}
		err := s.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if err = check(err); err != nil {
				return n, err
			}
			continue
		}
		if !f.Match(s.e) {
			continue
		}
		n++
		if format == CSV {
			e := &s.e
			rec[0] = strconv.FormatUint(e.Seq, 10)
			rec[1] = e.Time.Format(time.RFC3339Nano)
			rec[2], rec[3], rec[4], rec[5] = string(e.Action), e.Device, e.Clinic, e.User
			rec[6], rec[7], rec[8], rec[9] = e.Role, e.Chart, strconv.Itoa(e.Changes), e.Detail
			err = cw.Write(rec)
		} else {
			_, err = bw.Write(s.raw)
		}
		if err != nil {
			return n, fmt.Errorf("export audit log: %w", err)
		}
	}
	if err := check(nil); err != nil {
		return n, err
	}
	if cw != nil {
		cw.Flush()
		if err := cw.Error(); err != nil {
			return n, fmt.Errorf("export audit log: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return n, fmt.Errorf("export audit log: %w", err)
	}
	return n, nil
}

// Verify checks the chain of a log read from r (an auditor's copy, say)
// and returns how many records it holds. Damage gives a *CorruptError
// (ErrCorrupt) and the number of records before it; so does a last line
// without a newline, which Open would cut but an auditor should hear of.
// The chain shows that no record was changed, removed or moved relative
// to the others; that the copy is the whole log, and not a rewritten one,
// takes comparing its last record with a head recorded elsewhere (see
// Log.Head).
func Verify(ctx context.Context, r io.Reader) (n int, err error) {
	s := newScanner(r)
	for {
		if s.line%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return s.line, err
			}
		}
		err := s.next()
		var torn *tornError
		switch {
		case err == nil:
			continue
		case err == io.EOF:
			return s.line, nil
		case errors.As(err, &torn):
			return s.line, corrupt(s.line+1, "last line has no newline (an append cut short, or a copy taken mid-append)")
		case errors.Is(err, ErrCorrupt):
			return s.line, err
		default:
			return s.line, fmt.Errorf("verify audit log: %w", err)
		}
	}
}
