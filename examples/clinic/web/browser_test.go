package web

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/record"
)

// browser finds a Chromium to drive, or skips the test saying which
// browsers it looked for.
func browser(t *testing.T) string {
	names := []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"}
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	t.Skipf("no headless browser found (looked for %v on PATH): install Debian's chromium package to run this test", names)
	return ""
}

// startBrowser starts headless Chromium (exe) for the test and returns
// its context, bounded to two minutes and closed with the test, and what
// went wrong in its pages so far: JavaScript exceptions, console errors,
// failed requests and answers of 400 or more, but those expected says
// are expected (nil: none).
func startBrowser(t *testing.T, exe string, expected func(url string, status int64) bool) (context.Context, func() []string) {
	t.Helper()
	var mu sync.Mutex
	var problems []string
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.NoSandbox)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithListener(func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch e := ev.(type) {
		case *runtime.EventExceptionThrown:
			problems = append(problems, "exception: "+e.ExceptionDetails.Text)
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError {
				problems = append(problems, fmt.Sprintf("console error: %v", e.Args))
			}
		case *network.EventLoadingFailed:
			if !e.Canceled {
				problems = append(problems, "request failed: "+e.ErrorText)
			}
		case *network.EventResponseReceived:
			if e.Response.Status >= 400 && (expected == nil || !expected(e.Response.URL, e.Response.Status)) {
				problems = append(problems, fmt.Sprintf("%s answered %d", e.Response.URL, e.Response.Status))
			}
		}
	}))
	t.Cleanup(cancel)
	ctx, cancelTime := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(cancelTime)
	return ctx, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), problems...)
	}
}

// TestBrowserPrescribeWithAllergy drives headless Chromium on a
// phone-sized screen through login, search, the chart, and prescribing a
// drug the patient is allergic to: the form shows the drug's code and the
// allergy before saving, and the chart shows the alert at the top. It
// fails on any JavaScript or console error and on any failed request, and
// checks that the stylesheet, served from the binary, applies.
// Screenshots of the pages go to $CHARTSYNC_SCREENSHOTS, or to
// chartsync-screenshots in the system's temporary folder.
func TestBrowserPrescribeWithAllergy(t *testing.T) {
	exe := browser(t)
	f := newFixture(t)
	id := f.register(record.Register{GivenName: "Wanjiru", FamilyName: "Mwangi", EstimatedBirthYear: 1988, Village: "Kamuga"})
	f.edit(id, record.AddAllergy{Substance: "penicillin", Severity: "severe", Reaction: "rash"})
	f.edit(id, record.AddEncounter{Complaint: "Fever", Date: "2026-03-01", Vitals: record.Vitals{Temperature: 38.4}})

	ctx, problems := startBrowser(t, exe, nil)

	shots := os.Getenv("CHARTSYNC_SCREENSHOTS")
	if shots == "" {
		shots = filepath.Join(os.TempDir(), "chartsync-screenshots")
	}
	require.NoError(t, os.MkdirAll(shots, 0o755))
	t.Logf("screenshots in %s", shots)
	shot := func(name string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, t2 *chromedp.Target) error {
			png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(shots, "web-"+name+".png"), png, 0o644)
		})
	}
	submit := chromedp.Click(chromedp.CSS("main form button[type=submit]"))
	err := chromedp.Do(ctx,
		chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile),
		chromedp.Navigate(f.ts.URL+"/patients"),
		chromedp.WaitVisible(chromedp.CSS("#f-user")),
		shot("login"),
		chromedp.SendKeys(chromedp.CSS("#f-user"), userID(record.RoleNurse)),
		chromedp.SendKeys(chromedp.CSS("#f-password"), password(record.RoleNurse)),
		submit,
		chromedp.WaitVisible(chromedp.CSS("#f-q")),
		chromedp.SendKeys(chromedp.CSS("#f-q"), "wanjiro"),
		submit,
		chromedp.WaitVisible(chromedp.CSS(".results a")),
		shot("find"),
		chromedp.Click(chromedp.CSS(".results a")),
		chromedp.WaitVisible(chromedp.CSS("#h-allergies")),
		chromedp.Navigate(f.ts.URL+"/chart/"+id+"/prescribe"),
		chromedp.WaitVisible(chromedp.CSS("#f-drug")),
		chromedp.SendKeys(chromedp.CSS("#f-drug"), "Amoxil"),
		chromedp.SendKeys(chromedp.CSS("#f-dose"), "500"),
		submit,
		chromedp.WaitVisible(chromedp.CSS("p.alert.high")),
		shot("prescribe"),
	)
	require.NoError(t, err)
	warning, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("p.alert.high")))
	require.NoError(t, err)
	assert.Contains(t, warning, "allergic to penicillin", "the allergy is shown at the moment of prescribing")
	note, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("p.note")))
	require.NoError(t, err)
	assert.Contains(t, note, "J01CA04")

	require.NoError(t, chromedp.Do(ctx, submit, chromedp.WaitVisible(chromedp.CSS("section.alerts")), shot("chart")))
	alerts, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("section.alerts")))
	require.NoError(t, err)
	assert.Contains(t, alerts, "ALERT")
	loc, err := chromedp.Run(ctx, chromedp.Location())
	require.NoError(t, err)
	assert.Equal(t, f.ts.URL+"/chart/"+id, loc)
	bg, err := chromedp.Run(ctx, chromedp.Evaluate[string](`getComputedStyle(document.querySelector("header")).backgroundColor`))
	require.NoError(t, err)
	assert.Equal(t, "rgb(11, 79, 108)", bg, "the stylesheet is served and applies")
	width, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`document.documentElement.scrollWidth`))
	require.NoError(t, err)
	assert.LessOrEqual(t, width, 390.0, "nothing is wider than a phone's screen")
	require.Len(t, f.chart(id).Prescriptions, 1)

	assert.Empty(t, problems(), "no JavaScript or console errors")
}

