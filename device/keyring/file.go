package keyring

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/chartsync/chartsync/internal/atomicfile"
)

// Sizes and bounds of the keyring file and what it holds. The decoder
// enforces every one of them before it uses a value.
const (
	// KeySize is the size of the data key in bytes (what
	// sqlite.Config.Key takes).
	KeySize = 32
	// MaxFileSize is the largest keyring file read, in bytes.
	MaxFileSize = 1 << 20
	// MaxUsers is the most users a keyring holds.
	MaxUsers = 1000
	// MaxUserLength is the longest user ID, in bytes.
	MaxUserLength = 256
	// MinPasswordLength is the fewest characters (runes) of a new
	// password.
	MinPasswordLength = 8
	// MaxPasswordLength is the most bytes of a password; Unlock refuses
	// a longer one as wrong without deriving anything.
	MaxPasswordLength = 1024

	fileFormat      = "chartsync-keyring"
	fileVersion     = 1
	saltLen         = 16 // bytes of salt drawn for each entry
	minSaltLen      = 16
	maxSaltLen      = 64
	maxRecipientLen = 4096  // a hybrid post-quantum recipient is about 2,000 characters
	maxRecoveryLen  = 16384 // an age file of one key to one hybrid recipient is under 2 KiB
)

// file is the keyring file as it is written:
//
//	{"keyring":<body>,"sha256":"<hex SHA-256 of the bytes of body>"}
type file struct {
	Keyring json.RawMessage `json:"keyring"`
	SHA256  string          `json:"sha256"`
}

// ring is the body of the file, and the keyring in memory.
type ring struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
	// KeyCheck is HMAC-SHA256 of keyCheckLabel under the data key: it
	// tells the device's key from another without revealing it.
	KeyCheck []byte   `json:"key_check"`
	Recovery recovery `json:"recovery"`
	Users    []entry  `json:"users"` // sorted by User, each once
}

// recovery is the data key encrypted with age to Recipient.
type recovery struct {
	Recipient string `json:"recipient"`
	Age       []byte `json:"age"`
}

// entry is the data key sealed for one user: XChaCha20-Poly1305 under an
// argon2id key of the user's password, with the user ID in the associated
// data.
type entry struct {
	User     string `json:"user"`
	Argon2id Params `json:"argon2id"`
	Salt     []byte `json:"salt"`
	Nonce    []byte `json:"nonce"`
	Sealed   []byte `json:"sealed"`
}

func (r *ring) find(user string) (int, bool) {
	return slices.BinarySearchFunc(r.Users, user, func(e entry, u string) int { return strings.Compare(e.User, u) })
}

// encode returns the file's bytes for r.
func (r *ring) encode() ([]byte, error) {
	body, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode keyring: %w", err)
	}
	sum := sha256.Sum256(body)
	out, err := json.Marshal(file{Keyring: body, SHA256: hex.EncodeToString(sum[:])})
	if err != nil {
		return nil, fmt.Errorf("encode keyring: %w", err)
	}
	return append(out, '\n'), nil
}

// decode parses a keyring file strictly. Every error matches ErrDamaged.
func decode(data []byte) (*ring, error) {
	if len(data) > MaxFileSize {
		return nil, damaged("%d bytes, more than %d", len(data), MaxFileSize)
	}
	var f file
	if err := strictUnmarshal(data, &f); err != nil {
		return nil, damaged("%v", err)
	}
	sum := sha256.Sum256(f.Keyring)
	if f.SHA256 != hex.EncodeToString(sum[:]) {
		return nil, damaged("checksum does not match")
	}
	var r ring
	if err := strictUnmarshal(f.Keyring, &r); err != nil {
		return nil, damaged("%v", err)
	}
	if err := r.validate(); err != nil {
		return nil, damaged("%v", err)
	}
	return &r, nil
}

// strictUnmarshal decodes one JSON value with no unknown fields and
// nothing after it.
func strictUnmarshal(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("data after the keyring")
	}
	return nil
}

