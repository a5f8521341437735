package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// chromium finds a Chromium to drive, or skips the test saying which
// browsers it looked for.
func chromium(t *testing.T) string {
	names := []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"}
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	t.Skipf("no headless browser found (looked for %v on PATH): install Debian's chromium package to run this test", names)
	return ""
}

// screenshotDir is where browser tests save screenshots of the main
// pages: $CHARTSYNC_SCREENSHOTS, or chartsync-screenshots in the
// system's temporary folder (the README says so).
func screenshotDir(t *testing.T) string {
	dir := os.Getenv("CHARTSYNC_SCREENSHOTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "chartsync-screenshots")
	}
	require.NoError(t, os.MkdirAll(dir, 0o755))
	t.Logf("screenshots in %s", dir)
	return dir
}

// newDevice sets up a clinic device in a new data directory and enrols
// and connects it; the clinic's first device also sets up its
// administrator, u-admin with password admin-pass-1.
func newDevice(t *testing.T, c *testCloud, name string, first bool) string {
	dir := t.TempDir()
	args := []string{"init", "-clinic", "kamuga", "-device", name}
	if first {
		args = append(args, "-admin", "u-admin", "-admin-name", "Wairimu")
	}
	must(t, dir, twice("admin-pass-1"), args...)
	c.enrol(t, dir, name)
	return dir
}

// serveApp runs "clinic serve" on dir until the test ends, and returns
// the app's address.
func serveApp(t *testing.T, dir string, args ...string) string {
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		var errOut strings.Builder
		code := run(ctx, append([]string{"-dir", dir, "serve", "-addr", "127.0.0.1:0"}, args...), strings.NewReader(""), pw, &errOut)
		pw.CloseWithError(fmt.Errorf("serve ended (%d): %s", code, errOut.String()))
		done <- code
	}()
	t.Cleanup(func() {
		cancel()
		assert.Zero(t, <-done, "serve stops cleanly")
	})
	sc := bufio.NewScanner(pr)
	addr := regexp.MustCompile(`is at (http://127\.0\.0\.1:\d+)/`)
	for sc.Scan() {
		if m := addr.FindStringSubmatch(sc.Text()); m != nil {
			go func() { _, _ = io.Copy(io.Discard, pr) }()
			return m[1]
		}
	}
	t.Fatalf("serve printed no address: %v", sc.Err())
	return ""
}

// browserProblems collects what a page must never do: a JavaScript
// exception or console error, a request that failed or was answered with
// an error status.
type browserProblems struct {
	mu   sync.Mutex
	list []string
}

func (p *browserProblems) listen(ev any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch e := ev.(type) {
	case *runtime.EventExceptionThrown:
		p.list = append(p.list, "exception: "+e.ExceptionDetails.Text)
	case *runtime.EventConsoleAPICalled:
		if e.Type == runtime.ConsoleAPICalledTypeError {
			p.list = append(p.list, fmt.Sprintf("console error: %v", e.Args))
		}
	case *network.EventLoadingFailed:
		if !e.Canceled {
			p.list = append(p.list, "request failed: "+e.ErrorText)
		}
	case *network.EventResponseReceived:
		if e.Response.Status >= 400 {
			p.list = append(p.list, fmt.Sprintf("%s answered %d", e.Response.URL, e.Response.Status))
		}
	}
}

func (p *browserProblems) get() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.list...)
}

