package main

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"

	"github.com/chartsync/chartsync/replica"
)

// checksScenario times the full sync of a's charts to two new replicas at
// the same N: one that checks nothing (no Keys, no author checks), and one
// that checks every change's signature (Keys) and author
// (record.CheckChange), as the cloud does. With -clinic both receive as
// the cloud, within the clinic's scope; as peers, with Receive. The
// result is the checked sync's, with the unchecked one's time and the
// ratio of the two.
func checksScenario(ctx context.Context, o options, dep *deployment, a *replica.Replica) (result, error) {
	res := result{Scenario: "checks", Mode: o.mode(), Charts: o.n, BundleBytesLimit: o.bundleBytes}
	var off result
	for _, on := range []bool{false, true} {
		cfg := replica.Config{BundleBytes: o.bundleBytes}
		name := "checks-off"
		if on {
			var err error
			if o.clinic {
				cfg, err = dep.cloud()
			} else {
				cfg, err = dep.signer("kamuga-dispensary")
				cfg.CheckAuthors = true
			}
			if err != nil {
				return res, err
			}
			name = "checks-on"
		}
		b, err := o.open(ctx, filepath.Join(o.dir, name+".db"), cfg)
		if err != nil {
			return res, err
		}
		l := link{a: a, b: b, checks: on}
		if o.clinic {
			l.clinic = clinicHome
		}
		r := result{}
		prog := newProgress("full sync, " + name)
		runtime.GC()
		peak := startPeak()
		err = exchange(ctx, l, &r, prog)
		r.PeakHeapBytes, r.PeakRSSBytes = peak.stop()
		if err == nil {
			prog.done("%d changes in %d ms", r.ChangesSent, r.WallMS)
			r.Converged, err = sameCharts(ctx, a, b)
		}
		if cerr := b.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return res, fmt.Errorf("checks scenario, %s: %w", name, err)
		}
		if !on {
			off = r
			continue
		}
		r.Scenario, r.Mode, r.Charts, r.BundleBytesLimit = res.Scenario, res.Mode, res.Charts, res.BundleBytesLimit
		res = r
	}
	res.Converged = res.Converged && off.Converged
	res.WallMSChecksOff = off.WallMS
	res.Ratio = float64(res.WallMS) / float64(max(off.WallMS, 1))
	res.Target, res.TargetMet = "full sync with checks ≤ 1.3× without", res.Ratio <= 1.3
	return res, nil
}
