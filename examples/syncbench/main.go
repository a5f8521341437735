// Command syncbench measures the sync engine: it builds two replicas on
// disk, gives one of them N synthetic charts, and measures four scenarios
// (full, idle, delta, concurrent): bytes each way, round trips, wall time
// and peak Go heap. It checks that both replicas converge (equal heads for
// every chart and identical views) and exits non-zero if they do not.
//
//	go run ./examples/syncbench            # N=5,000, a table
//	go run ./examples/syncbench -n 50000 -json
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"slices"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/store"
)

type result struct {
	Scenario      string `json:"scenario"`
	Charts        int    `json:"charts"`
	BytesSent     int    `json:"bytes_sent"`
	BytesReceived int    `json:"bytes_received"`
	RoundTrips    int    `json:"round_trips"`
	PayloadBytes  int    `json:"payload_bytes"`
	WallMS        int64  `json:"wall_ms"`
	PeakHeapBytes uint64 `json:"peak_heap_bytes"`
	PeakRSSBytes  uint64 `json:"peak_rss_bytes,omitempty"`
	Converged     bool   `json:"converged"`
	ChangesMoved  int    `json:"changes_moved"`
	ViewsChecked  int    `json:"views_checked"`
	Target        string `json:"target"`
	TargetMet     bool   `json:"target_met"`
}

