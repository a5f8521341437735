package device

import (
	"bytes"
	"cmp"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"github.com/chartsync/chartsync/internal/wire"
)

// PurposeAuthorityRevocation is the purpose of an authority's signature
// over the revocation of another authority's key.
const PurposeAuthorityRevocation = "authority-revocation/v1"

const (
	kindAuthorityRevocation    = 'H'
	authorityRevocationVersion = 1
	// minAuthorityRevocationBytes is the smallest authority revocation: a
	// frame (12 bytes) around two keys, a one-byte time, a one-byte count
	// and a signature.
	minAuthorityRevocationBytes = 12 + 32 + 32 + 1 + 1 + 64
)

// AuthorityRevocation is an authority's signed statement that another
// authority's key (a hub administrator's) is revoked from Issued on, and
// which of the records that key signed it accepts: Accepted holds the
// RecordDigest of each, in increasing order. Every other record signed
// by the revoked key (enrolments, revocations, revocations of other
// authorities) is refused by a roster that holds it (ErrRevokedAuthority).
type AuthorityRevocation struct {
	Revoked   ed25519.PublicKey // the key revoked
	Issued    time.Time         // UTC, whole seconds
	Accepted  [][32]byte        // digests of the revoked key's records accepted, increasing
	Authority ed25519.PublicKey // the key that signed it

	raw []byte
	sum [32]byte
	set map[[32]byte]bool
}

// Raw returns the signed file the record was decoded from.
func (v AuthorityRevocation) Raw() []byte { return v.raw }

// Accepts reports whether the revocation accepts the signed record rec
// (a record of the revoked key that its revoker held when it revoked).
func (v AuthorityRevocation) Accepts(rec []byte) bool { return v.set[RecordDigest(rec)] }

// RecordDigest is how an authority revocation names a record it
// accepts: the SHA-256 of the signed file (Enrolment.Raw). A record has
// one encoding (its decoder refuses any other spelling), so its digest
// names it and nothing else.
func RecordDigest(rec []byte) [32]byte { return sha256.Sum256(rec) }

// RevokeAuthority signs a revocation of the authority key revoked (a hub
// administrator's), in force from at, accepting the records among
// accepted: the signed records of that key that this authority holds
// when it revokes (each an enrolment, a revocation, or an authority
// revocation file). Every replica whose roster holds the revocation
// refuses every other record the key signs, whenever it was signed and
// in whatever order the records arrive (the rule is causal: what the
// revoker held, not what a clock said), and so the devices those
// records enrolled. A record of another key in accepted is refused with
// ErrMalformed, as is a revocation of the authority's own key; the
// record is refused with ErrTooLarge past MaxRevocationBytes (about
// 32,000 records).
func (a *Authority) RevokeAuthority(revoked ed25519.PublicKey, at time.Time, accepted [][]byte) ([]byte, error) {
	if len(revoked) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("revoke authority: key of %d bytes: %w", len(revoked), ErrMalformed)
	}
	if bytes.Equal(revoked, a.PublicKey()) {
		return nil, fmt.Errorf("revoke authority %s: an authority cannot revoke its own key: %w", Fingerprint(revoked), ErrMalformed)
	}
	if at.Unix() < 0 || at.Unix() > maxUnix {
		return nil, fmt.Errorf("revoke authority %s: time %v out of range", Fingerprint(revoked), at)
	}
	seen := map[[32]byte]bool{}
	sums := make([][32]byte, 0, len(accepted))
	for i, rec := range accepted {
		signer, err := recordSigner(rec)
		if err != nil {
			return nil, fmt.Errorf("revoke authority %s: accepted record %d: %w", Fingerprint(revoked), i, err)
		}
		if !bytes.Equal(signer, revoked) {
			return nil, fmt.Errorf("revoke authority %s: accepted record %d is signed by %s: %w", Fingerprint(revoked), i, Fingerprint(signer), ErrMalformed)
		}
		if s := RecordDigest(rec); !seen[s] {
			seen[s] = true
			sums = append(sums, s)
		}
	}
	slices.SortFunc(sums, func(x, y [32]byte) int { return bytes.Compare(x[:], y[:]) })
	body := make([]byte, 0, 32+32+10+10+32*len(sums)+ed25519.SignatureSize)
	body = append(body, a.PublicKey()...)
	body = append(body, revoked...)
	body = binary.AppendUvarint(body, uint64(at.Unix()))
	body = binary.AppendUvarint(body, uint64(len(sums)))
	for _, s := range sums {
		body = append(body, s[:]...)
	}
	if len(body)+ed25519.SignatureSize > MaxRevocationBytes {
		return nil, fmt.Errorf("revoke authority %s: accepting %d records makes %d bytes, limit %d: %w", Fingerprint(revoked), len(sums), len(body)+ed25519.SignatureSize, MaxRevocationBytes, ErrTooLarge)
	}
	body = append(body, ed25519.Sign(a.key, signedMessage(PurposeAuthorityRevocation, body))...)
	out := wire.Encode(kindAuthorityRevocation, authorityRevocationVersion, body)
	if len(out) > MaxRevocationBytes {
		return nil, fmt.Errorf("revoke authority %s: accepting %d records makes a file of %d bytes, limit %d: %w", Fingerprint(revoked), len(sums), len(out), MaxRevocationBytes, ErrTooLarge)
	}
	return out, nil
}

