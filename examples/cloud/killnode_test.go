package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/store/postgres"
	"github.com/chartsync/chartsync/replica/store/postgres/pgtest"
	"github.com/chartsync/chartsync/transport/httpsync"
)

// The size of TestThreeNodesOneKilled. CI runs the defaults (32 devices
// of 8 clinics, 4 rounds: 10 to 25 s on a shared 2-core machine); the issue's
// 300 devices of 30 clinics is
//
//	go test ./examples/cloud -run TestThreeNodesOneKilled -cloud.clinics 30 -cloud.devices 10
//
// which took 154 and 134 s in two runs on a shared 2-core machine (98
// and 69 s of it enrolling the devices one by one, 39 and 48 s for the
// 1,200 syncs of the run), with a peak resident set of 556 and 511 MB
// for the test process. Each simulated device is a
// replica on a memory store in this process, holding its clinic's ten
// charts.
var (
	killClinics = flag.Int("cloud.clinics", 8, "TestThreeNodesOneKilled: clinics")
	killDevices = flag.Int("cloud.devices", 4, "TestThreeNodesOneKilled: devices per clinic")
	killRounds  = flag.Int("cloud.rounds", 4, "TestThreeNodesOneKilled: rounds of offline edits and a sync per device")
	killWorkers = flag.Int("cloud.workers", 8, "TestThreeNodesOneKilled: syncs in flight at once")
)

// nodeEnv, set in a child process of the test binary, makes
// TestNodeProcess run the cloud command line after "--" and exit with
// its code: the nodes of TestThreeNodesOneKilled are such processes,
// so that one can be killed with SIGKILL.
const nodeEnv = "CHARTSYNC_TEST_CLOUD_NODE"

// TestNodeProcess is not a test: it is the cloud command, run by a child
// process of the test binary (see nodeEnv).
func TestNodeProcess(t *testing.T) {
	if os.Getenv(nodeEnv) != "1" {
		t.Skip("runs the cloud command in a child process of TestThreeNodesOneKilled")
	}
	// The test holds the other end of stdin open: once it is gone (it
	// ended or was killed), so is the node, leaving no process behind.
	go func() {
		io.Copy(io.Discard, os.Stdin)
		os.Exit(3)
	}()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, flag.Args(), os.Stdout, os.Stderr))
}

// nodeStartTimeout bounds the wait for a node to serve.
const nodeStartTimeout = 2 * time.Minute

// node is one cloud node running as a child process on fixed ports, so
// that a restarted node serves where it did.
type node struct {
	args      []string // serve's command line, less -addr and -ops
	addr, ops string
	logs      *lockedBuffer // every run's stderr

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for
	state  *os.ProcessState
}

// freePort returns a 127.0.0.1 address nothing listens on now.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

// startNode runs "cloud serve args" in a child process on two ports of
// its own, and waits until it is ready.
func startNode(t *testing.T, args ...string) *node {
	t.Helper()
	n := &node{args: args, addr: freePort(t), ops: freePort(t), logs: &lockedBuffer{}}
	t.Cleanup(func() { n.kill() })
	require.NoError(t, n.start())
	return n
}

