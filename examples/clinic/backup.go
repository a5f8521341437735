package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
	"unicode/utf8"

	"filippo.io/age"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/device/keyring"
	"github.com/chartsync/chartsync/internal/atomicfile"
	"github.com/chartsync/chartsync/replica"
)

// A backup file is an age file encrypted to a passphrase (an scrypt
// recipient) holding a tar archive of two or three entries, in this
// order: device.json (the device's configuration: clinic, name, cloud),
// replica.db (a consistent copy of the replica's database,
// replica.BackupConfig: encrypted with the device's data key, as the
// database is) and keyring (the device's keyring, which holds that key
// wrapped per user and for recovery; absent from backups of a device
// whose data is in clear). The restored device unlocks with the same
// passwords and the same recovery key. The device's keys, credential,
// sessions and login record are left out: a restored device is a new
// device, with its own keys and replica ID.
//
// The passphrase, not the cloud's key: a device is restored when it is
// lost or broken, often where the cloud cannot be reached, and the clinic
// must be able to open its own backup then; a backup only the cloud could
// open would need the cloud's private key at the clinic. The passphrase
// is kept apart from the device and its backups, so a stolen backup gives
// nothing without it, and scrypt makes each guess cost about a second.

const (
	backupDevice  = "device.json"
	backupReplica = "replica.db"
	backupKeyring = keyringFile
	// maxBackupDevice bounds the device configuration read from a backup.
	maxBackupDevice = 64 << 10
	// minPassphrase is the fewest characters of a backup's passphrase.
	minPassphrase = 10
	// maxScryptWorkFactor bounds the work a backup file may ask of a
	// restore (2^20: a few seconds).
	maxScryptWorkFactor = 20
)

// scryptWorkFactor is the scrypt work factor (log2) of new backups: 2^18,
// about a second on a laptop. Tests lower it.
var scryptWorkFactor = 18

var (
	errNotABackup      = errors.New("not a clinic backup file")
	errWrongPassphrase = errors.New("wrong passphrase for this backup (or not a clinic backup file)")
)

func backupCommands() {
	var out string
	register(&command{
		name: "backup", args: "-out FILE",
		help: "Write an encrypted backup of this device's charts (asks for a passphrase twice); the app may be in use meanwhile.\nNeeds someone logged in. The backup holds the device's keyring: restored, it unlocks with the same passwords.",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&out, "out", "", "the backup file to write (required; kept apart from the device)")
		},
		// The backup of encrypted data needs its key: someone logged in.
		run: func(ctx context.Context, a *app, fs *flag.FlagSet, args []string) error {
			if out == "" {
				return usagef("-out is required")
			}
			return backup(ctx, a, out)
		},
	})

	var in, dir, name, restoreUser, restoreIdentity string
	register(&command{
		name: "restore", args: "-in FILE -dir NEWDIR [-device NAME] (-user USER-ID | -identity FILE)",
		help: "Restore a backup as a new device in an empty directory (asks for the backup's passphrase); it is enrolled again before it syncs.\nThe backup's data is encrypted: -user names one of its users, whose password (asked after the passphrase) opens it, or -identity gives its recovery key. The restored device unlocks with the same passwords.",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&in, "in", "", "the backup file (required)")
			fs.StringVar(&restoreUser, "user", "", "a user of the backed-up device, whose password opens its data")
			fs.StringVar(&restoreIdentity, "identity", "", "instead of -user: the device's recovery key (an age identity file)")
			fs.StringVar(&dir, "dir", "", "the new device's data directory, empty or new (default: the -dir given before the command)")
			fs.StringVar(&name, "device", "", "a name for the new device (default: the old name and \"-restored\")")
		},
		run: func(ctx context.Context, a *app, fs *flag.FlagSet, args []string) error {
			if in == "" {
				return usagef("-in is required")
			}
			if dir != "" {
				a.dir = dir
			}
			return restore(ctx, a, in, name, opener{user: restoreUser, identity: restoreIdentity})
		},
	})

	var quick bool
	register(&command{
		name: "check", args: "[-quick]",
		help: "Check this device's database for damage (the full check; opening runs a quick one).",
		flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&quick, "quick", false, "only the quick check (every page's structure, not the indexes against their tables)")
		},
		run: func(ctx context.Context, a *app, fs *flag.FlagSet, args []string) error {
			start := time.Now()
			r, err := a.replica(ctx)
			if err == nil {
				err = r.CheckIntegrity(ctx, !quick)
			}
			if errors.Is(err, replica.ErrDamaged) {
				return fmt.Errorf("%w. Run clinic repair: it rebuilds the device from what the database still holds, keeping the changes not yet synced, and from the cloud. Or restore the device from its latest backup (clinic restore -in FILE -dir NEWDIR), then enrol and sync it: the cloud sends it what it lacks", err)
			}
			if err != nil {
				return err
			}
			what := "full"
			if quick {
				what = "quick"
			}
			fmt.Fprintf(a.out, "No damage found (%s check of %s in %s).\n", what, a.path("replica.db"), time.Since(start).Round(time.Millisecond))
			return nil
		},
	})
}

