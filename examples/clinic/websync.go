package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/chartsync/chartsync/examples/clinic/web"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/transport/file"
	"github.com/chartsync/chartsync/transport/httpsync"
)

// webSettingsFile keeps the web app's users' settings (their language)
// in the data directory.
const webSettingsFile = "web-settings.json"

// mediaFolder is the folder first offered for USB sticks and phones: the
// first of /media/$USER, /media and /mnt that exists.
func mediaFolder() string {
	for _, d := range []string{filepath.Join("/media", os.Getenv("USER")), "/media", "/mnt"} {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			return d
		}
	}
	return ""
}

// webSyncer is the web app's Syncer and HandCarrier: the sync command's
// code (cloudSync) and the USB and relay couriers (exportFile,
// importFile, relayHandOff).
type webSyncer struct{ a *app }

var _ web.HandCarrier = webSyncer{}

func (s webSyncer) Status(ctx context.Context) (web.SyncStatus, error) {
	a := s.a
	c, err := a.credential()
	if errors.Is(err, errNotConnected) || errors.Is(err, errNoIdentity) {
		return web.SyncStatus{Advice: "This device is not connected to a cloud yet: " + explain(err)}, nil
	}
	if err != nil {
		return web.SyncStatus{}, err
	}
	r := a.r
	if err := r.Forked(); err != nil {
		// Nothing to try until it is recovered as a new device: shown
		// as not connected, with what to do.
		return web.SyncStatus{Cloud: c.CloudURL, Advice: explainForked(err)}, nil
	}
	st := web.SyncStatus{Connected: true, Cloud: c.CloudURL}
	if c.CloudReplica != "" {
		if st.Pending, err = r.Pending(ctx, c.CloudReplica); err != nil {
			return st, err
		}
	}
	peers, err := r.Peers(ctx)
	if err != nil {
		return st, err
	}
	for _, p := range peers {
		if p.ID == c.CloudReplica {
			st.LastSync = p.LastSync
		}
	}
	return st, nil
}

// webError wraps err with the web package's sentinel for its kind, so
// the app explains it in the user's language, and keeps the details.
func webError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errNotConnected), errors.Is(err, errNoIdentity):
		return fmt.Errorf("%w: %s", web.ErrNotConnected, explain(err))
	case errors.Is(err, httpsync.ErrCredentialRevoked):
		return fmt.Errorf("%w: %w", web.ErrRevoked, err)
	case errors.Is(err, replica.ErrForkedReplica):
		return fmt.Errorf("%w: %w", web.ErrForked, err)
	case errors.Is(err, httpsync.ErrUnreachable):
		return fmt.Errorf("%w: %w", web.ErrOffline, err)
	case errors.Is(err, errNotAFolder):
		return fmt.Errorf("%w: %w", web.ErrNotAFolder, err)
	}
	var learnt *httpsync.LearntRevocationsError
	if errors.As(err, &learnt) {
		return fmt.Errorf("the cloud refused changes this device received from %d device(s) revoked by the cloud's administrator; this device has now learnt of the revocation and will not send them again. Sync again to send this device's own work: %w", len(learnt.Devices), err)
	}
	return errors.New(explain(err))
}

func (s webSyncer) Sync(ctx context.Context, progress func(web.SyncProgress)) (web.SyncResult, error) {
	rep, _, err := cloudSync(ctx, s.a, s.a.r, func(p httpsync.Progress) {
		progress(web.SyncProgress{Phase: webPhase(p.Phase), Round: p.Round, Done: p.Done, Total: p.Total, RetryIn: p.RetryIn})
	})
	if err != nil {
		return web.SyncResult{}, webError(err)
	}
	return web.SyncResult{Sent: rep.ChangesSent, Received: rep.ChangesApplied, Charts: rep.Charts,
		Bytes: int64(rep.BytesSent + rep.BytesReceived), RoundTrips: rep.RoundTrips, Duration: rep.Duration}, nil
}

// webPhase is an httpsync phase as the web app names it.
func webPhase(p httpsync.Phase) web.Phase {
	switch p {
	case httpsync.PhaseSending:
		return web.PhaseSending
	case httpsync.PhaseReceiving:
		return web.PhaseReceiving
	case httpsync.PhaseApplying:
		return web.PhaseApplying
	case httpsync.PhaseRetrying:
		return web.PhaseRetrying
	case httpsync.PhaseDone:
		return web.PhaseDone
	}
	return web.Phase(p)
}

func (s webSyncer) ExportFile(ctx context.Context, dir string) (web.SyncResult, error) {
	start := time.Now()
	ex, err := exportFile(ctx, s.a, s.a.r, dir)
	if err != nil {
		return web.SyncResult{}, webError(err)
	}
	return web.SyncResult{Files: 1, Sent: ex.Changes, Bytes: int64(ex.Bytes), Path: ex.Path, Duration: time.Since(start)}, nil
}

func (s webSyncer) ImportFile(ctx context.Context, dir string) (web.SyncResult, error) {
	start := time.Now()
	im, err := importFile(ctx, s.a.r, dir)
	res := web.SyncResult{Files: im.Accepted, Received: im.Applied, Bytes: int64(im.Bytes), Duration: time.Since(start), ChartIDs: []string{}}
	charts := map[string]bool{}
	for _, f := range im.Files {
		if errors.Is(f.Err, file.ErrReplayed) {
			continue // imported before: it changed nothing now
		}
		if f.Err != nil {
			res.Refused = append(res.Refused, fmt.Sprintf("%s: %v", filepath.Base(f.Path), errors.Unwrap(f.Err)))
			continue
		}
		for _, c := range f.Received.Charts {
			if !charts[c] {
				charts[c] = true
				res.ChartIDs = append(res.ChartIDs, c)
			}
		}
	}
	res.Charts = len(res.ChartIDs)
	var fe *file.FileError
	if errors.As(err, &fe) && ctx.Err() == nil {
		// Files refused are listed with the result (and changed
		// nothing); the files taken are kept.
		err = nil
	}
	if err != nil {
		return res, webError(err)
	}
	return res, nil
}

func (s webSyncer) HandToPhone(ctx context.Context, dir string) (web.SyncResult, error) {
	start := time.Now()
	h, err := relayHandOff(ctx, s.a, s.a.r, dir)
	res := web.SyncResult{Files: len(h.ToPhone.Carried) + len(h.FromPhone.Carried), Sent: h.Stats.ChangesSent, Received: h.Stats.ChangesApplied,
		Bytes: h.ToPhone.Bytes() + h.FromPhone.Bytes(), Duration: time.Since(start)}
	for _, r := range h.Refused {
		res.Refused = append(res.Refused, fmt.Sprintf("%s: %v", filepath.Base(r.Path), r.Err))
	}
	if err != nil {
		return res, webError(err)
	}
	return res, nil
}
