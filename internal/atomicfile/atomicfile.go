// Package atomicfile writes files so that a crash leaves either the old
// content or all of the new, never a part: a temporary file in the same
// directory, fsync, rename, fsync of the directory.
//
// # Caveats
//
// The rename is durable only once the directory is synced. When that sync
// fails, Write returns an error matching ErrDirNotSynced with the new
// content already in place: the caller must not report the file durable,
// and should run SyncDir on the directory again (every later run reports
// its own failure). A later sync that succeeds is the best the operating
// system offers: on some kernels a failed directory sync is reported once
// and the next one succeeds without having written what the failed one
// dropped.
package atomicfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
)

// ErrDirNotSynced is returned (wrapped) by SyncDir when a directory could
// not be synced, and by Write when the file was renamed into place but its
// directory could not be synced: the path holds the new content, but a
// crash may still undo the rename. Run SyncDir on the directory until it
// succeeds before treating the file as durable.
var ErrDirNotSynced = errors.New("atomicfile: the directory was not synced (the file may not survive a crash)")

// Options tune Write. The zero value writes a 0600 file through a temporary
// named "."+base+".tmp-*".
type Options struct {
	// Perm is the file's permission bits (default 0600).
	Perm os.FileMode
	// TempPattern is the os.CreateTemp pattern of the temporary file, for
	// callers that clean up leftovers by name.
	TempPattern string
	// Sync, Rename and SyncDir replace (*os.File).Sync, os.Rename and
	// the package's SyncDir, for tests that inject failures.
	Sync    func(*os.File) error
	Rename  func(oldpath, newpath string) error
	SyncDir func(dir string) error
}

// Write writes data to path atomically and durably. On an error before the
// rename, the temporary file is removed (a failure to remove it is
// reported too) and path is as it was. On an error matching
// ErrDirNotSynced, path holds data but may not survive a crash.
func Write(path string, data []byte, o Options) (err error) {
	if o.Perm == 0 {
		o.Perm = 0o600
	}
	if o.TempPattern == "" {
		o.TempPattern = "." + filepath.Base(path) + ".tmp-*"
	}
	if o.Sync == nil {
		o.Sync = (*os.File).Sync
	}
	if o.Rename == nil {
		o.Rename = os.Rename
	}
	if o.SyncDir == nil {
		o.SyncDir = SyncDir
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, o.TempPattern)
	if err != nil {
		return err
	}
	tmp := f.Name()
	renamed := false
	defer func() {
		if err != nil && !renamed {
			f.Close()
			if rerr := os.Remove(tmp); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
				err = errors.Join(err, fmt.Errorf("remove temporary %s: %w", tmp, rerr))
			}
		}
	}()
	if err := f.Chmod(o.Perm); err != nil && runtime.GOOS != "windows" {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := o.Sync(f); err != nil {
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := o.Rename(tmp, path); err != nil {
		return err
	}
	renamed = true
	if err := o.SyncDir(dir); err != nil {
		if !errors.Is(err, ErrDirNotSynced) {
			err = fmt.Errorf("%w: %w", ErrDirNotSynced, err)
		}
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// SyncDir makes a directory's entries durable. Filesystems that cannot
// sync a directory (some FAT and network mounts, Windows) say so with
// EINVAL or ENOTSUP; their renames are as durable as they can make them.
// Every other failure, opening the directory included, is returned
// wrapped with ErrDirNotSynced; SyncDir may be run again after one.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrDirNotSynced, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) && !errors.Is(err, syscall.EINVAL) &&
		!errors.Is(err, syscall.ENOTSUP) && runtime.GOOS != "windows" {
		return fmt.Errorf("sync directory %s: %w: %w", dir, ErrDirNotSynced, err)
	}
	return nil
}
