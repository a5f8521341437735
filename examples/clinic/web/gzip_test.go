package web

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/record"
)

// TestPagesGzipped: a browser that takes gzip gets a page gzip-encoded
// (the same page once inflated, and smaller); one that does not, or
// refuses it (q=0), gets it plain.
func TestPagesGzipped(t *testing.T) {
	f := newFixture(t)
	id := f.register(record.Register{GivenName: "Wanjiru", FamilyName: "Mwangi", EstimatedBirthYear: 1988})
	for i := range 20 {
		f.edit(id, record.AddEncounter{Complaint: "Visit", Date: "2026-03-01", Note: "Seen and examined, " + string(rune('a'+i))})
	}
	c := f.client()
	c.login(record.RoleClinician)
	get := func(enc string) (string, *http.Response) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, f.ts.URL+"/chart/"+id, nil)
		require.NoError(t, err)
		req.Header.Set("Accept-Encoding", enc)
		code, body, resp := c.do(req)
		require.Equal(t, http.StatusOK, code)
		return body, resp
	}
	plain, resp := get("identity")
	assert.Empty(t, resp.Header.Get("Content-Encoding"))
	assert.Contains(t, plain, "Wanjiru")
	zipped, resp := get("br, gzip;q=0.8")
	assert.Equal(t, "gzip", resp.Header.Get("Content-Encoding"))
	assert.Contains(t, resp.Header.Values("Vary"), "Accept-Encoding")
	zr, err := gzip.NewReader(bytes.NewReader([]byte(zipped)))
	require.NoError(t, err)
	inflated, err := io.ReadAll(zr)
	require.NoError(t, err)
	assert.Contains(t, string(inflated), "Wanjiru")
	assert.Less(t, len(zipped), len(plain)/3, "gzip makes the page a fraction of its size")
	_, resp = get("gzip;q=0")
	assert.Empty(t, resp.Header.Get("Content-Encoding"), "a browser refusing gzip gets the page plain")
}
