package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/chartsync/chartsync/internal/atomicfile"
	"github.com/chartsync/chartsync/internal/dirlock"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/chartsync/chartsync/device/keyring"
	"github.com/chartsync/chartsync/device/login"
	"github.com/chartsync/chartsync/device/session"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/store"
	"github.com/chartsync/chartsync/transport/httpsync"
)

// app is the state of one command run: the data directory and what is
// opened from it.
type app struct {
	dir string
	in  *bufio.Reader // passwords are read from it, one per line
	raw io.Reader     // the input as given, to tell a terminal
	out io.Writer
	log io.Writer // warnings (standard error)
	// terminal is set when out is a terminal: progress is drawn only then.
	terminal bool
	r        *replica.Replica
	// lock is the data directory's, held while the replica is open: two
	// copies of the app on one directory would write as one actor.
	lock *dirlock.Lock
	// key is the database's data key, once a login or a live session
	// gave it (see keys.go); nil for a database in clear.
	key []byte
}

// deviceConfig is the device's configuration, written by init.
type deviceConfig struct {
	Clinic  string    `json:"clinic"`
	Device  string    `json:"device"`
	Cloud   string    `json:"cloud,omitempty"`
	Created time.Time `json:"created"`
	// Recovery is the age recipient the keyring's recovery entry is
	// made for at the first login, on a device set up without an
	// administrator (init -recovery); empty: the cloud's, from the
	// credential.
	Recovery string `json:"recovery,omitempty"`
}

// deviceClock is the clock the device's edits are made with (tests set
// it).
var deviceClock = time.Now

// sessionFile is who is logged in on this device (a session.File).
const sessionFile = "session.json"

// defaultIdle is how long a user stays logged in without using the app.
const defaultIdle = session.DefaultIdle

// errIdle is the cause of a logout for want of use.
var errIdle = session.ErrIdle

var (
	errNotInitialised = errors.New("this device is not set up")
	errNotLoggedIn    = session.ErrNotLoggedIn
)

func (a *app) path(name string) string { return filepath.Join(a.dir, name) }

func (a *app) device() (deviceConfig, error) {
	var d deviceConfig
	err := readJSON(a.path("device.json"), &d)
	if errors.Is(err, os.ErrNotExist) {
		return d, errNotInitialised
	}
	return d, err
}

func (a *app) session() (session.File, error) {
	return session.ReadFile(a.path(sessionFile))
}

// policy is the device's login and session policy, on its replica.
func (a *app) policy(ctx context.Context) (session.Policy, error) {
	d, r, err := a.deviceReplica(ctx)
	if err != nil {
		return session.Policy{}, err
	}
	g, err := a.guard()
	if err != nil {
		return session.Policy{}, err
	}
	return session.Policy{Clinic: d.Clinic, Device: d.Device, Users: r, Guard: g}, nil
}

// replica opens the device's replica.
func (a *app) replica(ctx context.Context) (*replica.Replica, error) {
	if a.r != nil {
		return a.r, nil
	}
	d, err := a.device()
	if err != nil {
		return nil, err
	}
	// Changes made here are signed with the device's key; changes from
	// elsewhere must be signed by their devices (once the cloud's roster
	// is known) and within their authors' roles.
	cfg := replica.Config{Clinic: d.Clinic, CheckAuthors: true, Now: func() time.Time { return deviceClock() }}
	id, err := a.identity()
	switch {
	case err == nil:
		cfg.Signer = id
	case !errors.Is(err, errNoIdentity):
		return nil, err
	}
	c, err := httpsync.ReadCredentialFile(a.path(credentialFile))
	switch {
	case err == nil && len(c.Authority) > 0:
		if cfg.Keys, err = c.NewRoster(); err != nil {
			return nil, fmt.Errorf("the cloud credential's roster: %w (run clinic connect again with a fresh credential)", err)
		}
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return nil, err
	}
	// The data key: the database is encrypted once the device has a
	// keyring; a live session holds the key between commands.
	enc, err := a.encrypted()
	if err != nil {
		return nil, err
	}
	if enc {
		key, err := a.heldKey()
		if err != nil {
			return nil, err
		}
		if key == nil {
			return nil, errLocked
		}
		cfg.DatabaseKey = key
	}
	lock := a.lock
	if lock == nil {
		lock, err = dirlock.Acquire(a.dir)
		if errors.Is(err, dirlock.ErrLocked) {
			return nil, fmt.Errorf("%w (another clinic command on this device's data, such as a sync, is still running)", err)
		}
		if err != nil {
			return nil, err
		}
	}
	r, err := replica.Open(ctx, a.path("replica.db"), cfg)
	if errors.Is(err, replica.ErrWrongKey) && cfg.DatabaseKey != nil && a.key != nil {
		// A session's key that does not open the database (a keyring
		// made anew): the session ends, and the user logs in again.
		a.dropKey()
		err = fmt.Errorf("%w: the key this session held does not open the data: %w", err, errNotLoggedIn)
	}
	if err != nil {
		if a.lock == nil {
			_ = lock.Release()
		}
		return nil, err
	}
	a.r, a.lock = r, lock
	return r, nil
}

