package web

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/device/login"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
)

const (
	testClinic = "kamuga"
	testDevice = "kamuga-tablet"
)

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fixture is the app on a real replica in a temporary directory, with one
// user of each role (user ID "u-" + role, password password(role)).
type fixture struct {
	t     testing.TB
	r     *replica.Replica
	srv   *Server
	ts    *httptest.Server
	clock *clock
	sync  *fakeSyncer
}

func password(role record.Role) string { return "pass-word-" + string(role) }

func userID(role record.Role) string { return "u-" + string(role) }

func author(role record.Role) record.Author {
	return record.Author{UserID: userID(role), Name: "Test " + string(role), Role: role, Device: testDevice}
}

// lightParams keep the tests' password hashes cheap; the guard checks
// them all the same.
var lightParams = login.Params{Memory: 64, Time: 1, Threads: 1}

// newFixture makes the fixture; opts change the server's Config first.
func newFixture(t testing.TB, opts ...func(*Config)) *fixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	c := &clock{t: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)}
	r, err := replica.Open(ctx, filepath.Join(dir, "replica.db"), replica.Config{Clinic: testClinic, Now: c.now})
	require.NoError(t, err)
	t.Cleanup(func() { r.Close() })
	admin := author(record.RoleAdministrator)
	for _, role := range append([]record.Role{record.RoleAdministrator}, record.Roles()...) {
		h, err := login.Hash(password(role), lightParams)
		require.NoError(t, err)
		_, err = r.UpdateUser(ctx, testClinic, admin, record.UserUpdate{UserID: userID(role), Name: "Test " + string(role), Role: role, PasswordHash: h})
		require.NoError(t, err)
	}
	g, err := login.OpenGuard(filepath.Join(dir, "login-guard.json"), login.Policy{DecoyParams: lightParams}, c.now)
	require.NoError(t, err)
	f := &fixture{t: t, r: r, clock: c, sync: newFakeSyncer()}
	cfg := Config{Replica: r, Clinic: testClinic, Device: testDevice, Guard: g, Now: c.now, Sync: f.sync, Location: time.UTC}
	for _, o := range opts {
		o(&cfg)
	}
	f.srv, err = New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { f.srv.Close() })
	f.ts = httptest.NewServer(f.srv)
	t.Cleanup(f.ts.Close)
	return f
}

// register makes a chart as a clinician.
func (f *fixture) register(reg record.Register) string {
	f.t.Helper()
	if reg.HomeClinic == "" {
		reg.HomeClinic = testClinic
	}
	if reg.Sex == "" {
		reg.Sex = "female"
	}
	id, err := f.r.Register(context.Background(), author(record.RoleClinician), reg)
	require.NoError(f.t, err)
	return id
}

func (f *fixture) edit(chart string, op record.Op) string {
	f.t.Helper()
	res, err := f.r.Edit(context.Background(), chart, author(record.RoleClinician), op)
	require.NoError(f.t, err)
	return res.EntryID
}

func (f *fixture) chart(id string) record.View {
	f.t.Helper()
	v, err := f.r.Chart(context.Background(), id)
	require.NoError(f.t, err)
	return v
}

// client is a browser: it keeps cookies, does not follow redirects, and
// sends the CSRF token of the last page it read.
type client struct {
	t    testing.TB
	f    *fixture
	hc   *http.Client
	csrf string
}

var csrfField = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)

