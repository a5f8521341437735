package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"
)

// A record is one line of the log: a JSON object with these keys, in this
// order, and nothing else:
//
//	{"seq":1,"time":"2025-03-01T09:30:00Z","action":"write","device":"8f3a...",
//	 "clinic":"kamuga","user":"u-achieng","role":"nurse","chart":"c-17",
//	 "changes":3,"detail":"","prev":"0000...0000"}
//
// (on one line). Strings escape only '"' and '\' (fields hold no control
// characters); time is RFC 3339 in UTC with as many fractional digits as
// needed (time.RFC3339Nano); prev is the SHA-256 of the previous line
// without its newline, in lower-case hex, or 64 zeros on the first line.
// Each entry has exactly one encoding, and a reader refuses any other, so
// every reader (this package, encoding/json, jq) sees the same entry in the
// same bytes.

const hashLen = sha256.Size

type hash = [hashLen]byte

// appendRecord appends e's record, without a newline. e must have passed
// check, with a non-zero UTC Time.
func appendRecord(b []byte, e *Entry, prev *hash) []byte {
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, e.Seq, 10)
	b = append(b, `,"time":"`...)
	b = e.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","action":`...)
	b = appendString(b, string(e.Action))
	b = append(b, `,"device":`...)
	b = appendString(b, e.Device)
	b = append(b, `,"clinic":`...)
	b = appendString(b, e.Clinic)
	b = append(b, `,"user":`...)
	b = appendString(b, e.User)
	b = append(b, `,"role":`...)
	b = appendString(b, e.Role)
	b = append(b, `,"chart":`...)
	b = appendString(b, e.Chart)
	b = append(b, `,"changes":`...)
	b = strconv.AppendInt(b, int64(e.Changes), 10)
	b = append(b, `,"detail":`...)
	b = appendString(b, e.Detail)
	b = append(b, `,"prev":"`...)
	b = hex.AppendEncode(b, prev[:])
	return append(b, `"}`...)
}

func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' {
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return append(b, '"')
}

// parser reads one record. Its methods record the first failure in reason
// and do nothing once one is recorded.
type parser struct {
	b      []byte
	n      int // length of the line
	reason string
}

func (p *parser) fail(format string, args ...any) {
	if p.reason == "" {
		p.reason = fmt.Sprintf(format, args...) + fmt.Sprintf(" (byte %d)", p.n-len(p.b))
	}
}

// lit consumes s.
func (p *parser) lit(s string) {
	if p.reason != "" {
		return
	}
	if !bytes.HasPrefix(p.b, []byte(s)) {
		p.fail("expected %s", s)
		return
	}
	p.b = p.b[len(s):]
}

// digits consumes a non-negative decimal number without leading zeros, of
// at most 19 digits.
func (p *parser) digits(key string) uint64 {
	if p.reason != "" {
		return 0
	}
	n := 0
	for n < len(p.b) && p.b[n] >= '0' && p.b[n] <= '9' {
		n++
	}
	switch {
	case n == 0:
		p.fail("%s is not a non-negative integer", key)
		return 0
	case n > 1 && p.b[0] == '0':
		p.fail("%s has a leading zero", key)
		return 0
	case n > 19:
		p.fail("%s is too large", key)
		return 0
	}
	v, err := strconv.ParseUint(string(p.b[:n]), 10, 63)
	if err != nil {
		p.fail("%s is too large", key)
		return 0
	}
	p.b = p.b[n:]
	return v
}

// str consumes a JSON string escaped as appendString escapes.
func (p *parser) str(key string) string {
	if p.reason != "" {
		return ""
	}
	if len(p.b) == 0 || p.b[0] != '"' {
		p.fail("%s is not a string", key)
		return ""
	}
	escaped := false
	for i := 1; i < len(p.b); i++ {
		switch c := p.b[i]; {
		case c == '"':
			raw := p.b[1:i]
			p.b = p.b[i+1:]
			if !escaped {
				return string(raw)
			}
			out := make([]byte, 0, len(raw))
			for j := 0; j < len(raw); j++ {
				if raw[j] == '\\' {
					j++
				}
				out = append(out, raw[j])
			}
			return string(out)
		case c == '\\':
			if i+1 < len(p.b) && (p.b[i+1] == '"' || p.b[i+1] == '\\') {
				escaped = true
				i++
				continue
			}
			p.fail("%s has an escape other than \\\" or \\\\", key)
			return ""
		case c < 0x20:
			p.fail("%s has a control character", key)
			return ""
		}
	}
	p.fail("%s is not terminated", key)
	return ""
}

// parseRecord decodes one line (without its newline). It accepts exactly
// the lines appendRecord writes for entries that pass check: on success,
// appendRecord(nil, &e, &prev) equals line. On failure reason says why.
func parseRecord(line []byte) (e Entry, prev hash, reason string) {
	p := parser{b: line, n: len(line)}
	p.lit(`{"seq":`)
	e.Seq = p.digits("seq")
	p.lit(`,"time":`)
	ts := p.str("time")
	p.lit(`,"action":`)
	e.Action = Action(p.str("action"))
	p.lit(`,"device":`)
	e.Device = p.str("device")
	p.lit(`,"clinic":`)
	e.Clinic = p.str("clinic")
	p.lit(`,"user":`)
	e.User = p.str("user")
	p.lit(`,"role":`)
	e.Role = p.str("role")
	p.lit(`,"chart":`)
	e.Chart = p.str("chart")
	p.lit(`,"changes":`)
	changes := p.digits("changes")
	p.lit(`,"detail":`)
	e.Detail = p.str("detail")
	p.lit(`,"prev":"`)
	if p.reason == "" {
		if len(p.b) < 2*hashLen || !isLowerHex(p.b[:2*hashLen]) {
			p.fail("prev is not %d lower-case hex digits", 2*hashLen)
		} else {
			hex.Decode(prev[:], p.b[:2*hashLen])
			p.b = p.b[2*hashLen:]
		}
	}
	p.lit(`"}`)
	if p.reason == "" && len(p.b) != 0 {
		p.fail("%d bytes after the record", len(p.b))
	}
	if p.reason != "" {
		return Entry{}, hash{}, p.reason
	}
	if e.Seq == 0 {
		return Entry{}, hash{}, "seq is 0"
	}
	if changes > uint64(maxInt) {
		return Entry{}, hash{}, "changes is too large"
	}
	e.Changes = int(changes)
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil || t.Location() != time.UTC || t.Format(time.RFC3339Nano) != ts {
		return Entry{}, hash{}, fmt.Sprintf("time %q is not RFC 3339 in UTC as written by this package", truncate(ts))
	}
	e.Time = t
	if field, why := e.check(); field != "" {
		return Entry{}, hash{}, fmt.Sprintf("%s %s", field, why)
	}
	return e, prev, ""
}

const maxInt = int(^uint(0) >> 1)

// lowerHex[c] says whether c is a lower-case hex digit.
var lowerHex = func() (t [256]bool) {
	for _, c := range []byte("0123456789abcdef") {
		t[c] = true
	}
	return t
}()

func isLowerHex[S string | []byte](b S) bool {
	for i := 0; i < len(b); i++ {
		if !lowerHex[b[i]] {
			return false
		}
	}
	return true
}
