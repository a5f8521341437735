package record

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Identifier systems this package knows. Any other system is accepted if
// it is a lower-case name or a URI (a FHIR identifier system such as
// "http://hospital.example/mrn"); its value is checked only for being
// printable, without "|", at most 100 characters.
const (
	// SystemAadhaar is India's Aadhaar number: 12 digits, the first not 0
	// or 1, the last a Verhoeff check digit (spaces and hyphens as
	// written on the card are dropped).
	SystemAadhaar = "aadhaar"
	// SystemABHA is India's Ayushman Bharat Health Account number: 14
	// digits, usually written 2-4-4-4 with hyphens, which are dropped. It
	// is checked for its length only.
	SystemABHA = "abha"
	// SystemNationalID is a national identity card number: letters and
	// digits, at most 32 (spaces and hyphens dropped, letters upper case).
	SystemNationalID = "national-id"
	// SystemClinic is a clinic's own patient number: as SystemNationalID.
	SystemClinic = "clinic"
	// SystemPhone is a phone number: 5 to 15 digits, with an optional
	// leading "+" (spaces, hyphens, dots and brackets dropped).
	SystemPhone = "phone"
)

// singleValued lists the systems of which a patient has one identifier:
// AddIdentifier refuses a second active one (CorrectIdentifier changes
// it).
var singleValued = []string{SystemAadhaar, SystemABHA, SystemNationalID}

// Identifier is an identifier of a patient (Patient.Identifiers) or the
// external identifier of a chart entry (the ExternalID of each entry),
// such as the ID an imported record had in the system it came from.
type Identifier struct {
	// ID is the identifier's entry in the chart (patient identifiers
	// only; ignored by Register).
	ID     string `json:"id,omitempty"`
	System string `json:"system"`
	Value  string `json:"value"`
	// Status is active or inactive (removed, see RemoveIdentifier), for
	// patient identifiers.
	Status string `json:"status,omitempty"`
}

// String is the identifier as system|value, the form of a FHIR token.
func (i Identifier) String() string { return i.System + "|" + i.Value }

// ErrBadIdentifier is matched by the *ValidationError an identifier that
// fails its system's check gets (as it matches ErrInvalid).
var ErrBadIdentifier = errors.New("record: identifier fails its system's check")

type identifierError struct{ ValidationError }

func (e *identifierError) Is(target error) bool {
	return target == ErrInvalid || target == ErrBadIdentifier
}

func (e *identifierError) Unwrap() error { return &e.ValidationError }

var (
	reSystem   = regexp.MustCompile(`^[a-z][a-z0-9+.\-]{0,62}(:[^\s|]{1,200})?$`)
	reDigits   = regexp.MustCompile(`^[0-9]+$`)
	reIDCard   = regexp.MustCompile(`^[A-Z0-9]{1,32}$`)
	rePhoneDig = regexp.MustCompile(`^\+?[0-9]{5,15}$`)
)

// CanonicalIdentifier returns the identifier's value in the form the
// chart stores and compares it (digits only for Aadhaar, ABHA and
// phones, and so on: see the System constants), or an error matching
// ErrBadIdentifier (and ErrInvalid) naming what is wrong.
func CanonicalIdentifier(system, value string) (string, error) {
	bad := func(format string, args ...any) (string, error) {
		return "", &identifierError{ValidationError{Field: "identifier", Reason: fmt.Sprintf(format, args...)}}
	}
	if !reSystem.MatchString(system) {
		return bad("system %q is not a lower-case name or a URI", system)
	}
	drop := func(v, chars string) string {
		return strings.Map(func(r rune) rune {
			if strings.ContainsRune(chars, r) {
				return -1
			}
			return r
		}, v)
	}
	v := strings.TrimSpace(value)
	switch system {
	case SystemAadhaar:
		v = drop(v, " -")
		if len(v) != 12 || !reDigits.MatchString(v) || v[0] < '2' {
			return bad("%q is not an Aadhaar number (12 digits, not starting with 0 or 1)", value)
		}
		if !Verhoeff(v) {
			return bad("%q is not an Aadhaar number: its check digit is wrong (mistyped?)", value)
		}
	case SystemABHA:
		v = drop(v, " -")
		if len(v) != 14 || !reDigits.MatchString(v) {
			return bad("%q is not an ABHA number (14 digits)", value)
		}
	case SystemNationalID, SystemClinic:
		v = strings.ToUpper(drop(v, " -"))
		if !reIDCard.MatchString(v) {
			return bad("%q is not a %s number (letters and digits)", value, system)
		}
	case SystemPhone:
		v = drop(v, " -.()")
		if !rePhoneDig.MatchString(v) {
			return bad("%q is not a phone number", value)
		}
	default:
		if v == "" || utf8.RuneCountInString(v) > 100 || !utf8.ValidString(v) || strings.ContainsRune(v, '|') ||
			strings.ContainsFunc(v, unicode.IsControl) {
			return bad("%q is not an identifier (1 to 100 printable characters, no \"|\")", value)
		}
	}
	return v, nil
}

