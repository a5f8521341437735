package device

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/chartsync/chartsync/internal/atomicfile"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/chartsync/chartsync/internal/wire"
)

// TrustedAuthority is an authority key a roster trusts, and the clinics it
// may enrol devices for.
type TrustedAuthority struct {
	Key ed25519.PublicKey
	// Clinics the authority may enrol devices of; empty means any clinic
	// (the cloud's key). A hub administrator's key is usually limited to
	// the clinics the hub serves.
	Clinics []string
}

func (t TrustedAuthority) covers(clinic string) bool {
	return len(t.Clinics) == 0 || slices.Contains(t.Clinics, clinic)
}

// RosterConfig configures a Roster. Authorities is required.
type RosterConfig struct {
	// Authorities are the keys whose enrolments are believed. They are
	// installed with the app or checked by Fingerprint, never learnt from
	// a file that arrived by courier.
	Authorities []TrustedAuthority
	// Now is the clock that decides expiry; nil means time.Now.
	Now func() time.Time
}

// Validate reports a configuration that cannot work.
func (c RosterConfig) Validate() error {
	if len(c.Authorities) == 0 {
		return errors.New("roster config: no trusted authority")
	}
	for i, a := range c.Authorities {
		if len(a.Key) != ed25519.PublicKeySize {
			return fmt.Errorf("roster config: authority %d: key of %d bytes", i, len(a.Key))
		}
		for _, c := range a.Clinics {
			if err := CheckClinic(c); err != nil {
				return fmt.Errorf("roster config: authority %d: %w", i, err)
			}
		}
	}
	return nil
}

// Roster is a directory of enrolled devices: the enrolment in force for
// each replica ID, each verified against a trusted authority. Transports
// look up a sender's keys in it. It is safe for concurrent use.
type Roster struct {
	cfg RosterConfig
	mu  sync.RWMutex
	by  map[string]Enrolment
	// keys holds, per replica, every enrolment with a signing key seen,
	// by issue time: the keys its changes may be signed with.
	keys map[string][]Enrolment
	// learnt holds the SHA-256 of every record LearnSigner took, so a
	// record sent with every bundle costs its signature check once.
	learnt map[[32]byte]bool
	// revoked holds the replicas whose record in force is a revocation,
	// so RevocationsFor costs the revocations, not the roster.
	revoked map[string]bool
	// all holds, per replica, every record Add or Merge took (in scope
	// of a trusted authority), in the order they came: when an
	// authority is revoked, each device settles again on those its
	// revocation does not refuse (resettle).
	all map[string][]Enrolment
	// authRevs holds the authority revocation in force for each revoked
	// key (string of the key).
	authRevs map[string]AuthorityRevocation
}

// NewRoster returns an empty roster trusting cfg.Authorities.
func NewRoster(cfg RosterConfig) (*Roster, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.Authorities = slices.Clone(cfg.Authorities)
	return &Roster{cfg: cfg, by: map[string]Enrolment{}, keys: map[string][]Enrolment{}, learnt: map[[32]byte]bool{},
		revoked: map[string]bool{}, all: map[string][]Enrolment{}, authRevs: map[string]AuthorityRevocation{}}, nil
}

func (r *Roster) authority(key ed25519.PublicKey) (TrustedAuthority, bool) {
	for _, a := range r.cfg.Authorities {
		if bytes.Equal(a.Key, key) {
			return a, true
		}
	}
	return TrustedAuthority{}, false
}

