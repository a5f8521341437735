package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
)

// The bounds of the idle syncs made while the long chart is received (the
// run's -timeout bounds their time).
const (
	maxIdleSyncs   = 100000
	idleBaselineOf = 5 // idle syncs timed before the receive
)

// longHeapTarget is the most Go heap the long scenario may use.
const longHeapTarget = 128 << 20

// runLong measures one chart with many changes, received by the cloud:
// first a base run of -long-base edits, then the long run of -long edits,
// each on new replicas.
func runLong(ctx context.Context, o options, dep *deployment, emit func(result)) error {
	baseEdits := o.longBase
	if baseEdits == 0 {
		baseEdits = max(1, o.long/10)
	}
	base, err := longScenario(ctx, o, dep, "long-base", baseEdits)
	if err != nil {
		return err
	}
	base.Target, base.TargetMet = "peak heap < 128 MiB", base.PeakHeapBytes < longHeapTarget
	emit(base)

	long, err := longScenario(ctx, o, dep, "long", o.long)
	if err != nil {
		return err
	}
	long.BaseChanges, long.BaseWallMS = base.Changes, base.WallMS
	long.Ratio = float64(long.WallMS) / float64(max(base.WallMS, 1))
	// The target is 12× the time for 10× the changes (10,000
	// against 1,000): time may grow 1.2 times as fast as the changes.
	limit := 1.2 * float64(o.long) / float64(baseEdits)
	long.Target = fmt.Sprintf("time ≤ %.1f× long-base, peak heap < 128 MiB", limit)
	long.TargetMet = long.Ratio <= limit && long.PeakHeapBytes < longHeapTarget
	emit(long)
	return nil
}

