package file

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"github.com/chartsync/chartsync/internal/atomicfile"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/chartsync/chartsync/replica"
)

// maxFileBytes bounds a bundle file: a bundle's body is at most
// replica.MaxBundleBytes, and its frame adds a few dozen bytes.
const maxFileBytes = replica.MaxBundleBytes + 64

// FileError reports a bundle file that was refused.
type FileError struct {
	Path string
	Err  error
}

func (e *FileError) Error() string { return "bundle file " + e.Path + ": " + e.Err.Error() }

// Unwrap returns the reason the file was refused.
func (e *FileError) Unwrap() error { return e.Err }

// Exported reports an Export.
type Exported struct {
	Path     string // the bundle file
	Bytes    int    // its size
	Changes  int    // changes it carries
	Complete bool   // false if the replica has more for the peer once this is acknowledged
	// Written is false when an identical file was already there (an
	// export with nothing new since the last one).
	Written bool
	// Superseded counts older files from this replica to the peer that
	// the new file replaces and that were removed.
	Superseded int
}

// Export writes the bundle peer needs from r to a file in dir, which must
// exist, and returns its path. The file carries every change the peer has
// not acknowledged (up to replica.Config.BundleBytes) and r's
// acknowledgement of what it holds from the peer, so a reply file is all
// the peer needs to send back.
//
// The file is written atomically and durably: to a temporary file in dir,
// fsynced, renamed to its name, then the directory is fsynced. If Export
// fails before the rename, nothing is left in dir. An identical file
// already in place is not rewritten. Once the new file is in place, older
// files from r to peer in dir are removed: each is superseded by the new
// one, which starts from the same or a later acknowledgement.
func Export(ctx context.Context, r *replica.Replica, peer, dir string) (Exported, error) {
	if err := ctx.Err(); err != nil {
		return Exported{}, err
	}
	if _, err := ParseName(NameFor(r.ID(), peer, nil)); err != nil {
		return Exported{}, fmt.Errorf("export bundle for %s: peer ID is not 32 lower-case hex digits: %w", peer, err)
	}
	out, err := r.MakeBundle(ctx, peer)
	if err != nil {
		return Exported{}, fmt.Errorf("export bundle for %s: %w", peer, err)
	}
	name := NameFor(r.ID(), peer, out.Data)
	ex := Exported{Path: filepath.Join(dir, name), Bytes: len(out.Data), Changes: out.Changes, Complete: out.Complete}
	if !holds(ex.Path, out.Data) {
		if err := atomicfile.Write(filepath.Join(dir, name), out.Data, atomicfile.Options{TempPattern: tempGlob, Sync: syncFile, Rename: rename, SyncDir: syncDir}); err != nil {
			return Exported{}, fmt.Errorf("export bundle for %s: %w", peer, err)
		}
		ex.Written = true
	} else if err := syncDir(dir); err != nil {
		// The same file is in place, perhaps from an export whose
		// directory sync failed: it is not durable until one succeeds.
		return Exported{}, fmt.Errorf("export bundle for %s: %w", peer, err)
	}
	ex.Superseded, err = removeSuperseded(dir, r.ID(), peer, name)
	if err != nil {
		return ex, fmt.Errorf("export bundle for %s: %w", peer, err)
	}
	return ex, nil
}

// holds reports whether path is a regular file holding exactly data.
func holds(path string, data []byte) bool {
	fi, err := os.Lstat(path)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() != int64(len(data)) {
		return false
	}
	got, err := os.ReadFile(path)
	return err == nil && bytes.Equal(got, data)
}

// Hooks for tests to inject failures.
var (
	syncFile = (*os.File).Sync
	rename   = os.Rename
	syncDir  = atomicfile.SyncDir
)

// removeSuperseded removes the regular files in dir from one replica to
// another other than keep.
func removeSuperseded(dir, from, to, keep string) (int, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, e := range entries {
		name, err := ParseName(e.Name())
		if err != nil || name.From != from || name.To != to || e.Name() == keep || !e.Type().IsRegular() {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove superseded bundle file: %w", err))
			continue
		}
		n++
	}
	if n > 0 {
		if err := syncDir(dir); err != nil {
			errs = append(errs, err)
		}
	}
	return n, errors.Join(errs...)
}

// Imported reports an Import.
type Imported struct {
	// Files lists every bundle file addressed to the replica that was
	// tried, in the order it was tried.
	Files []FileResult
	// Sums over Files.
	Accepted, Rejected  int
	Bytes               int // bytes of accepted files
	Applied, Duplicates int // changes new to the replica, and already held
}

