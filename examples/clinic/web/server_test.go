package web

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/record"
)

// TestLoginLockout: a wrong password is refused with the tries left; five
// in a row lock the user out, and then even the right password is
// refused; a right login sets an HttpOnly, SameSite=Strict cookie holding
// a new random 32-byte session ID.
func TestLoginLockout(t *testing.T) {
	f := newFixture(t)
	c := f.client()
	code, _ := c.get("/patients")
	assert.Equal(t, http.StatusSeeOther, code, "a page needs a login")

	code, _ = c.get("/login")
	require.Equal(t, http.StatusOK, code)
	nurse := userID(record.RoleNurse)
	for i := 1; i <= 5; i++ {
		code, body, _ := c.post("/login", url.Values{"user": {nurse}, "password": {"not-the-password"}})
		require.Equal(t, http.StatusUnauthorized, code)
		if i < 5 {
			assert.Contains(t, body, "Wrong user ID or password", "try %d", i)
			assert.Contains(t, body, "more wrong tries lock", "try %d says how many are left", i)
		}
	}
	code, body, _ := c.post("/login", url.Values{"user": {nurse}, "password": {password(record.RoleNurse)}})
	assert.Equal(t, http.StatusUnauthorized, code, "a locked-out user is refused even with the right password")
	assert.Contains(t, body, "locked out")
	code, _ = c.get("/patients")
	assert.Equal(t, http.StatusSeeOther, code, "a refused login opens nothing")

	before := sessionCookie(t, c)
	code, _, resp := c.post("/login", url.Values{"user": {userID(record.RoleClinician)}, "password": {password(record.RoleClinician)}})
	require.Equal(t, http.StatusSeeOther, code)
	var ck *http.Cookie
	for _, x := range resp.Cookies() {
		if x.Name == cookieName {
			ck = x
		}
	}
	require.NotNil(t, ck, "login sets the session cookie")
	assert.True(t, ck.HttpOnly, "the session cookie is HttpOnly")
	assert.Equal(t, http.SameSiteStrictMode, ck.SameSite)
	assert.Regexp(t, regexp.MustCompile(`^[0-9a-f]{64}$`), ck.Value, "a random 32-byte ID")
	assert.NotEqual(t, before, ck.Value, "login gives a new session ID")
	code, body = c.get("/patients")
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, "Test clinician")
}

func sessionCookie(t *testing.T, c *client) string {
	u, err := url.Parse(c.f.ts.URL)
	require.NoError(t, err)
	for _, ck := range c.hc.Jar.Cookies(u) {
		if ck.Name == cookieName {
			return ck.Value
		}
	}
	return ""
}

// TestIdleLogout: a session ends after the idle timeout without a
// request, not before, and the login page says why; logout ends it too.
func TestIdleLogout(t *testing.T) {
	f := newFixture(t)
	c := f.client()
	c.login(record.RoleNurse)
	f.clock.advance(14 * time.Minute)
	code, _ := c.get("/patients")
	require.Equal(t, http.StatusOK, code, "14 minutes idle is within the timeout")
	f.clock.advance(15*time.Minute + time.Second)
	code, _, resp := c.do(mustReq(t, http.MethodGet, f.ts.URL+"/patients"))
	require.Equal(t, http.StatusSeeOther, code, "15 minutes idle logs out")
	assert.Equal(t, "/login?idle=1", resp.Header.Get("Location"))
	code, body := c.get("/login?idle=1")
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, "logged out after 15 minutes")

	c.login(record.RoleNurse)
	code, _, _ = c.post("/logout", nil)
	require.Equal(t, http.StatusSeeOther, code)
	code, _ = c.get("/patients")
	assert.Equal(t, http.StatusSeeOther, code, "after logout the session is gone")
}

func mustReq(t *testing.T, method, u string) *http.Request {
	req, err := http.NewRequest(method, u, nil)
	require.NoError(t, err)
	return req
}

