package crdt

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/chartsync/chartsync/third_party/automerge-go"
)

// ErrWrongType is returned when a path leads to a value of another kind
// than the operation expects (a string where a map was expected, say).
var ErrWrongType = errors.New("crdt: wrong type at path")

// Tx writes to a document inside Doc.Edit. Paths name nested maps from the
// root; the maps must exist unless created with PutMap. A Tx is not safe for
// concurrent use and is invalid once its Edit returns.
type Tx struct {
	d     *automerge.Doc
	wrote bool

	doc *Doc   // the document edited; its lock is held
	seq uint64 // the change's sequence number, once Change has told it
}

// Change returns the actor and the sequence number of the change the
// transaction makes. The pair names the change uniquely in the
// document (Automerge refuses a second change with an actor's sequence
// number), so keys built from it are keys no other change writes.
func (tx *Tx) Change() (actor string, seq uint64, err error) {
	if tx.doc == nil {
		return "", 0, errors.New("crdt: transaction used after its Edit returned")
	}
	if tx.seq == 0 {
		// A fork's history is built from its changes' bytes, without
		// Automerge, so the operations written so far are untouched.
		if err := tx.doc.ensureHistory(); err != nil {
			return "", 0, err
		}
		tx.seq = tx.doc.hist.next(tx.doc.actor)
	}
	return tx.doc.actor, tx.seq, nil
}

// lookupMap returns the map at path, noting in rs (if not nil) each value
// read on the way, which the map points into: rs must not be released
// while the map is used.
func lookupMap(d *automerge.Doc, path []string, rs *reads) (*automerge.Map, error) {
	m := d.RootMap()
	for i, seg := range path {
		v, err := m.Get(seg)
		if err == nil {
			rs.keep(v)
		}
		if err != nil {
			return nil, fmt.Errorf("path %q: %v: %w", path[:i+1], err, ErrMalformed)
		}
		switch v.Kind() {
		case automerge.KindVoid:
			return nil, fmt.Errorf("path %q: %w", path[:i+1], ErrNotFound)
		case automerge.KindMap:
			m = v.Map()
		default:
			return nil, fmt.Errorf("path %q is %s: %w", path[:i+1], v.Kind(), ErrWrongType)
		}
	}
	return m, nil
}

func (tx *Tx) mapAt(path []string) (*automerge.Map, error) {
	if tx.d == nil {
		return nil, errors.New("crdt: transaction used after its edit returned")
	}
	return lookupMap(tx.d, path, nil)
}

// PutMap creates an empty map at key in the map at path, if none is there.
func (tx *Tx) PutMap(path []string, key string) error {
	m, err := tx.mapAt(path)
	if err != nil {
		return err
	}
	v, err := m.Get(key)
	if err != nil {
		return fmt.Errorf("put map %q: %w", key, err)
	}
	switch v.Kind() {
	case automerge.KindMap:
		return nil
	case automerge.KindVoid:
	default:
		return fmt.Errorf("put map %q: key holds %s: %w", key, v.Kind(), ErrWrongType)
	}
	if err := m.Set(key, automerge.NewMap()); err != nil {
		return fmt.Errorf("put map %q: %w", key, err)
	}
	tx.wrote = true
	return nil
}

// Put sets key to a string value in the map at path.
func (tx *Tx) Put(path []string, key, value string) error {
	if !utf8.ValidString(value) || !utf8.ValidString(key) {
		return fmt.Errorf("put %q: invalid UTF-8: %w", key, ErrMalformed)
	}
	m, err := tx.mapAt(path)
	if err != nil {
		return err
	}
	if err := m.Set(key, value); err != nil {
		return fmt.Errorf("put %q: %w", key, err)
	}
	tx.wrote = true
	return nil
}

// PutText creates collaborative text at key in the map at path, holding s.
// It fails with ErrWrongType if key already holds a value.
func (tx *Tx) PutText(path []string, key, s string) error {
	m, err := tx.mapAt(path)
	if err != nil {
		return err
	}
	v, err := m.Get(key)
	if err != nil {
		return fmt.Errorf("put text %q: %w", key, err)
	}
	if v.Kind() != automerge.KindVoid {
		return fmt.Errorf("put text %q: key holds %s: %w", key, v.Kind(), ErrWrongType)
	}
	if err := m.Set(key, automerge.NewText(s)); err != nil {
		return fmt.Errorf("put text %q: %w", key, err)
	}
	tx.wrote = true
	return nil
}