// unlabelled lists the page's form fields a screen reader cannot name:
// every input (but hidden ones and buttons), select and textarea needs a
// label, or an aria-label.
const unlabelled = `[...document.querySelectorAll("input, select, textarea")]
	.filter(e => !["hidden", "submit", "button"].includes(e.type))
	.filter(e => !(e.labels && e.labels.length) && !e.getAttribute("aria-label") && !e.getAttribute("aria-labelledby"))
	.map(e => e.name || e.id || e.outerHTML)`

// TestBrowserEveryFieldHasALabel walks the app's pages in Chromium, as a
// clinician and as an administrator (the settings, sync and every form of
// a chart with an entry of each kind and a conflict, and the merge of its
// duplicate), and finds every
// form field with a label the browser ties to it.
func TestBrowserEveryFieldHasALabel(t *testing.T) {
	exe := browser(t)
	f := newFixture(t)
	id, entries := chartWithEntries(f)
	conflictOn(t, f, id, entries[record.KindPrescription])
	dup := f.register(record.Register{GivenName: "Wanjiro", FamilyName: "Mwangi", EstimatedBirthYear: 1988})

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.NoSandbox)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()

	check := func(p string) int {
		require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(f.ts.URL+p), chromedp.WaitReady(chromedp.CSS("main"))), p)
		fields, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("main input:not([type=hidden]), main select, main textarea").length`))
		require.NoError(t, err)
		bad, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](unlabelled))
		require.NoError(t, err)
		assert.Empty(t, bad, "fields without a label on %s", p)
		return fields
	}
	assert.Equal(t, 2, check("/login"))
	// The forms each role is shown: a clinician's are most of them.
	least := map[record.Role]int{record.RoleClinician: 95, record.RoleAdministrator: 30}
	for _, role := range []record.Role{record.RoleClinician, record.RoleAdministrator} {
		require.NoError(t, chromedp.Do(ctx,
			chromedp.Navigate(f.ts.URL+"/login"),
			chromedp.SendKeys(chromedp.CSS("#f-user"), userID(role)),
			chromedp.SendKeys(chromedp.CSS("#f-password"), password(role)),
			chromedp.Click(chromedp.CSS("main form button[type=submit]")),
			chromedp.WaitVisible(chromedp.CSS("#f-q")),
		))
		pages := []string{"/patients", "/patients?q=wanjiru", "/register", "/sync", "/settings", "/chart/" + id}
		for _, cf := range chartForms {
			p := "/chart/" + id + "/" + cf.Name
			if cf.Entry != "" {
				p += "?entry=" + entries[cf.Entry]
			}
			pages = append(pages, p)
		}
		checked := 0
		for _, p := range pages {
			checked += check(p)
		}
		assert.Greater(t, checked, least[role], "the walk reached the forms as %s", role)
		assert.Equal(t, 1, check("/chart/"+dup+"/merge?into="+id), "the merge page asks for its reason, labelled, as %s", role)
		require.NoError(t, chromedp.Do(ctx, chromedp.Click(chromedp.CSS("form.logout button")), chromedp.WaitVisible(chromedp.CSS("#f-user"))))
	}
}
