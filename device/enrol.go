package device

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/chartsync/chartsync/internal/atomicfile"

	"github.com/chartsync/chartsync/internal/wire"
)

// Authority is an enrolment authority's secret key: the cloud's, or a hub
// administrator's. It signs the enrolment records that tell every replica
// which device runs which replica, for which clinic, with which keys. It is
// safe for concurrent use.
type Authority struct {
	key ed25519.PrivateKey
}

// NewAuthority makes a fresh authority key.
func NewAuthority() (*Authority, error) {
	_, sk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate authority key: %w", err)
	}
	return &Authority{key: sk}, nil
}

// String names the authority by its key's fingerprint, never printing the
// secret key.
func (a *Authority) String() string { return "enrolment authority " + Fingerprint(a.PublicKey()) }

// GoString is String, for %#v.
func (a *Authority) GoString() string { return a.String() }

// PublicKey returns the key that rosters trust (see RosterConfig).
func (a *Authority) PublicKey() ed25519.PublicKey { return a.key.Public().(ed25519.PublicKey) }

// Save writes the authority key to path (0600, atomically, as
// Identity.Save).
func (a *Authority) Save(path string) error {
	data, _ := a.MarshalBinary()
	if err := atomicfile.Write(path, data, atomicfile.Options{Perm: 0o600}); err != nil {
		return fmt.Errorf("save authority key: %w", err)
	}
	return nil
}

// MarshalBinary returns the authority's secret key as the bytes Save
// writes to its file, for a keeper other than a file (a database, sealed
// by the caller): they are as secret as the file. It never fails.
func (a *Authority) MarshalBinary() ([]byte, error) {
	return wire.Encode(kindAuthority, authorityVersion, a.key.Seed()), nil
}

// ParseAuthority reads the bytes of MarshalBinary (or of a file Save
// wrote). Damaged bytes are refused with an error matching ErrMalformed,
// ErrVersion or ErrTooLarge.
func ParseAuthority(data []byte) (*Authority, error) {
	a, err := decodeAuthority(data)
	if err != nil {
		return nil, fmt.Errorf("parse authority key: %w", err)
	}
	return a, nil
}

// LoadAuthority reads an authority key saved by Save, refusing one that
// others may read with ErrInsecureKeyFile.
func LoadAuthority(path string) (*Authority, error) {
	data, err := readSecret(path)
	if err != nil {
		return nil, fmt.Errorf("load authority key: %w", err)
	}
	a, err := decodeAuthority(data)
	if err != nil {
		return nil, fmt.Errorf("load authority key %s: %w", path, err)
	}
	return a, nil
}

// decodeAuthority decodes an authority key file: a wire frame of kind 'A'
// holding the ed25519 seed.
func decodeAuthority(data []byte) (*Authority, error) {
	_, seed, err := wire.Decode(data, kindAuthority, authorityVersion, maxKeyFileBytes)
	if err != nil {
		return nil, err
	}
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("seed of %d bytes: %w", len(seed), ErrMalformed)
	}
	return &Authority{key: ed25519.NewKeyFromSeed(seed)}, nil
}

// Enrol signs an enrolment of the device pub, valid from issued for
// lifetime, and returns the enrolment file's bytes, to add to rosters
// (Roster.Add) or hand over on a USB stick.
func (a *Authority) Enrol(pub Public, issued time.Time, lifetime time.Duration) ([]byte, error) {
	if err := pub.Validate(); err != nil {
		return nil, fmt.Errorf("enrol device: %w", err)
	}
	if lifetime <= 0 {
		return nil, fmt.Errorf("enrol device %s: lifetime %v is not positive", pub.ReplicaID, lifetime)
	}
	e := Enrolment{Device: pub, Issued: issued, Expires: issued.Add(lifetime)}
	return a.sign(e)
}

// Revoke signs a revocation of the replica's enrolment, in force from at,
// that names no limit on the device's changes: a record of the first
// format, whose every change signature still verifies (see
// Roster.AcceptedUpTo). Use RevokeAccepting, which names the changes the
// authority accepts. Added to a roster, it supersedes every enrolment of
// the replica issued before at, and Lookup then returns ErrRevoked.
func (a *Authority) Revoke(replicaID, clinic string, at time.Time) ([]byte, error) {
	return a.revoke(replicaID, clinic, at, nil)
}

