package login

import (
	"bytes"
	"cmp"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/chartsync/chartsync/internal/atomicfile"
)

// Policy says when a user name is locked and for how long. The zero value
// is the default policy: 5 failed logins in a row lock a name for 1
// minute, each further lockout lasts twice the one before, up to 1 hour,
// and a name with no failure for 24 hours is forgotten.
type Policy struct {
	// MaxFailures is the number of failed logins in a row that locks a
	// name (default 5, at most 100). A successful login resets the count.
	MaxFailures int
	// Lockout is the length of the first lockout (default 1 minute, at
	// least 1 second).
	Lockout time.Duration
	// MaxLockout caps the doubling lockouts (default 1 hour, at most 24
	// hours, at least Lockout).
	MaxLockout time.Duration
	// ForgetAfter is how long after its last failure an unlocked name is
	// forgotten, so that its next lockout is a first one again (default 24
	// hours, at least MaxLockout).
	ForgetAfter time.Duration
	// MaxUsers is the most names the state file holds (default and
	// maximum MaxUsersLimit). When a new name must be recorded, the
	// unlocked name whose last failure is oldest is dropped.
	MaxUsers int
	// DecoyParams are the argon2 parameters of the decoy hash checked for
	// names that are not on the roster, so that they take as long as the
	// roster's hashes (default DefaultParams). Set them to the parameters
	// the roster's hashes use.
	DecoyParams Params
}

func (p Policy) withDefaults() Policy {
	if p.MaxFailures == 0 {
		p.MaxFailures = 5
	}
	if p.Lockout == 0 {
		p.Lockout = time.Minute
	}
	if p.MaxLockout == 0 {
		p.MaxLockout = time.Hour
	}
	if p.ForgetAfter == 0 {
		p.ForgetAfter = 24 * time.Hour
	}
	if p.MaxUsers == 0 {
		p.MaxUsers = MaxUsersLimit
	}
	if p.DecoyParams == (Params{}) {
		p.DecoyParams = DefaultParams
	}
	return p
}

// Validate reports a policy outside the documented bounds; zero fields
// stand for their defaults.
func (p Policy) Validate() error {
	p = p.withDefaults()
	switch {
	case p.MaxFailures < 1 || p.MaxFailures > maxFailuresLimit:
		return fmt.Errorf("%w: MaxFailures %d not in 1..%d", ErrInvalidPolicy, p.MaxFailures, maxFailuresLimit)
	case p.Lockout < time.Second:
		return fmt.Errorf("%w: Lockout %v shorter than 1s", ErrInvalidPolicy, p.Lockout)
	case p.MaxLockout < p.Lockout || p.MaxLockout > maxLockoutLimit:
		return fmt.Errorf("%w: MaxLockout %v not in Lockout (%v)..%v", ErrInvalidPolicy, p.MaxLockout, p.Lockout, maxLockoutLimit)
	case p.ForgetAfter < p.MaxLockout:
		return fmt.Errorf("%w: ForgetAfter %v shorter than MaxLockout %v", ErrInvalidPolicy, p.ForgetAfter, p.MaxLockout)
	case p.MaxUsers < 1 || p.MaxUsers > MaxUsersLimit:
		return fmt.Errorf("%w: MaxUsers %d not in 1..%d", ErrInvalidPolicy, p.MaxUsers, MaxUsersLimit)
	}
	if err := p.DecoyParams.Validate(); err != nil {
		return fmt.Errorf("%w: DecoyParams: %w", ErrInvalidPolicy, err)
	}
	return nil
}

// lockDuration is the length of a name's level-th lockout (level ≥ 1):
// Lockout doubled level-1 times, at most MaxLockout.
func (p Policy) lockDuration(level int) time.Duration {
	d := p.Lockout
	for i := 1; i < level && d < p.MaxLockout; i++ {
		d *= 2
	}
	return min(d, p.MaxLockout)
}

