package replica

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/replica/store"
)

// Signer signs the changes a replica makes: the device's key pair
// (*device.Identity is one). Its replica ID must be the replica's, which
// is the actor of every change made there.
type Signer interface {
	ReplicaID() string
	// SignChange signs the change with hash in chart.
	SignChange(chart string, hash [32]byte) []byte
}

// Keys verifies change signatures: a directory of devices' keys, each
// enrolled by an authority the replica trusts (*device.Roster is one).
// It must be safe for concurrent use.
type Keys interface {
	// VerifyChange checks that sig is replicaID's signature of the change
	// with hash in chart, and returns the clinic the device is enrolled
	// in. It returns an error if the signature does not verify, or if no
	// key of replicaID is known.
	VerifyChange(replicaID, chart string, hash [32]byte, sig []byte) (clinic string, err error)
	// SignerEnrolments returns the signed records that carry replicaID's
	// keys (every key it was ever enrolled with), to send along with its
	// changes.
	SignerEnrolments(replicaID string) [][]byte
	// LearnSigner checks a signed record from SignerEnrolments (made by a
	// trusted authority) and keeps its key; it returns the replica ID it
	// is for.
	LearnSigner(record []byte) (string, error)
}

// Revocations is what a Keys may also do (*device.Roster does): say which
// changes of a revoked device are still accepted, and give the signed
// revocations to pass on. A replica whose Keys has it refuses, on every
// path a change arrives by, the changes its authority's revocation does
// not accept (ErrRevokedChange), and passes revocations on to its peers.
type Revocations interface {
	// AcceptedUpTo reports whether replicaID is revoked and, if so, the
	// highest Automerge sequence number of its changes to chart the
	// revoking authority accepts (0: none; math.MaxUint64: no limit, a
	// revocation that names none).
	AcceptedUpTo(replicaID, chart string) (seq uint64, revoked bool)
	// RevocationsFor returns the signed revocations to send recipient
	// with any bundle (records LearnSigner takes).
	RevocationsFor(recipient string) [][]byte
}

// AuthorityRevocations is what a Keys may also do (*device.Roster does):
// give the signed revocations of authority keys it holds (records
// LearnSigner takes, for no replica). A replica stores those it learns,
// with the bundle or refusal that brought them, and has its Keys learn
// them again when it opens, so that a device refuses a revoked hub's
// records after a restart as before it, whatever its roster was built
// from.
type AuthorityRevocations interface {
	AuthorityRevocationRecords() [][]byte
}

// metaAuthorityRevocations holds the authority revocations the replica's
// Keys held after the last write that changed them (base64 lines).
const metaAuthorityRevocations = "authority-revocations"

// authorityRevocationsToStore returns the authority revocations r's Keys
// holds, encoded for metaAuthorityRevocations, if they differ from those
// stored; ok is false if there is nothing to store.
func (r *Replica) authorityRevocationsToStore() (v string, ok bool) {
	ar, is := r.cfg.Keys.(AuthorityRevocations)
	if !is {
		return "", false
	}
	recs := ar.AuthorityRevocationRecords()
	if len(recs) == 0 {
		return "", false
	}
	v = encodeSigners(recs)
	r.authRevMu.Lock()
	defer r.authRevMu.Unlock()
	return v, v != r.authRevStored
}

// storedAuthorityRevocations notes v as stored.
func (r *Replica) storedAuthorityRevocations(v string) {
	r.authRevMu.Lock()
	r.authRevStored = v
	r.authRevMu.Unlock()
}

// loadAuthorityRevocations has r's Keys learn the authority revocations
// stored. A record it refuses now is logged and left out.
func (r *Replica) loadAuthorityRevocations(ctx context.Context) error {
	if r.cfg.Keys == nil {
		return nil
	}
	v, err := r.st.Meta(ctx, metaAuthorityRevocations)
	if errors.Is(err, store.ErrNotFound) || err == nil && v == "" {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read authority revocations: %w", err)
	}
	for _, line := range strings.Split(v, "\n") {
		rec, err := base64.StdEncoding.DecodeString(line)
		if err == nil {
			_, err = r.cfg.Keys.LearnSigner(rec)
		}
		if err != nil {
			r.log.Warn("a stored authority revocation is not taken", "err", err)
		}
	}
	r.storedAuthorityRevocations(v)
	return nil
}