// RevokeAccepting signs a revocation of the replica's enrolment, in force
// from at, naming the last of the device's changes the authority accepts:
// per chart, the highest Automerge sequence number of the device's actor
// (its replica ID) that the authority's replica held when it revoked.
// Every replica whose roster holds the record refuses the device's other
// changes (Roster.AcceptedUpTo): those of a greater sequence number, and
// any in a chart accepted does not name. An empty accepted accepts none.
// The record is refused with ErrTooLarge past MaxRevocationBytes (about
// 25,000 charts).
func (a *Authority) RevokeAccepting(replicaID, clinic string, at time.Time, accepted map[string]uint64) ([]byte, error) {
	if accepted == nil {
		accepted = map[string]uint64{}
	}
	return a.revoke(replicaID, clinic, at, accepted)
}

func (a *Authority) revoke(replicaID, clinic string, at time.Time, accepted map[string]uint64) ([]byte, error) {
	if err := checkReplicaID(replicaID); err != nil {
		return nil, fmt.Errorf("revoke device: %w", err)
	}
	if err := CheckClinic(clinic); err != nil {
		return nil, fmt.Errorf("revoke device: %w", err)
	}
	for chart, seq := range accepted {
		if chart == "" || len(chart) > MaxChartIDLen || seq == 0 {
			return nil, fmt.Errorf("revoke device %s: accepted chart %q up to %d: %w", replicaID, chart, seq, ErrMalformed)
		}
	}
	e := Enrolment{Device: Public{ReplicaID: replicaID, Clinic: clinic}, Issued: at, Expires: at, Revoked: true, Accepted: maps.Clone(accepted)}
	data, err := a.sign(e)
	if err != nil {
		return nil, err
	}
	if len(data) > MaxRevocationBytes {
		return nil, fmt.Errorf("revoke device %s: a record of %d bytes accepting changes in %d charts, limit %d bytes: %w", replicaID, len(data), len(accepted), MaxRevocationBytes, ErrTooLarge)
	}
	return data, nil
}

// EnrolRequest checks a request made by Identity.Request (the device
// proves it holds the signing key it asks to be enrolled with) and enrols
// that device as Enrol does.
func (a *Authority) EnrolRequest(request []byte, issued time.Time, lifetime time.Duration) ([]byte, error) {
	pub, err := ParseRequest(request)
	if err != nil {
		return nil, err
	}
	return a.Enrol(pub, issued, lifetime)
}

func (a *Authority) sign(e Enrolment) ([]byte, error) {
	if e.Issued.Unix() < 0 || e.Expires.Unix() > maxUnix || e.Expires.Before(e.Issued) {
		return nil, fmt.Errorf("enrolment of %s: times %v to %v are out of range", e.Device.ReplicaID, e.Issued, e.Expires)
	}
	e.Authority = a.PublicKey()
	body := e.appendSigned(nil)
	if len(body)+ed25519.SignatureSize > MaxRevocationBytes {
		return nil, fmt.Errorf("enrolment of %s: a body of %d bytes, limit %d: %w", e.Device.ReplicaID, len(body)+ed25519.SignatureSize, MaxRevocationBytes, ErrTooLarge)
	}
	body = append(body, ed25519.Sign(a.key, signedMessage(PurposeEnrolment, body))...)
	version := byte(enrolmentVersion1)
	if e.Accepted != nil {
		version = enrolmentVersion // only a revocation naming its accepted changes needs the second format
	}
	return wire.Encode(kindEnrolment, version, body), nil
}

// Enrolment is an authority's signed statement that a device (replica ID,
// clinic, signing key, age recipient) is enrolled from Issued until
// Expires, or, if Revoked, that it no longer is.
type Enrolment struct {
	Device  Public
	Issued  time.Time // UTC, whole seconds
	Expires time.Time // UTC, whole seconds
	Revoked bool
	// Accepted, on a revocation of the second format (RevokeAccepting),
	// names the device's changes the authority accepts: per chart, the
	// highest sequence number of the device's actor accepted. nil on an
	// enrolment and on a revocation of the first format (Revoke), which
	// names no limit.
	Accepted  map[string]uint64
	Authority ed25519.PublicKey // the key that signed it

	raw []byte   // the signed file
	sum [32]byte // its RecordDigest
}