func main() {
	n := flag.Int("n", 5000, "number of charts")
	asJSON := flag.Bool("json", false, "print one JSON object per scenario instead of a table")
	dir := flag.String("dir", "", "directory for the two replica databases (default: a temporary directory, removed afterwards)")
	seed := flag.Uint64("seed", 1, "seed for the synthetic charts")
	verify := flag.Int("verify", 10000, "compare the views of all charts when N is at most this; above it, of every changed chart and a random sample of this many")
	unsigned := flag.Bool("unsigned", false, "replicas neither sign nor check change signatures (by default both do, as devices of a deployment)")
	checkAuthors := flag.Bool("check-authors", false, "the receiving replicas also check every change's author and role (record.CheckChange), as the cloud does")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *n, *asJSON, *dir, *seed, *verify, !*unsigned, *checkAuthors); err != nil {
		fmt.Fprintln(os.Stderr, "syncbench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, n int, asJSON bool, dir string, seed uint64, verify int, signed, checkAuthors bool) error {
	if n < 100 {
		return errors.New("-n must be at least 100 (the delta and concurrent scenarios change 80 charts)")
	}
	if dir == "" {
		d, err := os.MkdirTemp("", "syncbench-*")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	cfgA, cfgB, err := configs(signed, checkAuthors)
	if err != nil {
		return err
	}
	a, err := replica.Open(ctx, filepath.Join(dir, "a.db"), cfgA)
	if err != nil {
		return err
	}
	defer a.Close()
	b, err := replica.Open(ctx, filepath.Join(dir, "b.db"), cfgB)
	if err != nil {
		return err
	}
	defer b.Close()
	if held, err := a.Find(ctx, "", 1); err != nil || len(held) > 0 {
		return fmt.Errorf("%s already holds charts: give an empty -dir (or none)", dir)
	}

	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
	ids, savedBytes, err := build(ctx, a, rng, n)
	if err != nil {
		return err
	}
	bench := &bench{a: a, b: b, n: n, verify: verify, rng: rng}
	var results []result

	full, err := bench.scenario(ctx, "full", savedBytes, nil, nil)
	if err != nil {
		return err
	}
	full.Target, full.TargetMet = fmt.Sprintf("bytes ≤ saved size %d", savedBytes), full.BytesSent+full.BytesReceived <= savedBytes
	results = append(results, full)

	idle, err := bench.scenario(ctx, "idle", 0, nil, nil)
	if err != nil {
		return err
	}
	idle.Target, idle.TargetMet = "≤ 1 KiB, 1 round trip", idle.BytesSent+idle.BytesReceived <= 1024 && idle.RoundTrips == 1
	results = append(results, idle)

	// Delta: 50 charts changed on a, 10 others on b.
	perm := rng.Perm(len(ids))
	onA, onB := pickIDs(ids, perm[:50]), pickIDs(ids, perm[50:60])
	payload := 0
	for _, e := range []struct {
		r   *replica.Replica
		ids []string
	}{{a, onA}, {b, onB}} {
		p, err := editAll(ctx, e.r, e.ids, rng, 0)
		if err != nil {
			return err
		}
		payload += p
	}
	delta, err := bench.scenario(ctx, "delta", payload, append(onA, onB...), nil)
	if err != nil {
		return err
	}
	delta.Target, delta.TargetMet = fmt.Sprintf("bytes ≤ 2×%d + 2 KiB", payload), delta.BytesSent+delta.BytesReceived <= 2*payload+2048
	results = append(results, delta)

	// Concurrent: the same 20 charts, the same prescription, on both sides.
	same := pickIDs(ids, perm[60:80])
	payload = 0
	for i, r := range []*replica.Replica{a, b} {
		// Side a multiplies each dose by 1.5, side b by 2: different
		// values, so every chart must show a conflict.
		p, err := editAll(ctx, r, same, rand.New(rand.NewPCG(seed, uint64(i))), 1.5+0.5*float64(i))
		if err != nil {
			return err
		}
		payload += p
	}
	conc, err := bench.scenario(ctx, "concurrent", payload, same, func(v record.View) error {
		if len(v.Conflicts) == 0 {
			return fmt.Errorf("chart %s: concurrent dose changes show no conflict", v.ChartID)
		}
		return nil
	})
	if err != nil {
		return err
	}
	conc.Target, conc.TargetMet = fmt.Sprintf("bytes ≤ 2×%d + 2 KiB", payload), conc.BytesSent+conc.BytesReceived <= 2*payload+2048
	results = append(results, conc)

	report(os.Stdout, results, asJSON)

	// Reopening must not load the charts: time it on the replica that
	// received everything.
	if err := b.Close(); err != nil {
		return err
	}
	start := time.Now()
	b, err = replica.Open(ctx, filepath.Join(dir, "b.db"), cfgB)
	if err != nil {
		return err
	}
	defer b.Close()
	opened := time.Since(start)
	v, err := b.Chart(ctx, ids[len(ids)-1])
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "reopened the replica holding %d charts in %d ms; first chart read after %d ms (%d history entries)\n",
		n, opened.Milliseconds(), time.Since(start).Milliseconds(), len(v.History))
	for _, r := range results {
		if !r.Converged {
			return fmt.Errorf("scenario %s did not converge", r.Scenario)
		}
	}
	return nil
}

func pickIDs(ids []string, idx []int) []string {
	out := make([]string, len(idx))
	for i, j := range idx {
		out[i] = ids[j]
	}
	return out
}

// configs returns the two replicas' configurations: signed, each is a
// device with its own key pair, enrolled by one authority, and knows at
// first only its own enrolment (the other's arrives with its changes).
func configs(signed, checkAuthors bool) (replica.Config, replica.Config, error) {
	if !signed {
		return replica.Config{CheckAuthors: checkAuthors}, replica.Config{CheckAuthors: checkAuthors}, nil
	}
	auth, err := device.NewAuthority()
	if err != nil {
		return replica.Config{}, replica.Config{}, err
	}
	newDevice := func() (replica.Config, error) {
		id, err := device.Generate(replica.NewID(), "kamuga-dispensary")
		if err != nil {
			return replica.Config{}, err
		}
		rec, err := auth.Enrol(id.Public(), time.Now(), 24*time.Hour)
		if err != nil {
			return replica.Config{}, err
		}
		roster, err := device.NewRoster(device.RosterConfig{Authorities: []device.TrustedAuthority{{Key: auth.PublicKey()}}})
		if err != nil {
			return replica.Config{}, err
		}
		if _, err := roster.Add(rec); err != nil {
			return replica.Config{}, err
		}
		return replica.Config{Signer: id, Keys: roster, CheckAuthors: checkAuthors}, nil
	}
	a, err := newDevice()
	if err != nil {
		return a, a, err
	}
	b, err := newDevice()
	return a, b, err
}

// build gives a the n synthetic charts, in durable groups, and returns
// their IDs and the sum of their compact saved sizes.
func build(ctx context.Context, a *replica.Replica, rng *rand.Rand, n int) ([]string, int, error) {
	const group = 500
	ids := make([]string, 0, n)
	saved := 0
	start := time.Now()
	base := time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)
	for len(ids) < n {
		batch := make([]*record.Chart, 0, group)
		for len(batch) < group && len(ids)+len(batch) < n {
			c, err := newChart(rng, a.ID(), "kamuga-dispensary", base)
			if err != nil {
				return nil, 0, fmt.Errorf("build chart: %w", err)
			}
			saved += len(c.Doc().Save())
			batch = append(batch, c)
		}
		if err := a.Import(ctx, batch); err != nil {
			return nil, 0, err
		}
		for _, c := range batch {
			ids = append(ids, c.ID())
		}
		progress("building charts", len(ids), n, start)
		if err := ctx.Err(); err != nil {
			return nil, 0, err
		}
	}
	fmt.Fprintln(os.Stderr)
	return ids, saved, nil
}