// Guard checks logins against a roster's hashes with a per-name failure
// count and lockout, kept in one state file on the device so that
// restarting the app does not reset it. It is safe for concurrent use;
// logins are checked one at a time, also across processes: every Login,
// Status and Unlock holds an exclusive lock on a file beside the state
// (path + ".lock") and reads the state again under it, so that guesses
// made by several copies of an app at once all count.
type Guard struct {
	path   string
	policy Policy
	now    func() time.Time
	decoy  string // hash of a random password, checked for unknown names

	// Replaced by tests (export_test.go).
	verify    func(encoded, password string) error
	write     func(path string, data []byte, o atomicfile.Options) error
	writeOpts atomicfile.Options

	mu    sync.Mutex
	users map[string]*entry
	dirty bool             // users differ from the file
	base  map[string]entry // users as last read from or saved to the file
}

// OpenGuard opens the state file at path, or creates it (empty) if it does
// not exist, so that a directory that cannot be written is reported now
// rather than at the first failed login. now is the clock (nil means
// time.Now). It computes one hash with p.DecoyParams.
//
// A state file that cannot be read back gives ErrCorruptState: the Guard
// does not start with every lockout forgotten. The app then shows the
// error, and an administrator, having proved who they are (with Verify
// against their roster hash, as no Guard is running), calls ResetGuard and
// opens the Guard again.
func OpenGuard(path string, p Policy, now func() time.Time) (*Guard, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	p = p.withDefaults()
	if now == nil {
		now = time.Now
	}
	g := &Guard{
		path:      path,
		policy:    p,
		now:       now,
		verify:    Verify,
		write:     atomicfile.Write,
		writeOpts: atomicfile.Options{Perm: 0o600, TempPattern: tempPrefix(path) + "*"},
	}
	var err error
	if g.decoy, err = Hash(rand.Text(), p.DecoyParams); err != nil {
		return nil, err
	}
	removeLeftovers(path)
	data, err := readState(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		g.users = map[string]*entry{}
		if err := g.save(g.clock()); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, err
	default:
		if g.users, err = decodeState(data); err != nil {
			return nil, err
		}
		g.base = cloneUsers(g.users)
	}
	return g, nil
}

// ResetGuard removes the state file at path (and any temporary file a
// crash left beside it), forgetting every failure count and lockout. It is
// for an administrator, after OpenGuard reported ErrCorruptState; no Guard
// may be using the file. A missing file is not an error.
func ResetGuard(path string) error {
	removeLeftovers(path)
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("login: reset state file: %w", err)
	}
	return atomicfile.SyncDir(filepath.Dir(path))
}

func tempPrefix(path string) string { return "." + filepath.Base(path) + ".tmp-" }

// removeLeftovers removes temporary files of interrupted writes, best
// effort: they hold nothing the state file lacks.
func removeLeftovers(path string) {
	dir, prefix := filepath.Dir(path), tempPrefix(path)
	names, _ := os.ReadDir(dir)
	for _, n := range names {
		if strings.HasPrefix(n.Name(), prefix) && n.Type().IsRegular() {
			os.Remove(filepath.Join(dir, n.Name()))
		}
	}
}

func readState(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("login: open state file: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > MaxStateSize {
		return nil, fmt.Errorf("%w (file of %d bytes is over %d)", ErrCorruptState, fi.Size(), MaxStateSize)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxStateSize+1))
	if err != nil {
		return nil, fmt.Errorf("login: read state file: %w", err)
	}
	return data, nil
}

// Policy returns the policy in force, defaults filled in.
func (g *Guard) Policy() Policy { return g.policy }

