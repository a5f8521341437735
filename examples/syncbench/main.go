// Command syncbench measures the sync engine between replicas on disk. It
// checks that the replicas converge (equal heads for every chart and
// identical views) and exits non-zero if they do not.
//
// Three groups of scenarios (-scenarios sync,checks,long), each printed
// as a table row or, with -json, as one JSON object per scenario as it
// ends:
//
//   - sync: replica A gets N synthetic charts, then full, idle, delta and
//     concurrent syncs with replica B: bytes each way, round trips,
//     changes sent (and how many distinct, and already held), wall time,
//     peak Go heap and RSS. By default A and B are peers. With -clinic
//     they sync as the cloud does: A is a device of clinic kamuga, B the
//     cloud, which takes A's bundles with ReceiveFrom (A's ID, the
//     clinic's scope, author checks) and makes A's with MakeBundleFor the
//     clinic; a fifth scenario, download, is then a new device's first
//     sync with the cloud. -bundle-bytes makes bundles small, so a first
//     sync takes many round trips.
//   - checks: the full sync of A's charts to a new replica with signature
//     and author checks, against one without, at the same N (target: at
//     most 1.3 times as long).
//   - long: one chart edited -long times (prescriptions, doses, labs,
//     notes, diagnoses, demographics; one change each) on a clinic device,
//     received by the checking cloud, against a base run of a tenth of
//     the edits (target: at most 12 times as long for 10 times the
//     changes, peak Go heap under 128 MiB). Meanwhile a device of another
//     clinic makes idle syncs with the cloud every -idle-every; their
//     median and maximum latency show whether one large bundle holds up
//     the cloud's other devices. The figure is -long 10000; the
//     default is 3000 because today's author checks cost more per change
//     the longer a chart's history (10000 takes about an hour, and making
//     the chart's edits another half hour); -long 0 skips it.
//
// Progress goes to stderr: one line rewritten in place on a terminal,
// plain lines every 10 seconds otherwise. Every loop is bounded in count,
// and the run in time (-timeout).
//
//	go run ./examples/syncbench                     # N=5,000, a table
//	go run ./examples/syncbench -n 50000 -json -scenarios sync
//	go run ./examples/syncbench -clinic -bundle-bytes 65536 -json
//	go run ./examples/syncbench -scenarios long -long 10000 -json
package main

import (
	"bytes"
	"context"
	cryptorand "crypto/rand"
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
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/store"
)

type result struct {
	Scenario string `json:"scenario"`
	// Mode is "peers" (two devices syncing as equals) or "clinic" (a
	// clinic's device syncing with the cloud, within the clinic's scope).
	Mode          string `json:"mode"`
	Charts        int    `json:"charts"`
	BytesSent     int    `json:"bytes_sent"`
	BytesReceived int    `json:"bytes_received"`
	RoundTrips    int    `json:"round_trips"`
	PayloadBytes  int    `json:"payload_bytes"`
	WallMS        int64  `json:"wall_ms"`
	PeakHeapBytes uint64 `json:"peak_heap_bytes"`
	PeakRSSBytes  uint64 `json:"peak_rss_bytes,omitempty"`
	// DiskBytesPerChart is, after the full sync, the receiving replica's
	// database (with its write-ahead log) divided by the charts it holds.
	DiskBytesPerChart float64 `json:"disk_bytes_per_chart,omitempty"`
	Converged         bool    `json:"converged"`
	// ChangesMoved is ChangesSent, under its earlier name.
	ChangesMoved int `json:"changes_moved"`
	// ChangesSent counts the changes the bundles carried, both ways;
	// ChangesDistinct the different changes among them; ChangesDuplicate
	// those the receiving replica already held (resends).
	ChangesSent      int `json:"changes_sent"`
	ChangesDistinct  int `json:"changes_distinct"`
	ChangesDuplicate int `json:"changes_duplicate"`
	// BundleBytesLimit is replica.Config.BundleBytes (0: the default).
	BundleBytesLimit int `json:"bundle_bytes_limit,omitempty"`
	ViewsChecked     int `json:"views_checked"`

	// The long-chart scenarios: the chart's changes, the time to make
	// them on the device (not part of wall_ms), and for "long" the base
	// run's size and time (ratio is wall_ms / base_wall_ms).
	Changes     int   `json:"changes,omitempty"`
	BuildMS     int64 `json:"build_ms,omitempty"`
	BaseChanges int   `json:"base_changes,omitempty"`
	BaseWallMS  int64 `json:"base_wall_ms,omitempty"`
	// Idle syncs of another clinic's device with the cloud while the
	// cloud receives the long chart: how many, their median and maximum
	// latency, and the median before the receive began.
	IdleSyncs      int     `json:"idle_syncs,omitempty"`
	IdleMedianMS   float64 `json:"idle_median_ms,omitempty"`
	IdleMaxMS      float64 `json:"idle_max_ms,omitempty"`
	IdleBaselineMS float64 `json:"idle_baseline_ms,omitempty"`

	// The checks scenario: the full sync's time without signature and
	// author checks (wall_ms is with them; ratio is wall_ms / this).
	WallMSChecksOff int64   `json:"wall_ms_checks_off,omitempty"`
	Ratio           float64 `json:"ratio,omitempty"`

	Target    string `json:"target"`
	TargetMet bool   `json:"target_met"`
}