// TestCSRFRefused: a POST without the session's CSRF token, or with
// another, is refused with 403 and changes nothing.
func TestCSRFRefused(t *testing.T) {
	f := newFixture(t)
	id := f.register(record.Register{GivenName: "Wanjiru", FamilyName: "Mwangi", EstimatedBirthYear: 1988})
	c := f.client()
	c.login(record.RoleClinician)
	heads := f.chart(id).Heads
	allergy := url.Values{"substance": {"penicillin"}, "severity": {"severe"}}
	for _, token := range []string{"", strings.Repeat("ab", 32)} {
		form := url.Values{"csrf": {token}}
		for k, v := range allergy {
			form[k] = v
		}
		code, _, _ := c.post("/chart/"+id+"/allergy", form)
		assert.Equal(t, http.StatusForbidden, code, "token %q", token)
	}
	code, _, _ := c.post("/logout", url.Values{"csrf": {""}})
	assert.Equal(t, http.StatusForbidden, code, "logout needs the token too")
	assert.Equal(t, heads, f.chart(id).Heads, "a refused POST changes nothing")

	other := f.client()
	other.get("/login")
	code, _, _ = other.post("/login", url.Values{"csrf": {""}, "user": {userID(record.RoleNurse)}, "password": {password(record.RoleNurse)}})
	assert.Equal(t, http.StatusForbidden, code, "the login form needs its token")

	code, _, _ = c.post("/chart/"+id+"/allergy", allergy)
	assert.Equal(t, http.StatusSeeOther, code, "with the token the same form is saved")
	assert.Len(t, f.chart(id).Allergies, 1)
}

// TestSyncPage: the sync page shows what is waiting; the sync button
// starts a sync and sends the user to the page, which follows its
// progress (reloading itself, without JavaScript) and then shows its
// result in words; a second press while it runs starts no second sync.
func TestSyncPage(t *testing.T) {
	f := newFixture(t)
	c := f.client()
	c.login(record.RoleNurse)
	code, body := c.get("/sync")
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, "https://cloud.example:8443")
	assert.Contains(t, body, "Changes waiting to be sent</dt><dd>2")
	assert.Contains(t, body, "never")
	assert.NotContains(t, body, `http-equiv="refresh"`, "an idle sync page does not reload itself")

	gate, sent := make(chan struct{}), make(chan struct{}, 1)
	f.sync.mu.Lock()
	f.sync.gate, f.sync.sent = gate, sent
	f.sync.mu.Unlock()
	code, _, resp := c.post("/sync", nil)
	require.Equal(t, http.StatusSeeOther, code)
	assert.Equal(t, "/sync", resp.Header.Get("Location"))
	<-sent
	code, _, _ = c.post("/sync", nil)
	require.Equal(t, http.StatusSeeOther, code, "a second press while a sync runs")
	code, body = c.get("/sync")
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, "already running", "the second press is told a sync runs")
	assert.Contains(t, body, `http-equiv="refresh"`, "the page follows a running sync")
	assert.Contains(t, body, "Sending this device&#39;s changes (round 1)")
	assert.Contains(t, body, "1.0 KB / 4.0 KB")
	assert.Contains(t, body, "Syncing now", "the status bar says a sync runs")

	close(gate)
	require.NoError(t, f.srv.waitSync(context.Background()))
	assert.Equal(t, 1, f.sync.syncs, "one sync ran")
	code, body = c.get("/sync")
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, "Sent 1 change and received 3 changes (2 charts updated), 2.0 KB in 300ms.")
	assert.NotContains(t, body, `http-equiv="refresh"`)
	assert.Contains(t, body, `class="syncbar online"`, "after a sync the device shows online")
}

// TestDisabledUserLoggedOut: a user the roster disables is logged out at
// the next request.
func TestDisabledUserLoggedOut(t *testing.T) {
	f := newFixture(t)
	c := f.client()
	c.login(record.RoleNurse)
	_, err := f.r.UpdateUser(context.Background(), testClinic, author(record.RoleAdministrator), record.UserUpdate{UserID: userID(record.RoleNurse), Disable: true})
	require.NoError(t, err)
	code, body := c.get("/patients")
	assert.Equal(t, http.StatusForbidden, code)
	assert.Contains(t, body, "disabled")
	code, _ = c.get("/patients")
	assert.Equal(t, http.StatusSeeOther, code, "the session is gone")
}
