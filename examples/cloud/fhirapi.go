package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/google/fhir/go/fhirversion"
	"github.com/google/fhir/go/jsonformat"
	cpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/codes_go_proto"
	dtpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
	bcrpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
	oopb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/operation_outcome_go_proto"
	patpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/patient_go_proto"
	"google.golang.org/protobuf/proto"

	"github.com/chartsync/chartsync/audit"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/record/fhir"
	"github.com/chartsync/chartsync/record/identity"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/transport/httpsync"
)

// The cloud serves a read-only FHIR R4 API to authorised systems
// (systems.go) on the devices' HTTPS listener, beside /v1/sync:
//
//	GET /fhir/metadata                     the CapabilityStatement (no token needed)
//	GET /fhir/Patient?identifier=S|V&name=N a searchset Bundle of Patients
//	GET /fhir/Patient/{id}                 one Patient (a chart's)
//	GET /fhir/Patient/{id}/$everything     the chart's export (record/fhir), as a searchset
//
// Every other request is refused with an OperationOutcome: 401 (with
// WWW-Authenticate: Bearer) without a token the state knows and has not
// revoked, 405 for any method but GET and HEAD, 400 for a parameter this
// API does not take, 404 for an unknown chart or path. Every request but
// the metadata is written to the access log: the system's ID as the
// device, its name as the user, role fhirRole, each chart read (or "*"),
// and the request and its status as the detail.

// fhirPrefix is the path under which the FHIR API is served.
const fhirPrefix = "/fhir"

// fhirContentType is the media type of every answer of the FHIR API.
const fhirContentType = "application/fhir+json"

// fhirRole is the role the access log gives an authorised system.
const fhirRole = "fhir-system"

// anonymous is the access log's device for a request that named no
// system the state knows.
const anonymous = "0"

const (
	// fhirPageSize is the most Patients a search returns at once
	// (and _count's default).
	fhirPageSize = 50
	// maxFHIROffset bounds _offset.
	maxFHIROffset = 10000
	// maxIdentifierCandidates bounds the charts an identifier search
	// loads to compare identifiers.
	maxIdentifierCandidates = 200
	// maxFHIRConcurrent bounds the FHIR requests served at once, so that
	// they leave the replica to the devices' syncs.
	maxFHIRConcurrent = 4
	// maxParamLen bounds a search parameter's value.
	maxParamLen = 256
)

// fhirConfig configures the FHIR API.
type fhirConfig struct {
	Replica   *replica.Replica
	Systems   systemStore
	AccessLog httpsync.AccessLog
	Logger    *slog.Logger // nil: discard
}

// fhirAPI is the FHIR API's http.Handler; safe for concurrent use.
type fhirAPI struct {
	cfg        fhirConfig
	log        *slog.Logger
	slots      chan struct{}
	marshal    *jsonformat.Marshaller
	capability []byte
}

func newFHIRAPI(cfg fhirConfig) (*fhirAPI, error) {
	if cfg.Replica == nil || cfg.Systems == nil || cfg.AccessLog == nil {
		return nil, errors.New("fhir api: a replica, the systems and an access log are required")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := jsonformat.NewPrettyMarshaller(fhirversion.R4)
	if err != nil {
		return nil, fmt.Errorf("fhir api: %w", err)
	}
	a := &fhirAPI{cfg: cfg, log: log, slots: make(chan struct{}, maxFHIRConcurrent), marshal: m}
	if a.capability, err = capabilityStatement(m); err != nil {
		return nil, fmt.Errorf("fhir api: %w", err)
	}
	return a, nil
}

// withFHIR routes the FHIR API's paths to api and everything else to the
// devices' handler, untouched.
func withFHIR(devices http.Handler, api *fhirAPI) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == fhirPrefix || strings.HasPrefix(r.URL.Path, fhirPrefix+"/") {
			api.ServeHTTP(w, r)
			return
		}
		devices.ServeHTTP(w, r)
	})
}