// ErrRevokedChange is returned by Receive, on a replica whose Keys has
// Revocations, for a bundle holding a change by a revoked device that its
// revocation does not accept: one with a greater sequence number in its
// chart than the last the revoking authority held, so made (or first
// passed on) after the revocation. The error also matches
// ErrForgedChange, and the bundle is kept in the quarantine as a forged
// one is; nothing of it is applied.
var ErrRevokedChange = errors.New("replica: change of a revoked device made after its revocation")

// RevokedChangeError is the error behind ErrRevokedChange: which change
// was refused, and what its device's revocation accepts. It matches
// ErrRevokedChange and ErrForgedChange.
type RevokedChangeError struct {
	Chart    string
	Device   string    // the revoked device's replica ID (the change's actor)
	Change   crdt.Hash // the change refused
	Seq      uint64    // its sequence number in Chart
	Accepted uint64    // the highest the revocation accepts in Chart
}

func (e *RevokedChangeError) Error() string {
	return fmt.Sprintf("change %s of chart %s by %s is its change number %d there, past the %d its revocation accepts: %v: %v",
		e.Change, e.Chart, e.Device, e.Seq, e.Accepted, ErrRevokedChange, ErrForgedChange)
}

// Is matches ErrRevokedChange and ErrForgedChange.
func (e *RevokedChangeError) Is(target error) bool {
	return target == ErrRevokedChange || target == ErrForgedChange
}

// RevocationsFor returns the signed revocations the replica's Keys holds
// that recipient should have (Revocations.RevocationsFor), after those of
// the devices named, if revoked (the devices whose changes recipient sent
// and had refused: RevokedChangeError.Device), without repeats. It
// returns nil if the Keys has no Revocations.
func (r *Replica) RevocationsFor(recipient string, devices ...string) [][]byte {
	rk, ok := r.cfg.Keys.(Revocations)
	if !ok {
		return nil
	}
	var out [][]byte
	seen := map[[32]byte]bool{}
	add := func(rec []byte) {
		if sum := sha256.Sum256(rec); !seen[sum] {
			seen[sum] = true
			out = append(out, rec)
		}
	}
	for _, id := range devices {
		if _, revoked := rk.AcceptedUpTo(id, ""); !revoked {
			continue
		}
		// Its revocation comes last (Keys.SignerEnrolments).
		if recs := r.cfg.Keys.SignerEnrolments(id); len(recs) > 0 {
			add(recs[len(recs)-1])
		}
	}
	for _, rec := range rk.RevocationsFor(recipient) {
		add(rec)
	}
	return out
}

