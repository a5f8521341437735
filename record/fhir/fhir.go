package fhir

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/google/fhir/go/fhirversion"
	"github.com/google/fhir/go/jsonformat"
	"github.com/google/fhir/go/jsonformat/fhirvalidate"
	dtpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
	bcrpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
	"google.golang.org/protobuf/proto"
)

// Code systems and identifier systems the mapping uses. The identifier
// systems of record (see record.CanonicalIdentifier) map to these URIs;
// any other system of record that is a URI is used as it is, and one that
// is a plain name ("school-id") becomes IdentifierSystemPrefix+name.
const (
	// SystemATC is the WHO ATC classification, for MedicationRequest codes.
	SystemATC = "http://www.whocc.no/atc"
	// SystemLOINC is LOINC, for Observation codes.
	SystemLOINC = "http://loinc.org"
	// SystemICD10 is ICD-10, for Condition codes.
	SystemICD10 = "http://hl7.org/fhir/sid/icd-10"
	// SystemABHA is the ABHA number (India's ABDM health ID).
	SystemABHA = "https://healthid.ndhm.gov.in"
	// SystemAadhaar is the Aadhaar number (UIDAI).
	SystemAadhaar = "https://uidai.gov.in"
	// IdentifierSystemPrefix names the identifier systems that have no
	// public URI: national-id, clinic, phone and plain-named others.
	IdentifierSystemPrefix = "urn:chartsync:identifier:"
	// SystemUser and SystemDevice identify the users and devices named
	// in Provenance agents; SystemClinic the clinics in references to an
	// Organization (a patient's home clinic).
	SystemUser   = "urn:chartsync:user"
	SystemDevice = "urn:chartsync:device"
	SystemClinic = "urn:chartsync:clinic"
	// SystemResource is the system of an entry's external identifier
	// when it was imported from a FHIR resource that had no identifier:
	// the value is "Type/id".
	SystemResource = "urn:chartsync:fhir-resource"

	systemConditionClinical = "http://terminology.hl7.org/CodeSystem/condition-clinical"
	systemConditionVer      = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
	systemAllergyClinical   = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
	systemAllergyVer        = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
	systemInterpretation    = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
	systemObsCategory       = "http://terminology.hl7.org/CodeSystem/observation-category"
	systemActCode           = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
	systemSNOMED            = "http://snomed.info/sct"
	systemUCUM              = "http://unitsofmeasure.org"
	systemParticipantType   = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"

	// codeNoKnownAllergy is SNOMED CT's "no known allergy".
	codeNoKnownAllergy = "716186003"

	// Extensions of this mapping, for what FHIR R4 has no element for.
	extBase = "https://chartsync.github.io/fhir/StructureDefinition/"
	// ExtConflict is a complex extension on a resource: one per value
	// competing in an unsettled conflict (see the package doc).
	ExtConflict       = extBase + "conflict"
	extSeverity       = extBase + "allergy-severity"
	extNote           = extBase + "encounter-note"
	extAbnormalText   = extBase + "abnormal-text"
	extCriticalText   = extBase + "critical-text"
	extStatusReason   = extBase + "status-reason"
	extGuardian       = extBase + "guardian"
	extVillage        = extBase + "village"
	extNationalID     = extBase + "national-id"
	extDrugCode       = extBase + "drug-code"
	extPrescriberTime = extBase + "recorded"
)

// MaxBundleSize bounds the JSON a bundle may take; Decode refuses a larger
// one unread.
const MaxBundleSize = 16 << 20

// ErrMalformed is matched (errors.Is) by every error for input that is not
// a FHIR R4 Bundle this package can map: bad JSON, a resource R4
// validation refuses, a value out of its code system, two patients. The
// error is a *MalformedError.
var ErrMalformed = errors.New("fhir: malformed bundle")

// MalformedError says which resource of a bundle could not be read, and
// why.
type MalformedError struct {
	// Resource is "Type/id" (or the entry's position), empty for the
	// bundle itself.
	Resource string
	Reason   string
	Err      error
}

func (e *MalformedError) Error() string {
	s := "fhir: malformed bundle"
	if e.Resource != "" {
		s += ": " + e.Resource
	}
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Is matches ErrMalformed.
func (e *MalformedError) Is(target error) bool { return target == ErrMalformed }

// Unwrap returns the cause, if any.
func (e *MalformedError) Unwrap() error { return e.Err }

func malformed(res, format string, args ...any) error {
	return &MalformedError{Resource: res, Reason: fmt.Sprintf(format, args...)}
}

// Marshal renders a bundle as indented FHIR R4 JSON, after checking it
// with the library's R4 validation.
func Marshal(b *bcrpb.Bundle) ([]byte, error) {
	if err := Validate(b); err != nil {
		return nil, err
	}
	m, err := jsonformat.NewPrettyMarshaller(fhirversion.R4)
	if err != nil {
		return nil, fmt.Errorf("fhir marshaller: %w", err)
	}
	out, err := m.MarshalResource(b)
	if err != nil {
		return nil, fmt.Errorf("marshal bundle: %w", err)
	}
	return append(out, '\n'), nil
}

// Validate checks a resource (a bundle and every resource in it) with the
// library's R4 validation: required elements, cardinalities, primitive
// formats and references.
func Validate(res proto.Message) error {
	if err := fhirvalidate.Validate(res); err != nil {
		return fmt.Errorf("fhir r4 validation: %w", err)
	}
	return nil
}

// Unmarshal reads FHIR R4 JSON holding one Bundle, validated by the
// library. Any error matches ErrMalformed.
func Unmarshal(data []byte) (*bcrpb.Bundle, error) {
	if len(data) > MaxBundleSize {
		return nil, malformed("", "%d bytes, more than %d", len(data), MaxBundleSize)
	}
	u, err := jsonformat.NewUnmarshaller("UTC", fhirversion.R4)
	if err != nil {
		return nil, fmt.Errorf("fhir unmarshaller: %w", err)
	}
	u.MaxNestingDepth = 64
	msg, err := unmarshalSafely(u, data)
	if err != nil {
		return nil, &MalformedError{Reason: "not valid FHIR R4 JSON", Err: err}
	}
	cr, ok := msg.(*bcrpb.ContainedResource)
	if !ok || cr.GetBundle() == nil {
		return nil, malformed("", "not a Bundle")
	}
	return cr.GetBundle(), nil
}

func unmarshalSafely(u *jsonformat.Unmarshaller, data []byte) (msg proto.Message, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("the FHIR library gave up on this input: %v", r)
		}
	}()
	return u.Unmarshal(data)
}

