package record

import (
	"encoding/json"
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
	p := plainJSON{s: js}
	if !p.next('{') {
		return nil, false
	}
	if p.next('}') {
		return w, p.done()
	}
	var seen [10]bool
	for {
		key, ok := p.str()
		if !ok || len(key) != 1 || !p.next(':') {
			return nil, false
		}
		var slot int
		var dst *string
		switch key[0] {
		case 'k':
			slot, dst = 0, &w.Kind
		case 'e':
			slot, dst = 1, &w.Entry
		case 'f':
			slot, dst = 2, &w.Field
		case 'v':
			slot, dst = 3, &w.Value
		case 'u':
			slot, dst = 4, &w.User
		case 'n':
			slot, dst = 5, &w.Name
		case 'd':
			slot, dst = 6, &w.Device
		case 'r':
			slot = 7
		case 's':
			slot = 8
		case 't':
			slot = 9
		default:
			return nil, false
		}
		if seen[slot] {
			return nil, false
		}
		seen[slot] = true
		switch slot {
		case 7:
			r, ok := p.str()
			if !ok {
				return nil, false
			}
			w.Role = Role(r)
		case 8:
			if w.Supersedes, ok = p.strs(); !ok {
				return nil, false
			}
		case 9:
			if w.At, ok = p.int(); !ok {
				return nil, false
			}
		default:
			if *dst, ok = p.str(); !ok {
				return nil, false
			}
		}
		if p.next('}') {
			return w, p.done()
		}
		if !p.next(',') {
			return nil, false
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
