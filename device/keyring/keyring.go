package keyring

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"unicode/utf8"

	"filippo.io/age"
	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/chacha20poly1305"
)

// Bounds on argon2id parameters, enforced on what is written and on what
// is read back, so that a keyring file, whoever wrote it, never makes
// Unlock allocate more than MaxMemory or compute for long.
const (
	// MaxMemory is the largest Params.Memory, in KiB (128 MiB).
	MaxMemory = 128 << 10
	// MaxTime is the largest Params.Time.
	MaxTime = 10
	// MaxThreads is the largest Params.Threads.
	MaxThreads = 4
	// MaxWork bounds Memory×Time, in KiB-passes (128 MiB 4 times).
	MaxWork = MaxMemory * 4

	nonceSize = chacha20poly1305.NonceSizeX
	tagSize   = chacha20poly1305.Overhead
)

// Params are argon2id cost parameters.
type Params struct {
	Memory  uint32 `json:"memory"`  // KiB; at least 8 per thread
	Time    uint32 `json:"time"`    // passes over the memory
	Threads uint8  `json:"threads"` // lanes computed in parallel
}

// DefaultParams are the parameters of entries written with the zero
// Config: 64 MiB, 3 passes, 2 lanes (RFC 9106's second recommendation,
// with as many lanes as a 2-core tablet has cores). See the package doc
// for their cost.
var DefaultParams = Params{Memory: 64 << 10, Time: 3, Threads: 2}

// Validate reports parameters outside this package's bounds: Threads 1 to
// MaxThreads, Time 1 to MaxTime, Memory 8×Threads to MaxMemory KiB, and
// Memory×Time at most MaxWork. It does not judge strength: small
// parameters pass (tests use them).
func (p Params) Validate() error {
	switch {
	case p.Threads < 1 || p.Threads > MaxThreads:
		return fmt.Errorf("%w: threads %d not in 1..%d", ErrInvalidParams, p.Threads, MaxThreads)
	case p.Time < 1 || p.Time > MaxTime:
		return fmt.Errorf("%w: time %d not in 1..%d", ErrInvalidParams, p.Time, MaxTime)
	case p.Memory < 8*uint32(p.Threads) || p.Memory > MaxMemory:
		return fmt.Errorf("%w: memory %d KiB not in %d..%d KiB", ErrInvalidParams, p.Memory, 8*uint32(p.Threads), MaxMemory)
	case uint64(p.Memory)*uint64(p.Time) > MaxWork:
		return fmt.Errorf("%w: memory %d KiB × time %d is over %d KiB-passes", ErrInvalidParams, p.Memory, p.Time, MaxWork)
	}
	return nil
}

// Config configures the entries a keyring writes. Its zero value uses
// DefaultParams.
type Config struct {
	// Params are the argon2id parameters of the entries that Create,
	// AddUser, ChangePassword and ResetPassword write. Zero means
	// DefaultParams. Entries already written keep their own: Unlock
	// reads each entry's parameters from the file.
	Params Params
}

// Validate reports a Config that cannot be used.
func (c Config) Validate() error {
	return c.params().Validate()
}

func (c Config) params() Params {
	if c.Params == (Params{}) {
		return DefaultParams
	}
	return c.Params
}

// Create makes a keyring at path with a new random data key, one entry
// for user under password, and a recovery entry encrypted to recipient
// (an age X25519 or hybrid recipient string, "age1…"), and returns the
// data key. It refuses a path where a file exists (ErrExists), a
// recipient that does not parse (ErrInvalidRecipient), an invalid user ID
// (ErrInvalidUser) and a weak or overlong password.
func Create(path, recipient, user, password string) ([]byte, error) {
	return Config{}.Create(path, recipient, user, password)
}

// Create is the package's Create with c's parameters.
func (c Config) Create(path, recipient, user, password string) ([]byte, error) {
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("create keyring %s: read random key: %w", path, err)
	}
	if err := c.create(path, key, recipient, user, password); err != nil {
		return nil, fmt.Errorf("create keyring %s: %w", path, err)
	}
	return key, nil
}

