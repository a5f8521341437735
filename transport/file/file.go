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
	// Sums over Files. Replayed counts files already applied (their
	// Err matches ErrReplayed), neither accepted nor rejected.
	Accepted, Rejected  int
	Replayed            int
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
// A refused file changes nothing. A refusal does not stop the import: the
// returned error joins one *FileError per refused file (match ErrCorrupt,
// ErrNotRegular and the replica sentinels with errors.Is), and Imported
// reports every file either way. An error reading dir itself, or the
// context ending, stops the import.
//
// A file already applied, which stays in dir until its sender's next
// export replaces it, is passed over: it changes nothing, its sender's
// last sync time included, and is reported in Imported (Replayed, and its
// FileResult.Err matches ErrReplayed) but not in the returned error.
// ImportFile, given that one file, refuses it with ErrReplayed. See
// ImportFile for what already applied means.
func ImportFrom(ctx context.Context, r *replica.Replica, peer, dir string) (Imported, error) {
	if peer == "" {
		return Imported{}, errors.New("import bundle files: no peer given")
	}
	return importDir(ctx, r, peer, dir)
}

// ImportFile applies one bundle file, at path, to r, and reports it as
// Import would. The file's name must be a bundle file's name addressed to
// r (ErrBadName, replica.ErrWrongRecipient). Errors are a *FileError
// naming the file, matching what Import's do, or ErrReplayed for a file
// already applied; a refused file changes nothing.
//
// A file already applied changes nothing, its sender's last sync time
// included, and gives ErrReplayed. Already applied means: every
// position the file carries was taken from its sender before (its
// acknowledgement of the replica's log is no further than the sender was
// known to have acknowledged, and it carries the sender's log no further
// than the replica holds it), and every change it carries is held. It is
// decided from the replica's positions, not from a record of files, so a
// copy of an older file, under any name, is refused too, while a file
// whose changes all came by another way (through a hub, say) but whose
// positions are new is taken. A file whose positions the replica does not
// take (an unsigned file at a replica with replica.Config.Keys) is never
// found replayed: applied again, it brings nothing new.
//
// Finding a replay costs reading, twice, the bundle r would send the
// file's sender (replica.MakeBundle), to learn r's positions for it.
func ImportFile(ctx context.Context, r *replica.Replica, path string) (FileResult, error) {
	name := filepath.Base(path)
	n, err := ParseName(name)
	if err != nil {
		return FileResult{Path: path}, &FileError{Path: path, Err: err}
	}
	if n.To != r.ID() {
		return FileResult{Path: path, From: n.From}, &FileError{Path: path, Err: fmt.Errorf("addressed to %s, not to %s: %w", n.To, r.ID(), replica.ErrWrongRecipient)}
	}
	data, err := readRegular(path)
	if err != nil {
		return FileResult{Path: path, From: n.From}, &FileError{Path: path, Err: err}
	}
	b, err := Parse(name, data)
	if err != nil {
		return FileResult{Path: path, From: n.From}, &FileError{Path: path, Err: err}
	}
	return apply(ctx, r, candidate{path: path, from: n.From, data: data, b: b})
}

// apply applies one checked bundle file to r. The error is a *FileError,
// or the context's.
func apply(ctx context.Context, r *replica.Replica, c candidate) (FileResult, error) {
	res := FileResult{Path: c.path, From: c.from}
	before, known := positionsOf(ctx, r, c.from)
	got, err := r.Receive(ctx, c.data)
	if err != nil {
		if ctx.Err() != nil {
			return res, err
		}
		res.Err = &FileError{Path: c.path, Err: err}
		return res, res.Err
	}
	res.Received, res.Bytes = got, len(c.data)
	if known && replayed(c.b, got, before) {
		// Nothing was written (Receive writes nothing for a bundle
		// that brings nothing): unless the positions moved after all.
		if after, ok := positionsOf(ctx, r, c.from); ok && after == before {
			res.Err = &FileError{Path: c.path, Err: fmt.Errorf("from %s, carrying its log up to position %d and its acknowledgement up to %d, already taken, and %d changes, already held: %w",
				c.from, c.b.Upto, c.b.Ack, len(c.b.Changes), ErrReplayed)}
			return res, res.Err
		}
	}
	return res, nil
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
		res, err := apply(ctx, r, c)
		switch {
		case ctx.Err() != nil:
			return im, errors.Join(append(errs, ctx.Err())...)
		case errors.Is(err, ErrReplayed):
			// Still in the folder, as files stay until replaced.
			im.Files = append(im.Files, res)
			im.Replayed++
			continue
		case err != nil:
			im.Files = append(im.Files, res)
			im.Rejected++
			errs = append(errs, err)
			continue
		}
		got := res.Received
		im.Files = append(im.Files, res)
		im.Accepted++
		im.Bytes += len(c.data)
		im.Applied += got.Applied
		im.Duplicates += got.Duplicates
	}
	return im, errors.Join(errs...)
}

// positions is how far a replica holds a peer's log (Received), and how
// far it knows the peer holds its own (Acked, within its head).
type positions struct{ received, acked uint64 }

// positionsOf returns r's positions for peer, as the bundle r would send
// it states them (Ack, Base); false if r makes none (a forked replica,
// whose Receive refuses the file anyway).
func positionsOf(ctx context.Context, r *replica.Replica, peer string) (positions, bool) {
	out, err := r.MakeBundleFor(ctx, peer, replica.BundleOptions{NoAuth: true})
	if err != nil {
		return positions{}, false
	}
	b, err := replica.DecodeBundle(out.Data)
	if err != nil {
		return positions{}, false
	}
	return positions{received: b.Ack, acked: b.Base}, true
}

// replayed reports whether b, received as got by a replica whose
// positions for b's sender were p before, was applied before: it carried
// no change the replica lacked and no position it had not taken.
func replayed(b *replica.Bundle, got replica.Received, p positions) bool {
	// A bundle with no position and no change tells nothing (a first
	// contact is one): it is never found replayed.
	return (b.Upto > 0 || b.Ack > 0) && got.Applied == 0 && got.Held == 0 && got.Duplicates == len(b.Changes) &&
		b.Upto <= p.received && b.Ack <= p.acked
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
