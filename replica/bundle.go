package replica

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/internal/wire"
)

// Bundle errors. Receive wraps them; match with errors.Is.
var (
	// ErrMalformedBundle: the bytes are not a well-formed bundle
	// (truncated, corrupted, inconsistent, or carrying invalid changes).
	ErrMalformedBundle = wire.ErrMalformed
	// ErrBundleVersion: a bundle of a format version this build does not
	// understand.
	ErrBundleVersion = wire.ErrVersion
	// ErrBundleTooLarge: the bundle or one of its changes is over the limit.
	ErrBundleTooLarge = wire.ErrTooLarge
	// ErrWrongRecipient: the bundle is addressed to another replica.
	ErrWrongRecipient = errors.New("bundle addressed to another replica")
)

const (
	bundleKind    = 'B'
	bundleVersion = BundleVersion
	// BundleVersion is the bundle format version this build writes and
	// reads: a wire frame of kind 'B' (version 2 added change signatures
	// and signer enrolments; version 3 lets a signed change cover the
	// same device's earlier changes in its history; version 4 adds the
	// sender's signature over the whole bundle; version 5 leaves out of a
	// change the hashes of the changes it depends on that the bundle
	// carries before it, which its recipient puts back; version 6 adds
	// UptoHash, CheckAt and CheckHash, which tell a replica whose log went back, a
	// copied or restored data folder, from the one its peers knew;
	// version 7 adds Epoch and AckEpoch, which tell a peer that a
	// replica's log was restored from a backup under its own ID;
	// version 8 adds batch signatures, one signature over a device's
	// changes to many charts, with a proof for each change).
	BundleVersion = 8
	// MaxBundleBytes bounds a decoded bundle.
	MaxBundleBytes = 256 << 20
	// MaxChangeBytes bounds one change in a bundle.
	MaxChangeBytes = 16 << 20
	// MaxSignatureBytes bounds one change's signature field: a signature,
	// or a batch signature's proof (the signature, the change's place in
	// its tree and up to 8 sibling hashes; see batchsig.go).
	MaxSignatureBytes = 512
	// maxAuthBytes bounds the sender's signature over a bundle.
	maxAuthBytes = 128
	// MaxSignerBytes bounds one signer enrolment in a bundle. A record
	// over it (a revocation naming the changes it accepts in many
	// charts) may be up to MaxRevocationRecordBytes, within
	// MaxLargeSignerBytes for the bundle.
	MaxSignerBytes = 4096
	// MaxRevocationRecordBytes bounds one signer record in a bundle: the
	// largest revocation an authority signs (device.MaxRevocationBytes,
	// one accepting changes in tens of thousands of charts).
	MaxRevocationRecordBytes = 1 << 20
	// MaxLargeSignerBytes bounds the bytes of a bundle's signer records
	// over MaxSignerBytes together, so a bundle's revocations cost a
	// recipient at most that much besides its changes.
	MaxLargeSignerBytes = 4 << 20
	// MaxSigners bounds the signer enrolments of one bundle (each distinct
	// one costs the recipient a signature check, about 50 µs): far more
	// devices than a bundle's changes come from in a clinic's sync.
	MaxSigners = 1 << 14
)

// Bundle is what one replica sends another, over any courier. It carries
// the sender's log from Base (exclusive) to Upto (inclusive), less the
// changes the recipient is known to have, and a summary: the sender's log
// Head and how far (Ack) it holds the recipient's log.
//
// Log positions are the sender's own; a recipient records them per sender.
// Upto < Head means the sender has more to send.
type Bundle struct {
	From, To string // replica IDs
	Base     uint64
	Upto     uint64
	Head     uint64
	Ack      uint64
	// UptoHash is the first PositionHashBytes bytes of the hash of the
	// sender's change at log position Upto (empty if Upto is 0 or names
	// no change). The recipient keeps it and hands it back as a check.
	UptoHash []byte
	// CheckAt and CheckHash say what the sender was told (UptoHash) of
	// the recipient's change at position CheckAt of the recipient's log,
	// at most Ack (0 and empty: nothing). A recipient that holds another
	// change there has a log that went back: it is a copy (see
	// ErrForkedReplica).
	CheckAt   uint64
	CheckHash []byte
	// Epoch names the sender's log (see LogEpoch): Base, Upto, Head and
	// UptoHash are positions of that log. 0: not named.
	Epoch uint64
	// AckEpoch is the recipient's log Epoch as the sender last learnt
	// it: Ack and CheckAt are positions of that log. 0: not known (the
	// sender has not heard from the recipient since it named its log).
	AckEpoch uint64
	Changes  []BundleChange
	// Signers are signed enrolments (see Keys) of devices whose changes
	// the bundle carries, so a recipient that has not met a device can
	// check its signatures.
	Signers [][]byte
	// Auth, if set, is the sender's signature over the rest of the bundle
	// (see Signed): it proves the positions are the sender's own claims,
	// whatever carried the bundle.
	Auth []byte

	signed [32]byte // set by DecodeBundle: what Auth signs
}

