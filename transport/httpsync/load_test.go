package httpsync_test

import (
	"bufio"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/audit"
	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/store"
	"github.com/chartsync/chartsync/replica/store/postgres"
	"github.com/chartsync/chartsync/replica/store/postgres/pgtest"
	"github.com/chartsync/chartsync/transport/httpsync"
)

// The load test runs each cloud node in a child process (this test
// binary, re-executed with HTTPSYNC_LOAD_CLOUD naming its data directory,
// and HTTPSYNC_LOAD_POSTGRES and HTTPSYNC_LOAD_SCHEMA naming its database
// when it runs on PostgreSQL) so that its memory is measured apart from
// the simulated devices' and from the other nodes'.

const (
	loadCloudEnv    = "HTTPSYNC_LOAD_CLOUD"
	loadPostgresEnv = "HTTPSYNC_LOAD_POSTGRES"
	loadSchemaEnv   = "HTTPSYNC_LOAD_SCHEMA"
)

// The shape of BenchmarkCloudLoad.
var (
	loadDevices     = flag.Int("load.devices", 200, "BenchmarkCloudLoad: simulated clinic devices")
	loadClinics     = flag.Int("load.clinics", 20, "BenchmarkCloudLoad: clinics the devices are spread over")
	loadCharts      = flag.Int("load.charts", 5, "BenchmarkCloudLoad: charts each device registers offline")
	loadRounds      = flag.Int("load.rounds", 10, "BenchmarkCloudLoad: syncs each device makes, with an edit before each after the first")
	loadStore       = flag.String("load.store", "sqlite", "BenchmarkCloudLoad: the cloud's store, sqlite or postgres (the server named by "+pgtest.EnvVar+")")
	loadNodes       = flag.Int("load.nodes", 1, "BenchmarkCloudLoad: cloud nodes sharing the store (more than 1 with -load.store postgres only)")
	loadAttempts    = flag.Int("load.attempts", 10, "BenchmarkCloudLoad: attempts a device's sync makes (retrying a busy or unreachable cloud, backing off up to 1s) before it fails")
	loadDeviceStore = flag.String("load.devicestore", "mem", "BenchmarkCloudLoad: where each device keeps its charts, mem (in memory) or sqlite (a database of its own on disk, as a tablet)")
	loadTimeout     = flag.Duration("load.timeout", 30*time.Minute, "BenchmarkCloudLoad: how long the syncs may take in all; those still running then fail and no more start")
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
	PeakGoMemory uint64 // all memory the Go runtime holds resident, sampled
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
	var rep *replica.Replica
	if conn := os.Getenv(loadPostgresEnv); conn != "" {
		// A node of a cloud on one PostgreSQL database, as examples/cloud
		// serve -db runs it: the other nodes write the same store.
		st, err := postgres.Open(ctx, conn, postgres.Config{Schema: os.Getenv(loadSchemaEnv)})
		if err != nil {
			return fail(err)
		}
		rep, err = replica.New(ctx, st, replica.Config{Keys: roster, SharedStore: true})
		if err != nil {
			_ = st.Close()
			return fail(err)
		}
	} else {
		rep, err = replica.Open(ctx, filepath.Join(dir, "cloud.db"), replica.Config{Keys: roster})
		if err != nil {
			return fail(err)
		}
	}
	defer rep.Close()
	// Each node keeps an access log of its own (a multi-node cloud keeps
	// one chain in its database; that is examples/cloud's).
	logDir, err := os.MkdirTemp(dir, "node-")
	if err != nil {
		return fail(err)
	}
	access, err := audit.Open(filepath.Join(logDir, "access.log"), audit.Config{})
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
	peaks := startMemPeaks(nil)
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

// memPeak is the highest of each measure sampled, and when the resident
// set peaked: rssAt after the sampling began, with rssProgress of the
// work done (as the sampler's progress function counts it).
type memPeak struct {
	heap, goMemory, rss, cMemory uint64
	rssAt                        time.Duration
	rssProgress                  int64
}

// loadPeakHeapEnv names a file to which the devices' process writes its
// heap profile each time the live heap (as of the last collection) has
// grown by a tenth past its highest: the file then holds the profile at
// the peak, which says what the devices hold in the middle of their syncs.
const loadPeakHeapEnv = "HTTPSYNC_LOAD_PEAKHEAPPROFILE"

// startMemPeaks samples the process's memory until stop; progress, if
// not nil, counts the work done, read when the resident set peaks.
func startMemPeaks(progress func() int64) *memPeaks {
	m := &memPeaks{done: make(chan struct{}), sampled: make(chan memPeak, 1)}
	peakProfile := os.Getenv(loadPeakHeapEnv)
	began := time.Now()
	go func() {
		var p memPeak
		var profiled uint64 // the live heap at the last profile written
		samples := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/total:bytes"},
			{Name: "/memory/classes/heap/released:bytes"}, {Name: "/gc/heap/live:bytes"}}
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			metrics.Read(samples)
			rss, heap, total := statmRSS(), samples[0].Value.Uint64(), samples[1].Value.Uint64()
			// The runtime's total counts the heap it gave back to the
			// system (released), which is not resident.
			resident := total - min(total, samples[2].Value.Uint64())
			if rss > p.rss {
				p.rss, p.rssAt = rss, time.Since(began)
				if progress != nil {
					p.rssProgress = progress()
				}
			}
			p.heap, p.goMemory = max(p.heap, heap), max(p.goMemory, resident)
			if rss > resident {
				p.cMemory = max(p.cMemory, rss-resident)
			}
			if live := samples[3].Value.Uint64(); peakProfile != "" && live > profiled+profiled/10 {
				profiled = live
				if err := writeHeapProfile(peakProfile); err != nil {
					fmt.Fprintln(os.Stderr, "load:", err)
					peakProfile = ""
				}
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

// writeHeapProfile writes the heap profile to path, through a temporary
// file renamed over it, so that path always holds a whole profile.
func writeHeapProfile(path string) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".heap-*")
	if err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	err = pprof.Lookup("heap").WriteTo(f, 0)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("heap profile %s: %w", path, err)
	}
	return nil
}