// start runs the node and waits for it to say it serves (its stdout)
// and for its /readyz to answer 200. It may run on any goroutine.
func (n *node) start() error {
	cmd := exec.Command(os.Args[0], "-test.run=^TestNodeProcess$", "--")
	cmd.Args = append(cmd.Args, n.args...)
	cmd.Args = append(cmd.Args, "-addr", n.addr, "-ops", n.ops)
	cmd.Env = append(os.Environ(), nodeEnv+"=1")
	cmd.Stderr = n.logs
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	// Kept open while the node runs (Wait closes it): see TestNodeProcess.
	if _, err := cmd.StdinPipe(); err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start node on %s: %w", n.addr, err)
	}
	exited := make(chan struct{})
	serving := make(chan bool, 1)
	go func() {
		// serve prints "... is serving on URL." once it accepts
		// connections; the rest of its output is not needed.
		lines := bufio.NewScanner(stdout)
		said := false
		for lines.Scan() {
			if !said && strings.Contains(lines.Text(), "is serving on") {
				said = true
				serving <- true
			}
		}
		if !said {
			serving <- false
		}
	}()
	var ok bool
	select {
	case ok = <-serving:
	case <-time.After(nodeStartTimeout):
		cmd.Process.Signal(syscall.SIGKILL)
		ok = <-serving
	}
	n.mu.Lock()
	n.cmd, n.exited = cmd, exited
	n.mu.Unlock()
	go func() {
		cmd.Wait()
		n.mu.Lock()
		n.state = cmd.ProcessState
		n.mu.Unlock()
		close(exited)
	}()
	if !ok {
		<-exited
		return fmt.Errorf("node on %s did not start:\n%s", n.addr, n.logs.String())
	}
	resp, err := http.Get("http://" + n.ops + pathReady)
	if err != nil {
		return fmt.Errorf("node on %s: %s: %w", n.addr, pathReady, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("node on %s serves but is not ready: %s %s", n.addr, resp.Status, body)
	}
	return nil
}