// CreateForKey is Create for a data key the device has already: it makes
// a new keyring at path for key, with one entry for user and a recovery
// entry. It is how a device whose keyring file is lost or damaged, and
// whose key is known (recovered from a copy of the keyring, or still held
// by a logged-in session), gets a keyring again. It does not check that
// key opens the device's database: the caller does (sqlite.OpenConfig).
// Errors are Create's, and ErrWrongKey for a key not KeySize bytes long.
func CreateForKey(path string, key []byte, recipient, user, password string) error {
	return Config{}.CreateForKey(path, key, recipient, user, password)
}

// CreateForKey is the package's CreateForKey with c's parameters.
func (c Config) CreateForKey(path string, key []byte, recipient, user, password string) error {
	if len(key) != KeySize {
		return fmt.Errorf("create keyring %s: %w: %d bytes, want %d", path, ErrWrongKey, len(key), KeySize)
	}
	if err := c.create(path, key, recipient, user, password); err != nil {
		return fmt.Errorf("create keyring %s: %w", path, err)
	}
	return nil
}

func (c Config) create(path string, key []byte, recipient, user, password string) error {
	if err := c.Validate(); err != nil {
		return err
	}
	rcpt, err := parseRecipient(recipient)
	if err != nil {
		return err
	}
	if err := checkUser(user); err != nil {
		return err
	}
	if err := checkNewPassword(password); err != nil {
		return err
	}
	if _, err := os.Lstat(path); err == nil {
		return ErrExists
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	var sealed bytes.Buffer
	w, err := age.Encrypt(&sealed, rcpt)
	if err != nil {
		return fmt.Errorf("encrypt recovery entry: %w", err)
	}
	if _, err := w.Write(key); err != nil {
		return fmt.Errorf("encrypt recovery entry: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("encrypt recovery entry: %w", err)
	}
	e, err := seal(user, password, c.params(), key)
	if err != nil {
		return err
	}
	r := &ring{
		Format:   fileFormat,
		Version:  fileVersion,
		KeyCheck: keyCheck(key),
		Recovery: recovery{Recipient: recipient, Age: sealed.Bytes()},
		Users:    []entry{e},
	}
	return saveNew(path, r)
}

// Unlock returns the data key of the keyring at path, unsealed with
// user's password. It returns an error matching ErrUnknownUser for a
// user without an entry, ErrWrongPassword for a wrong password,
// ErrDamaged for a file that is not a sound keyring, and the file
// system's error (fs.ErrNotExist and so on) for a file it cannot read.
// It does not limit guessing: the app does, before it calls Unlock
// (package device/login).
func Unlock(path, user, password string) ([]byte, error) {
	key, err := unlock(path, user, password)
	if err != nil {
		return nil, fmt.Errorf("unlock keyring %s as %q: %w", path, user, err)
	}
	return key, nil
}

func unlock(path, user, password string) ([]byte, error) {
	r, err := load(path)
	if err != nil {
		return nil, err
	}
	i, ok := r.find(user)
	if !ok {
		return nil, ErrUnknownUser
	}
	return r.open(r.Users[i], password)
}

// AddUser adds an entry for user under password to the keyring at path.
// key is the data key (from Unlock, Create or Recover): without it no
// entry can be made. It refuses a key that is not the device's
// (ErrWrongKey), a user who has an entry (ErrUserExists), and a keyring
// of MaxUsers users (ErrTooManyUsers).
func AddUser(path string, key []byte, user, password string) error {
	return Config{}.AddUser(path, key, user, password)
}

// AddUser is the package's AddUser with c's parameters.
func (c Config) AddUser(path string, key []byte, user, password string) error {
	if err := c.addUser(path, key, user, password); err != nil {
		return fmt.Errorf("add %q to keyring %s: %w", user, path, err)
	}
	return nil
}

func (c Config) addUser(path string, key []byte, user, password string) error {
	if err := c.Validate(); err != nil {
		return err
	}
	if err := checkUser(user); err != nil {
		return err
	}
	if err := checkNewPassword(password); err != nil {
		return err
	}
	r, err := load(path)
	if err != nil {
		return err
	}
	if !r.holds(key) {
		return ErrWrongKey
	}
	i, ok := r.find(user)
	if ok {
		return ErrUserExists
	}
	if len(r.Users) >= MaxUsers {
		return ErrTooManyUsers
	}
	e, err := seal(user, password, c.params(), key)
	if err != nil {
		return err
	}
	r.Users = slices.Insert(r.Users, i, e)
	return save(path, r)
}

// RemoveUser removes user's entry from the keyring at path; key is the
// data key, as for AddUser. It refuses a user without an entry
// (ErrUnknownUser) and the last user (ErrLastUser). The user's password
// no longer unlocks the keyring; copies of the file taken before still
// hold the entry (see the package doc).
func RemoveUser(path string, key []byte, user string) error {
	if err := removeUser(path, key, user); err != nil {
		return fmt.Errorf("remove %q from keyring %s: %w", user, path, err)
	}
	return nil
}

func removeUser(path string, key []byte, user string) error {
	r, err := load(path)
	if err != nil {
		return err
	}
	if !r.holds(key) {
		return ErrWrongKey
	}
	i, ok := r.find(user)
	if !ok {
		return ErrUnknownUser
	}
	if len(r.Users) == 1 {
		return ErrLastUser
	}
	r.Users = slices.Delete(r.Users, i, i+1)
	return save(path, r)
}

// ChangePassword re-seals user's entry under newPassword, with a new salt
// and nonce and c's parameters, once oldPassword unseals it. The data key
// is unchanged, so the database is not re-encrypted. Errors are those of
// Unlock, and ErrWeakPassword or ErrPasswordTooLong for newPassword.
func ChangePassword(path, user, oldPassword, newPassword string) error {
	return Config{}.ChangePassword(path, user, oldPassword, newPassword)
}

// ChangePassword is the package's ChangePassword with c's parameters.
func (c Config) ChangePassword(path, user, oldPassword, newPassword string) error {
	if err := c.changePassword(path, user, oldPassword, newPassword); err != nil {
		return fmt.Errorf("change password of %q in keyring %s: %w", user, path, err)
	}
	return nil
}

func (c Config) changePassword(path, user, oldPassword, newPassword string) error {
	if err := c.Validate(); err != nil {
		return err
	}
	if err := checkNewPassword(newPassword); err != nil {
		return err
	}
	r, err := load(path)
	if err != nil {
		return err
	}
	i, ok := r.find(user)
	if !ok {
		return ErrUnknownUser
	}
	key, err := r.open(r.Users[i], oldPassword)
	if err != nil {
		return err
	}
	defer clear(key)
	e, err := seal(user, newPassword, c.params(), key)
	if err != nil {
		return err
	}
	r.Users[i] = e
	return save(path, r)
}

// ResetPassword re-seals user's entry under newPassword without the old
// one, given the data key: what an administrator who has unlocked the
// device (or recovered it) does for a user who forgot a password. Errors
// are those of AddUser, and ErrUnknownUser.
func ResetPassword(path string, key []byte, user, newPassword string) error {
	return Config{}.ResetPassword(path, key, user, newPassword)
}

// ResetPassword is the package's ResetPassword with c's parameters.
func (c Config) ResetPassword(path string, key []byte, user, newPassword string) error {
	if err := c.resetPassword(path, key, user, newPassword); err != nil {
		return fmt.Errorf("reset password of %q in keyring %s: %w", user, path, err)
	}
	return nil
}

func (c Config) resetPassword(path string, key []byte, user, newPassword string) error {
	if err := c.Validate(); err != nil {
		return err
	}
	if err := checkNewPassword(newPassword); err != nil {
		return err
	}
	r, err := load(path)
	if err != nil {
		return err
	}
	if !r.holds(key) {
		return ErrWrongKey
	}
	i, ok := r.find(user)
	if !ok {
		return ErrUnknownUser
	}
	e, err := seal(user, newPassword, c.params(), key)
	if err != nil {
		return err
	}
	r.Users[i] = e
	return save(path, r)
}

// Recover returns the data key of the keyring at path from its recovery
// entry, decrypted with identity (the age identity of the recovery
// recipient given to Create). It returns an error matching
// ErrWrongIdentity for another identity and ErrDamaged for a file that is
// not a sound keyring. No password is needed or changed: the caller goes
// on with AddUser or ResetPassword.
func Recover(path string, identity age.Identity) ([]byte, error) {
	key, err := recoverKey(path, identity)
	if err != nil {
		return nil, fmt.Errorf("recover keyring %s: %w", path, err)
	}
	return key, nil
}

func recoverKey(path string, identity age.Identity) ([]byte, error) {
	if identity == nil {
		return nil, ErrWrongIdentity
	}
	r, err := load(path)
	if err != nil {
		return nil, err
	}
	return r.recoverKey(identity)
}

// recoverKey decrypts r's recovery entry with identity.
func (r *ring) recoverKey(identity age.Identity) ([]byte, error) {
	dec, err := age.Decrypt(bytes.NewReader(r.Recovery.Age), identity)
	var nomatch *age.NoIdentityMatchError
	if errors.As(err, &nomatch) {
		return nil, fmt.Errorf("%w: %w", ErrWrongIdentity, err)
	}
	if err != nil {
		return nil, damaged("recovery entry: %v", err)
	}
	key, err := io.ReadAll(io.LimitReader(dec, KeySize+1))
	if err != nil {
		return nil, damaged("recovery entry: %v", err)
	}
	if !r.holds(key) {
		return nil, damaged("recovery entry holds a key other than the device's")
	}
	return key, nil
}

// Users returns the IDs of the users with an entry in the keyring at
// path, in order. Errors are those of Unlock for the file.
func Users(path string) ([]string, error) {
	r, err := load(path)
	if err != nil {
		return nil, fmt.Errorf("read keyring %s: %w", path, err)
	}
	users := make([]string, len(r.Users))
	for i, e := range r.Users {
		users[i] = e.User
	}
	return users, nil
}

// keyCheckLabel is what the key check authenticates.
const keyCheckLabel = "chartsync keyring v1 key check"

// keyCheck returns HMAC-SHA256(key, keyCheckLabel).
func keyCheck(key []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(keyCheckLabel))
	return m.Sum(nil)
}

// holds reports whether key is the keyring's data key.
func (r *ring) holds(key []byte) bool {
	return len(key) == KeySize && hmac.Equal(keyCheck(key), r.KeyCheck)
}

// associatedData binds a sealed entry to its user, so that an entry moved
// to another user's name does not open.
func associatedData(user string) []byte {
	return []byte("chartsync keyring v1 user\x00" + user)
}

// seal returns an entry holding key for user, sealed under an argon2id
// key of password with a new salt and nonce.
func seal(user, password string, p Params, key []byte) (entry, error) {
	e := entry{User: user, Argon2id: p, Salt: make([]byte, saltLen), Nonce: make([]byte, nonceSize)}
	if _, err := rand.Read(e.Salt); err != nil {
		return entry{}, fmt.Errorf("read random salt: %w", err)
	}
	if _, err := rand.Read(e.Nonce); err != nil {
		return entry{}, fmt.Errorf("read random nonce: %w", err)
	}
	kek := argon2.IDKey([]byte(password), e.Salt, p.Time, p.Memory, p.Threads, chacha20poly1305.KeySize)
	defer clear(kek)
	aead, err := chacha20poly1305.NewX(kek)
	if err != nil {
		return entry{}, fmt.Errorf("seal entry: %w", err)
	}
	e.Sealed = aead.Seal(nil, e.Nonce, key, associatedData(user))
	return e, nil
}

// open unseals e with password and checks that it holds the device's key.
func (r *ring) open(e entry, password string) ([]byte, error) {
	if len(password) > MaxPasswordLength {
		return nil, ErrWrongPassword
	}
	p := e.Argon2id
	kek := argon2.IDKey([]byte(password), e.Salt, p.Time, p.Memory, p.Threads, chacha20poly1305.KeySize)
	defer clear(kek)
	aead, err := chacha20poly1305.NewX(kek)
	if err != nil {
		return nil, fmt.Errorf("open entry: %w", err)
	}
	key, err := aead.Open(nil, e.Nonce, e.Sealed, associatedData(e.User))
	if err != nil {
		return nil, ErrWrongPassword
	}
	if !r.holds(key) {
		clear(key)
		return nil, damaged("the entry of %q holds a key other than the device's", e.User)
	}
	return key, nil
}

// checkNewPassword refuses a new password that is too short or too long.
func checkNewPassword(password string) error {
	if len(password) > MaxPasswordLength {
		return ErrPasswordTooLong
	}
	if utf8.RuneCountInString(password) < MinPasswordLength {
		return ErrWeakPassword
	}
	return nil
}

// parseRecipient parses an age X25519 or hybrid recipient.
func parseRecipient(s string) (age.Recipient, error) {
	if strings.HasPrefix(s, "age1pq1") {
		r, err := age.ParseHybridRecipient(s)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidRecipient, err)
		}
		return r, nil
	}
	r, err := age.ParseX25519Recipient(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidRecipient, err)
	}
	return r, nil
}
