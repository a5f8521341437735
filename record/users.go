package record

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/google/uuid"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/device/login"
)

// This file is a clinic's user roster: who may log in on the clinic's
// devices, in which role, with which password hash. It is a document of
// its own, replicated like a chart (same change log, same signatures,
// same sync), and only administrators change it, except that a user may
// change their own password.
//
// Layout: the root map holds "kind" = "users", "clinic" = the clinic, and
// one string register per user field, "user/<id>/<field>" (name, role,
// password, disabled). Every change writes whole fields; concurrent
// writes of one field settle on Automerge's deterministic winner. Fields
// are never deleted: a user who leaves is disabled. A password hash is
// argon2id in PHC form whose cost parameters are within device/login's
// bounds (64 MiB, 4 lanes, 10 passes): every device checks it at each
// login, so a hash a small tablet cannot afford is an invalid change.

// SectionUsers is the clinic's user roster. It is not a chart section:
// only an administrator may change it (and a user their own password).
const SectionUsers Section = "users"

// ErrNotAUserRoster is returned by OpenUsers for a document that is not a
// user roster.
var ErrNotAUserRoster = errors.New("record: document is not a user roster")

const (
	kindUsers       = "users"
	opPutUser       = "put-user"
	opSetPassword   = "set-password"
	opSetHidden     = "set-read-policy"
	userKeyPrefix   = "user/"
	hideKeyPrefix   = "hide/"
	maxPasswordHash = 256
)

var (
	reUserID = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
	// rePasswordHash is the shape of an argon2id hash in PHC form, its
	// parameters (memory, passes, lanes) in canonical decimal; checkHash
	// bounds them as package device/login does.
	rePasswordHash = regexp.MustCompile(`^\$argon2id\$v=19\$m=(0|[1-9][0-9]{0,9}),t=(0|[1-9][0-9]{0,9}),p=(0|[1-9][0-9]{0,2})\$[A-Za-z0-9+/]{1,128}\$[A-Za-z0-9+/]{1,128}$`)
	userFields     = []string{"name", "role", "password", "disabled"}
	// usersNamespace names the roster documents: UsersID is a name-based
	// UUID, so every replica of a clinic finds the same roster.
	usersNamespace = uuid.MustParse("6f1c6a52-3c1e-4d0e-9a63-6a1d0c0f5e21")
)

// UsersID returns the ID of clinic's user roster document. Every replica
// computes the same ID, so rosters started on two devices while offline
// merge into one.
func UsersID(clinic string) string {
	return uuid.NewSHA1(usersNamespace, []byte("users/"+clinic)).String()
}

// isRosterID reports whether id is a name-based (version 5) UUID, the
// kind UsersID makes: never a chart's, so no chart can take the place of a
// clinic's roster.
func isRosterID(id string) bool { return len(id) == 36 && id[14] == '5' }

// User is one person who may log in on a clinic's devices.
type User struct {
	ID           string `json:"id"`
	Name         string `json:"name"`
	Role         Role   `json:"role"`
	PasswordHash string `json:"-"` // argon2id, PHC form; never shown
	Disabled     bool   `json:"disabled"`
}

// UserUpdate adds or changes a user. Empty fields are left as they are; a
// new user needs Name, Role and PasswordHash.
type UserUpdate struct {
	UserID       string
	Name         string
	Role         Role
	PasswordHash string
	// Disable stops the user logging in; Enable lets them again.
	Disable, Enable bool
}

// fields returns the register writes of the update.
func (up UserUpdate) fields() map[string]string {
	out := map[string]string{}
	if up.Name != "" {
		out["name"] = up.Name
	}
	if up.Role != "" {
		out["role"] = string(up.Role)
	}
	if up.PasswordHash != "" {
		out["password"] = up.PasswordHash
	}
	if up.Disable {
		out["disabled"] = "true"
	}
	if up.Enable {
		out["disabled"] = "false"
	}
	return out
}

// passwordOnly reports whether the update changes nothing but a password.
func (up UserUpdate) passwordOnly() bool {
	f := up.fields()
	_, ok := f["password"]
	return ok && len(f) == 1
}

// checkUserField validates one field value.
func checkUserField(field, v string) error {
	switch field {
	case "name":
		if err := text(128)(v); err != nil || v == "" || strings.ContainsFunc(v, unicode.IsControl) {
			return invalid("name", "a user's name must be 1 to 128 printable characters")
		}
	case "role":
		if !Role(v).Valid() {
			return invalid("role", "%q is not a role", v)
		}
	case "password":
		return checkHash(v)
	case "disabled":
		if v != "true" && v != "false" {
			return invalid("disabled", "must be true or false")
		}
	default:
		return invalid("field", "%q is not a user field", field)
	}
	return nil
}

