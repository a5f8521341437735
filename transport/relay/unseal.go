package relay

import (
	"fmt"
	"slices"
	"time"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/replica"
)

// Unsealed is a relay bundle of changes whose sender was authenticated and
// whose body was decrypted, not yet applied: what Unseal returns.
type Unsealed struct {
	Header
	// From is the sender's enrolment as the roster holds it: its replica
	// ID, clinic and public keys.
	From device.Public
	// Bundle is the replica bundle the relay bundle carries. It names the
	// same sender and recipient as the signed header.
	Bundle []byte
}

// Unseal checks a relay bundle of changes addressed to id's replica and
// returns the replica bundle it carries, without applying it and without
// remembering it. It is for a recipient that applies bundles its own way
// (a cloud, through its policy for the devices it serves) and keeps its
// own record of the bundles it applied, to refuse a replay; an Endpoint
// does both itself (Open, Collect).
//
// The checks are an endpoint's, in its order: the format, that id's
// replica is the recipient, that the bundle carries changes, that it has
// not expired at now, that its sender is enrolled in roster and signed it
// — all before anything is decrypted — then that the decrypted replica
// bundle names the signed sender and recipient. Errors match one of
// BadInput, and say which bundle and sender they refuse where the
// header could be read.
func Unseal(raw []byte, id *device.Identity, roster *device.Roster, now time.Time) (*Unsealed, error) {
	env, err := parse(raw)
	if err != nil {
		return nil, fmt.Errorf("open relay bundle: %w", err)
	}
	return unseal(env, id, roster, now)
}

func unseal(env *Envelope, id *device.Identity, roster *device.Roster, now time.Time) (*Unsealed, error) {
	if env.Recipient != id.ReplicaID() {
		return nil, fmt.Errorf("open relay bundle %s for %s: %w", env.ID, env.Recipient, ErrWrongRecipient)
	}
	if env.Kind != KindChanges {
		return nil, fmt.Errorf("open relay bundle %s: a %s carries no changes: %w", env.ID, env.Kind, ErrMalformed)
	}
	if env.Expired(now) {
		return nil, fmt.Errorf("open relay bundle %s: expired %s: %w", env.ID, env.Expires.Format(time.RFC3339), ErrExpired)
	}
	from, err := roster.Verify(env.Sender, Purpose, env.signed, env.sig)
	if err != nil {
		return nil, fmt.Errorf("open: relay bundle %s from %s: %w", env.ID, env.Sender, err)
	}
	plain, err := decrypt(env.Payload, id.AgeIdentity())
	if err != nil {
		return nil, fmt.Errorf("open relay bundle %s from %s: %w", env.ID, env.Sender, err)
	}
	b, err := replica.DecodeBundle(plain)
	if err != nil {
		return nil, fmt.Errorf("open relay bundle %s from %s: %w", env.ID, env.Sender, err)
	}
	if b.From != env.Sender || b.To != env.Recipient {
		return nil, fmt.Errorf("open relay bundle %s: signed by %s for %s, carries %s for %s: %w",
			env.ID, env.Sender, env.Recipient, b.From, b.To, ErrHeaderMismatch)
	}
	return &Unsealed{Header: env.Header, From: from, Bundle: plain}, nil
}

// Seal returns a relay bundle of changes carrying data, a replica bundle,
// from id's replica to peer: signed by id, encrypted to the X25519
// recipient of peer's enrolment in roster, created at now (to the second)
// and expiring lifetime later. It checks nothing of data: the recipient
// does. An Endpoint seals what it sends with it; a recipient that
// unseals with Unseal answers with it.
func Seal(id *device.Identity, roster *device.Roster, peer string, data []byte, now time.Time, lifetime time.Duration) ([]byte, error) {
	if lifetime <= 0 {
		return nil, fmt.Errorf("seal bundle for %s: lifetime %v is not positive", peer, lifetime)
	}
	pub, err := roster.Lookup(peer)
	if err != nil {
		return nil, fmt.Errorf("seal bundle for %s: %w", peer, err)
	}
	to, err := pub.Recipient()
	if err != nil {
		return nil, fmt.Errorf("seal bundle for %s: %w", peer, err)
	}
	ct, err := encrypt(data, to)
	if err != nil {
		return nil, err
	}
	now = now.UTC().Truncate(time.Second)
	h := Header{Kind: KindChanges, Sender: id.ReplicaID(), Recipient: peer, ID: newID(), Created: now, Expires: now.Add(lifetime)}
	raw, err := seal(id, h, ct)
	if err != nil {
		return nil, fmt.Errorf("seal bundle for %s: %w", peer, err)
	}
	return raw, nil
}

// Acknowledge returns the acknowledgements from id's replica to sender of
// the relay bundles acked (their headers, as Unseal returns them): signed
// by id, in the clear, at most MaxAckIDs bundles each, each living as
// long as the longest-lived bundle it names (and at least a second past
// now), so that it keeps every node it reaches from taking in a copy of
// them again. Put in a node, or a folder a node scans, they let relays
// and the sender's node drop those bundles. Bundles of other senders
// than sender are left out.
func Acknowledge(id *device.Identity, sender string, acked []Header, now time.Time) ([][]byte, error) {
	acked = slices.DeleteFunc(slices.Clone(acked), func(h Header) bool { return h.Sender != sender })
	var out [][]byte
	for chunk := range slices.Chunk(acked, MaxAckIDs) {
		ids := make([]string, len(chunk))
		now := now.UTC().Truncate(time.Second)
		expires := now.Add(time.Second)
		for i, h := range chunk {
			ids[i] = h.ID
			if h.Expires.After(expires) {
				expires = h.Expires
			}
		}
		payload, err := encodeAck(ids)
		if err != nil {
			return nil, err
		}
		raw, err := seal(id, Header{Kind: KindAck, Sender: id.ReplicaID(), Recipient: sender, ID: newID(), Created: now, Expires: expires}, payload)
		if err != nil {
			return nil, fmt.Errorf("acknowledge bundles of %s: %w", sender, err)
		}
		out = append(out, raw)
	}
	return out, nil
}

// VerifyEnrolled checks the envelope's signature against every key its
// sender was ever enrolled with in roster (device.Roster.SignerEnrolments:
// those since expired or revoked too) and returns the enrolment whose key
// verified it. It does not say the sender may send: Verify does, and
// refuses a revoked or expired sender without looking at the signature.
// It tells a recipient that refused a bundle for its sender whether the
// device itself signed it, so that the refusal can be recorded against
// the device rather than against anyone who names it. Errors match
// device.ErrUnknownDevice (no key of the sender is known) or
// device.ErrBadSignature.
func (e *Envelope) VerifyEnrolled(roster *device.Roster) (device.Public, error) {
	recs := roster.SignerEnrolments(e.Sender)
	found := false
	for i := len(recs) - 1; i >= 0; i-- {
		en, err := device.DecodeEnrolment(recs[i])
		if err != nil || en.Revoked || en.Device.ReplicaID != e.Sender {
			continue
		}
		found = true
		if en.Device.Verify(Purpose, e.signed, e.sig) == nil {
			return en.Device, nil
		}
	}
	if !found {
		return device.Public{}, fmt.Errorf("relay bundle %s from %s: no key of the sender known: %w", e.ID, e.Sender, device.ErrUnknownDevice)
	}
	return device.Public{}, fmt.Errorf("relay bundle %s from %s: %w", e.ID, e.Sender, device.ErrBadSignature)
}