// editAll makes one edit on each chart and returns the raw bytes of the
// changes made. With a doseFactor it multiplies the dose of the chart's
// first prescription by it (so both sides edit the same field); without,
// it records an encounter.
func editAll(ctx context.Context, r *replica.Replica, ids []string, rng *rand.Rand, doseFactor float64) (int, error) {
	by := staff[1]
	payload := 0
	for _, id := range ids {
		var op record.Op = record.AddEncounter{Complaint: pick(rng, complaints), Vitals: record.Vitals{Pulse: float64(60 + rng.IntN(40))}}
		if doseFactor != 0 {
			v, err := r.Chart(ctx, id)
			if err != nil {
				return 0, err
			}
			if len(v.Prescriptions) == 0 {
				return 0, fmt.Errorf("chart %s has no prescription", id)
			}
			p := v.Prescriptions[0]
			op = record.ReviseDose{PrescriptionID: p.ID, Dose: p.Dose * doseFactor}
		}
		res, err := r.Edit(ctx, id, by, op)
		if err != nil {
			return 0, err
		}
		payload += len(res.Change.Raw)
	}
	return payload, nil
}

type bench struct {
	a, b   *replica.Replica
	n      int
	verify int
	rng    *rand.Rand
}

// scenario syncs a and b, measuring, then checks convergence: equal heads
// for every chart, and equal views for the changed charts and a sample
// (all charts when n ≤ verify). check, if set, is run on each changed
// chart's view.
func (bn *bench) scenario(ctx context.Context, name string, payload int, changed []string, check func(record.View) error) (result, error) {
	res := result{Scenario: name, Charts: bn.n, PayloadBytes: payload}
	runtime.GC()
	peak := startPeak()
	start := time.Now()
	err := exchange(ctx, bn.a, bn.b, &res, name == "full")
	res.WallMS = time.Since(start).Milliseconds()
	res.PeakHeapBytes, res.PeakRSSBytes = peak.stop()
	if err != nil {
		return res, fmt.Errorf("%s sync: %w", name, err)
	}
	conv, checked, err := bn.converged(ctx, changed, check)
	if err != nil {
		return res, fmt.Errorf("%s: check convergence: %w", name, err)
	}
	res.Converged, res.ViewsChecked = conv, checked
	return res, nil
}

// exchange is what an interactive courier does: a's bundle to b, b's
// answer to a, until both had everything in one bundle.
func exchange(ctx context.Context, a, b *replica.Replica, res *result, showProgress bool) error {
	start := time.Now()
	for rt := 1; rt <= 100000; rt++ {
		out, err := a.MakeBundle(ctx, b.ID())
		if err != nil {
			return err
		}
		if _, err := b.Receive(ctx, out.Data); err != nil {
			return err
		}
		back, err := b.MakeBundle(ctx, a.ID())
		if err != nil {
			return err
		}
		if _, err := a.Receive(ctx, back.Data); err != nil {
			return err
		}
		res.RoundTrips = rt
		res.BytesSent += len(out.Data)
		res.BytesReceived += len(back.Data)
		res.ChangesMoved += out.Changes + back.Changes
		if showProgress {
			fmt.Fprintf(os.Stderr, "\rsyncing: %d round trips, %d changes, %.1f MB sent, %s", rt, res.ChangesMoved,
				float64(res.BytesSent)/1e6, time.Since(start).Round(time.Second))
		}
		if out.Complete && back.Complete {
			if showProgress {
				fmt.Fprintln(os.Stderr)
			}
			return nil
		}
	}
	return errors.New("no convergence after 100000 round trips")
}

