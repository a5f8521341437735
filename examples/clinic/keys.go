package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"filippo.io/age"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/device/keyring"
	"github.com/chartsync/chartsync/device/login"
	"github.com/chartsync/chartsync/device/session"
	"github.com/chartsync/chartsync/internal/atomicfile"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica/store/sqlite"
)

// Encryption at rest. The device's database (replica.db) is encrypted
// with a random data key (SQLCipher, replica.Config.DatabaseKey). The key
// is kept only wrapped, in keyringFile (package device/keyring): once per
// user of this device, under their password (argon2id), and once for
// recovery, encrypted to an age recipient kept off the device (the
// cloud's, or an administrator's). Logging in unwraps it with the user's
// password; between commands a live session keeps it in sessionKeyFile
// (0600), which logout removes, and so does the first command that finds
// the session idle for longer than its idle time.
//
// What the disk gives away:
//   - No one logged in (after logout, or after a command found the
//     session idle): the names and sizes of the files; from the keyring,
//     the user IDs of the device's users, their argon2id parameters and
//     the recovery recipient (a public key); from session.json, nothing
//     (it is removed with the key); device.json (clinic, device name),
//     the device's keys (identity.key: whoever has them can sync as the
//     device until the administrator revokes it), the cloud credential
//     (no secret) and the failed-login counts. Charts, their index,
//     pending changes, the quarantine and the roster's password hashes
//     are in the encrypted database. A password guessed offline against a
//     keyring entry (one argon2id derivation per guess) or the recovery
//     identity opens it.
//   - Someone logged in and the idle time not yet found expired (a
//     tablet taken from the counter mid-session): the data key is in
//     session.key, so everything. The idle time bounds this only when a
//     command runs; "clinic serve" keeps the key in memory only, and
//     drops it when its last session ends.
//   - The blocks of a removed session.key, or of the clear database
//     before its first encryption, may remain readable on the disk until
//     written over (flash storage especially): see sqlite.Encrypt.

// Files of encryption at rest in the data directory.
const (
	keyringFile    = "keyring"     // the data key, wrapped per user and for recovery (0600)
	sessionKeyFile = "session.key" // the data key while someone is logged in (0600)
)

// keyringConfig is the argon2id cost of the keyring entries this app
// writes: keyring.DefaultParams (tests lower it).
var keyringConfig keyring.Config

// passwordParams is the argon2id cost of the roster's password hashes
// this app writes (tests lower it).
var passwordParams = login.DefaultParams

var (
	// errLocked: the database is encrypted and no one logged in holds
	// its key.
	errLocked = fmt.Errorf("this device's data is encrypted: %w", session.ErrNotLoggedIn)
	// errNoKeyEntry: a user without a keyring entry tried to log in while
	// no one's session holds the key.
	errNoKeyEntry = errors.New("no key on this device yet")
)

// hasKeyring reports whether the device has a keyring.
func (a *app) hasKeyring() (bool, error) {
	_, err := os.Lstat(a.path(keyringFile))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	}
	return false, err
}

// sqliteHeader begins every SQLite database in clear.
var sqliteHeader = []byte("SQLite format 3\x00")

// databaseInClear reports whether the device's database exists and is
// not encrypted (one made before the device encrypted its data).
func (a *app) databaseInClear() (bool, error) {
	f, err := os.Open(a.path("replica.db"))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	head := make([]byte, len(sqliteHeader))
	n, _ := f.Read(head)
	return n == len(head) && bytes.Equal(head, sqliteHeader), nil
}

// encrypted reports whether opening the replica needs the data key: the
// device has a keyring, or a database that is not in clear.
func (a *app) encrypted() (bool, error) {
	if ok, err := a.hasKeyring(); ok || err != nil {
		return ok, err
	}
	if _, err := os.Lstat(a.path("replica.db")); errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	clear, err := a.databaseInClear()
	return !clear, err
}

