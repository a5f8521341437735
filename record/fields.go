package record

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// ErrInvalid is matched by every *ValidationError: an operation's input is
// missing, implausible or malformed.
var ErrInvalid = errors.New("record: invalid input")

// ValidationError names the field that failed and why.
type ValidationError struct {
	Field  string
	Reason string
}

func (e *ValidationError) Error() string {
	return fmt.Sprintf("record: %s: %s", e.Field, e.Reason)
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

func invalid(field, format string, args ...any) error {
	return &ValidationError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Statuses, by entry kind.
const (
	StatusActive         = "active"
	StatusOnHold         = "on-hold"
	StatusCompleted      = "completed"
	StatusStopped        = "stopped"
	StatusEnteredInError = "entered-in-error"
	StatusInactive       = "inactive"
	StatusResolved       = "resolved"
	StatusPreliminary    = "preliminary"
	StatusFinal          = "final"
	StatusCorrected      = "corrected"
	StatusRecorded       = "recorded"
)

// Diagnosis clinical statuses: FHIR R4 Condition.clinicalStatus. A
// recurrence is a problem back after it resolved, a relapse one back
// after a remission.
const (
	ClinicalActive     = "active"
	ClinicalRecurrence = "recurrence"
	ClinicalRelapse    = "relapse"
	ClinicalInactive   = "inactive"
	ClinicalRemission  = "remission"
	ClinicalResolved   = "resolved"
)

// Diagnosis verification statuses: FHIR R4 Condition.verificationStatus
// (whose entered-in-error is StatusEnteredInError). Provisional and
// differential are the two kinds of unconfirmed FHIR distinguishes.
const (
	VerificationUnconfirmed  = "unconfirmed"
	VerificationProvisional  = "provisional"
	VerificationDifferential = "differential"
	VerificationConfirmed    = "confirmed"
	VerificationRefuted      = "refuted"
)

// A fieldSpec says how a field's stored value is checked.
type fieldSpec func(v string) error

func text(max int) fieldSpec {
	return func(v string) error {
		if !utf8.ValidString(v) {
			return errors.New("is not valid UTF-8")
		}
		if utf8.RuneCountInString(v) > max {
			return fmt.Errorf("is longer than %d characters", max)
		}
		for _, r := range v {
			if unicode.IsControl(r) && r != '\n' && r != '\t' {
				return errors.New("contains control characters")
			}
		}
		return nil
	}
}

func oneOf(vals ...string) fieldSpec {
	return func(v string) error {
		for _, a := range vals {
			if v == a {
				return nil
			}
		}
		return fmt.Errorf("%q is not one of %s", v, strings.Join(vals, ", "))
	}
}

func optional(f fieldSpec) fieldSpec {
	return func(v string) error {
		if v == "" {
			return nil
		}
		return f(v)
	}
}

func number(lo, hi float64) fieldSpec {
	return func(v string) error {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("%q is not a number", v)
		}
		if f < lo || f > hi {
			return fmt.Errorf("%s is outside the plausible range %g–%g", v, lo, hi)
		}
		return nil
	}
}

func pattern(re *regexp.Regexp, what string) fieldSpec {
	return func(v string) error {
		if !re.MatchString(v) {
			return fmt.Errorf("%q is not %s", v, what)
		}
		return nil
	}
}

// textList checks a list of texts stored one a line: at most n, each
// non-blank and at most max characters.
func textList(n, max int) fieldSpec {
	item := text(max)
	return func(v string) error {
		if v == "" {
			return nil
		}
		items := strings.Split(v, "\n")
		if len(items) > n {
			return fmt.Errorf("lists more than %d texts", n)
		}
		for _, it := range items {
			if strings.TrimSpace(it) == "" {
				return errors.New("lists an empty text")
			}
			if err := item(it); err != nil {
				return err
			}
		}
		return nil
	}
}

// loinc checks a LOINC code: its number, a hyphen and its mod-10 check
// digit.
func loinc(v string) error {
	if !reLOINC.MatchString(v) {
		return fmt.Errorf("%q is not a LOINC code such as 718-7", v)
	}
	if !ValidLOINC(v) {
		return fmt.Errorf("%q has the wrong check digit", v)
	}
	return nil
}

// ValidLOINC reports whether code is a well-formed LOINC code: up to
// seven digits, a hyphen and the check digit LOINC's mod-10 algorithm
// gives (718-7, 2345-7). It does not tell whether LOINC defines the code.
func ValidLOINC(code string) bool {
	if !reLOINC.MatchString(code) {
		return false
	}
	num, check, _ := strings.Cut(code, "-")
	sum := 0
	for i := 0; i < len(num); i++ {
		d := int(num[len(num)-1-i] - '0')
		if i%2 == 0 { // odd positions from the right are doubled
			d *= 2
			d = d/10 + d%10
		}
		sum += d
	}
	return int(check[0]-'0') == (10-sum%10)%10
}

func date(v string) error {
	if _, err := time.Parse(time.DateOnly, v); err != nil {
		return fmt.Errorf("%q is not a date (YYYY-MM-DD)", v)
	}
	return nil
}

func timestamp(v string) error {
	if _, err := time.Parse(time.RFC3339, v); err != nil {
		return fmt.Errorf("%q is not a time (RFC 3339)", v)
	}
	return nil
}

var (
	reICD10 = regexp.MustCompile(`^[A-Z][0-9][0-9A-Z](\.[0-9A-Z]{1,4})?$`)
	reLOINC = regexp.MustCompile(`^[0-9]{1,7}-[0-9]$`)
	rePhone = regexp.MustCompile(`^\+?[0-9][0-9 \-]{4,22}[0-9]$`)
	reCode  = regexp.MustCompile(`^[A-Za-z0-9.\-:/|]{1,64}$`)
	reID    = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
)

// Vocabulary.
var (
	sexes       = []string{"female", "male", "other", "unknown"}
	severities  = []string{"mild", "moderate", "severe", "life-threatening"}
	doseUnits   = []string{"mg", "g", "mcg", "ml", "IU", "units", "tablet", "capsule", "drop", "puff", "sachet", "suppository"}
	routes      = []string{"oral", "IV", "IM", "SC", "topical", "inhaled", "rectal", "vaginal", "sublingual", "nasal", "ophthalmic", "otic", "transdermal"}
	frequencies = []string{"OD", "BD", "TDS", "QID", "Q4H", "Q6H", "Q8H", "Q12H", "NOCTE", "PRN", "STAT", "WEEKLY"}
	clinicals   = []string{ClinicalActive, ClinicalRecurrence, ClinicalRelapse, ClinicalInactive, ClinicalRemission, ClinicalResolved}
	verifs      = []string{VerificationUnconfirmed, VerificationProvisional, VerificationDifferential, VerificationConfirmed,
		VerificationRefuted}
)

// frequencyWords says each frequency code in words, for history and apps.
var frequencyWords = map[string]string{
	"OD": "once daily", "BD": "twice daily", "TDS": "three times daily", "QID": "four times daily",
	"Q4H": "every 4 hours", "Q6H": "every 6 hours", "Q8H": "every 8 hours", "Q12H": "every 12 hours",
	"NOCTE": "at night", "PRN": "when needed", "STAT": "once, immediately", "WEEKLY": "once a week",
}

// checkField validates one value for one field of one kind of entry.
func checkField(kind, field, v string) error {
	var spec fieldSpec
	if k := kindSpecs[kind]; k != nil {
		spec = k.fields[field]
	}
	if spec == nil {
		return invalid(field, "is not a field of a %s", kind)
	}
	if err := spec(v); err != nil {
		return invalid(field, "%v", err)
	}
	return nil
}

func fmtFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

func parseFloat(s string) (float64, bool) {
	f, err := strconv.ParseFloat(s, 64)
	return f, err == nil && !math.IsNaN(f) && !math.IsInf(f, 0)
}
