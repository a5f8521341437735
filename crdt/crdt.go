package crdt

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/automerge/automerge-go"
)

// ErrMalformed is matched (errors.Is) by every error caused by bytes that
// are not a valid Automerge document or change.
var ErrMalformed = errors.New("crdt: malformed automerge data")

// ErrNotFound is returned by reads of a path that does not exist.
var ErrNotFound = errors.New("crdt: not found")

// ErrInvalidActor is returned for an actor ID that is not an even-length,
// non-empty hex string.
var ErrInvalidActor = errors.New("crdt: invalid actor id")

// Hash identifies a change: the SHA-256 of its bytes, as Automerge defines it.
type Hash [32]byte

// String returns the hash in lower-case hex.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// MarshalText encodes the hash as hex, so JSON shows it as a string.
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText parses a hex hash.
func (h *Hash) UnmarshalText(b []byte) error {
	p, err := ParseHash(string(b))
	if err != nil {
		return err
	}
	*h = p
	return nil
}

// ParseHash parses a 64-digit hex hash.
func ParseHash(s string) (Hash, error) {
	var h Hash
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(h) {
		return h, fmt.Errorf("parse hash %q: %w", s, ErrMalformed)
	}
	copy(h[:], b)
	return h, nil
}

// Heads names a version of a document: the hashes of the changes nothing
// else depends on, sorted. Two documents with equal Heads hold the same
// changes and therefore the same content.
type Heads []Hash

// Equal reports whether h and o name the same version.
func (h Heads) Equal(o Heads) bool { return slices.Equal(h, o) }

// String joins the hashes with commas.
func (h Heads) String() string {
	parts := make([]string, len(h))
	for i, x := range h {
		parts[i] = x.String()
	}
	return strings.Join(parts, ",")
}

func sortedHeads(hs []automerge.ChangeHash) Heads {
	out := make(Heads, len(hs))
	for i, h := range hs {
		out[i] = Hash(h)
	}
	sort.Slice(out, func(i, j int) bool { return bytes.Compare(out[i][:], out[j][:]) < 0 })
	return out
}

func (h Heads) am() []automerge.ChangeHash {
	out := make([]automerge.ChangeHash, len(h))
	for i, x := range h {
		out[i] = automerge.ChangeHash(x)
	}
	return out
}

// Change is one immutable unit of history: who made it (Actor, Seq), when,
// the message its author attached, what it depends on, and its raw bytes.
type Change struct {
	Hash    Hash
	Deps    []Hash
	Actor   string
	Seq     uint64
	Time    time.Time
	Message string
	Raw     []byte
}

func fromAM(c *automerge.Change) (ch Change, err error) {
	defer recoverInto(&err)
	deps := c.Dependencies()
	ch = Change{
		Hash:    Hash(c.Hash()),
		Deps:    make([]Hash, len(deps)),
		Actor:   c.ActorID(),
		Seq:     c.ActorSeq(),
		Time:    c.Timestamp().UTC(),
		Message: c.Message(),
		Raw:     c.Save(),
	}
	for i, d := range deps {
		ch.Deps[i] = Hash(d)
	}
	return ch, nil
}

// maxChanges bounds how many changes one ParseChanges call decodes.
const maxChanges = 1 << 20

// ParseChanges decodes one or more concatenated raw changes (Change.Raw
// values, or the output of SaveChanges). Their dependencies need not be
// known. It returns ErrMalformed for any bytes that are not whole, valid
// changes.
func ParseChanges(raw []byte) (out []Change, err error) {
	defer recoverInto(&err)
	if len(raw) == 0 {
		return nil, fmt.Errorf("parse changes: empty input: %w", ErrMalformed)
	}
	chunks, err := splitChunks(raw)
	if err != nil {
		return nil, err
	}
	chs, err := decodeChunks(chunks)
	if err != nil {
		return nil, err
	}
	out = make([]Change, 0, len(chs))
	for i, c := range chs {
		ch, err := fromAM(c)
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(ch.Raw, chunks[i]) {
			return nil, fmt.Errorf("parse changes: change %d re-encodes differently: %w", i, ErrMalformed)
		}
		out = append(out, ch)
	}
	return out, nil
}

// chunk header: 4 magic bytes, 4 checksum bytes, 1 type byte, then the
// body length as unsigned LEB128.
var chunkMagic = []byte{0x85, 0x6f, 0x4a, 0x83}