// longScenario builds one chart with edits edits on A, a device of clinic
// kamuga, and measures the cloud B receiving it, checking every change as
// the cloud does. Meanwhile C, a device of another clinic with nothing
// new, makes idle syncs with B every -idle-every: their latency shows
// whether one large bundle holds up the cloud's other devices.
func longScenario(ctx context.Context, o options, dep *deployment, name string, edits int) (result, error) {
	res := result{Scenario: name, Mode: "clinic", Charts: 1}
	dir := filepath.Join(o.dir, name)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return res, fmt.Errorf("%s: %w (give an empty -dir, or none)", name, err)
	}
	open := func(file string, cfg replica.Config, err error) (*replica.Replica, error) {
		if err != nil {
			return nil, err
		}
		return o.open(ctx, filepath.Join(dir, file), cfg)
	}
	// The long chart travels in bundles of the default size, so that one
	// large bundle meets the cloud (-bundle-bytes applies to the other
	// scenarios).
	cfgA, errA := dep.clinicDevice(clinicHome)
	cfgA.BundleBytes = 0
	a, err := open("a.db", cfgA, errA)
	if err != nil {
		return res, err
	}
	defer a.Close()
	cfgB, errB := dep.cloud()
	cfgB.BundleBytes = 0
	b, err := open("b.db", cfgB, errB)
	if err != nil {
		return res, err
	}
	defer b.Close()
	cfgC, errC := dep.clinicDevice(clinicOther)
	c, err := open("c.db", cfgC, errC)
	if err != nil {
		return res, err
	}
	defer c.Close()

	// Make the chart on A. Each edit is one change by a role allowed to
	// make it, as A's app would have made it.
	prog := newProgress(fmt.Sprintf("%s: editing one chart %d times", name, edits))
	start := time.Now()
	rng := rand.New(rand.NewPCG(o.seed, o.seed^0x10ca1))
	chart, err := longChart(rng, a.ID(), clinicHome, record.ReleaseDate().AddDate(0, 1, 0), edits, func(done int) {
		prog.update("%d/%d", done, edits)
	}, ctx.Err)
	if err != nil {
		return res, fmt.Errorf("%s: %w", name, err)
	}
	if err := a.Import(ctx, []*record.Chart{chart}); err != nil {
		return res, fmt.Errorf("%s: %w", name, err)
	}
	res.BuildMS = time.Since(start).Milliseconds()
	prog.done("done")
	chartID := chart.ID()

	// C meets the cloud, then times a few idle syncs while the cloud is
	// idle too.
	idle := link{a: c, b: b, clinic: clinicOther, checks: true}
	if err := exchange(ctx, idle, &result{}, nil); err != nil {
		return res, fmt.Errorf("%s: first sync of another device: %w", name, err)
	}
	var baseline []time.Duration
	for range idleBaselineOf {
		d, err := idleSync(ctx, idle)
		if err != nil {
			return res, fmt.Errorf("%s: %w", name, err)
		}
		baseline = append(baseline, d)
	}
	res.IdleBaselineMS = ms(median(baseline))

	// The cloud receives the chart while C keeps syncing.
	stop := make(chan struct{})
	var (
		wg      sync.WaitGroup
		lat     []time.Duration
		idleErr error
	)
	recv := newProgress(fmt.Sprintf("%s: the cloud receives %d changes", name, edits+1))
	wg.Add(1)
	go func() {
		defer wg.Done()
		lat, idleErr = idleLoop(ctx, idle, stop, o.idleEvery, func(lat []time.Duration) {
			recv.update("another device's idle syncs meanwhile: %d, the slowest %.0f ms", len(lat), ms(slices.Max(lat)))
		})
	}()
	runtime.GC()
	peak := startPeak()
	err = exchange(ctx, link{a: a, b: b, clinic: clinicHome, checks: true}, &res, nil)
	res.PeakHeapBytes, res.PeakRSSBytes = peak.stop()
	close(stop)
	wg.Wait()
	if err != nil {
		return res, fmt.Errorf("%s: the cloud receives the chart: %w", name, err)
	}
	if idleErr != nil {
		return res, fmt.Errorf("%s: idle syncs meanwhile: %w", name, idleErr)
	}
	recv.done("%d ms", res.WallMS)
	res.Changes = res.ChangesDistinct
	res.IdleSyncs = len(lat)
	if len(lat) > 0 {
		res.IdleMedianMS, res.IdleMaxMS = ms(median(lat)), ms(slices.Max(lat))
	}

	// Both hold the same chart.
	ha, err := a.Heads(ctx, chartID)
	if err != nil {
		return res, err
	}
	hb, err := b.Heads(ctx, chartID)
	if err != nil {
		return res, err
	}
	va, err := a.Chart(ctx, chartID)
	if err != nil {
		return res, err
	}
	vb, err := b.Chart(ctx, chartID)
	if err != nil {
		return res, err
	}
	ja, _ := json.Marshal(va)
	jb, _ := json.Marshal(vb)
	res.Converged, res.ViewsChecked = ha.Equal(hb) && bytes.Equal(ja, jb), 1
	return res, nil
}

// idleLoop makes idle syncs over l, one every `every`, from at once until
// stop is closed (the first one always), at most maxIdleSyncs; it returns
// their latencies. each, if set, is called after every sync.
func idleLoop(ctx context.Context, l link, stop <-chan struct{}, every time.Duration, each func([]time.Duration)) ([]time.Duration, error) {
	var lat []time.Duration
	t := time.NewTimer(0)
	defer t.Stop()
	for range maxIdleSyncs {
		d, err := idleSync(ctx, l)
		if err != nil {
			return lat, err
		}
		lat = append(lat, d)
		if each != nil {
			each(lat)
		}
		t.Reset(every)
		select {
		case <-stop:
			return lat, nil
		case <-ctx.Done():
			return lat, ctx.Err()
		case <-t.C:
		}
	}
	return lat, nil
}

// idleSync is one sync over l, a's bundle and b's answer, that must move
// nothing; it returns how long it took.
func idleSync(ctx context.Context, l link) (time.Duration, error) {
	start := time.Now()
	out, _, err := l.toB(ctx)
	if err != nil {
		return 0, fmt.Errorf("idle sync: %w", err)
	}
	back, _, err := l.toA(ctx)
	if err != nil {
		return 0, fmt.Errorf("idle sync: %w", err)
	}
	d := time.Since(start)
	if out.Changes+back.Changes > 0 || !out.Complete || !back.Complete {
		return d, errors.New("idle sync: a sync between replicas with nothing new moved changes")
	}
	return d, nil
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