// bundleAuthDomain is the chart name under which a bundle's digest is
// signed (Signer.SignChange), apart from every chart ID (a UUID).
const bundleAuthDomain = "chartsync bundle"

// Signed returns the digest Auth signs: the SHA-256 of the bundle's wire
// form up to its signature. It is set by DecodeBundle.
func (b *Bundle) Signed() [32]byte { return b.signed }

// BundleChange is one raw change of one chart, with its author device's
// signature, or a cover: the change is vouched for by a later change in
// the bundle, of the same chart and device, carrying its own signature,
// whose history holds this one.
type BundleChange struct {
	Chart string // chart ID (a UUID)
	Raw   []byte
	Sig   []byte // nil if unsigned or covered
	// Cover, if not 0, is 1 + the index in the bundle's Changes of the
	// signed change that covers this one (Sig is then nil).
	Cover int
}

// Change signature forms on the wire.
const (
	sigNone   = 0 // unsigned
	sigOwn    = 1 // the change's own signature follows
	sigCover  = 2 // the index of the covering change follows
	sigBatch  = 3 // the change's tree (see batchsig.go) and its place among the leaves follow
	sigMaxTag = sigBatch
)

// Complete reports whether the bundle carries all the sender had.
func (b *Bundle) Complete() bool { return b.Upto == b.Head }

func idBytes(id string) ([]byte, error) {
	b, err := hex.DecodeString(id)
	if err != nil || len(b) != 16 || hex.EncodeToString(b) != id {
		return nil, fmt.Errorf("replica id %q is not 32 lower-case hex digits", id)
	}
	return b, nil
}

// Encode returns the bundle's wire form: a wire frame of kind 'B'. Auth
// is written as it is; EncodeSigned signs the bundle instead.
func (b *Bundle) Encode() ([]byte, error) {
	return b.encode(nil)
}

// EncodeSigned returns the bundle's wire form signed by s, the sender's
// key pair, and sets Auth.
func (b *Bundle) EncodeSigned(s Signer) ([]byte, error) {
	if s.ReplicaID() != b.From {
		return nil, fmt.Errorf("sign a bundle from %s with the key pair of %s: %w", b.From, s.ReplicaID(), ErrWrongSigner)
	}
	return b.encode(func(digest [32]byte) []byte { return s.SignChange(bundleAuthDomain, digest) })
}

