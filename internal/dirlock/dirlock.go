// Package dirlock gives a program the exclusive use of a data directory:
// two processes must never open one replica at once (its ID is the
// Automerge actor of every change it makes, so two writers would reuse
// sequence numbers, and their syncs would refuse each other's bundles).
//
// The lock is flock(2) on a file in the directory, advisory and released
// by the kernel when the process ends, however it ends: a crash leaves no
// stale lock. The file also holds the holder's process ID and program
// name, so that a second program can say who has the directory. Where
// flock is not available (see lock_other.go) Acquire takes no lock.
package dirlock

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// FileName is the lock file Acquire keeps in the directory.
const FileName = ".lock"

// ErrLocked matches the error Acquire returns when another process holds
// the directory (a *LockedError).
var ErrLocked = errors.New("the data directory is in use by another process")

// LockedError says which directory is held and, when the holder wrote it,
// by which process.
type LockedError struct {
	Dir     string
	PID     int    // 0 if unknown
	Program string // "" if unknown
}

func (e *LockedError) Error() string {
	who := "another process"
	if e.PID > 0 {
		who = fmt.Sprintf("process %d", e.PID)
		if e.Program != "" {
			who = fmt.Sprintf("%s (%s)", who, e.Program)
		}
	}
	return fmt.Sprintf("%s is in use by %s: wait for it to finish, or stop it, and try again", e.Dir, who)
}

// Is makes a *LockedError match ErrLocked.
func (e *LockedError) Is(target error) bool { return target == ErrLocked }

// Lock is a held directory lock.
type Lock struct {
	f *os.File
}

// Acquire takes the lock of dir, which must exist, or returns an error
// matching ErrLocked (a *LockedError) if another process holds it. It
// does not wait.
func Acquire(dir string) (*Lock, error) {
	return AcquireNamed(dir, FileName)
}

// AcquireNamed is Acquire with a lock file of another name, for a program
// that guards several things in one directory (a server, and a command
// that must not run twice at once).
func AcquireNamed(dir, name string) (*Lock, error) {
	path := filepath.Join(dir, name)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	if err := lock(f); err != nil {
		f.Close()
		if errors.Is(err, errWouldBlock) {
			le := &LockedError{Dir: dir}
			le.PID, le.Program = holder(path)
			return nil, le
		}
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	// Who holds it, for the next program to say.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+" "+filepath.Base(os.Args[0])+"\n"), 0)
	}
	return &Lock{f: f}, nil
}

// Release gives the directory up. It is safe to call more than once.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := unlock(l.f)
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	l.f = nil
	return err
}

// holder reads the process ID and program name the holder wrote.
func holder(path string) (int, string) {
	b, err := os.ReadFile(path)
	if err != nil || len(b) > 4096 {
		return 0, ""
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, ""
	}
	pid, err := strconv.Atoi(f[0])
	if err != nil || pid <= 0 {
		return 0, ""
	}
	if len(f) > 1 {
		return pid, f[1]
	}
	return pid, ""
}