const (
	flagRevoked  = 1
	flagAccepted = 2 // a revocation followed by the changes accepted (format version 2)
)

// MaxChartIDLen bounds a chart ID named by a revocation.
const MaxChartIDLen = 64

// Raw returns the signed enrolment file the record was decoded from.
func (e Enrolment) Raw() []byte { return e.raw }

// ValidAt reports whether the enrolment is in force at t: not revoked and
// t before Expires.
func (e Enrolment) ValidAt(t time.Time) bool { return !e.Revoked && t.Before(e.Expires) }

// appendSigned appends the signed part of an enrolment's body:
//
//	authority key 32 | flags 1 | replica ID 16 | clinic (len-prefixed) |
//	signing key (len-prefixed, 32 or 0 if revoked) | age recipient
//	(len-prefixed) | issued, expires (uvarint Unix seconds)
//
// and, with flagAccepted (a revocation of format version 2):
//
//	count (uvarint) | count × (chart ID (len-prefixed), seq (uvarint)),
//	chart IDs in increasing byte order, each seq at least 1
func (e Enrolment) appendSigned(b []byte) []byte {
	b = append(b, e.Authority...)
	var flags byte
	if e.Revoked {
		flags |= flagRevoked
	}
	if e.Accepted != nil {
		flags |= flagAccepted
	}
	b = append(b, flags)
	rid, _ := hex.DecodeString(e.Device.ReplicaID)
	b = append(b, rid...)
	b = wire.AppendBytes(b, []byte(e.Device.Clinic))
	b = wire.AppendBytes(b, e.Device.SignKey)
	b = wire.AppendBytes(b, []byte(e.Device.AgeRecipient))
	b = binary.AppendUvarint(b, uint64(e.Issued.Unix()))
	b = binary.AppendUvarint(b, uint64(e.Expires.Unix()))
	if e.Accepted == nil {
		return b
	}
	charts := slices.Sorted(maps.Keys(e.Accepted))
	b = binary.AppendUvarint(b, uint64(len(charts)))
	for _, c := range charts {
		b = wire.AppendBytes(b, []byte(c))
		b = binary.AppendUvarint(b, e.Accepted[c])
	}
	return b
}

// DecodeEnrolment parses an enrolment file and checks that it is signed by
// the authority key it names. It does not decide whether that authority is
// trusted, nor whether the record is in force: Roster.Add does. Errors
// match ErrMalformed, ErrVersion, ErrTooLarge or ErrBadSignature.
func DecodeEnrolment(data []byte) (Enrolment, error) {
	e, err := decodeEnrolment(data)
	if err != nil {
		return Enrolment{}, fmt.Errorf("decode enrolment: %w", err)
	}
	return e, nil
}