func (m *memPeaks) stop() memPeak {
	close(m.done)
	return <-m.sampled
}

// settled is a process's memory after a collection that gives the Go
// runtime's free memory back to the system: rss its resident set, heap its
// live heap, goResident what the Go runtime holds resident (heap, stacks,
// metadata).
type settled struct {
	rss, heap, goResident, goroutines uint64
}

// cMemory is the resident set beyond what the Go runtime holds: Automerge's
// and SQLite's memory, and what malloc keeps free.
func (s settled) cMemory() uint64 {
	if s.rss < s.goResident {
		return 0
	}
	return s.rss - s.goResident
}

func settledMem() settled {
	debug.FreeOSMemory()
	samples := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(samples)
	return settled{rss: statmRSS(), heap: samples[0].Value.Uint64(), goResident: samples[1].Value.Uint64() - samples[2].Value.Uint64(),
		goroutines: uint64(runtime.NumGoroutine())}
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
// each sync after the first, with a cloud of nodes on one store.
type loadShape struct {
	devices, clinics, charts, rounds int
	// postgres puts the cloud on PostgreSQL (the server pgtest names, in
	// a schema of its own); otherwise it runs on SQLite.
	postgres bool
	// nodes is the number of cloud nodes (1 on SQLite); device i makes
	// its r-th sync with node (i+r) mod nodes.
	nodes int
	// timeout bounds the syncs in all (0: none).
	timeout time.Duration
	// attempts is each sync's httpsync.ClientConfig.MaxAttempts (0: 10).
	attempts int
	// devicesOnDisk keeps each device's charts in a SQLite database of
	// its own (replica.Open), as a tablet does; otherwise in memory.
	devicesOnDisk bool
}

func (s loadShape) String() string {
	db := "SQLite"
	if s.postgres {
		db = "PostgreSQL"
	}
	devices := "in memory"
	if s.devicesOnDisk {
		devices = "on SQLite"
	}
	return fmt.Sprintf("%d devices (%s), %d clinics, %d charts each, %d syncs each, %d node(s) on %s", s.devices, devices, s.clinics, s.charts, s.rounds, s.nodes, db)
}

// loadResult is what a load measured.
type loadResult struct {
	devices                  int
	syncs, failures, retries int
	wall                     time.Duration
	p50, p99, worst          time.Duration
	nodes                    []cloudStats
	dbBytes                  int64   // the cloud's database on disk once the syncs are done
	deviceMem                memPeak // the test process, which runs every simulated device
	// settled is the devices' process once their syncs are done, and
	// closed once their replicas are closed too (their stores kept).
	settled, closed settled
	// failed counts the failed syncs by their error, devices and
	// rounds left out; failedExample is one such error of each.
	failed        map[string]int
	failedExample map[string]string
}

// failedSyncs sums up the failed syncs, most frequent reason first, with
// one example of each.
func (r loadResult) failedSyncs() string {
	reasons := slices.Collect(maps.Keys(r.failed))
	slices.SortFunc(reasons, func(a, b string) int { return cmp.Or(cmp.Compare(r.failed[b], r.failed[a]), strings.Compare(a, b)) })
	var b strings.Builder
	for _, why := range reasons {
		fmt.Fprintf(&b, "\n  %d failed syncs: %s", r.failed[why], r.failedExample[why])
	}
	return b.String()
}

func (r loadResult) syncsPerSecond() float64 { return float64(r.syncs) / r.wall.Seconds() }

// nodePeakRSS is the highest peak resident set of the nodes.
func (r loadResult) nodePeakRSS() uint64 {
	var m uint64
	for _, n := range r.nodes {
		m = max(m, n.HighWaterRSS)
	}
	return m
}

func (r loadResult) String() string {
	mib := func(b uint64) float64 { return float64(b) / (1 << 20) }
	var b strings.Builder
	fmt.Fprintf(&b, "%d syncs in %s: %.0f syncs/s; latency p50 %s, p99 %s, worst %s; %d failed, %d retries",
		r.syncs, r.wall.Round(time.Millisecond), r.syncsPerSecond(), r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), r.worst.Round(time.Microsecond),
		r.failures, r.retries)
	for i, n := range r.nodes {
		fmt.Fprintf(&b, "; node %d: busy %d, peak heap %.1f MiB, Go memory %.1f MiB, RSS %.1f MiB (VmHWM %.1f MiB), C memory %.1f MiB",
			i+1, n.Handler.Busy, mib(n.PeakHeap), mib(n.PeakGoMemory), mib(n.PeakRSS), mib(n.HighWaterRSS), mib(n.PeakCMemory))
	}
	if len(r.nodes) > 0 {
		fmt.Fprintf(&b, "; the cloud holds %d charts", r.nodes[0].Charts)
	}
	fmt.Fprintf(&b, "; database %.1f MiB; devices' process peak RSS %.1f MiB (%.0f KiB a device; at %s, %d of %d syncs ended), heap %.1f MiB, C memory %.1f MiB (%.0f KiB a device)",
		float64(r.dbBytes)/(1<<20), mib(r.deviceMem.rss), float64(r.deviceMem.rss)/float64(r.devices)/1024,
		r.deviceMem.rssAt.Round(time.Second), r.deviceMem.rssProgress, r.syncs+r.failures, mib(r.deviceMem.heap),
		mib(r.deviceMem.cMemory), float64(r.deviceMem.cMemory)/float64(r.devices)/1024)
	perDevice := func(s settled) string {
		kib := func(b uint64) float64 { return float64(b) / float64(r.devices) / 1024 }
		return fmt.Sprintf("RSS %.0f KiB, live heap %.0f KiB, Go resident %.0f KiB, C %.0f KiB a device, %d goroutines",
			kib(s.rss), kib(s.heap), kib(s.goResident), kib(s.cMemory()), s.goroutines)
	}
	fmt.Fprintf(&b, "; once synced: %s; replicas closed: %s", perDevice(r.settled), perDevice(r.closed))
	return b.String()
}