func (a *app) close() {
	if a.r != nil {
		a.r.Close()
	}
	_ = a.lock.Release()
	clear(a.key)
}

// author is the logged-in user on this device, as the clinic's roster
// now has them: a user disabled since logging in is logged out, and a
// changed role applies at once.
func (a *app) author(ctx context.Context) (record.Author, error) {
	d, err := a.device()
	if err != nil {
		return record.Author{}, err
	}
	// A session unused for too long (or from a clock set back) ends: a
	// tablet left on the counter is not left logged in.
	s, err := a.useSession()
	if err != nil {
		return record.Author{}, err
	}
	r, err := a.replica(ctx)
	if err != nil {
		return record.Author{}, err
	}
	p := session.Policy{Clinic: d.Clinic, Device: d.Device, Users: r}
	au, err := p.Author(ctx, s.Author.UserID)
	switch {
	case errors.Is(err, session.ErrRemoved):
		return record.Author{}, fmt.Errorf("%s is no longer on the clinic's roster: %w", s.Author.UserID, errNotLoggedIn)
	case errors.Is(err, session.ErrDisabled):
		return record.Author{}, fmt.Errorf("%s's account was disabled by an administrator: %w", s.Author.UserID, errNotLoggedIn)
	}
	return au, err
}

// chart finds a chart by its ID or a unique prefix of it.
func (a *app) chart(ctx context.Context, ref string) (string, error) {
	r, err := a.replica(ctx)
	if err != nil {
		return "", err
	}
	if ref == "" {
		return "", usagef("name a chart (its ID or the first characters of it; see \"clinic find\")")
	}
	charts, err := r.Find(ctx, "", 0)
	if err != nil {
		return "", err
	}
	var found []string
	for _, c := range charts {
		if strings.HasPrefix(c.ID, strings.ToLower(ref)) {
			found = append(found, c.ID)
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("no chart starts with %q: find the patient with \"clinic find NAME\"", ref)
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("%s start with %q: give more characters of the ID", plural(len(found), "chart", "charts"), ref)
}

// view reads the chart named by the single argument of a command, as the
// logged-in user's role may read it.
func (a *app) view(ctx context.Context, args []string) (record.View, error) {
	ref, err := oneArg(args, "a chart ID (or its first characters)")
	if err != nil {
		return record.View{}, err
	}
	by, err := a.author(ctx)
	if err != nil {
		return record.View{}, err
	}
	id, err := a.chart(ctx, ref)
	if err != nil {
		return record.View{}, err
	}
	v, err := a.r.Chart(ctx, id)
	if err != nil {
		return record.View{}, err
	}
	// Show what the clinic lets the user's role read.
	d, err := a.device()
	if err != nil {
		return record.View{}, err
	}
	p, err := a.r.ReadPolicy(ctx, d.Clinic)
	if err != nil {
		return record.View{}, err
	}
	return p.Redact(v, by.Role), nil
}

// entry finds an entry of a chart by its ID or a unique prefix.
func entry(v record.View, ref string) (string, error) {
	ids := v.EntryIDs(false)
	ids = append(ids, v.ChartID)
	var found []string
	for _, id := range ids {
		if ref != "" && strings.HasPrefix(id, strings.ToLower(ref)) {
			found = append(found, id)
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("the chart has no entry starting with %q: \"clinic show CHART\" lists them", ref)
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("%s start with %q: give more characters", plural(len(found), "entry", "entries"), ref)
}

// explain turns an error into what a person should do next.
func explain(err error) string {
	var ve *record.ValidationError
	var fe *record.ForbiddenError
	var ue *unsureError
	switch {
	case errors.As(err, &ue):
		return ue.explain()
	case errors.Is(err, replica.ErrForkedReplica):
		return explainForked(err)
	case errors.Is(err, store.ErrOutcomeUnknown):
		return "the device reported a storage error and cannot tell whether the change was saved. Check (\"clinic show CHART\", \"clinic user list\") before doing it again, and have the device's storage checked. (Details: " + err.Error() + ")"
	case errors.Is(err, replica.ErrDamaged):
		return "this device's database is damaged (" + err.Error() + "). Nothing more is written to it. Run clinic repair: it rebuilds the device from what the database still holds, keeping the changes not yet synced, and from the cloud (the damaged file is kept aside; the administrator enrols the rebuilt device, then run clinic repair again). Or, with a backup, restore it as a new device: clinic restore -in BACKUP-FILE -dir NEW-DIR. Either way keep this folder until the device has synced."
	case errors.Is(err, store.ErrDiskFull):
		return "the device's disk is full: nothing was saved. Free space on the device (old exports, backups, other files), then run the same command again. (Details: " + err.Error() + ")"
	case errors.Is(err, errNotInitialised):
		return "this device is not set up yet. Run: clinic init -clinic CLINIC-ID -device DEVICE-NAME"
	case errors.Is(err, errNotConnected):
		return "this device has no cloud credential yet. Give the administrator this device's enrolment request (enrol-request.pem in the data directory; \"clinic request -out FILE\" writes a copy) for \"cloud enrol -request\", then run: clinic connect -credential FILE"
	case errors.Is(err, errNoIdentity):
		return "this device has no keys yet. Run: clinic request (it makes them and writes the enrolment request for the administrator)"
	case errors.Is(err, httpsync.ErrKeyMismatch):
		return err.Error()
	case errors.Is(err, httpsync.ErrUnreachable):
		return err.Error() + ". No signal? Keep working: everything is saved on this device; run \"clinic sync\" when there is a connection."
	case errors.Is(err, httpsync.ErrUnauthorized):
		return err.Error() + ". The credential was refused (expired or not from this cloud): ask the administrator for a new one."
	case errors.Is(err, httpsync.ErrForbidden):
		return err.Error() + ". The cloud refused a change outside this clinic's charts."
	case errors.Is(err, keyring.ErrDamaged):
		return "this device's keyring, which holds the key of its encrypted data, is damaged (" + err.Error() + "). Nothing is lost: put back the keyring file from a backup or a copy of this folder, or have an administrator with the recovery key run clinic unlock-recovery."
	case errors.Is(err, keyring.ErrWeakPassword), errors.Is(err, keyring.ErrPasswordTooLong), errors.Is(err, errNoKeyEntry):
		return err.Error()
	case errors.Is(err, replica.ErrWrongKey):
		return "the key does not open this device's data (" + err.Error() + "). Log in again (clinic login -user USER-ID); if that fails, an administrator with the recovery key runs clinic unlock-recovery."
	case errors.Is(err, session.ErrCorruptFile):
		return "the record of who is logged in on this device is damaged (" + err.Error() + "). Log in again: clinic login -user USER-ID"
	case errors.Is(err, errNotLoggedIn):
		return err.Error() + ". Run: clinic login -user USER-ID (it asks for your password)"
	case errors.Is(err, login.ErrLockedOut), errors.Is(err, errWrongLogin), errors.Is(err, errNoUsers), errors.Is(err, login.ErrWeakPassword),
		errors.Is(err, login.ErrPasswordTooLong), errors.Is(err, errMismatch):
		return err.Error()
	case errors.As(err, &fe) && fe.Section == record.SectionUsers:
		return "only an administrator may change the clinic's users (anyone may change their own password with \"clinic passwd\"). Ask an administrator."
	case errors.As(err, &fe):
		var may []string
		for _, r := range record.Roles() {
			if record.Permitted(r, fe.Section) {
				may = append(may, string(r))
			}
		}
		return fmt.Sprintf("you are logged in as %s %s, who may not change a patient's %s. Ask someone who may (%s) to do it, logged in as themselves.",
			article(string(fe.Role)), fe.Role, fe.Section, strings.Join(may, ", "))
	case errors.As(err, &ve):
		return explainInvalid(ve.Field, ve.Reason) + " Correct it and run the command again."
	case errors.Is(err, record.ErrTransition):
		return err.Error() + ". \"clinic show CHART\" shows each entry's status."
	case errors.Is(err, replica.ErrOutOfScope):
		return err.Error()
	case errors.Is(err, record.ErrNotFound), errors.Is(err, replica.ErrNotFound):
		return err.Error() + ". \"clinic find\" lists charts and \"clinic show CHART\" lists entries."
	}
	return err.Error()
}

// explainForked says what to do about err, matching
// replica.ErrForkedReplica: this device's data folder is an old copy of
// itself (copied back, or restored from a copy by hand), or the cloud
// refused changes of another device that is.
func explainForked(err error) string {
	var fe *replica.ForkedError
	if !errors.As(err, &fe) || !fe.Self {
		return "the cloud refused this device's changes because some of them were made by another device whose data folder is an old copy of itself, writing as that device again. Nothing on this device was lost. Tell the cloud's administrator, and have that device run \"clinic recover\". (Details: " + err.Error() + ")"
	}
	return "this device's data folder is an old copy: it was copied back, or restored from a copy, after this device had gone on working and syncing without it, " +
		"so what it wrote now would clash with what this device wrote since. Nothing is lost: every chart and change in this folder is kept, and the cloud holds the changes made after the copy. " +
		"Editing and syncing from this folder have stopped. To go on, make a new device of it: clinic recover -to NEW-DIR (a new, empty folder); " +
		"give NEW-DIR/" + requestFile + " to the cloud's administrator (cloud enrol -request), then run clinic -dir NEW-DIR connect -credential FILE and clinic -dir NEW-DIR sync: the cloud sends it everything it lacks. " +
		"Keep this folder until the new device has synced. (Details: " + err.Error() + ")"
}

// article is "a" or "an", as the word w takes.
func article(w string) string {
	if w != "" && strings.ContainsRune("aeiouAEIOU", rune(w[0])) {
		return "an"
	}
	return "a"
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s is damaged (%v): restore it from a backup or run \"clinic init\" again", path, err)
	}
	return nil
}

// writeJSON writes v to path atomically.
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return atomicfile.Write(path, append(b, '\n'), atomicfile.Options{})
}