func decodeEnrolment(data []byte) (Enrolment, error) {
	// Only a revocation of the second format may be over
	// MaxEnrolmentBytes; anything else is refused by its size unread.
	if len(data) > MaxRevocationBytes || len(data) > MaxEnrolmentBytes && (len(data) < 5 || data[4] != enrolmentVersion) {
		return Enrolment{}, fmt.Errorf("%d bytes: %w", len(data), ErrTooLarge)
	}
	version, body, err := wire.Decode(data, kindEnrolment, enrolmentVersion, MaxRevocationBytes)
	if err != nil {
		return Enrolment{}, err
	}
	if version == enrolmentVersion1 && len(data) > MaxEnrolmentBytes {
		return Enrolment{}, fmt.Errorf("%d bytes: %w", len(data), ErrTooLarge)
	}
	r := wire.NewReader(body)
	var e Enrolment
	auth, err := r.Fixed(ed25519.PublicKeySize)
	if err != nil {
		return Enrolment{}, err
	}
	flags, err := r.Fixed(1)
	if err != nil {
		return Enrolment{}, err
	}
	rid, err := r.Fixed(16)
	if err != nil {
		return Enrolment{}, err
	}
	clinic, err := r.Bytes(MaxClinicLen)
	if err != nil {
		return Enrolment{}, err
	}
	sk, err := r.Bytes(ed25519.PublicKeySize)
	if err != nil {
		return Enrolment{}, err
	}
	ar, err := r.Bytes(maxAgeKeyLen)
	if err != nil {
		return Enrolment{}, err
	}
	var times [2]uint64
	for i := range times {
		if times[i], err = r.Uvarint(); err != nil {
			return Enrolment{}, err
		}
		if times[i] > maxUnix {
			return Enrolment{}, fmt.Errorf("time %d out of range: %w", times[i], ErrMalformed)
		}
	}
	var accepted map[string]uint64
	if flags[0]&flagAccepted != 0 {
		if version < enrolmentVersion || flags[0]&flagRevoked == 0 {
			return Enrolment{}, fmt.Errorf("accepted changes on a record of version %d, flags %#x: %w", version, flags[0], ErrMalformed)
		}
		if accepted, err = decodeAccepted(r); err != nil {
			return Enrolment{}, err
		}
	} else if version != enrolmentVersion1 {
		return Enrolment{}, fmt.Errorf("a record of version %d without accepted changes: %w", version, ErrMalformed)
	}
	signedLen := len(body) - r.Len()
	sig, err := r.Fixed(ed25519.SignatureSize)
	if err != nil {
		return Enrolment{}, err
	}
	if err := r.Done(); err != nil {
		return Enrolment{}, err
	}
	if flags[0]&^(flagRevoked|flagAccepted) != 0 {
		return Enrolment{}, fmt.Errorf("unknown flags %#x: %w", flags[0], ErrMalformed)
	}
	e = Enrolment{
		Device: Public{
			ReplicaID:    hex.EncodeToString(rid),
			Clinic:       string(clinic),
			AgeRecipient: string(ar),
		},
		Issued:    time.Unix(int64(times[0]), 0).UTC(),
		Expires:   time.Unix(int64(times[1]), 0).UTC(),
		Revoked:   flags[0]&flagRevoked != 0,
		Accepted:  accepted,
		Authority: bytes.Clone(auth),
		raw:       bytes.Clone(data),
		sum:       RecordDigest(data),
	}
	if len(sk) > 0 {
		e.Device.SignKey = bytes.Clone(sk)
	}
	if e.Expires.Before(e.Issued) {
		return Enrolment{}, fmt.Errorf("expires before issued: %w", ErrMalformed)
	}
	if e.Revoked {
		if len(sk) != 0 || len(ar) != 0 {
			return Enrolment{}, fmt.Errorf("revocation carries keys: %w", ErrMalformed)
		}
		if err := CheckClinic(e.Device.Clinic); err != nil {
			return Enrolment{}, err
		}
	} else if err := e.Device.Validate(); err != nil {
		return Enrolment{}, err
	}
	if !ed25519.Verify(e.Authority, signedMessage(PurposeEnrolment, body[:signedLen]), sig) {
		return Enrolment{}, fmt.Errorf("enrolment of %s: %w", e.Device.ReplicaID, ErrBadSignature)
	}
	return e, nil
}

// decodeAccepted reads a revocation's accepted changes (see appendSigned):
// chart IDs strictly increasing, so a record has one encoding.
func decodeAccepted(r *wire.Reader) (map[string]uint64, error) {
	n, err := r.Count(2)
	if err != nil {
		return nil, err
	}
	out := make(map[string]uint64, min(n, 1024))
	prev := ""
	for i := range n {
		c, err := r.Bytes(MaxChartIDLen)
		if err != nil {
			return nil, fmt.Errorf("accepted chart %d: %w", i, err)
		}
		seq, err := r.Uvarint()
		if err != nil {
			return nil, fmt.Errorf("accepted chart %d: %w", i, err)
		}
		if len(c) == 0 || seq == 0 || (i > 0 && string(c) <= prev) {
			return nil, fmt.Errorf("accepted chart %d %q up to %d: %w", i, c, seq, ErrMalformed)
		}
		prev = string(c)
		out[prev] = seq
	}
	return out, nil
}

// maxUnix bounds times on the wire (year 9999), so every time converts.
const maxUnix = 253402300799

// Request returns an enrolment request: the device's public identity,
// signed with its own signing key to prove the device holds it. It carries
// no secret and may travel by any means to an authority
// (Authority.EnrolRequest).
func (id *Identity) Request() []byte {
	pub := id.Public()
	body := appendPublic(nil, pub)
	body = append(body, id.Sign(PurposeRequest, body)...)
	return wire.Encode(kindRequest, requestVersion, body)
}

