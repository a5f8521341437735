package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/record/fhir"
)

func TestParseSearchQuery(t *testing.T) {
	abha := fhir.SystemABHA + "|12345678901234"
	tests := []struct {
		query  string
		want   patientSearch
		status int // 0: accepted
	}{
		{query: "identifier=" + abha, want: patientSearch{Identifier: &tokenParam{System: fhir.SystemABHA, HasSystem: true, Value: "12345678901234"}, Count: 50}},
		{query: "identifier=https%3A%2F%2Fhealthid.ndhm.gov.in%7C12345678901234", want: patientSearch{Identifier: &tokenParam{System: fhir.SystemABHA, HasSystem: true, Value: "12345678901234"}, Count: 50}},
		{query: "identifier=KMG0042", want: patientSearch{Identifier: &tokenParam{Value: "KMG0042"}, Count: 50}},
		{query: "identifier=%7CKMG0042", want: patientSearch{Identifier: &tokenParam{HasSystem: true, Value: "KMG0042"}, Count: 50}},
		{query: `identifier=urn:x%7Ca\|b\,c\\`, want: patientSearch{Identifier: &tokenParam{System: "urn:x", HasSystem: true, Value: `a|b,c\`}, Count: 50}},
		{query: "name=Wanjiru+Mwangi", want: patientSearch{Name: "Wanjiru Mwangi", Count: 50}},
		{query: "name=Wanjiru&identifier=KMG0042&_count=10&_offset=20&_format=json",
			want: patientSearch{Name: "Wanjiru", Identifier: &tokenParam{Value: "KMG0042"}, Count: 10, Offset: 20}},
		{query: "name=Wanjiru&_count=500", want: patientSearch{Name: "Wanjiru", Count: 50}},
		{query: "name=Wanjiru&_count=0", want: patientSearch{Name: "Wanjiru", Count: 0}},
		{query: "name=Wanjiru&_format=application/fhir%2Bjson", want: patientSearch{Name: "Wanjiru", Count: 50}},

		{query: "", status: http.StatusBadRequest},
		{query: "_count=5", status: http.StatusBadRequest},
		{query: "birthdate=1988", status: http.StatusBadRequest},
		{query: "name:exact=Wanjiru", status: http.StatusBadRequest},
		{query: "identifier:of-type=x%7Cy", status: http.StatusBadRequest},
		{query: "name=Wanjiru&name=Mwangi", status: http.StatusBadRequest},
		{query: "name=Wanjiru,Akinyi", status: http.StatusBadRequest},
		{query: "name=", status: http.StatusBadRequest},
		{query: "name=%21%21", status: http.StatusBadRequest},
		{query: "identifier=a,b", status: http.StatusBadRequest},
		{query: "identifier=" + fhir.SystemABHA + "%7C", status: http.StatusBadRequest},
		{query: "identifier=", status: http.StatusBadRequest},
		{query: "identifier=a%7Cb%7Cc", status: http.StatusBadRequest},
		{query: `identifier=abc\`, status: http.StatusBadRequest},
		{query: "identifier=" + strings.Repeat("1", 300), status: http.StatusBadRequest},
		{query: "name=Wanjiru&_count=-1", status: http.StatusBadRequest},
		{query: "name=Wanjiru&_count=ten", status: http.StatusBadRequest},
		{query: "name=Wanjiru&_offset=10001", status: http.StatusBadRequest},
		{query: "name=Wanjiru&_format=xml", status: http.StatusNotAcceptable},
		{query: "name=%zz", status: http.StatusBadRequest},
		{query: "name=Wanjiru;x=1", status: http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			got, err := parseSearchQuery(tt.query)
			if tt.status != 0 {
				require.NotNil(t, err, "%q is refused", tt.query)
				assert.Equal(t, tt.status, err.Status)
				assert.NotEmpty(t, err.Msg, "the refusal says why")
				return
			}
			require.Nil(t, err, "%q is accepted", tt.query)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestParseFHIRPath(t *testing.T) {
	tests := []struct {
		path   string
		want   fhirRoute
		status int
	}{
		{path: "/fhir/metadata", want: fhirRoute{Kind: routeMetadata}},
		{path: "/fhir/Patient", want: fhirRoute{Kind: routeSearch}},
		{path: "/fhir/Patient/0f6c1a2e-9b1d-4c7a-8f00-1b2c3d4e5f60", want: fhirRoute{Kind: routeRead, ID: "0f6c1a2e-9b1d-4c7a-8f00-1b2c3d4e5f60"}},
		{path: "/fhir/Patient/abc.1/$everything", want: fhirRoute{Kind: routeEverything, ID: "abc.1"}},
		{path: "/fhir", status: http.StatusNotFound},
		{path: "/fhir/", status: http.StatusNotFound},
		{path: "/fhir/Patient/", status: http.StatusBadRequest},
		{path: "/fhir/Patient/_search", status: http.StatusBadRequest},
		{path: "/fhir/Patient/" + strings.Repeat("a", 65), status: http.StatusBadRequest},
		{path: "/fhir/Patient/a b", status: http.StatusBadRequest},
		{path: "/fhir/Patient/abc/_history", status: http.StatusNotFound},
		{path: "/fhir/Patient/abc/$everything/x", status: http.StatusNotFound},
		{path: "/fhir/Observation", status: http.StatusNotFound},
		{path: "/fhir/patient", status: http.StatusNotFound},
		{path: "/fhir/metadata/x", status: http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			got, err := parseFHIRPath(tt.path)
			if tt.status != 0 {
				require.NotNil(t, err, "%q is refused", tt.path)
				assert.Equal(t, tt.status, err.Status)
				return
			}
			require.Nil(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

// FuzzParseSearchQuery feeds the search parser any query: it never
// panics, what it accepts is within bounds, and the query of a page link
// made from it parses back to the same search.
func FuzzParseSearchQuery(f *testing.F) {
	for _, seed := range []string{
		"identifier=https://healthid.ndhm.gov.in%7C12345678901234",
		"identifier=KMG0042&name=Wanjiru",
		"name=Wanjiru+Mwangi&_count=10&_offset=20",
		`identifier=urn:x%7Ca\|b\,c\\`,
		"identifier=%7C123",
		"name=Wanjiru&_format=json",
		"name=a,b",
		"name=%zz",
		"_count=-1",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, query string) {
		s, err := parseSearchQuery(query)
		if err != nil {
			require.NotEmpty(t, err.Msg)
			require.True(t, err.Status == http.StatusBadRequest || err.Status == http.StatusNotAcceptable, "status %d", err.Status)
			return
		}
		require.True(t, s.Identifier != nil || s.Name != "", "a search has a criterion")
		require.True(t, s.Count >= 0 && s.Count <= fhirPageSize)
		require.True(t, s.Offset >= 0 && s.Offset <= maxFHIROffset)
		if s.Identifier != nil {
			require.NotEmpty(t, s.Identifier.Value)
		}
		link := pageURL("https://localhost/fhir", s, s.Offset)
		_, q, ok := strings.Cut(link, "?")
		require.True(t, ok)
		again, err := parseSearchQuery(q)
		require.Nil(t, err, "the page link %q parses", link)
		require.Equal(t, s, again, "the page link %q asks the same", link)
	})
}
