package web

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/record"
)

// TestBrowserLockoutAndDuplicateWarning drives headless Chromium through
// the lockout after repeated wrong passwords (after which the right
// password does not get in either), and, as another user, the
// registration of a patient already registered under another spelling:
// the page warns of the likely duplicate, with its reasons, before
// saving. Wrong passwords answer 401, as expected; any other failed
// request, or a JavaScript or console error, fails the test.
func TestBrowserLockoutAndDuplicateWarning(t *testing.T) {
	exe := browser(t)
	f := newFixture(t)
	f.register(record.Register{GivenName: "Wanjiru", FamilyName: "Mwangi", EstimatedBirthYear: 1988, Village: "Kamuga", Phone: "+254712345678"})
	ctx, problems := startBrowser(t, exe, func(url string, status int64) bool {
		return status == 401 && strings.HasSuffix(url, "/login")
	})
	submit := chromedp.Click(chromedp.CSS("main form button[type=submit]"))
	try := func(user, password string) string {
		t.Helper()
		require.NoError(t, chromedp.Do(ctx,
			chromedp.Navigate(f.ts.URL+"/login"),
			chromedp.WaitVisible(chromedp.CSS("#f-user")),
			chromedp.SendKeys(chromedp.CSS("#f-user"), user),
			chromedp.SendKeys(chromedp.CSS("#f-password"), password),
			submit,
			chromedp.WaitVisible(chromedp.CSS("p.error")),
		))
		text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("p.error")))
		require.NoError(t, err)
		return text
	}
	nurse := userID(record.RoleNurse)
	locked := false
	for i := range 10 {
		if text := try(nurse, "not-the-password"); strings.Contains(text, "locked out") {
			locked = true
			t.Logf("locked out after %d wrong passwords", i+1)
			break
		}
	}
	require.True(t, locked, "repeated wrong passwords lock the user out")
	assert.Contains(t, try(nurse, password(record.RoleNurse)), "locked out", "the right password does not get in while locked out")

	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(f.ts.URL+"/login"),
		chromedp.WaitVisible(chromedp.CSS("#f-user")),
		chromedp.SendKeys(chromedp.CSS("#f-user"), userID(record.RoleClinician)),
		chromedp.SendKeys(chromedp.CSS("#f-password"), password(record.RoleClinician)),
		submit,
		chromedp.WaitVisible(chromedp.CSS("#f-q")),
		chromedp.Navigate(f.ts.URL+"/register"),
		chromedp.WaitVisible(chromedp.CSS("#f-given_name")),
		chromedp.SendKeys(chromedp.CSS("#f-given_name"), "Wanjiro"),
		chromedp.SendKeys(chromedp.CSS("#f-family_name"), "Mwangi"),
		chromedp.SendKeys(chromedp.CSS("#f-estimated_birth_year"), "1988"),
		chromedp.SendKeys(chromedp.CSS("#f-village"), "Kamuga"),
		chromedp.SendKeys(chromedp.CSS("#f-phone"), "+254712345678"),
		submit,
		chromedp.WaitVisible(chromedp.CSS("section.warn")),
	))
	warning, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("section.warn")))
	require.NoError(t, err)
	assert.Contains(t, warning, "Wanjiru Mwangi", "the chart already registered is named")
	assert.Contains(t, warning, "already registered")
	assert.Empty(t, problems(), "no JavaScript or console errors, no failed request but the wrong passwords")
}
