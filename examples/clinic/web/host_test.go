package web

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestOnlyLoopbackHostsAreAnswered: a page of another site that points a
// name it controls at 127.0.0.1 (DNS rebinding) is refused, whatever it
// asks for; the loopback names the app is served under are answered.
func TestOnlyLoopbackHostsAreAnswered(t *testing.T) {
	f := newFixture(t)
	c := f.client()
	tests := []struct {
		host string
		ok   bool
	}{
		{"127.0.0.1:8080", true},
		{"localhost:8080", true},
		{"LOCALHOST", true},
		{"[::1]:8080", true},
		{"127.0.0.2", true},
		{"evil.example", false},
		{"evil.example:8080", false},
		{"127.0.0.1.evil.example", false},
		{"localhost.evil.example:8080", false},
		{"192.168.1.20:8080", false},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, f.ts.URL+"/login", nil)
			require.NoError(t, err)
			req.Host = tt.host
			code, body, _ := c.do(req)
			if tt.ok {
				assert.Equal(t, http.StatusOK, code, body)
				return
			}
			assert.Equal(t, http.StatusMisdirectedRequest, code)
			assert.NotContains(t, body, "csrf", "no page of the app is served")
		})
	}
}
