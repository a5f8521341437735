// Package faultvfs makes SQLite's file operations fail on demand, for
// tests of what a store promises when the disk misbehaves: a write or an
// fsync that fails, a disk that is full.
//
// It registers a VFS (SQLite's operating-system layer) that passes every
// call to the default VFS and fails the operations that armed rules name,
// on the files under one directory only. Once installed as the default,
// every database the process opens goes through it, so a test can inject
// faults into code that opens its store by path (sqlite.Open,
// replica.Open) without any hook in that code.
//
// # Usage
//
//	faultvfs.Install()
//	faultvfs.Arm(dir, faultvfs.FailSync(faultvfs.WAL, 0, 1))
//	defer faultvfs.Disarm()
//
// # Caveats
//
// It is for tests: one set of rules for the whole process, so tests that
// arm it must not run in parallel with each other. A failed fsync leaves
// the data where the kernel had it (readable, as after a real failed
// fsync on Linux); a full disk refuses only growth, as a real one does.
// What would survive a power cut is not modelled: copy the files (see
// CrashCopy) to see what a process crash would leave.
package faultvfs

/*
#include <stdlib.h>
#include "faultvfs.h"
*/
import "C"

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"unsafe"

	_ "github.com/mutecomm/go-sqlcipher/v4" // links the SQLite this VFS wraps
)

// Name is the VFS's name, for a "vfs=" DSN parameter.
const Name = C.FAULT_VFS_NAME

// Files says which files a rule applies to.
type Files int

// The files of a database.
const (
	DB    Files = C.FAULT_DB      // the main database file
	WAL   Files = C.FAULT_WAL     // its write-ahead log
	SHM   Files = C.FAULT_SHMFILE // its shared-memory wal-index (growth only)
	Other Files = C.FAULT_OTHER   // journals and temporary files
	All         = DB | WAL | SHM | Other
)

// Op is an operation a rule fails.
type Op int

// Operations.
const (
	Write  Op = C.FAULT_OP_WRITE  // any write
	Sync   Op = C.FAULT_OP_SYNC   // an fsync
	Shm    Op = C.FAULT_OP_SHM    // growing the wal-index
	Grow   Op = C.FAULT_OP_GROW   // anything that makes a file bigger
	Delete Op = C.FAULT_OP_DELETE // deleting a file
)

// SQLite result codes a rule returns, as the default VFS would.
const (
	CodeFull         = 13             // SQLITE_FULL: a write found no space
	CodeIOErrWrite   = 10 | (3 << 8)  // SQLITE_IOERR_WRITE
	CodeIOErrFsync   = 10 | (4 << 8)  // SQLITE_IOERR_FSYNC
	CodeIOErrShmSize = 10 | (19 << 8) // SQLITE_IOERR_SHMSIZE
	CodeIOErrDelete  = 10 | (10 << 8) // SQLITE_IOERR_DELETE
)

// Rule fails operations: of the operations Op on Files, it lets Skip
// through, then fails the next Times (all of them when Times is
// negative) with Code, leaving Errno for SQLite to report. A failed write
// with Perform set is carried out before it is reported failed (the bytes
// reached the file, the caller was told otherwise). A rule with After set
// counts and fails nothing until the rule at index After-1 of the same Arm
// has failed an operation (After is 0 for no such condition).
type Rule struct {
	Op      Op
	Files   Files
	Skip    int
	Times   int
	Code    int
	Errno   syscall.Errno
	Perform bool
	After   int
}

// Then returns r armed only once the rule at index i has fired.
func (r Rule) Then(i int) Rule {
	r.After = i + 1
	return r
}

// FailSync fails times fsyncs of files after skip, as an I/O error.
func FailSync(files Files, skip, times int) Rule {
	return Rule{Op: Sync, Files: files, Skip: skip, Times: times, Code: CodeIOErrFsync, Errno: syscall.EIO}
}

// FailWrite fails times writes to files after skip, as an I/O error;
// performed says whether the bytes are written all the same.
func FailWrite(files Files, skip, times int, performed bool) Rule {
	return Rule{Op: Write, Files: files, Skip: skip, Times: times, Code: CodeIOErrWrite, Errno: syscall.EIO, Perform: performed}
}