// useSession reads the session and records its use, as session.Use
// does; when there is no live session (none, idle too long, damaged) the
// data key it held is removed from the disk too.
func (a *app) useSession() (session.File, error) {
	s, err := session.Use(a.path(sessionFile), time.Now().UTC())
	if err != nil {
		a.dropKey()
	}
	return s, err
}

// heldKey returns the data key a live session holds (nil and no error
// when none does), and keeps it for opening the replica.
func (a *app) heldKey() ([]byte, error) {
	if a.key != nil {
		return a.key, nil
	}
	if _, err := a.useSession(); err != nil {
		if errors.Is(err, errNotLoggedIn) || errors.Is(err, session.ErrCorruptFile) {
			return nil, nil
		}
		return nil, err
	}
	b, err := os.ReadFile(a.path(sessionKeyFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the session's key: %w", err)
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(key) != sqlite.KeySize {
		a.dropKey()
		return nil, nil
	}
	a.key = key
	return key, nil
}

// keepKey writes the data key for the session that has just begun.
func (a *app) keepKey(key []byte) error {
	if err := atomicfile.Write(a.path(sessionKeyFile), []byte(hex.EncodeToString(key)+"\n"), atomicfile.Options{Perm: 0o600}); err != nil {
		return fmt.Errorf("keep the session's key: %w", err)
	}
	return nil
}

// dropKey removes the session's data key from the disk, best effort
// (the next command tries again), and from memory.
func (a *app) dropKey() {
	if err := os.Remove(a.path(sessionKeyFile)); err == nil {
		_ = atomicfile.SyncDir(a.dir)
	}
	clear(a.key)
	a.key = nil
}

// endSession removes the session and its key (logout).
func (a *app) endSession() error {
	a.dropKey()
	if err := os.Remove(a.path(sessionKeyFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove the session's key: %w", err)
	}
	return session.RemoveFile(a.path(sessionFile))
}

// recoveryRecipient is the age recipient a new keyring's recovery entry
// is encrypted to: given (-recovery), or kept in device.json by init,
// or the cloud's own, named by the device's credential. Empty if none.
func (a *app) recoveryRecipient(given string, d deviceConfig) (string, error) {
	if given != "" {
		return given, checkRecipient(given)
	}
	if d.Recovery != "" {
		return d.Recovery, checkRecipient(d.Recovery)
	}
	return a.cloudRecipient()
}

// cloudRecipient is the cloud's age recipient, as the roster in the
// device's credential holds it (the cloud enrols itself before the
// devices it enrols), or "" when the device has no such credential.
func (a *app) cloudRecipient() (string, error) {
	c, err := a.credential()
	if errors.Is(err, errNotConnected) || errors.Is(err, errNoIdentity) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	if c.CloudReplica == "" || len(c.Authority) == 0 {
		return "", nil
	}
	r, err := c.NewRoster()
	if err != nil {
		return "", nil
	}
	pub, err := r.Lookup(c.CloudReplica)
	if err != nil {
		return "", nil // revoked, or not in the roster: no recipient
	}
	return pub.AgeRecipient, nil
}

// checkRecipient checks an age recipient string as the keyring takes it.
func checkRecipient(s string) error {
	var err error
	if strings.HasPrefix(s, "age1pq1") {
		_, err = age.ParseHybridRecipient(s)
	} else {
		_, err = age.ParseX25519Recipient(s)
	}
	if err != nil {
		return usagef("-recovery %q is not an age recipient (age1…): %v", s, err)
	}
	return nil
}

// readRecoveryIdentity reads the recovery identity in path: an age
// identity file (AGE-SECRET-KEY-1…, as age-keygen or "clinic
// recovery-key" write it) or a chartsync identity file (the cloud's, whose
// age recipient the credential names).
func readRecoveryIdentity(path string) ([]age.Identity, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if ids, err := age.ParseIdentities(bytes.NewReader(b)); err == nil {
		return ids, nil
	}
	id, err := device.ParseIdentity(b)
	if err != nil {
		return nil, fmt.Errorf("%s holds neither an age identity (AGE-SECRET-KEY-1…) nor a chartsync identity", path)
	}
	return []age.Identity{id.AgeIdentity()}, nil
}

// writeRecoveryIdentity makes a new age identity, writes it to path
// (0600, a new file) and returns its recipient.
func writeRecoveryIdentity(path, about string) (string, error) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return "", err
	}
	if _, err := os.Lstat(path); err == nil {
		return "", fmt.Errorf("%s exists: choose a new file for the recovery identity", path)
	}
	body := fmt.Sprintf("# %s\n# created: %s\n# public key: %s\n%s\n", about, time.Now().UTC().Format(time.RFC3339), id.Recipient(), id)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	if err := atomicfile.Write(path, []byte(body), atomicfile.Options{Perm: 0o600}); err != nil {
		return "", err
	}
	return id.Recipient().String(), nil
}

// keyringUsers lists the users with an entry in the device's keyring.
func (a *app) keyringUsers() ([]string, error) {
	users, err := keyring.Users(a.path(keyringFile))
	if err != nil {
		return nil, fmt.Errorf("%w (the keyring is damaged: an administrator with the recovery identity runs clinic unlock-recovery)", err)
	}
	return users, nil
}

// inKeyring reports whether user has an entry in the device's keyring.
func (a *app) inKeyring(user string) (bool, error) {
	users, err := a.keyringUsers()
	if err != nil {
		return false, err
	}
	return slices.Contains(users, user), nil
}

// encryptInPlace encrypts the device's clear database with key: the
// replica is closed for it (the data directory stays locked) and opened
// again with the key.
func (a *app) encryptInPlace(ctx context.Context, key []byte) error {
	if a.r != nil {
		if err := a.r.Close(); err != nil {
			return err
		}
		a.r = nil
	}
	if err := sqlite.Encrypt(ctx, a.path("replica.db"), key); err != nil {
		return fmt.Errorf("encrypt this device's data: %w (nothing was changed; the data stays as it was)", err)
	}
	a.key = key
	_, err := a.replica(ctx)
	return err
}

// tightenModes makes the data directory and everything in it readable by
// the app's user only (directories 0700, files 0600): a device set up
// before the app did so has files that others on the machine may read.
func tightenModes(dir string) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			return nil
		case d.IsDir():
			return os.Chmod(path, 0o700)
		case d.Type().IsRegular():
			return os.Chmod(path, 0o600)
		}
		return nil
	})
}

