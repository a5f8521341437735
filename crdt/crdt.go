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

	"github.com/chartsync/chartsync/third_party/automerge-go"
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

	// judged is what Judge decoded from Raw once it found Raw encoded
	// as Automerge encodes it; nil until then. Copies of the Change
	// made afterwards share it.
	judged *ChangeInfo
}

// Judge decodes c's operations and checks, as Apply does before
// Automerge sees a change, that Raw is encoded exactly as Automerge
// encodes what it states and that c's fields are those Raw states. The
// result is kept in c, so the work is done once however many times c (or
// a copy of it made afterwards) is judged, checked or applied. The
// returned ChangeInfo is shared: the caller must not modify it, nor c.Raw.
// A change it refuses gives an *InvalidChangeError.
func Judge(c *Change) (*ChangeInfo, error) {
	if j := c.judgedInfo(); j != nil {
		return j, nil
	}
	info, err := judge(c.Raw)
	if err != nil {
		return nil, err
	}
	if info.Hash != c.Hash || info.Actor != c.Actor || info.Seq != c.Seq || !slices.Equal(info.Deps, c.Deps) {
		return nil, invalid(info.Hash, "fields do not match its bytes")
	}
	c.judged = info
	return info, nil
}

// judgedInfo returns what Judge kept, if c's fields still match it.
func (c *Change) judgedInfo() *ChangeInfo {
	j := c.judged
	if j == nil || j.Hash != c.Hash || j.Actor != c.Actor || j.Seq != c.Seq || !slices.Equal(j.Deps, c.Deps) {
		return nil
	}
	return j
}

