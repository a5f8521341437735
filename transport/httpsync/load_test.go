package httpsync_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/metrics"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/audit"
	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/store"
	"github.com/chartsync/chartsync/transport/httpsync"
)

// The load test runs the cloud in a child process (this test binary,
// re-executed with HTTPSYNC_LOAD_CLOUD naming its data directory) so that
// its memory is measured apart from the simulated devices'.

const loadCloudEnv = "HTTPSYNC_LOAD_CLOUD"

// The shape of BenchmarkCloudLoad.
var (
	loadDevices = flag.Int("load.devices", 200, "BenchmarkCloudLoad: simulated clinic devices")
	loadClinics = flag.Int("load.clinics", 20, "BenchmarkCloudLoad: clinics the devices are spread over")
	loadCharts  = flag.Int("load.charts", 5, "BenchmarkCloudLoad: charts each device registers offline")
	loadRounds  = flag.Int("load.rounds", 10, "BenchmarkCloudLoad: syncs each device makes, with an edit before each after the first")
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(loadCloudEnv); dir != "" {
		os.Exit(runLoadCloud(dir))
	}
	os.Exit(m.Run())
}

// cloudStats is what the child cloud reports when its stdin closes.
type cloudStats struct {
	Handler      httpsync.HandlerStats
	Charts       int
	PeakHeap     uint64 // bytes of live heap objects, sampled every 5ms
	PeakGoMemory uint64 // all memory the Go runtime holds, sampled
	PeakRSS      uint64 // resident set, sampled from /proc/self/statm
	PeakCMemory  uint64 // resident set beyond what the Go runtime holds (Automerge and SQLite), sampled
	HighWaterRSS uint64 // the kernel's peak resident set (VmHWM)
}

// runLoadCloud serves a cloud from dir (cloud.db, ca.crt, server.crt,
// server.key) on 127.0.0.1, prints "ADDR host:port cloud-id", and when
// stdin closes shuts down and prints "STATS {json}".
func runLoadCloud(dir string) int {
	ctx := context.Background()
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "load cloud:", err); return 1 }
	// The cloud checks every change's signature against the devices its
	// authority enrolled (each device sends its own enrolment), and
	// records every access in its log, as examples/cloud does.
	auth, err := device.LoadAuthority(filepath.Join(dir, "authority.key"))
	if err != nil {
		return fail(err)
	}
	roster, err := device.NewRoster(device.RosterConfig{Authorities: []device.TrustedAuthority{{Key: auth.PublicKey()}}})
	if err != nil {
		return fail(err)
	}
	rep, err := replica.Open(ctx, filepath.Join(dir, "cloud.db"), replica.Config{Keys: roster})
	if err != nil {
		return fail(err)
	}
	defer rep.Close()
	access, err := audit.Open(filepath.Join(dir, "access.log"), audit.Config{})
	if err != nil {
		return fail(err)
	}
	defer access.Close()
	ca, _, err := httpsync.OpenDeviceCA(dir, time.Now())
	if err != nil {
		return fail(err)
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"))
	if err != nil {
		return fail(err)
	}
	cfg := httpsync.Config{Replica: rep, DeviceCA: ca.Pool(), AccessLog: access}
	if os.Getenv("HTTPSYNC_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	h, err := httpsync.NewHandler(cfg)
	if err != nil {
		return fail(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	srv := httpsync.NewServer(ln.Addr().String(), h, cert, nil)
	go func() { _ = srv.ServeTLS(ln, "", "") }()

	var st cloudStats
	peaks := startMemPeaks()
	if path := os.Getenv("HTTPSYNC_LOAD_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return fail(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fail(err)
		}
		defer pprof.StopCPUProfile()
	}
	fmt.Printf("ADDR %s %s\n", ln.Addr(), rep.ID())
	_, _ = io.Copy(io.Discard, os.Stdin)
	p := peaks.stop()
	st.PeakHeap, st.PeakGoMemory, st.PeakRSS, st.PeakCMemory = p.heap, p.goMemory, p.rss, p.cMemory
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	st.Handler = h.Stats()
	charts, err := rep.Find(ctx, "", 0)
	if err != nil {
		return fail(err)
	}
	st.Charts = len(charts)
	st.HighWaterRSS = vmHWM()
	out, _ := json.Marshal(st)
	fmt.Printf("STATS %s\n", out)
	return 0
}

// memPeaks samples a process's memory every 5 ms until stop.
type memPeaks struct {
	done    chan struct{}
	sampled chan memPeak
}

// memPeak is the highest of each measure sampled.
type memPeak struct {
	heap, goMemory, rss, cMemory uint64
}

func startMemPeaks() *memPeaks {
	m := &memPeaks{done: make(chan struct{}), sampled: make(chan memPeak, 1)}
	go func() {
		var p memPeak
		samples := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/total:bytes"}}
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			metrics.Read(samples)
			rss, heap, total := statmRSS(), samples[0].Value.Uint64(), samples[1].Value.Uint64()
			p.heap, p.goMemory, p.rss = max(p.heap, heap), max(p.goMemory, total), max(p.rss, rss)
			if rss > total {
				p.cMemory = max(p.cMemory, rss-total)
			}
			select {
			case <-m.done:
				m.sampled <- p
				return
			case <-tick.C:
			}
		}
	}()
	return m
}

func (m *memPeaks) stop() memPeak {
	close(m.done)
	return <-m.sampled
}

func statmRSS() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseUint(f[1], 10, 64)
	return pages * uint64(os.Getpagesize())
}

