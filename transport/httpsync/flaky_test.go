package httpsync_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/transport/httpsync"
	"github.com/chartsync/chartsync/transport/transporttest"
)

// flakyProxy is a TCP proxy on 127.0.0.1 that damages the link the way a
// 2G connection does: each connection, at random, is cut after a random
// number of bytes of the request or of the response (closed, or reset),
// delays its chunks, or holds the request and delivers it late — after
// the client has given up and retried on a new connection, so the cloud
// sees bundles out of order. TLS runs end to end through it.
type flakyProxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	rng     *rand.Rand
	healthy bool

	wg    sync.WaitGroup
	conns sync.Map // net.Conn → struct{}, to close at the end

	accepted, cutRequest, cutResponse, late atomic.Int64
}

func newFlakyProxy(t *testing.T, target string, seed uint64) *flakyProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err, "proxy listens on 127.0.0.1")
	p := &flakyProxy{ln: ln, target: target, rng: rand.New(rand.NewPCG(seed, 7))}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.close)
	return p
}

func (p *flakyProxy) addr() string { return p.ln.Addr().String() }

// heal stops damaging new connections.
func (p *flakyProxy) heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.healthy = true
}

func (p *flakyProxy) close() {
	p.ln.Close()
	p.conns.Range(func(k, _ any) bool {
		k.(net.Conn).Close()
		return true
	})
	p.wg.Wait()
}

// fault is what happens to one connection.
type fault struct {
	cutAfter  int64         // bytes before the cut (-1: no cut)
	cutReq    bool          // cut the request direction (else the response)
	reset     bool          // cut with a TCP reset rather than a close
	delay     time.Duration // the most each chunk is delayed
	holdUntil time.Duration // request bytes held this long, then delivered even if the client left
}

func (p *flakyProxy) plan() fault {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.healthy {
		return fault{cutAfter: -1}
	}
	f := fault{cutAfter: -1, delay: time.Duration(p.rng.IntN(3)) * time.Millisecond, reset: p.rng.IntN(2) == 0}
	switch n := p.rng.IntN(20); {
	case n < 8: // cut mid-request (or mid-handshake)
		f.cutAfter, f.cutReq = int64(p.rng.IntN(8<<10)), true
	case n < 16: // cut mid-response
		f.cutAfter = int64(p.rng.IntN(8 << 10))
	case n < 19: // hold the request past the client's stall timeout
		f.holdUntil = time.Duration(150+p.rng.IntN(150)) * time.Millisecond
	}
	return f
}

func (p *flakyProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.accepted.Add(1)
		p.wg.Add(1)
		go p.handle(c, p.plan())
	}
}

func (p *flakyProxy) handle(client net.Conn, f fault) {
	defer p.wg.Done()
	p.conns.Store(client, struct{}{})
	defer p.conns.Delete(client)
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		client.Close()
		return
	}
	p.conns.Store(server, struct{}{})
	defer p.conns.Delete(server)
	var once sync.Once
	cut := func() {
		once.Do(func() {
			if tc, ok := client.(*net.TCPConn); ok && f.reset {
				_ = tc.SetLinger(0) // close with a reset
			}
			client.Close()
			server.Close()
		})
	}
	answered := make(chan struct{}) // closed when the server's first bytes reach the client
	var answeredOnce sync.Once
	// pipe copies src to dst chunk by chunk, delaying and cutting as
	// planned. It returns at EOF or an error, or after a cut.
	pipe := func(dst, src net.Conn, isReq bool, moved *int64) bool {
		buf := make([]byte, 4<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				if f.cutAfter >= 0 && f.cutReq == isReq && *moved+int64(n) > f.cutAfter {
					_, _ = dst.Write(buf[:f.cutAfter-*moved])
					if isReq {
						p.cutRequest.Add(1)
					} else {
						p.cutResponse.Add(1)
					}
					cut()
					return false
				}
				if f.delay > 0 {
					time.Sleep(time.Duration(rand.Int64N(int64(f.delay) + 1)))
				}
				if _, werr := dst.Write(buf[:n]); werr != nil {
					cut()
					return false
				}
				*moved += int64(n)
				if !isReq {
					answeredOnce.Do(func() { close(answered) })
				}
			}
			if err != nil {
				return true
			}
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var moved int64
		pipe(client, server, false, &moved)
		cut()
	}()
	if f.holdUntil == 0 {
		var moved int64
		pipe(server, client, true, &moved)
		cut()
		<-done
		return
	}
	// Pass the TLS handshake (the client's two flights) through, then
	// hold whatever follows — the request — and deliver it late, even if
	// the client has given up by then.
	buf := make([]byte, 4<<10)
	n, err := client.Read(buf)
	if err == nil {
		_, err = server.Write(buf[:n])
	}
	if err == nil {
		select {
		case <-answered:
		case <-done:
		}
		n, err = client.Read(buf)
		if err == nil {
			_, err = server.Write(buf[:n])
		}
	}
	if err != nil {
		cut()
		<-done
		return
	}
	p.late.Add(1)
	deadline := time.Now().Add(f.holdUntil)
	_ = client.SetReadDeadline(deadline)
	var held []byte
	for {
		n, err := client.Read(buf)
		held = append(held, buf[:n]...)
		if err != nil {
			break
		}
	}
	time.Sleep(time.Until(deadline))
	if _, err := server.Write(held); err != nil {
		cut()
		<-done
		return
	}
	_ = client.SetReadDeadline(time.Time{})
	_, _ = io.Copy(server, client)
	// The client is gone or done: let the server finish what it was sent.
	if tc, ok := server.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	<-done
}