// Small constructors of FHIR datatypes.

func fstr(s string) *dtpb.String {
	if s == "" {
		return nil
	}
	return &dtpb.String{Value: s}
}

func furi(s string) *dtpb.Uri { return &dtpb.Uri{Value: s} }

func fcode(s string) *dtpb.Code { return &dtpb.Code{Value: s} }

func fid(s string) *dtpb.Id { return &dtpb.Id{Value: s} }

func coding(system, code, display string) *dtpb.Coding {
	c := &dtpb.Coding{Code: fcode(code), Display: fstr(display)}
	if system != "" {
		c.System = furi(system)
	}
	return c
}

func concept(text string, codings ...*dtpb.Coding) *dtpb.CodeableConcept {
	return &dtpb.CodeableConcept{Text: fstr(text), Coding: codings}
}

func decimal(f float64) *dtpb.Decimal {
	return &dtpb.Decimal{Value: strconv.FormatFloat(f, 'f', -1, 64)}
}

func parseDecimal(d *dtpb.Decimal) (float64, bool) {
	if d == nil {
		return 0, false
	}
	f, err := strconv.ParseFloat(d.GetValue(), 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, false
	}
	return f, true
}

// instant and dateTime keep a time to the microsecond, written to the
// second when it has no fraction.
func instant(t time.Time) *dtpb.Instant {
	p := dtpb.Instant_MICROSECOND
	if t.Nanosecond() == 0 {
		p = dtpb.Instant_SECOND
	}
	return &dtpb.Instant{ValueUs: t.UnixMicro(), Timezone: "Z", Precision: p}
}

func dateTime(t time.Time) *dtpb.DateTime {
	p := dtpb.DateTime_MICROSECOND
	if t.Nanosecond() == 0 {
		p = dtpb.DateTime_SECOND
	}
	return &dtpb.DateTime{ValueUs: t.UnixMicro(), Timezone: "Z", Precision: p}
}

func fromDateTime(d *dtpb.DateTime) time.Time {
	if d == nil {
		return time.Time{}
	}
	return time.UnixMicro(d.GetValueUs()).UTC()
}

// day parses a record date, YYYY-MM-DD.
func day(s string) (time.Time, bool) {
	t, err := time.Parse(time.DateOnly, s)
	return t, err == nil
}

func dateTimeDay(s string) *dtpb.DateTime {
	t, ok := day(s)
	if !ok {
		return nil
	}
	return &dtpb.DateTime{ValueUs: t.UnixMicro(), Timezone: "UTC", Precision: dtpb.DateTime_DAY}
}

// dayOf gives the day of a date-time as YYYY-MM-DD in its own time zone.
func dayOf(d *dtpb.DateTime) string {
	if d == nil {
		return ""
	}
	return inZone(d.GetValueUs(), d.GetTimezone()).Format(time.DateOnly)
}

func inZone(us int64, tz string) time.Time {
	t := time.UnixMicro(us).UTC()
	if tz == "" || tz == "Z" || tz == "UTC" {
		return t
	}
	if loc, err := time.LoadLocation(tz); err == nil {
		return t.In(loc)
	}
	if len(tz) == 6 && (tz[0] == '+' || tz[0] == '-') {
		h, err1 := strconv.Atoi(tz[1:3])
		m, err2 := strconv.Atoi(tz[4:6])
		if err1 == nil && err2 == nil {
			off := (h*60 + m) * 60
			if tz[0] == '-' {
				off = -off
			}
			return t.In(time.FixedZone(tz, off))
		}
	}
	return t
}

// enumName turns a FHIR code into the name of its protobuf enum value
// ("entered-in-error" → "ENTERED_IN_ERROR").
func enumName(code string) string {
	return strings.ToUpper(strings.ReplaceAll(code, "-", "_"))
}

// codeName turns an enum value's name back into its FHIR code.
func codeName(name string) string {
	return strings.ToLower(strings.ReplaceAll(name, "_", "-"))
}

// enum finds the enum value of a code in a generated *_value map.
func enum[E ~int32](values map[string]int32, code string) (E, bool) {
	v, ok := values[enumName(code)]
	return E(v), ok && v != 0
}

func extString(url, v string) *dtpb.Extension {
	return &dtpb.Extension{Url: furi(url), Value: &dtpb.Extension_ValueX{
		Choice: &dtpb.Extension_ValueX_StringValue{StringValue: &dtpb.String{Value: v}}}}
}

// extStrings gives the string values of the extensions with url.
func extStrings(exts []*dtpb.Extension, url string) []string {
	var out []string
	for _, e := range exts {
		if e.GetUrl().GetValue() == url {
			out = append(out, e.GetValue().GetStringValue().GetValue())
		}
	}
	return out
}

func extFirst(exts []*dtpb.Extension, url string) string {
	if s := extStrings(exts, url); len(s) > 0 {
		return s[0]
	}
	return ""
}