func vmHWM() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// loadShape is a load: devices spread over clinics, each with charts of
// its own registered offline, syncing rounds times with an edit before
// each sync after the first.
type loadShape struct {
	devices, clinics, charts, rounds int
}

// loadResult is what a load measured.
type loadResult struct {
	syncs, failures, retries int
	wall                     time.Duration
	p50, p99, worst          time.Duration
	cloud                    cloudStats
	devices                  memPeak // the test process, which runs every simulated device
}

func (r loadResult) syncsPerSecond() float64 { return float64(r.syncs) / r.wall.Seconds() }

func (r loadResult) String() string {
	mib := func(b uint64) float64 { return float64(b) / (1 << 20) }
	return fmt.Sprintf("%d syncs in %s: %.0f syncs/s; latency p50 %s, p99 %s, worst %s; %d failed, %d retries (cloud busy %d); cloud peak heap %.1f MiB, Go memory %.1f MiB, RSS %.1f MiB (VmHWM %.1f MiB), C memory %.1f MiB; cloud holds %d charts; devices' process peak RSS %.1f MiB, heap %.1f MiB, C memory %.1f MiB",
		r.syncs, r.wall.Round(time.Millisecond), r.syncsPerSecond(), r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), r.worst.Round(time.Microsecond),
		r.failures, r.retries, r.cloud.Handler.Busy, mib(r.cloud.PeakHeap), mib(r.cloud.PeakGoMemory), mib(r.cloud.PeakRSS), mib(r.cloud.HighWaterRSS), mib(r.cloud.PeakCMemory), r.cloud.Charts,
		mib(r.devices.rss), mib(r.devices.heap), mib(r.devices.cMemory))
}

// loadCloud is a cloud served by a child process (runLoadCloud), so that
// its memory is measured apart from the devices'.
type loadCloud struct {
	addr, id string
	ca       *httpsync.DeviceCA
	auth     *device.Authority
	stdin    io.WriteCloser
	lines    *bufio.Scanner
	child    *exec.Cmd
}