// Dies returns the rules of a disk that, once the rule at index i has
// fired, writes and deletes nothing more, as a Linux filesystem remounted
// read-only after an I/O error does (ext4's errors=remount-ro).
func Dies(i int) []Rule {
	return []Rule{
		{Op: Write, Files: All, Times: -1, Code: CodeIOErrWrite, Errno: syscall.EROFS, After: i + 1},
		{Op: Delete, Files: All, Times: -1, Code: CodeIOErrDelete, Errno: syscall.EROFS, After: i + 1},
	}
}

// DiskFull returns the rules of a full disk from the skip-th growth of a
// file on: a write past a file's end writes what fits in the file and
// fails with SQLITE_FULL, as the default VFS reports ENOSPC, and growing
// the wal-index fails with SQLITE_IOERR_SHMSIZE and ENOSPC.
func DiskFull(skip int) []Rule {
	return []Rule{
		{Op: Grow, Files: DB | WAL | Other, Skip: skip, Times: -1, Code: CodeFull},
		{Op: Shm, Files: SHM, Times: -1, Code: CodeIOErrShmSize, Errno: syscall.ENOSPC},
	}
}

var (
	installOnce sync.Once
	installErr  error
	armMu       sync.Mutex
)

// Install registers the VFS as the process's default. It may be called
// more than once.
func Install() error {
	installOnce.Do(func() {
		if rc := C.fault_register(1); rc != 0 {
			installErr = fmt.Errorf("faultvfs: register: SQLite result code %d", int(rc))
		}
	})
	return installErr
}

// Arm replaces the rules in force with rules, for the files under dir
// (an absolute path), and resets the count of faults fired.
func Arm(dir string, rules ...Rule) {
	armMu.Lock()
	defer armMu.Unlock()
	if len(rules) > 16 {
		panic("faultvfs: at most 16 rules")
	}
	cs := make([]C.fault_rule, max(len(rules), 1))
	for i, r := range rules {
		cs[i] = C.fault_rule{
			op:        C.int(r.Op),
			files:     C.int(r.Files),
			skip:      C.int(r.Skip),
			times:     C.int(r.Times),
			code:      C.int(r.Code),
			sys_errno: C.int(r.Errno),
			after:     C.int(r.After),
		}
		if r.Perform {
			cs[i].perform = 1
		}
	}
	cdir := C.CString(prefix(dir))
	defer C.free(unsafe.Pointer(cdir))
	C.fault_arm(cdir, &cs[0], C.int(len(rules)))
}

// SkipSyncs makes the fsyncs of files under dir (an absolute path; "" for
// none) succeed without syncing, unless a rule fails them: for tests that
// simulate process crashes (CrashCopy), not power cuts, and would
// otherwise spend their time waiting for the disk.
func SkipSyncs(dir string) {
	armMu.Lock()
	defer armMu.Unlock()
	if dir != "" {
		dir = prefix(dir)
	}
	cdir := C.CString(dir)
	defer C.free(unsafe.Pointer(cdir))
	C.fault_skip_syncs(cdir)
}

// prefix returns the path prefix of the files under dir.
func prefix(dir string) string {
	dir, err := filepath.Abs(dir)
	if err != nil {
		panic(fmt.Sprintf("faultvfs: %v", err))
	}
	if resolved, err := filepath.EvalSymlinks(dir); err == nil {
		dir = resolved
	}
	return dir + string(filepath.Separator)
}

// Disarm removes every rule.
func Disarm() {
	armMu.Lock()
	defer armMu.Unlock()
	C.fault_disarm()
}

// Fired returns how many operations the rules have failed since Arm.
func Fired() int {
	return int(C.fault_fired())
}

// CrashCopy copies the database at path with its write-ahead log, as they
// are now, to dir and returns the copy's path: what a process killed at
// this instant would leave for the next open to recover. It replaces an
// earlier copy in dir.
func CrashCopy(path, dir string) (string, error) {
	dst := filepath.Join(dir, filepath.Base(path))
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Remove(dst + suffix); err != nil && !os.IsNotExist(err) {
			return "", fmt.Errorf("crash copy of %s: %w", path, err)
		}
	}
	for _, suffix := range []string{"", "-wal"} {
		if err := copyFile(path+suffix, dst+suffix); err != nil && !(suffix != "" && os.IsNotExist(err)) {
			return "", fmt.Errorf("crash copy of %s: %w", path, err)
		}
	}
	return dst, nil
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
