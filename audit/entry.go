package audit

import (
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"
)

// Action is what happened to a chart.
type Action string

// Actions.
const (
	// Read: the cloud sent a chart's changes to a device.
	Read Action = "read"
	// Write: the cloud accepted a device's changes to a chart.
	Write Action = "write"
	// Refused: the cloud refused a device's changes to a chart (a forbidden
	// change, say); Detail says why.
	Refused Action = "refused"
)

// Valid reports whether a is one of the defined actions.
func (a Action) Valid() bool { return a == Read || a == Write || a == Refused }

// Limits on an entry's fields, in bytes. They keep every record far below
// MaxLineLen.
const (
	MaxDeviceLen = 64   // Device: 1 to 64 lower-case hex digits
	MaxFieldLen  = 256  // Clinic, User, Role, Chart
	MaxDetailLen = 4096 // Detail
	// MaxLineLen bounds a record's line (without its newline). Readers
	// refuse longer lines before allocating for them.
	MaxLineLen = 64 << 10
)

// Entry is one access to one chart. The JSON keys are those of the log's
// records, so a record (or a line of a JSONLines export) unmarshals into an
// Entry with encoding/json.
type Entry struct {
	// Seq is the entry's position in the log, from 1, assigned by Append
	// (a value given to Append is ignored).
	Seq uint64 `json:"seq"`
	// Time is when it happened, in UTC. Append sets a zero Time from
	// Config.Now and converts others to UTC; years 1 to 9999.
	Time time.Time `json:"time"`
	// Action is what happened (required).
	Action Action `json:"action"`
	// Device is the replica ID of the device, lower-case hex (required).
	Device string `json:"device"`
	// Clinic is the device's clinic.
	Clinic string `json:"clinic"`
	// User and Role are the clinician recorded on a written (or refused)
	// change. Reads are per device and leave them empty.
	User string `json:"user"`
	Role string `json:"role"`
	// Chart is the chart's ID (required).
	Chart string `json:"chart"`
	// Changes is how many changes were sent, accepted or refused (>= 0).
	Changes int `json:"changes"`
	// Detail is free text, e.g. the reason for a refusal.
	Detail string `json:"detail"`
}

// Validate checks an entry as Append does, apart from Seq (assigned) and a
// zero Time (filled in). A refused entry gives an *EntryError with Index 0.
func (e Entry) Validate() error {
	if field, reason := e.check(); field != "" {
		return &EntryError{Field: field, Reason: reason}
	}
	return nil
}

// check returns the key of the first bad field and why, or "" if the entry
// may be recorded. A zero Time passes.
func (e *Entry) check() (field, reason string) {
	if !e.Action.Valid() {
		return "action", fmt.Sprintf("%q is not read, write or refused", truncate(string(e.Action)))
	}
	if e.Device == "" {
		return "device", "is required"
	}
	if len(e.Device) > MaxDeviceLen {
		return "device", fmt.Sprintf("has %d bytes (max %d)", len(e.Device), MaxDeviceLen)
	}
	if !isLowerHex(e.Device) {
		return "device", fmt.Sprintf("%q is not lower-case hex", truncate(e.Device))
	}
	if e.Chart == "" {
		return "chart", "is required"
	}
	for _, f := range [...]struct {
		name, v string
		max     int
	}{
		{"clinic", e.Clinic, MaxFieldLen},
		{"user", e.User, MaxFieldLen},
		{"role", e.Role, MaxFieldLen},
		{"chart", e.Chart, MaxFieldLen},
		{"detail", e.Detail, MaxDetailLen},
	} {
		if len(f.v) > f.max {
			return f.name, fmt.Sprintf("has %d bytes (max %d)", len(f.v), f.max)
		}
		if reason := checkText(f.v); reason != "" {
			return f.name, reason
		}
	}
	if e.Changes < 0 {
		return "changes", fmt.Sprintf("is negative (%d)", e.Changes)
	}
	if !e.Time.IsZero() {
		if y := e.Time.UTC().Year(); y < 1 || y > 9999 {
			return "time", fmt.Sprintf("year %d is outside 1 to 9999", y)
		}
	}
	return "", ""
}

// checkText refuses what would let a field break a line, hide text or
// mislead a reader: invalid UTF-8, control characters (C0, DEL, C1, which
// include newlines), the Unicode line and paragraph separators, and the
// bidirectional overrides and isolates.
func checkText(s string) string {
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				return fmt.Sprintf("contains control character %U", c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			return fmt.Sprintf("is not valid UTF-8 (byte %d)", i)
		}
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' ||
			r >= '\u202a' && r <= '\u202e' || r >= '\u2066' && r <= '\u2069' {
			return fmt.Sprintf("contains control character %U", r)
		}
		i += size
	}
	return ""
}

// truncate shortens a refused value for an error message.
func truncate(s string) string {
	const n = 40
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
