package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/device/keyring"
	"github.com/chartsync/chartsync/internal/atomicfile"
	"github.com/chartsync/chartsync/internal/dirlock"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/transport/httpsync"
)

// Repairing a damaged device.
//
// clinic repair runs in two steps. The first, on a device whose database
// is damaged, reads every change that can still be read out of it
// (replica.Repair: those not yet synced too) into a new database under a
// new replica ID and new device keys, as a restored backup is: the
// device's peers then see a new device and send it everything it lacks,
// so no Automerge actor and sequence number is ever used twice. The
// damaged database, and the old keys and credential, are kept beside it
// under new names, never deleted. The new device must be enrolled, as a
// restored one is, before it syncs. The second step, once it is
// connected, syncs with the cloud, which sends back what the damage took,
// applies the device's own unsynced changes that waited for it
// (replica.Replica.ApplySalvaged), and syncs again to give them to the
// cloud.

// errNotDamaged refuses to repair a device whose database is sound and
// whose repair is finished.
var errNotDamaged = errors.New("this device's database is not damaged (full check) and no repaired change waits: there is nothing to repair")

// dataKeys is how the app holds the device's data key (encryption at
// rest): whether the device's data is encrypted, and the key a live
// session holds (nil if none).
type dataKeys interface {
	encrypted() (bool, error)
	heldKey() ([]byte, error)
}

// repairKey returns the key of the device's database for a repair: the
// one the logged-in user's session holds, when the app encrypts its data
// (dataKeys); nil for a database in clear, or when no session holds it
// (then the damaged database reads only if it is in clear). Encryption
// at rest may set its own.
var repairKey = func(a *app) ([]byte, error) {
	k, ok := any(a).(dataKeys)
	if !ok {
		return nil, nil
	}
	enc, err := k.encrypted()
	if err != nil || !enc {
		return nil, err
	}
	key, err := k.heldKey()
	if err != nil || key == nil {
		return nil, err
	}
	return bytes.Clone(key), nil
}

func init() {
	var dir, name string
	var quiet bool
	var o opener
	register(&command{
		name: "repair", args: "[-to NEWDIR] [-device NAME] [-user USER-ID | -identity FILE] [-quiet]",
		help: "Rebuild this device when its database is damaged: every change that can still be read is kept, those not yet synced too, under a new replica ID, and the damaged file is kept aside. Once the new device is enrolled and connected, run it again: the cloud sends back what the damage took, and the device's own changes that waited for it reach the cloud.\n" +
			"A damaged database cannot be logged in to: with no one logged in, -user names a user whose password (asked) unlocks the device's encrypted data, or -identity gives its recovery key.",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&dir, "to", "", "rebuild the device in this new, empty directory instead of in place (this folder is then left as it is)")
			fs.StringVar(&name, "device", "", "a name for the rebuilt device (default: this device's name and \"-repaired\")")
			fs.StringVar(&o.user, "user", "", "with no one logged in: a user of this device, whose password unlocks its data")
			fs.StringVar(&o.identity, "identity", "", "with no one logged in: the device's recovery key file")
			fs.BoolVar(&quiet, "quiet", false, "no progress bar")
		},
		run: func(ctx context.Context, a *app, fs *flag.FlagSet, args []string) error {
			if len(args) > 0 {
				return usagef("unexpected %q", args[0])
			}
			if err := unlockForRepair(a, o); err != nil {
				return err
			}
			return repairDevice(ctx, a, dir, name, quiet)
		},
	})
}

// unlockForRepair gives the app the data key of an encrypted device no
// session holds it for, from a user's password or the recovery key: the
// damaged database refuses a login. A wrong password counts as a wrong
// login try.
func unlockForRepair(a *app, o opener) error {
	if o.user == "" && o.identity == "" {
		return nil // the session's key, or a database in clear
	}
	if o.user != "" && o.identity != "" {
		return usagef("give -user or -identity, not both")
	}
	enc, err := a.encrypted()
	if err != nil || !enc {
		return err
	}
	if held, err := a.heldKey(); err != nil || held != nil {
		return err
	}
	if o.user != "" {
		g, err := a.guard()
		if err != nil {
			return err
		}
		if err := lockedOut(g, o.user); err != nil {
			return loginError(o.user, err)
		}
		pw, err := a.readSecret("Password: ")
		if err != nil {
			return err
		}
		key, err := keyring.Unlock(a.path(keyringFile), o.user, pw)
		if errors.Is(err, keyring.ErrWrongPassword) || errors.Is(err, keyring.ErrUnknownUser) {
			return loginError(o.user, countWrongTry(g, o.user, pw))
		}
		if err != nil {
			return err
		}
		a.key = key
		return nil
	}
	key, err := o.key(a, a.path(keyringFile))
	if err != nil {
		return err
	}
	a.key = key
	return nil
}