// Login checks password for user against encodedHash, the user's hash from
// the roster, counting failures:
//
//   - A locked name gets a *LockedOutError (ErrLockedOut) at once: the
//     password is not checked, so a locked name cannot be guessed at, and
//     the attempt is not counted.
//   - A right password returns nil and forgets the name's failures and
//     lockouts.
//   - A wrong password returns an error matching ErrWrongPassword that says
//     how many tries are left; the failure that reaches
//     Policy.MaxFailures locks the name, and the error then also matches
//     ErrLockedOut.
//   - A name not on the roster is passed with encodedHash "": a decoy hash
//     is checked so the attempt takes as long, and it is counted and
//     answered exactly like a wrong password (and locked alike).
//   - A malformed encodedHash gives a *MalformedHashError and is not
//     counted: no password could match it.
//
// Counts are written to the state file before Login returns, so killing
// the app mid-attempt does not lose one. If the file cannot be written,
// Login returns ErrStateNotSaved and refuses the login, right password or
// not. A user name that is empty, too long or not printable text gives
// ErrBadUserName; nothing is recorded.
//
// user is the key of the count: pass the roster's own spelling of a known
// name (after any case folding the roster does), or every spelling gets
// its own MaxFailures tries.
func (g *Guard) Login(user, encodedHash, password string) error {
	done, err := g.begin(user)
	if err != nil {
		return err
	}
	defer done()
	now := g.clock()
	e := g.settle(user, now)
	if e != nil && e.lockedAt(now) {
		g.saveIfDirty(now)
		return &LockedOutError{User: user, Until: e.until, Failures: e.failures}
	}
	if e == nil && len(g.users) >= g.policy.MaxUsers {
		g.settleAll(now)
		if len(g.users) >= g.policy.MaxUsers && !g.anyUnlocked(now) {
			g.saveIfDirty(now)
			return ErrTooManyLockouts
		}
	}

	hash := encodedHash
	if hash == "" {
		hash = g.decoy
	}
	err = g.verify(hash, password)
	if encodedHash == "" && err == nil {
		err = ErrWrongPassword // the decoy's random password, guessed
	}
	switch {
	case err == nil:
		if e != nil {
			delete(g.users, user)
			g.dirty = true
		}
		if g.dirty {
			if err := g.save(now); err != nil {
				return err
			}
		}
		return nil
	case errors.Is(err, ErrWrongPassword):
		failed := g.recordFailure(user, e, now)
		if err := g.save(now); err != nil {
			return err
		}
		return failed
	default:
		g.saveIfDirty(now)
		return err
	}
}

// Status reports user's failed logins in a row and, if the name is locked,
// when the lockout ends (zero otherwise). A name with no record, or not a
// valid name, reports 0 and the zero time. Like Login, it saves what the
// passing of time changed (a lockout re-dated after the clock was set
// back), so that a restart does not re-date it again.
func (g *Guard) Status(user string) (failures int, lockedUntil time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.clock()
	unlock, err := g.lockFile()
	if err != nil {
		// Report what this process knows; save nothing without the lock.
		e := g.users[user]
		if e == nil {
			return 0, time.Time{}
		}
		if e.lockedAt(now) {
			return e.failures, e.until
		}
		return e.failures, time.Time{}
	}
	defer unlock()
	e := g.settle(user, now)
	g.saveIfDirty(now)
	if e == nil {
		return 0, time.Time{}
	}
	if e.lockedAt(now) {
		return e.failures, e.until
	}
	return e.failures, time.Time{}
}

// Unlock forgets user's failures and lockouts, for an administrator who
// has checked who is at the keyboard. It returns ErrStateNotSaved if the
// state file cannot be written (the name is unlocked in memory all the
// same), and ErrBadUserName for a name that could never be recorded.
func (g *Guard) Unlock(user string) error {
	done, err := g.begin(user)
	if err != nil {
		return err
	}
	defer done()
	if _, ok := g.users[user]; ok {
		delete(g.users, user)
		g.dirty = true
	}
	if !g.dirty {
		return nil
	}
	return g.save(g.clock())
}

