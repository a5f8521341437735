package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"

	"github.com/chartsync/chartsync/internal/atomicfile"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/gate"
	"github.com/chartsync/chartsync/transport/file"
)

// newGate is the cloud's policy for its devices, the same for every
// courier (package replica/gate): the HTTPS handler hands it each sync,
// and cloud import each bundle file. It asks the roster whether a sender
// was revoked.
func newGate(rep *replica.Replica, access accessLog, roster liveRoster, maxConcurrent int, log *slog.Logger) (*gate.Gate, error) {
	return gate.New(gate.Config{Replica: rep, AccessLog: access, CheckSender: roster.CheckSender, MaxConcurrent: maxConcurrent, Logger: log})
}

var importCommand = &command{
	name: "import",
	args: "[-dir DIR] -from FOLDER",
	help: "Apply the bundle files and relay bundles devices addressed to the cloud in a folder (a USB stick's, a phone's relay folder),\neach checked and recorded in the access log as an HTTPS sync is, and write each accepted device's reply there\n(a reply file; for relay bundles a reply sealed to the device and an acknowledgement). A relay bundle imported\nbefore is reported as a replay and applies nothing.",
	flags: func(fs *flag.FlagSet) {
		fs.String("from", "", "the folder holding the bundle files or relay bundles (*.relay, there or in its held folder), e.g. /media/usb/chartsync (required)")
	},
	run: importBundles,
}

// importBundles is cloud import: every bundle file in the folder
// addressed to the cloud's replica, oldest first for each sender, is
// authenticated by its sender's signature (gate.IdentifyBundle), applied
// through the cloud's gate (the sender's clinic's scope, its authors,
// its revocation; writes and refusals in the access log, exactly as over
// HTTPS), and answered with a reply file carrying the sender's clinic's
// charts it lacks and the cloud's acknowledgement. The folder's other
// files are left alone, and refused files stay where they are.
// Then the relay bundles addressed to the cloud in the folder go through
// the same gate, authenticated by the relay's signature instead
// (relayimport.go), and a relay bundle applied before is reported as a
// replay. Refusals are reported and make the command fail once every
// bundle was tried; replays do not.
func importBundles(ctx context.Context, fs *flag.FlagSet, at where, stdout, stderr io.Writer) error {
	from := flagValue[string](fs, "from")
	if from == "" {
		return usagef("-from is required: the folder holding the bundle files")
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments %q", fs.Args())
	}
	if fi, err := os.Stat(from); err != nil || !fi.IsDir() {
		return fmt.Errorf("-from %s: not a folder this command can read (%v)", from, err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if at.DB == "" {
		unlock, err := lockDir(at.Dir)
		if errors.Is(err, errLocked) {
			return fmt.Errorf("%w (%s); stop \"cloud serve\" to import into a data directory", err, at.Dir)
		}
		if err != nil {
			return err
		}
		defer unlock()
	}
	st, err := openState(ctx, at)
	if err != nil {
		return err
	}
	defer st.Close()
	roster, rep, access, _, err := openCloud(ctx, at, st, log)
	if err != nil {
		return err
	}
	defer rep.Close()
	defer access.Close()
	g, err := newGate(rep, access, roster, 0, log)
	if err != nil {
		return err
	}
	files, refused, err := bundleFiles(from, rep.ID())
	if err != nil {
		return err
	}
	for _, r := range refused {
		fmt.Fprintf(stdout, "Refused %s: %v\n", filepath.Base(r.path), r.err)
	}
	accepted := 0
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return err
		}
		ok, err := importBundle(ctx, g, roster, rep.ID(), from, f, stdout)
		if err != nil {
			return err
		}
		if ok {
			accepted++
		} else {
			refused = append(refused, bundleFile{path: f.path})
		}
	}
	relayed, err := importRelayBundles(ctx, g, st, roster.Roster.Roster, from, stdout)
	if err != nil {
		return err
	}
	if len(files)+len(refused)+relayed.Total() == 0 {
		fmt.Fprintf(stdout, "No bundle file or relay bundle for cloud replica %s in %s.\n", rep.ID(), from)
		return nil
	}
	if len(files)+len(refused) > 0 {
		fmt.Fprintf(stdout, "Imported %d of %d bundle files.\n", accepted, accepted+len(refused))
	}
	if relayed.Total() > 0 {
		fmt.Fprintf(stdout, "Imported %d of %d relay bundles; %d had been imported before (replays, nothing applied).\n",
			relayed.Imported, relayed.Total(), relayed.Replayed)
	}
	if n := len(refused) + relayed.Refused; n > 0 {
		return fmt.Errorf("%d bundles refused (each named above; the access log records those refused for what they hold)", n)
	}
	return nil
}