func (f *fixture) client() *client {
	jar, err := cookiejar.New(nil)
	require.NoError(f.t, err)
	return &client{t: f.t, f: f, hc: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (c *client) do(req *http.Request) (int, string, *http.Response) {
	c.t.Helper()
	resp, err := c.hc.Do(req)
	require.NoError(c.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(c.t, err)
	if m := csrfField.FindSubmatch(b); m != nil {
		c.csrf = string(m[1])
	}
	return resp.StatusCode, string(b), resp
}

func (c *client) get(path string) (int, string) {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodGet, c.f.ts.URL+path, nil)
	require.NoError(c.t, err)
	code, body, _ := c.do(req)
	return code, body
}

// post sends a form with the client's CSRF token (unless the form has
// its own "csrf").
func (c *client) post(path string, form url.Values) (int, string, *http.Response) {
	c.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	if _, ok := form["csrf"]; !ok {
		form.Set("csrf", c.csrf)
	}
	req, err := http.NewRequest(http.MethodPost, c.f.ts.URL+path, strings.NewReader(form.Encode()))
	require.NoError(c.t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return c.do(req)
}

// login logs the client in as a user of role.
func (c *client) login(role record.Role) {
	c.t.Helper()
	code, _ := c.get("/login")
	require.Equal(c.t, http.StatusOK, code)
	code, body, resp := c.post("/login", url.Values{"user": {userID(role)}, "password": {password(role)}})
	require.Equal(c.t, http.StatusSeeOther, code, "login as %s: %s", role, body)
	require.Equal(c.t, "/patients", resp.Header.Get("Location"))
	code, body = c.get("/patients")
	require.Equal(c.t, http.StatusOK, code, body)
}

// fakeSyncer counts syncs and reports a fixed result, or err; with gate
// set, a sync waits for it (or its context) after reporting its first
// phase.
type fakeSyncer struct {
	mu     sync.Mutex
	syncs  int
	err    error
	gate   chan struct{}
	sent   chan struct{} // if set, told when a gated sync has reported its first phase
	during func()        // if set, called as the sync receives (to write what it brings)
	status SyncStatus
	hand   []string // hand carries: kind and folder
}

func newFakeSyncer() *fakeSyncer {
	return &fakeSyncer{status: SyncStatus{Connected: true, Cloud: "https://cloud.example:8443", Pending: 2}}
}

func (s *fakeSyncer) Status(context.Context) (SyncStatus, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status, nil
}

func (s *fakeSyncer) Sync(ctx context.Context, progress func(SyncProgress)) (SyncResult, error) {
	s.mu.Lock()
	s.syncs++
	gate, sent, err := s.gate, s.sent, s.err
	s.mu.Unlock()
	progress(SyncProgress{Phase: PhaseSending, Round: 1, Done: 1024, Total: 4096})
	if sent != nil {
		sent <- struct{}{}
	}
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return SyncResult{}, ctx.Err()
		}
	}
	if err != nil {
		return SyncResult{}, err
	}
	if s.during != nil {
		s.during()
	}
	progress(SyncProgress{Phase: PhaseDone, Round: 1})
	return SyncResult{Sent: 1, Received: 3, Charts: 2, Bytes: 2048, RoundTrips: 1, Duration: 300 * time.Millisecond}, nil
}

func (s *fakeSyncer) carry(kind, dir string) (SyncResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hand = append(s.hand, kind+" "+dir)
	return SyncResult{Files: 1, Sent: 4, Path: dir + "/cs-x.bundle"}, s.err
}

func (s *fakeSyncer) ExportFile(_ context.Context, dir string) (SyncResult, error) {
	return s.carry("export", dir)
}

func (s *fakeSyncer) ImportFile(_ context.Context, dir string) (SyncResult, error) {
	return s.carry("import", dir)
}

func (s *fakeSyncer) HandToPhone(_ context.Context, dir string) (SyncResult, error) {
	return s.carry("phone", dir)
}

// waitSync waits for the sync job under way, if any, to end.
func (s *Server) waitSync(ctx context.Context) error {
	s.mu.Lock()
	j := s.sync.job
	s.mu.Unlock()
	if j == nil {
		return nil
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-j.done:
		return nil
	}
}

// conflictOn makes a dose conflict on prescription rx of chart id: a
// second replica revises the dose while the fixture's does too, and its
// change is received.
func conflictOn(t testing.TB, f *fixture, id, rx string) {
	t.Helper()
	ctx := context.Background()
	other, err := replica.Open(ctx, filepath.Join(t.TempDir(), "other.db"), replica.Config{Clinic: testClinic})
	require.NoError(t, err)
	defer other.Close()
	exchange := func(from, to *replica.Replica) {
		out, err := from.MakeBundle(ctx, to.ID())
		require.NoError(t, err)
		_, err = to.Receive(ctx, out.Data)
		require.NoError(t, err)
	}
	exchange(f.r, other)
	laptop := record.Author{UserID: "u-mutua", Name: "Dr Mutua", Role: record.RoleClinician, Device: "kamuga-laptop"}
	_, err = other.Edit(ctx, id, laptop, record.ReviseDose{PrescriptionID: rx, Dose: 750})
	require.NoError(t, err)
	f.edit(id, record.ReviseDose{PrescriptionID: rx, Dose: 250})
	exchange(other, f.r)
	require.Len(t, f.chart(id).Conflicts, 1)
}
