package file

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/chartsync/chartsync/replica"
)

// Errors. Refusals of a bundle file's content also match the replica
// sentinels (replica.ErrMalformedBundle and the others) where the bundle
// itself is at fault; match with errors.Is.
var (
	// ErrCorrupt: a bundle file's content does not match its name: it
	// was truncated, damaged, or renamed after it was written.
	ErrCorrupt = errors.New("corrupt bundle file")
	// ErrNotRegular: a directory entry with a bundle file's name is a
	// symbolic link, a directory or a device, and is not read.
	ErrNotRegular = errors.New("bundle file is not a regular file")
	// ErrBadName: a name that is not a bundle file's name.
	ErrBadName = errors.New("not a bundle file name")
	// ErrReplayed: a bundle file already applied: every position it
	// carries is one the replica has already taken from its sender, and
	// every change it carries is already held (see Import). Nothing of
	// it is applied again.
	ErrReplayed = errors.New("bundle file already applied")
)

// File names are
//
//	cs-<sender>-<recipient>-<hash>.bundle
//
// where sender and recipient are replica IDs (32 lower-case hex digits)
// and hash is the first 16 bytes of the SHA-256 of the content, in
// lower-case hex.
const (
	namePrefix = "cs-"
	// Ext is the extension of every bundle file.
	Ext      = ".bundle"
	idLen    = 32
	hashLen  = 32
	nameLen  = len(namePrefix) + idLen + 1 + idLen + 1 + hashLen + len(Ext)
	tempGlob = ".cs-*.tmp"
)

// Name is what a bundle file's name says.
type Name struct {
	From, To string // replica IDs
	Hash     string // 32 hex digits: the start of the content's SHA-256
}

// String returns the file name.
func (n Name) String() string {
	return namePrefix + n.From + "-" + n.To + "-" + n.Hash + Ext
}

// contentHash returns the hash a bundle file's name carries for data.
func contentHash(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:hashLen/2])
}

// NameFor returns the name of the file holding data, a bundle from one
// replica to another.
func NameFor(from, to string, data []byte) string {
	return Name{From: from, To: to, Hash: contentHash(data)}.String()
}

// ParseName parses a bundle file's name. It accepts exactly the names
// NameFor makes, so a name it accepts has no path separator, dot segment
// or upper-case letter and always stays inside the directory it is read
// from. Other names return an error matching ErrBadName.
func ParseName(name string) (Name, error) {
	bad := func(why string) (Name, error) {
		return Name{}, fmt.Errorf("%q: %s: %w", name, why, ErrBadName)
	}
	if len(name) != nameLen {
		return bad("wrong length")
	}
	if !strings.HasPrefix(name, namePrefix) || !strings.HasSuffix(name, Ext) {
		return bad("wrong prefix or extension")
	}
	rest := name[len(namePrefix) : len(name)-len(Ext)]
	if rest[idLen] != '-' || rest[2*idLen+1] != '-' {
		return bad("fields not separated by '-'")
	}
	n := Name{From: rest[:idLen], To: rest[idLen+1 : 2*idLen+1], Hash: rest[2*idLen+2:]}
	for _, f := range []string{n.From, n.To, n.Hash} {
		if !lowerHex(f) {
			return bad("fields are not lower-case hex")
		}
	}
	if n.From == n.To {
		return bad("sender is recipient")
	}
	return n, nil
}

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Parse checks a bundle file: its name, that its content is what the name's
// hash says, and that the bundle inside is well formed and goes from the
// sender to the recipient the name gives. Errors match ErrBadName,
// ErrCorrupt, or the replica sentinels (replica.ErrMalformedBundle,
// replica.ErrBundleVersion, replica.ErrBundleTooLarge). The changes inside
// are checked when the bundle is applied.
func Parse(name string, data []byte) (*replica.Bundle, error) {
	n, err := ParseName(name)
	if err != nil {
		return nil, err
	}
	if h := contentHash(data); h != n.Hash {
		return nil, fmt.Errorf("content of %d bytes hashes to %s, name says %s: %w", len(data), h, n.Hash, ErrCorrupt)
	}
	b, err := replica.DecodeBundle(data)
	if err != nil {
		return nil, err
	}
	if b.From != n.From || b.To != n.To {
		return nil, fmt.Errorf("bundle from %s to %s in a file named from %s to %s: %w", b.From, b.To, n.From, n.To, ErrCorrupt)
	}
	return b, nil
}
