package device

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"github.com/chartsync/chartsync/internal/atomicfile"
	"io"
	"os"
	"runtime"
	"strings"

	"filippo.io/age"

	"github.com/chartsync/chartsync/internal/wire"
)

// Wire frame kinds of this package's files (see package internal/wire).
const (
	kindIdentity  = 'K'
	kindAuthority = 'A'
	kindEnrolment = 'E'
	kindRequest   = 'Q'
	kindRoster    = 'D'

	identityVersion  = 1
	authorityVersion = 1
	// enrolmentVersion 2 adds a revocation's accepted changes; records
	// without them are still written as version 1, which every build
	// reads.
	enrolmentVersion  = 2
	enrolmentVersion1 = 1
	requestVersion    = 1
	rosterVersion     = 1
)

// Limits on what decoders accept.
const (
	// MaxClinicLen bounds a clinic ID.
	MaxClinicLen = 100
	// MaxEnrolmentBytes bounds one encoded enrolment or request, or a
	// revocation of the first format.
	MaxEnrolmentBytes = 1024
	// MaxRevocationBytes bounds a revocation naming the changes accepted
	// (format version 2), and its decompressed body.
	MaxRevocationBytes = 1 << 20
	// MaxRosterBytes bounds an encoded roster file (about 200,000 devices).
	MaxRosterBytes  = 64 << 20
	maxKeyFileBytes = 1024
	maxAgeKeyLen    = 128
	// minEnrolmentBytes is the smallest encoded enrolment: a frame (12
	// bytes) around an authority key, flags, replica ID, three empty
	// length-prefixed fields, two one-byte times and a signature.
	minEnrolmentBytes = 12 + 32 + 1 + 16 + 3 + 2 + 64
	// maxInflation is how many times its file's size a roster's body may
	// be once decompressed.
	maxInflation = 16
)

// Signature purposes. Every signature in chartsync names what it signs, so a
// signature made for one purpose can never be replayed as another.
const (
	PurposeEnrolment = "enrolment/v1"
	PurposeRequest   = "enrolment-request/v1"
)

// signPrefix begins every message signed for a purpose.
const signPrefix = "chartsync/"

// signedMessage is what is actually signed for a purpose: a fixed prefix,
// the purpose, a zero byte, then the message.
func signedMessage(purpose string, msg []byte) []byte {
	out := make([]byte, 0, len(signPrefix)+len(purpose)+1+len(msg))
	out = append(out, signPrefix...)
	out = append(out, purpose...)
	out = append(out, 0)
	return append(out, msg...)
}

func checkPurpose(purpose string) {
	if purpose == "" || strings.IndexByte(purpose, 0) >= 0 {
		// A programming error, never input: purposes are constants.
		panic(fmt.Sprintf("device: invalid signature purpose %q", purpose))
	}
}

// Public is what others know of a device: the replica it runs, its
// clinic, the ed25519 key that verifies what it signs, and the age X25519
// recipient that bundles for it are encrypted to.
type Public struct {
	ReplicaID    string // 32 hex digits: the replica's ID and Automerge actor
	Clinic       string
	SignKey      ed25519.PublicKey
	AgeRecipient string // "age1..."
}

// Validate checks every field's form.
func (p Public) Validate() error {
	if err := checkReplicaID(p.ReplicaID); err != nil {
		return err
	}
	if err := CheckClinic(p.Clinic); err != nil {
		return err
	}
	if len(p.SignKey) != ed25519.PublicKeySize {
		return fmt.Errorf("device %s: signing key of %d bytes: %w", p.ReplicaID, len(p.SignKey), ErrMalformed)
	}
	if _, err := p.Recipient(); err != nil {
		return fmt.Errorf("device %s: %w", p.ReplicaID, err)
	}
	return nil
}

// Recipient parses the device's age recipient.
func (p Public) Recipient() (*age.X25519Recipient, error) {
	if len(p.AgeRecipient) > maxAgeKeyLen {
		return nil, fmt.Errorf("age recipient of %d bytes: %w", len(p.AgeRecipient), ErrTooLarge)
	}
	r, err := age.ParseX25519Recipient(p.AgeRecipient)
	if err != nil {
		return nil, fmt.Errorf("age recipient: %v: %w", err, ErrMalformed)
	}
	return r, nil
}

// Verify checks sig, made by this device for purpose over msg. It returns
// an error matching ErrBadSignature if it does not verify.
func (p Public) Verify(purpose string, msg, sig []byte) error {
	checkPurpose(purpose)
	if len(p.SignKey) != ed25519.PublicKeySize || len(sig) != ed25519.SignatureSize ||
		!ed25519.Verify(p.SignKey, signedMessage(purpose, msg), sig) {
		return fmt.Errorf("device %s, %s: %w", p.ReplicaID, purpose, ErrBadSignature)
	}
	return nil
}