// Add verifies a signed enrolment file and records it, returning the
// enrolment now in force for its replica.
//
// A record is refused with ErrMalformed (or ErrVersion, ErrTooLarge),
// ErrBadSignature (forged or altered), ErrUnknownAuthority (signed by a key
// not trusted), ErrOutOfScope (the authority may not enrol that clinic's
// devices, or may not override the enrolment held, which is of another
// clinic) or ErrExpired (no longer in force). A revocation is accepted like
// an enrolment. A record issued before the one held changes nothing; one
// issued later replaces it (re-enrolment with new keys, or revocation).
// Adding the same record twice changes nothing.
//
// A record signed by an authority whose revocation (AuthorityRevocation)
// the roster holds, and which that revocation does not accept, is
// refused with ErrRevokedAuthority. data may also be an authority
// revocation file (Authority.RevokeAuthority), taken as
// AddAuthorityRevocation takes it; Add then returns a zero Enrolment.
func (r *Roster) Add(data []byte) (Enrolment, error) {
	if isAuthorityRevocation(data) {
		_, err := r.AddAuthorityRevocation(data)
		return Enrolment{}, err
	}
	e, err := decodeEnrolment(data)
	if err != nil {
		return Enrolment{}, fmt.Errorf("add enrolment: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.add(e)
}

// add checks trust and expiry and records e. r.mu is held.
func (r *Roster) add(e Enrolment) (Enrolment, error) {
	id := e.Device.ReplicaID
	a, ok := r.authority(e.Authority)
	if !ok {
		return Enrolment{}, fmt.Errorf("add enrolment of %s: authority %s: %w", id, Fingerprint(e.Authority), ErrUnknownAuthority)
	}
	if !a.covers(e.Device.Clinic) {
		return Enrolment{}, fmt.Errorf("add enrolment of %s: clinic %s: %w", id, e.Device.Clinic, ErrOutOfScope)
	}
	r.rememberKey(e, a)
	r.keep(e)
	if err := r.refused(e); err != nil {
		return Enrolment{}, fmt.Errorf("add enrolment: %w", err)
	}
	if !e.Revoked && !e.ValidAt(r.cfg.Now()) {
		return Enrolment{}, fmt.Errorf("add enrolment of %s: expired %s: %w", id, e.Expires.Format(time.RFC3339), ErrExpired)
	}
	return r.place(e, a)
}

// AddAuthorityRevocation verifies a signed authority revocation
// (Authority.RevokeAuthority) and records it, returning the one now in
// force for its key. It is refused with ErrMalformed (or ErrVersion,
// ErrTooLarge), ErrBadSignature, ErrUnknownAuthority (signed by a key
// not trusted), ErrOutOfScope (its signer may not revoke that key: it
// must cover every clinic the key may enrol, and more; a key of every
// clinic, the cloud's, is never revoked; an authority cannot revoke
// itself) or ErrRevokedAuthority (signed by a key revoked itself, which
// does not accept it). One issued before the one held for its key
// changes nothing; one issued later replaces it.
//
// From then on every record of the revoked key that it does not accept
// is refused (ErrRevokedAuthority), those the roster held too: the
// devices they enrolled are in force by their other records only
// (Lookup), and their keys no longer verify changes (VerifyChange).
func (r *Roster) AddAuthorityRevocation(data []byte) (AuthorityRevocation, error) {
	v, err := decodeAuthorityRevocation(data)
	if err != nil {
		return AuthorityRevocation{}, fmt.Errorf("add authority revocation: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	got, err := r.addAuthorityRevocation(v)
	if err != nil {
		return AuthorityRevocation{}, fmt.Errorf("add authority revocation: %w", err)
	}
	return got, nil
}

// keep adds e to the records of its replica (all). r.mu is held.
func (r *Roster) keep(e Enrolment) {
	id := e.Device.ReplicaID
	recs := r.all[id]
	if slices.ContainsFunc(recs, func(k Enrolment) bool { return k.sum == e.sum }) {
		return
	}
	r.all[id] = append(slices.Clone(recs), e) // a Merge trial shares the slices
}

// place makes e, a record of a trusted authority a in force and not
// expired, the record in force for its replica if it displaces the one
// held, and returns the one in force, or ErrOutOfScope if e is newer but
// a may not displace the one held (of another clinic). r.mu is held.
func (r *Roster) place(e Enrolment, a TrustedAuthority) (Enrolment, error) {
	id := e.Device.ReplicaID
	old, held := r.by[id]
	if held && !bytes.Equal(old.raw, e.raw) {
		if old.Device.Clinic != e.Device.Clinic {
			// The record held and e claim the device for different
			// clinics: an authority that may not enrol the held one's
			// clinic never displaces it (an older such record is just
			// skipped), and one that may enrol both displaces a record
			// of an authority that may not, whatever the dates.
			oldA, _ := r.authority(old.Authority)
			newCovers, oldCovers := a.covers(old.Device.Clinic), oldA.Key != nil && oldA.covers(e.Device.Clinic)
			switch {
			case !newCovers && !supersedes(e, old):
				return old, nil
			case !newCovers:
				return Enrolment{}, fmt.Errorf("add enrolment of %s: held for clinic %s: %w", id, old.Device.Clinic, ErrOutOfScope)
			case !oldCovers:
				r.set(e)
				return e, nil
			}
		}
		if !supersedes(e, old) {
			return old, nil
		}
	}
	r.set(e)
	return e, nil
}

// set makes e the record in force for its replica. r.mu is held.
func (r *Roster) set(e Enrolment) {
	id := e.Device.ReplicaID
	r.by[id] = e
	if e.Revoked {
		r.revoked[id] = true
	} else {
		delete(r.revoked, id)
	}
}

// supersedes reports whether e replaces old: issued later, or at the same
// second and a revocation, or else the greater bytes (so every roster
// settles on the same record whatever the order records arrive in).
func supersedes(e, old Enrolment) bool {
	if !e.Issued.Equal(old.Issued) {
		return e.Issued.After(old.Issued)
	}
	if e.Revoked != old.Revoked {
		return e.Revoked
	}
	return bytes.Compare(e.raw, old.raw) > 0
}

// Lookup returns the keys of the device running replicaID. It returns an
// error matching ErrUnknownDevice if no enrolment is held, ErrRevoked if
// it was revoked, ErrRevokedAuthority (which matches ErrRevoked too) if
// its only records are of a revoked authority that does not accept
// them, or ErrExpired if it has expired.
func (r *Roster) Lookup(replicaID string) (Public, error) {
	r.mu.RLock()
	e, ok := r.by[replicaID]
	var refused error
	if !ok {
		refused = r.onlyRefused(replicaID)
	}
	r.mu.RUnlock()
	switch {
	case refused != nil:
		return Public{}, fmt.Errorf("device %s: %w", replicaID, refused)
	case !ok:
		return Public{}, fmt.Errorf("device %s: %w", replicaID, ErrUnknownDevice)
	case e.Revoked:
		return Public{}, fmt.Errorf("device %s: revoked %s: %w", replicaID, e.Issued.Format(time.RFC3339), ErrRevoked)
	case !e.ValidAt(r.cfg.Now()):
		return Public{}, fmt.Errorf("device %s: enrolment expired %s: %w", replicaID, e.Expires.Format(time.RFC3339), ErrExpired)
	}
	return e.Device, nil
}

// Verify checks that sig is replicaID's signature for purpose over msg,
// made with the key it is enrolled with. Errors are Lookup's, or match
// ErrBadSignature.
func (r *Roster) Verify(replicaID, purpose string, msg, sig []byte) (Public, error) {
	p, err := r.Lookup(replicaID)
	if err != nil {
		return Public{}, err
	}
	if err := p.Verify(purpose, msg, sig); err != nil {
		return Public{}, err
	}
	return p, nil
}

// Enrolments returns every record held, in force or not, sorted by replica
// ID.
func (r *Roster) Enrolments() []Enrolment {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]Enrolment, 0, len(r.by))
	for _, e := range r.by {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b Enrolment) int { return strings.Compare(a.Device.ReplicaID, b.Device.ReplicaID) })
	return out
}

// Encode returns a roster file holding every record (each still signed by
// its authority, so the file needs no signature of its own): what a hub
// hands to a clinic that was never online, with the clinic's own
// enrolment, on a USB stick. Besides the records in force it holds every
// earlier enrolment whose key a device's changes may be signed with
// (VerifyChange), so that a roster saved and read again still verifies
// the changes a device made before it was revoked or enrolled anew.
//
// The authority revocations held come first, and the records they refuse
// stay in the file (every roster reading it refuses them alike, with
// ErrRevokedAuthority). A device whose record in force is a limited
// authority's (a hub's) has every record of it written, so that if that
// authority is revoked later the device settles on the others (a
// revocation the hub's record had displaced is not lost).
func (r *Roster) Encode() []byte {
	es := r.Enrolments()
	r.mu.RLock()
	var recs [][]byte
	for _, v := range r.authorityRevocations() {
		recs = append(recs, v.raw)
	}
	seen := make(map[[32]byte]bool, len(es))
	add := func(e Enrolment) {
		if !seen[e.sum] {
			seen[e.sum] = true
			recs = append(recs, e.raw)
		}
	}
	for _, e := range es {
		add(e)
	}
	for _, id := range slices.Sorted(maps.Keys(r.keys)) {
		for _, k := range r.keys[id] {
			add(k)
		}
	}
	for _, e := range es {
		if a, ok := r.authority(e.Authority); ok && len(a.Clinics) > 0 {
			for _, k := range r.all[e.Device.ReplicaID] {
				add(k)
			}
		}
	}
	r.mu.RUnlock()
	var body []byte
	body = binary.AppendUvarint(body, uint64(len(recs)))
	for _, rec := range recs {
		body = wire.AppendBytes(body, rec)
	}
	return wire.Encode(kindRoster, rosterVersion, body)
}

// MergeResult reports a Merge.
type MergeResult struct {
	Added   int // records that are now in force
	Skipped int // records older than those held, or expired
	// Refused counts records of a revoked authority that its revocation
	// does not accept (ErrRevokedAuthority): skipped too.
	Refused int
}

// Merge adds every record of a roster file (Encode) or a single enrolment
// file. It is all or nothing for forgery: if any record is malformed,
// forged, signed by an untrusted authority or out of its authority's scope,
// nothing is added and the error says which. Expired and superseded records
// are skipped and counted, and so are records of a revoked authority its
// revocation does not accept (Refused). Authority revocations in the
// file are taken first, so the order of its records does not matter.
func (r *Roster) Merge(data []byte) (MergeResult, error) {
	recs, revs, err := decodeRoster(data)
	if err != nil {
		return MergeResult{}, fmt.Errorf("merge roster: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	// Check every record against a copy first, so a bad record adds nothing.
	trial := &Roster{cfg: r.cfg, by: maps.Clone(r.by), keys: maps.Clone(r.keys), learnt: r.learnt, revoked: maps.Clone(r.revoked),
		all: maps.Clone(r.all), authRevs: maps.Clone(r.authRevs)}
	var res MergeResult
	for _, v := range revs {
		got, err := trial.addAuthorityRevocation(v)
		switch {
		case errors.Is(err, ErrRevokedAuthority):
			res.Skipped++
			res.Refused++
		case err != nil:
			return MergeResult{}, fmt.Errorf("merge roster: %w", err)
		case bytes.Equal(got.raw, v.raw):
			res.Added++
		default:
			res.Skipped++
		}
	}
	for _, e := range recs {
		got, err := trial.add(e)
		switch {
		case errors.Is(err, ErrRevokedAuthority):
			res.Skipped++
			res.Refused++
		case errors.Is(err, ErrExpired):
			res.Skipped++
		case err != nil:
			return MergeResult{}, fmt.Errorf("merge roster: %w", err)
		case bytes.Equal(got.raw, e.raw):
			res.Added++
		default:
			res.Skipped++
		}
	}
	r.by, r.keys, r.revoked, r.all, r.authRevs = trial.by, trial.keys, trial.revoked, trial.all, trial.authRevs
	return res, nil
}

// decodeRoster decodes a roster file, or a single enrolment or
// authority revocation file, into signature-checked records.
func decodeRoster(data []byte) ([]Enrolment, []AuthorityRevocation, error) {
	if len(data) >= 3 && data[2] == kindEnrolment {
		e, err := decodeEnrolment(data)
		if err != nil {
			return nil, nil, err
		}
		return []Enrolment{e}, nil, nil
	}
	if isAuthorityRevocation(data) {
		v, err := decodeAuthorityRevocation(data)
		if err != nil {
			return nil, nil, err
		}
		return nil, []AuthorityRevocation{v}, nil
	}
	recs, revs, err := decodeRosterFile(data)
	if err != nil {
		return nil, nil, err
	}
	return recs, revs, nil
}

// decodeRosterFile decodes a roster file (Encode): each record an
// enrolment or an authority revocation.
func decodeRosterFile(data []byte) ([]Enrolment, []AuthorityRevocation, error) {
	if len(data) > MaxRosterBytes {
		return nil, nil, fmt.Errorf("%d bytes: %w", len(data), ErrTooLarge)
	}
	// A roster's records are signatures, keys and random IDs, which
	// compression cannot shrink much: a frame claiming more than
	// maxInflation times its size is not a whole roster file, and is
	// refused before anything is inflated.
	bound := min(MaxRosterBytes, len(data)*maxInflation)
	_, body, err := wire.Decode(data, kindRoster, rosterVersion, bound)
	if bound < MaxRosterBytes && errors.Is(err, ErrTooLarge) {
		return nil, nil, fmt.Errorf("roster of %d bytes claims a body of more than %d times that: %w", len(data), maxInflation, wire.ErrTruncated)
	}
	if err != nil {
		return nil, nil, err
	}
	rd := wire.NewReader(body)
	n, err := rd.Count(1 + minEnrolmentBytes)
	if err != nil {
		return nil, nil, err
	}
	// Records are appended as they decode, so memory follows the records
	// present, not the count.
	var out []Enrolment
	var revs []AuthorityRevocation
	for i := range n {
		raw, err := rd.Bytes(MaxRevocationBytes)
		if err != nil {
			return nil, nil, fmt.Errorf("record %d: %w", i, err)
		}
		if isAuthorityRevocation(raw) {
			v, err := decodeAuthorityRevocation(raw)
			if err != nil {
				return nil, nil, fmt.Errorf("record %d: %w", i, err)
			}
			revs = append(revs, v)
			continue
		}
		e, err := decodeEnrolment(raw)
		if err != nil {
			return nil, nil, fmt.Errorf("record %d: %w", i, err)
		}
		out = append(out, e)
	}
	if err := rd.Done(); err != nil {
		return nil, nil, err
	}
	return out, revs, nil
}

// Save writes the roster file (Encode) to path atomically. The roster
// holds no secret; it is written 0644.
func (r *Roster) Save(path string) error {
	if err := atomicfile.Write(path, r.Encode(), atomicfile.Options{Perm: 0o644}); err != nil {
		return fmt.Errorf("save roster: %w", err)
	}
	return nil
}

// LoadRoster returns a roster trusting cfg.Authorities holding every
// record of the roster file at path, each verified again as Merge does.
// A missing file gives an empty roster.
func LoadRoster(path string, cfg RosterConfig) (*Roster, error) {
	r, err := NewRoster(cfg)
	if err != nil {
		return nil, err
	}
	data, err := readBounded(path, MaxRosterBytes)
	if errors.Is(err, os.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load roster: %w", err)
	}
	if _, err := r.Merge(data); err != nil {
		return nil, fmt.Errorf("load roster %s: %w", path, err)
	}
	return r, nil
}

// readBounded reads a file of at most limit bytes. A file whose size is
// over the limit is refused before any of it is read; one that grows while
// read is refused once limit+1 bytes are in.
func readBounded(path string, limit int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() > int64(limit) {
		return nil, fmt.Errorf("%s is %d bytes, over %d: %w", path, fi.Size(), limit, ErrTooLarge)
	}
	buf := bytes.NewBuffer(make([]byte, 0, fi.Size()+1))
	if _, err := buf.ReadFrom(io.LimitReader(f, int64(limit)+1)); err != nil {
		return nil, err
	}
	if buf.Len() > limit {
		return nil, fmt.Errorf("%s is over %d bytes: %w", path, limit, ErrTooLarge)
	}
	return buf.Bytes(), nil
}