// SpliceText deletes del characters (Unicode code points) at pos of the
// text at key in the map at path, and inserts s there. Concurrent splices
// by other actors merge character by character.
func (tx *Tx) SpliceText(path []string, key string, pos, del int, s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("splice %q: invalid UTF-8: %w", key, ErrMalformed)
	}
	m, err := tx.mapAt(path)
	if err != nil {
		return err
	}
	v, err := m.Get(key)
	if err != nil {
		return fmt.Errorf("splice %q: %w", key, err)
	}
	if v.Kind() == automerge.KindVoid {
		return fmt.Errorf("splice %q: %w", key, ErrNotFound)
	}
	if v.Kind() != automerge.KindText {
		return fmt.Errorf("splice %q: key holds %s: %w", key, v.Kind(), ErrWrongType)
	}
	t := v.Text()
	if pos < 0 || del < 0 || pos+del > t.Len() {
		return fmt.Errorf("splice %q: range %d+%d outside text of length %d: %w", key, pos, del, t.Len(), ErrOutOfRange)
	}
	if del == 0 && s == "" {
		return nil
	}
	if err := t.Splice(pos, del, s); err != nil {
		return fmt.Errorf("splice %q: %w", key, err)
	}
	tx.wrote = true
	return nil
}

// ErrOutOfRange is returned by SpliceText for a range outside the text.
var ErrOutOfRange = errors.New("crdt: range out of bounds")

// Strings returns the string values of the map at path, by key. Values of
// other kinds are skipped. A missing path gives ErrNotFound.
func (d *Doc) Strings(path ...string) (out map[string]string, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	defer recoverInto(&err)
	if d.am == nil {
		return nil, fmt.Errorf("read %q: %w", path, ErrClosed)
	}
	var rs reads
	defer rs.release()
	m, err := lookupMap(d.am, path, &rs)
	if err != nil {
		return nil, err
	}
	vals, err := m.Values()
	if err != nil {
		return nil, fmt.Errorf("read %q: %v: %w", path, err, ErrMalformed)
	}
	rs.keepAll(vals)
	out = make(map[string]string, len(vals))
	for k, v := range vals {
		if v.Kind() == automerge.KindStr {
			out[k] = v.Str()
		}
	}
	return out, nil
}

// IsMap returns nil if path names a map (the root for an empty path),
// and otherwise the error Keys would return (ErrNotFound, ErrWrongType),
// without reading the map's keys.
func (d *Doc) IsMap(path ...string) (err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	defer recoverInto(&err)
	if d.am == nil {
		return fmt.Errorf("read %q: %w", path, ErrClosed)
	}
	var rs reads
	defer rs.release()
	_, err = lookupMap(d.am, path, &rs)
	return err
}

// Keys returns the keys of the map at path (sorted by Automerge).
func (d *Doc) Keys(path ...string) (keys []string, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	defer recoverInto(&err)
	if d.am == nil {
		return nil, fmt.Errorf("keys of %q: %w", path, ErrClosed)
	}
	var rs reads
	defer rs.release()
	m, err := lookupMap(d.am, path, &rs)
	if err != nil {
		return nil, err
	}
	keys, err = m.Keys()
	if err != nil {
		return nil, fmt.Errorf("keys of %q: %v: %w", path, err, ErrMalformed)
	}
	return keys, nil
}

// String returns the string at key of the map at path; ErrNotFound if the
// key is absent, ErrWrongType if it holds something else.
func (d *Doc) String(path []string, key string) (s string, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	defer recoverInto(&err)
	if d.am == nil {
		return "", fmt.Errorf("read %q: %w", path, ErrClosed)
	}
	var rs reads
	defer rs.release()
	v, err := d.value(path, key, &rs)
	if err != nil {
		return "", err
	}
	if v.Kind() != automerge.KindStr {
		return "", fmt.Errorf("read %q: holds %s: %w", key, v.Kind(), ErrWrongType)
	}
	return v.Str(), nil
}

// Text returns the content of the collaborative text at key of the map at
// path.
func (d *Doc) Text(path []string, key string) (s string, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	defer recoverInto(&err)
	if d.am == nil {
		return "", fmt.Errorf("read text %q: %w", key, ErrClosed)
	}
	var rs reads
	defer rs.release()
	v, err := d.value(path, key, &rs)
	if err != nil {
		return "", err
	}
	if v.Kind() != automerge.KindText {
		return "", fmt.Errorf("read text %q: holds %s: %w", key, v.Kind(), ErrWrongType)
	}
	s, err = v.Text().Get()
	if err != nil {
		return "", fmt.Errorf("read text %q: %v: %w", key, err, ErrMalformed)
	}
	return s, nil
}

// value reads the value at key of the map at path, noting in rs what it
// read (the value among it).
func (d *Doc) value(path []string, key string, rs *reads) (*automerge.Value, error) {
	m, err := lookupMap(d.am, path, rs)
	if err != nil {
		return nil, err
	}
	v, err := m.Get(key)
	if err != nil {
		return nil, fmt.Errorf("read %q: %v: %w", key, err, ErrMalformed)
	}
	rs.keep(v)
	if v.Kind() == automerge.KindVoid {
		return nil, fmt.Errorf("read %q: %w", key, ErrNotFound)
	}
	return v, nil
}