// options are the command's flags.
type options struct {
	n            int
	asJSON       bool
	dir          string
	seed         uint64
	verify       int
	signed       bool
	checkAuthors bool
	clinic       bool
	bundleBytes  int
	scenarios    map[string]bool
	long         int
	longBase     int
	idleEvery    time.Duration
	// key, if set (-encrypt), is the key every replica's database is
	// encrypted with (replica.Config.DatabaseKey).
	key []byte
}

func (o options) mode() string {
	m := "peers"
	if o.clinic {
		m = "clinic"
	}
	if o.key != nil {
		m += ", encrypted"
	}
	return m
}

// open opens a replica's database at path with cfg, encrypted with o.key
// if set.
func (o options) open(ctx context.Context, path string, cfg replica.Config) (*replica.Replica, error) {
	cfg.DatabaseKey = o.key
	return replica.Open(ctx, path, cfg)
}

// The groups of scenarios -scenarios chooses from.
var groups = []string{"sync", "checks", "long"}

func main() {
	var o options
	flag.IntVar(&o.n, "n", 5000, "number of charts")
	flag.BoolVar(&o.asJSON, "json", false, "print one JSON object per scenario (as each ends) instead of a table")
	flag.StringVar(&o.dir, "dir", "", "directory for the replica databases (default: a temporary directory, removed afterwards)")
	flag.Uint64Var(&o.seed, "seed", 1, "seed for the synthetic charts")
	flag.IntVar(&o.verify, "verify", 10000, "compare the views of all charts when N is at most this; above it, of every changed chart and a random sample of this many")
	encrypt := flag.Bool("encrypt", false, "every replica's database is encrypted (SQLCipher, a random key: replica.Config.DatabaseKey), to measure what encryption at rest costs")
	unsigned := flag.Bool("unsigned", false, "replicas neither sign nor check change signatures (by default both do, as devices of a deployment); not with -clinic, and the checks scenario is skipped")
	flag.BoolVar(&o.checkAuthors, "check-authors", false, "peers mode: the receiving replicas also check every change's author and role (record.CheckChange), as the cloud does (in -clinic mode both sides always do)")
	flag.BoolVar(&o.clinic, "clinic", false, "run the sync and checks scenarios as the cloud runs them: replica A is a device of clinic "+clinicHome+", B the cloud, which receives only A's bundles within the clinic's scope, checking authors, and answers with the clinic's charts only")
	flag.IntVar(&o.bundleBytes, "bundle-bytes", 0, "the most change bytes a bundle carries (replica.Config.BundleBytes; 0: the default, 4 MiB); a small value forces many round trips (the long scenario keeps the default, so its chart meets the cloud in large bundles)")
	scenarios := flag.String("scenarios", strings.Join(groups, ","), "the groups of scenarios to run, comma-separated: sync (full, idle, delta, concurrent), checks (the full sync with and without signature and author checks), long (one chart with -long changes)")
	flag.IntVar(&o.long, "long", 3000, "long scenario: the edits made to its one chart (the issue's figure is 10000: today about half an hour to make the edits and an hour to receive them); 0 skips it")
	flag.IntVar(&o.longBase, "long-base", 0, "long scenario: the edits of the base run the long one is compared with (0: a tenth of -long, so the target is the issue's 12× for 10× the changes)")
	flag.DurationVar(&o.idleEvery, "idle-every", 100*time.Millisecond, "long scenario: the pause between another device's idle syncs with the cloud while it receives the long chart")
	timeout := flag.Duration("timeout", 3*time.Hour, "stop the run after this long")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file (go tool pprof)")
	memProfile := flag.String("memprofile", "", "write a profile of the memory allocated over the whole run to this file at its end (go tool pprof -sample_index=alloc_space)")
	flag.Parse()
	if *encrypt {
		o.key = make([]byte, 32)
		if _, err := cryptorand.Read(o.key); err != nil {
			fmt.Fprintln(os.Stderr, "syncbench: no randomness for a database key:", err)
			os.Exit(2)
		}
	}
	if *memProfile != "" {
		runtime.MemProfileRate = 64 << 10
		defer func() {
			if err := writeMemProfile(*memProfile); err != nil {
				fmt.Fprintln(os.Stderr, "syncbench: memory profile:", err)
			}
		}()
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "syncbench: cpu profile:", err)
			os.Exit(2)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "syncbench: cpu profile:", err)
			os.Exit(2)
		}
		defer pprof.StopCPUProfile()
	}
	o.signed = !*unsigned
	o.scenarios = map[string]bool{}
	for _, g := range strings.Split(*scenarios, ",") {
		if g = strings.TrimSpace(g); g != "" {
			o.scenarios[g] = true
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "syncbench:", err)
		os.Exit(1)
	}
}