// Equal reports whether two public identities are the same.
func (p Public) Equal(o Public) bool {
	return p.ReplicaID == o.ReplicaID && p.Clinic == o.Clinic && p.AgeRecipient == o.AgeRecipient && bytes.Equal(p.SignKey, o.SignKey)
}

// Fingerprint returns a short, human-comparable form of a signing key,
// for checking a key read aloud over a phone: 4 groups of 4 hex digits of
// the key's SHA-256.
func Fingerprint(key ed25519.PublicKey) string {
	return fingerprint(key)
}

func checkReplicaID(id string) error {
	b, err := hex.DecodeString(id)
	if err != nil || len(b) != 16 || hex.EncodeToString(b) != id {
		return fmt.Errorf("replica id %q is not 32 lower-case hex digits: %w", id, ErrMalformed)
	}
	return nil
}

// CheckClinic checks a clinic ID: 1 to MaxClinicLen letters, digits, '.',
// '-' or '_'.
func CheckClinic(c string) error {
	if c == "" || len(c) > MaxClinicLen {
		return fmt.Errorf("clinic id of %d bytes (want 1 to %d): %w", len(c), MaxClinicLen, ErrMalformed)
	}
	for _, r := range c {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
			return fmt.Errorf("clinic id %q: character %q not allowed: %w", c, r, ErrMalformed)
		}
	}
	return nil
}

// Identity is a device's secret keys, bound to the replica it runs: an
// ed25519 signing key and an age X25519 identity. It is safe for
// concurrent use (it never changes after Generate or Load).
type Identity struct {
	replicaID string
	clinic    string
	sign      ed25519.PrivateKey
	age       *age.X25519Identity
}

// Generate makes fresh keys for the replica replicaID of clinic.
func Generate(replicaID, clinic string) (*Identity, error) {
	if err := checkReplicaID(replicaID); err != nil {
		return nil, fmt.Errorf("generate device keys: %w", err)
	}
	if err := CheckClinic(clinic); err != nil {
		return nil, fmt.Errorf("generate device keys: %w", err)
	}
	_, sk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate signing key: %w", err)
	}
	ai, err := age.GenerateX25519Identity()
	if err != nil {
		return nil, fmt.Errorf("generate age identity: %w", err)
	}
	return &Identity{replicaID: replicaID, clinic: clinic, sign: sk, age: ai}, nil
}

// String names the identity without its secrets, so that logging or
// printing one never leaks a key.
func (id *Identity) String() string {
	return fmt.Sprintf("device %s of %s (signing key %s)", id.replicaID, id.clinic, Fingerprint(id.sign.Public().(ed25519.PublicKey)))
}

// GoString is String, for %#v.
func (id *Identity) GoString() string { return id.String() }

// ReplicaID returns the replica the keys belong to.
func (id *Identity) ReplicaID() string { return id.replicaID }

// Clinic returns the device's clinic.
func (id *Identity) Clinic() string { return id.clinic }

// Public returns what others may know of the device.
func (id *Identity) Public() Public {
	return Public{
		ReplicaID:    id.replicaID,
		Clinic:       id.clinic,
		SignKey:      id.sign.Public().(ed25519.PublicKey),
		AgeRecipient: id.age.Recipient().String(),
	}
}

// Sign signs msg for purpose (a constant such as "relay/v1"; the same
// purpose must be given to Verify).
func (id *Identity) Sign(purpose string, msg []byte) []byte {
	checkPurpose(purpose)
	return ed25519.Sign(id.sign, signedMessage(purpose, msg))
}

// TLSSigner returns a crypto.Signer for the device's ed25519 signing key,
// for use as the private key of its TLS client certificate
// (tls.Certificate.PrivateKey): the cloud's device certificate is issued
// for this same key, so the key that authenticates the device over mutual
// TLS never leaves the device either. The signer does not expose the key
// (printing it shows only the fingerprint), and it refuses to sign any
// message that begins with the prefix of this package's purpose
// signatures ("chartsync/"), so what it signs can never pass for an
// enrolment request or a relay bundle signed with Sign. TLS 1.3
// CertificateVerify messages begin with 64 spaces and never collide.
func (id *Identity) TLSSigner() crypto.Signer { return &tlsSigner{key: id.sign} }

// tlsSigner signs TLS handshakes with a device's ed25519 key.
type tlsSigner struct{ key ed25519.PrivateKey }

func (s *tlsSigner) Public() crypto.PublicKey { return s.key.Public() }