// readPassphrase reads a backup's passphrase, twice when it is new.
func (a *app) readPassphrase(isNew bool) (string, error) {
	pw, err := a.readSecret("Backup passphrase: ")
	if err != nil {
		return "", err
	}
	if !isNew {
		return pw, nil
	}
	if utf8.RuneCountInString(pw) < minPassphrase {
		return "", fmt.Errorf("the passphrase is too short: use at least %d characters (several words are easy to remember)", minPassphrase)
	}
	again, err := a.readSecret("The same passphrase again: ")
	if err != nil {
		return "", err
	}
	if pw != again {
		return "", errMismatch
	}
	return pw, nil
}

// backup writes the encrypted backup file out, atomically: a temporary
// file beside it, fsynced, renamed, the directory fsynced.
func backup(ctx context.Context, a *app, out string) (err error) {
	d, err := a.device()
	if err != nil {
		return err
	}
	// Encrypted data is copied encrypted, with its key, which a live
	// session holds; the keyring goes with it.
	var cfg replica.Config
	if enc, err := a.encrypted(); err != nil {
		return err
	} else if enc {
		if cfg.DatabaseKey, err = a.heldKey(); err != nil {
			return err
		}
		if cfg.DatabaseKey == nil {
			return errLocked
		}
	}
	var ring []byte
	if ok, err := a.hasKeyring(); err != nil {
		return err
	} else if ok {
		if ring, err = os.ReadFile(a.path(keyringFile)); err != nil {
			return err
		}
	}
	pw, err := a.readPassphrase(true)
	if err != nil {
		return err
	}
	rcp, err := age.NewScryptRecipient(pw)
	if err != nil {
		return err
	}
	rcp.SetWorkFactor(scryptWorkFactor)

	// The copy is made in the data directory (0700), never beside the
	// backup: it holds every chart in clear, and is removed at the end.
	plain, err := os.MkdirTemp(a.dir, ".backup-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(plain)
	copyPath := filepath.Join(plain, backupReplica)
	if err := replica.BackupConfig(ctx, a.path("replica.db"), copyPath, cfg); err != nil {
		return err
	}
	conf, err := json.Marshal(d)
	if err != nil {
		return err
	}

	tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return err
	}
	enc, err := age.Encrypt(tmp, rcp)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(enc)
	if err := addEntry(tw, backupDevice, int64(len(conf)), bytes.NewReader(conf)); err != nil {
		return err
	}
	db, err := os.Open(copyPath)
	if err != nil {
		return err
	}
	defer db.Close()
	fi, err := db.Stat()
	if err != nil {
		return err
	}
	if err := addEntry(tw, backupReplica, fi.Size(), db); err != nil {
		return err
	}
	if ring != nil {
		if err := addEntry(tw, backupKeyring, int64(len(ring)), bytes.NewReader(ring)); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := enc.Close(); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return err
	}
	if err := atomicfile.SyncDir(filepath.Dir(out)); err != nil {
		return fmt.Errorf("the backup %s is written, but may not survive a crash: %w", out, err)
	}
	st, err := os.Stat(out)
	if err != nil {
		return err
	}
	what := "encrypted to the passphrase"
	if ring != nil {
		what += "; its data encrypted with the device's key too, which the same passwords unlock"
	}
	fmt.Fprintf(a.out, "Backup of device %s of clinic %s written to %s (%s, %s).\n", d.Device, d.Clinic, out, size(st.Size()), what)
	fmt.Fprintf(a.out, "Keep it, and the passphrase, apart from this device. To restore it on a new device: clinic restore -in %s -dir NEWDIR\n", out)
	return nil
}