// begin checks a name and takes the Guard and the state file's lock, for
// one operation on the state; done releases both.
func (g *Guard) begin(user string) (done func(), err error) {
	if err := checkUserName(user); err != nil {
		return nil, err
	}
	g.mu.Lock()
	unlock, err := g.lockFile()
	if err != nil {
		g.mu.Unlock()
		return nil, err
	}
	return func() { unlock(); g.mu.Unlock() }, nil
}

// lockFile takes the lock every process using the state file shares, and
// reads the state again under it. Failures this process recorded but
// could not save (g.dirty) are added to the file's, so that neither
// view's failures are lost. A state file removed while the Guard runs is
// written again from what this process knows. g.mu is held.
func (g *Guard) lockFile() (unlock func(), err error) {
	f, err := os.OpenFile(g.path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock the login state: %w: %w", ErrStateNotSaved, err)
	}
	if err := flock(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock the login state: %w: %w", ErrStateNotSaved, err)
	}
	unlock = func() {
		_ = funlock(f)
		_ = f.Close()
	}
	data, err := readState(g.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		g.dirty = g.dirty || len(g.users) > 0
	case err != nil:
		unlock()
		return nil, err
	default:
		users, err := decodeState(data)
		if err != nil {
			unlock()
			return nil, err
		}
		fresh := cloneUsers(users)
		if g.dirty {
			mergeUnsaved(users, g.users, g.base, g.policy.MaxFailures)
		}
		g.users, g.base = users, fresh
	}
	return unlock, nil
}

// mergeUnsaved adds to dst (the file's state) the failures mem (this
// process's state) recorded since base (the file as this process last
// knew it) and could not save, keeping per name the highest lockout
// level and the latest times.
//
// A name this process removed since base (a success, an Unlock) is
// removed; a name another process removed since base (an administrator's
// Unlock) stays removed, unless this process failed on it afterwards, and
// then only those failures count.
func mergeUnsaved(dst, mem map[string]*entry, base map[string]entry, maxFailures int) {
	for name := range base {
		if _, ok := mem[name]; !ok {
			delete(dst, name)
		}
	}
	for name, e := range mem {
		b, inBase := base[name]
		added := e.failures - b.failures
		if added <= 0 && e.level <= b.level {
			continue
		}
		d := dst[name]
		if d == nil && inBase {
			// Unlocked elsewhere: the failures that failed here since
			// count, but no lockout (the unlock may have been meant for
			// it; more failures lock the name again).
			if added > 0 {
				dst[name] = &entry{failures: min(added, max(0, maxFailures-1)), last: e.last}
			}
			continue
		}
		if d == nil {
			d = &entry{}
			dst[name] = d
		}
		d.failures += max(added, 0)
		d.level = max(d.level, e.level)
		if e.last.After(d.last) {
			d.last = e.last
		}
		if e.until.After(d.until) {
			d.until = e.until
		}
	}
}

// clock reads the clock in UTC, without a monotonic reading, as it will be
// read back from the file.
func (g *Guard) clock() time.Time { return g.now().UTC() }

func (e *entry) lockedAt(now time.Time) bool {
	return !e.until.IsZero() && now.Before(e.until)
}

// settle brings user's entry up to now and returns it, or nil when the
// name has no record (or no longer has one).
func (g *Guard) settle(user string, now time.Time) *entry {
	e := g.users[user]
	if e != nil && g.settleEntry(e, now) {
		delete(g.users, user)
		e = nil
	}
	return e
}

func (g *Guard) settleAll(now time.Time) {
	for user, e := range g.users {
		if g.settleEntry(e, now) {
			delete(g.users, user)
		}
	}
}

