package device

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
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
// still has its earlier changes checked with the earlier key.
func (r *Roster) SignerEnrolments(replicaID string) [][]byte {
	r.mu.RLock()
	defer r.mu.RUnlock()
	ks := r.keys[replicaID]
	out := make([][]byte, len(ks))
	for i, k := range ks {
		out[i] = k.raw
	}
	return out
}

// LearnSigner records the signing key of a signed enrolment, for
// VerifyChange, and returns the replica it enrols (also with an error,
// once the record could be read). The enrolment must be
// signed by a trusted authority that may enrol the device's clinic; unlike
// Add, an enrolment that has expired (or was since revoked) is accepted,
// because a device's changes stay its own after its enrolment ends. The
// enrolment in force for the transports (Lookup) does not change. Learning a record
// twice changes nothing.
func (r *Roster) LearnSigner(data []byte) (string, error) {
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
		return id, fmt.Errorf("learn signer %s: a revocation holds no key: %w", id, ErrMalformed)
	}
	// Only the key is learnt: which enrolment is in force for the
	// transports (Lookup) changes only through Add and Merge.
	r.rememberKey(e, a)
	return id, nil
}

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
// (see LearnSigner), or ErrBadSignature.
func (r *Roster) VerifyChange(replicaID, chart string, hash [32]byte, sig []byte) (clinic string, err error) {
	r.mu.RLock()
	ks := r.keys[replicaID]
	r.mu.RUnlock()
	if len(ks) == 0 {
		return "", fmt.Errorf("change signed by %s: %w", replicaID, ErrUnknownDevice)
	}
	msg := changeMessage(chart, hash)
	for i := len(ks) - 1; i >= 0; i-- {
		if ks[i].Device.Verify(PurposeChange, msg, sig) == nil {
			return ks[i].Device.Clinic, nil
		}
	}
	return "", fmt.Errorf("change %x of chart %s signed as %s: %w", hash[:4], chart, replicaID, ErrBadSignature)
}