// ReadChange reads one raw change chunk in Go, checking its structure and
// checksum but not yet its operations: Apply (or Judge) judges those. It
// is the cheap first look at a change from a peer; ParseChanges also has
// Automerge decode it. The Change keeps raw, which must not be modified
// afterwards.
func ReadChange(raw []byte) (Change, error) {
	c, err := changeOf(raw)
	if err != nil {
		return Change{}, fmt.Errorf("read change: %w", err)
	}
	return c, nil
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
	scratch := automerge.New()
	defer scratch.Free()
	sm, err := automerge.NewSyncState(scratch).ReceiveMessage(msg)
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

// ErrClosed is returned by calls on a Doc after Close.
var ErrClosed = errors.New("crdt: document closed")

// Doc is a CRDT document. It is safe for concurrent use.
type Doc struct {
	mu      sync.Mutex
	am      *automerge.Doc // nil once closed
	actor   string
	pending map[Hash]Change
	// hist judges changes before Automerge applies them, and keeps
	// their bytes; nil until the first call that needs it (see
	// ensureHistory).
	hist *history
	// lazy, while hist is nil, holds the bytes of the document's changes
	// in causal order (a fork at past heads takes them from its
	// original), to build hist from without asking Automerge.
	lazy [][]byte
}

// Close releases the document's Automerge memory now, instead of when
// the garbage collector finds the Doc unreachable. The Doc must not be
// needed afterwards: calls that return an error return ErrClosed, Save
// and Heads return nothing, Has and Pending report nothing. Documents
// made from it (forks) are independent and stay open. Close is safe to
// call more than once, and from any goroutine; it waits for a call in
// progress. A Doc never closed is freed by a finalizer, later.
func (d *Doc) Close() error {
	d.mu.Lock()
	if d.am == nil {
		d.mu.Unlock()
		return nil
	}
	freed := d.automergeBytes()
	d.am.Free()
	d.am, d.hist, d.lazy, d.pending = nil, nil, nil, nil
	d.mu.Unlock()
	noteFreed(freed)
	return nil
}

// closed returns ErrClosed, wrapped with what was attempted, once the
// Doc is closed. The caller holds d.mu.
func (d *Doc) closed(what string) error {
	if d.am == nil {
		return fmt.Errorf("%s: %w", what, ErrClosed)
	}
	return nil
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
	d := &Doc{am: automerge.New(), pending: map[Hash]Change{}, hist: newHistory()}
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
//
// The bytes are read in Go, never by Automerge: the document's changes are
// rebuilt from them as Automerge rebuilds them, their hashes must give the
// heads the document states, and each change is judged as Apply judges a
// change before Automerge applies them all. Bytes that are not such a
// document give an error matching ErrMalformed (and ErrInvalidChange when
// a change it holds is refused); no input makes Load abort the process.
func Load(data []byte, actor string) (d *Doc, err error) {
	defer recoverInto(&err)
	if len(data) == 0 {
		return nil, fmt.Errorf("load document: empty input: %w", ErrMalformed)
	}
	raws, heads, err := decodeDocument(data)
	if err != nil {
		return nil, fmt.Errorf("load document: %w", err)
	}
	d = &Doc{am: automerge.New(), pending: map[Hash]Change{}, hist: newHistory()}
	if err := d.setActor(actor); err != nil {
		return nil, err
	}
	var all []byte
	for _, raw := range raws {
		info, err := judge(raw)
		if err == nil {
			err = d.hist.add(info, raw)
		}
		if err != nil {
			d.am.Free()
			return nil, fmt.Errorf("load document: %w", err)
		}
		all = append(all, raw...)
	}
	if len(all) > 0 {
		if err := d.am.LoadIncremental(all); err != nil {
			d.am.Free()
			return nil, fmt.Errorf("load document: %v: %w", err, ErrMalformed)
		}
	}
	if got := sortedHeads(d.am.Heads()); !got.Equal(heads) {
		d.am.Free()
		return nil, fmt.Errorf("load document: loaded heads %s, not %s: %w", got, heads, ErrMalformed)
	}
	d.hist.trim()
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
	if d.am == nil {
		return nil
	}
	return d.am.Save()
}

// ErrUnsaveable is matched by the error SaveChecked returns for a document
// whose saved bytes do not load back to the same version. Such bytes must
// not be stored as a snapshot; the changes the document was built from
// remain the authority.
var ErrUnsaveable = errors.New("crdt: saved document does not load back")

// SaveChecked is Save for bytes that will be stored: it reads them back
// in Go, as Load does, and returns them only if they hold exactly the
// changes the document applied, byte for byte, to the same heads.
// Otherwise it returns an error matching ErrUnsaveable. Since a change is
// named by the hash of its bytes, a document loaded from them applies the
// very changes this document did, each already judged and applied here,
// so they load again; Automerge is not asked to apply them a second time
// (that would cost the whole history again on every save).
func (d *Doc) SaveChecked() ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.closed("save document"); err != nil {
		return nil, err
	}
	if err := d.ensureHistory(); err != nil {
		return nil, fmt.Errorf("save document: %w", err)
	}
	data, heads := d.am.Save(), sortedHeads(d.am.Heads())
	hashes, got, err := documentHashes(data)
	if err != nil {
		return nil, fmt.Errorf("save document: %w: %w", err, ErrUnsaveable)
	}
	if !got.Equal(heads) {
		return nil, fmt.Errorf("save document: loads at %s, not %s: %w", got, heads, ErrUnsaveable)
	}
	if len(hashes) != len(d.hist.changes) {
		return nil, fmt.Errorf("save document: holds %d changes, not %d: %w", len(hashes), len(d.hist.changes), ErrUnsaveable)
	}
	for _, h := range hashes {
		if !d.hist.has(h) {
			return nil, fmt.Errorf("save document: holds a change the document did not apply: %w", ErrUnsaveable)
		}
	}
	return data, nil
}

// Len returns the number of changes applied to the document (not those
// held for their dependencies). It reads what the document keeps in Go,
// building it if needed; a closed document has none.
func (d *Doc) Len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.am == nil:
		return 0
	case d.hist != nil:
		return len(d.hist.changes)
	case d.lazy != nil:
		return len(d.lazy)
	}
	if d.ensureHistory() != nil {
		return 0
	}
	return len(d.hist.changes)
}

// Heads returns the current heads, sorted.
func (d *Doc) Heads() Heads {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.am == nil {
		return nil
	}
	return sortedHeads(d.am.Heads())
}

// Has reports whether the change with hash h has been applied.
func (d *Doc) Has(h Hash) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.has(h)
}

