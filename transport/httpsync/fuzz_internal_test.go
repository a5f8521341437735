package httpsync

import (
	"bytes"
	"io"
	"net/http"
	"testing"
)

// FuzzStatusError: any error answer from a server (or a middlebox) reads
// as a *StatusError without panicking.
func FuzzStatusError(f *testing.F) {
	f.Add(503, "1", []byte(`{"error":"busy","message":"try again"}`))
	f.Add(401, "", []byte(`{"error":"expired-credential"}`))
	f.Add(502, "Wed, 21 Oct 2015 07:28:00 GMT", []byte("<html>bad gateway</html>"))
	f.Fuzz(func(t *testing.T, status int, retryAfter string, body []byte) {
		resp := &http.Response{StatusCode: status, Header: http.Header{}, Body: io.NopCloser(bytes.NewReader(body))}
		resp.Header.Set("Retry-After", retryAfter)
		se := statusError(resp)
		if se.Status != status || se.RetryAfter < 0 {
			t.Fatalf("status %d read as %+v", status, se)
		}
		_ = se.Error()
	})
}
