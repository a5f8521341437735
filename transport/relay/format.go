package relay

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"filippo.io/age"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/internal/wire"
	"github.com/chartsync/chartsync/replica"
)

// Errors of this package. Match them with errors.Is. A sender's key that
// is unknown, expired or revoked, and a signature that does not verify,
// give the errors of package device (device.ErrUnknownDevice,
// device.ErrExpired, device.ErrRevoked, device.ErrBadSignature).
var (
	// ErrMalformed: the bytes are not a well-formed relay bundle.
	ErrMalformed = wire.ErrMalformed
	// ErrVersion: a relay bundle of a format version this build does not
	// understand.
	ErrVersion = wire.ErrVersion
	// ErrTooLarge: a relay bundle or a field of it is over its limit.
	ErrTooLarge = wire.ErrTooLarge
	// ErrExpired: the relay bundle's lifetime is over.
	ErrExpired = errors.New("relay: bundle expired")
	// ErrReplayed: a bundle this endpoint has opened already.
	ErrReplayed = errors.New("relay: bundle already opened")
	// ErrWrongRecipient: the relay bundle is addressed to another replica.
	ErrWrongRecipient = errors.New("relay: bundle addressed to another replica")
	// ErrUndecryptable: the body cannot be decrypted with the recipient's
	// key (it was encrypted to another key, or damaged).
	ErrUndecryptable = errors.New("relay: bundle body cannot be decrypted")
	// ErrHeaderMismatch: the decrypted bundle names another sender or
	// recipient than the signed header.
	ErrHeaderMismatch = errors.New("relay: bundle body does not match its header")
	// ErrNodeFull: the node's storage budget cannot hold the bundle.
	ErrNodeFull = errors.New("relay: node storage budget exceeded")
	// ErrTooManyHops: the bundle has made more hops than a node accepts.
	ErrTooManyHops = errors.New("relay: bundle made too many hops")
)

// BadInput lists the errors a refused relay bundle matches, for callers
// that sort refusals from failures of their own (a full disk).
var BadInput = []error{
	ErrMalformed, ErrVersion, ErrTooLarge, ErrExpired, ErrReplayed, ErrWrongRecipient, ErrUndecryptable,
	ErrHeaderMismatch, ErrTooManyHops, device.ErrBadSignature, device.ErrUnknownDevice,
	device.ErrExpired, device.ErrRevoked,
	replica.ErrMalformedBundle, replica.ErrBundleVersion, replica.ErrBundleTooLarge, replica.ErrWrongRecipient,
	// What a checking replica refuses a bundle for: its changes, not the
	// recipient, are at fault, and retrying it changes nothing.
	replica.ErrUnauthorizedChange, replica.ErrForgedChange, replica.ErrRevokedChange, replica.ErrOutOfScope,
	replica.ErrWrongSender,
}

