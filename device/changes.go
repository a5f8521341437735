package device

import (
	"bytes"
	"cmp"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"math"
	"slices"
)

// PurposeChange is the purpose of a change signature: a device signs every
// chart change it makes, so any replica can tell which device made it.
const PurposeChange = "change/v1"

// changeMessage is what a change signature covers: the chart the change
// belongs to and the change's hash (which covers its actor, dependencies,
// time, message and operations). Naming the chart stops a signed change
// from being passed off as a change of another chart.
func changeMessage(chart string, hash [32]byte) []byte {
	msg := make([]byte, 0, len(chart)+1+len(hash))
	msg = append(msg, chart...)
	msg = append(msg, 0)
	return append(msg, hash[:]...)
}

// SignChange signs the change with hash in chart, as this device (its
// replica ID is the change's actor).
func (id *Identity) SignChange(chart string, hash [32]byte) []byte {
	return id.Sign(PurposeChange, changeMessage(chart, hash))
}

// SignerEnrolments returns the signed enrolments holding every key
// replicaID's changes may be signed with (oldest first, including records
// since expired or revoked), to send along with its changes to a replica
// that has not met the device: a device enrolled again with new keys
// still has its earlier changes checked with the earlier key. If the
// device is revoked, its revocation comes last, so that the recipient
// refuses what the revocation does not accept (AcceptedUpTo). If an
// authority that signed one of its records is revoked, that authority
// revocation comes first, so the recipient refuses what it refuses; the
// records it refuses are left out.
func (r *Roster) SignerEnrolments(replicaID string) [][]byte {
	r.mu.RLock()
	defer r.mu.RUnlock()
	ks := r.keys[replicaID]
	out := make([][]byte, 0, len(ks)+1)
	for _, k := range ks {
		if v, ok := r.authRevs[string(k.Authority)]; ok && !slices.ContainsFunc(out, func(rec []byte) bool { return bytes.Equal(rec, v.raw) }) {
			out = append(out, v.raw)
		}
	}
	for _, k := range ks {
		if r.refused(k) == nil {
			out = append(out, k.raw)
		}
	}
	if e, ok := r.by[replicaID]; ok && e.Revoked {
		out = append(out, e.raw)
	}
	return out
}

// AcceptedUpTo reports whether replicaID's enrolment in force is a
// revocation and, if so, the highest sequence number of the device's
// changes to chart that the revoking authority accepts: a change of the
// device's actor to chart with a greater sequence number was made after
// the revocation (or reached the authority only after it) and is refused.
// 0 accepts none of its changes to chart. A revocation of the first
// format (Authority.Revoke) names no limit: it gives math.MaxUint64,
// every signed change of the device is accepted as before, and the
// caller should say so (its device is cut off at the transports only).
//
// A device whose every record the roster holds is refused by an
// authority revocation (ErrRevokedAuthority: a device a revoked hub
// enrolled that its revoker did not know of) counts as revoked with
// nothing accepted: 0, true.
func (r *Roster) AcceptedUpTo(replicaID, chart string) (seq uint64, revoked bool) {
	r.mu.RLock()
	e, ok := r.by[replicaID]
	onlyRefused := !ok && r.onlyRefused(replicaID) != nil
	r.mu.RUnlock()
	if onlyRefused {
		return 0, true
	}
	if !ok || !e.Revoked {
		return 0, false
	}
	if e.Accepted == nil {
		return math.MaxUint64, true
	}
	return e.Accepted[chart], true
}

