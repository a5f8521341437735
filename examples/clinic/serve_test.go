package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/examples/clinic/web"
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

// webLogin logs a browser in to the web app at base as user.
func webLogin(t *testing.T, hc *http.Client, base, user, password string) (int, string) {
	t.Helper()
	resp, err := hc.Get(base + "/login")
	require.NoError(t, err)
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	csrf := regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`).FindSubmatch(b)
	require.NotNil(t, csrf, "the login page has a form")
	resp, err = hc.PostForm(base+"/login", url.Values{"user": {user}, "password": {password}, "csrf": {string(csrf[1])}})
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err = io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// TestServeDemoUnlocksInMemory: "serve -demo" sets up a demo whose data is
// encrypted, with its recovery key beside it, and starts locked; a login
// through the web page opens it with the user's password, holding the
// key in memory only (no session.key on the disk); the last logout
// closes the data and forgets the key.
func TestServeDemoUnlocksInMemory(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "demo")
	a := &app{dir: dir, in: bufio.NewReader(strings.NewReader("")), raw: strings.NewReader(""), out: io.Discard, log: io.Discard}
	t.Cleanup(a.close)
	require.NoError(t, setUpDemo(ctx, a))
	assert.False(t, inClear(t, dir), "the demo's data is encrypted")
	assert.Empty(t, filesHolding(t, dir, "Wanjiru"))
	ids, err := readRecoveryIdentity(filepath.Join(dir, demoRecoveryFile))
	require.NoError(t, err)
	_, err = recoverKey(filepath.Join(dir, keyringFile), ids)
	require.NoError(t, err, "the demo's recovery key opens it")

	srv, _, err := newWebApp(ctx, a, web.Config{AutoSync: -1})
	require.NoError(t, err)
	t.Cleanup(func() { srv.Close() })
	require.NoError(t, srv.Start(ctx))
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	assert.False(t, srv.Unlocked(), "the app starts locked")
	assert.Nil(t, a.key)

	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	hc := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	code, body := webLogin(t, hc, ts.URL, "u-achieng", "not-the-password")
	assert.Equal(t, http.StatusUnauthorized, code)
	assert.Contains(t, body, "Wrong user ID or password. 4 more wrong tries lock u-achieng out on this device.")
	assert.False(t, srv.Unlocked())

	code, body = webLogin(t, hc, ts.URL, "u-achieng", demoPassword)
	require.Equal(t, http.StatusSeeOther, code, body)
	assert.True(t, srv.Unlocked())
	resp, err := hc.Get(ts.URL + "/patients?q=wanjiru")
	require.NoError(t, err)
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	assert.Contains(t, string(b), "Wanjiru", "the demo's patients are shown")
	_, err = os.Stat(filepath.Join(dir, sessionKeyFile))
	assert.ErrorIs(t, err, os.ErrNotExist, "the web app keeps the key in memory only")
	assert.Len(t, a.key, 32)

	resp, err = hc.Get(ts.URL + "/patients")
	require.NoError(t, err)
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	csrf := regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`).FindSubmatch(b)
	require.NotNil(t, csrf)
	resp, err = hc.PostForm(ts.URL+"/logout", url.Values{"csrf": {string(csrf[1])}})
	require.NoError(t, err)
	resp.Body.Close()
	assert.False(t, srv.Unlocked(), "the last logout locks the data")
	assert.Nil(t, a.key, "and forgets the key")
	assert.Nil(t, a.r)
}
