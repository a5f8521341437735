package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"time"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/replica"
)

// The clinics of the benchmark's deployment: the cloud's own devices may
// change any chart (replica.Config.Unscoped), a clinic's only the charts in
// its scope.
const (
	clinicHome  = "kamuga" // the clinic whose charts are synced
	clinicOther = "lwanda" // another clinic, with nothing of kamuga's
	clinicCloud = "cloud"
)

// deployment enrols the benchmark's devices with one authority, as the
// cloud or a hub would.
type deployment struct {
	auth         *device.Authority
	bundleBytes  int
	checkAuthors bool // devices check received changes (Config.CheckAuthors)
}

func newDeployment(bundleBytes int, checkAuthors bool) (*deployment, error) {
	auth, err := device.NewAuthority()
	if err != nil {
		return nil, err
	}
	return &deployment{auth: auth, bundleBytes: bundleBytes, checkAuthors: checkAuthors}, nil
}

// roster returns a roster that trusts the authority and holds the
// enrolments recs (a replica learns the others' from their bundles).
func (d *deployment) roster(recs ...[]byte) (*device.Roster, error) {
	roster, err := device.NewRoster(device.RosterConfig{Authorities: []device.TrustedAuthority{{Key: d.auth.PublicKey()}}})
	if err != nil {
		return nil, err
	}
	for _, rec := range recs {
		if _, err := roster.Add(rec); err != nil {
			return nil, err
		}
	}
	return roster, nil
}

// signer makes and enrols a device of clinic: its replica configuration
// signs its changes and checks every change it receives.
func (d *deployment) signer(clinic string) (replica.Config, error) {
	id, err := device.Generate(replica.NewID(), clinic)
	if err != nil {
		return replica.Config{}, err
	}
	rec, err := d.auth.Enrol(id.Public(), time.Now(), 24*time.Hour)
	if err != nil {
		return replica.Config{}, err
	}
	roster, err := d.roster(rec)
	if err != nil {
		return replica.Config{}, err
	}
	return replica.Config{Signer: id, Keys: roster, CheckAuthors: d.checkAuthors, BundleBytes: d.bundleBytes}, nil
}

// clinicDevice is a device of clinic as a clinic's app opens it: writes
// confined to the clinic's scope, every received change checked, the
// cloud's devices trusted with any chart.
func (d *deployment) clinicDevice(clinic string) (replica.Config, error) {
	cfg, err := d.signer(clinic)
	cfg.Clinic, cfg.CheckAuthors, cfg.Unscoped = clinic, true, []string{clinicCloud}
	return cfg, err
}

// cloud is the cloud's replica: it checks every device's signatures
// (Keys) and, through ReceiveOptions, its scope and authors. It signs too,
// as a device of the cloud's clinic, for the edits the scenarios make on
// it (a district hospital's or a cloud user's).
func (d *deployment) cloud() (replica.Config, error) {
	cfg, err := d.signer(clinicCloud)
	cfg.CheckAuthors, cfg.Unscoped = false, []string{clinicCloud}
	return cfg, err
}

// link is how two replicas swap bundles. With clinic empty they are
// peers (MakeBundle, Receive). Otherwise a is a device of clinic and b
// the cloud, which serves a as transport/httpsync does: it accepts only
// a's bundles, only within clinic's scope, checking authors if checks is
// set, and answers with the changes in clinic's scope.
type link struct {
	a, b   *replica.Replica
	clinic string
	checks bool
}

// toB carries a's bundle to b.
func (l link) toB(ctx context.Context) (replica.Outgoing, replica.Received, error) {
	out, err := l.a.MakeBundle(ctx, l.b.ID())
	if err != nil {
		return out, replica.Received{}, err
	}
	// The link is an authenticated channel, as HTTPS with device
	// certificates is: each side names the sender it expects, so a
	// replica with Keys takes an unsigned bundle's positions (one
	// without Sender would ignore them, and the exchange would never end).
	var rec replica.Received
	if l.clinic == "" {
		rec, err = l.b.ReceiveFrom(ctx, out.Data, replica.ReceiveOptions{Sender: l.a.ID()})
	} else {
		rec, err = l.b.ReceiveFrom(ctx, out.Data, replica.ReceiveOptions{Sender: l.a.ID(), Clinic: l.clinic, CheckAuthors: l.checks})
	}
	return out, rec, err
}

// toA carries b's answer to a.
func (l link) toA(ctx context.Context) (replica.Outgoing, replica.Received, error) {
	back, err := l.b.MakeBundleFor(ctx, l.a.ID(), replica.BundleOptions{Clinic: l.clinic})
	if err != nil {
		return back, replica.Received{}, err
	}
	rec, err := l.a.ReceiveFrom(ctx, back.Data, replica.ReceiveOptions{Sender: l.b.ID()})
	return back, rec, err
}

// maxRoundTrips bounds an exchange; the run's -timeout bounds its time.
const maxRoundTrips = 100000