// validate checks every field of a decoded keyring.
func (r *ring) validate() error {
	switch {
	case r.Format != fileFormat:
		return fmt.Errorf("format %q, want %q", r.Format, fileFormat)
	case r.Version != fileVersion:
		return fmt.Errorf("version %d, want %d", r.Version, fileVersion)
	case len(r.KeyCheck) != sha256.Size:
		return fmt.Errorf("key check of %d bytes", len(r.KeyCheck))
	case len(r.Recovery.Recipient) > maxRecipientLen:
		return fmt.Errorf("recovery recipient of %d bytes", len(r.Recovery.Recipient))
	case len(r.Recovery.Age) == 0 || len(r.Recovery.Age) > maxRecoveryLen:
		return fmt.Errorf("recovery entry of %d bytes", len(r.Recovery.Age))
	case len(r.Users) == 0 || len(r.Users) > MaxUsers:
		return fmt.Errorf("%d users, want 1 to %d", len(r.Users), MaxUsers)
	}
	if _, err := parseRecipient(r.Recovery.Recipient); err != nil {
		return err
	}
	for i, e := range r.Users {
		if err := checkUser(e.User); err != nil {
			return fmt.Errorf("user %d: %w", i, err)
		}
		if i > 0 && r.Users[i-1].User >= e.User {
			return fmt.Errorf("users not in order, or %q twice", e.User)
		}
		if err := e.Argon2id.Validate(); err != nil {
			return fmt.Errorf("user %q: %w", e.User, err)
		}
		switch {
		case len(e.Salt) < minSaltLen || len(e.Salt) > maxSaltLen:
			return fmt.Errorf("user %q: salt of %d bytes", e.User, len(e.Salt))
		case len(e.Nonce) != nonceSize:
			return fmt.Errorf("user %q: nonce of %d bytes", e.User, len(e.Nonce))
		case len(e.Sealed) != KeySize+tagSize:
			return fmt.Errorf("user %q: sealed key of %d bytes", e.User, len(e.Sealed))
		}
	}
	return nil
}

// checkUser reports a user ID that is not 1 to MaxUserLength bytes of
// printable UTF-8.
func checkUser(user string) error {
	if user == "" || len(user) > MaxUserLength || !utf8.ValidString(user) ||
		strings.ContainsFunc(user, unicode.IsControl) {
		return ErrInvalidUser
	}
	return nil
}

// load reads and decodes the keyring at path.
func load(path string) (*ring, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	return decode(data)
}

// writeOptions are the options of every write of a keyring file; tests
// replace them to inject failures.
var writeOptions atomicfile.Options

// save writes r to path atomically and durably, mode 0600.
func save(path string, r *ring) error {
	data, err := r.encode()
	if err != nil {
		return err
	}
	return atomicfile.Write(path, data, writeOptions)
}

// saveNew is save for a keyring that must not replace a file: one that
// appeared at path since the caller looked (another process creating a
// keyring) is left as it is, and the error matches ErrExists. Replacing
// it would lose the only wrapped copy of another data key.
func saveNew(path string, r *ring) error {
	data, err := r.encode()
	if err != nil {
		return err
	}
	o := writeOptions
	rename := o.Rename
	if rename == nil {
		rename = os.Rename
	}
	o.Rename = func(tmp, path string) error { return renameNoReplace(tmp, path, rename) }
	return atomicfile.Write(path, data, o)
}

// renameNoReplace moves tmp to path unless path exists: it links tmp
// there (which fails if path exists) and removes tmp. On a file system
// without hard links it checks for path and renames, which a file made in
// between would lose the race to.
func renameNoReplace(tmp, path string, rename func(oldpath, newpath string) error) error {
	err := os.Link(tmp, path)
	switch {
	case err == nil:
		// The keyring is in place; a temporary name left behind holds
		// nothing a keyring does not.
		_ = os.Remove(tmp)
		return nil
	case errors.Is(err, fs.ErrExist):
		return ErrExists
	}
	if _, err := os.Lstat(path); err == nil {
		return ErrExists
	}
	return rename(tmp, path)
}
