package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"github.com/chartsync/chartsync/device/keyring"
	"github.com/chartsync/chartsync/device/login"
	"github.com/chartsync/chartsync/device/session"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
)

// The clinic's users live in its roster, a replicated document every
// device of the clinic holds (see record.Users). Logging in checks the
// password against the roster's argon2id hash, on the device, with no
// network; failed attempts are counted in guardFile, and five in a row
// lock the user out on this device for a minute, doubling up to an hour.

const guardFile = "login-guard.json" // failed logins and lockouts on this device

var (
	errWrongLogin = errors.New("wrong user ID or password")
	errNoUsers    = errors.New("this device holds no users of its clinic yet: sync with the cloud to receive them (on the clinic's first device, set up the first administrator with clinic init -admin)")
	errMismatch   = errors.New("the two passwords differ: nothing was changed; run the command again")
)

// readSecret reads one line from the input: a password. On a terminal it
// prompts and does not echo.
func (a *app) readSecret(prompt string) (string, error) {
	if f, ok := a.raw.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(a.out, prompt)
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(a.out)
		if err != nil {
			return "", fmt.Errorf("read the password: %w", err)
		}
		return string(b), nil
	}
	line, err := a.in.ReadString('\n')
	if err != nil && (!errors.Is(err, io.EOF) || line == "") {
		return "", usagef("no password given: type it when asked, or give it on standard input (one line)")
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// newPassword reads a new password twice and returns it with its hash
// for the roster.
func (a *app) newPassword(whose string) (pw, hash string, err error) {
	pw, err = a.readSecret(fmt.Sprintf("New password for %s: ", whose))
	if err != nil {
		return "", "", err
	}
	again, err := a.readSecret("The same password again: ")
	if err != nil {
		return "", "", err
	}
	if pw != again {
		return "", "", errMismatch
	}
	h, err := login.Hash(pw, passwordParams)
	if err != nil {
		return "", "", fmt.Errorf("%w (use at least %d characters)", err, login.MinPasswordLength)
	}
	return pw, h, nil
}

// setKeyEntry gives user an entry under password in the device's keyring
// (a new one, or the old one re-sealed), with the data key this session
// holds; a device without a keyring (data in clear) has none to set.
func (a *app) setKeyEntry(user, password string) error {
	if ok, err := a.hasKeyring(); err != nil || !ok {
		return err
	}
	if a.key == nil {
		return errLocked
	}
	path := a.path(keyringFile)
	err := keyringConfig.AddUser(path, a.key, user, password)
	if errors.Is(err, keyring.ErrUserExists) {
		err = keyringConfig.ResetPassword(path, a.key, user, password)
	}
	if err != nil {
		return fmt.Errorf("set %s's entry in this device's keyring: %w", user, err)
	}
	return nil
}

func (a *app) guard() (*login.Guard, error) {
	g, err := login.OpenGuard(a.path(guardFile), login.Policy{}, nil)
	if errors.Is(err, login.ErrCorruptState) {
		return nil, fmt.Errorf("%w: the record of failed logins (%s) is damaged, so no one can log in; an administrator must remove that file", err, a.path(guardFile))
	}
	return g, err
}

// startRoster sets up the clinic's first administrator on this device,
// with h, their password's hash.
func startRoster(ctx context.Context, a *app, clinic, id, name, h string) error {
	if name == "" {
		name = id
	}
	d, r, err := a.deviceReplica(ctx)
	if err != nil {
		return err
	}
	by := record.Author{UserID: id, Name: name, Role: record.RoleAdministrator, Device: d.Device}
	if _, err := r.UpdateUser(ctx, clinic, by, record.UserUpdate{UserID: id, Name: name, Role: record.RoleAdministrator, PasswordHash: h}); err != nil {
		return err
	}
	fmt.Fprintf(a.out, "Administrator %s (%s) set up for clinic %s.\n", id, name, clinic)
	return nil
}

// deviceReplica returns the device's configuration and opens its replica.
func (a *app) deviceReplica(ctx context.Context) (deviceConfig, *replica.Replica, error) {
	d, err := a.device()
	if err != nil {
		return d, nil, err
	}
	r, err := a.replica(ctx)
	return d, r, err
}

// admin is the logged-in user, who must be an administrator.
func (a *app) admin(ctx context.Context) (record.Author, error) {
	by, err := a.author(ctx)
	if err != nil {
		return by, err
	}
	if by.Role != record.RoleAdministrator {
		return by, &record.ForbiddenError{Role: by.Role, Section: record.SectionUsers}
	}
	return by, nil
}

func init() {
	var user, loginRecovery string
	var idle time.Duration
	register(&command{
		name: "login", args: "-user USER-ID [-idle 15m]",
		help: "Log in as a member of staff (asks for your password); every change records who made it.\nWorks with no network: the clinic's users and their password hashes are on this device.\nYour password unlocks the device's encrypted data; the first time you log in on a device, a colleague who has logged in there must be logged in (their session holds the key).\nYou are logged out after -idle without using the app (default 15 minutes), and by \"clinic logout\": the key is then removed from the device.",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&user, "user", "", "your user ID (required)")
			fs.DurationVar(&idle, "idle", defaultIdle, "log out after this long without use")
			fs.StringVar(&loginRecovery, "recovery", "", "on a device whose data is not yet encrypted: the age recipient (age1…) of the recovery key its keyring is made with (default: the cloud's, from the credential)")
		},
		run: func(ctx context.Context, a *app, fs *flag.FlagSet, args []string) error {
			if user == "" {
				return usagef("-user is required")
			}
			if idle < time.Minute || idle > 24*time.Hour {
				return usagef("-idle %s: give a duration from 1m to 24h, such as 15m", idle)
			}
			if loginRecovery != "" {
				if err := checkRecipient(loginRecovery); err != nil {
					return err
				}
			}
			d, err := a.device()
			if err != nil {
				return err
			}
			au, key, note, err := a.logIn(ctx, user, loginRecovery)
			if err != nil {
				return err
			}
			// The session, and the key it holds until logout or until a
			// command finds it idle.
			if err := (session.File{Author: au, Since: time.Now().UTC(), Idle: idle}).WriteFile(a.path(sessionFile)); err != nil {
				return err
			}
			if key != nil {
				if err := a.keepKey(key); err != nil {
					return err
				}
			} else {
				a.dropKey()
			}
			fmt.Fprintf(a.out, "Logged in as %s on %s.\n", au, d.Device)
			if note != "" {
				fmt.Fprintln(a.out, note)
			}
			return nil
		},
	})

	register(&command{
		name: "passwd", help: "Change your password (asks for the current one, then the new one twice).\nThe change reaches the clinic's other devices at their next sync.",
		run: func(ctx context.Context, a *app, fs *flag.FlagSet, args []string) error {
			by, err := a.author(ctx)
			if err != nil {
				return err
			}
			d, r, err := a.deviceReplica(ctx)
			if err != nil {
				return err
			}
			u, err := r.User(ctx, d.Clinic, by.UserID)
			if err != nil {
				return err
			}
			g, err := a.guard()
			if err != nil {
				return err
			}
			old, err := a.readSecret("Current password: ")
			if err != nil {
				return err
			}
			if err := g.Login(by.UserID, u.PasswordHash, old); err != nil {
				if errors.Is(err, login.ErrWrongPassword) {
					return fmt.Errorf("%w: the password was not changed", errWrongLogin)
				}
				return err
			}
			pw, h, err := a.newPassword(by.UserID)
			if err != nil {
				return err
			}
			if _, err := r.UpdateUser(ctx, d.Clinic, by, record.UserUpdate{UserID: by.UserID, PasswordHash: h}); err != nil {
				return err
			}
			// The keyring entry is re-sealed; the data is not
			// re-encrypted. The current password opens the entry; one
			// changed on another device meanwhile does not, and the
			// session's key re-seals it instead.
			if ok, err := a.hasKeyring(); err != nil {
				return err
			} else if ok {
				err := keyringConfig.ChangePassword(a.path(keyringFile), by.UserID, old, pw)
				if errors.Is(err, keyring.ErrWrongPassword) || errors.Is(err, keyring.ErrUnknownUser) {
					err = a.setKeyEntry(by.UserID, pw)
				}
				if err != nil {
					return fmt.Errorf("the clinic's roster has the new password, but this device's keyring does not (%w): log in with the new password while a colleague is logged in, or run clinic passwd again", err)
				}
			}
			fmt.Fprintf(a.out, "Password of %s changed on this device; the clinic's other devices get it when they sync.\n", by.UserID)
			return nil
		},
	})

	var id, name, role string
	register(&command{
		name: "user", args: "add -id USER-ID -name NAME -role ROLE | reset-password -id USER-ID | disable -id USER-ID | enable -id USER-ID | role -id USER-ID -role ROLE | list",
		help: "Manage the clinic's users (administrators only; list is for anyone logged in).\nadd asks for the new user's first password, reset-password for a new one (for a user who forgot theirs); both give the user a key entry on this device.\ndisable also removes the user's key entry from this device. Changes reach the clinic's other devices at their next sync.",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&id, "id", "", "the user's ID, e.g. u-achieng")
			fs.StringVar(&name, "name", "", "the user's name as colleagues know it")
			codeVar(fs, &role, "role", "", "clinician, nurse, lab-technician, registration-clerk, community-health-worker or administrator", roleCodes)
		},
		run: func(ctx context.Context, a *app, fs *flag.FlagSet, args []string) error {
			if len(args) == 0 {
				return usagef("say what to do: add, reset-password, disable, enable, role or list")
			}
			if len(args) > 1 {
				return usagef("unexpected %q", args[1])
			}
			d, r, err := a.deviceReplica(ctx)
			if err != nil {
				return err
			}
			if args[0] == "list" {
				if _, err := a.author(ctx); err != nil {
					return err
				}
				users, err := r.Users(ctx, d.Clinic)
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "USER\tNAME\tROLE\tSTATUS")
				for _, u := range users {
					status := "active"
					if u.Disabled {
						status = "disabled"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", u.ID, u.Name, u.Role, status)
				}
				return tw.Flush()
			}
			by, err := a.admin(ctx)
			if err != nil {
				return err
			}
			if id == "" {
				return usagef("-id is required")
			}
			up := record.UserUpdate{UserID: id}
			var password string
			var keyEntry bool
			switch args[0] {
			case "add":
				if name == "" || role == "" {
					return usagef("add needs -name and -role")
				}
				if _, err := r.User(ctx, d.Clinic, id); err == nil {
					return fmt.Errorf("user %s already exists: use \"clinic user role\" or \"clinic user enable\"", id)
				}
				up.Name, up.Role = name, record.Role(role)
				if !up.Role.Valid() {
					return usagef("-role %q is not a role: give one of %s", role, strings.Join(roleCodes, ", "))
				}
				if password, up.PasswordHash, err = a.newPassword(id); err != nil {
					return err
				}
				keyEntry = true
			case "reset-password":
				if _, err := r.User(ctx, d.Clinic, id); err != nil {
					return err
				}
				if password, up.PasswordHash, err = a.newPassword(id); err != nil {
					return err
				}
				keyEntry = true
			case "disable":
				up.Disable = true
			case "enable":
				up.Enable = true
			case "role":
				up.Role = record.Role(role)
				if !up.Role.Valid() {
					return usagef("-role %q is not a role: give one of %s", role, strings.Join(roleCodes, ", "))
				}
			default:
				return usagef("%q: say add, reset-password, disable, enable, role or list", args[0])
			}
			if _, err := r.UpdateUser(ctx, d.Clinic, by, up); err != nil {
				return err
			}
			switch {
			case keyEntry:
				if err := a.setKeyEntry(id, password); err != nil {
					return err
				}
			case up.Disable:
				if err := a.removeKeyEntry(id); err != nil {
					return err
				}
			}
			fmt.Fprintf(a.out, "User %s: %s done on this device; the clinic's other devices get it when they sync.\n", id, args[0])
			return nil
		},
	})

	var policyRole, policyHide string
	register(&command{
		name: "policy", args: "[-role ROLE -hide SECTIONS]",
		help: "Show, or set (administrators only), the chart sections each role may not read at this clinic.\nSECTIONS is a comma-separated list of allergies, diagnoses, prescriptions, lab-results, encounters, referrals, notes (notes: the text of encounter notes only); an empty list lets the role read everything.",
		flags: func(fs *flag.FlagSet) {
			codeVar(fs, &policyRole, "role", "", "the role to set", roleCodes)
			fs.StringVar(&policyHide, "hide", "", "the sections it may not read")
		},
		run: func(ctx context.Context, a *app, fs *flag.FlagSet, args []string) error {
			d, r, err := a.deviceReplica(ctx)
			if err != nil {
				return err
			}
			if policyRole != "" {
				by, err := a.admin(ctx)
				if err != nil {
					return err
				}
				var hide []record.Section
				for _, s := range strings.Split(policyHide, ",") {
					if s = strings.TrimSpace(s); s != "" {
						hide = append(hide, record.Section(s))
					}
				}
				if _, err := r.SetHidden(ctx, d.Clinic, by, record.Role(policyRole), hide); err != nil {
					return err
				}
			}
			p, err := r.ReadPolicy(ctx, d.Clinic)
			if err != nil {
				return err
			}
			if len(p) == 0 {
				fmt.Fprintln(a.out, "Every role reads every section of a chart.")
				return nil
			}
			for _, role := range record.Roles() {
				if ss := p[role]; len(ss) > 0 {
					names := make([]string, len(ss))
					for i, s := range ss {
						names[i] = string(s)
					}
					fmt.Fprintf(a.out, "A %s may not read: %s\n", role, strings.Join(names, ", "))
				}
			}
			return nil
		},
	})

	var unlockUser string
	register(&command{
		name: "unlock", args: "-user USER-ID",
		help: "Let a user locked out after failed logins try again on this device (administrators only).",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&unlockUser, "user", "", "the locked-out user's ID (required)")
		},
		run: func(ctx context.Context, a *app, fs *flag.FlagSet, args []string) error {
			if unlockUser == "" {
				return usagef("-user is required")
			}
			if _, err := a.admin(ctx); err != nil {
				return err
			}
			g, err := a.guard()
			if err != nil {
				return err
			}
			if err := g.Unlock(unlockUser); err != nil {
				return err
			}
			fmt.Fprintf(a.out, "%s may log in again on this device.\n", unlockUser)
			return nil
		},
	})
}

// removeKeyEntry removes user's entry from the device's keyring (a user
// disabled): their password no longer unlocks this device's data. The
// last entry stays (the keyring would open for no one).
func (a *app) removeKeyEntry(user string) error {
	if ok, err := a.hasKeyring(); err != nil || !ok {
		return err
	}
	if a.key == nil {
		return errLocked
	}
	err := keyring.RemoveUser(a.path(keyringFile), a.key, user)
	switch {
	case errors.Is(err, keyring.ErrUnknownUser):
		return nil
	case errors.Is(err, keyring.ErrLastUser):
		fmt.Fprintf(a.log, "Warning: %s holds the only key entry on this device, which stays until another user has one.\n", user)
		return nil
	case err != nil:
		return fmt.Errorf("remove %s's entry from this device's keyring: %w", user, err)
	}
	return nil
}
