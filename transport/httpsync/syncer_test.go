package httpsync_test

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/transport/httpsync"
	"github.com/chartsync/chartsync/transport/transporttest"
)

// waitStatus waits until the syncer's status satisfies ok, failing the
// test after a generous bound (a guard against hanging, not a timing).
func waitStatus(t *testing.T, s *httpsync.Syncer, what string, ok func(httpsync.Status) bool) httpsync.Status {
	t.Helper()
	guard := time.NewTimer(20 * time.Second)
	defer guard.Stop()
	for {
		st, changed := s.Watch()
		if ok(st) {
			return st
		}
		select {
		case <-changed:
		case <-guard.C:
			t.Fatalf("syncer never reached %q; last status %+v", what, st)
		}
	}
}

func fastSyncer() httpsync.SyncerConfig {
	return httpsync.SyncerConfig{
		Debounce: time.Millisecond, MaxDelay: 5 * time.Millisecond, Interval: time.Hour,
		MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond, Timeout: 10 * time.Second,
	}
}

func startSyncer(t *testing.T, cl *httpsync.Client, cfg httpsync.SyncerConfig) *httpsync.Syncer {
	t.Helper()
	s, err := httpsync.NewSyncer(cl, cfg)
	require.NoError(t, err)
	require.NoError(t, s.Start(context.Background()))
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestSyncerSyncsAfterEdits(t *testing.T) {
	c := newCloud(t, cloudOptions{memory: true})
	d := c.newDevice(t, "kamuga", "tablet", fastRetries())
	s, err := httpsync.NewSyncer(d.client, fastSyncer())
	require.NoError(t, err)
	assert.Equal(t, -1, s.Status().Pending, "pending is unknown before the first sync")
	require.NoError(t, s.Start(context.Background()))
	defer s.Close()
	require.Error(t, s.Start(context.Background()), "a syncer starts once")

	st := waitStatus(t, s, "first sync", func(st httpsync.Status) bool { return st.Syncs >= 1 })
	assert.True(t, st.Online, "the cloud answered")
	assert.Zero(t, st.Pending, "nothing waits to be sent")
	assert.False(t, st.LastSuccess.IsZero())

	id := registerAt(t, d.rep, "Wanjiru", "Mwangi", "kamuga")
	edit(t, d.rep, id, amoxicillin(500))
	s.Notify()
	st = waitStatus(t, s, "sync after the edits", func(st httpsync.Status) bool { return st.Syncs >= 2 && !st.Syncing })
	assert.Empty(t, st.LastError)
	assert.Contains(t, transporttest.ChartIDs(t, c.rep), id, "the edits reached the cloud")
	waitStatus(t, s, "nothing pending", func(st httpsync.Status) bool { return st.Pending == 0 })

	require.NoError(t, s.Close(), "close waits for the goroutine")
	require.NoError(t, s.Close(), "closing twice is harmless")
}

func TestSyncerDebounces(t *testing.T) {
	c := newCloud(t, cloudOptions{memory: true})
	d := c.newDevice(t, "kamuga", "tablet", fastRetries())
	cfg := fastSyncer()
	cfg.Debounce, cfg.MaxDelay = time.Hour, 2*time.Hour
	s := startSyncer(t, d.client, cfg)
	waitStatus(t, s, "first sync", func(st httpsync.Status) bool { return st.Syncs == 1 && !st.Syncing })

	registerAt(t, d.rep, "Wanjiru", "Mwangi", "kamuga")
	before := time.Now()
	s.Notify()
	st := waitStatus(t, s, "an edit counted", func(st httpsync.Status) bool { return st.Pending == 1 })
	assert.Equal(t, 1, st.Syncs, "an edit does not sync at once")
	assert.True(t, st.NextSync.After(before.Add(30*time.Minute)), "the sync waits for the debounce (next at %s)", st.NextSync)

	s.SyncNow()
	st = waitStatus(t, s, "sync now", func(st httpsync.Status) bool { return st.Syncs == 2 && !st.Syncing })
	assert.Zero(t, st.Pending)
	assert.True(t, st.NextSync.After(time.Now().Add(30*time.Minute)), "then the next sync is an Interval away")
}

// TestSyncerOutage takes the cloud away and brings it back on the same
// address: the syncer reports offline with the edits pending, backs off,
// and syncs soon after the cloud returns.
func TestSyncerOutage(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	c := newCloud(t, cloudOptions{memory: true, server: true, listen: func(*testing.T) net.Listener { return ln }})
	d := c.newDevice(t, "kamuga", "tablet", fastRetries())
	s := startSyncer(t, d.client, fastSyncer())
	waitStatus(t, s, "first sync", func(st httpsync.Status) bool { return st.Syncs >= 1 && st.Online })

	// The cloud goes away.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, c.server.Shutdown(ctx))
	id := registerAt(t, d.rep, "Wanjiru", "Mwangi", "kamuga")
	s.Notify()
	st := waitStatus(t, s, "offline", func(st httpsync.Status) bool { return !st.Online && st.Failures >= 2 })
	assert.NotEmpty(t, st.LastError, "the status says what went wrong")
	assert.Equal(t, 1, st.Pending, "the registration waits to be sent")
	assert.NotContains(t, transporttest.ChartIDs(t, c.rep), id)

	// The cloud comes back on the same address.
	ln2, err := net.Listen("tcp", addr)
	require.NoError(t, err, "listen again on %s", addr)
	srv := httpsync.NewServer(addr, c.handler, serverCert(t, c.ca), nil)
	go func() { _ = srv.ServeTLS(ln2, "", "") }()
	defer srv.Close()
	st = waitStatus(t, s, "back online", func(st httpsync.Status) bool { return st.Online && st.Pending == 0 && st.Failures == 0 })
	assert.Empty(t, st.LastError)
	assert.Contains(t, transporttest.ChartIDs(t, c.rep), id, "the edit made offline reached the cloud")
}

func TestSyncerRefused(t *testing.T) {
	c, _ := scriptedCloud(t, http.StatusForbidden, http.StatusForbidden)
	d := c.newDevice(t, "kamuga", "tablet", fastRetries())
	s := startSyncer(t, d.client, fastSyncer())
	st := waitStatus(t, s, "refused", func(st httpsync.Status) bool { return st.Failures >= 1 && !st.Syncing })
	assert.True(t, st.Online, "a refusal means the cloud was reached")
	assert.Contains(t, st.LastError, "403")
	assert.True(t, st.NextSync.After(time.Now().Add(30*time.Minute)), "a refusal is not retried at once")
}

// A refused bundle is not sent again on the Syncer's own schedule: after a
// refusal, the Syncer sends again only a bundle that differs (a new edit)
// or when asked (SyncNow). Each refusal would otherwise cost the cloud a
// quarantined copy of the bundle every Interval, for ever.
func TestSyncerDoesNotResendARefusedBundle(t *testing.T) {
	c, s := scriptedCloud(t, http.StatusBadRequest, http.StatusBadRequest, http.StatusBadRequest)
	d := c.newDevice(t, "kamuga", "tablet", fastRetries())
	id := registerAt(t, d.rep, "Wanjiru", "Mwangi", "kamuga")
	cfg := fastSyncer()
	cfg.Interval = time.Millisecond // every wake-up would resend
	sy := startSyncer(t, d.client, cfg)
	st := waitStatus(t, sy, "refused", func(st httpsync.Status) bool { return st.Failures >= 1 && !st.Syncing })
	assert.True(t, st.Refused, "the status says the cloud refused the bundle")
	assert.Contains(t, st.LastError, "400")

	// Many wake-ups later, the same bundle has not been sent again.
	for range 20 {
		_, changed := sy.Watch()
		<-changed
	}
	st = sy.Status()
	assert.EqualValues(t, 1, s.seen.Load(), "the refused bundle was sent once")
	assert.Equal(t, 1, st.Failures, "a bundle not sent again is not another failure")
	assert.True(t, st.Refused)

	// A new edit makes another bundle: it is sent (and refused again).
	edit(t, d.rep, id, amoxicillin(500))
	sy.Notify()
	waitStatus(t, sy, "second refusal", func(st httpsync.Status) bool { return st.Failures >= 2 && !st.Syncing })
	assert.EqualValues(t, 2, s.seen.Load())
	for range 20 {
		_, changed := sy.Watch()
		<-changed
	}
	assert.EqualValues(t, 2, s.seen.Load(), "the second refused bundle was sent once too")

	// Asked to, the Syncer sends it again: refused once more, then the
	// cloud takes it.
	sy.SyncNow()
	waitStatus(t, sy, "third refusal", func(st httpsync.Status) bool { return st.Failures >= 3 && !st.Syncing })
	sy.SyncNow()
	st = waitStatus(t, sy, "taken", func(st httpsync.Status) bool { return st.Syncs >= 1 && !st.Syncing })
	assert.False(t, st.Refused, "a success clears the refusal")
	assert.Empty(t, st.LastError)
	assert.Contains(t, transporttest.ChartIDs(t, c.rep), id)
}