// splitChunks cuts concatenated change chunks apart by their length
// headers, bounding every length by the input that remains.
func splitChunks(raw []byte) ([][]byte, error) {
	var out [][]byte
	for rest := raw; len(rest) > 0; {
		if len(rest) < 10 || !bytes.Equal(rest[:4], chunkMagic) {
			return nil, fmt.Errorf("parse changes: no change header at byte %d: %w", len(raw)-len(rest), ErrMalformed)
		}
		n, k := binary.Uvarint(rest[9:])
		if k <= 0 || n > uint64(len(rest)-9-k) {
			return nil, fmt.Errorf("parse changes: bad length at byte %d: %w", len(raw)-len(rest), ErrMalformed)
		}
		end := 9 + k + int(n)
		if err := checkChange(rest[:end]); err != nil {
			return nil, fmt.Errorf("parse changes: change at byte %d: %v: %w", len(raw)-len(rest), err, ErrMalformed)
		}
		out = append(out, rest[:end])
		rest = rest[end:]
		if len(out) > maxChanges {
			return nil, fmt.Errorf("parse changes: more than %d changes: %w", maxChanges, ErrMalformed)
		}
	}
	return out, nil
}

// decodeChunks has Automerge decode change chunks whose dependencies may be
// unknown. automerge-go exposes no single-change decoder, so the chunks
// travel in a version 1 sync message (type 0x42, no heads, needs or haves)
// received by a throwaway document; the message's changes are the decoded
// changes. Whether the throwaway document could apply them is irrelevant.
func decodeChunks(chunks [][]byte) ([]*automerge.Change, error) {
	msg := []byte{0x42, 0, 0, 0}
	msg = binary.AppendUvarint(msg, uint64(len(chunks)))
	for _, c := range chunks {
		msg = binary.AppendUvarint(msg, uint64(len(c)))
		msg = append(msg, c...)
	}
	sm, err := automerge.NewSyncState(automerge.New()).ReceiveMessage(msg)
	if sm == nil {
		return nil, fmt.Errorf("parse changes: %v: %w", err, ErrMalformed)
	}
	chs := sm.Changes()
	if len(chs) != len(chunks) {
		return nil, fmt.Errorf("parse changes: decoded %d of %d changes: %w", len(chs), len(chunks), ErrMalformed)
	}
	return chs, nil
}

// ParseChange decodes exactly one raw change.
func ParseChange(raw []byte) (Change, error) {
	chs, err := ParseChanges(raw)
	if err != nil {
		return Change{}, err
	}
	if len(chs) != 1 {
		return Change{}, fmt.Errorf("parse change: %d changes where one was expected: %w", len(chs), ErrMalformed)
	}
	return chs[0], nil
}

// SaveChanges concatenates the raw bytes of changes; ParseChanges reverses it.
func SaveChanges(chs []Change) []byte {
	var b bytes.Buffer
	for _, c := range chs {
		b.Write(c.Raw)
	}
	return b.Bytes()
}

// recoverInto turns a Go panic raised inside automerge-go (it panics on some
// internal errors through its must helper) into an ErrMalformed error.
func recoverInto(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("automerge: %v: %w", r, ErrMalformed)
	}
}

// Doc is a CRDT document. It is safe for concurrent use.
type Doc struct {
	mu      sync.Mutex
	am      *automerge.Doc
	actor   string
	pending map[Hash]Change
}

// NewActorID returns a fresh random actor ID (32 hex digits).
func NewActorID() string { return automerge.NewActorID() }

// ValidActor reports whether id can be used as an actor ID.
func ValidActor(id string) bool {
	if id == "" || len(id)%2 != 0 || len(id) > 128 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil
}

// New returns an empty document that writes as actor. An empty actor means
// a fresh random one.
func New(actor string) (*Doc, error) {
	d := &Doc{am: automerge.New(), pending: map[Hash]Change{}}
	if err := d.setActor(actor); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *Doc) setActor(actor string) error {
	if actor == "" {
		actor = automerge.NewActorID()
	}
	if !ValidActor(actor) {
		return fmt.Errorf("actor %q: %w", actor, ErrInvalidActor)
	}
	if err := d.am.SetActorID(actor); err != nil {
		return fmt.Errorf("actor %q: %v: %w", actor, err, ErrInvalidActor)
	}
	d.actor = actor
	return nil
}