// capabilityJSON is what the API serves, and nothing else: read and
// search of Patient, its two search parameters, and $everything.
const capabilityJSON = `{
  "resourceType": "CapabilityStatement",
  "status": "active",
  "date": "2026-03-01",
  "publisher": "chartsync",
  "kind": "instance",
  "software": {"name": "chartsync cloud"},
  "implementation": {"description": "chartsync cloud: a read-only FHIR R4 API to the patient charts the cloud replica holds"},
  "fhirVersion": "4.0.1",
  "format": ["application/fhir+json", "json"],
  "rest": [{
    "mode": "server",
    "documentation": "Read-only. Searches return at most 50 Patients a page (_count, _offset), with the total.",
    "security": {
      "cors": false,
      "description": "Every request but GET /metadata carries Authorization: Bearer TOKEN, a token the cloud's operator issued to the system (cloud systems add), over TLS only."
    },
    "resource": [{
      "type": "Patient",
      "interaction": [{"code": "read"}, {"code": "search-type"}],
      "versioning": "no-version",
      "readHistory": false,
      "updateCreate": false,
      "conditionalCreate": false,
      "conditionalRead": "not-supported",
      "conditionalUpdate": false,
      "conditionalDelete": "not-supported",
      "searchParam": [
        {"name": "identifier", "definition": "http://hl7.org/fhir/SearchParameter/Patient-identifier", "type": "token",
         "documentation": "system|value or value, matched exactly as the Patient carries it; the value must hold a digit"},
        {"name": "name", "definition": "http://hl7.org/fhir/SearchParameter/Patient-name", "type": "string",
         "documentation": "words of the given and family names in any order, case and accents, first letters (three or more) and common spelling variants"}
      ],
      "operation": [{"name": "everything", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"}]
    }]
  }]
}`

// capabilityStatement reads capabilityJSON with the library's validating
// unmarshaller and renders it.
func capabilityStatement(m *jsonformat.Marshaller) ([]byte, error) {
	u, err := jsonformat.NewUnmarshaller("UTC", fhirversion.R4)
	if err != nil {
		return nil, err
	}
	msg, err := u.Unmarshal([]byte(capabilityJSON))
	if err != nil {
		return nil, fmt.Errorf("capability statement: %w", err)
	}
	cs := msg.(*bcrpb.ContainedResource).GetCapabilityStatement()
	if cs == nil {
		return nil, errors.New("capability statement: not a CapabilityStatement")
	}
	return m.MarshalResource(cs)
}

// fhirError is a request the API refuses: its status, an OperationOutcome
// issue code and what to tell the caller.
type fhirError struct {
	Status int
	Code   cpb.IssueTypeCode_Value
	Msg    string
}

func (e *fhirError) Error() string { return e.Msg }

func badRequest(format string, args ...any) *fhirError {
	return &fhirError{Status: http.StatusBadRequest, Code: cpb.IssueTypeCode_INVALID, Msg: fmt.Sprintf(format, args...)}
}

func notSupported(format string, args ...any) *fhirError {
	return &fhirError{Status: http.StatusBadRequest, Code: cpb.IssueTypeCode_NOT_SUPPORTED, Msg: fmt.Sprintf(format, args...)}
}

// routeKind is what a FHIR path asks for.
type routeKind int

const (
	routeMetadata routeKind = iota + 1
	routeSearch
	routeRead
	routeEverything
)

// fhirRoute is a parsed FHIR path.
type fhirRoute struct {
	Kind routeKind
	ID   string // the Patient's id, for routeRead and routeEverything
}

// reFHIRID is a FHIR resource id.
var reFHIRID = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)

// parseFHIRPath parses a path under fhirPrefix.
func parseFHIRPath(path string) (fhirRoute, *fhirError) {
	rest, ok := strings.CutPrefix(path, fhirPrefix+"/")
	if !ok {
		return fhirRoute{}, &fhirError{Status: http.StatusNotFound, Code: cpb.IssueTypeCode_NOT_FOUND,
			Msg: "this is a FHIR API: GET " + fhirPrefix + "/metadata says what it serves"}
	}
	parts := strings.Split(rest, "/")
	switch {
	case len(parts) == 1 && parts[0] == "metadata":
		return fhirRoute{Kind: routeMetadata}, nil
	case len(parts) == 1 && parts[0] == "Patient":
		return fhirRoute{Kind: routeSearch}, nil
	case len(parts) >= 2 && len(parts) <= 3 && parts[0] == "Patient":
		if !reFHIRID.MatchString(parts[1]) {
			return fhirRoute{}, badRequest("%q is not a FHIR resource id (1 to 64 letters, digits, '-' and '.')", truncateText(parts[1], 80))
		}
		if len(parts) == 2 {
			return fhirRoute{Kind: routeRead, ID: parts[1]}, nil
		}
		if parts[2] == "$everything" {
			return fhirRoute{Kind: routeEverything, ID: parts[1]}, nil
		}
	}
	return fhirRoute{}, &fhirError{Status: http.StatusNotFound, Code: cpb.IssueTypeCode_NOT_SUPPORTED,
		Msg: "not served here: this API serves Patient read, search and $everything (GET " + fhirPrefix + "/metadata)"}
}