func (b *Bundle) encode(sign func([32]byte) []byte) ([]byte, error) {
	from, err := idBytes(b.From)
	if err != nil {
		return nil, err
	}
	to, err := idBytes(b.To)
	if err != nil {
		return nil, err
	}
	if b.Base > b.Upto || b.Upto > b.Head {
		return nil, fmt.Errorf("bundle range %d..%d of %d is inconsistent", b.Base, b.Upto, b.Head)
	}
	size := 64
	for _, c := range b.Changes {
		size += 16 + 4 + len(c.Raw) + 2 + len(c.Sig)
	}
	for _, k := range b.Signers {
		size += 2 + len(k)
	}
	body := make([]byte, 0, size)
	body = append(body, from...)
	body = append(body, to...)
	for _, v := range []uint64{b.Base, b.Upto, b.Head, b.Ack} {
		body = binary.AppendUvarint(body, v)
	}
	if b.CheckAt > b.Ack || (b.CheckAt == 0) != (len(b.CheckHash) == 0) {
		return nil, fmt.Errorf("bundle checks position %d with %d hash bytes, acknowledging %d: %w", b.CheckAt, len(b.CheckHash), b.Ack, ErrMalformedBundle)
	}
	for i, h := range [][]byte{b.UptoHash, b.CheckHash} {
		if len(h) != 0 && len(h) != PositionHashBytes {
			return nil, fmt.Errorf("bundle position hash of %d bytes, not %d: %w", len(h), PositionHashBytes, ErrMalformedBundle)
		}
		if i == 1 {
			body = binary.AppendUvarint(body, b.CheckAt)
		}
		body = wire.AppendBytes(body, h)
	}
	if b.Epoch > MaxEpoch || b.AckEpoch > MaxEpoch {
		return nil, fmt.Errorf("bundle log epochs %d and %d, limit %d: %w", b.Epoch, b.AckEpoch, MaxEpoch, ErrMalformedBundle)
	}
	body = binary.AppendUvarint(body, b.Epoch)
	body = binary.AppendUvarint(body, b.AckEpoch)
	body = binary.AppendUvarint(body, uint64(len(b.Changes)))
	carried := make(map[crdt.Hash]int, len(b.Changes)) // hash → index, of the changes written so far
	hashes := make([]crdt.Hash, len(b.Changes))
	for i, c := range b.Changes {
		if len(c.Raw) > 8 {
			hashes[i] = sha256.Sum256(c.Raw[8:])
		}
	}
	trees, members := groupProofs(b, func(i int) crdt.Hash { return hashes[i] })
	inTree := make(map[int][2]uint64) // change → tree, leaf
	for t, ms := range members {
		for _, m := range ms {
			inTree[m.change] = [2]uint64{uint64(t), m.index}
		}
	}
	for i, c := range b.Changes {
		id, err := uuid.Parse(c.Chart)
		if err != nil {
			return nil, fmt.Errorf("bundle chart id %q: %w", c.Chart, err)
		}
		if len(c.Sig) > MaxSignatureBytes {
			return nil, fmt.Errorf("bundle change signature of %d bytes: %w", len(c.Sig), ErrBundleTooLarge)
		}
		body = append(body, id[:]...)
		body = appendChange(body, c.Raw, hashes[i], i, carried)
		if len(c.Raw) > 8 {
			carried[hashes[i]] = i
		}
		tree, batched := inTree[i]
		switch {
		case batched:
			body = append(body, sigBatch)
			body = binary.AppendUvarint(body, tree[0])
			body = binary.AppendUvarint(body, tree[1])
		case c.Cover != 0:
			if len(c.Sig) > 0 || c.Cover < 0 || c.Cover > len(b.Changes) {
				return nil, fmt.Errorf("bundle change with a cover %d of %d changes and a signature of %d bytes: %w", c.Cover, len(b.Changes), len(c.Sig), ErrMalformedBundle)
			}
			body = append(body, sigCover)
			body = binary.AppendUvarint(body, uint64(c.Cover-1))
		case len(c.Sig) > 0:
			body = append(body, sigOwn)
			body = wire.AppendBytes(body, c.Sig)
		default:
			body = append(body, sigNone)
		}
	}
	body = binary.AppendUvarint(body, uint64(len(trees)))
	for _, t := range trees {
		body = binary.AppendUvarint(body, t.n)
		body = wire.AppendBytes(body, t.sig)
		body = binary.AppendUvarint(body, uint64(len(t.extra)))
		for _, h := range t.extra {
			body = append(body, h[:]...)
		}
	}
	if len(b.Signers) > MaxSigners {
		return nil, fmt.Errorf("bundle with %d signer enrolments, limit %d: %w", len(b.Signers), MaxSigners, ErrBundleTooLarge)
	}
	body = binary.AppendUvarint(body, uint64(len(b.Signers)))
	large := 0
	for _, k := range b.Signers {
		if len(k) == 0 || len(k) > MaxRevocationRecordBytes {
			return nil, fmt.Errorf("bundle signer enrolment of %d bytes: %w", len(k), ErrMalformedBundle)
		}
		if large += largeSigner(k); large > MaxLargeSignerBytes {
			return nil, fmt.Errorf("bundle signer records over %d bytes of %d bytes together, limit %d: %w", MaxSignerBytes, large, MaxLargeSignerBytes, ErrBundleTooLarge)
		}
		body = wire.AppendBytes(body, k)
	}
	if sign != nil {
		b.signed = sha256.Sum256(body)
		b.Auth = sign(b.signed)
	}
	if len(b.Auth) > maxAuthBytes {
		return nil, fmt.Errorf("bundle signature of %d bytes: %w", len(b.Auth), ErrBundleTooLarge)
	}
	body = wire.AppendBytes(body, b.Auth)
	return wire.Encode(bundleKind, bundleVersion, body), nil
}

