package main

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/store/postgres/pgtest"
	"github.com/chartsync/chartsync/transport/httpsync"
)

// TestTicketKeysRotate: the state makes a ticket key at first, keeps it,
// makes a new one every ticketRotation, encrypts with a new key only once
// every node has had ticketRefresh to learn it, forgets a key once its
// tickets have expired, and gives every node the same keys, however many
// rotate at once.
func TestTicketKeysRotate(t *testing.T) {
	for name, mk := range backends(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			open := mk(t)
			st := open()
			t0 := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
			first, err := st.TicketKeys(ctx, t0)
			require.NoError(t, err)
			require.Len(t, first, 1, "a key is made at first")

			const nodes = 4
			got := make([][][32]byte, nodes)
			var wg sync.WaitGroup
			for i := range nodes {
				other := open()
				wg.Go(func() {
					keys, err := other.TicketKeys(ctx, t0.Add(time.Hour))
					assert.NoError(t, err)
					got[i] = keys
				})
			}
			wg.Wait()
			for i := range nodes {
				assert.Equal(t, first, got[i], "node %d has the same key, and no other", i)
			}

			rotated := t0.Add(ticketRotation)
			keys, err := st.TicketKeys(ctx, rotated)
			require.NoError(t, err)
			require.Len(t, keys, 2, "a new key after ticketRotation")
			assert.Equal(t, first[0], keys[0], "the old key still encrypts until every node knows the new one")
			again, err := open().TicketKeys(ctx, rotated.Add(ticketRefresh))
			require.NoError(t, err)
			require.Len(t, again, 2, "another node rotating later makes no other key")
			assert.Equal(t, keys[1], again[0], "the new key encrypts once ticketRefresh old")
			assert.Equal(t, first[0], again[1], "the old key still opens its tickets")

			late, err := st.TicketKeys(ctx, t0.Add(ticketKeep))
			require.NoError(t, err)
			assert.NotContains(t, late, first[0], "a key is forgotten once its tickets have expired")
			assert.Contains(t, late, keys[1])
			assert.LessOrEqual(t, len(late), 3)
		})
	}
}

// forwarder is a TCP forwarder on 127.0.0.1, as a load balancer in front
// of several nodes would be: each connection goes to the node set last.
type forwarder struct {
	ln     net.Listener
	target atomic.Value // string
	wg     sync.WaitGroup
}

func newForwarder(t *testing.T) *forwarder {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	f := &forwarder{ln: ln}
	f.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.wg.Go(func() { f.pipe(c) })
		}
	})
	t.Cleanup(func() { ln.Close(); f.wg.Wait() })
	return f
}

func (f *forwarder) pipe(c net.Conn) {
	defer c.Close()
	up, err := net.Dial("tcp", f.target.Load().(string))
	if err != nil {
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	go func() { io.Copy(up, c); up.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
	go func() { io.Copy(c, up); c.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
	<-done
	<-done
}

// TestSessionResumesWithAnotherNode: two nodes on one database, behind
// one address; a device that made a full handshake with node 1 resumes
// its TLS session with node 2 (node 2 says it resumed), and with node 1
// restarted.
func TestSessionResumesWithAnotherNode(t *testing.T) {
	conn, schema := pgtest.ConnString(t), pgtest.Schema(t)
	db := []string{"-db", conn, "-db-schema", schema, "-key-file", filepath.Join(t.TempDir(), "operator.key")}
	code, _, stderr := cloud(t, append([]string{"init"}, db...)...)
	require.Equal(t, 0, code, "init: %s", stderr)
	serve := append([]string{"serve", "-addr", "127.0.0.1:0", "-dev-cert"}, db...)
	addr1, stop1 := serverWith(t, serve...)
	addr2, stop2 := serverWith(t, serve...)
	lb := newForwarder(t)
	tablet, cred := enrolledDevice(t, "kamuga-tablet-1", "kamuga", db)
	sessions := filepath.Join(t.TempDir(), "tls-sessions")
	syncVia := func(rep *replica.Replica, node string) {
		t.Helper()
		lb.target.Store(node)
		c, err := httpsync.NewClient(rep, httpsync.ClientConfig{Credential: cred, URL: "https://" + lb.ln.Addr().String(), SessionFile: sessions})
		require.NoError(t, err)
		_, err = c.SyncReport(context.Background())
		require.NoError(t, err, "sync with %s", node)
		require.NoError(t, c.Close(), "the client keeps its session")
	}

	syncVia(tablet, addr1)
	syncVia(tablet, addr2)
	code, logs2 := stop2()
	require.Equal(t, 0, code)
	assert.Contains(t, logs2, "tls_resumed=true", "node 2 resumed the session node 1 began")
	assert.NotContains(t, logs2, "tls_resumed=false", "node 2 made no full handshake")

	code, logs1 := stop1()
	require.Equal(t, 0, code)
	assert.Equal(t, 1, strings.Count(logs1, "tls_resumed=false"), "node 1 made the one full handshake")
	addr1, stop1 = serverWith(t, serve...)
	syncVia(tablet, addr1)
	code, logs1 = stop1()
	require.Equal(t, 0, code)
	assert.Contains(t, logs1, "tls_resumed=true", "a restarted node resumes the device's session")
	assert.NotContains(t, logs1, "tls_resumed=false")
}