// tokenParam is a token search parameter: system|value, |value (no
// system) or value (any system).
type tokenParam struct {
	System    string
	HasSystem bool // a system was given ("" for "|value")
	Value     string
}

// patientSearch is a parsed GET /fhir/Patient query.
type patientSearch struct {
	Identifier *tokenParam
	Name       string
	Count      int // Patients a page
	Offset     int // Patients skipped
}

// parseSearchQuery parses the query of a Patient search. It takes
// identifier and name (at least one, each at most once), _count (0 to
// 50; more is taken as 50), _offset and _format (JSON only); anything
// else, a modifier or a list of values (OR) among them, is refused.
func parseSearchQuery(rawQuery string) (patientSearch, *fhirError) {
	s := patientSearch{Count: fhirPageSize}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return s, badRequest("the query does not parse: %v", err)
	}
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range q {
			if !yield(k) {
				return
			}
		}
	}) {
		vs := q[k]
		if len(vs) > 1 {
			return s, notSupported("%s is given %d times; give it once", truncateText(k, 40), len(vs))
		}
		v := vs[0]
		if len(v) > maxParamLen {
			return s, badRequest("%s is %d bytes long, more than %d", truncateText(k, 40), len(v), maxParamLen)
		}
		switch k {
		case "identifier":
			t, ferr := parseToken(v)
			if ferr != nil {
				return s, ferr
			}
			s.Identifier = &t
		case "name":
			if strings.TrimSpace(v) == "" {
				return s, badRequest("name is empty")
			}
			if hasUnescapedComma(v) {
				return s, notSupported("name lists several values (OR): search for each")
			}
			s.Name = unescapeSearch(v)
			if len(identity.ParseQuery(s.Name).Terms) == 0 {
				return s, badRequest("name %q holds nothing to search for", truncateText(v, 80))
			}
		case "_count":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return s, badRequest("_count %q is not a whole number of 0 or more", truncateText(v, 40))
			}
			s.Count = min(n, fhirPageSize)
		case "_offset":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > maxFHIROffset {
				return s, badRequest("_offset %q is not a whole number from 0 to %d", truncateText(v, 40), maxFHIROffset)
			}
			s.Offset = n
		case "_format":
			if !jsonFormat(v) {
				return s, &fhirError{Status: http.StatusNotAcceptable, Code: cpb.IssueTypeCode_NOT_SUPPORTED,
					Msg: fmt.Sprintf("_format %q: this API answers in JSON (application/fhir+json) only", truncateText(v, 40))}
			}
		default:
			return s, notSupported("search parameter %q is not supported: use identifier, name, _count or _offset", truncateText(k, 40))
		}
	}
	if s.Identifier == nil && s.Name == "" {
		return s, badRequest("search by identifier (system|value) or name, or both")
	}
	return s, nil
}

// jsonFormat reports whether a _format value asks for JSON.
func jsonFormat(v string) bool {
	mt, _, _ := strings.Cut(v, ";")
	switch strings.ToLower(strings.TrimSpace(mt)) {
	case "json", "application/json", "application/fhir+json":
		return true
	}
	return false
}

