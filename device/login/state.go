package login

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Bounds of the state file.
const (
	// MaxUserName is the longest user name, in bytes, the Guard records.
	MaxUserName = 128
	// MaxUsersLimit is the most user names a state file may hold, and the
	// largest Policy.MaxUsers.
	MaxUsersLimit = 10000
	// MaxStateSize is the largest state file OpenGuard reads. A file of
	// MaxUsersLimit names of MaxUserName bytes each fits.
	MaxStateSize = 8 << 20

	stateFormat  = "chartsync-login-guard"
	stateVersion = 1

	maxFailuresLimit = 100            // largest Policy.MaxFailures and stored count
	maxLockoutLimit  = 24 * time.Hour // largest Policy.MaxLockout and stored lockout
	maxLevel         = 32             // lockouts counted; 2^32 × Lockout is past any cap
)

// stateFile is the JSON document of the state file:
//
//	{"format":"chartsync-login-guard","version":1,"users":[
//	  {"user":"amina","failures":5,"level":1,
//	   "last_failure":"2026-03-01T14:00:00Z","locked_until":"2026-03-01T14:01:00Z"}],
//	 "sha256":"<hex>"}
//
// sha256 is the SHA-256 of the same document encoded without it.
type stateFile struct {
	Format  string      `json:"format"`
	Version int         `json:"version"`
	Users   []stateUser `json:"users"`
	SHA256  string      `json:"sha256,omitempty"`
}

type stateUser struct {
	User        string    `json:"user"`
	Failures    int       `json:"failures,omitzero"`
	Level       int       `json:"level,omitzero"`
	LastFailure time.Time `json:"last_failure"`
	LockedUntil time.Time `json:"locked_until,omitzero"`
}

// entry is one user name's record in memory.
type entry struct {
	failures int       // failed logins in a row (kept while locked)
	level    int       // lockouts so far; the next lasts Lockout×2^level
	last     time.Time // last failure, or the clock reading it was moved back to
	until    time.Time // end of the lockout; zero when none
}

func checkUserName(user string) error {
	if user == "" || len(user) > MaxUserName || !utf8.ValidString(user) ||
		strings.IndexFunc(user, unicode.IsControl) >= 0 {
		return ErrBadUserName
	}
	return nil
}

// marshal encodes v as compact JSON without HTML escaping, so a name of
// MaxUserName bytes takes at most twice that.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

func (f stateFile) sum() (string, error) {
	f.SHA256 = ""
	b, err := marshal(f)
	if err != nil {
		return "", err
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:]), nil
}

// encodeState writes the users, sorted by name, as a state file.
func encodeState(users map[string]*entry) ([]byte, error) {
	f := stateFile{Format: stateFormat, Version: stateVersion, Users: make([]stateUser, 0, len(users))}
	for _, name := range slices.Sorted(maps.Keys(users)) {
		e := users[name]
		f.Users = append(f.Users, stateUser{User: name, Failures: e.failures, Level: e.level,
			LastFailure: e.last.UTC(), LockedUntil: utcOrZero(e.until)})
	}
	var err error
	if f.SHA256, err = f.sum(); err != nil {
		return nil, err
	}
	b, err := marshal(f)
	if err != nil {
		return nil, err
	}
	if len(b)+1 > MaxStateSize {
		return nil, fmt.Errorf("state of %d bytes is over %d", len(b)+1, MaxStateSize)
	}
	return append(b, '\n'), nil
}

func utcOrZero(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}

// decodeState reads a state file strictly: known keys only, each once, in
// a document of the known format and version, no more than MaxUsersLimit
// users (counted before they are decoded), every field in bounds, and a
// matching checksum. Errors match ErrCorruptState.
func decodeState(data []byte) (map[string]*entry, error) {
	corrupt := func(format string, args ...any) error {
		return fmt.Errorf("%w (%s)", ErrCorruptState, fmt.Sprintf(format, args...))
	}
	if len(data) > MaxStateSize {
		return nil, corrupt("file of %d bytes is over %d", len(data), MaxStateSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := expectDelim(dec, '{'); err != nil {
		return nil, corrupt("%v", err)
	}
	var f stateFile
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, corrupt("%v", err)
		}
		key, _ := tok.(string)
		if seen[key] {
			return nil, corrupt("field %q twice", key)
		}
		seen[key] = true
		switch key {
		case "format":
			err = dec.Decode(&f.Format)
		case "version":
			err = dec.Decode(&f.Version)
		case "sha256":
			err = dec.Decode(&f.SHA256)
		case "users":
			f.Users, err = decodeUsers(dec)
		default:
			return nil, corrupt("unknown field")
		}
		if err != nil {
			return nil, corrupt("%s: %v", key, err)
		}
	}
	if err := expectDelim(dec, '}'); err != nil {
		return nil, corrupt("%v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, corrupt("data after the end of the document")
	}
	for _, k := range []string{"format", "version", "users", "sha256"} {
		if !seen[k] {
			return nil, corrupt("no %s field", k)
		}
	}
	if f.Format != stateFormat {
		return nil, corrupt("not a login state file")
	}
	if f.Version != stateVersion {
		return nil, corrupt("format version %d; this app reads version %d", f.Version, stateVersion)
	}
	sum, err := f.sum()
	if err != nil || sum != f.SHA256 {
		return nil, corrupt("checksum does not match")
	}
	users := make(map[string]*entry, len(f.Users))
	for i, u := range f.Users {
		if err := u.check(); err != nil {
			return nil, corrupt("user %d: %v", i, err)
		}
		if users[u.User] != nil {
			return nil, corrupt("user %d: name twice", i)
		}
		users[u.User] = &entry{failures: u.Failures, level: u.Level, last: u.LastFailure, until: u.LockedUntil}
	}
	return users, nil
}

func expectDelim(dec *json.Decoder, d json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok != d {
		return fmt.Errorf("want %v", d)
	}
	return nil
}

// decodeUsers decodes the users array one element at a time, refusing the
// element past MaxUsersLimit before allocating it.
func decodeUsers(dec *json.Decoder) ([]stateUser, error) {
	if err := expectDelim(dec, '['); err != nil {
		return nil, err
	}
	users := []stateUser{}
	for dec.More() {
		if len(users) == MaxUsersLimit {
			return nil, fmt.Errorf("more than %d users", MaxUsersLimit)
		}
		var u stateUser
		if err := dec.Decode(&u); err != nil {
			return nil, err
		}
		users = append(users, u)
	}
	return users, expectDelim(dec, ']')
}

func (u stateUser) check() error {
	switch {
	case checkUserName(u.User) != nil:
		return errors.New("bad user name")
	case u.Failures < 0 || u.Failures > maxFailuresLimit:
		return fmt.Errorf("failures %d not in 0..%d", u.Failures, maxFailuresLimit)
	case u.Level < 0 || u.Level > maxLevel:
		return fmt.Errorf("level %d not in 0..%d", u.Level, maxLevel)
	case u.LastFailure.IsZero():
		return errors.New("no last failure time")
	case !u.LockedUntil.IsZero() && !u.LockedUntil.After(u.LastFailure):
		return errors.New("lockout ends before it starts")
	case !u.LockedUntil.IsZero() && u.LockedUntil.Sub(u.LastFailure) > maxLockoutLimit:
		return fmt.Errorf("lockout longer than %v", maxLockoutLimit)
	}
	return nil
}