// LearnRevocations has the replica's Keys learn signed revocations
// (Keys.LearnSigner) that came other than with a bundle: with a peer's
// refusal of changes of revoked devices this replica took before it knew
// of their revocation (ErrRevokedChange). From then on the replica leaves
// those changes out of its bundles, so its next sync is not refused
// again. Each revocation learnt is stored with its device's signer
// records, so the replica passes it on with the device's changes after a
// restart too. It returns the devices now known to be revoked; a record
// the Keys refuses (forged, of an authority not trusted) is skipped and
// reported in the error, which matches ErrForgedChange. At most 256
// records of at most MaxRevocationRecordBytes each are taken.
func (r *Replica) LearnRevocations(ctx context.Context, recs [][]byte) ([]string, error) {
	if err := r.checkOpen(); err != nil {
		return nil, err
	}
	if r.cfg.Keys == nil {
		return nil, nil
	}
	rk, _ := r.cfg.Keys.(Revocations)
	var errs []error
	var ids []string
	meta := map[string]string{}
	for i, rec := range recs {
		if i == maxRevocationsSent {
			errs = append(errs, fmt.Errorf("learn revocations: %d records, limit %d: %w", len(recs), maxRevocationsSent, ErrBundleTooLarge))
			break
		}
		if len(rec) == 0 || len(rec) > MaxRevocationRecordBytes {
			errs = append(errs, fmt.Errorf("learn revocation %d: %d bytes, limit %d: %w", i, len(rec), MaxRevocationRecordBytes, ErrForgedChange))
			continue
		}
		id, err := r.cfg.Keys.LearnSigner(rec)
		if err != nil {
			errs = append(errs, fmt.Errorf("learn revocation %d: %w: %w", i, ErrForgedChange, err))
			continue
		}
		if id == "" || rk == nil || slices.Contains(ids, id) {
			continue // learnt before, or no revocations kept
		}
		if _, revoked := rk.AcceptedUpTo(id, ""); !revoked {
			continue
		}
		ids = append(ids, id)
		known, unstored, err := r.knownSigners(ctx, id)
		if err != nil {
			return ids, fmt.Errorf("learn revocation of %s: %w", id, err)
		}
		if unstored {
			meta[metaSigner+id] = encodeSigners(known)
		}
	}
	authRevs, storeAuthRevs := r.authorityRevocationsToStore()
	if storeAuthRevs {
		meta[metaAuthorityRevocations] = authRevs
	}
	if len(meta) > 0 {
		unlock, err := r.lock()
		if err != nil {
			return ids, err
		}
		_, err = r.st.Write(ctx, store.Batch{Meta: meta})
		unlock()
		if err != nil {
			return ids, fmt.Errorf("store learnt revocations: %w", err)
		}
		if storeAuthRevs {
			r.storedAuthorityRevocations(authRevs)
		}
	}
	return ids, errors.Join(errs...)
}

// maxRevocationsSent bounds the revocations a bundle carries besides its
// changes' signers.
const maxRevocationsSent = 256

// ErrForgedChange is returned by Receive, on a replica with Config.Keys,
// for a bundle holding a change that is unsigned, whose signature does
// not verify against its actor's key, or whose actor is no device a
// trusted authority enrolled (a change credited to another device, or
// moved to another chart, is one). The bundle is kept in the quarantine
// for review and nothing of it is applied.
var ErrForgedChange = errors.New("replica: change not signed by its author device")

// metaSigner is the meta key prefix under which a replica keeps the signed
// enrolment of each device whose changes it holds (in base64), so it can
// pass them on with those changes after a restart.
const metaSigner = "signer/"

// storedSigners returns the signed enrolments of actor kept in the store.
func (r *Replica) storedSigners(ctx context.Context, actor string) ([][]byte, error) {
	v, err := r.st.Meta(ctx, metaSigner+actor)
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for _, line := range strings.Split(v, "\n") {
		rec, err := base64.StdEncoding.DecodeString(line)
		if err != nil {
			return nil, fmt.Errorf("stored signer of %s: %w", actor, err)
		}
		out = append(out, rec)
	}
	return out, nil
}

func encodeSigners(recs [][]byte) string {
	lines := make([]string, len(recs))
	for i, rec := range recs {
		lines[i] = base64.StdEncoding.EncodeToString(rec)
	}
	return strings.Join(lines, "\n")
}

// sign signs a change made here, or returns nil without a Signer.
func (r *Replica) sign(chart string, h crdt.Hash) []byte {
	if r.cfg.Signer == nil {
		return nil
	}
	return r.cfg.Signer.SignChange(chart, h)
}