// TestFlakyLink syncs three devices with the cloud through a proxy that
// cuts connections mid-request and mid-response, delays them, and
// delivers requests late. Edits continue between syncs, which may fail.
// Once the link heals, every device converges with the cloud and every
// saved change is there exactly once.
func TestFlakyLink(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		name := "HTTP/1.1"
		if h2 {
			name = "HTTP/2"
		}
		t.Run(name, func(t *testing.T) { testFlakyLink(t, h2) })
	}
}

func testFlakyLink(t *testing.T, h2 bool) {
	ctx := context.Background()
	c := newCloud(t, cloudOptions{http2: h2, memory: true})
	proxy := newFlakyProxy(t, strings.TrimPrefix(c.url, "https://"), 11)
	cfg := httpsync.ClientConfig{
		URL: "https://" + proxy.addr(), MaxAttempts: 3,
		MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, StallTimeout: 100 * time.Millisecond,
	}
	devices := []*clinicDevice{
		c.newDevice(t, "kamuga", "kamuga-tablet-1", cfg),
		c.newDevice(t, "kamuga", "kamuga-laptop-2", cfg),
		c.newDevice(t, "kamuga", "kamuga-phone-3", cfg),
	}
	rng := rand.New(rand.NewPCG(3, 5))
	saved := map[string][]crdt.Hash{} // chart → every change whose write returned nil
	var roundTrips, retries, failures int
	for step := range 150 {
		d := devices[rng.IntN(len(devices))]
		switch ids := transporttest.ChartIDs(t, d.rep); {
		case rng.IntN(3) == 0:
			rep, err := d.client.SyncReport(ctx)
			roundTrips += rep.RoundTrips
			retries += rep.Retries
			if err != nil {
				failures++
				require.True(t, errors.Is(err, httpsync.ErrUnreachable) || errors.Is(err, httpsync.ErrBusy),
					"step %d: a sync over a flaky link fails only as unreachable: %v", step, err)
			}
		case len(ids) == 0 || rng.IntN(4) == 0:
			id := registerAt(t, d.rep, fmt.Sprintf("Patient%d", step), "Otieno", "kamuga")
			saved[id] = append(saved[id], historyHashes(t, d.rep, id)...)
		default:
			id := ids[rng.IntN(len(ids))]
			res, err := d.rep.Edit(ctx, id, clinician, record.AddEncounter{Complaint: fmt.Sprintf("visit %d", step), Note: noise(rng, 600)})
			require.NoError(t, err)
			saved[id] = append(saved[id], res.Change.Hash)
		}
	}
	t.Logf("flaky phase: %d connections, %d cut mid-request, %d cut mid-response, %d delivered late; %d round trips, %d retries, %d failed syncs",
		proxy.accepted.Load(), proxy.cutRequest.Load(), proxy.cutResponse.Load(), proxy.late.Load(), roundTrips, retries, failures)
	assert.Positive(t, proxy.cutRequest.Load(), "some requests were cut")
	assert.Positive(t, proxy.cutResponse.Load(), "some responses were cut")
	assert.Positive(t, retries, "the clients retried")

	proxy.heal()
	// The healed link stalls only as a loaded machine does: clients that
	// wait for it, so that a slow test machine is not taken for a cut.
	for _, d := range devices {
		healed := cfg
		healed.Credential, healed.Logger, healed.StallTimeout = d.cred, testLogger(t), 10*time.Second
		cl, err := httpsync.NewClient(d.rep, healed)
		require.NoError(t, err)
		t.Cleanup(func() { _ = cl.Close() })
		d.client = cl
	}
	for pass := 1; ; pass++ {
		require.LessOrEqual(t, pass, 20, "no convergence 20 passes after the link healed")
		moved := 0
		for _, d := range devices {
			rep := d.sync(t)
			moved += rep.ChangesSent + rep.ChangesApplied
		}
		if moved == 0 {
			break
		}
	}
	total := 0
	for chart, hashes := range saved {
		total += len(hashes)
		for _, r := range append([]*clinicDevice{{name: "cloud", rep: c.rep}}, devices...) {
			requireHasChanges(t, r.rep, chart, hashes, r.name)
		}
	}
	histories := 0
	for _, id := range transporttest.ChartIDs(t, c.rep) {
		histories += len(historyHashes(t, c.rep, id))
	}
	assert.Equal(t, total, histories, "the cloud holds every saved change once and nothing else")
	requireScoped(t, c, devices)
	st := c.handler.Stats()
	t.Logf("cloud: %d syncs answered, %d refused, %d failed, %d busy", st.Syncs, st.Refused, st.Failed, st.Busy)
	assert.Zero(t, st.Refused+st.Failed, "the cloud refused nothing from honest devices")
}

// noise is text that does not compress away, so bundles span many TCP
// segments.
func noise(rng *rand.Rand, n int) string {
	words := []string{"fever", "cough", "stable", "pale", "alert", "oriented", "tender", "clear", "mild", "rash", "pulse", "weak"}
	var b strings.Builder
	for b.Len() < n {
		b.WriteString(words[rng.IntN(len(words))])
		b.WriteString(fmt.Sprintf(" %d ", rng.IntN(1000)))
	}
	return b.String()
}
