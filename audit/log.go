package audit

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/chartsync/chartsync/internal/atomicfile"
)

// Config tunes a Log. The zero value works.
type Config struct {
	// Now stamps entries appended with a zero Time (default time.Now).
	Now func() time.Time
	// Logger hears about repairs (a torn last line cut off at Open). Nil
	// discards.
	Logger *slog.Logger
}

// Log is an open access log. It is safe for concurrent use: Appends are
// serialised (each is one write and one fsync), and Exports read alongside
// them.
type Log struct {
	path   string
	f      *os.File
	now    func() time.Time
	logger *slog.Logger

	// write, sync and cut are the file's Write, Sync and Truncate;
	// tests replace them to inject failures.
	write func([]byte) (int, error)
	sync  func() error
	cut   func(int64) error

	// sem serialises Appends; a waiting Append gives up when its context
	// ends. The holder owns buf.
	sem chan struct{}
	buf []byte

	// life is held shared by Exports and exclusively by Close, so Close
	// waits for Exports reading the file.
	life sync.RWMutex

	mu     sync.Mutex // guards the fields below: the committed state
	seq    uint64     // Seq of the last durable record
	head   hash       // SHA-256 of its line
	size   int64      // bytes of durable records
	closed bool
	failed error // set when a failed Append could not be undone
}

// Open opens the log at path, creating it (mode 0600) if it does not
// exist, and checks its whole chain. A last line without a newline (an
// Append cut short by a crash) is cut off, and Config.Logger told; any
// other damage gives a *CorruptError (ErrCorrupt) and leaves the file as
// it is. The file is locked against other Logs (ErrLocked) until Close.
func Open(path string, cfg Config) (*Log, error) {
	l := &Log{path: path, now: cfg.Now, logger: cfg.Logger, sem: make(chan struct{}, 1)}
	if l.now == nil {
		l.now = time.Now
	}
	if l.logger == nil {
		l.logger = slog.New(slog.DiscardHandler)
	}
	created := true
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		created = false
		f, err = os.OpenFile(path, os.O_RDWR|os.O_APPEND, 0)
	}
	if err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	if err := lockFile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("open audit log %s: %w", path, err)
	}
	l.f = f
	l.write, l.sync, l.cut = f.Write, f.Sync, f.Truncate
	if created {
		if err := atomicfile.SyncDir(filepath.Dir(path)); err != nil {
			f.Close()
			return nil, fmt.Errorf("open audit log: %w", err)
		}
	}
	if err := l.load(); err != nil {
		f.Close()
		return nil, fmt.Errorf("open audit log %s: %w", path, err)
	}
	return l, nil
}

// load reads the chain, cutting a torn last line.
func (l *Log) load() error {
	if _, err := l.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	s := newScanner(l.f)
	for {
		err := s.next()
		if err == nil {
			continue
		}
		var torn *tornError
		switch {
		case err == io.EOF:
		case errors.As(err, &torn):
			// Append writes whole lines and fsyncs before it returns, so
			// a line without its newline was never acknowledged.
			if err := l.cut(s.off); err != nil {
				return fmt.Errorf("cut torn last line: %w", err)
			}
			if err := l.sync(); err != nil {
				return fmt.Errorf("cut torn last line: %w", err)
			}
			l.logger.Warn("audit: cut a torn last line (an append cut short by a crash)",
				"path", l.path, "line", s.line+1, "bytes", torn.n)
		default:
			return err
		}
		l.seq, l.head, l.size = s.seq, s.head, s.off
		return nil
	}
}

// Head returns the Seq of the last record and the hex SHA-256 of its line
// (without the newline); 0 and 64 zeros for an empty log. Recorded
// somewhere the log's writers cannot change, it lets an auditor detect a
// rewritten chain or a removed tail, which the chain alone cannot.
func (l *Log) Head() (seq uint64, sum string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seq, hex.EncodeToString(l.head[:])
}