// largeSigner returns what a signer record counts against
// MaxLargeSignerBytes: its size if over MaxSignerBytes, else 0.
func largeSigner(rec []byte) int {
	if len(rec) > MaxSignerBytes {
		return len(rec)
	}
	return 0
}

// DecodeBundle parses a bundle, bounding every length before allocating.
// Errors match ErrMalformedBundle, ErrBundleVersion or ErrBundleTooLarge.
// The changes' bytes are checked by Receive, not here.
func DecodeBundle(data []byte) (*Bundle, error) {
	version, body, err := wire.Decode(data, bundleKind, bundleVersion, MaxBundleBytes)
	if err != nil {
		return nil, fmt.Errorf("decode bundle: %w", err)
	}
	if version != bundleVersion {
		// Version 1 carried no signatures, version 2 one per change,
		// version 3 no bundle signature, version 4 every dependency
		// hash, version 5 no position hashes, version 6 no log
		// epochs, version 7 no batch signatures; the sender must be
		// updated.
		return nil, fmt.Errorf("decode bundle: version %d from a sender older than this build (update it to send version %d): %w", version, bundleVersion, ErrBundleVersion)
	}
	r := wire.NewReader(body)
	from, err := r.Fixed(16)
	if err != nil {
		return nil, fmt.Errorf("decode bundle sender: %w", err)
	}
	to, err := r.Fixed(16)
	if err != nil {
		return nil, fmt.Errorf("decode bundle recipient: %w", err)
	}
	b := &Bundle{From: hex.EncodeToString(from), To: hex.EncodeToString(to)}
	for _, p := range []*uint64{&b.Base, &b.Upto, &b.Head, &b.Ack} {
		if *p, err = r.Uvarint(); err != nil {
			return nil, fmt.Errorf("decode bundle positions: %w", err)
		}
	}
	if b.Base > b.Upto || b.Upto > b.Head {
		return nil, fmt.Errorf("decode bundle: range %d..%d of %d: %w", b.Base, b.Upto, b.Head, ErrMalformedBundle)
	}
	if b.From == b.To {
		return nil, fmt.Errorf("decode bundle: sender is recipient: %w", ErrMalformedBundle)
	}
	for i, h := range []*[]byte{&b.UptoHash, &b.CheckHash} {
		if i == 1 {
			if b.CheckAt, err = r.Uvarint(); err != nil {
				return nil, fmt.Errorf("decode bundle check position: %w", err)
			}
		}
		if *h, err = r.Bytes(32); err != nil {
			return nil, fmt.Errorf("decode bundle position hash: %w", err)
		}
		if len(*h) == 0 {
			*h = nil
		} else if *h = bytes.Clone(*h); len(*h) != PositionHashBytes {
			return nil, fmt.Errorf("decode bundle: position hash of %d bytes: %w", len(*h), ErrMalformedBundle)
		}
	}
	if b.CheckAt > b.Ack || (b.CheckAt == 0) != (b.CheckHash == nil) {
		return nil, fmt.Errorf("decode bundle: checks position %d with %d hash bytes, acknowledging %d: %w", b.CheckAt, len(b.CheckHash), b.Ack, ErrMalformedBundle)
	}
	for _, p := range []*uint64{&b.Epoch, &b.AckEpoch} {
		if *p, err = r.Uvarint(); err != nil {
			return nil, fmt.Errorf("decode bundle log epochs: %w", err)
		}
		if *p > MaxEpoch {
			return nil, fmt.Errorf("decode bundle: log epoch %d, limit %d: %w", *p, MaxEpoch, ErrMalformedBundle)
		}
	}
	n, err := r.Count(16 + 2)
	if err != nil {
		return nil, fmt.Errorf("decode bundle change count: %w", err)
	}
	b.Changes = make([]BundleChange, n)
	// Every byte field of the bundle is copied out of body, the changes
	// and their signatures into blocks of the bundle's own: nothing
	// decoded keeps the frame's body, which is let go once it is read.
	var own arena
	hashes := make([]crdt.Hash, n) // of the changes read, once a later one names them
	restored := 0                  // the bytes of hashes put back so far
	var batched [][3]uint64        // the changes vouched for by a tree: tree, change, leaf
	for i := range b.Changes {
		id, err := r.Fixed(16)
		if err != nil {
			return nil, fmt.Errorf("decode bundle change %d: %w", i, err)
		}
		own.left = r.Len()
		raw, err := readChange(r, i, b.Changes[:i], hashes, &restored, &own)
		if err != nil {
			return nil, fmt.Errorf("decode bundle change %d: %w", i, err)
		}
		if len(raw) == 0 {
			return nil, fmt.Errorf("decode bundle change %d: empty: %w", i, ErrMalformedBundle)
		}
		b.Changes[i] = BundleChange{Chart: uuid.UUID(id).String(), Raw: raw}
		tag, err := r.Fixed(1)
		if err != nil {
			return nil, fmt.Errorf("decode bundle change %d signature: %w", i, err)
		}
		switch tag[0] {
		case sigNone:
		case sigOwn:
			sig, err := r.Bytes(MaxSignatureBytes)
			if err != nil {
				return nil, fmt.Errorf("decode bundle change %d signature: %w", i, err)
			}
			if len(sig) == 0 {
				return nil, fmt.Errorf("decode bundle change %d: empty signature: %w", i, ErrMalformedBundle)
			}
			b.Changes[i].Sig = own.copy(sig)
		case sigCover:
			j, err := r.Uvarint()
			if err != nil {
				return nil, fmt.Errorf("decode bundle change %d cover: %w", i, err)
			}
			if j >= uint64(n) || j == uint64(i) {
				return nil, fmt.Errorf("decode bundle change %d: cover %d of %d changes: %w", i, j, n, ErrMalformedBundle)
			}
			b.Changes[i].Cover = int(j) + 1
		case sigBatch:
			var m [2]uint64
			for k := range m {
				if m[k], err = r.Uvarint(); err != nil {
					return nil, fmt.Errorf("decode bundle change %d batch signature: %w", i, err)
				}
			}
			if m[0] >= uint64(n) || m[1] >= maxBatchLeaves {
				return nil, fmt.Errorf("decode bundle change %d: leaf %d of tree %d: %w", i, m[1], m[0], ErrMalformedBundle)
			}
			batched = append(batched, [3]uint64{m[0], uint64(i), m[1]})
		default:
			return nil, fmt.Errorf("decode bundle change %d: signature form %d: %w", i, tag[0], ErrMalformedBundle)
		}
	}
	if err := readTrees(r, b, batched, hashes, &own, maxProofBytes(len(body))); err != nil {
		return nil, fmt.Errorf("decode bundle: %w", err)
	}
	for i, c := range b.Changes {
		if c.Cover != 0 {
			if t := b.Changes[c.Cover-1]; len(t.Sig) == 0 || t.Chart != c.Chart {
				return nil, fmt.Errorf("decode bundle change %d: covered by change %d, which is not a signed change of chart %s: %w", i, c.Cover-1, c.Chart, ErrMalformedBundle)
			}
		}
	}
	k, err := r.Count(2)
	if err != nil {
		return nil, fmt.Errorf("decode bundle signer count: %w", err)
	}
	if k > MaxSigners {
		return nil, fmt.Errorf("decode bundle: %d signer enrolments, limit %d: %w", k, MaxSigners, ErrBundleTooLarge)
	}
	if k > 0 {
		b.Signers = make([][]byte, k)
	}
	large := 0
	for i := range b.Signers {
		if b.Signers[i], err = r.Bytes(MaxRevocationRecordBytes); err != nil {
			return nil, fmt.Errorf("decode bundle signer %d: %w", i, err)
		}
		b.Signers[i] = bytes.Clone(b.Signers[i])
		if len(b.Signers[i]) == 0 {
			return nil, fmt.Errorf("decode bundle signer %d: empty: %w", i, ErrMalformedBundle)
		}
		if large += largeSigner(b.Signers[i]); large > MaxLargeSignerBytes {
			return nil, fmt.Errorf("decode bundle signer %d: records over %d bytes of %d bytes together, limit %d: %w", i, MaxSignerBytes, large, MaxLargeSignerBytes, ErrBundleTooLarge)
		}
	}
	b.signed = sha256.Sum256(body[:len(body)-r.Len()])
	if b.Auth, err = r.Bytes(maxAuthBytes); err != nil {
		return nil, fmt.Errorf("decode bundle signature: %w", err)
	}
	if len(b.Auth) == 0 {
		b.Auth = nil
	}
	b.Auth = bytes.Clone(b.Auth)
	if err := r.Done(); err != nil {
		return nil, fmt.Errorf("decode bundle: %w", err)
	}
	return b, nil
}