// Load decodes a document saved with Save and sets the actor it writes as.
func Load(data []byte, actor string) (d *Doc, err error) {
	defer recoverInto(&err)
	if len(data) == 0 {
		return nil, fmt.Errorf("load document: empty input: %w", ErrMalformed)
	}
	am, err := automerge.Load(data)
	if err != nil {
		return nil, fmt.Errorf("load document: %v: %w", err, ErrMalformed)
	}
	d = &Doc{am: am, pending: map[Hash]Change{}}
	if err := d.setActor(actor); err != nil {
		return nil, err
	}
	return d, nil
}

// Actor returns the actor ID this document writes as.
func (d *Doc) Actor() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.actor
}

// Save encodes the applied history compactly. Held changes (Pending) are
// not included.
func (d *Doc) Save() []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.am.Save()
}

// Heads returns the current heads, sorted.
func (d *Doc) Heads() Heads {
	d.mu.Lock()
	defer d.mu.Unlock()
	return sortedHeads(d.am.Heads())
}

// Has reports whether the change with hash h has been applied.
func (d *Doc) Has(h Hash) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.has(h)
}

func (d *Doc) has(h Hash) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	_, err := d.am.Change(automerge.ChangeHash(h))
	return err == nil
}

// Changes returns the applied changes that are not ancestors of since, in
// causal order; with no heads, the whole history. Unlike automerge-go, a
// head this document does not know is an error (ErrNotFound), not "all".
func (d *Doc) Changes(since Heads) (out []Change, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	defer recoverInto(&err)
	for _, h := range since {
		if !d.has(h) {
			return nil, fmt.Errorf("changes since %s: unknown head: %w", h, ErrNotFound)
		}
	}
	chs, err := d.am.Changes(since.am()...)
	if err != nil {
		return nil, fmt.Errorf("changes since: %v: %w", err, ErrMalformed)
	}
	out = make([]Change, 0, len(chs))
	for _, c := range chs {
		ch, err := fromAM(c)
		if err != nil {
			return nil, err
		}
		out = append(out, ch)
	}
	return out, nil
}

// Pending returns the changes held because a dependency has not arrived,
// sorted by hash.
func (d *Doc) Pending() []Change {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]Change, 0, len(d.pending))
	for _, c := range d.pending {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return bytes.Compare(out[i].Hash[:], out[j].Hash[:]) < 0 })
	return out
}

// Apply merges changes into the document. Changes may come in any order and
// may repeat; a change already applied is ignored, and one whose
// dependencies are missing is held until they arrive. It returns the hashes
// newly applied, in the order applied. On error the document is unchanged.
func (d *Doc) Apply(chs ...Change) (applied []Hash, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	before := d.am.Heads()
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("apply changes: %v: %w", r, ErrMalformed)
		}
		if err != nil {
			applied = nil
			if rerr := d.rollback(before); rerr != nil {
				err = errors.Join(err, rerr)
			}
		}
	}()

	cand := make(map[Hash]Change, len(chs)+len(d.pending))
	for h, c := range d.pending {
		cand[h] = c
	}
	for _, c := range chs {
		if _, ok := cand[c.Hash]; ok || d.has(c.Hash) {
			continue
		}
		cand[c.Hash] = c
	}
	var raws [][]byte // the changes that can apply, dependencies first
	known := map[Hash]bool{}
	for progress := true; progress && len(cand) > 0; {
		progress = false
		keys := make([]Hash, 0, len(cand))
		for h := range cand {
			keys = append(keys, h)
		}
		sort.Slice(keys, func(i, j int) bool { return bytes.Compare(keys[i][:], keys[j][:]) < 0 })
		for _, h := range keys {
			c := cand[h]
			if !d.depsKnown(c, known) {
				continue
			}
			raws = append(raws, c.Raw)
			applied = append(applied, h)
			known[h] = true
			delete(cand, h)
			progress = true
		}
	}
	if len(raws) > 0 {
		// One decode for all of them: each call into automerge costs.
		ready, err := decodeChunks(raws)
		if err != nil {
			return nil, fmt.Errorf("apply changes: %w", err)
		}
		for i, amc := range ready {
			if Hash(amc.Hash()) != applied[i] {
				return nil, fmt.Errorf("apply change %s: bytes do not match hash: %w", applied[i], ErrMalformed)
			}
		}
		if err := d.am.Apply(ready...); err != nil {
			return nil, fmt.Errorf("apply changes: %v: %w", err, ErrMalformed)
		}
	}
	d.pending = cand
	return applied, nil
}

func (d *Doc) depsKnown(c Change, known map[Hash]bool) bool {
	for _, dep := range c.Deps {
		if !known[dep] && !d.has(dep) {
			return false
		}
	}
	return true
}

