package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/fhir/go/fhirversion"
	"github.com/google/fhir/go/jsonformat"
	"github.com/google/fhir/go/jsonformat/fhirvalidate"
	bcrpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/record/fhir"
	"github.com/chartsync/chartsync/replica/store/postgres/pgtest"
)

// fhirCloud is a cloud serving its FHIR API over HTTPS on 127.0.0.1: one
// node on a data directory, or two on one PostgreSQL database.
type fhirCloud struct {
	at    []string // the command-line arguments that name its state
	addrs []string // where its nodes listen
	roots *x509.CertPool
}

func startFHIRCloud(t *testing.T, backend string) fhirCloud {
	t.Helper()
	var c fhirCloud
	switch backend {
	case "files":
		dir := filepath.Join(t.TempDir(), "cloud-data")
		c.at = []string{"-dir", dir}
		addr, _ := server(t, dir)
		c.addrs = []string{addr}
		pem, err := os.ReadFile(filepath.Join(dir, dirCA, "ca.crt"))
		require.NoError(t, err)
		c.roots = x509.NewCertPool()
		require.True(t, c.roots.AppendCertsFromPEM(pem))
	case "postgres":
		conn, schema := pgtest.ConnString(t), pgtest.Schema(t)
		keyFile := filepath.Join(t.TempDir(), "operator.key")
		c.at = []string{"-db", conn, "-db-schema", schema, "-key-file", keyFile}
		code, _, stderr := cloud(t, append([]string{"init"}, c.at...)...)
		require.Equal(t, 0, code, "init: %s", stderr)
		for range 2 {
			addr, _ := serverWith(t, append([]string{"serve", "-addr", "127.0.0.1:0", "-dev-cert"}, c.at...)...)
			c.addrs = append(c.addrs, addr)
		}
		key, err := loadOperatorKey(keyFile)
		require.NoError(t, err)
		st, err := openPGState(context.Background(), conn, schema, key)
		require.NoError(t, err)
		defer st.Close()
		ca, _, err := st.DeviceCA(context.Background())
		require.NoError(t, err)
		c.roots = ca.Pool()
	}
	return c
}

// fhirClient makes requests of a cloud without a device certificate, as
// an external system does, and remembers them.
type fhirClient struct {
	t     *testing.T
	http  *http.Client
	asked []string // "METHOD PATH?QUERY" of every request but the metadata's
}

func newFHIRClient(t *testing.T, roots *x509.CertPool) *fhirClient {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS13}}
	t.Cleanup(tr.CloseIdleConnections)
	return &fhirClient{t: t, http: &http.Client{Transport: tr}}
}

type fhirReply struct {
	status int
	header http.Header
	body   []byte
}