// A change in a bundle (version 5) is written as the hashes it depends on
// that the bundle carries before it, as pairs of uvarints (the hash's
// place among its dependencies, and how many changes back the bundle
// carries it), after their count, and then its bytes without those
// hashes. A chart's change nearly always follows the change it depends on
// (a first sync of a chart sends its whole history), and its 32-byte hash,
// random to a compressor, becomes two bytes.

// maxRestoredBytes bounds the hash bytes a recipient puts back into one
// bundle's changes, apart from the bundle's own size: each costs the
// sender at least two bytes.
const maxRestoredBytes = MaxBundleBytes

// appendChange appends change i of a bundle, raw, whose hash is h, with
// the hashes of its dependencies among carried (the changes before it, by
// hash) left out, and its checksum too, which is the start of h. A change
// whose header cannot be read is written whole, for its recipient to
// refuse.
func appendChange(body, raw []byte, h crdt.Hash, i int, carried map[crdt.Hash]int) []byte {
	at, n, err := crdt.DepsSpan(raw)
	if err != nil || at+32*n > len(raw) {
		body = binary.AppendUvarint(body, 0)
		return wire.AppendBytes(body, raw)
	}
	var cut [][2]int // slot, changes back
	for j := range n {
		if k, ok := carried[crdt.Hash(raw[at+32*j:at+32*j+32])]; ok {
			cut = append(cut, [2]int{j, i - k})
		}
	}
	// The uvarint before the change: how many dependencies are left out,
	// times two, plus one if the checksum is.
	elide := 0
	if elidable(raw, h) {
		elide = 1
	}
	body = binary.AppendUvarint(body, uint64(2*len(cut)+elide))
	for _, c := range cut {
		body = binary.AppendUvarint(body, uint64(c[0]))
		body = binary.AppendUvarint(body, uint64(c[1]))
	}
	body = binary.AppendUvarint(body, uint64(len(raw)-32*len(cut)-4*elide))
	body = append(body, raw[:4]...)
	if elide == 0 {
		body = append(body, raw[4:8]...)
	}
	next := 8
	for _, c := range cut {
		slot := at + 32*c[0]
		body = append(body, raw[next:slot]...)
		next = slot + 32
	}
	return append(body, raw[next:]...)
}