// TestBrowserTwoDevicesSettleAConflict: two clinic apps with their own
// data directories, one cloud on 127.0.0.1. Both devices hold a
// prescription; offline, a clinician on each revises its dose to another
// value; each syncs with its Sync button. The conflict is shown on both,
// with both values and who wrote them, and the status bar says the sync
// brought it; the laptop's clinician settles it, both sync, and the
// tablet shows the kept dose and no conflict. Every page the browser
// opens is free of JavaScript errors and failed requests.
func TestBrowserTwoDevicesSettleAConflict(t *testing.T) {
	exe := chromium(t)
	shots := screenshotDir(t)
	cloud := newTestCloud(t)
	tab := newDevice(t, cloud, "tab", true)
	laptop := newDevice(t, cloud, "laptop", false)

	// The administrator adds a clinician for each device; a patient with
	// a prescription is registered on the tablet, and both devices sync.
	code, _, errOut := clinicIn(t, tab, "admin-pass-1\n", "login", "-user", "u-admin")
	require.Zero(t, code, errOut)
	for _, u := range []string{"u-mutua", "u-otieno"} {
		code, _, errOut = clinicIn(t, tab, twice("pass-of-"+u), "user", "add", "-id", u, "-name", "Dr "+u[2:], "-role", "clinician")
		require.Zero(t, code, errOut)
	}
	code, _, errOut = clinicIn(t, tab, "pass-of-u-mutua\n", "login", "-user", "u-mutua")
	require.Zero(t, code, errOut)
	code, out, errOut := clinic(t, tab, "register", "-given", "Wanjiru", "-family", "Mwangi", "-sex", "female", "-born-year", "1988", "-village", "Kamuga")
	require.Zero(t, code, errOut)
	chart := regexp.MustCompile(`chart ([0-9a-f-]+)`).FindStringSubmatch(out)
	require.Len(t, chart, 2, out)
	code, _, errOut = clinic(t, tab, "prescribe", chart[1], "-drug", "Amoxicillin", "-dose", "500", "-unit", "mg", "-route", "oral", "-freq", "TDS")
	require.Zero(t, code, errOut)
	for _, dir := range []string{tab, laptop, tab} {
		code, _, errOut = clinic(t, dir, "sync", "-quiet")
		require.Zero(t, code, errOut)
	}

	// The apps sync only when asked, so that the edits are made offline.
	apps := map[string]string{"tab": serveApp(t, tab, "-autosync", "0"), "laptop": serveApp(t, laptop, "-autosync", "0")}
	// The laptop's app is opened as localhost: the two apps' cookies are
	// kept apart by host, as two devices' would be.
	apps["laptop"] = strings.Replace(apps["laptop"], "127.0.0.1", "localhost", 1)

	problems := &browserProblems{}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.NoSandbox)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	bctx, cancel := chromedp.NewContext(actx, chromedp.WithListener(problems.listen))
	defer cancel()
	bctx, cancel = context.WithTimeout(bctx, 4*time.Minute)
	defer cancel()
	// The tablet's browser starts first; the laptop's is a separate
	// browser context of it (its own cookies).
	require.NoError(t, chromedp.Do(bctx))
	lctx, cancel := chromedp.NewContext(bctx, chromedp.WithNewBrowserContext(), chromedp.WithListener(problems.listen))
	defer cancel()
	browsers := map[string]context.Context{"tab": bctx, "laptop": lctx}
	users := map[string]string{"tab": "u-mutua", "laptop": "u-otieno"}
	jobs := map[string]int{}

	shot := func(dev, name string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(shots, dev+"-"+name+".png"), png, 0o644)
		})
	}
	submit := chromedp.Click(chromedp.CSS("main form button[type=submit]"))
	openChart := func(dev string) []chromedp.Action[chromedp.Void] {
		return []chromedp.Action[chromedp.Void]{
			chromedp.Navigate(apps[dev] + "/patients?q=wanjiru"),
			chromedp.Click(chromedp.CSS(".results a")),
			chromedp.WaitVisible(chromedp.CSS("#h-rx")),
		}
	}
	// syncNow presses Sync now and waits until the page, which follows
	// the sync, shows its outcome.
	syncNow := func(dev string) {
		t.Helper()
		jobs[dev]++
		done := fmt.Sprintf(`document.querySelector('section.outcome[data-job="%d"]') !== null && document.querySelector('section.progress') === null`, jobs[dev])
		require.NoError(t, chromedp.Do(browsers[dev],
			chromedp.Navigate(apps[dev]+"/sync"),
			chromedp.Click(chromedp.CSS(`form[action="/sync"] button`)),
		), "sync on %s", dev)
		// The page reloads itself while the sync runs: a poll the reload
		// cuts short is tried again, for at most a minute.
		for tries := 0; ; tries++ {
			_, err := chromedp.Run(browsers[dev], chromedp.Poll[bool](done, chromedp.WithPollingTimeout(5*time.Second)))
			if err == nil {
				break
			}
			require.Less(t, tries, 12, "the sync on %s ends: %v", dev, err)
		}
		outcome, err := chromedp.Run(browsers[dev], chromedp.Text(chromedp.CSS("section.outcome")))
		require.NoError(t, err)
		require.Contains(t, outcome, "Sent", "the sync on %s worked: %s", dev, outcome)
	}

	for _, dev := range []string{"tab", "laptop"} {
		ctx := browsers[dev]
		require.NoError(t, chromedp.Do(ctx,
			chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile),
			chromedp.Navigate(apps[dev]+"/login"),
			chromedp.WaitVisible(chromedp.CSS("#f-user")),
			shot(dev, "login"),
			chromedp.SendKeys(chromedp.CSS("#f-user"), users[dev]),
			chromedp.SendKeys(chromedp.CSS("#f-password"), "pass-of-"+users[dev]),
			submit,
			chromedp.WaitVisible(chromedp.CSS("#f-q")),
		), "log in on %s", dev)
	}
	// Offline, each device revises the same prescription's dose.
	for dev, dose := range map[string]string{"tab": "250", "laptop": "1000"} {
		steps := append(openChart(dev),
			chromedp.Click(chromedp.CSS(`a[href*="revise-dose"]`)),
			chromedp.WaitVisible(chromedp.CSS("#f-dose")),
			chromedp.SendKeys(chromedp.CSS("#f-dose"), dose),
			chromedp.SendKeys(chromedp.CSS("#f-reason"), "weight-based dose"),
			submit,
			chromedp.WaitVisible(chromedp.CSS(".flash")),
		)
		require.NoError(t, chromedp.Do(browsers[dev], steps...), "revise the dose on %s", dev)
		bar, err := chromedp.Run(browsers[dev], chromedp.Text(chromedp.CSS(".syncbar")))
		require.NoError(t, err)
		assert.Contains(t, bar, "1 change waiting to be sent", "%s's status bar counts its edit", dev)
	}

	syncNow("tab")
	syncNow("laptop")
	bar, err := chromedp.Run(lctx, chromedp.Text(chromedp.CSS(".syncbar")))
	require.NoError(t, err)
	assert.Contains(t, bar, "the last sync brought 1 conflict to settle", "the laptop's status bar says what the sync brought")
	require.NoError(t, chromedp.Do(lctx, shot("laptop", "sync")))
	news, err := chromedp.Run(lctx, chromedp.Text(chromedp.CSS("section.outcome")))
	require.NoError(t, err)
	assert.Contains(t, news, "Wanjiru Mwangi", "the sync page lists the chart with the conflict")
	syncNow("tab")

	// The conflict is shown on both, with both values and their authors.
	for _, dev := range []string{"tab", "laptop"} {
		require.NoError(t, chromedp.Do(browsers[dev], append(openChart(dev), chromedp.WaitVisible(chromedp.CSS("#conflicts")), shot(dev, "conflict"))...))
		text, err := chromedp.Run(browsers[dev], chromedp.Text(chromedp.CSS("#conflicts")))
		require.NoError(t, err)
		for _, want := range []string{"dose", "250", "Dr mutua", "1000", "Dr otieno", "on tab", "on laptop"} {
			assert.Contains(t, text, want, "%s shows the conflict", dev)
		}
	}
	// The laptop's clinician keeps 250.
	require.NoError(t, chromedp.Do(lctx,
		chromedp.Click(chromedp.CSS(`#conflicts input[name=value][value="250"]`)),
		chromedp.Click(chromedp.CSS(`#conflicts button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(".flash")),
	))
	flash, err := chromedp.Run(lctx, chromedp.Text(chromedp.CSS(".flash")))
	require.NoError(t, err)
	assert.Contains(t, flash, "Conflict settled")
	syncNow("laptop")
	syncNow("tab")
	require.NoError(t, chromedp.Do(bctx, append(openChart("tab"), shot("tab", "chart"))...))
	rx, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS("section[aria-labelledby=h-rx]")))
	require.NoError(t, err)
	assert.Contains(t, rx, "250 mg", "the tablet shows the dose kept on the laptop")
	conflicts, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`document.querySelector("#conflicts") === null`))
	require.NoError(t, err)
	assert.True(t, conflicts, "the tablet shows no conflict once the settlement has synced")

	assert.Empty(t, problems.get(), "no JavaScript error, console error or failed request")
}
