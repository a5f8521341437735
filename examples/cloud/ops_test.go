package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica/store/postgres/pgtest"
)

// get fetches url and returns its status and body.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err, "GET %s", url)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

// metric returns the value of the sample named series (name and labels,
// as the text format writes them) in a /metrics answer, and whether
// there is one.
func metric(body, series string) (float64, bool) {
	lines := bufio.NewScanner(strings.NewReader(body))
	for lines.Scan() {
		name, value, ok := strings.Cut(lines.Text(), " ")
		if ok && name == series {
			v, err := strconv.ParseFloat(value, 64)
			return v, err == nil
		}
	}
	return 0, false
}

// serveWithOps runs serve with -ops and returns the devices' and the
// operator's addresses.
func serveWithOps(t *testing.T, args ...string) (addr, ops string, stop func() (int, string)) {
	t.Helper()
	opsAddrs := make(chan string, 1)
	opsListening = func(a string) { opsAddrs <- a }
	t.Cleanup(func() { opsListening = nil })
	addr, stop = serverWith(t, append(args, "-ops", "127.0.0.1:0")...)
	return addr, <-opsAddrs, stop
}

// TestOperatorEndpoints: a node started with -ops answers /healthz,
// /readyz and /metrics there, and a sync moves its metrics: the syncs
// by result, the bundle bytes and changes each way, a latency sample;
// on a database, the pool's statistics too.
func TestOperatorEndpoints(t *testing.T) {
	for _, tc := range []struct {
		name string
		at   func(t *testing.T) []string
		db   bool
	}{
		{name: "data directory", at: func(t *testing.T) []string { return []string{"-dir", filepath.Join(t.TempDir(), "cloud-data")} }},
		{name: "database", db: true, at: func(t *testing.T) []string {
			return []string{"-db", pgtest.ConnString(t), "-db-schema", pgtest.Schema(t), "-key-file", filepath.Join(t.TempDir(), "operator.key")}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			at := tc.at(t)
			if tc.db {
				code, _, stderr := cloud(t, append([]string{"init"}, at...)...)
				require.Equal(t, 0, code, "init: %s", stderr)
			}
			tablet, cred := enrolledDevice(t, "kamuga-tablet-1", "kamuga", at)
			addr, ops, stop := serveWithOps(t, append([]string{"serve", "-addr", "127.0.0.1:0", "-dev-cert"}, at...)...)
			base := "http://" + ops

			code, body := get(t, base+pathHealth)
			assert.Equal(t, http.StatusOK, code, "healthz: %s", body)
			code, body = get(t, base+pathReady)
			assert.Equal(t, http.StatusOK, code, "readyz: %s", body)
			code, body = get(t, base+pathMetrics)
			require.Equal(t, http.StatusOK, code)
			_, ok := metric(body, `chartsync_syncs_total{result="ok"}`)
			assert.False(t, ok, "no sync yet")
			if tc.db {
				v, ok := metric(body, "chartsync_db_pool_max_conns")
				assert.True(t, ok && v > 0, "the database pool's size is reported")
			} else {
				_, ok := metric(body, "chartsync_db_pool_max_conns")
				assert.False(t, ok, "no pool without a database")
			}

			nurse := record.Author{UserID: "u-achieng", Role: record.RoleNurse}
			_, err := tablet.Register(ctx, nurse, record.Register{GivenName: "Wanjiru", Sex: "female", EstimatedBirthYear: 1988, HomeClinic: "kamuga"})
			require.NoError(t, err)
			r := syncWith(t, tablet, cred, addr)

			_, body = get(t, base+pathMetrics)
			v, _ := metric(body, `chartsync_syncs_total{result="ok"}`)
			assert.Equal(t, float64(r.RoundTrips), v, "every round trip of the sync is counted")
			v, _ = metric(body, `chartsync_sync_changes_total{direction="in"}`)
			assert.Equal(t, float64(r.ChangesSent), v, "the changes the device sent")
			v, _ = metric(body, `chartsync_sync_bundle_bytes_total{direction="in"}`)
			assert.Equal(t, float64(r.BytesSent), v, "the bundle bytes the device sent")
			v, _ = metric(body, `chartsync_sync_bundle_bytes_total{direction="out"}`)
			assert.Equal(t, float64(r.BytesReceived), v, "the bundle bytes the device received")
			v, _ = metric(body, `chartsync_sync_duration_seconds_count{result="ok"}`)
			assert.Equal(t, float64(r.RoundTrips), v, "the latency histogram has a sample per round trip")
			v, ok = metric(body, "chartsync_quarantined_bundles")
			assert.True(t, ok)
			assert.Zero(t, v, "nothing in quarantine")
			if tc.db {
				v, _ = metric(body, "chartsync_db_pool_acquires_total")
				assert.Positive(t, v, "the sync took connections from the pool")
			}

			// The operator's endpoints are not on the devices' port.
			code, body = get(t, "http://"+addr+pathMetrics)
			assert.NotEqual(t, http.StatusOK, code, "the TLS port does not serve metrics: %s", body)

			exit, logs := stop()
			assert.Equal(t, 0, exit)
			assert.Contains(t, logs, "request_id=", "sync log lines carry a request ID")
		})
	}
}