// loadNode is one cloud node, served by a child process (runLoadCloud),
// so that its memory is measured apart from the devices' and the other
// nodes'.
type loadNode struct {
	addr, id string
	stdin    io.WriteCloser
	lines    *bufio.Scanner
	child    *exec.Cmd
}

// loadCloud is a cloud of one or more nodes on one store, with the
// device CA and enrolment authority they share.
type loadCloud struct {
	dir      string
	id       string // the cloud's replica ID, the same on every node
	ca       *httpsync.DeviceCA
	auth     *device.Authority
	nodes    []*loadNode
	pg       string // the PostgreSQL connection string, "" on SQLite
	pgSchema string
}

// startLoadCloud starts a cloud of one node on SQLite; stop ends it.
func startLoadCloud(t testing.TB) *loadCloud {
	t.Helper()
	return startLoadCloudOf(t, loadShape{nodes: 1})
}

// startLoadCloudOf starts the cloud's nodes of shape, one after the other
// (the first makes the cloud's replica ID, which the others read);
// stopAll ends them.
func startLoadCloudOf(t testing.TB, shape loadShape) *loadCloud {
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
	lc := &loadCloud{dir: dir, ca: ca, auth: auth}
	if shape.postgres {
		lc.pg, lc.pgSchema = pgtest.ConnString(t), pgtest.Schema(t)
	}
	for range max(shape.nodes, 1) {
		n := lc.startNode(t)
		if lc.id == "" {
			lc.id = n.id
		}
		require.Equal(t, lc.id, n.id, "every node serves the same cloud replica")
		lc.nodes = append(lc.nodes, n)
	}
	return lc
}