// parseToken parses a token parameter's value, with FHIR's escapes (\|,
// \, \$ and \\).
func parseToken(v string) (tokenParam, *fhirError) {
	if hasUnescapedComma(v) {
		return tokenParam{}, notSupported("identifier lists several values (OR): search for each")
	}
	var t tokenParam
	var cur strings.Builder
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\\':
			if i+1 == len(v) {
				return tokenParam{}, badRequest("identifier ends in a lone backslash")
			}
			i++
			cur.WriteByte(v[i])
		case c == '|' && !t.HasSystem:
			t.HasSystem, t.System = true, cur.String()
			cur.Reset()
		case c == '|':
			return tokenParam{}, badRequest("identifier has more than one '|': give system|value (escape a '|' of the value as \\|)")
		default:
			cur.WriteByte(c)
		}
	}
	t.Value = cur.String()
	if t.Value == "" {
		return tokenParam{}, notSupported("identifier needs a value: system| (every identifier of a system) is not supported")
	}
	return t, nil
}

// hasUnescapedComma reports whether v separates values with a comma.
func hasUnescapedComma(v string) bool {
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '\\':
			i++
		case ',':
			return true
		}
	}
	return false
}

// unescapeSearch removes FHIR's search escapes from a string value.
func unescapeSearch(v string) string {
	if !strings.Contains(v, `\`) {
		return v
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] == '\\' && i+1 < len(v) {
			i++
		}
		b.WriteByte(v[i])
	}
	return b.String()
}

// truncateText cuts s to at most n bytes, at a rune boundary.
func truncateText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }

// Errors of authentication.
var (
	errNoToken      = errors.New("no bearer token")
	errBadToken     = errors.New("the bearer token is not one this cloud issued")
	errRevokedToken = errors.New("the system's token was revoked")
	errPlainHTTP    = errors.New("a token travels over TLS only")
)

// authenticate finds the system whose token the request carries. A
// revoked system is returned with errRevokedToken.
func (a *fhirAPI) authenticate(r *http.Request) (*system, error) {
	if r.TLS == nil {
		return nil, errPlainHTTP
	}
	hs := r.Header.Values("Authorization")
	if len(hs) == 0 {
		return nil, errNoToken
	}
	if len(hs) > 1 {
		return nil, fmt.Errorf("%w: more than one Authorization header", errBadToken)
	}
	scheme, token, _ := strings.Cut(hs[0], " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return nil, fmt.Errorf("%w: use Authorization: Bearer TOKEN", errBadToken)
	}
	token = strings.TrimSpace(token)
	if !wellFormedToken(token) {
		return nil, errBadToken
	}
	s, err := a.cfg.Systems.SystemByToken(r.Context(), hashToken(token))
	if errors.Is(err, errNoSystem) {
		return nil, errBadToken
	}
	if err != nil {
		return nil, err
	}
	if !s.Revoked.IsZero() {
		return &s, errRevokedToken
	}
	return &s, nil
}

// fhirAnswer is what a request is answered, and what the access log is
// told of it.
type fhirAnswer struct {
	status int
	body   []byte
	charts []string // the charts read (200) or asked for (refused)
	note   string
}

// ServeHTTP implements http.Handler.
func (a *fhirAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	read := r.Method == http.MethodGet || r.Method == http.MethodHead
	route, rerr := parseFHIRPath(r.URL.Path)
	if rerr == nil && route.Kind == routeMetadata {
		if !read {
			h.Set("Allow", "GET, HEAD")
			a.write(w, http.StatusMethodNotAllowed, a.outcome(cpb.IssueTypeCode_NOT_SUPPORTED, "this API is read-only: use GET"))
			return
		}
		a.write(w, http.StatusOK, a.capability)
		return
	}

	sys, aerr := a.authenticate(r)
	var ans fhirAnswer
	switch {
	case !read:
		h.Set("Allow", "GET, HEAD")
		ans = a.refusal(&fhirError{Status: http.StatusMethodNotAllowed, Code: cpb.IssueTypeCode_NOT_SUPPORTED,
			Msg: r.Method + " is not served: this API is read-only (GET)"})
	case aerr != nil && (errors.Is(aerr, errNoToken) || errors.Is(aerr, errBadToken) || errors.Is(aerr, errRevokedToken) || errors.Is(aerr, errPlainHTTP)):
		challenge := `Bearer realm="chartsync"`
		if !errors.Is(aerr, errNoToken) {
			challenge += `, error="invalid_token"`
		}
		h.Set("WWW-Authenticate", challenge)
		code := cpb.IssueTypeCode_LOGIN
		if errors.Is(aerr, errRevokedToken) {
			code = cpb.IssueTypeCode_EXPIRED
		}
		ans = a.refusal(&fhirError{Status: http.StatusUnauthorized, Code: code, Msg: aerr.Error() +
			"; send Authorization: Bearer TOKEN with a token the cloud's operator issued (cloud systems add)"})
	case aerr != nil:
		a.log.Warn("fhir: cannot check a token", "err", aerr)
		h.Set("Retry-After", "5")
		ans = a.refusal(&fhirError{Status: http.StatusServiceUnavailable, Code: cpb.IssueTypeCode_TRANSIENT,
			Msg: "the cloud cannot check tokens just now; try again shortly"})
	case rerr != nil:
		ans = a.refusal(rerr)
	default:
		select {
		case a.slots <- struct{}{}:
			ans = a.serve(r, route)
			<-a.slots
		case <-r.Context().Done():
			return
		}
	}
	if ans.status == http.StatusNotFound && route.ID != "" {
		ans.charts = []string{route.ID}
	}
	if err := a.record(r, sys, ans); err != nil {
		a.log.Error("fhir: access log unavailable", "err", err)
		if ans.status == http.StatusOK {
			ans = a.refusal(&fhirError{Status: http.StatusInternalServerError, Code: cpb.IssueTypeCode_EXCEPTION,
				Msg: "the cloud cannot record this access just now; nothing was read"})
		}
	}
	a.write(w, ans.status, ans.body)
	name := ""
	if sys != nil {
		name = sys.Name
	}
	a.log.Info("fhir", "system", name, "method", r.Method, "path", r.URL.Path, "status", ans.status,
		"charts", len(ans.charts), "duration", time.Since(start))
}

func (a *fhirAPI) write(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", fhirContentType)
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// refusal answers a refused request with an OperationOutcome.
func (a *fhirAPI) refusal(e *fhirError) fhirAnswer {
	return fhirAnswer{status: e.Status, body: a.outcome(e.Code, e.Msg), note: e.Msg}
}

// outcome renders an OperationOutcome of one error.
func (a *fhirAPI) outcome(code cpb.IssueTypeCode_Value, msg string) []byte {
	oo := &oopb.OperationOutcome{Issue: []*oopb.OperationOutcome_Issue{{
		Severity:    &oopb.OperationOutcome_Issue_SeverityCode{Value: cpb.IssueSeverityCode_ERROR},
		Code:        &oopb.OperationOutcome_Issue_CodeType{Value: code},
		Diagnostics: &dtpb.String{Value: strings.ToValidUTF8(msg, "?")},
	}}}
	out, err := a.marshal.MarshalResource(oo)
	if err != nil {
		// Cannot happen for this resource; answer something FHIR still.
		return []byte(`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"exception"}]}`)
	}
	return out
}

// serve answers an authenticated request for route.
func (a *fhirAPI) serve(r *http.Request, route fhirRoute) fhirAnswer {
	ctx := r.Context()
	var ans fhirAnswer
	var err error
	switch route.Kind {
	case routeSearch:
		ans, err = a.search(ctx, r)
	case routeRead, routeEverything:
		if r.URL.RawQuery != "" {
			return a.refusal(notSupported("this request takes no parameters"))
		}
		ans, err = a.readChart(ctx, r, route)
	}
	var fe *fhirError
	switch {
	case errors.As(err, &fe):
		return a.refusal(fe)
	case errors.Is(err, replica.ErrTooManyMatches):
		return a.refusal(&fhirError{Status: http.StatusBadRequest, Code: cpb.IssueTypeCode_TOO_COSTLY,
			Msg: "too many charts match: give more of the name, or an identifier"})
	case err != nil:
		a.log.Error("fhir: request failed", "path", r.URL.Path, "err", err)
		return a.refusal(&fhirError{Status: http.StatusInternalServerError, Code: cpb.IssueTypeCode_EXCEPTION,
			Msg: "the cloud could not answer this request"})
	}
	return ans
}

// baseURL is the API's base as the request reached it.
func baseURL(r *http.Request) string {
	host := r.Host
	if !reHost.MatchString(host) {
		host = "localhost"
	}
	return "https://" + host + fhirPrefix
}

var reHost = regexp.MustCompile(`^[A-Za-z0-9.\-]{1,253}(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]{2,45}\](:[0-9]{1,5})?$`)

// exportChart exports the chart id's view; a chart not held gives a 404.
func (a *fhirAPI) exportChart(ctx context.Context, id string) (*bcrpb.Bundle, record.View, error) {
	v, err := a.cfg.Replica.Chart(ctx, id)
	if errors.Is(err, replica.ErrNotFound) {
		return nil, v, &fhirError{Status: http.StatusNotFound, Code: cpb.IssueTypeCode_NOT_FOUND,
			Msg: fmt.Sprintf("no Patient/%s here", id)}
	}
	if err != nil {
		return nil, v, err
	}
	b, err := fhir.Export(v)
	if err != nil {
		return nil, v, err
	}
	if len(b.GetEntry()) == 0 || b.GetEntry()[0].GetResource().GetPatient() == nil {
		return nil, v, fmt.Errorf("export of chart %s has no Patient first", id)
	}
	return b, v, nil
}

// readChart answers GET Patient/{id} and Patient/{id}/$everything.
func (a *fhirAPI) readChart(ctx context.Context, r *http.Request, route fhirRoute) (fhirAnswer, error) {
	b, _, err := a.exportChart(ctx, route.ID)
	if err != nil {
		return fhirAnswer{}, err
	}
	if route.Kind == routeRead {
		out, err := a.marshal.MarshalResource(b.GetEntry()[0].GetResource().GetPatient())
		if err != nil {
			return fhirAnswer{}, fmt.Errorf("marshal Patient/%s: %w", route.ID, err)
		}
		return fhirAnswer{status: http.StatusOK, body: out, charts: []string{route.ID}, note: "Patient"}, nil
	}
	// $everything answers a searchset: the export's entries with their
	// full URLs, the Patient a match and the rest included.
	base := baseURL(r)
	b.Type = &bcrpb.Bundle_TypeCode{Value: cpb.BundleTypeCode_SEARCHSET}
	b.Total = &dtpb.UnsignedInt{Value: uint32(len(b.GetEntry()))}
	b.Link = []*bcrpb.Bundle_Link{{Relation: &dtpb.String{Value: "self"}, Url: &dtpb.Uri{Value: base + "/Patient/" + route.ID + "/$everything"}}}
	for i, e := range b.GetEntry() {
		typ, id := resourceTypeAndID(e.GetResource())
		if typ == "" || id == "" {
			return fhirAnswer{}, fmt.Errorf("export of chart %s: entry %d has no type or id", route.ID, i)
		}
		e.FullUrl = &dtpb.Uri{Value: base + "/" + typ + "/" + id}
		mode := cpb.SearchEntryModeCode_INCLUDE
		if i == 0 {
			mode = cpb.SearchEntryModeCode_MATCH
		}
		e.Search = &bcrpb.Bundle_Entry_Search{Mode: &bcrpb.Bundle_Entry_Search_ModeCode{Value: mode}}
	}
	out, err := fhir.Marshal(b)
	if err != nil {
		return fhirAnswer{}, fmt.Errorf("marshal the export of chart %s: %w", route.ID, err)
	}
	return fhirAnswer{status: http.StatusOK, body: out, charts: []string{route.ID},
		note: fmt.Sprintf("$everything, %d resources", len(b.GetEntry()))}, nil
}

// resourceTypeAndID returns a contained resource's type and id.
func resourceTypeAndID(cr *bcrpb.ContainedResource) (typ, id string) {
	m := cr.ProtoReflect()
	fd := m.WhichOneof(m.Descriptor().Oneofs().ByName("oneof_resource"))
	if fd == nil {
		return "", ""
	}
	res := m.Get(fd).Message()
	idf := res.Descriptor().Fields().ByName("id")
	if idf == nil || !res.Has(idf) {
		return string(res.Descriptor().Name()), ""
	}
	idm, ok := res.Get(idf).Message().Interface().(*dtpb.Id)
	if !ok {
		return string(res.Descriptor().Name()), ""
	}
	return string(res.Descriptor().Name()), idm.GetValue()
}

// found is a chart a search matched.
type found struct {
	id      string
	patient *patpb.Patient // nil until loaded
}

// search answers GET Patient?....
func (a *fhirAPI) search(ctx context.Context, r *http.Request) (fhirAnswer, error) {
	q, ferr := parseSearchQuery(r.URL.RawQuery)
	if ferr != nil {
		return fhirAnswer{}, ferr
	}
	var matches []found
	var err error
	if q.Identifier != nil {
		matches, err = a.byIdentifier(ctx, q)
	} else {
		matches, err = a.byName(ctx, q.Name)
	}
	if err != nil {
		return fhirAnswer{}, err
	}
	total := len(matches)
	page := matches[min(q.Offset, total):min(q.Offset+q.Count, total)]
	base := baseURL(r)
	b := &bcrpb.Bundle{
		Type:  &bcrpb.Bundle_TypeCode{Value: cpb.BundleTypeCode_SEARCHSET},
		Total: &dtpb.UnsignedInt{Value: uint32(total)},
		Link:  []*bcrpb.Bundle_Link{{Relation: &dtpb.String{Value: "self"}, Url: &dtpb.Uri{Value: pageURL(base, q, q.Offset)}}},
	}
	if q.Offset+len(page) < total && q.Count > 0 {
		b.Link = append(b.Link, &bcrpb.Bundle_Link{Relation: &dtpb.String{Value: "next"}, Url: &dtpb.Uri{Value: pageURL(base, q, q.Offset+q.Count)}})
	}
	charts := make([]string, 0, len(page))
	for _, f := range page {
		p := f.patient
		if p == nil {
			eb, _, err := a.exportChart(ctx, f.id)
			var fe *fhirError
			if errors.As(err, &fe) && fe.Status == http.StatusNotFound {
				continue // in the index, its registration not arrived
			}
			if err != nil {
				return fhirAnswer{}, err
			}
			p = eb.GetEntry()[0].GetResource().GetPatient()
		}
		charts = append(charts, f.id)
		b.Entry = append(b.Entry, &bcrpb.Bundle_Entry{
			FullUrl:  &dtpb.Uri{Value: base + "/Patient/" + f.id},
			Resource: &bcrpb.ContainedResource{OneofResource: &bcrpb.ContainedResource_Patient{Patient: p}},
			Search:   &bcrpb.Bundle_Entry_Search{Mode: &bcrpb.Bundle_Entry_Search_ModeCode{Value: cpb.SearchEntryModeCode_MATCH}},
		})
	}
	out, err := fhir.Marshal(b)
	if err != nil {
		return fhirAnswer{}, fmt.Errorf("marshal a searchset: %w", err)
	}
	return fhirAnswer{status: http.StatusOK, body: out, charts: charts,
		note: fmt.Sprintf("search, %d of %d", len(b.Entry), total)}, nil
}

// pageURL is the URL of the page of q from offset.
func pageURL(base string, q patientSearch, offset int) string {
	v := url.Values{}
	if t := q.Identifier; t != nil {
		esc := func(s string) string {
			return strings.NewReplacer(`\`, `\\`, `|`, `\|`, `,`, `\,`, `$`, `\$`).Replace(s)
		}
		if t.HasSystem {
			v.Set("identifier", esc(t.System)+"|"+esc(t.Value))
		} else {
			v.Set("identifier", esc(t.Value))
		}
	}
	if q.Name != "" {
		v.Set("name", strings.NewReplacer(`\`, `\\`, `,`, `\,`, `$`, `\$`, `|`, `\|`).Replace(q.Name))
	}
	v.Set("_count", strconv.Itoa(q.Count))
	if offset > 0 {
		v.Set("_offset", strconv.Itoa(offset))
	}
	return base + "/Patient?" + v.Encode()
}

// nameMatches reports whether the query q finds a patient by the given
// and family names alone (Replica.Search also matches the village).
func nameMatches(q identity.Query, given, family string) bool {
	_, ok := q.Match(record.Patient{GivenName: given, FamilyName: family})
	return ok
}

// byName finds charts by name through Replica.Search, best match first.
func (a *fhirAPI) byName(ctx context.Context, name string) ([]found, error) {
	hits, err := a.cfg.Replica.Search(ctx, name, 0)
	if err != nil {
		return nil, err
	}
	q := identity.ParseQuery(name)
	out := make([]found, 0, len(hits))
	for _, h := range hits {
		if nameMatches(q, h.GivenName, h.FamilyName) {
			out = append(out, found{id: h.ID})
		}
	}
	return out, nil
}

// byIdentifier finds the charts whose Patient carries the identifier
// exactly (and, with a name, whose names match it), by chart ID. The
// store's index finds the candidates by the identifier's letters and
// digits (Replica.Search); each is loaded and its Patient compared.
func (a *fhirAPI) byIdentifier(ctx context.Context, q patientSearch) ([]found, error) {
	t := q.Identifier
	key := identity.Compact(t.Value)
	if len(key) < 3 || !strings.ContainsAny(key, "0123456789") {
		return nil, notSupported("identifier %q: this cloud finds identifiers by their digits, and this value has none (or fewer than 3 letters and digits)", truncateText(t.Value, 80))
	}
	hits, err := a.cfg.Replica.Search(ctx, key, maxIdentifierCandidates+1)
	if err != nil {
		return nil, err
	}
	if len(hits) > maxIdentifierCandidates {
		return nil, &fhirError{Status: http.StatusBadRequest, Code: cpb.IssueTypeCode_TOO_COSTLY,
			Msg: fmt.Sprintf("more than %d charts share identifiers like %q: give its system, or a name too", maxIdentifierCandidates, truncateText(t.Value, 80))}
	}
	var nq identity.Query
	if q.Name != "" {
		nq = identity.ParseQuery(q.Name)
	}
	var out []found
	for _, h := range hits {
		b, v, err := a.exportChart(ctx, h.ID)
		var fe *fhirError
		if errors.As(err, &fe) && fe.Status == http.StatusNotFound {
			continue
		}
		if err != nil {
			return nil, err
		}
		p := b.GetEntry()[0].GetResource().GetPatient()
		if !carries(p, t) || (q.Name != "" && !nameMatches(nq, v.Patient.GivenName, v.Patient.FamilyName)) {
			continue
		}
		out = append(out, found{id: h.ID, patient: proto.Clone(p).(*patpb.Patient)})
	}
	slices.SortFunc(out, func(x, y found) int { return strings.Compare(x.id, y.id) })
	return out, nil
}

// carries reports whether the Patient has an identifier matching t
// exactly, as FHIR matches a token: the same system (if t names one,
// none for "|value") and the same value.
func carries(p *patpb.Patient, t *tokenParam) bool {
	for _, id := range p.GetIdentifier() {
		if id.GetValue().GetValue() != t.Value {
			continue
		}
		if !t.HasSystem || id.GetSystem().GetValue() == t.System {
			return true
		}
	}
	return false
}

// logText replaces what the access log refuses in a text (invalid
// UTF-8, control and bidirectional formatting characters).
func logText(s string) string {
	return strings.Map(func(c rune) rune {
		if unicode.IsControl(c) || c == '\u2028' || c == '\u2029' || c >= '\u202a' && c <= '\u202e' || c >= '\u2066' && c <= '\u2069' {
			return ' '
		}
		return c
	}, strings.ToValidUTF8(s, "?"))
}

// record writes the request to the access log: one entry per chart read
// or asked for, or one for "*".
func (a *fhirAPI) record(r *http.Request, sys *system, ans fhirAnswer) error {
	dev, name := anonymous, ""
	if sys != nil {
		dev, name = sys.ID, sys.Name
	}
	what := r.Method + " " + r.URL.Path
	if r.URL.RawQuery != "" {
		what += "?" + r.URL.RawQuery
	}
	detail := fmt.Sprintf("fhir %s: %d", truncateText(what, 1024), ans.status)
	if ans.note != "" {
		detail += " " + ans.note
	}
	detail = logText(truncateText(detail, audit.MaxDetailLen-8))
	action := audit.Read
	if ans.status != http.StatusOK {
		action = audit.Refused
	}
	charts := ans.charts
	if len(charts) == 0 {
		charts = []string{"*"}
	}
	entries := make([]audit.Entry, len(charts))
	for i, c := range charts {
		entries[i] = audit.Entry{Action: action, Device: dev, User: name, Role: fhirRole, Chart: c, Detail: detail}
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
	defer cancel()
	return a.cfg.AccessLog.Append(ctx, entries...)
}