// Append records entries, in order, with one write and one fsync: when it
// returns nil they are durable. It assigns each entry's Seq, and a Time
// from Config.Now where Time is zero. An entry that fails validation gives
// an *EntryError (ErrInvalidEntry) and nothing is written. A context that
// ends before the write starts gives its error and nothing is written.
//
// If the write or fsync fails, Append cuts the file back to where it was,
// returns the error, and the log carries on. If the cut fails too, Append
// returns ErrFailed and so does every later Append until the log is
// reopened; whole lines of the failed call may then remain in the file, so
// a caller that retries may record those entries twice. Appending no
// entries does nothing.
func (l *Log) Append(ctx context.Context, entries ...Entry) error {
	for i := range entries {
		if field, reason := entries[i].check(); field != "" {
			return &EntryError{Index: i, Field: field, Reason: reason}
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case l.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-l.sem }()

	l.mu.Lock()
	seq, prev, size, closed, failed := l.seq, l.head, l.size, l.closed, l.failed
	l.mu.Unlock()
	switch {
	case closed:
		return ErrClosed
	case failed != nil:
		return fmt.Errorf("%w: %w", ErrFailed, failed)
	case len(entries) == 0:
		return nil
	}

	b := l.buf[:0]
	for i := range entries {
		e := entries[i]
		seq++
		e.Seq = seq
		if e.Time.IsZero() {
			e.Time = l.now()
			if field, reason := e.check(); field != "" {
				return &EntryError{Index: i, Field: field, Reason: "from Config.Now: " + reason}
			}
		}
		e.Time = e.Time.UTC()
		start := len(b)
		b = appendRecord(b, &e, &prev)
		prev = sha256.Sum256(b[start:])
		b = append(b, '\n')
	}
	if cap(b) <= 1<<20 {
		l.buf = b
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	n, err := l.write(b)
	if err == nil && n != len(b) {
		err = io.ErrShortWrite
	}
	if err == nil {
		if err = l.sync(); err != nil {
			err = fmt.Errorf("fsync: %w", err)
		}
	}
	if err != nil {
		return l.undo(size, fmt.Errorf("append %d entries to audit log %s: %w", len(entries), l.path, err))
	}

	l.mu.Lock()
	l.seq, l.head, l.size = seq, prev, size+int64(len(b))
	l.mu.Unlock()
	return nil
}

// undo cuts the file back to size after a failed Append, or marks the Log
// failed if it cannot.
func (l *Log) undo(size int64, cause error) error {
	err := l.cut(size)
	if err == nil {
		err = l.sync()
	}
	if err == nil {
		return cause
	}
	err = fmt.Errorf("%w; cut back to %d bytes: %w", cause, size, err)
	l.mu.Lock()
	l.failed = err
	l.mu.Unlock()
	return fmt.Errorf("%w: %w", ErrFailed, err)
}

// Close waits for Appends and Exports in progress and closes the file.
// Calls after Close, Close included, give ErrClosed.
func (l *Log) Close() error {
	l.sem <- struct{}{}
	defer func() { <-l.sem }()
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	l.closed = true
	l.mu.Unlock()
	l.life.Lock()
	defer l.life.Unlock()
	return l.f.Close()
}

// scanner reads and checks a chain line by line, holding one line at a
// time (bounded by MaxLineLen) and the last hash.
type scanner struct {
	br   *bufio.Reader
	line int    // lines checked and found good
	seq  uint64 // Seq of the last line checked
	head hash   // SHA-256 of the last line checked
	off  int64  // bytes of the lines checked
	e    Entry  // the last line's entry
	raw  []byte // the last line with its newline; valid until the next call
}

func newScanner(r io.Reader) *scanner {
	return &scanner{br: bufio.NewReaderSize(r, MaxLineLen+1)}
}

// tornError: the data ends in n bytes with no newline.
type tornError struct{ n int }

func (e *tornError) Error() string { return fmt.Sprintf("torn last line of %d bytes", e.n) }

// next checks the next line. It returns nil, io.EOF at the end of the
// data, a *tornError for a last line with no newline, a *CorruptError, or
// the reader's error.
func (s *scanner) next() error {
	b, err := s.br.ReadSlice('\n')
	switch {
	case err == nil:
	case errors.Is(err, bufio.ErrBufferFull):
		return corrupt(s.line+1, "line longer than %d bytes", MaxLineLen)
	case err == io.EOF:
		if len(b) == 0 {
			return io.EOF
		}
		return &tornError{n: len(b)}
	default:
		return err
	}
	n := s.line + 1
	line := b[:len(b)-1]
	e, prev, reason := parseRecord(line)
	switch {
	case reason != "":
		return corrupt(n, "%s", reason)
	case e.Seq != s.seq+1:
		return corrupt(n, "seq %d, want %d", e.Seq, s.seq+1)
	case prev != s.head && n == 1:
		return corrupt(n, "first line's prev is not zero")
	case prev != s.head:
		return corrupt(n, "prev does not match the hash of line %d (that line or this one was changed)", n-1)
	}
	s.line = n
	s.seq, s.head, s.off, s.e, s.raw = e.Seq, sha256.Sum256(line), s.off+int64(len(b)), e, b
	return nil
}
