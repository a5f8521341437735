package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/transport/httpsync"
)

// state is what the cloud keeps beside its replica: the device CA, the
// enrolment authority, the cloud's own identity, the relay roster, the
// list of enrolments and revocations, the systems authorised to read
// charts through the FHIR API (systemStore), and where it last served.
// The data directory keeps it in files (fileState); a cloud of several
// nodes keeps it in PostgreSQL (pgState), its secrets sealed with the
// operator key.
// Both are safe for concurrent use, by goroutines and by processes.
type state interface {
	systemStore
	// DeviceCA returns the device CA, made and kept first if none is
	// kept yet (created says so). Two callers making one at once both
	// get the one kept.
	DeviceCA(ctx context.Context) (ca *httpsync.DeviceCA, created bool, err error)
	// Authority returns the enrolment authority that signs relay
	// enrolments, made and kept first if none is.
	Authority(ctx context.Context) (a *device.Authority, created bool, err error)
	// Identity returns the cloud's own key pair, which names its replica
	// and signs the changes made at the cloud, made first (for a replica
	// of ID newID) if none is kept.
	Identity(ctx context.Context, newID string) (id *device.Identity, created bool, err error)
	// AddToRoster keeps a signed enrolment or revocation (from the
	// Authority) in the relay roster.
	AddToRoster(ctx context.Context, signed []byte) error
	// MergeRoster merges into r the roster's records kept since version
	// (0: all of them) and returns the version it read up to. It merges
	// nothing when nothing was kept since.
	MergeRoster(ctx context.Context, r *device.Roster, since int64) (version int64, err error)
	// RecordEnrolment appends e to the list of enrolments and revocations.
	RecordEnrolment(ctx context.Context, e enrolment) error
	// Enrolments returns that list, oldest first.
	Enrolments(ctx context.Context) ([]enrolment, error)
	// Served returns the cloud's replica ID and the URL it last served on
	// ("" if it never served).
	Served(ctx context.Context) (info, error)
	// SetServed records where a node serves (the URL enrol puts in
	// credentials by default).
	SetServed(ctx context.Context, in info) error
	// TicketKeys returns the TLS session ticket keys every node uses,
	// as httpsync.SetTicketKeys takes them (the key to encrypt with
	// first), rotating them first (see ticketRotation). Two nodes
	// rotating at once make one key.
	TicketKeys(ctx context.Context, now time.Time) ([][32]byte, error)
	// Close releases the state's resources.
	Close() error
}

// enrolment is one entry of the list of enrolments (devices.jsonl), or,
// with Revoked set, a revocation.
type enrolment struct {
	Device   string    `json:"device"`
	Clinic   string    `json:"clinic"`
	Replica  string    `json:"replica"`
	Key      string    `json:"key,omitempty"` // the device key's fingerprint
	Serial   string    `json:"serial,omitempty"`
	Issued   time.Time `json:"issued"`
	NotAfter time.Time `json:"not_after"`
	File     string    `json:"file,omitempty"`
	Revoked  time.Time `json:"revoked,omitzero"`
}

// cloudClinic is the clinic the cloud's own identity is made for.
const cloudClinic = "cloud"

// newIdentity makes the cloud's key pair for replica id.
func newIdentity(id string) (*device.Identity, error) {
	return device.Generate(id, cloudClinic)
}

// rosterConfig trusts the cloud's own authority.
func rosterConfig(a *device.Authority) device.RosterConfig {
	return device.RosterConfig{Authorities: []device.TrustedAuthority{{Key: a.PublicKey()}}}
}

// The operator key seals the secrets a database keeps (the CA key, the
// authority key, the cloud's key pair): XChaCha20-Poly1305, each secret
// bound to its name. The database never holds the key.

// envKey names the environment variable that may hold the operator key.
const envKey = "CHARTSYNC_CLOUD_KEY"

// errWrongKey: the operator key does not open a sealed secret.
var errWrongKey = errors.New("the operator key does not open the cloud's secrets (a different key sealed them, or they were altered)")

// errNoKey: no operator key was given.
var errNoKey = errors.New("no operator key: pass -key-file FILE or set " + envKey + " (cloud init -db URL -key-file FILE makes one)")

// errBadKey: the operator key given is not one.
var errBadKey = errors.New("not an operator key (64 hex digits, as cloud init writes)")

// sealVersion is the first byte of a sealed secret.
const sealVersion = 1

// operatorKey is the key that seals the database's secrets.
type operatorKey struct {
	k [chacha20poly1305.KeySize]byte
}

func (*operatorKey) String() string   { return "operator key" }
func (*operatorKey) GoString() string { return "operator key" }

// newOperatorKey returns a random key and its text form.
func newOperatorKey() (*operatorKey, string) {
	var k operatorKey
	rand.Read(k.k[:])
	return &k, hex.EncodeToString(k.k[:]) + "\n"
}

// parseOperatorKey reads the text form: 64 hex digits, blanks around them
// ignored.
func parseOperatorKey(s string) (*operatorKey, error) {
	s = strings.TrimSpace(s)
	var k operatorKey
	if len(s) != 2*len(k.k) {
		return nil, errBadKey
	}
	if _, err := hex.Decode(k.k[:], []byte(s)); err != nil {
		return nil, errBadKey
	}
	return &k, nil
}

// loadOperatorKey reads the key from path, or else from $CHARTSYNC_CLOUD_KEY.
// A file that others may read is refused.
func loadOperatorKey(path string) (*operatorKey, error) {
	if path == "" {
		v := os.Getenv(envKey)
		if v == "" {
			return nil, errNoKey
		}
		k, err := parseOperatorKey(v)
		if err != nil {
			return nil, fmt.Errorf("$%s: %w", envKey, err)
		}
		return k, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("operator key: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("operator key: %w", err)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("operator key %s has mode %v: others may read it; chmod 600 it", path, fi.Mode().Perm())
	}
	data, err := io.ReadAll(io.LimitReader(f, 256))
	if err != nil {
		return nil, fmt.Errorf("operator key: %w", err)
	}
	k, err := parseOperatorKey(string(data))
	if err != nil {
		return nil, fmt.Errorf("operator key %s: %w", path, err)
	}
	return k, nil
}

func secretLabel(name string) []byte { return []byte("chartsync cloud secret v1: " + name) }

// seal encrypts the secret called name.
func (k *operatorKey) seal(name string, plain []byte) []byte {
	aead, err := chacha20poly1305.NewX(k.k[:])
	if err != nil {
		panic(err) // the key has the right length by construction
	}
	out := make([]byte, 1+aead.NonceSize(), 1+aead.NonceSize()+len(plain)+aead.Overhead())
	out[0] = sealVersion
	rand.Read(out[1:])
	return aead.Seal(out, out[1:], plain, secretLabel(name))
}

// open decrypts the secret called name, or gives an error matching
// errWrongKey.
func (k *operatorKey) open(name string, sealed []byte) ([]byte, error) {
	aead, err := chacha20poly1305.NewX(k.k[:])
	if err != nil {
		panic(err)
	}
	if len(sealed) < 1+aead.NonceSize()+aead.Overhead() || sealed[0] != sealVersion {
		return nil, fmt.Errorf("secret %s is not sealed as this program seals: %w", name, errWrongKey)
	}
	plain, err := aead.Open(nil, sealed[1:1+aead.NonceSize()], sealed[1+aead.NonceSize():], secretLabel(name))
	if err != nil {
		return nil, fmt.Errorf("secret %s: %w", name, errWrongKey)
	}
	return plain, nil
}
