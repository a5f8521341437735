package main

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/replica"
)

// liveRoster is the cloud's roster for checking change signatures. cloud
// enrol adds devices to the kept roster while the server runs (another
// node's, too), so a change from a device the roster does not know yet
// makes it merge what was kept since it last looked (a file read only if
// it changed; a query for the new rows of the database) before the change
// is refused; and every rosterRefresh it looks again for any change, so
// that a revocation made elsewhere takes effect.
type liveRoster struct {
	*device.Roster
	st state

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

func openLiveRoster(ctx context.Context, st state, cfg device.RosterConfig) (*liveRoster, error) {
	l := &liveRoster{st: st}
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
