package replica

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
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
// met them.
func (r *Replica) signers(ctx context.Context, b *Bundle, self bool) ([][]byte, error) {
	if r.cfg.Keys == nil || len(b.Changes) == 0 && !self {
		return nil, nil
	}
	seen := map[string]bool{}
	var out [][]byte
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
		out = append(out, recs...) // none: the recipient decides what an unknown signer means
	}
	return out, nil
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
	r       *Replica
	ctx     context.Context
	learnt  map[string]error  // what learning each bundle signer gave, by replica
	checked map[string]bool   // actors whose stored enrolments are up to date
	meta    map[string]string // enrolments to store with the bundle's changes
	clinic  map[crdt.Hash]string
}

func (r *Replica) newVerifier(ctx context.Context, b *Bundle) *verifier {
	v := &verifier{r: r, ctx: ctx, learnt: map[string]error{}, checked: map[string]bool{}, meta: map[string]string{}, clinic: map[crdt.Hash]string{}}
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
	return v
}

// verify checks one change of chart, notes the clinic its signer is
// enrolled in, and notes its signer's enrolments for storing with it.
func (v *verifier) verify(chart string, c crdt.Change, sig []byte) error {
	if _, done := v.clinic[c.Hash]; done {
		return nil // checked already, as the cover of another change
	}
	if len(sig) == 0 {
		return fmt.Errorf("change %s of chart %s by %s is not signed: %w", c.Hash, chart, c.Actor, ErrForgedChange)
	}
	keys := v.r.cfg.Keys
	clinic, err := keys.VerifyChange(c.Actor, chart, [32]byte(c.Hash), sig)
	if err != nil && !v.checked[c.Actor] {
		// A signer met before, whose records this replica stored, but
		// the directory has not learnt since it was opened.
		if recs, merr := v.r.storedSigners(v.ctx, c.Actor); merr == nil {
			for _, rec := range recs {
				_, _ = keys.LearnSigner(rec)
			}
			clinic, err = keys.VerifyChange(c.Actor, chart, [32]byte(c.Hash), sig)
		}
	}
	if err != nil {
		if lerr := v.learnt[c.Actor]; lerr != nil {
			err = fmt.Errorf("%w (the bundle's record of the device was refused: %w)", err, lerr)
		}
		return fmt.Errorf("change %s of chart %s signed as %s: %w: %w", c.Hash, chart, c.Actor, ErrForgedChange, err)
	}
	v.clinic[c.Hash] = clinic
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

// mayChange checks that the device that signed a change is one that may
// change the document: for a clinic's user roster, a device of that
// clinic; for a chart (unscoped true), a device of a clinic in the
// chart's scope on the version the change was made on, or of a clinic in
// Config.Unscoped.
func (v *verifier) mayChange(c crdt.Change, scope []string, unscoped bool) error {
	clinic := v.clinic[c.Hash]
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
// hash h, as verify found it ("" if it did not check it).
func (v *verifier) clinicOf(h crdt.Hash) string { return v.clinic[h] }