// Verhoeff reports whether digits, a string of decimal digits, ends in
// the right Verhoeff check digit (the scheme of Aadhaar numbers), which
// catches every single mistyped digit and every swap of two adjacent
// digits.
func Verhoeff(digits string) bool {
	if digits == "" || !reDigits.MatchString(digits) {
		return false
	}
	c := 0
	for i := range len(digits) {
		c = verhoeffD[c][verhoeffP[i%8][digits[len(digits)-1-i]-'0']]
	}
	return c == 0
}

// VerhoeffDigit returns the Verhoeff check digit to append to digits.
func VerhoeffDigit(digits string) (byte, error) {
	if digits == "" || !reDigits.MatchString(digits) {
		return 0, invalid("digits", "%q is not a string of digits", digits)
	}
	c := 0
	for i := range len(digits) {
		c = verhoeffD[c][verhoeffP[(i+1)%8][digits[len(digits)-1-i]-'0']]
	}
	return '0' + byte(verhoeffInv[c]), nil
}

// The dihedral group D5's multiplication, the permutation applied to each
// position, and the inverses, of Verhoeff's scheme.
var (
	verhoeffD = [10][10]int{
		{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 2, 3, 4, 0, 6, 7, 8, 9, 5}, {2, 3, 4, 0, 1, 7, 8, 9, 5, 6},
		{3, 4, 0, 1, 2, 8, 9, 5, 6, 7}, {4, 0, 1, 2, 3, 9, 5, 6, 7, 8}, {5, 9, 8, 7, 6, 0, 4, 3, 2, 1},
		{6, 5, 9, 8, 7, 1, 0, 4, 3, 2}, {7, 6, 5, 9, 8, 2, 1, 0, 4, 3}, {8, 7, 6, 5, 9, 3, 2, 1, 0, 4},
		{9, 8, 7, 6, 5, 4, 3, 2, 1, 0},
	}
	verhoeffP = [8][10]int{
		{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 5, 7, 6, 2, 8, 3, 0, 9, 4}, {5, 8, 0, 3, 7, 9, 6, 1, 4, 2},
		{8, 9, 1, 6, 0, 4, 3, 5, 2, 7}, {9, 4, 5, 3, 1, 2, 6, 8, 7, 0}, {4, 2, 8, 6, 5, 7, 3, 9, 0, 1},
		{2, 7, 9, 3, 8, 0, 6, 4, 1, 5}, {7, 0, 4, 6, 9, 1, 3, 2, 5, 8},
	}
	verhoeffInv = [10]int{0, 4, 3, 2, 1, 5, 6, 7, 8, 9}
)

// identifierSpec checks a stored identifier, "system|value": the value
// must be the canonical form of a valid identifier of the system.
func identifierSpec(v string) error {
	system, value, ok := strings.Cut(v, "|")
	if !ok {
		return fmt.Errorf("%q is not system|value", v)
	}
	c, err := CanonicalIdentifier(system, value)
	if err != nil {
		var ve *identifierError
		if errors.As(err, &ve) {
			return errors.New(ve.Reason)
		}
		return err
	}
	if c != value {
		return fmt.Errorf("%q is not written as %q", value, c)
	}
	return nil
}

// parseIdentifier splits a stored "system|value".
func parseIdentifier(v string) (Identifier, bool) {
	system, value, ok := strings.Cut(v, "|")
	return Identifier{System: system, Value: value}, ok && system != "" && value != ""
}

// canonical returns i with its value in canonical form.
func (i Identifier) canonical() (Identifier, error) {
	v, err := CanonicalIdentifier(strings.TrimSpace(i.System), i.Value)
	if err != nil {
		return Identifier{}, err
	}
	return Identifier{System: strings.TrimSpace(i.System), Value: v}, nil
}

// externalID returns the external identifier an entry carries, if any.
func (e *entry) externalID() *Identifier {
	if id, ok := parseIdentifier(e.value("external_id")); ok {
		return &id
	}
	return nil
}

// putExternalID adds the write of an entry's external identifier to p
// (none when id is zero).
func (p *plan) putExternalID(kind, entry string, id Identifier) error {
	if id == (Identifier{}) {
		return nil
	}
	c, err := id.canonical()
	if err != nil {
		return err
	}
	p.put(kind, entry, "external_id", c.String())
	return nil
}

// identifiers returns the patient's identifiers that are not entered in
// error, oldest first.
func (s *state) identifiers() []Identifier {
	var out []Identifier
	for _, e := range s.entriesOf(KindIdentifier) {
		if e.value("status") == StatusEnteredInError {
			continue
		}
		if id, ok := identifierOf(e); ok {
			out = append(out, id)
		}
	}
	return out
}

// identifierOf returns the patient identifier an identifier entry holds,
// false if it holds none readable.
func identifierOf(e *entry) (Identifier, bool) {
	id, ok := parseIdentifier(e.value("identifier"))
	if !ok {
		return Identifier{}, false
	}
	id.ID, id.Status = e.id, e.value("status")
	return id, true
}

