// Package atomicfile writes files so that a crash leaves either the old
// content or all of the new, never a part: a temporary file in the same
// directory, fsync, rename, fsync of the directory.
package atomicfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
)

// Options tune Write. The zero value writes a 0600 file through a temporary
// named "."+base+".tmp-*".
type Options struct {
	// Perm is the file's permission bits (default 0600).
	Perm os.FileMode
	// TempPattern is the os.CreateTemp pattern of the temporary file, for
	// callers that clean up leftovers by name.
	TempPattern string
	// Sync and Rename replace (*os.File).Sync and os.Rename, for tests that
	// inject failures.
	Sync   func(*os.File) error
	Rename func(oldpath, newpath string) error
}

// Write writes data to path atomically and durably. On error the temporary
// file is removed and path is as it was.
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
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, o.TempPattern)
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
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
	return SyncDir(dir)
}

// SyncDir makes a directory's entries durable. Filesystems that cannot
// sync a directory (some FAT and network mounts, Windows) say so with
// EINVAL or ENOTSUP; their renames are as durable as they can make them.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) && !errors.Is(err, syscall.EINVAL) &&
		!errors.Is(err, syscall.ENOTSUP) && runtime.GOOS != "windows" {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
