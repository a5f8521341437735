package main

import (
	"flag"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// valueError is a flag value the command line refused: it names the flag
// and says what the flag accepts.
type valueError struct {
	Flag, Value, Accepts string
}

func (e *valueError) Error() string {
	return fmt.Sprintf("-%s %q: %s", e.Flag, e.Value, e.Accepts)
}

// clearValue wraps a flag's value so that a value it refuses is reported
// as a valueError naming the flag and what it takes, instead of the
// standard library's "parse error".
func clearValue(name string, v flag.Value, fs *flag.FlagSet) flag.Value {
	c := &checked{Value: v, name: name, fs: fs}
	if isBool(v) {
		return &checkedBool{c}
	}
	return c
}

type checked struct {
	flag.Value
	name string
	fs   *flag.FlagSet
	set  bool // given on the command line
}

// String returns the wrapped value's text; "" for the zero checked that
// package flag makes to tell a default from a zero value.
func (c *checked) String() string {
	if c == nil || c.Value == nil {
		return ""
	}
	return c.Value.String()
}

// Get returns the wrapped value's own, when it has one.
func (c *checked) Get() any {
	if g, ok := c.Value.(flag.Getter); ok {
		return g.Get()
	}
	return c.Value.String()
}

func (c *checked) Set(s string) error {
	err := c.Value.Set(s)
	if err == nil {
		c.set = true
		return nil
	}
	if ve, ok := err.(*valueError); ok {
		return ve
	}
	accepts := err.Error()
	switch c.Get().(type) {
	case float64:
		accepts = "give a number, such as 500 or 2.5"
		if m := numberWithUnit.FindStringSubmatch(s); m != nil && c.fs.Lookup("unit") != nil {
			accepts = fmt.Sprintf("give the number only (%s), and the unit with -unit %s", m[1], m[2])
		}
	case int, int64, uint, uint64:
		accepts = "give a whole number, such as 7"
	case time.Duration:
		accepts = "give a duration such as 15m, 1h or 90s"
	case bool:
		accepts = "give true or false (or leave the value out for true)"
	}
	return &valueError{Flag: c.name, Value: s, Accepts: accepts}
}

// numberWithUnit is a number followed by a unit, as in "500mg".
var numberWithUnit = regexp.MustCompile(`^\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]+)\s*$`)

type checkedBool struct{ *checked }

// given reports whether the command line gave fs's flag name (a value
// the command line parsed, not the flag's default).
func given(fs *flag.FlagSet, name string) bool {
	f := fs.Lookup(name)
	if f == nil {
		return false
	}
	switch v := f.Value.(type) {
	case *checked:
		return v.set
	case *checkedBool:
		return v.set
	}
	return false
}

func (checkedBool) IsBoolFlag() bool { return true }

// code is a flag taking a code from a list, in any case: "tds" is taken
// as TDS. A value not on the list is kept as typed, for the chart's own
// check to refuse with the list of what it accepts.
type code struct {
	v       *string
	allowed []string
}

func (c *code) String() string {
	if c == nil || c.v == nil {
		return ""
	}
	return *c.v
}

func (c *code) Set(s string) error {
	s = strings.TrimSpace(s)
	for _, a := range c.allowed {
		if strings.EqualFold(s, a) {
			s = a
			break
		}
	}
	*c.v = s
	return nil
}

// codeVar defines a flag whose value is one of allowed, in any case.
func codeVar(fs *flag.FlagSet, p *string, name, def, usage string, allowed []string) {
	*p = def
	fs.Var(&code{v: p, allowed: allowed}, name, usage)
}

// The codes the chart accepts, as the record package checks them.
var (
	sexCodes          = []string{"female", "male", "other", "unknown"}
	severityCodes     = []string{"mild", "moderate", "severe", "life-threatening"}
	allergyStatuses   = []string{"active", "inactive", "resolved"}
	doseUnitCodes     = []string{"mg", "g", "mcg", "ml", "IU", "units", "tablet", "capsule", "drop", "puff", "sachet", "suppository"}
	routeCodes        = []string{"oral", "IV", "IM", "SC", "topical", "inhaled", "rectal", "vaginal", "sublingual", "nasal", "ophthalmic", "otic", "transdermal"}
	frequencyCodes    = []string{"OD", "BD", "TDS", "QID", "Q4H", "Q6H", "Q8H", "Q12H", "NOCTE", "PRN", "STAT", "WEEKLY"}
	clinicalCodes     = []string{"active", "recurrence", "relapse", "inactive", "remission", "resolved"}
	verificationCodes = []string{"unconfirmed", "provisional", "differential", "confirmed", "refuted"}
	roleCodes         = []string{"clinician", "nurse", "lab-technician", "registration-clerk", "community-health-worker", "administrator"}
)

// fieldFlags names, for each field of a chart entry that the chart may
// refuse, what it is called and the flags that set it.
var fieldFlags = map[string]struct{ label, flags string }{
	"given_name":           {"name", "-given or -family"},
	"given":                {"given name", "-given"},
	"family":               {"family name", "-family"},
	"sex":                  {"sex", "-sex"},
	"home_clinic":          {"home clinic", "-home-clinic"},
	"birth_date":           {"birth date", "-born YYYY-MM-DD or -born-year YYYY"},
	"estimated_birth_year": {"estimated birth year", "-born-year"},
	"birth_year":           {"estimated birth year", "-born-year"},
	"village":              {"village", "-village"},
	"address":              {"address", "-address"},
	"phone":                {"phone", "-phone"},
	"national_id":          {"national ID", "-national-id"},
	"guardian":             {"guardian", "-guardian"},
	"demographics":         {"patient's details", "-given, -family, -sex, -born, -village, ... (see clinic edit-patient -h)"},
	"substance":            {"substance", "-substance"},
	"severity":             {"severity", "-severity"},
	"reaction":             {"reaction", "-reaction"},
	"allergy":              {"allergy", "-reaction, -severity or -status"},
	"status":               {"status", "-status"},
	"status_reason":        {"reason", "-reason"},
	"text":                 {"text", "-text"},
	"code":                 {"code", "-code"},
	"onset":                {"onset", "-onset"},
	"clinical":             {"clinical status", "-clinical"},
	"verification":         {"verification status", "-verification"},
	"note":                 {"note", "-note"},
	"drug":                 {"drug", "-drug"},
	"atc":                  {"ATC code", "-atc"},
	"drug_code":            {"drug code", "-code"},
	"dose":                 {"dose", "-dose"},
	"unit":                 {"unit", "-unit"},
	"route":                {"route", "-route"},
	"frequency":            {"frequency", "-freq"},
	"duration_days":        {"duration", "-days"},
	"start":                {"start date", "-start"},
	"end":                  {"end date", "-end"},
	"instructions":         {"instructions", "-instructions"},
	"test":                 {"test", "-test"},
	"loinc":                {"LOINC code", "-loinc"},
	"value":                {"value", "-value NUMBER or -text TEXT"},
	"ref_low":              {"reference range", "-low and -high"},
	"ref_high":             {"reference range", "-low and -high"},
	"ref_text":             {"reference range", "-range"},
	"critical_low":         {"critical range", "-critical-low and -critical-high"},
	"critical_high":        {"critical range", "-critical-low and -critical-high"},
	"abnormal_text":        {"abnormal texts", "-abnormal"},
	"critical_text":        {"critical texts", "-critical-text"},
	"specimen_at":          {"specimen time", "-specimen"},
	"complaint":            {"complaint", "-complaint"},
	"date":                 {"date", "-date"},
	"clinician":            {"clinician", "-clinician"},
	"bp_systolic":          {"blood pressure", "-bp"},
	"bp_diastolic":         {"blood pressure", "-bp"},
	"pulse":                {"pulse", "-pulse"},
	"temperature":          {"temperature", "-temp"},
	"weight":               {"weight", "-weight"},
	"height":               {"height", "-height"},
	"spo2":                 {"oxygen saturation", "-spo2"},
	"reason":               {"reason", "-reason"},
	"insert":               {"text to add", "-append"},
	"clinic":               {"clinic", "-to"},
}

// explainInvalid says which flag to correct for a field the chart
// refused, and why: "birth date: give a birth date or an estimated birth
// year (-born YYYY-MM-DD or -born-year YYYY)".
func explainInvalid(field, reason string) string {
	ff, ok := fieldFlags[field]
	if !ok {
		ff.label = strings.ReplaceAll(field, "_", " ")
	}
	var msg string
	switch {
	case reason == "is required":
		msg = fmt.Sprintf("%s: required", ff.label)
		if ff.flags != "" {
			msg = fmt.Sprintf("%s: required; give it with %s", ff.label, ff.flags)
		}
		return msg + "."
	case strings.HasSuffix(reason, " is required"):
		msg = fmt.Sprintf("%s: give %s", ff.label, strings.TrimSuffix(reason, " is required"))
	case strings.HasPrefix(reason, "must "):
		msg = fmt.Sprintf("%s %s", ff.label, reason)
	default:
		msg = fmt.Sprintf("%s: %s", ff.label, reason)
	}
	if ff.flags != "" {
		msg += " (" + ff.flags + ")"
	}
	return msg + "."
}