// sameIdentifierActive reports whether the chart has an active identifier
// of system (and of value, unless value is empty), other than entry skip.
func (s *state) sameIdentifierActive(system, value, skip string) (*entry, bool) {
	for _, e := range s.entriesOf(KindIdentifier) {
		if e.id == skip || e.value("status") != StatusActive {
			continue
		}
		id, ok := parseIdentifier(e.value("identifier"))
		if ok && id.System == system && (value == "" || id.Value == value) {
			return e, true
		}
	}
	return nil, false
}

// addIdentifier adds the writes of a new identifier entry to p.
func (p *plan) addIdentifier(s *state, id Identifier) (string, error) {
	c, err := id.canonical()
	if err != nil {
		return "", err
	}
	if _, dup := s.sameIdentifierActive(c.System, c.Value, ""); dup {
		return "", fmt.Errorf("add identifier %s: the patient already has it: %w", c, ErrTransition)
	}
	if slices.Contains(singleValued, c.System) {
		if _, dup := s.sameIdentifierActive(c.System, "", ""); dup {
			return "", fmt.Errorf("add identifier %s: the patient already has a %s number (correct it instead): %w", c, c.System, ErrTransition)
		}
	}
	for _, o := range p.sets {
		if o.kind == KindIdentifier && o.field == "identifier" {
			prev, _ := parseIdentifier(o.value)
			if prev == c || (prev.System == c.System && slices.Contains(singleValued, c.System)) {
				return "", invalid("identifiers", "%s is given twice", c.System)
			}
		}
	}
	entry := newID()
	p.put(KindIdentifier, entry, "identifier", c.String())
	p.put(KindIdentifier, entry, "status", StatusActive)
	return entry, nil
}

// AddIdentifier records one more identifier of the patient, checked and
// written in canonical form (see CanonicalIdentifier). It is refused
// with ErrTransition if the patient already has it, or already has an
// active identifier of a system with one per patient (Aadhaar, ABHA,
// national ID): CorrectIdentifier changes that one.
type AddIdentifier struct {
	System string
	Value  string
}

func (a AddIdentifier) plan(s *state, at time.Time) (*plan, error) {
	p := &plan{op: "add-identifier"}
	id, err := p.addIdentifier(s, Identifier{System: a.System, Value: a.Value})
	if err != nil {
		return nil, err
	}
	p.entry = id
	id2, _ := parseIdentifier(p.sets[0].value)
	p.summary = fmt.Sprintf("Added %s identifier %s", id2.System, id2.Value)
	return p, nil
}

// CorrectIdentifier changes the value (and, if System is not empty, the
// system) of an identifier entered wrongly. The earlier value stays in
// the chart's history. Concurrent corrections of one identifier are a
// conflict, as for any field.
type CorrectIdentifier struct {
	IdentifierID string
	System       string // unchanged when empty
	Value        string
	Reason       string
}

func (c CorrectIdentifier) plan(s *state, at time.Time) (*plan, error) {
	e, err := s.find(KindIdentifier, c.IdentifierID)
	if err != nil {
		return nil, err
	}
	if st := e.value("status"); st == StatusEnteredInError {
		return nil, transition("correct identifier", st)
	}
	old, _ := parseIdentifier(e.value("identifier"))
	system := c.System
	if system == "" {
		system = old.System
	}
	id, err := Identifier{System: system, Value: c.Value}.canonical()
	if err != nil {
		return nil, err
	}
	if _, dup := s.sameIdentifierActive(id.System, id.Value, e.id); dup {
		return nil, fmt.Errorf("correct identifier to %s: the patient already has it: %w", id, ErrTransition)
	}
	p := &plan{op: "correct-identifier", entry: e.id}
	p.putChanged(s, KindIdentifier, e.id, "identifier", id.String())
	if len(p.sets) == 0 {
		return nil, invalid("identifier", "the identifier is already %s", id)
	}
	p.summary = fmt.Sprintf("Corrected %s identifier %s to %s", old.System, old.Value, id.Value)
	if c.Reason != "" {
		p.summary += ": " + c.Reason
	}
	return p, nil
}

// RemoveIdentifier marks an identifier no longer in use (a phone number
// given up, a replaced card): it stays listed as inactive, and in the
// history. A reason is required. For an identifier recorded by mistake,
// use MarkEnteredInError.
type RemoveIdentifier struct {
	IdentifierID string
	Reason       string
}

func (r RemoveIdentifier) plan(s *state, at time.Time) (*plan, error) {
	e, err := s.find(KindIdentifier, r.IdentifierID)
	if err != nil {
		return nil, err
	}
	if st := e.value("status"); st != StatusActive {
		return nil, transition("remove identifier", st)
	}
	if err := required("reason", r.Reason); err != nil {
		return nil, err
	}
	id, _ := parseIdentifier(e.value("identifier"))
	p := &plan{op: "remove-identifier", entry: e.id}
	p.put(KindIdentifier, e.id, "status", StatusInactive)
	p.put(KindIdentifier, e.id, "status_reason", r.Reason)
	p.summary = fmt.Sprintf("Removed %s identifier %s: %s", id.System, id.Value, r.Reason)
	return p, nil
}