func (lc *loadCloud) startNode(t testing.TB) *loadNode {
	t.Helper()
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), loadCloudEnv+"="+lc.dir)
	if lc.pg != "" {
		child.Env = append(child.Env, loadPostgresEnv+"="+lc.pg, loadSchemaEnv+"="+lc.pgSchema)
	}
	child.Stderr = os.Stderr
	stdin, err := child.StdinPipe()
	require.NoError(t, err)
	stdout, err := child.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, child.Start(), "start a cloud node")
	t.Cleanup(func() { stdin.Close(); _ = child.Wait() })
	lines := bufio.NewScanner(stdout)
	require.True(t, lines.Scan(), "the cloud node prints its address")
	n := &loadNode{stdin: stdin, lines: lines, child: child}
	_, err = fmt.Sscanf(lines.Text(), "ADDR %s %s", &n.addr, &n.id)
	require.NoError(t, err, "parse %q", lines.Text())
	return n
}

// stop shuts a cloud of one node down and returns what it measured.
func (lc *loadCloud) stop(t testing.TB) cloudStats {
	t.Helper()
	return lc.stopAll(t)[0]
}

// stopAll shuts every node down and returns what each measured.
func (lc *loadCloud) stopAll(t testing.TB) []cloudStats {
	t.Helper()
	for _, n := range lc.nodes {
		require.NoError(t, n.stdin.Close())
	}
	out := make([]cloudStats, len(lc.nodes))
	for i, n := range lc.nodes {
		var statsLine string
		for n.lines.Scan() {
			if rest, ok := strings.CutPrefix(n.lines.Text(), "STATS "); ok {
				statsLine = rest
			}
		}
		require.NoError(t, n.child.Wait(), "cloud node %d exits cleanly", i+1)
		require.NoError(t, json.Unmarshal([]byte(statsLine), &out[i]), "parse node %d's stats %q", i+1, statsLine)
	}
	return out
}

// databaseBytes is the size of the cloud's database: on SQLite its files
// (the database, its WAL and shared memory); on PostgreSQL every table and
// index of its schema.
func (lc *loadCloud) databaseBytes(t testing.TB) int64 {
	t.Helper()
	if lc.pg == "" {
		var n int64
		for _, suffix := range []string{"", "-wal", "-shm"} {
			if fi, err := os.Stat(filepath.Join(lc.dir, "cloud.db"+suffix)); err == nil {
				n += fi.Size()
			}
		}
		return n
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, lc.pg)
	require.NoError(t, err)
	defer conn.Close(ctx)
	var n int64
	require.NoError(t, conn.QueryRow(ctx, `SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint
		FROM pg_class c JOIN pg_namespace ns ON ns.oid = c.relnamespace
		WHERE ns.nspname = $1 AND c.relkind IN ('r', 'm', 't')`, lc.pgSchema).Scan(&n))
	return n
}

// loadDevice is a device enrolled at a loadCloud, with a client for
// each of its nodes.
type loadDevice struct {
	rep     *replica.Replica
	client  *httpsync.Client   // the first node's
	clients []*httpsync.Client // by node
}

// newDevice enrols a device of clinic (an in-memory replica configured by
// cfg, which signs its changes and checks everyone's).
func (lc *loadCloud) newDevice(t testing.TB, clinic, name string, cfg replica.Config) *loadDevice {
	t.Helper()
	return lc.newDeviceTrying(t, clinic, name, cfg, 10)
}