// Sign signs message (ed25519 signs messages, not digests: opts must
// have HashFunc 0, as crypto/tls passes for ed25519).
func (s *tlsSigner) Sign(rand io.Reader, message []byte, opts crypto.SignerOpts) ([]byte, error) {
	if bytes.HasPrefix(message, []byte(signPrefix)) {
		return nil, fmt.Errorf("device: the TLS signer does not sign %q messages: %w", signPrefix, ErrBadSignature)
	}
	return s.key.Sign(rand, message, opts)
}

func (s *tlsSigner) String() string {
	return "TLS signer of device key " + Fingerprint(s.key.Public().(ed25519.PublicKey))
}

func (s *tlsSigner) GoString() string { return s.String() }

// AgeIdentity returns the identity that decrypts what was encrypted to
// Public().AgeRecipient, for age.Decrypt.
func (id *Identity) AgeIdentity() age.Identity { return id.age }

// encode returns the key file's bytes: a wire frame of kind 'K' holding the
// replica ID, the clinic, the ed25519 seed and the age identity.
func (id *Identity) encode() []byte {
	rid, _ := hex.DecodeString(id.replicaID)
	body := append([]byte(nil), rid...)
	body = wire.AppendBytes(body, []byte(id.clinic))
	body = append(body, id.sign.Seed()...)
	body = wire.AppendBytes(body, []byte(id.age.String()))
	return wire.Encode(kindIdentity, identityVersion, body)
}

func decodeIdentity(data []byte) (*Identity, error) {
	_, body, err := wire.Decode(data, kindIdentity, identityVersion, maxKeyFileBytes)
	if err != nil {
		return nil, err
	}
	r := wire.NewReader(body)
	rid, err := r.Fixed(16)
	if err != nil {
		return nil, err
	}
	clinic, err := r.Bytes(MaxClinicLen)
	if err != nil {
		return nil, err
	}
	seed, err := r.Fixed(ed25519.SeedSize)
	if err != nil {
		return nil, err
	}
	ak, err := r.Bytes(maxAgeKeyLen)
	if err != nil {
		return nil, err
	}
	if err := r.Done(); err != nil {
		return nil, err
	}
	if err := CheckClinic(string(clinic)); err != nil {
		return nil, err
	}
	ai, err := age.ParseX25519Identity(string(ak))
	if err != nil {
		return nil, fmt.Errorf("age identity: %v: %w", err, ErrMalformed)
	}
	return &Identity{replicaID: hex.EncodeToString(rid), clinic: string(clinic), sign: ed25519.NewKeyFromSeed(seed), age: ai}, nil
}

// MarshalBinary returns the identity's secret keys as the bytes Save
// writes to its file, for a keeper other than a file (a database, sealed
// by the caller): they are as secret as the file. It never fails.
func (id *Identity) MarshalBinary() ([]byte, error) { return id.encode(), nil }

// ParseIdentity reads the bytes of MarshalBinary (or of a file Save
// wrote). Damaged bytes are refused with an error matching ErrMalformed,
// ErrVersion or ErrTooLarge.
func ParseIdentity(data []byte) (*Identity, error) {
	id, err := decodeIdentity(data)
	if err != nil {
		return nil, fmt.Errorf("parse device keys: %w", err)
	}
	return id, nil
}

// Save writes the identity to path, readable by its owner only (0600),
// atomically: a temporary file in the same directory, fsynced, renamed over
// path, and the directory fsynced. An existing file is replaced.
func (id *Identity) Save(path string) error {
	if err := atomicfile.Write(path, id.encode(), atomicfile.Options{Perm: 0o600}); err != nil {
		return fmt.Errorf("save device keys: %w", err)
	}
	return nil
}

// Load reads an identity saved by Save. A file that others may read is
// refused with ErrInsecureKeyFile (except on Windows, which has no such
// permission bits); a damaged one with ErrMalformed.
func Load(path string) (*Identity, error) {
	data, err := readSecret(path)
	if err != nil {
		return nil, fmt.Errorf("load device keys: %w", err)
	}
	id, err := decodeIdentity(data)
	if err != nil {
		return nil, fmt.Errorf("load device keys %s: %w", path, err)
	}
	return id, nil
}

// readSecret reads a small secret file, refusing one others may read.
func readSecret(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file: %w", path, ErrMalformed)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s has mode %v (want 0600): %w", path, fi.Mode().Perm(), ErrInsecureKeyFile)
	}
	if fi.Size() > maxKeyFileBytes {
		return nil, fmt.Errorf("%s is %d bytes: %w", path, fi.Size(), ErrTooLarge)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxKeyFileBytes {
		return nil, fmt.Errorf("%s grew while read: %w", path, ErrTooLarge)
	}
	return data, nil
}