// writeMemProfile writes the allocations profile to path.
func writeMemProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func run(ctx context.Context, o options) error {
	for g := range o.scenarios {
		if !slices.Contains(groups, g) {
			return fmt.Errorf("-scenarios: no group %q (choose from %s)", g, strings.Join(groups, ", "))
		}
	}
	switch {
	case o.n < 100 && (o.scenarios["sync"] || o.scenarios["checks"]):
		return errors.New("-n must be at least 100 (the delta and concurrent scenarios change 80 charts)")
	case o.clinic && !o.signed:
		return errors.New("-clinic needs signed changes: the cloud checks every device's signatures (drop -unsigned)")
	case o.bundleBytes < 0 || o.long < 0 || o.longBase < 0 || o.idleEvery <= 0:
		return errors.New("-bundle-bytes, -long and -long-base must not be negative, -idle-every must be positive")
	}
	if o.dir == "" {
		d, err := os.MkdirTemp("", "syncbench-*")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		o.dir = d
	}
	dep, err := newDeployment(o.bundleBytes, o.checkAuthors)
	if err != nil {
		return err
	}
	var results []result
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false) // targets read "≤ 1 KiB", "< 128 MiB"
	emit := func(r result) {
		results = append(results, r)
		if o.asJSON {
			enc.Encode(r)
		}
	}

	if o.scenarios["sync"] || o.scenarios["checks"] {
		if err := runCharts(ctx, o, dep, emit); err != nil {
			return err
		}
	}
	if o.scenarios["long"] && o.long > 0 {
		if err := runLong(ctx, o, dep, emit); err != nil {
			return err
		}
	}
	if !o.asJSON {
		report(os.Stdout, results)
	}
	for _, r := range results {
		if !r.Converged {
			return fmt.Errorf("scenario %s did not converge", r.Scenario)
		}
	}
	return nil
}

// runCharts gives replica A n synthetic charts and runs the sync and
// checks scenarios on them.
func runCharts(ctx context.Context, o options, dep *deployment, emit func(result)) error {
	cfgA, cfgB, err := configs(o, dep)
	if err != nil {
		return err
	}
	a, err := o.open(ctx, filepath.Join(o.dir, "a.db"), cfgA)
	if err != nil {
		return err
	}
	defer a.Close()
	if held, err := a.Find(ctx, "", 1); err != nil || len(held) > 0 {
		return fmt.Errorf("%s already holds charts: give an empty -dir (or none)", o.dir)
	}
	rng := rand.New(rand.NewPCG(o.seed, o.seed^0x5eed))
	home := "kamuga-dispensary"
	if o.clinic {
		home = clinicHome
	}
	ids, savedBytes, err := build(ctx, a, rng, o.n, home)
	if err != nil {
		return err
	}
	if o.scenarios["sync"] {
		if err := runSync(ctx, o, dep, a, cfgB, ids, savedBytes, rng, emit); err != nil {
			return err
		}
	}
	if o.scenarios["checks"] {
		if !o.signed {
			fmt.Fprintln(os.Stderr, "checks scenario skipped: with -unsigned there are no signatures to check")
			return nil
		}
		res, err := checksScenario(ctx, o, dep, a)
		if err != nil {
			return err
		}
		emit(res)
	}
	return nil
}