// PEMRequest is the PEM block type of an enrolment request in text form
// (RequestPEM).
const PEMRequest = "CHARTSYNC ENROLMENT REQUEST"

// maxRequestPEMBytes bounds a request in text form: base64 of
// MaxEnrolmentBytes, headers and explanatory lines.
const maxRequestPEMBytes = 4 * MaxEnrolmentBytes

// RequestPEM returns Request as text, to mail, paste or print: a few
// lines saying what it is, then a PEM block of type PEMRequest whose
// headers repeat the replica, clinic and key fingerprint for a person to
// read (they are not trusted: ParseRequest reads the signed bytes only).
// ParseRequest reads both forms.
func (id *Identity) RequestPEM() []byte {
	pub := id.Public()
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "# chartsync enrolment request of device %s of clinic %s.\n", pub.ReplicaID, pub.Clinic)
	fmt.Fprintf(&buf, "# It holds public keys only. Check the fingerprint with the device before enrolling it.\n")
	_ = pem.Encode(&buf, &pem.Block{Type: PEMRequest, Headers: map[string]string{
		"Replica": pub.ReplicaID, "Clinic": pub.Clinic, "Fingerprint": Fingerprint(pub.SignKey),
	}, Bytes: id.Request()})
	return buf.Bytes()
}

func appendPublic(b []byte, p Public) []byte {
	rid, _ := hex.DecodeString(p.ReplicaID)
	b = append(b, rid...)
	b = wire.AppendBytes(b, []byte(p.Clinic))
	b = append(b, p.SignKey...)
	return wire.AppendBytes(b, []byte(p.AgeRecipient))
}

// ParseRequest decodes an enrolment request (Request, or its text form
// RequestPEM) and checks its proof that the
// device holds the signing key. Errors match ErrMalformed, ErrVersion,
// ErrTooLarge or ErrBadSignature.
func ParseRequest(data []byte) (Public, error) {
	p, err := parseRequest(data)
	if err != nil {
		return Public{}, fmt.Errorf("parse enrolment request: %w", err)
	}
	return p, nil
}

func parseRequest(data []byte) (Public, error) {
	if len(data) > maxRequestPEMBytes {
		return Public{}, fmt.Errorf("%d bytes: %w", len(data), ErrTooLarge)
	}
	if b, _ := pem.Decode(data); b != nil {
		if b.Type != PEMRequest {
			return Public{}, fmt.Errorf("PEM block %q, not %q: %w", b.Type, PEMRequest, ErrMalformed)
		}
		data = b.Bytes
	}
	if len(data) > MaxEnrolmentBytes {
		return Public{}, fmt.Errorf("%d bytes: %w", len(data), ErrTooLarge)
	}
	_, body, err := wire.Decode(data, kindRequest, requestVersion, MaxEnrolmentBytes)
	if err != nil {
		return Public{}, err
	}
	r := wire.NewReader(body)
	rid, err := r.Fixed(16)
	if err != nil {
		return Public{}, err
	}
	clinic, err := r.Bytes(MaxClinicLen)
	if err != nil {
		return Public{}, err
	}
	sk, err := r.Fixed(ed25519.PublicKeySize)
	if err != nil {
		return Public{}, err
	}
	ar, err := r.Bytes(maxAgeKeyLen)
	if err != nil {
		return Public{}, err
	}
	signedLen := len(body) - r.Len()
	sig, err := r.Fixed(ed25519.SignatureSize)
	if err != nil {
		return Public{}, err
	}
	if err := r.Done(); err != nil {
		return Public{}, err
	}
	p := Public{ReplicaID: hex.EncodeToString(rid), Clinic: string(clinic), SignKey: bytes.Clone(sk), AgeRecipient: string(ar)}
	if err := p.Validate(); err != nil {
		return Public{}, err
	}
	if err := p.Verify(PurposeRequest, body[:signedLen], sig); err != nil {
		return Public{}, err
	}
	return p, nil
}

func fingerprint(key []byte) string {
	sum := sha256.Sum256(key)
	h := hex.EncodeToString(sum[:8])
	return h[0:4] + "-" + h[4:8] + "-" + h[8:12] + "-" + h[12:16]
}
