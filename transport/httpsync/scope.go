package httpsync

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/chartsync/chartsync/replica"
)

// receive applies a device's bundle: it must come from the replica the
// credential names, change only charts in the device's clinic's scope, and
// hold only changes whose recorded role may change the chart sections they
// touch (a bundle with another is refused and quarantined for review).
// A cloud replica opened with replica.Config.Keys also refuses, and
// quarantines, changes not signed by the devices they name.
func (h *Handler) receive(ctx context.Context, data []byte, dev Device) (replica.Received, error) {
	opt := replica.ReceiveOptions{Sender: dev.Replica, Clinic: dev.Clinic, CheckAuthors: true}
	if h.cfg.AccessLog != nil {
		// The writes are recorded before they are stored: none can be
		// stored unrecorded (a failed store write leaves an entry for a
		// write the device will send again).
		opt.BeforeWrite = func(ctx context.Context, rec replica.Received) error {
			if err := h.cfg.AccessLog.Append(ctx, writeEntries(dev, rec)...); err != nil {
				return fmt.Errorf("record the writes in the access log: %w: %w", errAccessLog, err)
			}
			return nil
		}
	}
	return h.rep.ReceiveFrom(ctx, data, opt)
}

// bundleFor builds the cloud's answer for a device: only charts in its
// clinic's scope.
func (h *Handler) bundleFor(ctx context.Context, dev Device) (replica.Outgoing, error) {
	// TLS authenticates the cloud to the device: the bundle needs no
	// signature of its own.
	return h.rep.MakeBundleFor(ctx, dev.Replica, replica.BundleOptions{Clinic: dev.Clinic, NoAuth: true})
}

// classifyScope maps the scope errors to 403.
func classifyScope(err error) (status int, code string, ok bool) {
	switch {
	case errors.Is(err, replica.ErrWrongSender):
		return http.StatusForbidden, CodeWrongSender, true
	case errors.Is(err, replica.ErrOutOfScope):
		return http.StatusForbidden, CodeOutOfScope, true
	case errors.Is(err, replica.ErrUnauthorizedChange):
		return http.StatusForbidden, CodeUnauthorizedChange, true
	case errors.Is(err, replica.ErrRevokedChange):
		// Before ErrForgedChange, which it also matches.
		return http.StatusForbidden, CodeRevokedChange, true
	case errors.Is(err, replica.ErrForgedChange):
		return http.StatusForbidden, CodeForgedChange, true
	}
	return 0, "", false
}