// startLoadCloud starts a cloud process; stop ends it.
func startLoadCloud(t testing.TB) *loadCloud {
	t.Helper()
	dir := t.TempDir()
	ca, _, err := httpsync.OpenDeviceCA(dir, time.Now())
	require.NoError(t, err)
	certPEM, keyPEM, err := ca.IssueServerCert([]string{"127.0.0.1"}, time.Now(), time.Hour)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "server.crt"), certPEM, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "server.key"), keyPEM, 0o600))
	auth, err := device.NewAuthority()
	require.NoError(t, err)
	require.NoError(t, auth.Save(filepath.Join(dir, "authority.key")))

	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), loadCloudEnv+"="+dir)
	child.Stderr = os.Stderr
	stdin, err := child.StdinPipe()
	require.NoError(t, err)
	stdout, err := child.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, child.Start(), "start the cloud process")
	t.Cleanup(func() { stdin.Close(); _ = child.Wait() })
	lines := bufio.NewScanner(stdout)
	require.True(t, lines.Scan(), "the cloud process prints its address")
	lc := &loadCloud{ca: ca, auth: auth, stdin: stdin, lines: lines, child: child}
	_, err = fmt.Sscanf(lines.Text(), "ADDR %s %s", &lc.addr, &lc.id)
	require.NoError(t, err, "parse %q", lines.Text())
	return lc
}

// stop shuts the cloud process down and returns what it measured.
func (lc *loadCloud) stop(t testing.TB) cloudStats {
	t.Helper()
	require.NoError(t, lc.stdin.Close())
	var statsLine string
	for lc.lines.Scan() {
		if rest, ok := strings.CutPrefix(lc.lines.Text(), "STATS "); ok {
			statsLine = rest
		}
	}
	require.NoError(t, lc.child.Wait(), "the cloud process exits cleanly")
	var st cloudStats
	require.NoError(t, json.Unmarshal([]byte(statsLine), &st), "parse the cloud's stats %q", statsLine)
	return st
}

// loadDevice is a device enrolled at a loadCloud.
type loadDevice struct {
	rep    *replica.Replica
	client *httpsync.Client
}

// newDevice enrols a device of clinic (an in-memory replica configured by
// cfg, which signs its changes and checks everyone's).
func (lc *loadCloud) newDevice(t testing.TB, clinic, name string, cfg replica.Config) *loadDevice {
	t.Helper()
	ctx := context.Background()
	keys, err := device.Generate(replica.NewID(), clinic)
	require.NoError(t, err)
	rec, err := lc.auth.Enrol(keys.Public(), time.Now(), time.Hour)
	require.NoError(t, err)
	roster, err := device.NewRoster(device.RosterConfig{Authorities: []device.TrustedAuthority{{Key: lc.auth.PublicKey()}}})
	require.NoError(t, err)
	_, err = roster.Add(rec)
	require.NoError(t, err)
	cfg.Signer, cfg.Keys, cfg.CheckAuthors = keys, roster, true
	rep, err := replica.New(ctx, store.NewMem(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = rep.Close() })
	cred := enrolIdentity(t, lc.ca, httpsync.Enrolment{Replica: rep.ID(), Clinic: clinic, Device: name,
		CloudURL: "https://" + lc.addr, CloudReplica: lc.id, ServerTrust: []*x509.Certificate{lc.ca.Cert}}, keys)
	cl, err := httpsync.NewClient(rep, httpsync.ClientConfig{Credential: cred, MaxAttempts: 10,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { _ = cl.Close() })
	return &loadDevice{rep: rep, client: cl}
}

func runLoad(t testing.TB, shape loadShape) loadResult {
	t.Helper()
	ctx := context.Background()
	lc := startLoadCloud(t)

	type sim struct {
		rep    *replica.Replica
		client *httpsync.Client
		charts []string
	}
	sims := make([]*sim, shape.devices)
	for i := range sims {
		clinic := fmt.Sprintf("clinic-%02d", i%shape.clinics)
		d := lc.newDevice(t, clinic, fmt.Sprintf("device-%03d", i), replica.Config{CacheCharts: 8})
		s := &sim{rep: d.rep, client: d.client}
		for j := range shape.charts {
			id, err := d.rep.Register(ctx, nurse, record.Register{GivenName: fmt.Sprintf("Patient%d", j), FamilyName: fmt.Sprintf("Device%d", i),
				Sex: "female", EstimatedBirthYear: 1980 + j, Village: "Kamuga", HomeClinic: clinic})
			require.NoError(t, err)
			_, err = d.rep.Edit(ctx, id, clinician, amoxicillin(500))
			require.NoError(t, err)
			s.charts = append(s.charts, id)
		}
		sims[i] = s
	}

	var (
		mu        sync.Mutex
		latencies []time.Duration
		res       loadResult
		wg        sync.WaitGroup
	)
	start := make(chan struct{})
	for i, s := range sims {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for round := range shape.rounds {
				if round > 0 {
					id := s.charts[round%len(s.charts)]
					if _, err := s.rep.Edit(ctx, id, clinician, record.AddAllergy{Substance: fmt.Sprintf("substance-%d-%d", i, round), Severity: "mild"}); err != nil {
						panic(err)
					}
				}
				began := time.Now()
				rep, err := s.client.SyncReport(ctx)
				took := time.Since(began)
				mu.Lock()
				res.retries += rep.Retries
				if err != nil {
					res.failures++
					t.Logf("device %d round %d: %v", i, round, err)
				} else {
					res.syncs++
					latencies = append(latencies, took)
				}
				mu.Unlock()
			}
		}()
	}
	peaks := startMemPeaks()
	began := time.Now()
	close(start)
	wg.Wait()
	res.wall = time.Since(began)
	res.devices = peaks.stop()

	res.cloud = lc.stop(t)
	slices.Sort(latencies)
	if n := len(latencies); n > 0 {
		res.p50, res.p99, res.worst = latencies[n/2], latencies[min(n-1, n*99/100)], latencies[n-1]
	}
	return res
}