// recordSigner returns the key that signed an enrolment or authority
// revocation file, checking its signature.
func recordSigner(rec []byte) (ed25519.PublicKey, error) {
	if isAuthorityRevocation(rec) {
		v, err := decodeAuthorityRevocation(rec)
		if err != nil {
			return nil, err
		}
		return v.Authority, nil
	}
	e, err := decodeEnrolment(rec)
	if err != nil {
		return nil, err
	}
	return e.Authority, nil
}

// isAuthorityRevocation reports whether data is framed as an authority
// revocation (it may still be malformed).
func isAuthorityRevocation(data []byte) bool {
	return len(data) >= 3 && data[0] == 'C' && data[1] == 'S' && data[2] == kindAuthorityRevocation
}

// DecodeAuthorityRevocation parses an authority revocation file and
// checks that it is signed by the key it names. It does not decide
// whether that key is trusted, or may revoke the key revoked: a Roster
// does. Errors match ErrMalformed, ErrVersion, ErrTooLarge or
// ErrBadSignature.
func DecodeAuthorityRevocation(data []byte) (AuthorityRevocation, error) {
	v, err := decodeAuthorityRevocation(data)
	if err != nil {
		return AuthorityRevocation{}, fmt.Errorf("decode authority revocation: %w", err)
	}
	return v, nil
}

// decodeAuthorityRevocation reads the frame RevokeAuthority writes:
//
//	signer key 32 | revoked key 32 | issued (uvarint Unix seconds) |
//	count (uvarint) | count × record digest 32, strictly increasing |
//	signature 64
func decodeAuthorityRevocation(data []byte) (AuthorityRevocation, error) {
	if len(data) > MaxRevocationBytes {
		return AuthorityRevocation{}, fmt.Errorf("%d bytes: %w", len(data), ErrTooLarge)
	}
	_, body, err := wire.Decode(data, kindAuthorityRevocation, authorityRevocationVersion, MaxRevocationBytes)
	if err != nil {
		return AuthorityRevocation{}, err
	}
	r := wire.NewReader(body)
	signer, err := r.Fixed(ed25519.PublicKeySize)
	if err != nil {
		return AuthorityRevocation{}, err
	}
	revoked, err := r.Fixed(ed25519.PublicKeySize)
	if err != nil {
		return AuthorityRevocation{}, err
	}
	issued, err := r.Uvarint()
	if err != nil {
		return AuthorityRevocation{}, err
	}
	if issued > maxUnix {
		return AuthorityRevocation{}, fmt.Errorf("time %d out of range: %w", issued, ErrMalformed)
	}
	n, err := r.Count(sha256.Size)
	if err != nil {
		return AuthorityRevocation{}, err
	}
	sums := make([][32]byte, 0, n) // n fits in the body, checked by Count
	set := make(map[[32]byte]bool, n)
	for i := range n {
		s, err := r.Fixed(sha256.Size)
		if err != nil {
			return AuthorityRevocation{}, err
		}
		d := [32]byte(s)
		if i > 0 && bytes.Compare(d[:], sums[i-1][:]) <= 0 {
			return AuthorityRevocation{}, fmt.Errorf("accepted record %d out of order: %w", i, ErrMalformed)
		}
		sums = append(sums, d)
		set[d] = true
	}
	signedLen := len(body) - r.Len()
	sig, err := r.Fixed(ed25519.SignatureSize)
	if err != nil {
		return AuthorityRevocation{}, err
	}
	if err := r.Done(); err != nil {
		return AuthorityRevocation{}, err
	}
	if bytes.Equal(signer, revoked) {
		return AuthorityRevocation{}, fmt.Errorf("authority %s revokes itself: %w", Fingerprint(signer), ErrMalformed)
	}
	if !ed25519.Verify(signer, signedMessage(PurposeAuthorityRevocation, body[:signedLen]), sig) {
		return AuthorityRevocation{}, fmt.Errorf("revocation of authority %s: %w", Fingerprint(revoked), ErrBadSignature)
	}
	return AuthorityRevocation{
		Revoked:   bytes.Clone(revoked),
		Issued:    time.Unix(int64(issued), 0).UTC(),
		Accepted:  sums,
		Authority: bytes.Clone(signer),
		raw:       bytes.Clone(data),
		sum:       RecordDigest(data),
		set:       set,
	}, nil
}