// repairDevice rebuilds a damaged device (in place, or in newDir), or
// finishes the repair of a rebuilt one.
func repairDevice(ctx context.Context, a *app, newDir, name string, quiet bool) error {
	d, err := a.device()
	if err != nil {
		return err
	}
	r, err := a.replica(ctx)
	if err == nil {
		fmt.Fprintln(a.out, "Checking this device's database (full check)...")
		cerr := r.CheckIntegrity(ctx, true)
		if cerr == nil {
			if newDir != "" {
				return fmt.Errorf("%w (-to is for a damaged device)", errNotDamaged)
			}
			return finishRepair(ctx, a, r, quiet)
		}
		// Damage found by the full check only is rebuilt as any damage
		// is. The directory stays locked (a.lock) while the database is
		// closed.
		a.r = nil
		if err := r.Close(); err != nil {
			return err
		}
		if !errors.Is(cerr, replica.ErrDamaged) {
			if ok, err := damagedBySalvage(ctx, a, d); err != nil || !ok {
				return errors.Join(cerr, err)
			}
		}
		fmt.Fprintf(a.out, "Damage found: %v\n", cerr)
		return rebuild(ctx, a, d, newDir, name)
	}
	if !errors.Is(err, replica.ErrDamaged) && !mayBeDamage(err) {
		return err
	}
	lock, lerr := dirlock.Acquire(a.dir)
	if errors.Is(lerr, dirlock.ErrLocked) {
		return fmt.Errorf("%w (another clinic command on this device's data, such as a sync, is still running)", lerr)
	}
	if lerr != nil {
		return lerr
	}
	a.lock = lock // released by a.close
	if !errors.Is(err, replica.ErrDamaged) {
		// An encrypted database's damaged page can fail the check on open
		// with a plain SQL error: reading it tells.
		if ok, serr := damagedBySalvage(ctx, a, d); serr != nil || !ok {
			return errors.Join(err, serr)
		}
	}
	return rebuild(ctx, a, d, newDir, name)
}

// mayBeDamage reports whether err, from opening the device's replica, may
// come from a damaged database: it is none of the errors that say why a
// sound one does not open (another program has it, a wrong or missing
// key, no one logged in, no device, a cancelled command).
func mayBeDamage(err error) bool {
	for _, not := range []error{replica.ErrInUse, replica.ErrWrongKey, errNotLoggedIn, errNotInitialised, os.ErrNotExist, os.ErrPermission, context.Canceled, context.DeadlineExceeded} {
		if errors.Is(err, not) {
			return false
		}
	}
	return true
}

// damagedBySalvage reads the device's database as a repair would and
// reports whether anything of it did not read. a.lock is held.
func damagedBySalvage(ctx context.Context, a *app, d deviceConfig) (bool, error) {
	cfg, err := repairConfig(a, d, nil)
	if err != nil {
		return false, err
	}
	_, rep, err := replica.Salvage(ctx, a.path("replica.db"), cfg)
	if errors.Is(err, replica.ErrUnsalvageable) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return len(rep.Problems) > 0 || len(rep.Lost) > 0, nil
}