// importBundle authenticates, applies and answers one bundle file. It
// reports whether the file was taken; an error is the cloud's own
// failure, which stops the import.
func importBundle(ctx context.Context, g *gate.Gate, keys replica.Keys, cloud, dir string, f bundleFile, stdout io.Writer) (bool, error) {
	name := filepath.Base(f.path)
	s, err := gate.IdentifyBundle(f.data, keys)
	if err != nil {
		fmt.Fprintf(stdout, "Refused %s: not signed by an enrolled device: %v\n", name, err)
		return false, nil
	}
	leave, err := g.Enter(ctx, s.Replica)
	if err != nil {
		return false, fmt.Errorf("import %s: %w", name, err)
	}
	defer leave()
	rec, err := g.Receive(ctx, s, f.data)
	if code := gate.CodeOf(err); code != "" {
		fmt.Fprintf(stdout, "Refused %s from %s (clinic %s): %s: %v\n", name, s.Replica, s.Clinic, code, err)
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("import %s: %w", name, err)
	}
	fmt.Fprintf(stdout, "Imported %s from %s (clinic %s): %d new changes, %d already here.\n", name, s.Replica, s.Clinic, rec.Applied, rec.Duplicates)
	out, err := g.Answer(ctx, s, gate.AnswerOptions{})
	if err != nil {
		return true, fmt.Errorf("reply to %s: %w", s.Replica, err)
	}
	reply, err := writeReply(dir, cloud, s.Replica, out.Data)
	if err != nil {
		return true, fmt.Errorf("reply to %s: %w", s.Replica, err)
	}
	fmt.Fprintf(stdout, "Wrote reply %s for %s: %d changes.\n", reply, s.Replica, out.Changes)
	return true, nil
}

// bundleFile is a bundle file addressed to the cloud, read and checked
// against its name, or refused (err).
type bundleFile struct {
	path string
	data []byte
	b    *replica.Bundle
	err  error
}

// maxBundleFileBytes bounds a bundle file read: a bundle is at most
// replica.MaxBundleBytes, and its frame adds a few dozen bytes.
const maxBundleFileBytes = replica.MaxBundleBytes + 64

// bundleFiles reads the bundle files in dir addressed to cloud, oldest
// first for each sender, and those refused unread (not a regular file,
// too large, damaged, or not what their name says).
func bundleFiles(dir, cloud string) (files, refused []bundleFile, err error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("import bundle files: %w", err)
	}
	for _, e := range entries {
		n, err := file.ParseName(e.Name())
		if err != nil || n.To != cloud {
			continue
		}
		path := filepath.Join(dir, e.Name())
		data, err := readRegular(path, maxBundleFileBytes)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		var b *replica.Bundle
		if err == nil {
			b, err = file.Parse(e.Name(), data)
		}
		if err != nil {
			refused = append(refused, bundleFile{path: path, err: err})
			continue
		}
		files = append(files, bundleFile{path: path, data: data, b: b})
	}
	slices.SortFunc(files, func(x, y bundleFile) int {
		return cmp.Or(cmp.Compare(x.b.From, y.b.From), cmp.Compare(x.b.Base, y.b.Base), cmp.Compare(x.b.Upto, y.b.Upto), cmp.Compare(x.path, y.path))
	})
	return files, refused, nil
}

// readRegular reads a regular file of at most limit bytes, refusing
// symbolic links, directories and devices without opening them.
func readRegular(path string, limit int64) ([]byte, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: %w", fi.Mode().Type(), file.ErrNotRegular)
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("%d bytes, limit %d: %w", fi.Size(), limit, replica.ErrBundleTooLarge)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if ofi, err := f.Stat(); err != nil {
		return nil, err
	} else if !os.SameFile(fi, ofi) {
		return nil, fmt.Errorf("replaced while being opened: %w", file.ErrNotRegular)
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("grew past %d bytes: %w", limit, replica.ErrBundleTooLarge)
	}
	return data, nil
}

// writeReply writes the cloud's bundle for a device to dir, atomically and
// durably, under the name transport/file gives it (so the device's
// import-bundle finds it), and removes the older replies it supersedes.
func writeReply(dir, cloud, device string, data []byte) (string, error) {
	name := file.NameFor(cloud, device, data)
	if err := atomicfile.Write(filepath.Join(dir, name), data, atomicfile.Options{TempPattern: ".cs-*.tmp"}); err != nil {
		return "", err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return name, err
	}
	for _, e := range entries {
		n, err := file.ParseName(e.Name())
		if err != nil || n.From != cloud || n.To != device || e.Name() == name || !e.Type().IsRegular() {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return name, fmt.Errorf("remove superseded reply: %w", err)
		}
	}
	return name, nil
}
