package httpsync_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/transport/httpsync"
)

// trickler is a device that opens a sync request and sends its body one
// byte at a time, never quite stalling: the way to hold a connection
// open on a server that only cuts links standing still.
type trickler struct {
	conn *tls.Conn
	// answered is closed when the server answers or closes the
	// connection; status is the answer's status (0 if none).
	answered chan struct{}
	status   int
	sent     int // body bytes sent before the server cut the request
	took     time.Duration
}

// startTrickler connects with cred's certificate and sends the headers of
// a sync whose body is bodyLen bytes.
func startTrickler(t *testing.T, addr string, cred *httpsync.Credential, bodyLen int) *trickler {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, cred.TLSConfig())
	require.NoError(t, err, "a device connects")
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n", httpsync.PathSync, addr, httpsync.ContentType, bodyLen)
	tr := &trickler{conn: conn, answered: make(chan struct{})}
	go func() {
		defer close(tr.answered)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err == nil {
			tr.status = resp.StatusCode
			resp.Body.Close()
		}
	}()
	return tr
}

// trickle sends a byte every period until the server answers or closes
// the connection, or max bytes have gone. It returns whether the server
// cut the request.
func (tr *trickler) trickle(period time.Duration, max int) bool {
	start := time.Now()
	defer func() { tr.took = time.Since(start) }()
	tick := time.NewTicker(period)
	defer tick.Stop()
	for tr.sent < max {
		select {
		case <-tr.answered:
			return true
		case <-tick.C:
		}
		if _, err := tr.conn.Write([]byte{'x'}); err != nil {
			<-tr.answered
			return true
		}
		tr.sent++
	}
	select {
	case <-tr.answered:
		return true
	default:
		return false
	}
}

// Trickling uploads cannot hold the cloud: bodies are read before a sync
// takes a slot, each under a minimum rate and a total deadline, and one
// device has one sync in flight. Four connections trickling a byte every
// 0.8 × StallTimeout, from one device or from four, leave the slots free
// for another device's sync, and each is cut within the bounds.
func TestTricklingUploadsCannotHoldTheCloud(t *testing.T) {
	const (
		stall   = 250 * time.Millisecond
		total   = 2 * time.Second
		period  = stall * 8 / 10
		bodyLen = 1000
	)
	for _, tc := range []struct {
		name    string
		devices int // tricklers come from this many devices, four in all
	}{
		{"four connections of one device", 1},
		{"four devices", 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCloud(t, cloudOptions{memory: true, server: true, config: httpsync.Config{
				MaxConcurrent: 2, QueueWait: 50 * time.Millisecond, StallTimeout: stall,
				MinTransferRate: 1 << 10, RequestTimeout: total,
			}})
			honest := c.newDevice(t, "kamuga", "kamuga-tablet", fastRetries())
			registerAt(t, honest.rep, "Wanjiru", "Mwangi", "kamuga")
			var rogues []*clinicDevice
			for i := range tc.devices {
				rogues = append(rogues, c.newDevice(t, "kamuga", fmt.Sprintf("rogue-%d", i), fastRetries()))
			}
			addr := strings.TrimPrefix(c.url, "https://")
			tricklers := make([]*trickler, 4)
			done := make(chan bool, len(tricklers))
			for i := range tricklers {
				tr := startTrickler(t, addr, rogues[i%len(rogues)].cred, bodyLen)
				tricklers[i] = tr
				go func() { done <- tr.trickle(period, int(total/period)+2) }()
			}
			// Every trickler is being read, or was turned away.
			waitHandler(t, c.handler, "the tricklers are in", func(st httpsync.HandlerStats) bool {
				return st.Receiving+st.Busy >= 4 || (tc.devices == 1 && st.Receiving >= 1 && st.Busy >= 2)
			})

			_, err := honest.client.Sync(t.Context())
			require.NoError(t, err, "another device syncs while the tricklers trickle")
			for range tricklers {
				assert.True(t, <-done, "a trickler was not cut within the total deadline")
			}
			var took time.Duration
			for i, tr := range tricklers {
				assert.Contains(t, []int{0, http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusServiceUnavailable}, tr.status, "trickler %d", i)
				took = max(took, tr.took)
			}
			st := c.handler.Stats()
			t.Logf("four tricklers: cut after at most %s (%d bytes); stats %+v", took, max(tricklers[0].sent, tricklers[1].sent), st)
			assert.Positive(t, st.Cut, "the server cut the tricklers it read")
			assert.Zero(t, st.Receiving, "no body is being received once they are cut")
		})
	}
}