// supersedesRevocation reports whether v replaces old, a revocation of
// the same key: issued later, or at the same second the greater bytes,
// so every roster settles on the same one whatever the order.
func supersedesRevocation(v, old AuthorityRevocation) bool {
	if !v.Issued.Equal(old.Issued) {
		return v.Issued.After(old.Issued)
	}
	return bytes.Compare(v.raw, old.raw) > 0
}

// mayRevoke checks that the roster's trust lets v's signer revoke v's
// key. r.mu is held.
//
// The signer must be trusted and cover every clinic the revoked key may
// enrol, and more: an authority of every clinic (the cloud's), or one
// limited to a strict superset of the revoked key's clinics, so no two
// authorities can revoke each other. A key of every clinic is never
// revoked. A key this roster does not trust may be revoked by an
// authority of every clinic only (the record is kept, to pass on).
func (r *Roster) mayRevoke(v AuthorityRevocation) error {
	sa, ok := r.authority(v.Authority)
	if !ok {
		return fmt.Errorf("revocation of authority %s signed by %s: %w", Fingerprint(v.Revoked), Fingerprint(v.Authority), ErrUnknownAuthority)
	}
	ra, trusted := r.authority(v.Revoked)
	switch {
	case !trusted && len(sa.Clinics) > 0:
		return fmt.Errorf("revocation of authority %s, which this roster does not trust, by %s, an authority limited to some clinics: %w",
			Fingerprint(v.Revoked), Fingerprint(v.Authority), ErrOutOfScope)
	case !trusted:
		return nil
	case len(ra.Clinics) == 0:
		return fmt.Errorf("revocation of authority %s, an authority of every clinic, by %s: %w", Fingerprint(v.Revoked), Fingerprint(v.Authority), ErrOutOfScope)
	}
	for _, c := range ra.Clinics {
		if !sa.covers(c) {
			return fmt.Errorf("revocation of authority %s by %s, which may not enrol clinic %s: %w", Fingerprint(v.Revoked), Fingerprint(v.Authority), c, ErrOutOfScope)
		}
	}
	if len(sa.Clinics) > 0 && !slices.ContainsFunc(sa.Clinics, func(c string) bool { return !ra.covers(c) }) {
		return fmt.Errorf("revocation of authority %s by %s, which covers no clinic more: %w", Fingerprint(v.Revoked), Fingerprint(v.Authority), ErrOutOfScope)
	}
	return nil
}

// refusedAt returns the authority revocation in force that refuses a
// record of signer with digest sum, if any. r.mu is held. A revocation
// is in force unless a revocation of its own signer refuses it; signers
// grow strictly broader at each step (mayRevoke), so the chain is at
// most as long as the roster's trusted authorities (depth).
func (r *Roster) refusedAt(signer ed25519.PublicKey, sum [32]byte, depth int) (AuthorityRevocation, bool) {
	if depth <= 0 {
		return AuthorityRevocation{}, false
	}
	v, ok := r.authRevs[string(signer)]
	if !ok || v.set[sum] {
		return AuthorityRevocation{}, false
	}
	if _, refused := r.refusedAt(v.Authority, v.sum, depth-1); refused {
		return AuthorityRevocation{}, false
	}
	return v, true
}

// refused returns the error for an enrolment record its authority's
// revocation refuses, or nil. r.mu is held.
func (r *Roster) refused(e Enrolment) error {
	v, ok := r.refusedAt(e.Authority, e.sum, len(r.cfg.Authorities)+1)
	if !ok {
		return nil
	}
	return fmt.Errorf("record of %s signed by authority %s, revoked %s by %s without accepting it: %w",
		e.Device.ReplicaID, Fingerprint(e.Authority), v.Issued.Format(time.RFC3339), Fingerprint(v.Authority), ErrRevokedAuthority)
}