// newDeviceTrying is newDevice whose syncs make up to attempts attempts.
func (lc *loadCloud) newDeviceTrying(t testing.TB, clinic, name string, cfg replica.Config, attempts int) *loadDevice {
	t.Helper()
	return lc.newDeviceOn(t, clinic, name, cfg, attempts, false)
}

// newDeviceOn is newDeviceTrying whose replica, if onDisk, keeps its
// charts in a SQLite database of its own in a temporary directory
// (replica.Open), as a tablet does, rather than in memory.
func (lc *loadCloud) newDeviceOn(t testing.TB, clinic, name string, cfg replica.Config, attempts int, onDisk bool) *loadDevice {
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
	var rep *replica.Replica
	if onDisk {
		rep, err = replica.Open(ctx, filepath.Join(t.TempDir(), "device.db"), cfg)
	} else {
		rep, err = replica.New(ctx, store.NewMem(), cfg)
	}
	require.NoError(t, err)
	t.Cleanup(func() { _ = rep.Close() })
	cred := enrolIdentity(t, lc.ca, httpsync.Enrolment{Replica: rep.ID(), Clinic: clinic, Device: name,
		CloudURL: "https://" + lc.nodes[0].addr, CloudReplica: lc.id, ServerTrust: []*x509.Certificate{lc.ca.Cert}}, keys)
	d := &loadDevice{rep: rep}
	for _, n := range lc.nodes {
		cl, err := httpsync.NewClient(rep, httpsync.ClientConfig{Credential: cred, URL: "https://" + n.addr, MaxAttempts: attempts,
			MinBackoff: 20 * time.Millisecond, MaxBackoff: time.Second})
		require.NoError(t, err)
		t.Cleanup(func() { _ = cl.Close() })
		d.clients = append(d.clients, cl)
	}
	d.client = d.clients[0]
	return d
}

// loadAddr matches the addresses in a failed sync's error.
var loadAddr = regexp.MustCompile(`127\.0\.0\.1:[0-9]+`)

func runLoad(t testing.TB, shape loadShape) loadResult {
	t.Helper()
	ctx := context.Background()
	if shape.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, shape.timeout)
		defer cancel()
	}
	lc := startLoadCloudOf(t, shape)

	type sim struct {
		*loadDevice
		charts []string
	}
	sims := make([]*sim, shape.devices)
	for i := range sims {
		clinic := fmt.Sprintf("clinic-%02d", i%shape.clinics)
		s := &sim{loadDevice: lc.newDeviceOn(t, clinic, fmt.Sprintf("device-%03d", i), replica.Config{CacheCharts: 8}, cmp.Or(shape.attempts, 10), shape.devicesOnDisk)}
		for j := range shape.charts {
			id, err := s.rep.Register(ctx, nurse, record.Register{GivenName: fmt.Sprintf("Patient%d", j), FamilyName: fmt.Sprintf("Device%d", i),
				Sex: "female", EstimatedBirthYear: 1980 + j, Village: "Kamuga", HomeClinic: clinic})
			require.NoError(t, err)
			_, err = s.rep.Edit(ctx, id, clinician, amoxicillin(500))
			require.NoError(t, err)
			s.charts = append(s.charts, id)
		}
		sims[i] = s
	}

	var (
		synced    atomic.Int64 // syncs ended, failed or not
		mu        sync.Mutex
		latencies []time.Duration
		res       = loadResult{devices: shape.devices, failed: map[string]int{}, failedExample: map[string]string{}}
		wg        sync.WaitGroup
	)
	start := make(chan struct{})
	for i, s := range sims {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for round := range shape.rounds {
				if ctx.Err() != nil {
					mu.Lock()
					res.failures += shape.rounds - round
					res.failed["not started: -load.timeout passed"] += shape.rounds - round
					mu.Unlock()
					return
				}
				if round > 0 {
					id := s.charts[round%len(s.charts)]
					if _, err := s.rep.Edit(ctx, id, clinician, record.AddAllergy{Substance: fmt.Sprintf("substance-%d-%d", i, round), Severity: "mild"}); err != nil {
						panic(err)
					}
				}
				began := time.Now()
				rep, err := s.clients[(i+round)%len(s.clients)].SyncReport(ctx)
				took := time.Since(began)
				synced.Add(1)
				mu.Lock()
				res.retries += rep.Retries
				if err != nil {
					res.failures++
					// Counted by the error without the addresses in it.
					why := loadAddr.ReplaceAllString(err.Error(), "127.0.0.1")
					res.failed[why]++
					if res.failedExample[why] == "" {
						res.failedExample[why] = fmt.Sprintf("device %d round %d: %v", i, round, err)
					}
				} else {
					res.syncs++
					latencies = append(latencies, took)
				}
				mu.Unlock()
			}
		}()
	}
	peaks := startMemPeaks(func() int64 { return synced.Load() })
	began := time.Now()
	close(start)
	wg.Wait()
	res.wall = time.Since(began)
	res.deviceMem = peaks.stop()
	// What the devices hold once their syncs are done, and what of it
	// their replicas' open documents and caches hold (closing a replica
	// lets go of them but keeps its in-memory store).
	res.settled = settledMem()
	if path := os.Getenv("HTTPSYNC_LOAD_HEAPPROFILE"); path != "" {
		require.NoError(t, writeHeapProfile(path))
	}
	for _, s := range sims {
		require.NoError(t, s.rep.Close())
	}
	res.closed = settledMem()

	res.nodes = lc.stopAll(t)
	res.dbBytes = lc.databaseBytes(t)
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
	shape := loadShape{devices: 200, clinics: 20, charts: 3, rounds: 3, nodes: 1}
	res := runLoad(t, shape)
	t.Logf("load (%s): %s%s", shape, res, res.failedSyncs())
	require.Zero(t, res.failures, "every sync succeeds, retries included")
	require.Equal(t, shape.devices*shape.rounds, res.syncs)
	require.Equal(t, shape.devices*shape.charts, res.nodes[0].Charts, "the cloud holds every device's charts")
}