func (c *fhirClient) do(method, addr, pathQuery, token string) fhirReply {
	c.t.Helper()
	req, err := http.NewRequest(method, "https://"+addr+pathQuery, nil)
	require.NoError(c.t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.http.Do(req)
	require.NoError(c.t, err, "%s %s", method, pathQuery)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(c.t, err)
	if !strings.HasPrefix(pathQuery, "/fhir/metadata") && strings.HasPrefix(pathQuery, "/fhir") {
		c.asked = append(c.asked, method+" "+pathQuery)
	}
	return fhirReply{resp.StatusCode, resp.Header, body}
}

func (c *fhirClient) get(addr, pathQuery, token string) fhirReply {
	c.t.Helper()
	return c.do(http.MethodGet, addr, pathQuery, token)
}

// validFHIR reads an answer with the library's validating R4
// unmarshaller and checks it with its R4 validation too, as the export's
// tests do.
func validFHIR(t *testing.T, r fhirReply) *bcrpb.ContainedResource {
	t.Helper()
	assert.Equal(t, fhirContentType, r.header.Get("Content-Type"), "every answer is FHIR JSON")
	u, err := jsonformat.NewUnmarshaller("UTC", fhirversion.R4)
	require.NoError(t, err)
	msg, err := u.Unmarshal(r.body)
	require.NoError(t, err, "the answer is valid FHIR R4 JSON:\n%s", r.body)
	cr, ok := msg.(*bcrpb.ContainedResource)
	require.True(t, ok)
	require.NoError(t, fhirvalidate.Validate(cr), "the answer passes R4 validation")
	return cr
}

// outcomeCode checks an error answer: an OperationOutcome with status.
func outcomeCode(t *testing.T, r fhirReply, status int) string {
	t.Helper()
	require.Equal(t, status, r.status, "%s", r.body)
	oo := validFHIR(t, r).GetOperationOutcome()
	require.NotNil(t, oo, "an error is an OperationOutcome: %s", r.body)
	require.NotEmpty(t, oo.GetIssue())
	assert.NotEmpty(t, oo.GetIssue()[0].GetDiagnostics().GetValue(), "the outcome says what went wrong")
	var doc struct {
		Issue []struct{ Code string } `json:"issue"`
	}
	require.NoError(t, json.Unmarshal(r.body, &doc))
	return doc.Issue[0].Code
}

// auditLine is an entry of the access log as "cloud audit" exports it.
type auditLine struct{ Action, Device, User, Role, Chart, Detail string }

func patientIDs(t *testing.T, b *bcrpb.Bundle) []string {
	t.Helper()
	var ids []string
	for _, e := range b.GetEntry() {
		p := e.GetResource().GetPatient()
		require.NotNil(t, p, "a search answers Patients only")
		ids = append(ids, p.GetId().GetValue())
		assert.True(t, strings.HasSuffix(e.GetFullUrl().GetValue(), "/fhir/Patient/"+p.GetId().GetValue()), "each entry's full URL is the Patient's")
	}
	return ids
}

// TestFHIRAPI serves the FHIR API over HTTPS from a cloud that devices
// synced charts to, on both kinds of state: an authorised system finds
// charts by identifier and by name, reads a Patient and a chart's
// $everything, all valid R4; everything else is refused with an
// OperationOutcome and the right status; a revoked token is refused at
// once on every node; devices still need their certificate to sync; and
// the access log holds every request.
func TestFHIRAPI(t *testing.T) {
	for _, backend := range []string{"files", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			c := startFHIRCloud(t, backend)
			addr := c.addrs[0]
			tablet, cred := enrolledDevice(t, "kamuga-tablet-1", "kamuga", c.at)
			clerk := record.Author{UserID: "u-esi", Role: record.RoleRegistrationClerk}
			nurse := record.Author{UserID: "u-achieng", Role: record.RoleNurse}
			wanjiru, err := tablet.Register(ctx, clerk, record.Register{GivenName: "Wanjiru", FamilyName: "Mwangi", Sex: "female",
				EstimatedBirthYear: 1988, Village: "Kamuga", HomeClinic: "kamuga",
				Identifiers: []record.Identifier{{System: record.SystemABHA, Value: "12345678901234"}, {System: record.SystemClinic, Value: "KMG-0042"}}})
			require.NoError(t, err)
			_, err = tablet.Edit(ctx, wanjiru, nurse, record.AddAllergy{Substance: "Penicillin", Severity: "severe", Reaction: "rash"})
			require.NoError(t, err)
			mohammed, err := tablet.Register(ctx, clerk, record.Register{GivenName: "Mohammed", FamilyName: "Otieno", Sex: "male",
				EstimatedBirthYear: 1975, Village: "Lwanda", HomeClinic: "kamuga",
				Identifiers: []record.Identifier{{System: record.SystemClinic, Value: "KMG-0043"}}})
			require.NoError(t, err)
			namesake, err := tablet.Register(ctx, clerk, record.Register{GivenName: "Wanjiru", FamilyName: "Kamau", Sex: "female",
				EstimatedBirthYear: 2001, Village: "Lwanda", HomeClinic: "kamuga"})
			require.NoError(t, err)
			// A patient of the village Mwangi, to tell names from villages.
			villager, err := tablet.Register(ctx, clerk, record.Register{GivenName: "Akinyi", FamilyName: "Odhiambo", Sex: "female",
				EstimatedBirthYear: 1990, Village: "Mwangi", HomeClinic: "kamuga"})
			require.NoError(t, err)
			syncWith(t, tablet, cred, addr)

			token := addSystem(t, c.at, "national-hie")
			fc := newFHIRClient(t, c.roots)

			// The CapabilityStatement lists exactly what is served.
			r := fc.get(addr, "/fhir/metadata", "")
			require.Equal(t, http.StatusOK, r.status, "the metadata needs no token: %s", r.body)
			cs := validFHIR(t, r).GetCapabilityStatement()
			require.NotNil(t, cs)
			require.Len(t, cs.GetRest(), 1)
			res := cs.GetRest()[0].GetResource()
			require.Len(t, res, 1, "one resource type is served")
			assert.Equal(t, "PATIENT", res[0].GetType().GetValue().String())
			var interactions, params, ops []string
			for _, i := range res[0].GetInteraction() {
				interactions = append(interactions, i.GetCode().GetValue().String())
			}
			for _, p := range res[0].GetSearchParam() {
				params = append(params, p.GetName().GetValue())
			}
			for _, o := range res[0].GetOperation() {
				ops = append(ops, o.GetName().GetValue())
			}
			assert.ElementsMatch(t, []string{"READ", "SEARCH_TYPE"}, interactions)
			assert.ElementsMatch(t, []string{"identifier", "name"}, params)
			assert.Equal(t, []string{"everything"}, ops)
			assert.Empty(t, cs.GetRest()[0].GetInteraction(), "no system-wide interaction")

			search := func(query string) *bcrpb.Bundle {
				t.Helper()
				r := fc.get(addr, "/fhir/Patient?"+query, token)
				require.Equal(t, http.StatusOK, r.status, "%s: %s", query, r.body)
				b := validFHIR(t, r).GetBundle()
				require.NotNil(t, b, "a search answers a Bundle")
				assert.Equal(t, "SEARCHSET", b.GetType().GetValue().String())
				return b
			}
			b := search("identifier=" + fhir.SystemABHA + "%7C12345678901234")
			assert.Equal(t, []string{wanjiru}, patientIDs(t, b), "the ABHA number finds its chart")
			assert.EqualValues(t, 1, b.GetTotal().GetValue())
			assert.Equal(t, []string{wanjiru}, patientIDs(t, search("identifier=KMG0042")), "a value alone matches any system")
			assert.Equal(t, []string{mohammed}, patientIDs(t, search("identifier="+fhir.IdentifierSystemPrefix+"clinic%7CKMG0043")))
			assert.Empty(t, patientIDs(t, search("identifier="+fhir.SystemAadhaar+"%7C12345678901234")), "the same value in another system is not a match")
			assert.Empty(t, patientIDs(t, search("identifier=%7C12345678901234")), "no identifier is without a system")
			assert.Empty(t, patientIDs(t, search("identifier="+fhir.SystemABHA+"%7C1234567890123")), "identifiers match exactly")

			assert.ElementsMatch(t, []string{wanjiru, namesake}, patientIDs(t, search("name=Wanjiro")), "a spelling variant finds the name, as Replica.Search does")
			assert.Equal(t, []string{wanjiru}, patientIDs(t, search("name=mwangi+WANJ")), "words in any order, case and first letters")
			assert.Equal(t, []string{mohammed}, patientIDs(t, search("name=Muhammad")))
			assert.NotContains(t, patientIDs(t, search("name=Mwangi")), villager, "name searches the names, not the village")
			assert.Empty(t, patientIDs(t, search("name=Zebedee")))
			assert.Equal(t, []string{wanjiru}, patientIDs(t, search("identifier=KMG0042&name=Wanjiru")), "both parameters must match")
			assert.Empty(t, patientIDs(t, search("identifier=KMG0042&name=Mohammed")))

			// Pages: _count bounds the entries, total counts them all.
			b = search("name=Wanjiru&_count=1")
			first := patientIDs(t, b)
			assert.Len(t, first, 1)
			assert.EqualValues(t, 2, b.GetTotal().GetValue())
			var next string
			for _, l := range b.GetLink() {
				if l.GetRelation().GetValue() == "next" {
					next = l.GetUrl().GetValue()
				}
			}
			require.NotEmpty(t, next, "a page that is not the last links to the next")
			_, nextQuery, _ := strings.Cut(next, "?")
			second := patientIDs(t, search(nextQuery))
			assert.ElementsMatch(t, []string{wanjiru, namesake}, append(first, second...), "the next page gives the other")
			b = search("identifier=KMG0042&_count=0")
			assert.Empty(t, b.GetEntry())
			assert.EqualValues(t, 1, b.GetTotal().GetValue(), "_count=0 gives the total only")

			// One Patient.
			r = fc.get(addr, "/fhir/Patient/"+wanjiru, token)
			require.Equal(t, http.StatusOK, r.status, "%s", r.body)
			p := validFHIR(t, r).GetPatient()
			require.NotNil(t, p)
			assert.Equal(t, wanjiru, p.GetId().GetValue())
			assert.Equal(t, "Mwangi", p.GetName()[0].GetFamily().GetValue())
			assert.Equal(t, "not-found", outcomeCode(t, fc.get(addr, "/fhir/Patient/no-such-chart", token), http.StatusNotFound))

			// $everything: the chart's export.
			r = fc.get(addr, "/fhir/Patient/"+wanjiru+"/$everything", token)
			require.Equal(t, http.StatusOK, r.status, "%s", r.body)
			b = validFHIR(t, r).GetBundle()
			require.NotNil(t, b)
			types := map[string]bool{}
			for _, e := range b.GetEntry() {
				typ, _ := resourceTypeAndID(e.GetResource())
				types[typ] = true
				assert.NotEmpty(t, e.GetFullUrl().GetValue())
			}
			assert.True(t, types["Patient"] && types["AllergyIntolerance"] && types["Provenance"], "the chart's resources: %v", types)
			assert.EqualValues(t, len(b.GetEntry()), b.GetTotal().GetValue())
			assert.Equal(t, wanjiru, b.GetEntry()[0].GetResource().GetPatient().GetId().GetValue(), "the Patient first")
			assert.Equal(t, "not-found", outcomeCode(t, fc.get(addr, "/fhir/Patient/no-such-chart/$everything", token), http.StatusNotFound))

			// Refusals.
			outcomeCode(t, fc.get(addr, "/fhir/Patient", token), http.StatusBadRequest)
			outcomeCode(t, fc.get(addr, "/fhir/Patient?birthdate=1988", token), http.StatusBadRequest)
			outcomeCode(t, fc.get(addr, "/fhir/Patient?identifier=a,b", token), http.StatusBadRequest)
			outcomeCode(t, fc.get(addr, "/fhir/Patient/"+wanjiru+"?_elements=name", token), http.StatusBadRequest)
			outcomeCode(t, fc.get(addr, "/fhir/Observation?code=718-7", token), http.StatusNotFound)
			for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch} {
				for _, path := range []string{"/fhir/Patient", "/fhir/Patient/" + wanjiru} {
					r := fc.do(m, addr, path, token)
					outcomeCode(t, r, http.StatusMethodNotAllowed)
					assert.Equal(t, "GET, HEAD", r.header.Get("Allow"))
				}
			}
			r = fc.get(addr, "/fhir/Patient/"+wanjiru, "")
			assert.Equal(t, "login", outcomeCode(t, r, http.StatusUnauthorized), "no token")
			assert.Equal(t, `Bearer realm="chartsync"`, r.header.Get("WWW-Authenticate"))
			var wrong [32]byte
			rand.Read(wrong[:])
			for _, tok := range []string{base64.RawURLEncoding.EncodeToString(wrong[:]), "not-a-token", token + "x", strings.ToUpper(token)} {
				r = fc.get(addr, "/fhir/Patient?identifier=KMG0042", tok)
				outcomeCode(t, r, http.StatusUnauthorized)
				assert.Contains(t, r.header.Get("WWW-Authenticate"), `error="invalid_token"`)
			}

			// The token is no device credential: /v1 still needs one.
			for _, path := range []string{"/v1/hello", "/v1/sync"} {
				m := http.MethodGet
				if path == "/v1/sync" {
					m = http.MethodPost
				}
				r = fc.do(m, addr, path, token)
				assert.Equal(t, http.StatusUnauthorized, r.status, "%s without a device certificate: %s", path, r.body)
				assert.Contains(t, string(r.body), "no device credential")
			}
			syncWith(t, tablet, cred, addr) // the device still syncs

			// Revoked: refused at once, on every node.
			code, stdout, stderr := cloud(t, append([]string{"systems", "revoke", "-name", "national-hie"}, c.at...)...)
			require.Equal(t, 0, code, "revoke: %s", stderr)
			assert.Contains(t, stdout, "Revoked system national-hie")
			for _, a := range c.addrs {
				r = fc.get(a, "/fhir/Patient/"+wanjiru, token)
				assert.Equal(t, "expired", outcomeCode(t, r, http.StatusUnauthorized), "node %s refuses the revoked token", a)
				assert.Contains(t, r.header.Get("WWW-Authenticate"), `error="invalid_token"`)
			}

			// The access log holds every request, under the system's ID
			// and name.
			code, stdout, stderr = cloud(t, append([]string{"audit"}, c.at...)...)
			require.Equal(t, 0, code, "audit: %s", stderr)
			var entries []auditLine
			for line := range strings.Lines(stdout) {
				var e auditLine
				require.NoError(t, json.Unmarshal([]byte(line), &e))
				if strings.HasPrefix(e.Detail, "fhir ") {
					entries = append(entries, e)
				}
			}
			for _, asked := range fc.asked {
				assert.True(t, slices.ContainsFunc(entries, func(e auditLine) bool {
					return strings.HasPrefix(e.Detail, "fhir "+asked+": ")
				}), "the access log records %s", asked)
			}
			readWanjiru := slices.ContainsFunc(entries, func(e auditLine) bool {
				return e.Action == "read" && e.Chart == wanjiru && e.User == "national-hie" && e.Role == fhirRole &&
					strings.HasPrefix(e.Detail, "fhir GET /fhir/Patient/"+wanjiru+"/$everything: 200")
			})
			assert.True(t, readWanjiru, "the $everything is a read of the chart by the system")
			anon := slices.ContainsFunc(entries, func(e auditLine) bool {
				return e.Action == "refused" && e.Device == anonymous && e.User == "" && strings.Contains(e.Detail, ": 401")
			})
			assert.True(t, anon, "a request without a known token is recorded as refused, anonymous")
			revoked := slices.ContainsFunc(entries, func(e auditLine) bool {
				return e.Action == "refused" && e.User == "national-hie" && strings.Contains(e.Detail, ": 401")
			})
			assert.True(t, revoked, "a revoked system's request is recorded under its name")
		})
	}
}
