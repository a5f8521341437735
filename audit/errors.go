package audit

import (
	"errors"
	"fmt"
)

// Errors returned by this package. Match them with errors.Is; the error
// text says which line, entry or field was refused.
var (
	// ErrCorrupt: the log's bytes are not a chain this package wrote: a
	// line was edited, deleted, reordered, duplicated, forged or damaged.
	// The error is a *CorruptError naming the line.
	ErrCorrupt = errors.New("audit: log is corrupt")
	// ErrInvalidEntry: Append was given an entry it may not record. The
	// error is an *EntryError naming the entry and field; nothing of that
	// call was written.
	ErrInvalidEntry = errors.New("audit: invalid entry")
	// ErrClosed: the Log was closed.
	ErrClosed = errors.New("audit: log is closed")
	// ErrLocked: the log file is held open by another Log, in this process
	// or another. Two writers would fork the chain.
	ErrLocked = errors.New("audit: log is open elsewhere")
	// ErrFailed: an earlier Append failed and its partial write could not
	// be undone, so the file's end is unknown. Close the Log and Open it
	// again (Open cuts a torn last line).
	ErrFailed = errors.New("audit: log failed; reopen it")
)

// CorruptError says where a log's chain breaks. It matches ErrCorrupt.
type CorruptError struct {
	Line   int    // 1-based line number where the damage is detected
	Reason string // what is wrong, in words
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("audit: log is corrupt at line %d: %s", e.Line, e.Reason)
}

// Unwrap returns ErrCorrupt.
func (e *CorruptError) Unwrap() error { return ErrCorrupt }

func corrupt(line int, format string, args ...any) *CorruptError {
	return &CorruptError{Line: line, Reason: fmt.Sprintf(format, args...)}
}

// EntryError says which entry of an Append call was refused and why. It
// matches ErrInvalidEntry.
type EntryError struct {
	Index  int    // position of the entry in the Append call
	Field  string // the record key of the refused field ("device", "chart", ...)
	Reason string
}

func (e *EntryError) Error() string {
	return fmt.Sprintf("audit: entry %d: %s %s", e.Index, e.Field, e.Reason)
}

// Unwrap returns ErrInvalidEntry.
func (e *EntryError) Unwrap() error { return ErrInvalidEntry }