// RevocationsFor returns the signed revocations a replica sending to
// recipient passes on, so that they reach every replica that may hold
// the revoked devices' changes: first every authority revocation held
// (by revoked key), then the revocations of devices of the recipient's
// clinic, or every revocation held if the recipient is no device this
// roster knows (the cloud), sorted by replica ID.
func (r *Roster) RevocationsFor(recipient string) [][]byte {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var auth [][]byte
	for _, v := range r.authorityRevocations() {
		auth = append(auth, v.raw)
	}
	clinic, known := "", false
	if e, ok := r.by[recipient]; ok {
		clinic, known = e.Device.Clinic, true
	}
	ids := make([]string, 0, len(r.revoked))
	for id := range r.revoked {
		if !known || r.by[id].Device.Clinic == clinic {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	out := make([][]byte, 0, len(auth)+len(ids))
	out = append(out, auth...)
	for _, id := range ids {
		out = append(out, r.by[id].raw)
	}
	return out
}

// LearnSigner records the signing key of a signed enrolment, for
// VerifyChange, or a revocation, and returns the replica it is for (also
// with an error, once the record could be read). The record must be
// signed by a trusted authority that may enrol the device's clinic.
// Unlike Add, an enrolment that has expired (or was since revoked) is
// accepted, because a device's changes stay its own after its enrolment
// ends, and it leaves the enrolment in force for the transports (Lookup)
// as it was. A revocation is taken as Add takes it: once it is in force,
// Lookup gives ErrRevoked and AcceptedUpTo its limit, so a revocation
// travelling with the device's changes (SignerEnrolments) or with any
// bundle (RevocationsFor) cuts the device off wherever it arrives.
// Learning a record twice changes nothing, and costs no signature check.
//
// An authority revocation (Authority.RevokeAuthority) is taken as
// AddAuthorityRevocation takes it, and gives the replica ID "". A record
// that an authority revocation held refuses gives an error matching
// ErrRevokedAuthority; an enrolment's key is kept all the same, so that
// VerifyChange says why a change signed with it is refused.
func (r *Roster) LearnSigner(data []byte) (string, error) {
	sum := sha256.Sum256(data)
	r.mu.RLock()
	seen := r.learnt[sum]
	r.mu.RUnlock()
	if seen {
		return "", nil
	}
	if isAuthorityRevocation(data) {
		v, err := decodeAuthorityRevocation(data)
		if err != nil {
			return "", fmt.Errorf("learn signer: %w", err)
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if _, err := r.addAuthorityRevocation(v); err != nil {
			return "", fmt.Errorf("learn signer: %w", err)
		}
		if len(r.learnt) < maxLearnt {
			r.learnt[sum] = true
		}
		return "", nil
	}
	e, err := decodeEnrolment(data)
	if err != nil {
		return "", fmt.Errorf("learn signer: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	id := e.Device.ReplicaID
	a, ok := r.authority(e.Authority)
	if !ok {
		return id, fmt.Errorf("learn signer %s: authority %s: %w", id, Fingerprint(e.Authority), ErrUnknownAuthority)
	}
	if !a.covers(e.Device.Clinic) {
		return id, fmt.Errorf("learn signer %s: clinic %s: %w", id, e.Device.Clinic, ErrOutOfScope)
	}
	if e.Revoked {
		if _, err := r.add(e); err != nil {
			return id, fmt.Errorf("learn signer: %w", err)
		}
	} else {
		// Only the key is learnt: which enrolment is in force for the
		// transports (Lookup) changes only through Add and Merge.
		r.rememberKey(e, a)
		if err := r.refused(e); err != nil {
			return id, fmt.Errorf("learn signer: %w", err)
		}
	}
	if len(r.learnt) < maxLearnt {
		r.learnt[sum] = true
	}
	return id, nil
}

// maxLearnt bounds the records a roster remembers having learnt.
const maxLearnt = 1 << 16

// rememberKey keeps e's signing key for VerifyChange, ordered by issue
// time. r.mu is held and e's authority a has been checked. A key is not
// kept if the device is enrolled in a clinic a may not enrol: an
// authority limited to some clinics cannot give itself a device of
// another clinic to sign as.
func (r *Roster) rememberKey(e Enrolment, a TrustedAuthority) {
	if e.Revoked || len(e.Device.SignKey) != ed25519.PublicKeySize {
		return
	}
	ks := r.keys[e.Device.ReplicaID]
	if old, held := r.by[e.Device.ReplicaID]; held && old.Device.Clinic != e.Device.Clinic && !a.covers(old.Device.Clinic) {
		return
	}
	for _, k := range ks {
		if k.Device.Clinic != e.Device.Clinic && !a.covers(k.Device.Clinic) {
			return
		}
	}
	for _, k := range ks {
		if bytes.Equal(k.raw, e.raw) {
			return
		}
	}
	ks = append(slices.Clone(ks), e) // a Merge trial shares the slices
	slices.SortStableFunc(ks, func(a, b Enrolment) int { return a.Issued.Compare(b.Issued) })
	r.keys[e.Device.ReplicaID] = ks
}

// VerifyChange checks that sig is replicaID's signature of the change with
// hash in chart, made with a key the device was ever enrolled with (a
// change made while a device was enrolled stays valid after its
// enrolment expires or is revoked; revocation stops the device at the
// transports). It returns the clinic of the enrolment whose key verified
// it: the clinic the device signed as, which the caller must check the
// change is for (a chart in that clinic's scope, that clinic's user
// roster). Errors match ErrUnknownDevice if no key of the device is known
// (see LearnSigner), ErrRevokedAuthority if only a key given by a
// record that an authority revocation refuses verifies it while the
// device is in force by another record (a key a stolen hub key gave a
// device it had enrolled before), or ErrBadSignature.
//
// A device whose every record is refused by an authority revocation (one
// a revoked hub enrolled that its revoker did not know of) is treated
// as a revoked device: its signatures verify, and AcceptedUpTo refuses
// every change of it (0, true), whenever it was made, so a replica
// refuses them as a revoked device's (replica.ErrRevokedChange) and
// leaves them out of what it passes on.
func (r *Roster) VerifyChange(replicaID, chart string, hash [32]byte, sig []byte) (clinic string, err error) {
	r.mu.RLock()
	ks := r.keys[replicaID]
	refused := make([]error, len(ks))
	for i, k := range ks {
		refused[i] = r.refused(k)
	}
	_, inForce := r.by[replicaID]
	revokedAsAWhole := !inForce && r.onlyRefused(replicaID) != nil
	r.mu.RUnlock()
	if len(ks) == 0 {
		return "", fmt.Errorf("change signed by %s: %w", replicaID, ErrUnknownDevice)
	}
	msg := changeMessage(chart, hash)
	var refusal error
	for i := len(ks) - 1; i >= 0; i-- {
		if ks[i].Device.Verify(PurposeChange, msg, sig) != nil {
			continue
		}
		if refused[i] == nil || revokedAsAWhole {
			return ks[i].Device.Clinic, nil // AcceptedUpTo refuses the changes of the latter
		}
		refusal = cmp.Or(refusal, refused[i])
	}
	if refusal != nil {
		return "", fmt.Errorf("change %x of chart %s signed as %s: %w", hash[:4], chart, replicaID, refusal)
	}
	return "", fmt.Errorf("change %x of chart %s signed as %s: %w", hash[:4], chart, replicaID, ErrBadSignature)
}