// repairConfig is the replica configuration of the rebuilt device, as
// app.replica makes it, with the new device's keys.
func repairConfig(a *app, d deviceConfig, keys *device.Identity) (replica.Config, error) {
	cfg := replica.Config{Clinic: d.Clinic, CheckAuthors: true, Now: func() time.Time { return deviceClock() }}
	if keys != nil {
		cfg.Signer = keys
	}
	c, err := httpsync.ReadCredentialFile(a.path(credentialFile))
	switch {
	case err == nil && len(c.Authority) > 0:
		if cfg.Keys, err = c.NewRoster(); err != nil {
			return cfg, fmt.Errorf("the cloud credential's roster: %w", err)
		}
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return cfg, err
	}
	if cfg.DatabaseKey, err = repairKey(a); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// rebuild makes a new device of the damaged one: in place, with the
// damaged database and the old keys and credential renamed aside, or in
// newDir, leaving this folder as it is. a.lock is held.
func rebuild(ctx context.Context, a *app, d deviceConfig, newDir, name string) (err error) {
	if name == "" {
		name = d.Device + "-repaired"
	}
	inPlace := newDir == ""
	target := a.dir
	if !inPlace {
		if err := emptyNewDir(a.dir, newDir); err != nil {
			return err
		}
		target = newDir
		defer func() {
			if err != nil {
				entries, _ := os.ReadDir(newDir)
				for _, e := range entries {
					os.RemoveAll(filepath.Join(newDir, e.Name()))
				}
			}
		}()
	}
	keys, err := device.Generate(replica.NewID(), d.Clinic)
	if err != nil {
		return err
	}
	cfg, err := repairConfig(a, d, keys)
	if err != nil {
		return err
	}
	stamp := time.Now().UTC().Format("20060102T150405Z")
	built := filepath.Join(target, "replica.db.repaired-"+stamp)
	if !inPlace {
		built = filepath.Join(target, "replica.db")
	}
	fmt.Fprintf(a.out, "Reading every change that can still be read out of %s...\n", a.path("replica.db"))
	start := time.Now()
	nr, rep, err := replica.Repair(ctx, a.path("replica.db"), built, cfg)
	if err != nil {
		if errors.Is(err, replica.ErrUnsalvageable) {
			return fmt.Errorf("%w. Nothing is removed. If this device's data is encrypted, log in first (clinic login -user USER-ID) so that its key is at hand, and run clinic repair again; otherwise restore the device from its latest backup (clinic restore -in FILE -dir NEWDIR), or set up a new device that the cloud fills: changes not yet synced are lost unless a backup holds them", err)
		}
		return err
	}
	charts, err := nr.Find(ctx, "", 0)
	if cerr := nr.Close(); err == nil {
		err = cerr
	}
	_ = os.Remove(built + ".lock")
	if err != nil {
		return err
	}
	fmt.Fprintf(a.out, "Read %s of %d in %s; built %s with %s.\n", plural(rep.Salvage.Read, "change", "changes"), rep.Salvage.Head,
		time.Since(start).Round(time.Millisecond), plural(len(charts), "chart", "charts"), plural(rep.Changes, "change", "changes"))

	var aside []string
	if inPlace {
		// The damaged database, and the old device's keys and credential,
		// go aside; the new ones take their places.
		if aside, err = moveAside(a, stamp); err != nil {
			return err
		}
		if err := os.Rename(built, a.path("replica.db")); err != nil {
			return fmt.Errorf("put the rebuilt database in place (it is %s; the damaged one is kept as %s): %w", built, aside[0], err)
		}
		if err := os.Remove(a.path(sessionsFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	} else if err := copyDeviceFiles(a.dir, newDir); err != nil {
		return err
	}
	if err := keys.Save(filepath.Join(target, identityFile)); err != nil {
		return err
	}
	req := filepath.Join(target, requestFile)
	if err := writeRequest(keys, req); err != nil {
		return err
	}
	nd := d
	nd.Device, nd.Created = name, time.Now().UTC()
	// Written last: the directory is a device once it has its configuration.
	if err := writeJSON(filepath.Join(target, "device.json"), nd); err != nil {
		return err
	}
	if err := atomicfile.SyncDir(target); err != nil {
		return err
	}
	reportRebuild(a, d, nd, keys, rep, target, req, aside)
	return nil
}

// reportRebuild tells what the rebuild kept and lost, and what to do
// next.
func reportRebuild(a *app, old, nd deviceConfig, keys *device.Identity, rep replica.RepairReport, target, req string, aside []string) {
	s := rep.Salvage
	fmt.Fprintf(a.out, "Rebuilt device %s of clinic %s as a new device %s, replica %s, in %s.\n", old.Device, old.Clinic, nd.Device, keys.ReplicaID(), target)
	if s.HeaderRebuilt {
		fmt.Fprintln(a.out, "The database's first page was destroyed and was rebuilt to read the rest.")
	}
	switch lost := s.UnsyncedLost(); {
	case len(s.Lost) == 0:
		fmt.Fprintln(a.out, "Every change in the damaged database was read: nothing is lost.")
	case len(lost) == 0:
		fmt.Fprintf(a.out, "%s could not be read (log positions %s); the cloud had acknowledged each of them, and sends them back at the next sync.\n",
			plural(len(s.Lost), "change", "changes"), positions(s.Lost))
	default:
		fmt.Fprintf(a.out, "%s could not be read (log positions %s). %s of them (positions %s) may not have reached the cloud: unless another device or the cloud holds them, they are lost. Check the charts named below against paper records and enter again what is missing.\n",
			plural(len(s.Lost), "change", "changes"), positions(s.Lost), plural(len(lost), "change", "changes"), positions(lost))
	}
	if len(s.LostCharts) > 0 {
		fmt.Fprintf(a.out, "Charts that lost changes to the damage: %s\n", strings.Join(s.LostCharts, ", "))
	}
	if rep.Waiting > 0 {
		fmt.Fprintf(a.out, "Made on this device and not yet synced, %s waiting for changes the damage took: kept, and applied once the cloud sends those back.\n",
			plural(rep.Waiting, "change is", "changes are"))
	}
	if rep.NotKept > 0 {
		fmt.Fprintf(a.out, "Made on this device, %s waiting for lost changes beyond what can be kept: lost.\n", plural(rep.NotKept, "change is", "changes are"))
	}
	for _, p := range aside {
		fmt.Fprintf(a.out, "Kept aside: %s\n", p)
	}
	if len(aside) == 0 {
		fmt.Fprintf(a.out, "This folder (%s), damaged database included, is left as it was.\n", a.dir)
	}
	fmt.Fprintf(a.out, "Device key fingerprint: %s\n", device.Fingerprint(keys.Public().SignKey))
	fmt.Fprintf(a.out, "Next: it is a new device and must be enrolled before it syncs. Give %s to the administrator (cloud enrol -request), "+
		"then run clinic -dir %s connect -credential FILE and clinic -dir %s repair (with -user USER-ID if no one is logged in): the cloud sends back what the damage took, and this device's changes reach it.\n", req, target, target)
	fmt.Fprintf(a.out, "Ask the administrator to revoke the old device %s (replica %s) once the new one has synced. Keep what was put aside until then.\n", old.Device, s.Replica)
}

// finishRepair syncs a rebuilt device with the cloud, applies its
// salvaged changes that waited for what the cloud sends back, and syncs
// again to give them to the cloud.
func finishRepair(ctx context.Context, a *app, r *replica.Replica, quiet bool) error {
	waiting, err := r.SalvagedWaiting(ctx)
	if err != nil {
		return err
	}
	if waiting == 0 {
		// A rebuilt device that has not met the cloud yet is synced
		// all the same: it may have lost its clinic's users to the
		// damage, and then no one can log in to sync it.
		c, err := a.credential()
		if err != nil || c.CloudReplica == "" {
			return errNotDamaged
		}
		peers, err := r.Peers(ctx)
		if err != nil {
			return err
		}
		for _, p := range peers {
			if p.ID == c.CloudReplica && !p.LastSync.IsZero() {
				return errNotDamaged
			}
		}
		fmt.Fprintln(a.out, "Nothing salvaged waits; syncing the rebuilt device with the cloud for the first time...")
	} else {
		fmt.Fprintf(a.out, "Salvaged from the damaged database, %s waiting for changes the cloud holds; syncing...\n", plural(waiting, "change is", "changes are"))
	}
	sync := func() (httpsync.Report, *httpsync.Credential, error) {
		bar := &progressBar{w: a.out}
		var progress func(httpsync.Progress)
		if !quiet {
			progress = bar.show
		}
		rep, c, err := cloudSync(ctx, a, r, progress)
		bar.end()
		return rep, c, err
	}
	rep, c, err := sync()
	if err != nil {
		return err
	}
	fmt.Fprintf(a.out, "Synced with %s: %s sent, %d received.\n", c.CloudURL, plural(rep.ChangesSent, "change", "changes"), rep.ChangesApplied)
	applied, waiting, err := r.ApplySalvaged(ctx)
	if err != nil {
		return err
	}
	if applied > 0 {
		fmt.Fprintf(a.out, "Applied %s that waited; sending them to the cloud...\n", plural(applied, "salvaged change", "salvaged changes"))
		rep, c, err = sync()
		if err != nil {
			return fmt.Errorf("%w (the changes applied are saved on this device: run clinic sync when there is a connection)", err)
		}
		fmt.Fprintf(a.out, "Synced with %s: %s sent, %d received.\n", c.CloudURL, plural(rep.ChangesSent, "change", "changes"), rep.ChangesApplied)
	}
	if waiting > 0 {
		fmt.Fprintf(a.out, "Still %s waiting for changes the cloud does not hold yet: sync the devices that may hold them, then run clinic repair again.\n",
			plural(waiting, "change is", "changes are"))
		return nil
	}
	fmt.Fprintln(a.out, "Repair finished: every change read from the damaged database is on this device and in the cloud.")
	return nil
}

// moveAside renames the damaged database (with its write-ahead log and
// wal-index) and the old device's keys and credential, so that nothing of
// them is lost, and returns their new paths. On error what was renamed is
// put back.
func moveAside(a *app, stamp string) (moved []string, err error) {
	type move struct{ from, to string }
	var done []move
	defer func() {
		if err != nil {
			for i := len(done) - 1; i >= 0; i-- {
				_ = os.Rename(done[i].to, done[i].from)
			}
			moved = nil
		}
	}()
	for _, name := range []string{"replica.db", "replica.db-wal", "replica.db-shm", identityFile, credentialFile} {
		from := a.path(name)
		suffix := ".before-repair-" + stamp
		if strings.HasPrefix(name, "replica.db") {
			// The write-ahead log keeps its database's name and suffix.
			suffix = ""
			name = "replica.db.damaged-" + stamp + strings.TrimPrefix(name, "replica.db")
		} else {
			name += suffix
		}
		to := a.path(name)
		if err := os.Rename(from, to); errors.Is(err, os.ErrNotExist) {
			continue
		} else if err != nil {
			return nil, fmt.Errorf("keep %s aside: %w", from, err)
		}
		done = append(done, move{from, to})
		moved = append(moved, to)
	}
	if err := atomicfile.SyncDir(a.dir); err != nil {
		return nil, err
	}
	return moved, nil
}

// emptyNewDir checks that newDir is not the device's folder and is empty
// or new, and makes it.
func emptyNewDir(dir, newDir string) error {
	if same, err := sameDir(dir, newDir); err != nil {
		return err
	} else if same {
		return fmt.Errorf("%s is this device's own folder: give a new directory to -to, or leave -to out to repair in place", newDir)
	}
	if entries, err := os.ReadDir(newDir); err == nil && len(entries) > 0 {
		return fmt.Errorf("%s is not empty: rebuild into a new directory (-to NEWDIR)", newDir)
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return os.MkdirAll(newDir, 0o700)
}

// copyDeviceFiles copies into newDir the files of the device's folder a
// rebuilt device keeps (its users' login records, and any other file
// the app keeps there), leaving out the database and everything that
// belongs to the old device's identity: its keys, credential, enrolment
// request, TLS sessions and lock files, and its configuration (written
// anew).
func copyDeviceFiles(dir, newDir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	skip := map[string]bool{identityFile: true, credentialFile: true, requestFile: true, sessionsFile: true, "device.json": true}
	for _, e := range entries {
		n := e.Name()
		if !e.Type().IsRegular() || skip[n] || strings.HasPrefix(n, "replica.db") || strings.HasPrefix(n, ".") || strings.HasSuffix(n, ".lock") || n == dirlock.FileName {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			return err
		}
		if err := atomicfile.Write(filepath.Join(newDir, n), data, atomicfile.Options{Perm: 0o600}); err != nil {
			return err
		}
	}
	return nil
}

// positions formats log positions for a person: the first few, and how
// many more.
func positions(ps []uint64) string {
	const show = 10
	var b strings.Builder
	for i, p := range ps {
		if i == show {
			fmt.Fprintf(&b, " and %d more", len(ps)-show)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprint(&b, p)
	}
	return b.String()
}
