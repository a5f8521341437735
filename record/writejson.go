package record

import (
	"encoding/json"
	"slices"
	"strconv"
	"unicode/utf8"
)

// parseWrite reads a write's JSON as json.Unmarshal reads it into a
// write: the same fields, and an error for the same inputs. Every chart
// read, checked or received parses each of its writes, and reflection
// made json.Unmarshal the largest cost of judging a received change; so
// the form json.Marshal gives a write (its keys once each, in lower case,
// no spaces, strings without escapes, a whole number of milliseconds) is
// read here directly, and anything else (an escape, an unknown or
// repeated key, spaces, a null) by json.Unmarshal itself.
func parseWrite(js string) (*write, error) {
	if w, ok := parseWritePlain(js); ok {
		return w, nil
	}
	w := &write{}
	if err := json.Unmarshal([]byte(js), w); err != nil {
		return nil, err
	}
	return w, nil
}

// parseWritePlain reads js if it is in the plain form parseWrite
// describes; false if it is not (which says nothing of its validity).
func parseWritePlain(js string) (*write, bool) {
	w := &write{}
	f := plainFields{
		keys: []string{"k", "e", "f", "v", "u", "n", "d", "r", "s", "t"},
		text: []*string{&w.Kind, &w.Entry, &w.Field, &w.Value, &w.User, &w.Name, &w.Device},
		role: &w.Role, list: &w.Supersedes, at: &w.At,
	}
	return w, f.read(js)
}

// parseMessage reads a change's message as json.Unmarshal reads it into a
// message, directly when it is in the plain form parseWrite describes.
func parseMessage(js string) (message, error) {
	if m, ok := parseMessagePlain(js); ok {
		return m, nil
	}
	var m message
	err := json.Unmarshal([]byte(js), &m)
	return m, err
}

func parseMessagePlain(js string) (message, bool) {
	var m message
	f := plainFields{
		keys: []string{"op", "user", "name", "device", "entry", "summary", "role", "at"},
		text: []*string{&m.Op, &m.User, &m.Name, &m.Device, &m.Entry, &m.Summary},
		role: &m.Role, at: &m.At,
	}
	return m, f.read(js)
}

// plainFields are where a plain object's fields go: a string for each of
// the first keys (text), then a role, a list of strings if list is set,
// and a time.
type plainFields struct {
	keys []string
	text []*string
	role *Role
	list *[]string
	at   *int64
}

// read reads js into f if it is a plain object of f's keys, each at most
// once.
func (f plainFields) read(js string) bool {
	var seen uint32
	return plainObject(js, func(key string, p *plainJSON) bool {
		i := slices.Index(f.keys, key)
		if i < 0 || seen&(1<<i) != 0 {
			return false
		}
		seen |= 1 << i
		var ok bool
		switch {
		case i < len(f.text):
			*f.text[i], ok = p.str()
		case i == len(f.text):
			var r string
			r, ok = p.str()
			*f.role = Role(r)
		case i == len(f.keys)-1:
			*f.at, ok = p.int()
		default:
			*f.list, ok = p.strs()
		}
		return ok
	})
}

// plainObject reads js as an object in plain form: each key a plain
// string, read by field with its value (field reports false for a key or
// value not in plain form, or a key met before), no spaces, nothing after
// it. It reports false for anything else.
func plainObject(js string, field func(key string, p *plainJSON) bool) bool {
	p := plainJSON{s: js}
	if !p.next('{') {
		return false
	}
	if p.next('}') {
		return p.done()
	}
	for {
		key, ok := p.str()
		if !ok || !p.next(':') || !field(key, &p) {
			return false
		}
		if p.next('}') {
			return p.done()
		}
		if !p.next(',') {
			return false
		}
	}
}

// plainJSON reads the plain form of JSON parseWrite reads directly.
type plainJSON struct {
	s string
	i int
}

func (p *plainJSON) next(c byte) bool {
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *plainJSON) done() bool { return p.i == len(p.s) }

// str reads a string without escapes or control characters, in valid
// UTF-8 (json.Unmarshal would replace what is not).
func (p *plainJSON) str() (string, bool) {
	if !p.next('"') {
		return "", false
	}
	start, ascii := p.i, true
	for ; p.i < len(p.s); p.i++ {
		switch c := p.s[p.i]; {
		case c == '"':
			s := p.s[start:p.i]
			p.i++
			return s, ascii || utf8.ValidString(s)
		case c == '\\' || c < 0x20:
			return "", false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return "", false
}

// strs reads an array of strings.
func (p *plainJSON) strs() ([]string, bool) {
	if !p.next('[') {
		return nil, false
	}
	out := []string{}
	if p.next(']') {
		return out, true
	}
	for {
		s, ok := p.str()
		if !ok {
			return nil, false
		}
		out = append(out, s)
		if p.next(']') {
			return out, true
		}
		if !p.next(',') {
			return nil, false
		}
	}
}

// int reads a whole number as JSON writes it, of at most 18 digits (so
// that it fits an int64 as it is).
func (p *plainJSON) int() (int64, bool) {
	start := p.i
	p.next('-')
	digits := p.i
	for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
		p.i++
	}
	n := p.i - digits
	if n == 0 || n > 18 || (n > 1 && p.s[digits] == '0') {
		return 0, false
	}
	if p.i < len(p.s) && (p.s[p.i] == '.' || p.s[p.i] == 'e' || p.s[p.i] == 'E') {
		return 0, false
	}
	v, err := strconv.ParseInt(p.s[start:p.i], 10, 64)
	return v, err == nil
}