func addEntry(tw *tar.Writer, name string, n int64, r io.Reader) error {
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: n, Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := io.CopyN(tw, r, n); err != nil {
		return fmt.Errorf("back up %s: %w", name, err)
	}
	return nil
}

// readBackup reads a decrypted backup: the device's configuration, the
// replica database, written to dbPath (a new file, 0600), and the
// keyring, if the backup has one, written to keyringPath (a new file,
// 0600). Anything else in it, or a part missing, refuses it with
// errNotABackup.
func readBackup(r io.Reader, dbPath, keyringPath string) (d deviceConfig, hasKeyring bool, err error) {
	tr := tar.NewReader(r)
	h, err := tr.Next()
	if err != nil || h.Name != backupDevice || h.Typeflag != tar.TypeReg || h.Size < 0 || h.Size > maxBackupDevice {
		return d, false, fmt.Errorf("%w: its first part is not the device's configuration", errNotABackup)
	}
	conf, err := io.ReadAll(io.LimitReader(tr, h.Size))
	if err != nil {
		return d, false, fmt.Errorf("%w: %w", errNotABackup, err)
	}
	if err := json.Unmarshal(conf, &d); err != nil {
		return d, false, fmt.Errorf("%w: the device's configuration does not decode: %w", errNotABackup, err)
	}
	if err := device.CheckClinic(d.Clinic); err != nil || d.Device == "" {
		return d, false, fmt.Errorf("%w: the device's configuration names no valid clinic and device", errNotABackup)
	}
	h, err = tr.Next()
	if err != nil || h.Name != backupReplica || h.Typeflag != tar.TypeReg || h.Size <= 0 {
		return d, false, fmt.Errorf("%w: its second part is not the device's database", errNotABackup)
	}
	if err := writeNew(dbPath, tr, h.Size); err != nil {
		return d, false, fmt.Errorf("%w: its database: %w", errNotABackup, err)
	}
	h, err = tr.Next()
	switch {
	case errors.Is(err, io.EOF):
	case err == nil && h.Name == backupKeyring && h.Typeflag == tar.TypeReg && h.Size > 0 && h.Size <= keyring.MaxFileSize:
		if err := writeNew(keyringPath, tr, h.Size); err != nil {
			return d, false, fmt.Errorf("%w: its keyring: %w", errNotABackup, err)
		}
		hasKeyring = true
		if _, err := tr.Next(); !errors.Is(err, io.EOF) {
			return d, false, fmt.Errorf("%w: it holds more than a device's configuration, database and keyring", errNotABackup)
		}
	default:
		return d, false, fmt.Errorf("%w: it holds more than a device's configuration, database and keyring", errNotABackup)
	}
	// The age stream's end is authenticated: reading to it proves the
	// file was not cut short or changed.
	if _, err := io.Copy(io.Discard, r); err != nil {
		return d, false, fmt.Errorf("%w: %w", errNotABackup, err)
	}
	return d, hasKeyring, nil
}

