package httpsync

import (
	"bytes"
	"io"
	"net/http"
	"testing"
	"time"
)

// FuzzStatusError: any error answer from a server (or a middlebox) reads
// as a *StatusError without panicking.
func FuzzStatusError(f *testing.F) {
	f.Add(503, "1", []byte(`{"error":"busy","message":"try again"}`))
	f.Add(401, "", []byte(`{"error":"expired-credential"}`))
	f.Add(502, "Wed, 21 Oct 2015 07:28:00 GMT", []byte("<html>bad gateway</html>"))
	f.Add(403, "", []byte(`{"error":"revoked-change","message":"refused","revocations":["Q1NFAQIAqgGqAQ==","AAEC"]}`))
	f.Add(403, "", []byte(`{"error":"forged-change","revocations":["AAEC"]}`))
	f.Add(409, "", []byte(`{"error":"forked","message":"replica 0123 is forked","forked":"0123456789abcdef0123456789abcdef"}`))
	f.Add(400, "", []byte(`{"error":"malformed-bundle","forked":"0123456789abcdef0123456789abcdef"}`))
	f.Fuzz(func(t *testing.T, status int, retryAfter string, body []byte) {
		resp := &http.Response{StatusCode: status, Header: http.Header{}, Body: io.NopCloser(bytes.NewReader(body))}
		resp.Header.Set("Retry-After", retryAfter)
		se := statusError(resp)
		if se.Status != status || se.RetryAfter < 0 {
			t.Fatalf("status %d read as %+v", status, se)
		}
		size := 0
		for _, rec := range se.Revocations {
			size += len(rec)
		}
		if len(se.Revocations) > 0 && (se.Code != CodeRevokedChange || len(se.Revocations) > maxRefusalRevocations || size > MaxRefusalRevocationBytes) {
			t.Fatalf("revocations taken from a %q answer: %d of %d bytes", se.Code, len(se.Revocations), size)
		}
		if se.Forked != "" && se.Code != CodeForked {
			t.Fatalf("a forked replica taken from a %q answer", se.Code)
		}
		_ = se.Error()
	})
}

// FuzzSessionFile: any file read back as a session file is refused or
// loaded without panicking, and what loads is written and read back the
// same.
func FuzzSessionFile(f *testing.F) {
	now := time.Unix(1700000000, 0)
	server, client := ticketServer(f, newServerSessions(1))
	_, cs := connect(f, server, client, nil)
	ticket, st, err := cs.ResumptionState()
	if err != nil {
		f.Fatal(err)
	}
	state, err := st.Bytes()
	if err != nil {
		f.Fatal(err)
	}
	good, err := encodeSessionFile(sessionFile{Device: "ab", Sessions: []fileSession{{Key: "127.0.0.1:8443 127.0.0.1", Saved: now.Unix() - 60, Ticket: ticket, State: state}}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(sessionFileHeader + "{}\nsha256 00\n"))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, _, err := parseSessionFile(data, "ab", now)
		if err != nil {
			return
		}
		out := sessionFile{Device: "ab"}
		for _, e := range entries {
			if e.cs == nil || e.key == "" || len(e.ticket) == 0 {
				t.Fatalf("a loaded session is incomplete: %+v", e)
			}
			out.Sessions = append(out.Sessions, fileSession{Key: e.key, Saved: e.saved.Unix(), Ticket: e.ticket, State: e.state})
		}
		again, err := encodeSessionFile(out)
		if err != nil {
			t.Fatal(err)
		}
		back, dropped, err := parseSessionFile(again, "ab", now)
		if err != nil || dropped != 0 || len(back) != len(entries) {
			t.Fatalf("%d sessions loaded, written back and read as %d (%d dropped, err %v)", len(entries), len(back), dropped, err)
		}
	})
}