// FileResult is what became of one bundle file.
type FileResult struct {
	Path string
	From string // sender, as the file's name gives it
	// Received is what the replica did with the bundle (zero if refused).
	Received replica.Received
	Bytes    int
	// Err is why the file was refused (a *FileError), nil if accepted.
	Err error
}

// Import applies every bundle file in dir addressed to r, from any sender.
// See ImportFrom.
func Import(ctx context.Context, r *replica.Replica, dir string) (Imported, error) {
	return importDir(ctx, r, "", dir)
}

// ImportFrom applies every bundle file in dir from peer to r.
//
// Import reads dir and never changes it: files stay where they are (their
// sender replaces them with its next export), files addressed to other
// replicas and names that are not bundle files are left alone, and
// refused files are reported, not moved. A file that names r as its
// recipient but is a symbolic link, a directory or a device is refused
// with ErrNotRegular and not opened. Files from one sender are applied
// oldest bundle first.
//
// Applying a file already applied changes nothing, and a refused file
// changes nothing. A refusal does not stop the import: the returned error
// joins one *FileError per refused file (match ErrCorrupt, ErrNotRegular
// and the replica sentinels with errors.Is), and Imported reports every
// file either way. An error reading dir itself, or the context ending,
// stops the import.
func ImportFrom(ctx context.Context, r *replica.Replica, peer, dir string) (Imported, error) {
	if peer == "" {
		return Imported{}, errors.New("import bundle files: no peer given")
	}
	return importDir(ctx, r, peer, dir)
}

// candidate is a bundle file read and checked, waiting to be applied.
type candidate struct {
	path string
	from string
	data []byte
	b    *replica.Bundle
}

func importDir(ctx context.Context, r *replica.Replica, peer, dir string) (Imported, error) {
	var im Imported
	entries, err := os.ReadDir(dir)
	if err != nil {
		return im, fmt.Errorf("import bundle files: %w", err)
	}
	refuse := func(path, from string, err error) error {
		ferr := &FileError{Path: path, Err: err}
		im.Files = append(im.Files, FileResult{Path: path, From: from, Err: ferr})
		im.Rejected++
		return ferr
	}
	var errs []error
	var ready []candidate
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return im, err
		}
		n, err := ParseName(e.Name())
		if err != nil || n.To != r.ID() || (peer != "" && n.From != peer) {
			continue
		}
		path := filepath.Join(dir, e.Name())
		data, err := readRegular(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue // replaced by its sender since the listing
		}
		if err == nil {
			var b *replica.Bundle
			if b, err = Parse(e.Name(), data); err == nil {
				ready = append(ready, candidate{path: path, from: n.From, data: data, b: b})
				continue
			}
		}
		errs = append(errs, refuse(path, n.From, err))
	}
	// Oldest first, so that the replica's record of how far it holds each
	// sender's log moves forward with every file.
	slices.SortFunc(ready, func(x, y candidate) int {
		return cmp.Or(cmp.Compare(x.from, y.from), cmp.Compare(x.b.Base, y.b.Base), cmp.Compare(x.b.Upto, y.b.Upto), cmp.Compare(x.path, y.path))
	})
	for _, c := range ready {
		if err := ctx.Err(); err != nil {
			return im, errors.Join(append(errs, err)...)
		}
		got, err := r.Receive(ctx, c.data)
		if err != nil {
			if ctx.Err() != nil {
				return im, errors.Join(append(errs, err)...)
			}
			errs = append(errs, refuse(c.path, c.from, err))
			continue
		}
		im.Files = append(im.Files, FileResult{Path: c.path, From: c.from, Received: got, Bytes: len(c.data)})
		im.Accepted++
		im.Bytes += len(c.data)
		im.Applied += got.Applied
		im.Duplicates += got.Duplicates
	}
	return im, errors.Join(errs...)
}

// readRegular reads a regular file of at most maxFileBytes, refusing
// symbolic links, directories and devices without opening them.
func readRegular(path string) ([]byte, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: %w", fi.Mode().Type(), ErrNotRegular)
	}
	if fi.Size() > maxFileBytes {
		return nil, fmt.Errorf("%d bytes, limit %d: %w", fi.Size(), maxFileBytes, replica.ErrBundleTooLarge)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// The entry may have been swapped for a link since Lstat.
	if ofi, err := f.Stat(); err != nil {
		return nil, err
	} else if !os.SameFile(fi, ofi) {
		return nil, fmt.Errorf("replaced while being opened: %w", ErrNotRegular)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxFileBytes {
		return nil, fmt.Errorf("grew past %d bytes: %w", maxFileBytes, replica.ErrBundleTooLarge)
	}
	return data, nil
}