// runSync measures the full, idle, delta and concurrent scenarios between
// a and a new replica B (with -clinic, also a new device's first download
// from B), then times reopening B.
func runSync(ctx context.Context, o options, dep *deployment, a *replica.Replica, cfgB replica.Config, ids []string, savedBytes int, rng *rand.Rand, emit func(result)) error {
	b, err := o.open(ctx, filepath.Join(o.dir, "b.db"), cfgB)
	if err != nil {
		return err
	}
	defer func() { b.Close() }()
	l := link{a: a, b: b}
	if o.clinic {
		l.clinic, l.checks = clinicHome, true
	}
	bench := &bench{a: a, b: b, l: l, o: o, rng: rng}

	full, err := bench.scenario(ctx, "full", savedBytes, nil, nil)
	if err != nil {
		return err
	}
	full.Target, full.TargetMet = fmt.Sprintf("bytes ≤ saved size %d", savedBytes), full.BytesSent+full.BytesReceived <= savedBytes
	if size, err := dbSize(filepath.Join(o.dir, "b.db")); err == nil && o.n > 0 {
		full.DiskBytesPerChart = float64(size) / float64(o.n)
	}
	emit(full)

	idle, err := bench.scenario(ctx, "idle", 0, nil, nil)
	if err != nil {
		return err
	}
	idle.Target, idle.TargetMet = "≤ 1 KiB, 1 round trip", idle.BytesSent+idle.BytesReceived <= 1024 && idle.RoundTrips == 1
	emit(idle)

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
	emit(delta)

	// Concurrent: the same 20 charts, the same prescription, on both sides.
	same := pickIDs(ids, perm[60:80])
	payload = 0
	for i, r := range []*replica.Replica{a, b} {
		// Side a multiplies each dose by 1.5, side b by 2: different
		// values, so every chart must show a conflict.
		p, err := editAll(ctx, r, same, rand.New(rand.NewPCG(o.seed, uint64(i))), 1.5+0.5*float64(i))
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
	emit(conc)

	if o.clinic {
		down, err := firstDownload(ctx, o, dep, b)
		if err != nil {
			return err
		}
		emit(down)
	}

	// Reopening must not load the charts: time it on the replica that
	// received everything.
	if err := b.Close(); err != nil {
		return err
	}
	start := time.Now()
	b, err = replica.Open(ctx, filepath.Join(o.dir, "b.db"), cfgB)
	if err != nil {
		return err
	}
	opened := time.Since(start)
	v, err := b.Chart(ctx, ids[len(ids)-1])
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "reopened the replica holding %d charts in %d ms; first chart read after %d ms (%d history entries)\n",
		o.n, opened.Milliseconds(), time.Since(start).Milliseconds(), len(v.History))
	return nil
}

func pickIDs(ids []string, idx []int) []string {
	out := make([]string, len(idx))
	for i, j := range idx {
		out[i] = ids[j]
	}
	return out
}

// configs returns the configurations of replicas A and B. As peers,
// signed, each is a device with its own key pair, enrolled by one
// authority, and knows at first only its own enrolment (the other's
// arrives with its changes). With -clinic, A is a device of clinic
// kamuga and B the cloud.
func configs(o options, dep *deployment) (replica.Config, replica.Config, error) {
	switch {
	case o.clinic:
		a, err := dep.clinicDevice(clinicHome)
		if err != nil {
			return a, a, err
		}
		b, err := dep.cloud()
		return a, b, err
	case !o.signed:
		cfg := replica.Config{CheckAuthors: o.checkAuthors, BundleBytes: o.bundleBytes}
		return cfg, cfg, nil
	}
	a, err := dep.signer("kamuga-dispensary")
	if err != nil {
		return a, a, err
	}
	b, err := dep.signer("kamuga-dispensary")
	return a, b, err
}