// countWrongTry counts a password the keyring refused as a wrong try of
// user on this device, as a wrong password against the roster is: the
// guard is given no hash, so it checks a decoy and counts a failure.
func countWrongTry(g *login.Guard, user, password string) error {
	err := g.Login(user, "", password)
	if err == nil || errors.Is(err, login.ErrWrongPassword) {
		failures, _ := g.Status(user)
		return &session.WrongPasswordError{User: user, Left: max(g.Policy().MaxFailures-failures, 0)}
	}
	return err
}

// lockedOut returns the guard's lockout of user, if the name is locked
// now: it is checked before the keyring is tried, so that a locked name
// is not guessed at through the keyring either.
func lockedOut(g *login.Guard, user string) error {
	failures, until := g.Status(user)
	if !until.IsZero() && time.Now().Before(until) {
		return &login.LockedOutError{User: user, Until: until, Failures: failures}
	}
	return nil
}

// logIn checks user's password on this device and returns them as an
// Author, with the data key the login gave (nil for a device whose data
// stays in clear: see below) and a note for the user, if any. The
// password is read once the device knows it can check it.
//
//   - A user with an entry in the keyring: the keyring is unlocked with
//     the password, the database opened with the key, and the roster's
//     checks made (its hash, disabled accounts). A password the keyring
//     refuses counts as a wrong try; so does one the roster refuses.
//     If the keyring refuses a password while a colleague's session
//     holds the key, the roster's hash decides: a password changed on
//     another device then replaces the keyring's.
//   - A user without an entry (they came by sync): their password is
//     checked against the roster with the key a colleague's session
//     holds, and an entry is made for them; with no such session they
//     are told to have a colleague log in first.
//   - A device without a keyring (its data in clear, made before the
//     app encrypted data): the roster checks the password, then the
//     keyring is made for the user, with the recovery recipient, and the
//     database encrypted in place. With no recipient known, the data
//     stays in clear and the user is told how to give one: encrypting
//     without a recovery entry would lose every unsynced change with the
//     passwords.
func (a *app) logIn(ctx context.Context, user, recovery string) (au record.Author, key []byte, note string, err error) {
	d, err := a.device()
	if err != nil {
		return au, nil, "", err
	}
	g, err := a.guard()
	if err != nil {
		return au, nil, "", err
	}
	policy := func() (session.Policy, error) {
		r, err := a.replica(ctx)
		if err != nil {
			return session.Policy{}, err
		}
		return session.Policy{Clinic: d.Clinic, Device: d.Device, Users: r, Guard: g}, nil
	}
	hasKeyring, err := a.hasKeyring()
	if err != nil {
		return au, nil, "", err
	}
	if !hasKeyring {
		if enc, err := a.encrypted(); err != nil {
			return au, nil, "", err
		} else if enc {
			return au, nil, "", fmt.Errorf("this device's data is encrypted but its keyring (%s) is missing: put back the keyring file from a backup or a copy of this folder, then log in (or an administrator runs clinic unlock-recovery)", a.path(keyringFile))
		}
		return a.firstLogin(ctx, d, policy, user, recovery)
	}
	known, err := a.inKeyring(user)
	if err != nil {
		return au, nil, "", err
	}
	if !known {
		held, err := a.heldKey()
		if err != nil {
			return au, nil, "", err
		}
		if held == nil {
			// Told at once, without a password: the keyring's user IDs
			// are in clear on the disk anyway.
			return au, nil, "", fmt.Errorf("%w (%w for %s: if %s is a colleague who has not logged in on this device before, a colleague who has must log in first, then %s logs in while that session lasts)", errWrongLogin, errNoKeyEntry, user, user, user)
		}
		p, err := policy()
		if err != nil {
			return au, nil, "", err
		}
		pw, err := a.readSecret("Password: ")
		if err != nil {
			return au, nil, "", err
		}
		if au, err = p.Login(ctx, user, pw); err != nil {
			return au, nil, "", loginError(user, err)
		}
		if err := keyringConfig.AddUser(a.path(keyringFile), held, user, pw); err != nil {
			return au, nil, "", fmt.Errorf("make %s's key entry on this device: %w", user, err)
		}
		return au, held, "This device now holds your key: from now on you log in here without a colleague.", nil
	}
	if err := lockedOut(g, user); err != nil {
		return au, nil, "", err
	}
	pw, err := a.readSecret("Password: ")
	if err != nil {
		return au, nil, "", err
	}
	key, err = keyring.Unlock(a.path(keyringFile), user, pw)
	if errors.Is(err, keyring.ErrWrongPassword) {
		held, herr := a.heldKey()
		if herr != nil || held == nil {
			return au, nil, "", loginError(user, countWrongTry(g, user, pw))
		}
		// Perhaps a password changed on another device: the roster,
		// opened with the session's key, has the last word.
		p, err := policy()
		if err != nil {
			return au, nil, "", err
		}
		if au, err = p.Login(ctx, user, pw); err != nil {
			return au, nil, "", loginError(user, err)
		}
		if err := keyringConfig.ResetPassword(a.path(keyringFile), held, user, pw); err != nil {
			return au, nil, "", fmt.Errorf("set %s's new password in this device's keyring: %w", user, err)
		}
		return au, held, "Your password on this device is now the one you set on another device.", nil
	}
	if err != nil {
		return au, nil, "", fmt.Errorf("unlock this device's data: %w", err)
	}
	a.key = key
	if clear, err := a.databaseInClear(); err != nil {
		return au, nil, "", err
	} else if clear {
		// A keyring made, then a crash before the database was
		// encrypted: encrypt it now.
		if err := a.encryptInPlace(ctx, key); err != nil {
			return au, nil, "", err
		}
	}
	p, err := policy()
	if err != nil {
		return au, nil, "", err
	}
	au, err = p.Login(ctx, user, pw)
	if errors.Is(err, session.ErrDisabled) {
		// Disabled on another device: this device's entry goes too.
		if rerr := keyring.RemoveUser(a.path(keyringFile), key, user); rerr != nil && !errors.Is(rerr, keyring.ErrLastUser) {
			fmt.Fprintf(a.log, "Warning: %s's key entry stays on this device: %v\n", user, rerr)
		}
	}
	if err != nil {
		return au, nil, "", loginError(user, err)
	}
	return au, key, "", nil
}