// TestCloudLoad: 200 clinic devices in 20 clinics sync concurrently with
// one cloud (SQLite, its own process) on 127.0.0.1, three times each.
func TestCloudLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("load test skipped in -short mode")
	}
	shape := loadShape{devices: 200, clinics: 20, charts: 3, rounds: 3}
	res := runLoad(t, shape)
	t.Logf("load (%d devices, %d clinics, %d charts each, %d syncs each): %s", shape.devices, shape.clinics, shape.charts, shape.rounds, res)
	require.Zero(t, res.failures, "every sync succeeds, retries included")
	require.Equal(t, shape.devices*shape.rounds, res.syncs)
	require.Equal(t, shape.devices*shape.charts, res.cloud.Charts, "the cloud holds every device's charts")
}

// BenchmarkCloudLoad is TestCloudLoad with more rounds, reporting syncs/s,
// latency percentiles and the cloud's peak memory. Run it once:
//
//	go test -run '^$' -bench CloudLoad -benchtime 1x ./transport/httpsync/
//
// The shape comes from flags, e.g. the national-scale runs:
//
//	go test -run '^$' -bench CloudLoad -benchtime 1x ./transport/httpsync/ -load.devices 300 -load.clinics 12
//	go test -run '^$' -bench CloudLoad -benchtime 1x ./transport/httpsync/ -load.devices 500 -load.clinics 20
func BenchmarkCloudLoad(b *testing.B) {
	shape := loadShape{devices: *loadDevices, clinics: *loadClinics, charts: *loadCharts, rounds: *loadRounds}
	if shape.devices < 1 || shape.clinics < 1 || shape.charts < 1 || shape.rounds < 1 {
		b.Fatalf("-load.devices, -load.clinics, -load.charts and -load.rounds must be at least 1")
	}
	var res loadResult
	for range b.N {
		res = runLoad(b, shape)
	}
	b.Logf("load (%d devices, %d clinics, %d charts each, %d syncs each): %s", shape.devices, shape.clinics, shape.charts, shape.rounds, res)
	b.ReportMetric(res.syncsPerSecond(), "syncs/s")
	b.ReportMetric(float64(res.p50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(res.p99.Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(res.cloud.HighWaterRSS)/(1<<20), "cloud-peak-RSS-MiB")
	b.ReportMetric(float64(res.cloud.PeakHeap)/(1<<20), "cloud-peak-heap-MiB")
	b.ReportMetric(float64(res.cloud.PeakCMemory)/(1<<20), "cloud-peak-C-MiB")
	b.ReportMetric(float64(res.devices.rss)/(1<<20), "devices-peak-RSS-MiB")
	b.ReportMetric(float64(res.devices.cMemory)/(1<<20), "devices-peak-C-MiB")
	b.ReportMetric(float64(res.failures), "failed-syncs")
}