// onlyRefused returns the refusal of one of replicaID's records if
// every record of it the roster holds (taken by Add or Merge, or keys
// learnt) is refused by an authority revocation, else nil. r.mu is held.
func (r *Roster) onlyRefused(replicaID string) error {
	var refusal error
	for _, recs := range [][]Enrolment{r.all[replicaID], r.keys[replicaID]} {
		for _, k := range recs {
			err := r.refused(k)
			if err == nil {
				return nil
			}
			refusal = cmp.Or(refusal, err)
		}
	}
	return refusal
}

// addAuthorityRevocation checks v against the roster's trust and keeps
// it, returning the revocation now in force for its key. r.mu is held.
// A revocation signed by a revoked key it does not accept is refused
// with ErrRevokedAuthority. When v comes into force, every device with a
// record of the revoked key settles again on its records not refused.
func (r *Roster) addAuthorityRevocation(v AuthorityRevocation) (AuthorityRevocation, error) {
	if err := r.mayRevoke(v); err != nil {
		return AuthorityRevocation{}, err
	}
	if by, refused := r.refusedAt(v.Authority, v.sum, len(r.cfg.Authorities)+1); refused {
		return AuthorityRevocation{}, fmt.Errorf("revocation of authority %s signed by %s, revoked %s by %s: %w",
			Fingerprint(v.Revoked), Fingerprint(v.Authority), by.Issued.Format(time.RFC3339), Fingerprint(by.Authority), ErrRevokedAuthority)
	}
	if old, held := r.authRevs[string(v.Revoked)]; held && (bytes.Equal(old.raw, v.raw) || !supersedesRevocation(v, old)) {
		return old, nil
	}
	r.authRevs[string(v.Revoked)] = v
	r.resettle()
	return v, nil
}

// resettle makes the record in force for each device the one its
// records not refused give, as if they had arrived anew. r.mu is held.
// It runs when an authority revocation comes into force or is
// replaced: rare, so it looks at every device.
func (r *Roster) resettle() {
	now := r.cfg.Now()
	for id, recs := range r.all {
		if !slices.ContainsFunc(recs, func(e Enrolment) bool { _, revoked := r.authRevs[string(e.Authority)]; return revoked }) {
			if e, ok := r.by[id]; !ok || r.refused(e) == nil {
				continue
			}
		}
		delete(r.by, id)
		delete(r.revoked, id)
		for _, e := range recs {
			if r.refused(e) != nil || !e.Revoked && !e.ValidAt(now) {
				continue
			}
			a, _ := r.authority(e.Authority)
			_, _ = r.place(e, a) // as when it first came
		}
	}
}

// AuthorityRevocations returns the authority revocations in force, by
// revoked key.
func (r *Roster) AuthorityRevocations() []AuthorityRevocation {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.authorityRevocations()
}

// AuthorityRevocationRecords returns the signed authority revocations in
// force, by revoked key, as LearnSigner and AddAuthorityRevocation take
// them: what a replica keeps so that it holds them again after a restart
// (replica.AuthorityRevocations).
func (r *Roster) AuthorityRevocationRecords() [][]byte {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out [][]byte
	for _, v := range r.authorityRevocations() {
		out = append(out, v.raw)
	}
	return out
}

// authorityRevocations is AuthorityRevocations with r.mu held.
func (r *Roster) authorityRevocations() []AuthorityRevocation {
	out := make([]AuthorityRevocation, 0, len(r.authRevs))
	for _, v := range r.authRevs {
		out = append(out, v)
	}
	slices.SortFunc(out, func(x, y AuthorityRevocation) int { return bytes.Compare(x.Revoked, y.Revoked) })
	return out
}

// RecordsBy returns every signed record the roster holds that key
// signed, refused or not (enrolments, revocations, and the keys its
// devices' changes may be signed with), without repeats: what an
// authority revoking key holds of it (Authority.RevokeAuthority).
func (r *Roster) RecordsBy(key ed25519.PublicKey) [][]byte {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out [][]byte
	seen := map[[32]byte]bool{}
	add := func(e Enrolment) {
		if bytes.Equal(e.Authority, key) && !seen[e.sum] {
			seen[e.sum] = true
			out = append(out, e.raw)
		}
	}
	for _, e := range r.by {
		add(e)
	}
	for _, recs := range r.all {
		for _, e := range recs {
			add(e)
		}
	}
	for _, ks := range r.keys {
		for _, e := range ks {
			add(e)
		}
	}
	for _, v := range r.authRevs {
		if bytes.Equal(v.Authority, key) && !seen[v.sum] {
			seen[v.sum] = true
			out = append(out, v.raw)
		}
	}
	slices.SortFunc(out, bytes.Compare)
	return out
}