func (bn *bench) converged(ctx context.Context, changed []string, check func(record.View) error) (bool, int, error) {
	ca, err := bn.a.Find(ctx, "", 0)
	if err != nil {
		return false, 0, err
	}
	cb, err := bn.b.Find(ctx, "", 0)
	if err != nil {
		return false, 0, err
	}
	if len(ca) != bn.n || len(cb) != bn.n {
		return false, 0, nil
	}
	heads := make(map[string]store.Chart, len(ca))
	for _, c := range ca {
		heads[c.ID] = c
	}
	all := make([]string, 0, len(cb))
	for _, c := range cb {
		if !heads[c.ID].Heads.Equal(c.Heads) {
			return false, 0, nil
		}
		all = append(all, c.ID)
	}
	toCheck := slices.Clone(changed)
	if bn.n <= bn.verify {
		toCheck = all
	} else {
		for range bn.verify {
			toCheck = append(toCheck, all[bn.rng.IntN(len(all))])
		}
	}
	for _, id := range toCheck {
		va, err := bn.a.Chart(ctx, id)
		if err != nil {
			return false, 0, err
		}
		vb, err := bn.b.Chart(ctx, id)
		if err != nil {
			return false, 0, err
		}
		ja, _ := json.Marshal(va)
		jb, _ := json.Marshal(vb)
		if !bytes.Equal(ja, jb) {
			return false, 0, nil
		}
		if check != nil && slices.Contains(changed, id) {
			if err := check(va); err != nil {
				return false, 0, err
			}
		}
	}
	return true, len(toCheck), nil
}

// peak samples the Go heap (and the process's resident memory) until
// stopped.
type peak struct {
	done     chan struct{}
	wg       sync.WaitGroup
	heap, rs atomic.Uint64
}

func startPeak() *peak {
	p := &peak{done: make(chan struct{})}
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() {
		metrics.Read(sample)
		if h := sample[0].Value.Uint64(); h > p.heap.Load() {
			p.heap.Store(h)
		}
		if r := rss(); r > p.rs.Load() {
			p.rs.Store(r)
		}
	}
	read()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-p.done:
				read()
				return
			case <-t.C:
				read()
			}
		}
	}()
	return p
}

func (p *peak) stop() (heap, rss uint64) {
	close(p.done)
	p.wg.Wait()
	return p.heap.Load(), p.rs.Load()
}

// rss is the resident set size from /proc (0 where there is none). It
// includes automerge's C memory, which the Go heap does not.
func rss() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	var size, res uint64
	if _, err := fmt.Sscan(string(b), &size, &res); err != nil {
		return 0
	}
	return res * uint64(os.Getpagesize())
}

func progress(what string, done, total int, start time.Time) {
	fmt.Fprintf(os.Stderr, "\r%s: %d/%d (%s)", what, done, total, time.Since(start).Round(time.Second))
}

func report(w io.Writer, rs []result, asJSON bool) {
	if asJSON {
		enc := json.NewEncoder(w)
		for _, r := range rs {
			enc.Encode(r)
		}
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tcharts\tsent B\treceived B\tround trips\tpayload B\twall ms\tpeak heap MB\tpeak RSS MB\tconverged\ttarget\t")
	for _, r := range rs {
		met := "met"
		if !r.TargetMet {
			met = "MISSED"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%.1f\t%.1f\t%v\t%s (%s)\t\n", r.Scenario, r.Charts, r.BytesSent, r.BytesReceived,
			r.RoundTrips, r.PayloadBytes, r.WallMS, float64(r.PeakHeapBytes)/(1<<20), float64(r.PeakRSSBytes)/(1<<20), r.Converged, r.Target, met)
	}
	tw.Flush()
}