// elidable reports whether a bundle leaves out the checksum of change
// raw, whose hash is h: a change whose header DepsSpan reads, of at least
// 12 bytes (8 once its checksum is left out), whose checksum is the start
// of its hash. A recipient refuses a change sent in the other form than
// this, so that a bundle has one encoding.
func elidable(raw []byte, h crdt.Hash) bool {
	at, n, err := crdt.DepsSpan(raw)
	return err == nil && at+32*n <= len(raw) && len(raw) >= 12 && bytes.Equal(raw[4:8], h[:4])
}

// arenaBlockBytes is the size of the blocks a decoded bundle's changes
// are copied into (a larger change has a block of its own).
const arenaBlockBytes = 256 << 10

// arena hands out the byte fields of one decoded bundle from blocks of
// its own, a few allocations for thousands of changes. A slice it hands
// out has no spare capacity.
type arena struct {
	block []byte
	// left is about how many bytes are still to be handed out (what is
	// left of the body to read): a small bundle's block is no larger.
	left int
}

// room returns room for n bytes: a slice of length 0 and capacity n.
func (a *arena) room(n int) []byte {
	if n > cap(a.block)-len(a.block) {
		a.block = make([]byte, 0, max(n, min(arenaBlockBytes, a.left)))
	}
	at := len(a.block)
	a.block = a.block[:at+n]
	return a.block[at : at : at+n]
}

// copy returns a copy of b.
func (a *arena) copy(b []byte) []byte { return append(a.room(len(b)), b...) }