// settleEntry applies the passing of time to e and reports whether the
// name is to be forgotten:
//
//   - a lockout longer than MaxLockout (recorded under an earlier policy)
//     is shortened to it;
//   - a clock reading before e.last (the device clock was set back) means
//     the time passed is unknown, so none is assumed: a lockout restarts
//     for its full length from now, and e.last moves to now so that this
//     happens once;
//   - a lockout whose end has come is lifted, and the count starts again
//     (the next lockout will still be longer);
//   - an unlocked name with no failure for ForgetAfter is forgotten.
func (g *Guard) settleEntry(e *entry, now time.Time) (forget bool) {
	if !e.until.IsZero() && e.until.Sub(e.last) > g.policy.MaxLockout {
		e.until = e.last.Add(g.policy.MaxLockout)
		g.dirty = true
	}
	if now.Before(e.last) {
		if !e.until.IsZero() {
			e.until = now.Add(e.until.Sub(e.last))
		}
		e.last = now
		g.dirty = true
	}
	if !e.until.IsZero() && !now.Before(e.until) {
		e.until = time.Time{}
		e.failures = 0
		g.dirty = true
	}
	if e.until.IsZero() && now.Sub(e.last) >= g.policy.ForgetAfter {
		g.dirty = true
		return true
	}
	return false
}

func (g *Guard) anyUnlocked(now time.Time) bool {
	for _, e := range g.users {
		if !e.lockedAt(now) {
			return true
		}
	}
	return false
}

// evictUnlocked drops unlocked names, oldest last failure first, until at
// most keep remain or only locked names do.
func (g *Guard) evictUnlocked(now time.Time, keep int) {
	for len(g.users) > keep {
		var oldest string
		var oe *entry
		for user, e := range g.users {
			if e.lockedAt(now) {
				continue
			}
			if oe == nil || cmp.Or(e.last.Compare(oe.last), strings.Compare(user, oldest)) < 0 {
				oldest, oe = user, e
			}
		}
		if oe == nil {
			return
		}
		delete(g.users, oldest)
		g.dirty = true
	}
}

// recordFailure counts a failed login for user (whose settled entry is e,
// or nil) and returns the error Login gives for it.
func (g *Guard) recordFailure(user string, e *entry, now time.Time) error {
	if e == nil {
		g.evictUnlocked(now, g.policy.MaxUsers-1)
		e = &entry{}
		g.users[user] = e
	}
	e.failures = min(e.failures+1, maxFailuresLimit)
	e.last = now
	g.dirty = true
	if e.failures >= g.policy.MaxFailures {
		e.level = min(e.level+1, maxLevel)
		e.until = now.Add(g.policy.lockDuration(e.level))
		return &failedLogin{locked: &LockedOutError{User: user, Until: e.until, Failures: e.failures}}
	}
	return &failedLogin{remaining: g.policy.MaxFailures - e.failures, next: g.policy.lockDuration(e.level + 1)}
}

// save settles every entry, trims the names to MaxUsers and writes the
// state file atomically and durably.
func (g *Guard) save(now time.Time) error {
	g.settleAll(now)
	g.evictUnlocked(now, g.policy.MaxUsers)
	data, err := encodeState(g.users)
	if err == nil {
		err = g.write(g.path, data, g.writeOpts)
	}
	if err != nil {
		// A write can fail after its file is in place (syncing the
		// directory). The flock is held, so what is there now is this
		// process's doing: if it is what was meant, count it as written,
		// so that its failures are not added again on the next read.
		if cur, rerr := readState(g.path); rerr == nil && bytes.Equal(cur, data) {
			g.dirty = false
			g.base = cloneUsers(g.users)
		}
		return fmt.Errorf("%w (%w)", ErrStateNotSaved, err)
	}
	g.dirty = false
	g.base = cloneUsers(g.users)
	return nil
}

func cloneUsers(users map[string]*entry) map[string]entry {
	out := make(map[string]entry, len(users))
	for k, e := range users {
		out[k] = *e
	}
	return out
}

// saveIfDirty saves changes that only the passing of time made (a clock
// set back, lockouts lifted) on paths that refuse the login anyway. A
// failure leaves g.dirty set, so the next save writes them.
func (g *Guard) saveIfDirty(now time.Time) {
	if g.dirty {
		_ = g.save(now)
	}
}
