package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/chartsync/chartsync/device/session"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
)

// The recovery of a device whose every password is lost, and the making
// of a recovery key.

func init() {
	var identity, user string
	var idle time.Duration
	register(&command{
		name: "unlock-recovery", args: "-identity FILE -user USER-ID",
		help: "Open a device whose every password is lost (or forgotten) with its recovery key, set a new password for an administrator, and log them in.\nNothing on the device is lost: changes not yet synced are kept, and sync as before. The recovery key is the age identity the device's keyring was made for (the file of clinic recovery-key or init -recovery-out, or the cloud's identity file).",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&identity, "identity", "", "the recovery key: an age identity file, or the cloud's identity file (required)")
			fs.StringVar(&user, "user", "", "an administrator of the clinic, whose password is set anew (required)")
			fs.DurationVar(&idle, "idle", defaultIdle, "log out after this long without use")
		},
		run: func(ctx context.Context, a *app, fs *flag.FlagSet, args []string) error {
			if identity == "" || user == "" {
				return usagef("-identity and -user are required")
			}
			if len(args) > 0 {
				return usagef("unexpected %q", args[0])
			}
			if idle < time.Minute || idle > 24*time.Hour {
				return usagef("-idle %s: give a duration from 1m to 24h, such as 15m", idle)
			}
			return unlockRecovery(ctx, a, identity, user, idle)
		},
	})

	var out string
	register(&command{
		name: "recovery-key", args: "-out FILE",
		help: "Make a recovery key: an age identity written to FILE (keep it off the device, safe) whose recipient, printed, is given to clinic init -recovery.\nWith the file, clinic unlock-recovery opens a device whose every password is lost.",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&out, "out", "", "the file to write it to, a new one, off the device (required)")
		},
		run: func(ctx context.Context, a *app, fs *flag.FlagSet, args []string) error {
			if out == "" {
				return usagef("-out is required")
			}
			rcp, err := writeRecoveryIdentity(out, "chartsync clinic recovery key: keep it off the devices; clinic unlock-recovery -identity FILE opens a device with it")
			if err != nil {
				return err
			}
			fmt.Fprintf(a.out, "Recovery key written to %s. Keep it safe and apart from the devices.\nIts recipient, for clinic init -recovery: %s\n", out, rcp)
			return nil
		},
	})
}

// unlockRecovery opens the device's data with the recovery identity in
// identityPath, sets a new password for user (an administrator of the
// clinic on the roster) in the roster and the keyring, lifts their
// lockout and logs them in.
func unlockRecovery(ctx context.Context, a *app, identityPath, user string, idle time.Duration) error {
	d, err := a.device()
	if err != nil {
		return err
	}
	if ok, err := a.hasKeyring(); err != nil {
		return err
	} else if !ok {
		return fmt.Errorf("this device has no keyring (%s): its data is not encrypted, or the keyring file is lost; put back the keyring from a backup or a copy of this folder first", a.path(keyringFile))
	}
	ids, err := readRecoveryIdentity(identityPath)
	if err != nil {
		return err
	}
	key, err := recoverKey(a.path(keyringFile), ids)
	if err != nil {
		return err
	}
	a.dropKey() // any earlier session ends
	a.key = key
	r, err := a.replica(ctx)
	if err != nil {
		return err
	}
	u, err := r.User(ctx, d.Clinic, user)
	if err != nil && !errors.Is(err, replica.ErrNotFound) {
		return err
	}
	if err != nil || u.Role != record.RoleAdministrator || u.Disabled {
		// The data is open: the administrators can be named.
		var admins []string
		users, uerr := r.Users(ctx, d.Clinic)
		if uerr != nil {
			return uerr
		}
		for _, o := range users {
			if o.Role == record.RoleAdministrator && !o.Disabled {
				admins = append(admins, o.ID)
			}
		}
		return fmt.Errorf("%s is not an active administrator of the clinic on this device: give one of theirs (%s); nothing was changed", user, strings.Join(admins, ", "))
	}
	pw, h, err := a.newPassword(user)
	if err != nil {
		return err
	}
	by := record.Author{UserID: u.ID, Name: u.Name, Role: u.Role, Device: d.Device}
	if _, err := r.UpdateUser(ctx, d.Clinic, by, record.UserUpdate{UserID: user, PasswordHash: h}); err != nil {
		return err
	}
	if err := a.setKeyEntry(user, pw); err != nil {
		return err
	}
	g, err := a.guard()
	if err != nil {
		return err
	}
	if err := g.Unlock(user); err != nil {
		return err
	}
	if err := (session.File{Author: by, Since: time.Now().UTC(), Idle: idle}).WriteFile(a.path(sessionFile)); err != nil {
		return err
	}
	if err := a.keepKey(key); err != nil {
		return err
	}
	pending := ""
	if c, err := a.credential(); err == nil && c.CloudReplica != "" {
		if n, err := r.Pending(ctx, c.CloudReplica); err == nil {
			pending = fmt.Sprintf(" %s waiting to be sent to the cloud, kept.", plural(n, "change", "changes"))
		}
	}
	fmt.Fprintf(a.out, "Device %s opened with its recovery key: %s has a new password on this device and is logged in.%s\n", d.Device, user, pending)
	fmt.Fprintln(a.out, "The new password reaches the clinic's other devices at the next sync. Colleagues set theirs with clinic user reset-password.")
	return nil
}