// checkHash checks a password hash: argon2id in PHC form whose parameters
// are within login.Params.Validate's bounds, what every device of the
// clinic can afford to compute at each login (a hash asking for 1 GiB
// would exhaust a tablet's memory whenever its user logs in).
func checkHash(v string) error {
	m := rePasswordHash.FindStringSubmatch(v)
	if len(v) > maxPasswordHash || m == nil {
		return invalid("password", "is not an argon2id password hash")
	}
	var n [3]uint64
	for i := range n {
		n[i], _ = strconv.ParseUint(m[i+1], 10, 64) // at most 10 digits
	}
	if n[0] > math.MaxUint32 || n[1] > math.MaxUint32 || n[2] > math.MaxUint8 {
		return invalid("password", "hash parameters m=%d, t=%d, p=%d are out of bounds", n[0], n[1], n[2])
	}
	p := login.Params{Memory: uint32(n[0]), Time: uint32(n[1]), Threads: uint8(n[2])}
	if err := p.Validate(); err != nil {
		return invalid("password", "hash parameters are more than a clinic device can check at each login: %v", err)
	}
	return nil
}

// Users is a clinic's user roster over a crdt.Doc. It is safe for
// concurrent use; changes applied to the Doc directly (by a sync engine)
// are seen by the next call.
type Users struct {
	mu     sync.Mutex
	id     string
	clinic string
	doc    *crdt.Doc
}

// NewUsers starts clinic's roster in a new document that writes as actor,
// with a first user. by must be an administrator (usually the first
// administrator, adding themselves).
func NewUsers(clinic, actor string, by Author, at time.Time, first UserUpdate) (*Users, Result, error) {
	if err := checkClinicID(clinic); err != nil {
		return nil, Result{}, err
	}
	doc, err := crdt.New(actor)
	if err != nil {
		return nil, Result{}, fmt.Errorf("new user roster: %w", err)
	}
	u := &Users{id: UsersID(clinic), clinic: clinic, doc: doc}
	res, err := u.Update(by, at, first)
	if err != nil {
		return nil, Result{}, err
	}
	return u, res, nil
}

func checkClinicID(clinic string) error {
	if clinic == "" || len(clinic) > 100 || strings.ContainsFunc(clinic, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_')
	}) {
		return invalid("clinic", "%q is not a clinic ID", clinic)
	}
	return nil
}

// OpenUsers reads a user roster document. It returns ErrNotAUserRoster
// for any other document.
func OpenUsers(doc *crdt.Doc) (*Users, error) {
	root, err := doc.Strings()
	if err != nil {
		return nil, fmt.Errorf("open user roster: %v: %w", err, ErrNotAUserRoster)
	}
	if root["kind"] != kindUsers {
		return nil, fmt.Errorf("open user roster: kind %q: %w", root["kind"], ErrNotAUserRoster)
	}
	clinic := root["clinic"]
	if checkClinicID(clinic) != nil {
		return nil, fmt.Errorf("open user roster: clinic %q: %w", clinic, ErrNotAUserRoster)
	}
	return &Users{id: UsersID(clinic), clinic: clinic, doc: doc}, nil
}

// ID returns the roster's document ID, UsersID(Clinic()).
func (u *Users) ID() string { return u.id }

// Clinic returns the clinic whose users these are.
func (u *Users) Clinic() string { return u.clinic }

// Doc returns the document the roster lives in.
func (u *Users) Doc() *crdt.Doc { return u.doc }

// usersOf reads every user of a roster's root map.
func usersOf(root map[string]string) map[string]*User {
	out := map[string]*User{}
	for k, v := range root {
		id, field, ok := splitUserKey(k)
		if !ok {
			continue
		}
		usr := out[id]
		if usr == nil {
			usr = &User{ID: id}
			out[id] = usr
		}
		usr.set(field, v)
	}
	return out
}

// set sets the user field a roster register holds.
func (u *User) set(field, v string) {
	switch field {
	case "name":
		u.Name = v
	case "role":
		u.Role = Role(v)
	case "password":
		u.PasswordHash = v
	case "disabled":
		u.Disabled = v == "true"
	}
}

// splitUserKey splits "user/<id>/<field>".
func splitUserKey(k string) (id, field string, ok bool) {
	rest, ok := strings.CutPrefix(k, userKeyPrefix)
	if !ok {
		return "", "", false
	}
	id, field, ok = strings.Cut(rest, "/")
	if !ok || !reUserID.MatchString(id) || !slices.Contains(userFields, field) {
		return "", "", false
	}
	return id, field, true
}