func isBadInput(err error) bool {
	for _, target := range BadInput {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// maxInflation is how many times its file's size a frame's body may be
// once decompressed. The bodies this package writes are ciphertext,
// signatures and random IDs (bundles), or JSON of hex IDs and numbers (an
// endpoint's state), which compress 3 to 1 at best; a frame claiming more
// is refused before anything is inflated, so what a file can make a
// decoder allocate follows the bytes it holds, not what its headers say.
const maxInflation = 16

// decodeFrame decodes a wire frame of the given kind whose body may be
// up to limit bytes, and no more than maxInflation times the frame. A
// frame claiming more than that is truncated (ErrMalformed): it cannot be
// the whole of an honest file.
func decodeFrame(data []byte, kind, version byte, limit int) ([]byte, error) {
	bound := min(limit, len(data)*maxInflation)
	_, body, err := wire.Decode(data, kind, version, bound)
	if bound < limit && errors.Is(err, wire.ErrTooLarge) {
		return nil, fmt.Errorf("frame of %d bytes claims a body of more than %d times that: %w", len(data), maxInflation, wire.ErrTruncated)
	}
	return body, err
}

const (
	frameKind = 'Y'
	// Version is the relay bundle format this build writes.
	Version = 1
	// Purpose is the signature purpose of relay bundles (see package device).
	Purpose = "relay-bundle/v1"
	// MaxBundleBytes bounds a relay bundle file.
	MaxBundleBytes = 64 << 20
	// MaxAckIDs bounds the bundles one acknowledgement names.
	MaxAckIDs = 4096
	headerLen = 1 + 16 + 16 + 16 + 2*10 // upper bound; the header is length-prefixed
	maxUnix   = 253402300799            // year 9999
)

// Kind is what a relay bundle carries.
type Kind byte

// Kinds of relay bundle.
const (
	// KindChanges carries a replica bundle, encrypted to the recipient.
	KindChanges Kind = 1
	// KindAck acknowledges relay bundles the recipient of this one sent:
	// a signed list of their IDs, in the clear so relays can prune them.
	KindAck Kind = 2
)

func (k Kind) String() string {
	switch k {
	case KindChanges:
		return "changes"
	case KindAck:
		return "ack"
	}
	return fmt.Sprintf("kind(%d)", byte(k))
}

// Header is what anyone, relays included, can read of a relay bundle.
// Everything but Hops is signed by the sender.
type Header struct {
	Kind      Kind
	Sender    string // replica ID
	Recipient string // replica ID
	ID        string // 32 hex digits, random per bundle
	Created   time.Time
	Expires   time.Time
	// Hops counts the relay nodes the bundle was copied through. It is
	// not signed: relays increment it, so it is advice for relays (see
	// NodeConfig.MaxHops), never trusted by a recipient.
	Hops int
}

// Expired reports whether the bundle's lifetime is over at t.
func (h Header) Expired(t time.Time) bool { return !t.Before(h.Expires) }

// Envelope is a parsed relay bundle: its header, its payload (age
// ciphertext for KindChanges, acknowledged IDs for KindAck) and the
// sender's signature over the signed header and the payload.
//
// Wire format: a frame of package internal/wire, kind 'Y', version 1, whose
// body is
//
//	hops      uvarint                      (not signed)
//	header    uvarint length + bytes:      kind 1 | sender 16 | recipient 16 |
//	                                       id 16 | created, expires uvarint Unix s
//	payload   uvarint length + bytes
//	signature 64 bytes: ed25519 by the sender, purpose "relay-bundle/v1",
//	          over the length-prefixed header and the length-prefixed payload
//	          (all of the body between the hop count and the signature)
type Envelope struct {
	Header
	signed  []byte // length-prefixed header and payload: what the signature covers
	Payload []byte
	sig     []byte
}

func idHex(b []byte) string { return hex.EncodeToString(b) }

func hexID(s string) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 16 || hex.EncodeToString(b) != s {
		return nil, fmt.Errorf("id %q is not 32 lower-case hex digits: %w", s, ErrMalformed)
	}
	return b, nil
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return idHex(b[:])
}

func encodeHeader(h Header) ([]byte, error) {
	var b []byte
	b = append(b, byte(h.Kind))
	for _, id := range []string{h.Sender, h.Recipient, h.ID} {
		raw, err := hexID(id)
		if err != nil {
			return nil, err
		}
		b = append(b, raw...)
	}
	if h.Created.Unix() < 0 || h.Expires.Unix() > maxUnix || h.Expires.Before(h.Created) {
		return nil, fmt.Errorf("bundle times %v to %v out of range", h.Created, h.Expires)
	}
	b = binary.AppendUvarint(b, uint64(h.Created.Unix()))
	return binary.AppendUvarint(b, uint64(h.Expires.Unix())), nil
}

// seal builds a relay bundle: header and payload, signed by id.
func seal(id *device.Identity, h Header, payload []byte) ([]byte, error) {
	hb, err := encodeHeader(h)
	if err != nil {
		return nil, err
	}
	signed := wire.AppendBytes(nil, hb)
	signed = wire.AppendBytes(signed, payload)
	body := binary.AppendUvarint(nil, uint64(h.Hops))
	body = append(body, signed...)
	body = append(body, id.Sign(Purpose, signed)...)
	if len(body) > MaxBundleBytes {
		return nil, fmt.Errorf("relay bundle of %d bytes: %w", len(body), ErrTooLarge)
	}
	return wire.Encode(frameKind, Version, body), nil
}

// Parse decodes a relay bundle's structure, bounding every length, without
// checking its signature (Verify does). Errors match ErrMalformed,
// ErrVersion or ErrTooLarge.
func Parse(data []byte) (*Envelope, error) {
	env, err := parse(data)
	if err != nil {
		return nil, fmt.Errorf("parse relay bundle: %w", err)
	}
	return env, nil
}

func parse(data []byte) (*Envelope, error) {
	if len(data) > MaxBundleBytes+64 {
		return nil, fmt.Errorf("%d bytes: %w", len(data), ErrTooLarge)
	}
	body, err := decodeFrame(data, frameKind, Version, MaxBundleBytes)
	if err != nil {
		return nil, err
	}
	r := wire.NewReader(body)
	hops, err := r.Uvarint()
	if err != nil {
		return nil, err
	}
	if hops > 1<<20 {
		return nil, fmt.Errorf("hop count %d: %w", hops, ErrMalformed)
	}
	signedStart := len(body) - r.Len()
	hb, err := r.Bytes(headerLen)
	if err != nil {
		return nil, err
	}
	payload, err := r.Bytes(MaxBundleBytes)
	if err != nil {
		return nil, err
	}
	signedEnd := len(body) - r.Len()
	sig, err := r.Fixed(64)
	if err != nil {
		return nil, err
	}
	if err := r.Done(); err != nil {
		return nil, err
	}
	h, err := parseHeader(hb)
	if err != nil {
		return nil, err
	}
	h.Hops = int(hops)
	env := &Envelope{Header: h, signed: body[signedStart:signedEnd], Payload: payload, sig: sig}
	if h.Kind == KindAck {
		if _, err := parseAck(payload); err != nil {
			return nil, err
		}
	}
	return env, nil
}

func parseHeader(hb []byte) (Header, error) {
	r := wire.NewReader(hb)
	k, err := r.Fixed(1)
	if err != nil {
		return Header{}, err
	}
	h := Header{Kind: Kind(k[0])}
	if h.Kind != KindChanges && h.Kind != KindAck {
		return Header{}, fmt.Errorf("bundle kind %d: %w", k[0], ErrMalformed)
	}
	for _, p := range []*string{&h.Sender, &h.Recipient, &h.ID} {
		raw, err := r.Fixed(16)
		if err != nil {
			return Header{}, err
		}
		*p = idHex(raw)
	}
	var ts [2]uint64
	for i := range ts {
		if ts[i], err = r.Uvarint(); err != nil {
			return Header{}, err
		}
		if ts[i] > maxUnix {
			return Header{}, fmt.Errorf("time %d: %w", ts[i], ErrMalformed)
		}
	}
	if err := r.Done(); err != nil {
		return Header{}, err
	}
	h.Created, h.Expires = time.Unix(int64(ts[0]), 0).UTC(), time.Unix(int64(ts[1]), 0).UTC()
	if h.Expires.Before(h.Created) {
		return Header{}, fmt.Errorf("bundle expires before it was created: %w", ErrMalformed)
	}
	if h.Sender == h.Recipient {
		return Header{}, fmt.Errorf("bundle sender is its recipient: %w", ErrMalformed)
	}
	return h, nil
}

// Verify checks the envelope's signature against its sender's enrolled
// key. Errors match device.ErrUnknownDevice, device.ErrExpired,
// device.ErrRevoked or device.ErrBadSignature.
func (e *Envelope) Verify(roster *device.Roster) error {
	if _, err := roster.Verify(e.Sender, Purpose, e.signed, e.sig); err != nil {
		return fmt.Errorf("relay bundle %s from %s: %w", e.ID, e.Sender, err)
	}
	return nil
}

// Acked returns the IDs an acknowledgement names (nil for other kinds).
func (e *Envelope) Acked() []string {
	if e.Kind != KindAck {
		return nil
	}
	ids, _ := parseAck(e.Payload) // checked by Parse
	return ids
}

// withHops re-encodes the envelope with another hop count. The signature
// still holds: the hop count is outside it.
func (e *Envelope) withHops(hops int) []byte {
	body := binary.AppendUvarint(nil, uint64(hops))
	body = append(body, e.signed...)
	body = append(body, e.sig...)
	return wire.Encode(frameKind, Version, body)
}

func encodeAck(ids []string) ([]byte, error) {
	if len(ids) == 0 || len(ids) > MaxAckIDs {
		return nil, fmt.Errorf("acknowledgement of %d bundles (want 1 to %d)", len(ids), MaxAckIDs)
	}
	b := binary.AppendUvarint(nil, uint64(len(ids)))
	for _, id := range ids {
		raw, err := hexID(id)
		if err != nil {
			return nil, err
		}
		b = append(b, raw...)
	}
	return b, nil
}

func parseAck(p []byte) ([]string, error) {
	r := wire.NewReader(p)
	n, err := r.Count(16)
	if err != nil {
		return nil, err
	}
	if n == 0 || n > MaxAckIDs {
		return nil, fmt.Errorf("acknowledgement of %d bundles: %w", n, ErrMalformed)
	}
	ids := make([]string, n)
	for i := range ids {
		raw, err := r.Fixed(16)
		if err != nil {
			return nil, err
		}
		ids[i] = idHex(raw)
	}
	if err := r.Done(); err != nil {
		return nil, err
	}
	return ids, nil
}

// encrypt encrypts plain to the age recipient.
func encrypt(plain []byte, to age.Recipient) ([]byte, error) {
	var buf bytes.Buffer
	w, err := age.Encrypt(&buf, to)
	if err != nil {
		return nil, fmt.Errorf("encrypt bundle: %w", err)
	}
	if _, err := w.Write(plain); err != nil {
		return nil, fmt.Errorf("encrypt bundle: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("encrypt bundle: %w", err)
	}
	return buf.Bytes(), nil
}

// decrypt decrypts an age ciphertext, bounding the plaintext.
func decrypt(ct []byte, id age.Identity) ([]byte, error) {
	r, err := age.Decrypt(bytes.NewReader(ct), id)
	if err != nil {
		return nil, fmt.Errorf("%v: %w", err, ErrUndecryptable)
	}
	plain, err := io.ReadAll(io.LimitReader(r, MaxBundleBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%v: %w", err, ErrUndecryptable)
	}
	if len(plain) > MaxBundleBytes {
		return nil, fmt.Errorf("decrypted body over %d bytes: %w", MaxBundleBytes, ErrTooLarge)
	}
	return plain, nil
}
