package httpsync_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/audit"
	"github.com/chartsync/chartsync/replica/gate"
	"github.com/chartsync/chartsync/transport/httpsync"
)

// revocations is a Config.CheckDevice refusing the devices revoked.
type revocations struct {
	mu      sync.Mutex
	revoked map[string]bool
	checks  int
}

func (r *revocations) revoke(replicaID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.revoked == nil {
		r.revoked = map[string]bool{}
	}
	r.revoked[replicaID] = true
}

func (r *revocations) check(_ context.Context, dev httpsync.Device) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checks++
	if r.revoked[dev.Replica] {
		return fmt.Errorf("device %s: %w", dev.Replica, httpsync.ErrCredentialRevoked)
	}
	return nil
}

// TestRevokedDeviceIsRefused: once Config.CheckDevice says a device is
// revoked, its syncs are refused on a new connection (the handshake, full
// or resumed, is refused), and on a connection opened before the
// revocation (the request is answered 401); the device is told to contact
// the administrator, and does not retry.
func TestRevokedDeviceIsRefused(t *testing.T) {
	for _, tc := range []struct {
		name    string
		session bool // the device keeps its TLS sessions and resumes
		open    bool // the device's connection was opened before the revocation
	}{
		{name: "a full handshake"},
		{name: "a resumed session", session: true},
		{name: "a connection opened before", open: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rv := &revocations{}
			access := &entriesLog{}
			c, hs, ln := resumeCloud(t, cloudOptions{memory: true, config: httpsync.Config{CheckDevice: rv.check, AccessLog: access}})
			d := agreed(t, c, ln)
			other := c.newDevice(t, "kamuga", "kamuga-laptop", fastRetries())
			file := ""
			if tc.session {
				file = filepath.Join(t.TempDir(), "tls-sessions")
				idleSync(t, d, ln, file) // a full handshake; the device keeps its ticket
			}
			cfg := fastRetries()
			cfg.NoSessionFile = file == ""
			cl := d.restart(t, file, cfg)
			t.Cleanup(func() { _ = cl.Close() })
			if tc.open {
				_, err := cl.SyncReport(t.Context())
				require.NoError(t, err, "the device syncs before its revocation")
			}
			hs.take()
			before := c.handler.Stats()

			rv.revoke(d.rep.ID())
			registerAt(t, d.rep, "Akinyi", "Otieno", "kamuga")
			rep, err := cl.SyncReport(t.Context())
			require.ErrorIs(t, err, httpsync.ErrCredentialRevoked, "a revoked device is refused")
			require.ErrorIs(t, err, httpsync.ErrUnauthorized)
			assert.Contains(t, err.Error(), "contact the administrator", "the device is told what to do")
			assert.Zero(t, rep.Retries, "a revocation is final: the device does not retry")
			after := c.handler.Stats()
			assert.Equal(t, before.Syncs, after.Syncs, "no sync of the revoked device is served")
			assert.Greater(t, after.Revoked, before.Revoked, "the cloud counts the refusal")

			_, verified := hs.take()
			if tc.open {
				assert.Empty(t, verified, "the request came on the connection opened before the revocation: the handler refused it")
				assert.Equal(t, before.Revoked+1, after.Revoked)
			} else {
				// The client may make one more handshake to read the
				// refusal (probeRefusal); each is refused.
				require.NotEmpty(t, verified, "the device's handshake reached VerifyConnection")
				assert.LessOrEqual(t, len(verified), 2)
				assert.Equal(t, before.Revoked+int64(len(verified)), after.Revoked, "every handshake of the revoked device was refused")
				assert.Equal(t, tc.session, verified[0].DidResume, "the handshake refused was resumed: %v", tc.session)
			}
			refused := access.refusedOf(d.rep.ID())
			require.NotEmpty(t, refused, "the access log records the revoked device's refusal, as it does one from a file")
			for _, e := range refused {
				assert.Contains(t, e.Detail, gate.CodeRevokedCredential)
				assert.Equal(t, "kamuga", e.Clinic)
			}
			other.sync(t) // another device of the clinic still syncs
		})
	}
}

// entriesLog is an access log in memory.
type entriesLog struct {
	mu sync.Mutex
	es []audit.Entry
}

func (l *entriesLog) Append(_ context.Context, es ...audit.Entry) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.es = append(l.es, es...)
	return nil
}

// refusedOf returns the refusals recorded of a device.
func (l *entriesLog) refusedOf(replicaID string) []audit.Entry {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []audit.Entry
	for _, e := range l.es {
		if e.Action == audit.Refused && e.Device == replicaID {
			out = append(out, e)
		}
	}
	return out
}