// exchange is what an interactive courier does: a's bundle to b, b's
// answer to a, until both had everything in one bundle. It adds to res
// what moved, and the time the replicas took (counting the changes is not
// timed). prog, if set, reports each round trip.
func exchange(ctx context.Context, l link, res *result, prog *progress) error {
	seen := map[[32]byte]struct{}{}
	var spent time.Duration // on counting, less from the wall time
	start := time.Now()
	defer func() { res.WallMS += (time.Since(start) - spent).Milliseconds() }()
	distinct, stale := 0, 0
	for rt := 1; rt <= maxRoundTrips; rt++ {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("after %d round trips: %w", rt-1, err)
		}
		out, recB, err := l.toB(ctx)
		if err != nil {
			return err
		}
		back, recA, err := l.toA(ctx)
		if err != nil {
			return err
		}
		t := time.Now()
		if err := count(seen, out.Data, back.Data); err != nil {
			return err
		}
		spent += time.Since(t)
		res.RoundTrips++
		res.BytesSent += len(out.Data)
		res.BytesReceived += len(back.Data)
		res.ChangesMoved += out.Changes + back.Changes
		res.ChangesSent += out.Changes + back.Changes
		res.ChangesDistinct = len(seen)
		res.ChangesDuplicate += recA.Duplicates + recB.Duplicates
		if prog != nil {
			prog.update("%d round trips, %d changes sent (%d distinct), %.1f MB moved", rt, res.ChangesSent, res.ChangesDistinct, float64(res.BytesSent+res.BytesReceived)/1e6)
		}
		if out.Complete && back.Complete {
			return nil
		}
		if moved := out.Changes + back.Changes; moved > 0 && len(seen) == distinct {
			stale++
		} else {
			stale = 0
		}
		distinct = len(seen)
		if stale >= 3 {
			// Round trips moving only changes already moved: the
			// replicas are not taking each other's positions.
			return fmt.Errorf("no progress after %d round trips: the bundles repeat changes already sent (positions refused: %v, %v)", rt, recB.PositionsRefused, recA.PositionsRefused)
		}
	}
	return errors.New("no convergence after 100000 round trips")
}

// count adds the changes the bundles carry to seen, by their bytes'
// digest.
func count(seen map[[32]byte]struct{}, bundles ...[]byte) error {
	for _, data := range bundles {
		b, err := replica.DecodeBundle(data)
		if err != nil {
			return fmt.Errorf("count changes: %w", err)
		}
		for _, c := range b.Changes {
			seen[sha256.Sum256(c.Raw)] = struct{}{}
		}
	}
	return nil
}

// sameCharts reports whether b holds every chart a holds, at the same
// heads.
func sameCharts(ctx context.Context, a, b *replica.Replica) (bool, error) {
	ca, err := a.Find(ctx, "", 0)
	if err != nil {
		return false, err
	}
	cb, err := b.Find(ctx, "", 0)
	if err != nil {
		return false, err
	}
	if len(ca) != len(cb) {
		return false, nil
	}
	heads := make(map[string]int, len(cb))
	for i, c := range cb {
		heads[c.ID] = i
	}
	for _, c := range ca {
		i, ok := heads[c.ID]
		if !ok || !cb[i].Heads.Equal(c.Heads) {
			return false, nil
		}
	}
	return true, nil
}

// firstDownload measures the first sync of a new device of the clinic
// with the cloud b, which holds the clinic's charts: the cloud's bundles
// are made for the clinic's scope, and with a small -bundle-bytes take many
// round trips, in which a chart's earlier changes may be sent again
// (changes_sent against changes_distinct shows it).
func firstDownload(ctx context.Context, o options, dep *deployment, b *replica.Replica) (result, error) {
	res := result{Scenario: "download", Mode: o.mode(), Charts: o.n, BundleBytesLimit: o.bundleBytes}
	cfg, err := dep.clinicDevice(clinicHome)
	if err != nil {
		return res, err
	}
	d, err := o.open(ctx, filepath.Join(o.dir, "d.db"), cfg)
	if err != nil {
		return res, err
	}
	defer d.Close()
	prog := newProgress("first download of a new device")
	runtime.GC()
	peak := startPeak()
	err = exchange(ctx, link{a: d, b: b, clinic: clinicHome, checks: true}, &res, prog)
	res.PeakHeapBytes, res.PeakRSSBytes = peak.stop()
	if err != nil {
		return res, fmt.Errorf("download: %w", err)
	}
	prog.done("%d round trips, %d changes sent (%d distinct)", res.RoundTrips, res.ChangesSent, res.ChangesDistinct)
	if res.Converged, err = sameCharts(ctx, b, d); err != nil {
		return res, fmt.Errorf("download: %w", err)
	}
	res.Target, res.TargetMet = "every change sent once (changes_sent = changes_distinct)", res.ChangesSent == res.ChangesDistinct
	return res, nil
}