// firstLogin logs a user in on a device whose data is in clear, and
// encrypts it (see logIn).
func (a *app) firstLogin(ctx context.Context, d deviceConfig, policy func() (session.Policy, error), user, recovery string) (au record.Author, key []byte, note string, err error) {
	p, err := policy()
	if err != nil {
		return au, nil, "", err
	}
	users, err := p.Users.Users(ctx, d.Clinic)
	if err != nil {
		return au, nil, "", err
	}
	if len(users) == 0 {
		return au, nil, "", errNoUsers // before asking for a password
	}
	rcp, err := a.recoveryRecipient(recovery, d)
	if err != nil {
		return au, nil, "", err
	}
	pw, err := a.readSecret("Password: ")
	if err != nil {
		return au, nil, "", err
	}
	if au, err = p.Login(ctx, user, pw); err != nil {
		return au, nil, "", loginError(user, err)
	}
	if rcp == "" {
		return au, nil, "WARNING: this device's data is NOT encrypted: a stolen device gives away every chart. It is encrypted at a login once a recovery key is known: connect the device to the cloud (clinic connect, whose credential names the cloud's), or log in with -recovery age1… (an administrator's recovery key: clinic recovery-key makes one).", nil
	}
	key, err = keyringConfig.Create(a.path(keyringFile), rcp, user, pw)
	if err != nil {
		return au, nil, "", fmt.Errorf("make this device's keyring: %w", err)
	}
	if err := a.encryptInPlace(ctx, key); err != nil {
		return au, nil, "", err
	}
	if err := tightenModes(a.dir); err != nil {
		return au, nil, "", fmt.Errorf("make this device's files private: %w", err)
	}
	return au, key, fmt.Sprintf("This device's data is now encrypted (a first login since the app encrypts data). Your password unlocks it; colleagues get their own entry at their first login here, while a session is open; the recovery key %s opens it if every password is lost.", rcp), nil
}

// loginError says why a login was refused.
func loginError(user string, err error) error {
	var wp *session.WrongPasswordError
	switch {
	case errors.As(err, &wp):
		return fmt.Errorf("%w: %s %s out on this device", errWrongLogin, plural(wp.Left, "more wrong try locks", "more wrong tries lock"), user)
	case errors.Is(err, session.ErrNoUsers):
		return errNoUsers
	case errors.Is(err, session.ErrDisabled):
		return fmt.Errorf("%s's account is disabled: ask an administrator", user)
	}
	return err
}

func init() {
	// A repair reads the damaged database and writes the rebuilt one
	// with the key a live session holds.
	repairKey = func(a *app) ([]byte, error) {
		enc, err := a.encrypted()
		if err != nil || !enc {
			return nil, err
		}
		key, err := a.heldKey()
		if err != nil {
			return nil, err
		}
		if key == nil {
			return nil, errLocked
		}
		return key, nil
	}
}

// inside reports whether path is dir or lies under it.
func inside(dir, path string) bool {
	d, err1 := filepath.Abs(dir)
	p, err2 := filepath.Abs(path)
	if err1 != nil || err2 != nil {
		return false
	}
	rel, err := filepath.Rel(d, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}
