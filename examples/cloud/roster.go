package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/device/liveroster"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/gate"
	"github.com/chartsync/chartsync/transport/httpsync"
)

// liveRoster is the cloud's roster for checking change signatures, kept
// up to date with the kept roster (package device/liveroster): cloud
// enrol adds devices to it while the server runs (another node's, too),
// and cloud revoke revokes them. A change from a device the roster does
// not know yet makes it merge what was kept since it last looked (a file
// read only if it changed; a query for the new rows of the database)
// before the change is refused; and every 30 seconds it looks again for
// any change, so that a revocation made elsewhere takes effect.
//
// It also tells the HTTPS handler whether a device was revoked
// (CheckDevice), at every connection and request, looking at the kept
// roster first if it was last read more than its check age ago: with the
// data directory, whose roster file is looked at (a stat) at every check,
// a revocation takes effect at the device's next connection or request;
// with a database, within revocationRefresh on every node.
type liveRoster struct {
	*liveroster.Roster
}

var _ replica.Keys = liveRoster{}

// revocationRefresh is how old a database's roster may be when a device
// connects: the most a revocation takes to reach every node.
var revocationRefresh = time.Second

func openLiveRoster(ctx context.Context, st state, cfg device.RosterConfig) (liveRoster, error) {
	lc := liveroster.Config{Roster: cfg}
	if _, ok := st.(*pgState); ok {
		lc.CheckAge = revocationRefresh
	}
	r, err := liveroster.Open(ctx, st, lc)
	if err != nil {
		return liveRoster{}, err
	}
	return liveRoster{r}, nil
}

// CheckDevice is httpsync.Config.CheckDevice: it refuses a device the
// roster holds a revocation of, with httpsync.ErrCredentialRevoked. A
// device the roster does not know is let through: its certificate, which
// the handler verified, is the cloud's word.
func (l liveRoster) CheckDevice(ctx context.Context, dev httpsync.Device) error {
	err := l.CheckRevoked(ctx, dev.Replica)
	if errors.Is(err, device.ErrRevoked) {
		return fmt.Errorf("%w: %w", httpsync.ErrCredentialRevoked, err)
	}
	return err
}

// CheckSender is gate.Config.CheckSender: CheckDevice for a sender a
// courier authenticated, its refusal matching gate.ErrRevoked (and
// httpsync.ErrCredentialRevoked).
func (l liveRoster) CheckSender(ctx context.Context, s gate.Sender) error {
	err := l.CheckDevice(ctx, httpsync.Device{Replica: s.Replica, Clinic: s.Clinic, Name: s.Name})
	if errors.Is(err, httpsync.ErrCredentialRevoked) {
		return fmt.Errorf("%w: %w", gate.ErrRevoked, err)
	}
	return err
}
