package web

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/record"
)

// turns is the background sync's clock in a test: each wait the loop asks
// for is handed to the test, which lets it pass by firing.
type turns struct {
	asked chan time.Duration
	fire  chan time.Time
}

func newTurns() *turns {
	return &turns{asked: make(chan time.Duration), fire: make(chan time.Time)}
}

func (c *turns) after(d time.Duration) <-chan time.Time {
	c.asked <- d
	return c.fire
}

// next waits for the loop to ask for its next wait, and returns it.
func (c *turns) next(t *testing.T) time.Duration {
	t.Helper()
	select {
	case d := <-c.asked:
		return d
	case <-time.After(time.Minute):
		t.Fatal("the background sync did not ask for its next turn")
		return 0
	}
}

// logBuffer is a log the test reads, safe for concurrent use.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestBackgroundSyncBacksOff: the background sync syncs at once and then
// every AutoSync; while the cloud cannot be reached it waits twice as long
// after each failure, up to AutoSyncMaxWait, and warns once, not at each
// failure; once the cloud answers it is back to AutoSync; Close stops it.
func TestBackgroundSyncBacksOff(t *testing.T) {
	clock, logs := newTurns(), &logBuffer{}
	f := newFixture(t, func(c *Config) {
		c.After, c.AutoSync, c.AutoSyncMaxWait = clock.after, 5*time.Minute, time.Hour
		c.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	f.sync.err = fmt.Errorf("%w: dial tcp: no route to host", ErrOffline)
	require.NoError(t, f.srv.Start(context.Background()))
	c := f.client()
	c.login(record.RoleNurse)

	var waits []time.Duration
	for range 7 {
		waits = append(waits, clock.next(t))
		clock.fire <- time.Time{}
	}
	waits = append(waits, clock.next(t))
	assert.Equal(t, []time.Duration{0, 5 * time.Minute, 10 * time.Minute, 20 * time.Minute, 40 * time.Minute, time.Hour, time.Hour, time.Hour}, waits,
		"at once, then twice as long after each failure, up to an hour")
	assert.Equal(t, 7, f.sync.syncs)
	assert.Equal(t, 1, strings.Count(logs.String(), "level=WARN"), "one warning for failures in a row:\n%s", logs)
	_, body := c.get("/patients")
	assert.Contains(t, body, `class="syncbar offline"`, "every page says the device is offline")
	assert.Contains(t, body, "2 changes waiting to be sent")
	_, body = c.get("/sync")
	assert.Contains(t, body, "The cloud could not be reached.")

	f.sync.mu.Lock()
	f.sync.err = nil
	f.sync.mu.Unlock()
	clock.fire <- time.Time{}
	assert.Equal(t, 5*time.Minute, clock.next(t), "after a sync that worked, the next is AutoSync later")
	assert.Contains(t, logs.String(), "reached the cloud again")
	_, body = c.get("/patients")
	assert.Contains(t, body, `class="syncbar online"`)

	closed := make(chan struct{})
	go func() { f.srv.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(time.Minute):
		t.Fatal("Close did not stop the background sync")
	}
	assert.Equal(t, 8, f.sync.syncs, "nothing syncs after Close")
}

// TestBackgroundSyncWaitsForTheUsersSync: a background turn that comes
// while the user's sync runs does not start a second one.
func TestBackgroundSyncWaitsForTheUsersSync(t *testing.T) {
	clock := newTurns()
	f := newFixture(t, func(c *Config) { c.After = clock.after })
	gate, sent := make(chan struct{}), make(chan struct{}, 1)
	f.sync.gate, f.sync.sent = gate, sent
	c := f.client()
	c.login(record.RoleNurse)
	code, _, _ := c.post("/sync", nil)
	require.Equal(t, http.StatusSeeOther, code)
	<-sent
	require.NoError(t, f.srv.Start(context.Background()))
	assert.Equal(t, time.Duration(0), clock.next(t))
	clock.fire <- time.Time{}
	assert.Equal(t, DefaultAutoSync, clock.next(t), "the turn passes")
	assert.Equal(t, 1, f.sync.syncs, "no second sync while the user's runs")
	close(gate)
	require.NoError(t, f.srv.waitSync(context.Background()))
}

// TestHandCarry: the sync page's USB and phone forms run the Syncer's
// hand carries in the folder given, and show what they did; a folder
// that is not a full path is refused before anything runs.
func TestHandCarry(t *testing.T) {
	f := newFixture(t)
	c := f.client()
	c.login(record.RoleNurse)
	_, body := c.get("/sync")
	for _, k := range []string{"export", "import", "phone"} {
		assert.Contains(t, body, `action="/sync/`+k+`"`)
	}
	code, _, _ := c.post("/sync/export", url.Values{"folder": {"usb"}})
	require.Equal(t, http.StatusSeeOther, code)
	_, body = c.get("/sync")
	assert.Contains(t, body, "Give the folder&#39;s full name")
	assert.Empty(t, f.sync.hand, "nothing runs for a folder that is not a full path")

	for _, k := range []string{"export", "import", "phone"} {
		code, _, _ = c.post("/sync/"+k, url.Values{"folder": {"/media/usb/"}})
		require.Equal(t, http.StatusSeeOther, code, k)
		require.NoError(t, f.srv.waitSync(context.Background()))
		_, body = c.get("/sync")
		switch k {
		case "export":
			assert.Contains(t, body, "Wrote 4 changes for the cloud to /media/usb/cs-x.bundle.")
		case "import":
			assert.Contains(t, body, "Read 1 file")
		case "phone":
			assert.Contains(t, body, "Exchanged 1 bundle with the phone")
		}
		assert.Contains(t, body, `value="/media/usb"`, "the folder is offered again")
	}
	assert.Equal(t, []string{"export /media/usb", "import /media/usb", "phone /media/usb"}, f.sync.hand)
	code, _, _ = c.post("/sync/elsewhere", url.Values{"folder": {"/media/usb"}})
	assert.Equal(t, http.StatusNotFound, code)
}

// TestSyncNewsShowsWhatItBrought: after a sync that changed charts, every
// page says how many conflicts to settle and alerts it brought, as the
// user's role may see them, and the sync page lists those charts; charts
// the sync did not change are not listed.
func TestSyncNewsShowsWhatItBrought(t *testing.T) {
	f := newFixture(t)
	old := f.register(record.Register{GivenName: "Otieno", FamilyName: "Odhiambo", EstimatedBirthYear: 2019})
	f.edit(old, record.AddAllergy{Substance: "penicillin", Severity: "severe"})
	f.edit(old, record.Prescribe{Drug: "Amoxicillin", Dose: 500, DoseUnit: "mg", Route: "oral", Frequency: "TDS"})
	id := f.register(record.Register{GivenName: "Wanjiru", FamilyName: "Mwangi", EstimatedBirthYear: 1988})
	f.clock.advance(time.Minute)
	f.sync.during = func() {
		// What the cloud brings: an allergy, and a drug it alerts on.
		f.edit(id, record.AddAllergy{Substance: "penicillin", Severity: "severe"})
		f.edit(id, record.Prescribe{Drug: "Amoxicillin", Dose: 500, DoseUnit: "mg", Route: "oral", Frequency: "TDS"})
	}
	c := f.client()
	c.login(record.RoleClinician)
	_, body := c.get("/patients")
	assert.NotContains(t, body, "the last sync brought", "no news before a sync")
	code, _, _ := c.post("/sync", nil)
	require.Equal(t, http.StatusSeeOther, code)
	require.NoError(t, f.srv.waitSync(context.Background()))
	_, body = c.get("/patients")
	assert.Contains(t, body, "the last sync brought 1 alert<")
	_, body = c.get("/sync")
	assert.Contains(t, body, `href="/chart/`+id+`"`, "the chart the sync changed is listed")
	assert.Contains(t, body, "allergic to penicillin")
	assert.NotContains(t, body, `href="/chart/`+old+`"`, "a chart the sync did not change is not")
}

// TestForkedDeviceStopsBackgroundSync: a sync refused because the
// device's data folder is an old copy of itself (ErrForked) stops the
// background sync, as a revoked device's does (trying again cannot
// help), and the sync page says what happened, that nothing is lost and
// what to run.
func TestForkedDeviceStopsBackgroundSync(t *testing.T) {
	clock := newTurns()
	f := newFixture(t, func(c *Config) { c.After = clock.after })
	f.sync.err = fmt.Errorf("%w: replica 0123 is a copy of a replica that went on without it", ErrForked)
	require.NoError(t, f.srv.Start(context.Background()))
	c := f.client()
	c.login(record.RoleNurse)
	assert.Equal(t, time.Duration(0), clock.next(t))
	clock.fire <- time.Time{}

	closed := make(chan struct{})
	go func() { f.srv.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(time.Minute):
		t.Fatal("the background sync went on after the device was found to be an old copy")
	}
	assert.Equal(t, 1, f.sync.syncs, "no second try")
	_, body := c.get("/sync")
	for _, want := range []string{"data folder is an old copy", "Nothing is lost", "clinic recover -to NEW-DIR"} {
		assert.Contains(t, body, want)
	}
}