// kill sends SIGKILL and waits for the process to be gone.
func (n *node) kill() {
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

// stop sends SIGTERM and returns the exit code once the node has
// finished its syncs in flight and exited.
func (n *node) stop() int {
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.mu.Unlock()
	cmd.Process.Signal(syscall.SIGTERM)
	<-exited
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.state.ExitCode()
}

// simDevice is a simulated clinic device and the edits it made.
type simDevice struct {
	name   string
	clinic string
	rep    *replica.Replica
	cred   *httpsync.Credential
	charts []string // the charts it registered

	mu    sync.Mutex
	edits []simEdit // in the order made
	acked int       // edits[:acked] went up in a sync that succeeded
	// ackedInRun is acked when the run ended, before the final passes.
	ackedInRun int
}

// simEdit is one edit a device made: an allergy added to a chart, or a
// registration (entry "").
type simEdit struct {
	chart, entry string
}

// TestThreeNodesOneKilled runs three cloud nodes, each a process of its
// own, on one PostgreSQL database. Simulated devices of several clinics
// edit offline and sync, each sync with a node picked at random; one node
// is killed with SIGKILL while syncs are in flight to it, and restarted.
// An edit is acknowledged when a sync made after it returned success.
// At the end every device syncs with every node until no sync moves a
// change: every device of a clinic then holds every chart of its clinic
// with the database's heads, every edit of every device (the
// acknowledged ones above all) is in every such device's chart, each node
// had nothing more for any device, and the access log's chain verifies.
//
// It is bounded: devices × rounds syncs, then at most finalPasses passes
// of each device with each node, each sync with a deadline. CI runs the
// defaults of the -cloud.* flags (32 devices of 8 clinics, 4 rounds);
// see the flags for the 300 devices of 30 clinics.
func TestThreeNodesOneKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("three node processes and a simulated clinic network: not with -short")
	}
	const finalPasses = 5
	ctx := context.Background()
	conn, schema := pgtest.ConnString(t), pgtest.Schema(t)
	keyFile := filepath.Join(t.TempDir(), "operator.key")
	db := []string{"-db", conn, "-db-schema", schema, "-key-file", keyFile}
	code, _, stderr := cloud(t, append([]string{"init"}, db...)...)
	require.Equal(t, 0, code, "init: %s", stderr)

	start := time.Now()
	var devices []*simDevice
	for c := range *killClinics {
		clinic := fmt.Sprintf("clinic-%02d", c)
		for d := range *killDevices {
			name := fmt.Sprintf("%s-device-%02d", clinic, d)
			rep, cred := enrolledDevice(t, name, clinic, db)
			devices = append(devices, &simDevice{name: name, clinic: clinic, rep: rep, cred: cred})
		}
	}
	t.Logf("enrolled %d devices of %d clinics in %v", len(devices), *killClinics, time.Since(start))

	serve := append([]string{"serve", "-dev-cert"}, db...)
	nodes := []*node{startNode(t, serve...), startNode(t, serve...), startNode(t, serve...)}

	var syncsOK atomic.Int64
	var failMu sync.Mutex
	failed := make([][]error, len(nodes)) // the run's failed syncs, by node
	// syncWithNode syncs d with nodes[i]; on success every edit d made
	// before it is acknowledged.
	syncWithNode := func(d *simDevice, i int, attempts int) (httpsync.Report, error) {
		d.mu.Lock()
		made := len(d.edits)
		d.mu.Unlock()
		c, err := httpsync.NewClient(d.rep, httpsync.ClientConfig{Credential: d.cred, URL: "https://" + nodes[i].addr,
			MaxAttempts: attempts, MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, NoSessionFile: true})
		if err != nil {
			return httpsync.Report{}, err
		}
		defer c.Close()
		sctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		r, err := c.SyncReport(sctx)
		if err != nil {
			err = fmt.Errorf("%s with node %d: %w", d.name, i, err)
			failMu.Lock()
			failed[i] = append(failed[i], err)
			failMu.Unlock()
			return r, err
		}
		syncsOK.Add(1)
		d.mu.Lock()
		d.acked = max(d.acked, made)
		d.mu.Unlock()
		return r, nil
	}

	// The run: each round, every device edits offline (a registration in
	// the first, then allergies on charts of its clinic it holds) and
	// syncs with a random node, syncs in flight at once bounded by
	// -cloud.workers. Once a third of the syncs are done, the node of
	// the next sync to start is killed while it serves it, and restarted.
	total := len(devices) * *killRounds
	killAt := int64(max(total/3, 1))
	var started atomic.Int64
	type restart struct {
		node int
		err  error
	}
	killed := make(chan restart, 1) // the node killed, once it is restarted
	var killOnce sync.Once
	work := make(chan *simDevice)
	var wg sync.WaitGroup
	errs := make(chan error, total)
	for range *killWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range work {
				if err := offlineEdits(ctx, d); err != nil {
					errs <- err
					continue
				}
				i := rand.IntN(len(nodes))
				if started.Add(1) == killAt {
					killOnce.Do(func() {
						// Kill node i once this sync is under way
						// (the kill is asynchronous to it), then
						// restart it on its ports.
						go func() {
							nodes[i].kill()
							killed <- restart{i, nodes[i].start()}
						}()
					})
				}
				syncWithNode(d, i, 1) // a failure leaves the edits unacknowledged: later rounds send them
			}
		}()
	}
	for range *killRounds {
		for _, d := range rand.Perm(len(devices)) {
			work <- devices[d]
		}
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	for _, d := range devices {
		d.ackedInRun = d.acked
	}
	victim := <-killed // start is bounded: the node serves or exits
	require.NoError(t, victim.err, "the killed node restarts")
	t.Logf("run: %d syncs succeeded, %d failed (node %d killed and restarted) in %v", syncsOK.Load(), len(failed[victim.node]), victim.node, time.Since(start))
	for i, errs := range failed {
		if i != victim.node {
			assert.Empty(t, errs, "syncs with node %d, which was not killed, succeed", i)
		}
		failed[i] = nil
	}

	// Convergence: every device syncs with every node, pass after pass,
	// until a pass moves no change.
	quiet := false
	for pass := 1; pass <= finalPasses && !quiet; pass++ {
		var moved atomic.Int64
		work := make(chan *simDevice)
		errs := make(chan error, len(devices)*len(nodes))
		var wg sync.WaitGroup
		for range *killWorkers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for d := range work {
					for i := range nodes {
						r, err := syncWithNode(d, i, 3)
						if err != nil {
							errs <- err
							continue
						}
						moved.Add(int64(r.ChangesSent + r.ChangesApplied))
					}
				}
			}()
		}
		for _, d := range devices {
			work <- d
		}
		close(work)
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err, "with every node up, every sync succeeds")
		}
		quiet = moved.Load() == 0
		t.Logf("pass %d: %d changes moved", pass, moved.Load())
	}
	require.True(t, quiet, "after %d passes of every device with every node, syncs still move changes", finalPasses)

	// Every device of a clinic holds every chart of the clinic with the
	// database's heads, and every edit.
	st, err := postgres.Open(ctx, conn, postgres.Config{Schema: schema})
	require.NoError(t, err)
	defer st.Close()
	byClinic := map[string][]*simDevice{}
	for _, d := range devices {
		byClinic[d.clinic] = append(byClinic[d.clinic], d)
	}
	acked, edits := 0, 0
	for clinic, ds := range byClinic {
		var charts []string
		for _, d := range ds {
			charts = append(charts, d.charts...)
		}
		for _, id := range charts {
			c, err := st.Chart(ctx, id)
			require.NoError(t, err, "the cloud holds chart %s of %s", id, clinic)
			for _, d := range ds {
				h, err := d.rep.Heads(ctx, id)
				require.NoError(t, err, "%s holds chart %s of its clinic", d.name, id)
				require.Equal(t, c.Heads, h, "%s agrees with the cloud on chart %s", d.name, id)
			}
		}
		for _, d := range ds {
			entries := map[string]map[string]bool{}
			for _, id := range charts {
				v, err := d.rep.Chart(ctx, id)
				require.NoError(t, err)
				entries[id] = map[string]bool{}
				for _, e := range v.EntryIDs(true) {
					entries[id][e] = true
				}
			}
			for _, o := range ds {
				for k, e := range o.edits {
					if e.entry == "" {
						continue
					}
					assert.True(t, entries[e.chart][e.entry], "%s holds %s's edit %d (acknowledged in the run: %v) on chart %s", d.name, o.name, k, k < o.ackedInRun, e.chart)
				}
			}
		}
		for _, d := range ds {
			acked += d.ackedInRun
			edits += len(d.edits)
		}
	}
	t.Logf("%d edits, %d of them acknowledged in the run (before the final passes), all on every device of their clinic", edits, acked)
	assert.Positive(t, acked)

	// The nodes stop cleanly, the restarted one too, and the access log
	// they all appended to, one of them killed mid-run, still verifies.
	for i, n := range nodes {
		assert.Equal(t, 0, n.stop(), "node %d exits cleanly:\n%s", i, n.logs.String())
	}
	code, _, stderr = cloud(t, append([]string{"audit", "-device", devices[0].rep.ID()}, db...)...)
	require.Equal(t, 0, code, "audit: %s", stderr)
	assert.Contains(t, stderr, "chain verified")
}