// signers returns the signed enrolments of the devices whose changes b
// carries, as far as they are known, for a recipient that may not have
// met them, and the revocations the recipient should hold (Revocations).
//
// With Revocations, it first leaves out of b the changes that no replica
// holding their device's revocation takes (see leaveOutRevoked), so that
// a replica that accepted such changes before it learnt the revocation
// does not have every later bundle refused: the recipient acknowledges
// the bundle's positions past them and they are not sent again.
func (r *Replica) signers(ctx context.Context, b *Bundle, self bool) ([][]byte, error) {
	if r.cfg.Keys == nil {
		return nil, nil
	}
	var out [][]byte
	sent := map[[32]byte]bool{}
	large := 0 // bytes of the records over MaxSignerBytes (MaxLargeSignerBytes)
	fits := func(rec []byte) bool {
		if len(rec) > MaxRevocationRecordBytes || large+largeSigner(rec) > MaxLargeSignerBytes {
			return false
		}
		large += largeSigner(rec)
		return true
	}
	if rk, ok := r.cfg.Keys.(Revocations); ok {
		if err := r.leaveOutRevoked(ctx, b, rk); err != nil {
			return nil, err
		}
		for _, rec := range rk.RevocationsFor(b.To) {
			if len(out) == maxRevocationsSent {
				break
			}
			if fits(rec) {
				sent[sha256.Sum256(rec)] = true
				out = append(out, rec)
			}
		}
	}
	if len(b.Changes) == 0 && !self {
		return out, nil
	}
	seen := map[string]bool{}
	actors := make([]string, 0, 1)
	if self {
		// The bundle is signed by this device: the recipient needs its
		// enrolment to check that even when it carries none of its
		// changes.
		actors = append(actors, r.id)
	}
	for _, c := range b.Changes {
		actor, err := crdt.ChangeActor(c.Raw)
		if err != nil {
			continue
		}
		actors = append(actors, actor)
	}
	for _, actor := range actors {
		if seen[actor] {
			continue
		}
		seen[actor] = true
		recs, _, err := r.knownSigners(ctx, actor)
		if err != nil {
			return nil, err
		}
		if len(out)+len(recs) > MaxSigners {
			// A bundle with changes of more devices than that relies on
			// the recipient knowing the rest already.
			break
		}
		for _, rec := range recs { // none: the recipient decides what an unknown signer means
			sum := sha256.Sum256(rec)
			if sent[sum] || !fits(rec) {
				// A revocation past the bundle's bound on large
				// records (MaxLargeSignerBytes) reaches the
				// recipient with the roster, or with a bundle
				// carrying fewer.
				continue
			}
			sent[sum] = true
			out = append(out, rec)
		}
	}
	return out, nil
}

// leaveOutRevoked removes from b the changes of revoked devices that
// their revocations do not accept. They are changes this replica took
// before it learnt the revocation: every replica that holds it refuses
// them, and a peer that has not learnt it yet learns it with this
// bundle's revocations. The charts they were in are covered again from
// their stored signatures (coverPart), so the device's earlier changes,
// which a removed change covered, go with a signature of their own; a
// change that then has none (it arrived covered by a removed one) is
// removed too: the replicas that accept it got it from elsewhere.
func (r *Replica) leaveOutRevoked(ctx context.Context, b *Bundle, rk Revocations) error {
	drop := map[int]bool{}
	affected := map[string]bool{}
	for i, c := range b.Changes {
		actor, err := crdt.ChangeActor(c.Raw)
		if err != nil {
			continue // not this step's to judge
		}
		upto, revoked := rk.AcceptedUpTo(actor, c.Chart)
		if !revoked {
			continue
		}
		pc, err := crdt.ParseChange(c.Raw)
		if err != nil || pc.Seq <= upto {
			continue
		}
		drop[i], affected[c.Chart] = true, true
		r.log.Warn("a change of a revoked device past what its revocation accepts is not passed on",
			"to", b.To, "chart", c.Chart, "device", actor, "seq", pc.Seq, "accepted", upto)
	}
	if len(drop) == 0 {
		return nil
	}
	stored := map[crdt.Hash][]byte{} // stored signature fields of the affected charts' changes
	for chart := range affected {
		chs, err := r.st.ChartChanges(ctx, chart, 0)
		if err != nil {
			return fmt.Errorf("leave out refused changes of chart %s: %w", chart, err)
		}
		for _, c := range chs {
			stored[c.Hash] = c.Sig
		}
	}
	// Each round removes at least one change, or ends.
	for len(drop) > 0 {
		index := make([]int, len(b.Changes)) // new index of each change kept
		kept := b.Changes[:0:0]
		for i, c := range b.Changes {
			if !drop[i] {
				index[i] = len(kept)
				kept = append(kept, c)
			}
		}
		out := make([]outChange, len(kept))
		for i := range kept {
			c := &kept[i]
			if affected[c.Chart] {
				pc, err := crdt.ParseChange(c.Raw)
				if err != nil {
					return fmt.Errorf("leave out refused changes of chart %s: %w", c.Chart, err)
				}
				out[i] = outChange{hash: pc.Hash, stored: stored[pc.Hash]}
			} else if c.Cover > 0 {
				c.Cover = index[c.Cover-1] + 1
			}
		}
		b.Changes = kept
		drop = map[int]bool{}
		for _, chart := range chartOrder(b) {
			if !affected[chart.id] {
				continue
			}
			if err := coverPart(b, out, chart.part); err != nil && !errors.Is(err, errUncovered) {
				return fmt.Errorf("leave out refused changes of chart %s: %w", chart.id, err)
			}
			for _, i := range chart.part {
				if c := b.Changes[i]; c.Sig == nil && c.Cover == 0 && len(out[i].stored) > 0 {
					drop[i] = true
				}
			}
		}
	}
	return nil
}