func (d *Doc) has(h Hash) (ok bool) {
	if d.am == nil {
		return false
	}
	if d.hist != nil {
		return d.hist.has(h)
	}
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
	if err := d.closed("changes since"); err != nil {
		return nil, err
	}
	// Read from the history's bytes, in the order applied (causal, as
	// Automerge keeps them), without asking Automerge.
	if err := d.ensureHistory(); err != nil {
		return nil, err
	}
	for _, h := range since {
		if !d.hist.has(h) {
			return nil, fmt.Errorf("changes since %s: unknown head: %w", h, ErrNotFound)
		}
	}
	var held []bool
	if len(since) > 0 {
		held = d.hist.covered(since)
	}
	out = make([]Change, 0, len(d.hist.raws))
	for i, raw := range d.hist.raws {
		if held != nil && held[i] {
			continue
		}
		ch, err := changeOf(raw)
		if err != nil {
			return nil, fmt.Errorf("changes since: %w", err)
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
	if d.am == nil {
		return nil
	}
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
// newly applied, in the order applied.
//
// Each change is judged before Automerge sees it, when its dependencies are
// all applied (a held change when they arrive), against what the document
// holds at those dependencies: its sequence number must be its author's
// next and its dependencies must include its author's previous change, and
// its operations must name only what those dependencies hold, as Automerge
// would apply, save and load them again (see "What Apply accepts" in the
// package documentation).
// A change whose sequence number its author has already used is refused
// even before its dependencies arrive. A refused change gives an
// *InvalidChangeError, matching ErrInvalidChange and ErrMalformed.
//
// On error the document is unchanged: nothing of the call is applied or
// held, and a held change that was refused is no longer held.
func (d *Doc) Apply(chs ...Change) (applied []Hash, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.closed("apply changes"); err != nil {
		return nil, err
	}
	return d.apply(chs)
}

// apply is Apply; the caller holds d.mu.
func (d *Doc) apply(chs []Change) (applied []Hash, err error) {
	if err := d.ensureHistory(); err != nil {
		return nil, err
	}
	h := d.hist
	m := h.mark()
	defer func() {
		if r := recover(); r != nil {
			h.undo(m)
			err = fmt.Errorf("apply changes: %v: %w", r, ErrMalformed)
			applied = nil
		}
	}()
	cand := make(map[Hash]Change, len(chs)+len(d.pending))
	for x, c := range d.pending {
		cand[x] = c
	}
	for _, c := range chs {
		if _, ok := cand[c.Hash]; ok || h.has(c.Hash) {
			continue
		}
		if err := screen(c, h); err != nil {
			return nil, fmt.Errorf("apply changes: %w", err)
		}
		cand[c.Hash] = c
	}

	// Judge the changes that can apply, dependencies first, recording
	// each in the history so that the next is judged after it.
	missing := map[Hash]int{}
	dependents := map[Hash][]Hash{}
	var ready []Hash
	for x, c := range cand {
		n := 0
		for _, dep := range c.Deps {
			if !h.has(dep) {
				n++
				dependents[dep] = append(dependents[dep], x)
			}
		}
		if n == 0 {
			ready = append(ready, x)
		} else {
			missing[x] = n
		}
	}
	sortHashes(ready)
	var raw []byte
	var done []Change
	for len(ready) > 0 {
		x := ready[0]
		ready = ready[1:]
		c := cand[x]
		info, err := Judge(&c)
		if err == nil {
			err = h.add(info, c.Raw)
		}
		if err != nil {
			h.undo(m)
			delete(d.pending, x)
			return nil, fmt.Errorf("apply changes: %w", err)
		}
		applied = append(applied, x)
		done = append(done, c)
		raw = append(raw, c.Raw...)
		delete(cand, x)
		var next []Hash
		for _, y := range dependents[x] {
			if missing[y]--; missing[y] == 0 {
				next = append(next, y)
			}
		}
		sortHashes(next)
		ready = append(ready, next...)
	}
	if len(raw) > 0 {
		if err := d.load(raw, done); err != nil {
			h.undo(m)
			return nil, fmt.Errorf("apply changes: %w", err)
		}
	}
	d.pending = cand
	return applied, nil
}

// screen checks what can be checked of a change before its dependencies
// arrive: that its fields are those its bytes state, and that its author
// has not used its sequence number already.
func screen(c Change, h *history) error {
	if c.judgedInfo() != nil {
		// Judge has read the bytes and matched the fields to them.
		if next := h.next(c.Actor); c.Seq < next {
			return invalid(c.Hash, "sequence number %d of actor %s is taken (next is %d)", c.Seq, c.Actor, next)
		}
		return nil
	}
	b, err := parseChunk(c.Raw)
	if err != nil {
		return fmt.Errorf("change %s: %v: %w", c.Hash, err, ErrMalformed)
	}
	if b.hash != c.Hash {
		return fmt.Errorf("change %s: bytes do not match hash: %w", c.Hash, ErrMalformed)
	}
	if hex.EncodeToString(b.actor) != c.Actor || b.seq != c.Seq || len(b.deps) != 32*len(c.Deps) {
		return invalid(c.Hash, "fields do not match its bytes")
	}
	for i, dep := range c.Deps {
		if !bytes.Equal(dep[:], b.deps[32*i:32*i+32]) {
			return invalid(c.Hash, "dependencies do not match its bytes")
		}
	}
	if next := h.next(c.Actor); c.Seq < next {
		return invalid(c.Hash, "sequence number %d of actor %s is taken (next is %d)", c.Seq, c.Actor, next)
	}
	return nil
}

func sortHashes(hs []Hash) {
	slices.SortFunc(hs, func(a, b Hash) int { return bytes.Compare(a[:], b[:]) })
}

// load hands raw, the concatenated bytes of the changes applied (already
// judged, dependencies first), to Automerge in one call, and checks that
// the document's heads are then what those changes make them. On error
// the Automerge document is rolled back. The caller holds d.mu.
func (d *Doc) load(raw []byte, applied []Change) (err error) {
	before := d.am.Heads()
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("automerge: %v", r)
		}
		if err != nil {
			err = fmt.Errorf("%w: %w", err, ErrInvalidChange)
			if rerr := d.rollback(before); rerr != nil {
				err = errors.Join(err, rerr)
			}
		}
	}()
	if err := d.am.LoadIncremental(raw); err != nil {
		return fmt.Errorf("automerge refused changes: %v: %w", err, ErrMalformed)
	}
	want := map[Hash]bool{}
	for _, x := range before {
		want[Hash(x)] = true
	}
	for _, c := range applied {
		want[c.Hash] = true
	}
	for _, c := range applied {
		for _, dep := range c.Deps {
			delete(want, dep)
		}
	}
	got := d.am.Heads()
	if len(got) != len(want) {
		return fmt.Errorf("automerge did not apply every change: %w", ErrMalformed)
	}
	for _, x := range got {
		if !want[Hash(x)] {
			return fmt.Errorf("automerge did not apply every change: %w", ErrMalformed)
		}
	}
	return nil
}

// ensureHistory builds d.hist from the document's changes if it is not
// built yet, at the cost of reading the whole history once. The caller
// holds d.mu.
func (d *Doc) ensureHistory() (err error) {
	if d.hist != nil {
		return nil
	}
	defer recoverInto(&err)
	raws := d.lazy
	if raws == nil {
		// Read in Go from the saved document: Automerge's own list of
		// changes would be one more copy of the history in C memory.
		if raws, _, err = decodeDocument(d.am.Save()); err != nil {
			return fmt.Errorf("index document: %w", err)
		}
	}
	h := newHistory()
	for _, raw := range raws {
		info, err := judge(raw)
		if err == nil {
			err = h.add(info, raw)
		}
		if err != nil {
			return fmt.Errorf("index document: %w", err)
		}
	}
	h.trim()
	d.hist, d.lazy = h, nil
	return nil
}

// rollback replaces the automerge document by a fork at heads, dropping
// anything applied or written since. The caller holds d.mu.
func (d *Doc) rollback(heads []automerge.ChangeHash) error {
	// Forking at no heads would copy the current state: an empty
	// document is rolled back to a new one.
	f := automerge.New()
	if len(heads) > 0 {
		var err error
		if f, err = d.am.Fork(heads...); err != nil {
			return fmt.Errorf("roll back: %w", err)
		}
	}
	if err := f.SetActorID(d.actor); err != nil {
		f.Free()
		return fmt.Errorf("roll back: %w", err)
	}
	old := d.am
	d.am = f
	old.Free()
	return nil
}

// Edit runs fn, which writes through tx, and commits what it wrote as one
// change carrying message and time at. If fn returns an error, or writes
// nothing, the document is left exactly as it was and no change is made.
func (d *Doc) Edit(message string, at time.Time, fn func(tx *Tx) error) (ch Change, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.closed("edit"); err != nil {
		return Change{}, err
	}
	before := d.am.Heads()
	var m histMark
	if d.hist != nil {
		m = d.hist.mark()
	}
	if d.hist == nil && d.lazy == nil {
		// Tx.Change may need the history, which then could be read
		// only through Automerge, whose save would commit the
		// transaction's operations half-made: read it now.
		if err := d.ensureHistory(); err != nil {
			return Change{}, fmt.Errorf("edit: %w", err)
		}
	}
	tx := &Tx{d: d.am, doc: d}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("edit: %v", r)
		}
		tx.d, tx.doc = nil, nil
		if err != nil {
			if d.hist != nil {
				d.hist.undo(m)
			}
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
	if ch, err = fromAM(amc); err != nil {
		return Change{}, fmt.Errorf("edit: read back change: %w", err)
	}
	if tx.seq != 0 && (ch.Seq != tx.seq || ch.Actor != d.actor) {
		return Change{}, fmt.Errorf("edit: the change is %s's %d, not the %d Tx.Change told", ch.Actor, ch.Seq, tx.seq)
	}
	if d.hist != nil {
		// Automerge's own change, judged as any other: the document never
		// holds a change it could not save and load again.
		info, err := judge(ch.Raw)
		if err == nil {
			err = d.hist.add(info, ch.Raw)
		}
		if err != nil {
			return Change{}, fmt.Errorf("edit: %w", err)
		}
	}
	return ch, nil
}

// Fork returns an independent copy of the document as of heads (all of it
// when heads is empty) that writes as actor. Reading a fork at past heads
// is how history is shown.
func (d *Doc) Fork(heads Heads, actor string) (f *Doc, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	defer recoverInto(&err)
	if err := d.closed("fork"); err != nil {
		return nil, err
	}
	for _, h := range heads {
		if !d.has(h) {
			return nil, fmt.Errorf("fork at %s: unknown head: %w", h, ErrNotFound)
		}
	}
	// A fork at the current heads is a copy without the held changes:
	// Automerge copies a document much faster than it rebuilds one at
	// given heads.
	whole := len(heads) == 0 || slices.Equal(sortedCopy(heads), sortedHeads(d.am.Heads()))
	var am *automerge.Doc
	if whole {
		am, err = d.am.Fork()
	} else {
		am, err = d.am.Fork(heads.am()...)
	}
	if err != nil {
		return nil, fmt.Errorf("fork: %w", err)
	}
	f = &Doc{am: am, pending: map[Hash]Change{}}
	if len(heads) == 0 {
		for h, c := range d.pending {
			f.pending[h] = c
		}
	}
	switch {
	case whole && d.hist != nil:
		// The whole document: its history is d's, shared until either
		// records more, rather than read again at the fork's first
		// Apply.
		f.hist = d.hist.clone()
	case whole:
		f.lazy = d.lazy
	case d.hist != nil:
		// The fork's history is the part of d's that heads hold, in
		// the same order; it is judged again when first needed.
		held := d.hist.covered(heads)
		f.lazy = make([][]byte, 0, len(held))
		for i, raw := range d.hist.raws {
			if held[i] {
				f.lazy = append(f.lazy, raw)
			}
		}
	}
	if err := f.setActor(actor); err != nil {
		am.Free()
		return nil, err
	}
	return f, nil
}

// sortedCopy returns hs sorted, leaving hs as it was.
func sortedCopy(hs Heads) Heads {
	out := slices.Clone(hs)
	sortHashes(out)
	return out
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
// a store keeps them: the changes are read in Go (no Automerge parsing),
// checked against hashes, and applied as Apply does, holding what cannot
// apply yet. Empty raw with no hashes does nothing; any other mismatch
// between raw and hashes is ErrMalformed. On error the document is
// unchanged.
func (d *Doc) ApplyStored(raw []byte, hashes []Hash) error {
	if len(raw) == 0 && len(hashes) == 0 {
		return nil
	}
	chs, err := storedChanges(raw)
	if err != nil {
		return fmt.Errorf("apply stored: %w", err)
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

// storedChanges reads concatenated raw change chunks into Changes in Go,
// checking each as ParseChanges does before Automerge would see it.
func storedChanges(raw []byte) ([]Change, error) {
	if len(raw) == 0 {
		return nil, fmt.Errorf("empty input: %w", ErrMalformed)
	}
	var out []Change
	for rest := raw; len(rest) > 0; {
		if len(rest) < 10 || !bytes.Equal(rest[:4], chunkMagic) {
			return nil, fmt.Errorf("no change header at byte %d: %w", len(raw)-len(rest), ErrMalformed)
		}
		n, k := binary.Uvarint(rest[9:])
		if k <= 0 || n > uint64(len(rest)-9-k) {
			return nil, fmt.Errorf("bad length at byte %d: %w", len(raw)-len(rest), ErrMalformed)
		}
		end := 9 + k + int(n)
		c, err := changeOf(bytes.Clone(rest[:end]))
		if err != nil {
			return nil, fmt.Errorf("change at byte %d: %w", len(raw)-len(rest), err)
		}
		out = append(out, c)
		rest = rest[end:]
		if len(out) > maxChanges {
			return nil, fmt.Errorf("more than %d changes: %w", maxChanges, ErrMalformed)
		}
	}
	return out, nil
}

// changeOf reads one raw change chunk in Go; the Change keeps raw.
func changeOf(raw []byte) (Change, error) {
	b, err := parseChunk(raw)
	if err != nil {
		return Change{}, fmt.Errorf("%v: %w", err, ErrMalformed)
	}
	c := Change{
		Hash:    b.hash,
		Deps:    make([]Hash, len(b.deps)/32),
		Actor:   hex.EncodeToString(b.actor),
		Seq:     b.seq,
		Time:    time.UnixMilli(b.time).UTC(),
		Message: string(b.message),
		Raw:     raw,
	}
	for i := range c.Deps {
		copy(c.Deps[i][:], b.deps[32*i:])
	}
	return c, nil
}