// rollback replaces the automerge document by a fork at heads, dropping
// anything applied or written since. The caller holds d.mu.
func (d *Doc) rollback(heads []automerge.ChangeHash) error {
	f, err := d.am.Fork(heads...)
	if err != nil {
		return fmt.Errorf("roll back: %w", err)
	}
	if err := f.SetActorID(d.actor); err != nil {
		return fmt.Errorf("roll back: %w", err)
	}
	d.am = f
	return nil
}

// Edit runs fn, which writes through tx, and commits what it wrote as one
// change carrying message and time at. If fn returns an error, or writes
// nothing, the document is left exactly as it was and no change is made.
func (d *Doc) Edit(message string, at time.Time, fn func(tx *Tx) error) (ch Change, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	before := d.am.Heads()
	tx := &Tx{d: d.am}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("edit: %v", r)
		}
		tx.d = nil
		if err != nil {
			if rerr := d.rollback(before); rerr != nil {
				err = errors.Join(err, rerr)
			}
		}
	}()
	if err := fn(tx); err != nil {
		return Change{}, err
	}
	if !tx.wrote {
		return Change{}, errors.New("edit: nothing was written")
	}
	t := at
	if t.IsZero() {
		t = time.Now()
	}
	h, err := d.am.Commit(message, automerge.CommitOptions{Time: &t})
	if err != nil {
		return Change{}, fmt.Errorf("edit: commit: %w", err)
	}
	amc, err := d.am.Change(h)
	if err != nil {
		return Change{}, fmt.Errorf("edit: read back change: %w", err)
	}
	return fromAM(amc)
}

// Fork returns an independent copy of the document as of heads (all of it
// when heads is empty) that writes as actor. Reading a fork at past heads
// is how history is shown.
func (d *Doc) Fork(heads Heads, actor string) (f *Doc, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	defer recoverInto(&err)
	for _, h := range heads {
		if !d.has(h) {
			return nil, fmt.Errorf("fork at %s: unknown head: %w", h, ErrNotFound)
		}
	}
	am, err := d.am.Fork(heads.am()...)
	if err != nil {
		return nil, fmt.Errorf("fork: %w", err)
	}
	f = &Doc{am: am, pending: map[Hash]Change{}}
	if len(heads) == 0 {
		for h, c := range d.pending {
			f.pending[h] = c
		}
	}
	if err := f.setActor(actor); err != nil {
		return nil, err
	}
	return f, nil
}

// Merge applies every change of other that d lacks (and other's held
// changes), returning the hashes newly applied.
func (d *Doc) Merge(other *Doc) ([]Hash, error) {
	chs, err := other.Changes(nil)
	if err != nil {
		return nil, err
	}
	chs = append(chs, other.Pending()...)
	return d.Apply(chs...)
}

// ApplyStored applies concatenated raw changes whose hashes are known, as
// a store keeps them. When every dependency is present it is one bulk load,
// checked against hashes; otherwise it falls back to ParseChanges and Apply,
// holding what cannot apply yet. On error the document is unchanged.
func (d *Doc) ApplyStored(raw []byte, hashes []Hash) error {
	if len(raw) == 0 {
		return nil
	}
	if d.loadIncremental(raw, hashes) == nil {
		return nil
	}
	chs, err := ParseChanges(raw)
	if err != nil {
		return err
	}
	if len(chs) != len(hashes) {
		return fmt.Errorf("apply stored: %d changes for %d hashes: %w", len(chs), len(hashes), ErrMalformed)
	}
	for i, c := range chs {
		if c.Hash != hashes[i] {
			return fmt.Errorf("apply stored: change %d is %s, expected %s: %w", i, c.Hash, hashes[i], ErrMalformed)
		}
	}
	_, err = d.Apply(chs...)
	return err
}

// loadIncremental bulk-loads raw and checks that every hash is then
// applied; automerge's incremental load skips bytes it cannot parse.
func (d *Doc) loadIncremental(raw []byte, hashes []Hash) (err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.pending) > 0 {
		return errors.New("held changes need the slow path")
	}
	before := d.am.Heads()
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("load changes: %v", r)
		}
		if err != nil {
			if rerr := d.rollback(before); rerr != nil {
				err = errors.Join(err, rerr)
			}
		}
	}()
	if err := d.am.LoadIncremental(raw); err != nil {
		return err
	}
	for _, h := range hashes {
		if !d.has(h) {
			return fmt.Errorf("change %s did not load", h)
		}
	}
	return nil
}
