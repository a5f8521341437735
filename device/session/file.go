package session

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/chartsync/chartsync/internal/atomicfile"
	"github.com/chartsync/chartsync/record"
)

// MaxFileSize bounds a session file read.
const MaxFileSize = 64 << 10

// File is a command-line app's session, kept in a file between runs.
type File struct {
	record.Author
	Since time.Time `json:"since"`
	// Last is when the user last used the app; after Idle (DefaultIdle
	// if zero) without use they are logged out.
	Last time.Time     `json:"last,omitzero"`
	Idle time.Duration `json:"idle,omitempty"`
}

// LastUse is when the session was last used: Last, or Since before any
// use.
func (f File) LastUse() time.Time {
	if f.Last.After(f.Since) {
		return f.Last
	}
	return f.Since
}

// ReadFile reads the session file at path: ErrNotLoggedIn when there is
// none, ErrCorruptFile for one that does not decode.
func ReadFile(path string) (File, error) {
	var f File
	fh, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return f, ErrNotLoggedIn
	}
	if err != nil {
		return f, fmt.Errorf("read session: %w", err)
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, MaxFileSize+1))
	if err != nil {
		return f, fmt.Errorf("read session: %w", err)
	}
	if len(b) > MaxFileSize {
		return f, fmt.Errorf("%s: larger than %d bytes: %w", path, MaxFileSize, ErrCorruptFile)
	}
	if err := Decode(b, &f); err != nil {
		return f, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// Decode decodes a session file's bytes: known fields only, a user ID
// and a valid role, no negative idle time; anything else is
// ErrCorruptFile.
func Decode(b []byte, f *File) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var out File
	if err := dec.Decode(&out); err != nil {
		return fmt.Errorf("%w: %v", ErrCorruptFile, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: data after the session", ErrCorruptFile)
	}
	if out.UserID == "" || !out.Role.Valid() || out.Idle < 0 {
		return fmt.Errorf("%w: no user, an unknown role or a negative idle time", ErrCorruptFile)
	}
	*f = out
	return nil
}

// WriteFile writes the session to path atomically (temporary file,
// fsync, rename), readable by its owner only.
func (f File) WriteFile(path string) error {
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("write session: %w", err)
	}
	if err := atomicfile.Write(path, append(b, '\n'), atomicfile.Options{}); err != nil {
		return fmt.Errorf("write session: %w", err)
	}
	return nil
}

// RemoveFile ends the session kept at path (logout); none is no error.
func RemoveFile(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove session: %w", err)
	}
	return nil
}

// Use reads the session at path and, unless it has ended (Expired with
// its idle time), records its use at now and returns it. An ended
// session's file is removed and the error matches ErrIdle and
// ErrNotLoggedIn. Recording the use is best effort: a device whose disk
// is full still shows charts, and the session then ends counting from
// its last recorded use.
func Use(path string, now time.Time) (File, error) {
	f, err := ReadFile(path)
	if err != nil {
		return f, err
	}
	idle := f.Idle
	if idle == 0 {
		idle = DefaultIdle
	}
	if Expired(f.LastUse(), now, idle) {
		if err := RemoveFile(path); err != nil {
			return File{}, err
		}
		return File{}, fmt.Errorf("%s was %w (%s): %w", f.UserID, ErrIdle, idle, ErrNotLoggedIn)
	}
	f.Last = now
	_ = f.WriteFile(path)
	return f, nil
}