// BenchmarkCloudLoad is TestCloudLoad with more rounds, reporting syncs/s,
// latency percentiles, each cloud node's peak memory, the database's size
// and the simulated devices' memory, in all and per device. Run it once:
//
//	go test -run '^$' -bench CloudLoad -benchtime 1x ./transport/httpsync/
//
// The shape comes from flags:
//
//	-load.devices N   simulated clinic devices (default 200), each a
//	                  replica in this process with a cache of 8 charts,
//	                  which signs its changes and checks everyone's
//	-load.devicestore S
//	                  where each device keeps its charts: mem (default: an
//	                  in-memory store, whose data is then part of the
//	                  process's memory) or sqlite (a database of its own in
//	                  a temporary directory, replica.Open, as a tablet)
//	-load.clinics N   clinics the devices are spread over (default 20);
//	                  every device receives its clinic's charts
//	-load.charts N    charts each device registers offline (default 5)
//	-load.rounds N    syncs each device makes, with an edit before each
//	                  after the first (default 10)
//	-load.store S     sqlite (default: one node on a SQLite file) or
//	                  postgres (the server named by CHARTSYNC_TEST_POSTGRES,
//	                  in a schema of its own dropped afterwards; start one
//	                  with eval "$(.ci/postgres start)")
//	-load.nodes N     cloud nodes on the one PostgreSQL database (default
//	                  1), each a process of its own with
//	                  replica.Config.SharedStore; a device's r-th sync goes
//	                  to node (device+r) mod N
//	-load.attempts N  attempts each sync makes before it fails (default
//	                  10): a busy (503) or unreachable cloud is tried
//	                  again after a backoff of 20 ms doubling up to 1 s
//	-load.timeout D   the syncs may take D in all (default 30m); those
//	                  still running then fail, and no more start
//
// For example the national-scale runs, and the table of 1,000 devices
// against 1 node on SQLite, 1 node and 3 nodes on PostgreSQL:
//
//	go test -run '^$' -bench CloudLoad -benchtime 1x ./transport/httpsync/ -load.devices 300 -load.clinics 12
//	go test -run '^$' -bench CloudLoad -benchtime 1x ./transport/httpsync/ -load.devices 500 -load.clinics 20
//	go test -run '^$' -bench CloudLoad -benchtime 1x ./transport/httpsync/ -load.devices 1000 -load.clinics 40 -load.rounds 5
//	go test -run '^$' -bench CloudLoad -benchtime 1x ./transport/httpsync/ -load.devices 1000 -load.clinics 40 -load.rounds 5 -load.store postgres
//	go test -run '^$' -bench CloudLoad -benchtime 1x ./transport/httpsync/ -load.devices 1000 -load.clinics 40 -load.rounds 5 -load.store postgres -load.nodes 3
//
// Memory is sampled every 5 ms: a node's peak is the kernel's high-water
// mark of its resident set; the devices' "C memory" is their process's
// resident set beyond what the Go runtime holds resident (Automerge,
// SQLite, what malloc keeps free, and the program's own pages). Once the
// syncs are done the devices' process is measured again after a
// collection ("once synced", device-synced-*/device: what a device holds
// between syncs), and once more with every replica closed (their open
// documents and caches let go of, their in-memory stores kept). The peak
// per device, less what a device holds once synced, is what the devices'
// syncs hold at once. The devices' bytes per device are best read as the
// slope between runs of different -load.devices with as many devices per
// clinic (100/4, 300/12, 500/20): the process's fixed cost (its code,
// the bundle encoder) then drops out.
//
// Two environment variables write the devices' heap profile:
// HTTPSYNC_LOAD_HEAPPROFILE=file once the syncs are done, and
// HTTPSYNC_LOAD_PEAKHEAPPROFILE=file at the highest live heap seen
// (written again each time the live heap grows by a tenth), for
// go tool pprof -sample_index=inuse_space.
func BenchmarkCloudLoad(b *testing.B) {
	shape := loadShape{devices: *loadDevices, clinics: *loadClinics, charts: *loadCharts, rounds: *loadRounds,
		nodes: *loadNodes, timeout: *loadTimeout, attempts: *loadAttempts}
	if shape.devices < 1 || shape.clinics < 1 || shape.charts < 1 || shape.rounds < 1 || shape.nodes < 1 || shape.attempts < 1 {
		b.Fatalf("-load.devices, -load.clinics, -load.charts, -load.rounds, -load.nodes and -load.attempts must be at least 1")
	}
	switch *loadDeviceStore {
	case "mem":
	case "sqlite":
		shape.devicesOnDisk = true
	default:
		b.Fatalf("-load.devicestore %q: mem or sqlite", *loadDeviceStore)
	}
	switch *loadStore {
	case "sqlite":
		if shape.nodes != 1 {
			b.Fatalf("-load.nodes %d: nodes share a store on PostgreSQL only (-load.store postgres)", shape.nodes)
		}
	case "postgres":
		shape.postgres = true
	default:
		b.Fatalf("-load.store %q: sqlite or postgres", *loadStore)
	}
	var res loadResult
	for range b.N {
		res = runLoad(b, shape)
	}
	b.Logf("load (%s): %s%s", shape, res, res.failedSyncs())
	b.ReportMetric(res.syncsPerSecond(), "syncs/s")
	b.ReportMetric(float64(res.p50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(res.p99.Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(res.nodePeakRSS())/(1<<20), "node-peak-RSS-MiB")
	for i, n := range res.nodes {
		if len(res.nodes) > 1 {
			b.ReportMetric(float64(n.HighWaterRSS)/(1<<20), fmt.Sprintf("node%d-peak-RSS-MiB", i+1))
		}
		if i == 0 {
			b.ReportMetric(float64(n.PeakHeap)/(1<<20), "node1-peak-heap-MiB")
			b.ReportMetric(float64(n.PeakCMemory)/(1<<20), "node1-peak-C-MiB")
		}
	}
	b.ReportMetric(float64(res.dbBytes)/(1<<20), "db-MiB")
	b.ReportMetric(float64(res.deviceMem.rss)/(1<<20), "devices-peak-RSS-MiB")
	b.ReportMetric(float64(res.deviceMem.cMemory)/(1<<20), "devices-peak-C-MiB")
	b.ReportMetric(float64(res.deviceMem.rss)/float64(shape.devices), "device-RSS-B/device")
	b.ReportMetric(float64(res.deviceMem.cMemory)/float64(shape.devices), "device-C-B/device")
	b.ReportMetric(float64(res.settled.rss)/float64(shape.devices), "device-synced-RSS-B/device")
	b.ReportMetric(float64(res.settled.heap)/float64(shape.devices), "device-synced-heap-B/device")
	b.ReportMetric(float64(res.failures), "failed-syncs")
}
