package file

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/transport"
)

var _ transport.Link = (*Link)(nil)

// Link syncs a replica with one peer through a pair of directories: it
// writes bundles for the peer to an outbox and applies the peer's bundles
// from an inbox. The peer's Link has them the other way round. Both may be
// one shared directory, since file names say who each bundle is for. On a
// USB stick carried between a clinic and a hub, both replicas' Links point
// at folders on the stick.
type Link struct {
	local               *replica.Replica
	peer, outbox, inbox string
}

// NewLink returns a Link from local to the replica whose ID is peer. The
// outbox must exist when Sync runs; a missing inbox means nothing has
// arrived yet.
func NewLink(local *replica.Replica, peer, outbox, inbox string) *Link {
	return &Link{local: local, peer: peer, outbox: outbox, inbox: inbox}
}

// Sync applies every bundle file from the peer in the inbox (ImportFrom),
// then writes the bundle the peer needs, with the acknowledgement of what
// arrived, to the outbox (Export). Refused files are reported in the error
// but do not stop the cycle.
func (l *Link) Sync(ctx context.Context) (transport.Stats, error) {
	var st transport.Stats
	var errs []error
	if _, err := os.Stat(l.inbox); err == nil {
		im, err := ImportFrom(ctx, l.local, l.peer, l.inbox)
		st.BundlesReceived, st.BundlesRejected = im.Accepted, im.Rejected
		st.BytesReceived, st.ChangesApplied, st.Duplicates = im.Bytes, im.Applied, im.Duplicates
		if err != nil {
			errs = append(errs, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, fmt.Errorf("file link inbox: %w", err))
	}
	if err := ctx.Err(); err != nil {
		return st, errors.Join(append(errs, err)...)
	}
	ex, err := Export(ctx, l.local, l.peer, l.outbox)
	if ex.Path != "" {
		st.BundlesSent, st.BytesSent, st.ChangesSent = 1, ex.Bytes, ex.Changes
	}
	if err != nil {
		errs = append(errs, err)
	}
	return st, errors.Join(errs...)
}