// knownSigners returns every signed enrolment of actor this replica has:
// its directory's and those stored with actor's changes (a directory
// reloaded from a roster file keeps only the enrolment in force, but
// changes signed with an earlier key must still be passed on with it).
// It also reports whether the store lacks some of them.
func (r *Replica) knownSigners(ctx context.Context, actor string) (recs [][]byte, unstored bool, err error) {
	stored, err := r.storedSigners(ctx, actor)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, false, err
	}
	recs = stored
	for _, rec := range r.cfg.Keys.SignerEnrolments(actor) {
		if !slices.ContainsFunc(recs, func(h []byte) bool { return bytes.Equal(h, rec) }) {
			recs, unstored = append(recs, rec), true
		}
	}
	return recs, unstored, nil
}

// verifier checks the signatures of one received bundle's changes.
type verifier struct {
	r        *Replica
	ctx      context.Context
	revs     Revocations       // the Keys' revocations, nil if it has none
	relearnt map[string]bool   // actors whose stored records were learnt again
	warned   map[string]bool   // actors whose revocation without a limit was logged
	learnt   map[string]error  // what learning each bundle signer gave, by replica
	checked  map[string]bool   // actors whose stored enrolments are up to date
	meta     map[string]string // enrolments to store with the bundle's changes
	clinic   map[changeIn]string
	trees    map[verifiedTree]string // tree signatures checked, and their signers' clinics
}

func (r *Replica) newVerifier(ctx context.Context, b *Bundle) *verifier {
	v := &verifier{r: r, ctx: ctx, learnt: map[string]error{}, checked: map[string]bool{}, meta: map[string]string{}, clinic: map[changeIn]string{}, relearnt: map[string]bool{}, warned: map[string]bool{}}
	v.revs, _ = r.cfg.Keys.(Revocations)
	seen := map[[32]byte]bool{}
	for _, rec := range b.Signers {
		sum := sha256.Sum256(rec)
		if seen[sum] {
			continue // each record is checked once, however often it is sent
		}
		seen[sum] = true
		if id, err := r.cfg.Keys.LearnSigner(rec); id != "" && v.learnt[id] == nil {
			v.learnt[id] = err
		}
	}
	if authRevs, ok := r.authorityRevocationsToStore(); ok {
		// An authority revocation the bundle brought is stored with it.
		v.meta[metaAuthorityRevocations] = authRevs
	}
	return v
}