// readChange reads change i of a bundle, putting back the dependency
// hashes its sender left out, those of before (the changes read so far),
// whose hashes it computes into hashes when first named, and its checksum
// if left out. restored counts the bytes put back in the bundle so far.
// The bytes are checked no further: a hash put back in the wrong place
// makes a change whose checksum fails where the change is read.
func readChange(r *wire.Reader, i int, before []BundleChange, hashes []crdt.Hash, restored *int, own *arena) ([]byte, error) {
	form, err := r.Uvarint()
	if err != nil {
		return nil, err
	}
	m, elided := form/2, form%2 == 1
	if m > uint64(r.Len())/2 {
		return nil, fmt.Errorf("%d dependencies left out, in %d bytes: %w", m, r.Len(), ErrMalformedBundle)
	}
	cut := make([][2]uint64, m)
	for j := range cut {
		for k := range cut[j] {
			if cut[j][k], err = r.Uvarint(); err != nil {
				return nil, err
			}
		}
		switch back := cut[j][1]; {
		case j > 0 && cut[j][0] <= cut[j-1][0]:
			return nil, fmt.Errorf("dependencies left out out of order: %w", ErrMalformedBundle)
		case back == 0 || back > uint64(i):
			return nil, fmt.Errorf("a dependency left out names change %d back of %d: %w", back, i, ErrMalformedBundle)
		}
	}
	raw, err := r.Bytes(MaxChangeBytes)
	if err != nil {
		return nil, err
	}
	if m == 0 && !elided {
		if len(raw) > 8 {
			hashes[i] = sha256.Sum256(raw[8:])
			if elidable(raw, hashes[i]) {
				return nil, fmt.Errorf("a change sent with a checksum its recipient computes: %w", ErrMalformedBundle)
			}
		}
		return own.copy(raw), nil
	}
	// shift is how far the checksum left out moves what follows it:
	// raw[k-shift] is byte k of the whole change, from byte 8 on.
	if len(raw) < 8 {
		return nil, fmt.Errorf("a change of %d bytes with its header cut: %w", len(raw), ErrMalformedBundle)
	}
	shift := 0
	if elided {
		shift = 4
	}
	at, n := 8, 0
	if m > 0 {
		// The header as it is whole (the checksum's bytes do not matter
		// to DepsSpan).
		var hb [48]byte
		hdr := append(hb[:0], raw[:4]...)
		if elided {
			hdr = append(hdr, 0, 0, 0, 0)
		}
		hdr = append(hdr, raw[4:min(len(raw), 40)]...)
		if at, n, err = crdt.DepsSpan(hdr); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrMalformedBundle, err)
		}
	}
	kept := n - int(m)
	if kept < 0 || m > 0 && cut[m-1][0] >= uint64(n) || at-shift+32*kept > len(raw) {
		return nil, fmt.Errorf("%d dependencies left out of a change of %d: %w", m, n, ErrMalformedBundle)
	}
	size := len(raw) + 32*int(m) + shift
	if size > MaxChangeBytes {
		return nil, fmt.Errorf("change of %d bytes: %w", size, ErrBundleTooLarge)
	}
	if *restored += size - len(raw); *restored > maxRestoredBytes {
		return nil, fmt.Errorf("over %d bytes of dependencies put back: %w", maxRestoredBytes, ErrBundleTooLarge)
	}
	whole := own.room(size)
	whole = append(whole, raw[:4]...)
	if elided {
		whole = append(whole, 0, 0, 0, 0) // the checksum, filled in below
	}
	whole = append(whole, raw[4:at-shift]...)
	next := at - shift
	for slot := range n {
		if len(cut) > 0 && cut[0][0] == uint64(slot) {
			k := i - int(cut[0][1])
			dep := before[k].Raw
			if len(dep) <= 8 {
				return nil, fmt.Errorf("a dependency left out names change %d, which is not one: %w", k, ErrMalformedBundle)
			}
			if hashes[k] == (crdt.Hash{}) {
				hashes[k] = sha256.Sum256(dep[8:])
			}
			whole = append(whole, hashes[k][:]...)
			cut = cut[1:]
			continue
		}
		whole = append(whole, raw[next:next+32]...)
		next += 32
	}
	whole = append(whole, raw[next:]...)
	hashes[i] = sha256.Sum256(whole[8:])
	if elided {
		copy(whole[4:8], hashes[i][:4])
	}
	if elidable(whole, hashes[i]) != elided {
		if elided {
			return nil, fmt.Errorf("a change sent without a checksum that its recipient cannot compute: %w", ErrMalformedBundle)
		}
		return nil, fmt.Errorf("a change sent with a checksum its recipient computes: %w", ErrMalformedBundle)
	}
	return whole, nil
}