// build gives a the n synthetic charts of clinic home, in durable groups,
// and returns their IDs and the sum of their compact saved sizes.
func build(ctx context.Context, a *replica.Replica, rng *rand.Rand, n int, home string) ([]string, int, error) {
	const group = 500
	ids := make([]string, 0, n)
	saved := 0
	prog := newProgress("building charts")
	base := time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)
	for len(ids) < n {
		batch := make([]*record.Chart, 0, group)
		for len(batch) < group && len(ids)+len(batch) < n {
			c, err := newChart(rng, a.ID(), home, base)
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
		prog.update("%d/%d", len(ids), n)
		if err := ctx.Err(); err != nil {
			return nil, 0, err
		}
	}
	prog.done("%d charts", n)
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
	a, b *replica.Replica
	l    link
	o    options
	rng  *rand.Rand
}

// scenario syncs a and b, measuring, then checks convergence: equal heads
// for every chart, and equal views for the changed charts and a sample
// (all charts when n ≤ verify). check, if set, is run on each changed
// chart's view.
func (bn *bench) scenario(ctx context.Context, name string, payload int, changed []string, check func(record.View) error) (result, error) {
	res := result{Scenario: name, Mode: bn.o.mode(), Charts: bn.o.n, PayloadBytes: payload, BundleBytesLimit: bn.o.bundleBytes}
	var prog *progress
	if name == "full" {
		prog = newProgress("full sync")
	}
	runtime.GC()
	peak := startPeak()
	err := exchange(ctx, bn.l, &res, prog)
	res.PeakHeapBytes, res.PeakRSSBytes = peak.stop()
	if err != nil {
		return res, fmt.Errorf("%s sync: %w", name, err)
	}
	if prog != nil {
		prog.done("%d round trips, %d changes sent (%d distinct)", res.RoundTrips, res.ChangesSent, res.ChangesDistinct)
	}
	conv, checked, err := bn.converged(ctx, changed, check)
	if err != nil {
		return res, fmt.Errorf("%s: check convergence: %w", name, err)
	}
	res.Converged, res.ViewsChecked = conv, checked
	return res, nil
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
	if len(ca) != bn.o.n || len(cb) != bn.o.n {
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
	if bn.o.n <= bn.o.verify {
		toCheck = all
	} else {
		for range bn.o.verify {
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

// report prints the results as a table, and what the long and checks
// scenarios measure besides below it.
func report(w io.Writer, rs []result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tmode\tcharts\tsent B\treceived B\tround trips\tchanges sent\tdistinct\tpayload B\twall ms\tpeak heap MB\tpeak RSS MB\tconverged\ttarget\t")
	for _, r := range rs {
		met := "met"
		if !r.TargetMet {
			met = "MISSED"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%.1f\t%.1f\t%v\t%s (%s)\t\n", r.Scenario, r.Mode, r.Charts, r.BytesSent, r.BytesReceived,
			r.RoundTrips, r.ChangesSent, r.ChangesDistinct, r.PayloadBytes, r.WallMS, float64(r.PeakHeapBytes)/(1<<20), float64(r.PeakRSSBytes)/(1<<20), r.Converged, r.Target, met)
	}
	tw.Flush()
	for _, r := range rs {
		switch {
		case r.WallMSChecksOff > 0:
			fmt.Fprintf(w, "%s: full sync %d ms with signature and author checks, %d ms without: %.2f×\n", r.Scenario, r.WallMS, r.WallMSChecksOff, r.Ratio)
		case r.Changes > 0:
			fmt.Fprintf(w, "%s: %d changes to one chart received in %d ms (made in %d ms)", r.Scenario, r.Changes, r.WallMS, r.BuildMS)
			if r.BaseWallMS > 0 {
				fmt.Fprintf(w, ", %.2f× the %d ms of %d changes", r.Ratio, r.BaseWallMS, r.BaseChanges)
			}
			fmt.Fprintf(w, "; meanwhile %d idle syncs of another device: median %.1f ms, max %.1f ms (%.1f ms before)\n",
				r.IdleSyncs, r.IdleMedianMS, r.IdleMaxMS, r.IdleBaselineMS)
		}
	}
}

// dbSize returns the bytes a SQLite database takes on disk: its file and
// its write-ahead log.
func dbSize(path string) (int64, error) {
	var n int64
	for _, p := range []string{path, path + "-wal"} {
		fi, err := os.Stat(p)
		if errors.Is(err, os.ErrNotExist) && p != path {
			continue
		}
		if err != nil {
			return 0, err
		}
		n += fi.Size()
	}
	return n, nil
}