// verify checks one change of chart, notes the clinic its signer is
// enrolled in, and notes its signer's enrolments for storing with it.
func (v *verifier) verify(chart string, c crdt.Change, sig []byte) error {
	if _, done := v.clinic[changeIn{chart, c.Hash}]; done {
		return nil // checked already, as the cover of another change
	}
	if len(sig) == 0 {
		return fmt.Errorf("change %s of chart %s by %s is not signed: %w", c.Hash, chart, c.Actor, ErrForgedChange)
	}
	keys := v.r.cfg.Keys
	if v.revs != nil && !v.relearnt[c.Actor] {
		// A revocation stored with the device's changes is in force
		// after a restart whose roster had not kept it (records learnt
		// before cost no signature check).
		v.relearnt[c.Actor] = true
		if recs, err := v.r.storedSigners(v.ctx, c.Actor); err == nil {
			for _, rec := range recs {
				_, _ = keys.LearnSigner(rec)
			}
		}
	}
	clinic, err := v.check(c.Actor, chart, c.Hash, sig)
	if err != nil && !v.checked[c.Actor] {
		// A signer met before, whose records this replica stored, but
		// the directory has not learnt since it was opened.
		if recs, merr := v.r.storedSigners(v.ctx, c.Actor); merr == nil {
			for _, rec := range recs {
				_, _ = keys.LearnSigner(rec)
			}
			clinic, err = v.check(c.Actor, chart, c.Hash, sig)
		}
	}
	if err != nil {
		if lerr := v.learnt[c.Actor]; lerr != nil {
			err = fmt.Errorf("%w (the bundle's record of the device was refused: %w)", err, lerr)
		}
		return fmt.Errorf("change %s of chart %s signed as %s: %w: %w", c.Hash, chart, c.Actor, ErrForgedChange, err)
	}
	if err := v.accepted(chart, c); err != nil {
		return err
	}
	v.clinic[changeIn{chart, c.Hash}] = clinic
	if !v.checked[c.Actor] {
		v.checked[c.Actor] = true
		recs, unstored, err := v.r.knownSigners(v.ctx, c.Actor)
		if err != nil {
			return fmt.Errorf("read signer of %s: %w", c.Actor, err)
		}
		if unstored {
			v.meta[metaSigner+c.Actor] = encodeSigners(recs)
		}
	}
	return nil
}

// check verifies sig, a signature or a batch signature's proof, as
// actor's of the change with hash h in chart, and returns the clinic of
// actor's enrolment. A tree's signature is checked once per actor: the
// other changes of the tree cost their path's hashes.
func (v *verifier) check(actor, chart string, h crdt.Hash, sig []byte) (string, error) {
	p, ok := parseProof(sig)
	if !ok {
		return v.r.cfg.Keys.VerifyChange(actor, chart, [32]byte(h), sig)
	}
	digest, err := proofDigest(p, chart, h)
	if err != nil {
		return "", err
	}
	k := verifiedTree{actor: actor, digest: digest, sig: string(p.sig)}
	if clinic, ok := v.trees[k]; ok {
		return clinic, nil
	}
	clinic, err := v.r.cfg.Keys.VerifyChange(actor, batchDomain, digest, p.sig)
	if err != nil {
		return "", fmt.Errorf("batch signature: %w", err)
	}
	if v.trees == nil {
		v.trees = map[verifiedTree]string{}
	}
	v.trees[k] = clinic
	return clinic, nil
}

// verifiedTree is a tree signature a verifier has checked.
type verifiedTree struct {
	actor  string
	digest [32]byte
	sig    string
}