// offlineEdits makes d's edits of one round: a registration the first
// time, then an allergy on its own chart and one on a chart of its
// clinic that another device registered, when it holds one.
func offlineEdits(ctx context.Context, d *simDevice) error {
	nurse := record.Author{UserID: "u-" + d.name, Role: record.RoleNurse}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.charts) == 0 {
		id, err := d.rep.Register(ctx, nurse, record.Register{GivenName: "Patient of " + d.name, Sex: "female", EstimatedBirthYear: 1980, HomeClinic: d.clinic})
		if err != nil {
			return fmt.Errorf("%s registers: %w", d.name, err)
		}
		d.charts = append(d.charts, id)
		d.edits = append(d.edits, simEdit{chart: id})
		return nil
	}
	targets := []string{d.charts[0]}
	held, err := d.rep.Find(ctx, "", 0)
	if err != nil {
		return fmt.Errorf("%s lists its charts: %w", d.name, err)
	}
	var others []string
	for _, c := range held {
		if c.ID != d.charts[0] {
			others = append(others, c.ID)
		}
	}
	if len(others) > 0 {
		targets = append(targets, others[rand.IntN(len(others))])
	}
	for _, id := range targets {
		r, err := d.rep.Edit(ctx, id, nurse, record.AddAllergy{Substance: fmt.Sprintf("substance %s %d", d.name, len(d.edits)), Severity: "mild", Reaction: "rash"})
		if err != nil {
			return fmt.Errorf("%s edits chart %s: %w", d.name, id, err)
		}
		d.edits = append(d.edits, simEdit{chart: id, entry: r.EntryID})
	}
	return nil
}
