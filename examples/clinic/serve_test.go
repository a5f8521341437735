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

	"github.com/chartsync/chartsync/device/keyring"
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

// TestServeColleagueFirstLogin: in the web app, a user without a key
// entry on the device (one who came by sync) is told to have a colleague
// log in first; while a colleague's session holds the data open, their
// login (checked against the roster) gives them an entry.
func TestServeColleagueFirstLogin(t *testing.T) {
	dir := t.TempDir()
	must(t, dir, twice("admin-pass-1"), "init", "-clinic", "kamuga", "-device", "tab", "-admin", "u-admin", "-admin-name", "Wairimu")
	must(t, dir, "admin-pass-1\n", "login", "-user", "u-admin")
	must(t, dir, twice("doctor-pass-1"), "user", "add", "-id", "u-mutua", "-name", "Dr Mutua", "-role", "clinician")
	must(t, dir, "", "logout")
	// As if Dr Mutua had come by sync: on the roster, without an entry.
	ring := filepath.Join(dir, keyringFile)
	key, err := keyring.Unlock(ring, "u-admin", "admin-pass-1")
	require.NoError(t, err)
	require.NoError(t, keyring.RemoveUser(ring, key, "u-mutua"))

	srv, ts := serveWeb(t, dir, io.Discard)
	browser := func() *http.Client {
		jar, err := cookiejar.New(nil)
		require.NoError(t, err)
		return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	doctor, admin := browser(), browser()

	code, body := webLogin(t, doctor, ts.URL, "u-mutua", "doctor-pass-1")
	assert.Equal(t, http.StatusUnauthorized, code)
	assert.Contains(t, body, "u-mutua has no key on this device yet")
	assert.False(t, srv.Unlocked())

	code, body = webLogin(t, admin, ts.URL, "u-admin", "admin-pass-1")
	require.Equal(t, http.StatusSeeOther, code, body)
	code, body = webLogin(t, doctor, ts.URL, "u-mutua", "not-his-password")
	assert.Equal(t, http.StatusUnauthorized, code, "the roster checks his password")
	assert.Contains(t, body, "Wrong user ID or password")
	code, body = webLogin(t, doctor, ts.URL, "u-mutua", "doctor-pass-1")
	require.Equal(t, http.StatusSeeOther, code, body)
	users, err := keyring.Users(ring)
	require.NoError(t, err)
	assert.Contains(t, users, "u-mutua", "his login made his entry")
	_, err = keyring.Unlock(ring, "u-mutua", "doctor-pass-1")
	assert.NoError(t, err)
}

// TestServeEncryptsAClearDevice: the web app on a device whose data the
// app wrote in clear (testdata/clear-device) and whose recovery key is
// known encrypts it at the first login, as the command line's login does.
func TestServeEncryptsAClearDevice(t *testing.T) {
	dir := clearDevice(t)
	conf := filepath.Join(dir, "device.json")
	var d deviceConfig
	require.NoError(t, readJSON(conf, &d))
	d.Recovery = testRecovery.Recipient().String()
	require.NoError(t, writeJSON(conf, d))

	var out strings.Builder
	srv, ts := serveWeb(t, dir, &out)
	assert.False(t, srv.Unlocked(), "nothing is open before the first login")
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	hc := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	code, _ := webLogin(t, hc, ts.URL, "u-nurse", "not-the-password")
	assert.Equal(t, http.StatusUnauthorized, code)
	assert.True(t, inClear(t, dir), "a refused login encrypts nothing")
	code, body := webLogin(t, hc, ts.URL, "u-nurse", "nurse-pass-1")
	require.Equal(t, http.StatusSeeOther, code, body)
	assert.Contains(t, out.String(), "now encrypted")
	assert.False(t, inClear(t, dir))
	assert.Empty(t, filesHolding(t, dir, "Oldfixture"))
	resp, err := hc.Get(ts.URL + "/patients?q=wanjiru")
	require.NoError(t, err)
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	assert.Contains(t, string(b), "Kamau-Oldfixture", "the chart is kept")
	_, err = keyring.Unlock(filepath.Join(dir, keyringFile), "u-nurse", "nurse-pass-1")
	assert.NoError(t, err, "her password unlocks the keyring made at her login")
}

// serveWeb serves the clinic web app of the device in dir (no automatic
// sync) on a test server, both closed when the test ends; out takes what
// the app prints.
func serveWeb(t *testing.T, dir string, out io.Writer) (*web.Server, *httptest.Server) {
	t.Helper()
	a := &app{dir: dir, in: bufio.NewReader(strings.NewReader("")), raw: strings.NewReader(""), out: out, log: io.Discard}
	t.Cleanup(a.close)
	srv, _, err := newWebApp(context.Background(), a, web.Config{AutoSync: -1})
	require.NoError(t, err)
	t.Cleanup(func() { srv.Close() })
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return srv, ts
}