// accepted checks that c, signed by its device, is not one its device's
// revocation refuses: a change with a greater sequence number in chart
// than the last the revoking authority accepted.
func (v *verifier) accepted(chart string, c crdt.Change) error {
	if v.revs == nil {
		return nil
	}
	upto, revoked := v.revs.AcceptedUpTo(c.Actor, chart)
	switch {
	case !revoked:
		return nil
	case upto == math.MaxUint64:
		if v.warned[c.Actor] {
			return nil
		}
		v.warned[c.Actor] = true
		v.r.log.Warn("a change of a revoked device taken: its revocation names no limit on its changes",
			"chart", chart, "device", c.Actor, "seq", c.Seq)
		return nil
	case c.Seq <= upto:
		return nil
	}
	return &RevokedChangeError{Chart: chart, Device: c.Actor, Change: c.Hash, Seq: c.Seq, Accepted: upto}
}

// mayChange checks that the device that signed a change is one that may
// change the document: for a clinic's user roster, a device of that
// clinic; for a chart (unscoped true), a device of a clinic in the
// chart's scope on the version the change was made on, or of a clinic in
// Config.Unscoped.
func (v *verifier) mayChange(chart string, c crdt.Change, scope []string, unscoped bool) error {
	clinic := v.clinic[changeIn{chart, c.Hash}]
	if slices.Contains(scope, clinic) || unscoped && slices.Contains(v.r.cfg.Unscoped, clinic) {
		return nil
	}
	return fmt.Errorf("change %s was signed by %s, a device of clinic %s, which may not change a document of %s: %w",
		c.Hash, c.Actor, clinic, strings.Join(scope, ", "), ErrUnauthorizedChange)
}

// addTo adds the signer records to store to b.
func (v *verifier) addTo(b *store.Batch) {
	if len(v.meta) == 0 {
		return
	}
	if b.Meta == nil {
		b.Meta = map[string]string{}
	}
	for k, val := range v.meta {
		b.Meta[k] = val
	}
}

// clinicOf returns the clinic of the device that signed the change with
// hash h in chart, as verify found it ("" if it did not check it).
func (v *verifier) clinicOf(chart string, h crdt.Hash) string { return v.clinic[changeIn{chart, h}] }

// changeIn is a change of a chart. What a verifier found of a change
// holds for the chart it checked it in only: a signature covers the
// chart as well as the change, so the same change carried in another
// chart is checked again.
type changeIn struct {
	chart string
	hash  crdt.Hash
}

// actorSeqPage is how many changes ActorSeqs reads from the log at a time.
const actorSeqPage = 1000

// ActorSeqs returns, per chart, the highest Automerge sequence number of
// actor's changes this replica holds: what an authority revoking the
// device with that replica ID accepts (device.Authority.RevokeAccepting).
// A replica holds a chart's changes of one actor from 1 to that number,
// none missing (a change is stored only once those it depends on are).
// See the function ActorSeqs for its cost.
func (r *Replica) ActorSeqs(ctx context.Context, actor string) (map[string]uint64, error) {
	if err := r.checkOpen(); err != nil {
		return nil, err
	}
	return ActorSeqs(ctx, r.st, actor)
}

// ActorSeqs is Replica.ActorSeqs over a store's log, for a program that
// reads a replica's store without opening the replica (an administrator's
// command beside a running server).
//
// It reads the whole log once, a page at a time, parsing in full only
// actor's changes: a cost in the log's size, for an administrator's rare
// revocation.
func ActorSeqs(ctx context.Context, log store.ChangeLog, actor string) (map[string]uint64, error) {
	out := map[string]uint64{}
	for after := uint64(0); ; {
		page, err := log.Log(ctx, after, actorSeqPage)
		if err != nil {
			return nil, fmt.Errorf("changes of %s: %w", actor, err)
		}
		for _, c := range page {
			after = c.Seq
			if a, err := crdt.ChangeActor(c.Raw); err != nil || a != actor {
				continue
			}
			pc, err := crdt.ParseChange(c.Raw)
			if err != nil {
				return nil, fmt.Errorf("changes of %s: change %s of chart %s: %w", actor, c.Hash, c.Chart, err)
			}
			out[c.Chart] = max(out[c.Chart], pc.Seq)
		}
		if len(page) < actorSeqPage {
			return out, nil
		}
	}
}