// User returns one user, or ErrNotFound.
func (u *Users) User(id string) (User, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	root, err := u.doc.Strings()
	if err != nil {
		return User{}, fmt.Errorf("read user roster: %w", err)
	}
	usr, ok := usersOf(root)[id]
	if !ok {
		return User{}, fmt.Errorf("user %q of %s: %w", id, u.clinic, ErrNotFound)
	}
	return *usr, nil
}

// List returns every user, sorted by ID.
func (u *Users) List() ([]User, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	root, err := u.doc.Strings()
	if err != nil {
		return nil, fmt.Errorf("read user roster: %w", err)
	}
	all := usersOf(root)
	out := make([]User, 0, len(all))
	for _, usr := range all {
		out = append(out, *usr)
	}
	slices.SortFunc(out, func(a, b User) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// mayUpdate says whether by may make up on a roster holding users: an
// administrator the roster knows (and has not disabled) may change
// anything, and the first administrator may start an empty roster; any
// user may change their own password.
func mayUpdate(users map[string]*User, by Author, up UserUpdate) error {
	if up.UserID == by.UserID && up.passwordOnly() {
		if self := users[by.UserID]; self != nil && !self.Disabled {
			return nil
		}
	}
	if by.Role != RoleAdministrator {
		return &ForbiddenError{Role: by.Role, Section: SectionUsers}
	}
	if len(users) == 0 {
		if up.UserID == by.UserID && up.Role == RoleAdministrator {
			return nil // the first administrator starts the roster
		}
		return invalid("user", "an empty roster starts with its administrator adding themselves")
	}
	return mayAdminister(users, by)
}

// mayAdminister says whether by is an administrator the roster knows and
// has not disabled.
func mayAdminister(users map[string]*User, by Author) error {
	if admin := users[by.UserID]; by.Role != RoleAdministrator || admin == nil || admin.Role != RoleAdministrator || admin.Disabled {
		return &ForbiddenError{Role: by.Role, Section: SectionUsers}
	}
	return nil
}

// ReadPolicy returns what each role of the clinic may not read.
func (u *Users) ReadPolicy() (ReadPolicy, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	root, err := u.doc.Strings()
	if err != nil {
		return nil, fmt.Errorf("read user roster: %w", err)
	}
	p := ReadPolicy{}
	for k, v := range root {
		role, ok := strings.CutPrefix(k, hideKeyPrefix)
		if !ok || !Role(role).Valid() {
			continue
		}
		if ss, err := decodeHidden(v); err == nil && len(ss) > 0 {
			p[Role(role)] = ss
		}
	}
	return p, nil
}

// SetHidden sets the sections role may not read at the clinic (none:
// every section), as by, an administrator. The policy replicates with the
// roster to every device of the clinic.
func (u *Users) SetHidden(by Author, at time.Time, role Role, hidden []Section) (Result, error) {
	if err := by.Validate(); err != nil {
		return Result{}, err
	}
	if !role.Valid() {
		return Result{}, invalid("role", "%q is not a role", role)
	}
	if err := checkHidden(hidden); err != nil {
		return Result{}, err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	root, err := u.doc.Strings()
	if err != nil {
		return Result{}, fmt.Errorf("read user roster: %w", err)
	}
	if err := mayAdminister(usersOf(root), by); err != nil {
		return Result{}, err
	}
	v := encodeHidden(hidden)
	if cur, ok := root[hideKeyPrefix+string(role)]; ok && cur == v || !ok && v == "" {
		return Result{}, invalid("sections", "changes nothing: that is what %s already may not read", role)
	}
	summary := fmt.Sprintf("Set what a %s may not read: %s", role, v)
	if v == "" {
		summary = fmt.Sprintf("Let a %s read every section", role)
	}
	msg, _ := json.Marshal(message{Op: opSetHidden, User: by.UserID, Name: by.Name, Role: by.Role, Device: by.Device,
		Entry: string(role), Summary: summary, At: at.UnixMilli()})
	ch, err := u.doc.Edit(string(msg), at, func(tx *crdt.Tx) error { return tx.Put(nil, hideKeyPrefix+string(role), v) })
	if err != nil {
		return Result{}, fmt.Errorf("set what %s may read: %w", role, err)
	}
	return Result{Change: ch, EntryID: string(role)}, nil
}

// Update adds or changes one user as by, in one change. Errors:
// ErrInvalid for a bad update (a new user without name, role or password;
// an unknown field value; a password hash whose parameters are outside
// login.Params.Validate's bounds), ErrForbidden if by may not make it, ErrNotFound
// is never returned (an update of an unknown user adds them).
func (u *Users) Update(by Author, at time.Time, up UserUpdate) (Result, error) {
	if err := by.Validate(); err != nil {
		return Result{}, err
	}
	if !reUserID.MatchString(up.UserID) {
		return Result{}, invalid("user_id", "%q: use 1 to 64 lower-case letters, digits, '.', '-' or '_'", up.UserID)
	}
	if up.Disable && up.Enable {
		return Result{}, invalid("disabled", "an update cannot both disable and enable")
	}
	fields := up.fields()
	if len(fields) == 0 {
		return Result{}, invalid("update", "changes nothing")
	}
	for f, v := range fields {
		if err := checkUserField(f, v); err != nil {
			return Result{}, err
		}
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	root, err := u.doc.Strings()
	if err != nil {
		return Result{}, fmt.Errorf("read user roster: %w", err)
	}
	users := usersOf(root)
	if users[up.UserID] == nil {
		for _, f := range []string{"name", "role", "password"} {
			if fields[f] == "" {
				return Result{}, invalid(f, "a new user needs a name, a role and a password")
			}
		}
	}
	if err := mayUpdate(users, by, up); err != nil {
		return Result{}, err
	}
	same := true
	for f, v := range fields {
		same = same && root[userKeyPrefix+up.UserID+"/"+f] == v
	}
	if same {
		return Result{}, invalid("update", "changes nothing: user %s already has those values", up.UserID)
	}
	op, summary := opPutUser, "Updated user "+up.UserID
	switch {
	case users[up.UserID] == nil:
		summary = fmt.Sprintf("Added user %s (%s) as %s", up.UserID, up.Name, up.Role)
	case up.passwordOnly():
		op, summary = opSetPassword, "Changed the password of "+up.UserID
	}
	msg, _ := json.Marshal(message{Op: op, User: by.UserID, Name: by.Name, Role: by.Role, Device: by.Device,
		Entry: up.UserID, Summary: summary, At: at.UnixMilli()})
	ch, err := u.doc.Edit(string(msg), at, func(tx *crdt.Tx) error {
		if root["kind"] == "" {
			if err := tx.Put(nil, "kind", kindUsers); err != nil {
				return err
			}
			if err := tx.Put(nil, "clinic", u.clinic); err != nil {
				return err
			}
		}
		for _, f := range userFields {
			if v, ok := fields[f]; ok {
				if err := tx.Put(nil, userKeyPrefix+up.UserID+"/"+f, v); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return Result{}, fmt.Errorf("update user %s: %w", up.UserID, err)
	}
	return Result{Change: ch, EntryID: up.UserID}, nil
}

// IsUsersChange reports whether a change's message names a user roster
// operation; CheckUsersChange, not CheckChange, judges such a change.
// The message is not trusted: each check refuses a change that writes
// anything else than its kind of document holds.
func IsUsersChange(ch crdt.Change) bool {
	msg, err := parseMessage(ch.Message)
	if err != nil {
		return false
	}
	return msg.Op == opPutUser || msg.Op == opSetPassword || msg.Op == opSetHidden
}

// CheckUsersChange judges a user roster change received from elsewhere,
// as CheckChange does for charts: doc holds the change's dependencies;
// the change is applied to a fork of it. The change must write only user
// fields with valid values (and, on an empty roster, the roster's kind and
// clinic), remove nothing, and be one its recorded author may make (see
// Update) on the roster as it was. It returns the author.
//
// Errors: ErrInvalid for a change this package would not make (a
// password hash over device/login's cost bounds included),
// ErrForbidden for one its author may not make, ErrNotAUserRoster if doc
// is another kind of document, crdt.ErrNotFound if a dependency is
// missing.
func CheckUsersChange(doc *crdt.Doc, ch crdt.Change) (Author, error) {
	msg, err := parseMessage(ch.Message)
	if err != nil || (msg.Op != opPutUser && msg.Op != opSetPassword && msg.Op != opSetHidden) {
		return Author{}, invalid("message", "change %s carries no user roster message", ch.Hash)
	}
	by := Author{UserID: msg.User, Name: msg.Name, Role: msg.Role, Device: msg.Device}
	if err := by.Validate(); err != nil {
		return Author{}, fmt.Errorf("change %s: %w", ch.Hash, err)
	}
	var f *crdt.Doc
	if len(ch.Deps) == 0 {
		f, err = crdt.New(crdt.NewActorID())
	} else {
		f, err = doc.Fork(ch.Deps, crdt.NewActorID())
	}
	if err != nil {
		return by, fmt.Errorf("check change %s: %w", ch.Hash, err)
	}
	defer f.Close() // a scratch copy: its Automerge memory is freed now
	beforeKeys, err := f.Keys()
	if err != nil {
		return by, fmt.Errorf("check change %s: %w", ch.Hash, err)
	}
	before, err := f.Strings()
	if err != nil {
		return by, fmt.Errorf("check change %s: %w", ch.Hash, err)
	}
	if len(beforeKeys) > 0 && before["kind"] != kindUsers {
		return by, fmt.Errorf("check change %s: made on a document of kind %q: %w", ch.Hash, before["kind"], ErrNotAUserRoster)
	}
	applied, err := f.Apply(ch)
	if err != nil {
		return by, fmt.Errorf("check change %s: %w", ch.Hash, err)
	}
	if !slices.Contains(applied, ch.Hash) {
		return by, fmt.Errorf("check change %s: its dependencies are not held: %w", ch.Hash, crdt.ErrNotFound)
	}
	afterKeys, err := f.Keys()
	if err != nil {
		return by, invalid("change", "change %s breaks the roster: %v", ch.Hash, err)
	}
	after, err := f.Strings()
	if err != nil {
		return by, invalid("change", "change %s breaks the roster: %v", ch.Hash, err)
	}
	if len(after) != len(afterKeys) {
		return by, invalid("change", "change %s puts something other than text in the roster", ch.Hash)
	}
	for _, k := range beforeKeys {
		if _, ok := after[k]; !ok {
			return by, invalid("change", "change %s removes %s from the roster", ch.Hash, k)
		}
	}
	up := UserUpdate{}
	target := ""
	policy := false // the change sets a read policy
	for _, k := range afterKeys {
		v := after[k]
		if old, ok := before[k]; ok && old == v {
			continue
		}
		switch k {
		case "kind", "clinic":
			if _, ok := before[k]; ok {
				return by, invalid(k, "change %s rewrites the roster's %s", ch.Hash, k)
			}
			if k == "kind" && v != kindUsers || k == "clinic" && checkClinicID(v) != nil {
				return by, invalid(k, "change %s sets the roster's %s to %q", ch.Hash, k, v)
			}
			continue
		}
		if role, ok := strings.CutPrefix(k, hideKeyPrefix); ok {
			if !Role(role).Valid() {
				return by, invalid("change", "change %s sets what %q may read, which is not a role", ch.Hash, role)
			}
			if _, err := decodeHidden(v); err != nil {
				return by, fmt.Errorf("change %s: %w", ch.Hash, err)
			}
			policy = true
			continue
		}
		id, field, ok := splitUserKey(k)
		if !ok {
			return by, invalid("change", "change %s writes %q, which is not a user field", ch.Hash, k)
		}
		if target != "" && id != target {
			return by, invalid("change", "change %s changes two users", ch.Hash)
		}
		target = id
		if err := checkUserField(field, v); err != nil {
			return by, fmt.Errorf("change %s: %w", ch.Hash, err)
		}
		var written User
		written.set(field, v)
		switch field {
		case "name":
			up.Name = written.Name
		case "role":
			up.Role = written.Role
		case "password":
			up.PasswordHash = written.PasswordHash
		case "disabled":
			up.Disable, up.Enable = written.Disabled, !written.Disabled
		}
	}
	if after["kind"] != kindUsers || checkClinicID(after["clinic"]) != nil {
		return by, invalid("change", "change %s leaves a document that is not a user roster", ch.Hash)
	}
	users := usersOf(before)
	if policy {
		if target != "" {
			return by, invalid("change", "change %s changes a user and the read policy at once", ch.Hash)
		}
		if err := mayAdminister(users, by); err != nil {
			return by, fmt.Errorf("change %s: %w", ch.Hash, err)
		}
		return by, nil
	}
	if target == "" {
		return by, invalid("change", "change %s changes no user", ch.Hash)
	}
	up.UserID = target
	if users[target] == nil && (up.Name == "" || up.Role == "" || up.PasswordHash == "") {
		return by, invalid("user", "change %s adds user %s without a name, role and password", ch.Hash, target)
	}
	if err := mayUpdate(users, by, up); err != nil {
		return by, fmt.Errorf("change %s: %w", ch.Hash, err)
	}
	return by, nil
}
