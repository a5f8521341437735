package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/gate"
	"github.com/chartsync/chartsync/transport/httpsync"
)

// liveRoster is the cloud's roster for checking change signatures. cloud
// enrol adds devices to the kept roster while the server runs (another
// node's, too), so a change from a device the roster does not know yet
// makes it merge what was kept since it last looked (a file read only if
// it changed; a query for the new rows of the database) before the change
// is refused; and every rosterRefresh it looks again for any change, so
// that a revocation made elsewhere takes effect.
//
// It also tells the HTTPS handler whether a device was revoked
// (CheckDevice), at every connection and request, looking at the kept
// roster first if it was last read more than fresh ago: with the data
// directory, whose roster file is looked at (a stat) at every check, a
// revocation takes effect at the device's next connection or request;
// with a database, within revocationRefresh on every node.
type liveRoster struct {
	*device.Roster
	st    state
	fresh time.Duration

	mu      sync.Mutex
	version int64     // of the kept roster as last merged
	read    time.Time // when it was last looked at
}

var _ replica.Keys = (*liveRoster)(nil)

// reloadTimeout bounds one look at the kept roster.
const reloadTimeout = 10 * time.Second

// rosterRefresh is how often the kept roster is looked at for a change
// from a known device, so that a revocation reaches every node.
const rosterRefresh = 30 * time.Second

// revocationRefresh is how old a database's roster may be when a device
// connects: the most a revocation takes to reach every node.
var revocationRefresh = time.Second

func openLiveRoster(ctx context.Context, st state, cfg device.RosterConfig) (*liveRoster, error) {
	l := &liveRoster{st: st}
	if _, ok := st.(*pgState); ok {
		l.fresh = revocationRefresh
	}
	var err error
	if l.Roster, err = device.NewRoster(cfg); err != nil {
		return nil, err
	}
	if _, err := l.reload(ctx); err != nil {
		return nil, err
	}
	return l, nil
}

// reload merges the records kept since the roster was last read, and
// reports whether there were any.
func (l *liveRoster) reload(ctx context.Context) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	v, err := l.st.MergeRoster(ctx, l.Roster, l.version)
	if err != nil {
		return false, err
	}
	changed := v != l.version
	l.version, l.read = v, time.Now()
	return changed, nil
}

// VerifyChange implements replica.Keys, looking at the kept roster again
// for a device it does not know.
func (l *liveRoster) VerifyChange(replicaID, chart string, hash [32]byte, sig []byte) (string, error) {
	l.mu.Lock()
	stale := time.Since(l.read) > rosterRefresh
	l.mu.Unlock()
	if stale {
		ctx, cancel := context.WithTimeout(context.Background(), reloadTimeout)
		_, rerr := l.reload(ctx)
		cancel()
		if rerr != nil {
			return "", rerr
		}
	}
	clinic, err := l.Roster.VerifyChange(replicaID, chart, hash, sig)
	if errors.Is(err, device.ErrUnknownDevice) {
		ctx, cancel := context.WithTimeout(context.Background(), reloadTimeout)
		defer cancel()
		if changed, rerr := l.reload(ctx); rerr != nil {
			return "", errors.Join(err, rerr)
		} else if changed {
			return l.Roster.VerifyChange(replicaID, chart, hash, sig)
		}
	}
	return clinic, err
}

// CheckDevice is httpsync.Config.CheckDevice: it refuses a device the
// roster holds a revocation of, with httpsync.ErrCredentialRevoked. A
// device the roster does not know is let through: its certificate, which
// the handler verified, is the cloud's word.
func (l *liveRoster) CheckDevice(ctx context.Context, dev httpsync.Device) error {
	l.mu.Lock()
	stale := l.fresh == 0 || time.Since(l.read) > l.fresh
	l.mu.Unlock()
	if stale {
		if _, err := l.reload(ctx); err != nil {
			return fmt.Errorf("check device %s: %w", dev.Replica, err)
		}
	}
	if _, err := l.Roster.Lookup(dev.Replica); errors.Is(err, device.ErrRevoked) {
		return fmt.Errorf("%w: %w", httpsync.ErrCredentialRevoked, err)
	}
	return nil
}

// CheckSender is gate.Config.CheckSender: CheckDevice for a sender a
// courier authenticated, its refusal matching gate.ErrRevoked (and
// httpsync.ErrCredentialRevoked).
func (l *liveRoster) CheckSender(ctx context.Context, s gate.Sender) error {
	err := l.CheckDevice(ctx, httpsync.Device{Replica: s.Replica, Clinic: s.Clinic, Name: s.Name})
	if errors.Is(err, httpsync.ErrCredentialRevoked) {
		return fmt.Errorf("%w: %w", gate.ErrRevoked, err)
	}
	return err
}