// writeNew writes n bytes of r to a new file at path (0600), fsynced.
func writeNew(path string, r io.Reader, n int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if got, err := io.Copy(f, r); err != nil || got != n {
		return fmt.Errorf("cut short (%d of %d bytes): %v", got, n, err)
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return f.Close()
}

// opener is how a restore opens a backup's encrypted data: a user's
// password (user) or the recovery key (identity, a file).
type opener struct{ user, identity string }

// key returns the data key of the keyring at path.
func (o opener) key(a *app, path string) ([]byte, error) {
	switch {
	case o.identity != "":
		ids, err := readRecoveryIdentity(o.identity)
		if err != nil {
			return nil, err
		}
		return recoverKey(path, ids)
	case o.user != "":
		pw, err := a.readSecret(fmt.Sprintf("Password of %s on the backed-up device: ", o.user))
		if err != nil {
			return nil, err
		}
		key, err := keyring.Unlock(path, o.user, pw)
		if errors.Is(err, keyring.ErrWrongPassword) || errors.Is(err, keyring.ErrUnknownUser) {
			return nil, fmt.Errorf("%w (the password %s had on the backed-up device when the backup was made): nothing was restored", errWrongLogin, o.user)
		}
		return key, err
	}
	return nil, usagef("this backup's data is encrypted: give -user USER-ID (one of its users, whose password opens it) or -identity FILE (its recovery key)")
}

// recoverKey opens the keyring at path with the first of ids that can.
func recoverKey(path string, ids []age.Identity) ([]byte, error) {
	err := keyring.ErrWrongIdentity
	for _, id := range ids {
		var key []byte
		if key, err = keyring.Recover(path, id); err == nil {
			return key, nil
		}
		if !errors.Is(err, keyring.ErrWrongIdentity) {
			return nil, err
		}
	}
	return nil, fmt.Errorf("%w: it is not this device's recovery key", err)
}

// restore makes a new device in a.dir from the backup in.
func restore(ctx context.Context, a *app, in, name string, o opener) (err error) {
	if entries, err := os.ReadDir(a.dir); err == nil && len(entries) > 0 {
		return fmt.Errorf("%s is not empty: restore into a new directory (-dir NEWDIR); a backup is never restored over a device's data", a.dir)
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	f, err := os.Open(in)
	if err != nil {
		return err
	}
	defer f.Close()
	pw, err := a.readPassphrase(false)
	if err != nil {
		return err
	}
	id, err := age.NewScryptIdentity(pw)
	if err != nil {
		return err
	}
	id.SetMaxWorkFactor(maxScryptWorkFactor)
	dec, err := age.Decrypt(f, id)
	var nomatch *age.NoIdentityMatchError
	if errors.As(err, &nomatch) {
		return errWrongPassphrase
	}
	if err != nil {
		return fmt.Errorf("%s: %w: %w", in, errNotABackup, err)
	}

	if err := os.MkdirAll(a.dir, 0o700); err != nil {
		return err
	}
	// On failure, leave the directory as it was: empty.
	defer func() {
		if err != nil {
			entries, _ := os.ReadDir(a.dir)
			for _, e := range entries {
				os.RemoveAll(a.path(e.Name()))
			}
		}
	}()
	plain := a.path(".restore-" + backupReplica)
	defer os.Remove(plain)
	ringCopy := a.path(".restore-" + backupKeyring)
	defer os.Remove(ringCopy)
	old, hasRing, err := readBackup(dec, plain, ringCopy)
	if err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	// Encrypted data: the backed-up keyring opens it, and becomes the
	// new device's, with the same users and recovery key.
	var cfg replica.Config
	if hasRing {
		if cfg.DatabaseKey, err = o.key(a, ringCopy); err != nil {
			return err
		}
		defer clear(cfg.DatabaseKey)
	}
	if name == "" {
		name = old.Device + "-restored"
	}
	// The new device's identity names its new replica.
	keys, err := device.Generate(replica.NewID(), old.Clinic)
	if err != nil {
		return err
	}
	cfg.Clinic, cfg.Signer = old.Clinic, keys
	r, err := replica.RestoreAs(ctx, plain, a.path("replica.db"), cfg)
	if err != nil {
		return err
	}
	charts, err := r.Find(ctx, "", 0)
	if cerr := r.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := keys.Save(a.path(identityFile)); err != nil {
		return err
	}
	if err := writeRequest(keys, a.path(requestFile)); err != nil {
		return err
	}
	if hasRing {
		if err := os.Rename(ringCopy, a.path(keyringFile)); err != nil {
			return err
		}
	}
	// Written last: the directory is a device once it has its configuration.
	if err := writeJSON(a.path("device.json"), deviceConfig{Clinic: old.Clinic, Device: name, Cloud: old.Cloud, Recovery: old.Recovery, Created: time.Now().UTC()}); err != nil {
		return err
	}
	fmt.Fprintf(a.out, "Restored %s from %s (a backup of device %s of clinic %s) as a new device %s, replica %s, in %s.\n",
		plural(len(charts), "chart", "charts"), in, old.Device, old.Clinic, name, keys.ReplicaID(), a.dir)
	fmt.Fprintf(a.out, "Device key fingerprint: %s\n", device.Fingerprint(keys.Public().SignKey))
	if hasRing {
		fmt.Fprintln(a.out, "Its data is encrypted as the backed-up device's was: its users log in with the passwords they had there.")
	}
	fmt.Fprintf(a.out, "It is a new device: it must be enrolled before it syncs. Give %s to the administrator (cloud enrol -request), "+
		"then run clinic connect -credential FILE and clinic sync: the cloud sends it every change made since the backup.\n", a.path(requestFile))
	fmt.Fprintf(a.out, "If device %s is lost, sync this device before the administrator revokes it, so that its changes held only in the backup are accepted.\n", old.Device)
	return nil
}
