package main

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/replica"
)

// liveRoster is the cloud's roster for checking change signatures. cloud
// enrol adds devices to the roster file while the server runs, so a change
// from a device the roster does not know yet makes it read the file again
// (at most once per change of the file) before the change is refused.
type liveRoster struct {
	*device.Roster
	path string

	mu      sync.Mutex
	modTime time.Time // of the file as last read
	size    int64
}

var _ replica.Keys = (*liveRoster)(nil)

func openLiveRoster(path string, cfg device.RosterConfig) (*liveRoster, error) {
	l := &liveRoster{path: path}
	var err error
	if l.Roster, err = device.NewRoster(cfg); err != nil {
		return nil, err
	}
	if _, err := l.reload(); err != nil {
		return nil, err
	}
	return l, nil
}

// reload merges the roster file if it changed since it was last read, and
// reports whether it did.
func (l *liveRoster) reload() (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fi, err := os.Stat(l.path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("roster: %w", err)
	}
	if fi.ModTime().Equal(l.modTime) && fi.Size() == l.size {
		return false, nil
	}
	data, err := os.ReadFile(l.path)
	if err != nil {
		return false, fmt.Errorf("roster: %w", err)
	}
	if _, err := l.Roster.Merge(data); err != nil {
		return false, fmt.Errorf("roster %s: %w (the roster is rebuilt by enrolling the devices again)", l.path, err)
	}
	l.modTime, l.size = fi.ModTime(), fi.Size()
	return true, nil
}

// VerifyChange implements replica.Keys, reading the roster file again for
// a device it does not know.
func (l *liveRoster) VerifyChange(replicaID, chart string, hash [32]byte, sig []byte) (string, error) {
	clinic, err := l.Roster.VerifyChange(replicaID, chart, hash, sig)
	if errors.Is(err, device.ErrUnknownDevice) {
		if changed, rerr := l.reload(); rerr != nil {
			return "", errors.Join(err, rerr)
		} else if changed {
			return l.Roster.VerifyChange(replicaID, chart, hash, sig)
		}
	}
	return clinic, err
}
