package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestServeListensOnLoopbackOnly: serve refuses an address other than the
// loopback interface's, saying what to give instead.
func TestServeListensOnLoopbackOnly(t *testing.T) {
	dir := t.TempDir()
	for _, addr := range []string{"0.0.0.0:8080", ":8080", "192.168.1.10:8080", "localhost"} {
		code, _, errOut := clinic(t, dir, "serve", "-addr", addr)
		assert.Equal(t, 2, code, "-addr %s", addr)
		assert.Contains(t, errOut, "127.0.0.1", "-addr %s", addr)
	}
}
