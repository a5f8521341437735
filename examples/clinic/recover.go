package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/internal/atomicfile"
	"github.com/chartsync/chartsync/replica"
)

// errNotForked refuses to recover a device whose data folder is not found
// to be an old copy.
var errNotForked = errors.New("this device's data folder is not an old copy: its edits and syncs are not refused for that, so there is nothing to recover (to move a device to another machine, use clinic backup and clinic restore)")

func init() {
	var dir, name string
	register(&command{
		name: "recover", args: "-to NEWDIR [-device NAME]",
		help: "Make a new device of this one when its data folder is found to be an old copy (copied back, or restored from a copy by hand): every chart and change in it is kept, under a new replica ID that is enrolled again; the cloud then sends it what it lacks.",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&dir, "to", "", "the new device's data directory, empty or new (required)")
			fs.StringVar(&name, "device", "", "a name for the new device (default: this device's name and \"-recovered\")")
		},
		run: func(ctx context.Context, a *app, fs *flag.FlagSet, args []string) error {
			if dir == "" {
				return usagef("-to is required: a new, empty folder for the new device")
			}
			if len(args) > 0 {
				return usagef("unexpected %q", args[0])
			}
			return recoverDevice(ctx, a, dir, name)
		},
	})
}

// recoverDevice makes a new device in newDir from this one, whose data
// folder is an old copy of itself (replica.Replica.Forked): a consistent
// copy of its database under a new replica ID and new keys
// (replica.RecoverFork), to be enrolled as restore's are. This device's
// folder is left as it is.
func recoverDevice(ctx context.Context, a *app, newDir, name string) (err error) {
	d, err := a.device()
	if err != nil {
		return err
	}
	r, err := a.replica(ctx)
	if err != nil {
		return err
	}
	if r.Forked() == nil {
		return errNotForked
	}
	if same, err := sameDir(a.dir, newDir); err != nil {
		return err
	} else if same {
		return fmt.Errorf("%s is this device's own folder: recover into a new directory (-to NEWDIR)", newDir)
	}
	if entries, err := os.ReadDir(newDir); err == nil && len(entries) > 0 {
		return fmt.Errorf("%s is not empty: recover into a new directory (-to NEWDIR)", newDir)
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.MkdirAll(newDir, 0o700); err != nil {
		return err
	}
	// On failure, leave the directory as it was: empty.
	defer func() {
		if err != nil {
			entries, _ := os.ReadDir(newDir)
			for _, e := range entries {
				os.RemoveAll(filepath.Join(newDir, e.Name()))
			}
		}
	}()
	if name == "" {
		name = d.Device + "-recovered"
	}
	keys, err := device.Generate(replica.NewID(), d.Clinic)
	if err != nil {
		return err
	}
	// Encrypted data stays encrypted with the same key, and the keyring
	// goes with it: the same passwords unlock the new device.
	if ok, err := a.hasKeyring(); err != nil {
		return err
	} else if ok {
		ring, err := os.ReadFile(a.path(keyringFile))
		if err != nil {
			return err
		}
		if err := atomicfile.Write(filepath.Join(newDir, keyringFile), ring, atomicfile.Options{Perm: 0o600}); err != nil {
			return err
		}
	}
	nr, err := replica.RecoverFork(ctx, a.path("replica.db"), filepath.Join(newDir, "replica.db"), replica.Config{Clinic: d.Clinic, Signer: keys, DatabaseKey: a.key})
	if err != nil {
		return err
	}
	charts, err := nr.Find(ctx, "", 0)
	if cerr := nr.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := keys.Save(filepath.Join(newDir, identityFile)); err != nil {
		return err
	}
	req := filepath.Join(newDir, requestFile)
	if err := writeRequest(keys, req); err != nil {
		return err
	}
	// Written last: the directory is a device once it has its configuration.
	if err := writeJSON(filepath.Join(newDir, "device.json"), deviceConfig{Clinic: d.Clinic, Device: name, Cloud: d.Cloud, Recovery: d.Recovery, Created: time.Now().UTC()}); err != nil {
		return err
	}
	fmt.Fprintf(a.out, "Recovered %s of device %s of clinic %s, every change in its folder kept, as a new device %s, replica %s, in %s.\n",
		plural(len(charts), "chart", "charts"), d.Device, d.Clinic, name, keys.ReplicaID(), newDir)
	fmt.Fprintf(a.out, "Device key fingerprint: %s\n", device.Fingerprint(keys.Public().SignKey))
	fmt.Fprintf(a.out, "It is a new device: it must be enrolled before it syncs. Give %s to the administrator (cloud enrol -request), "+
		"then run clinic -dir %s connect -credential FILE and clinic -dir %s sync: the cloud sends it every change it lacks, those made after the copy too.\n", req, newDir, newDir)
	fmt.Fprintf(a.out, "Use the new device from now on. Keep this folder (%s) until the new device has synced, then remove it.\n", a.dir)
	fmt.Fprintln(a.out, "An edit this folder made to a chart after it was copied back may be refused by the cloud: if the new device's sync says so, enter that edit again on the new device.")
	return nil
}

// sameDir reports whether two paths name the same directory (false if
// b does not exist yet).
func sameDir(a, b string) (bool, error) {
	fa, err := os.Stat(a)
	if err != nil {
		return false, err
	}
	fb, err := os.Stat(b)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return os.SameFile(fa, fb), nil
}
