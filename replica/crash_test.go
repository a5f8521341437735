package replica_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/store/sqlite"
)

// crashChildEnv names the database a child process edits until killed.
const crashChildEnv = "CHARTSYNC_REPLICA_CRASH_CHILD_DB"

// crashConfig compacts often, so that kills also land in snapshot writes.
var crashConfig = replica.Config{CompactAfter: 5, CacheCharts: 2}

// TestKill9LosesNoAcknowledgedEdit starts this test binary again as a child
// that edits charts on a SQLite replica in a loop and prints each edit once
// Edit has returned nil. It kills the child with SIGKILL at random moments,
// then reopens the database: it must pass SQLite's integrity check and hold
// every printed edit, applied to its chart. The next child carries on with
// the same database.
func TestKill9LosesNoAcknowledgedEdit(t *testing.T) {
	if path := os.Getenv(crashChildEnv); path != "" {
		crashChild(path)
		return
	}
	wantKills, budget := 50, 60*time.Second
	if testing.Short() {
		wantKills = 20
	}
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "crash.db")
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 9))

	acked := map[crdt.Hash]string{} // edit -> chart
	charts := map[string]bool{}
	kills, earlyKills := 0, 0
	start := time.Now()
	for kills < wantKills && time.Since(start) < budget {
		// Kill after a random number of acknowledged edits (none: while
		// opening), a random few microseconds into the next one.
		after := rng.IntN(30)
		if rng.IntN(5) == 0 {
			after = 0
		}
		lines, err := runAndKill(t, path, after, time.Duration(rng.IntN(3000))*time.Microsecond)
		require.NoError(t, err)
		kills++
		if len(lines) == 0 {
			earlyKills++
		}
		for _, l := range lines {
			f := strings.Fields(l)
			require.Len(t, f, 3, "child output %q", l)
			h, err := crdt.ParseHash(f[2])
			require.NoError(t, err)
			acked[h] = f[1]
			charts[f[1]] = true
		}

		// Reopen as the next process would and check.
		st, err := sqlite.Open(ctx, path)
		require.NoError(t, err, "reopen after kill %d", kills)
		require.NoError(t, st.IntegrityCheck(ctx), "integrity after kill %d", kills)
		r, err := replica.New(ctx, st, crashConfig)
		require.NoError(t, err)
		hashes := make([]crdt.Hash, 0, len(acked))
		for h := range acked {
			hashes = append(hashes, h)
		}
		requireHasChanges(t, st, hashes, fmt.Sprintf("after kill %d", kills))
		applied := map[crdt.Hash]bool{}
		for id := range charts {
			v := view(t, r, id)
			for _, e := range v.History {
				applied[e.Change] = true
			}
			heads, err := r.Heads(ctx, id)
			require.NoError(t, err)
			require.True(t, heads.Equal(v.Heads), "after kill %d chart %s: index heads %s, chart heads %s", kills, id, heads, v.Heads)
		}
		for h, id := range acked {
			require.True(t, applied[h], "after kill %d: acknowledged edit %s of chart %s is not in the chart", kills, h, id)
		}
		require.NoError(t, r.Close())
	}
	t.Logf("%d kills (%d before any edit was acknowledged), %d acknowledged edits on %d charts, all present, in %v",
		kills, earlyKills, len(acked), len(charts), time.Since(start).Round(time.Millisecond))
	require.GreaterOrEqual(t, kills, 20, "too few kills in the time allowed")
	require.NotEmpty(t, acked, "the children acknowledged no edit")
}

// runAndKill starts a child on path, waits until it has acknowledged after
// edits (or has started, for 0), waits jitter more, kills it with SIGKILL
// and returns the complete lines it printed.
func runAndKill(t *testing.T, path string, after int, jitter time.Duration) ([]string, error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKill9LosesNoAcknowledgedEdit$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	lines := make(chan struct{}, 1<<16)
	readDone := make(chan []string, 1)
	go func() {
		// Only whole lines count: an edit is acknowledged by its newline.
		var all []string
		br := bufio.NewReader(out)
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				break
			}
			all = append(all, strings.TrimSuffix(l, "\n"))
			select {
			case lines <- struct{}{}:
			default:
			}
		}
		readDone <- all
	}()
	timeout := time.NewTimer(20 * time.Second)
	defer timeout.Stop()
	for seen := 0; seen < after; {
		select {
		case <-lines:
			seen++
		case <-timeout.C:
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return nil, fmt.Errorf("child acknowledged fewer than %d edits in 20s; stderr: %s", after, stderr.String())
		case all := <-readDone:
			_ = cmd.Wait()
			return nil, fmt.Errorf("child exited after %d lines: %v; stderr: %s", len(all), cmd.ProcessState, stderr.String())
		}
	}
	time.Sleep(jitter) // a random moment inside the next edit, not a wait for anything
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return nil, err
	}
	all := <-readDone
	err = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		return nil, fmt.Errorf("child was not killed but ended with %v; stderr: %s", err, stderr.String())
	}
	return all, nil
}

// crashChild edits charts until killed (or, as a safety net, for 60s).
func crashChild(path string) {
	ctx := context.Background()
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		os.Exit(2)
	}
	r, err := replica.Open(ctx, path, crashConfig)
	if err != nil {
		fail(err)
	}
	found, err := r.Find(ctx, "", 0)
	if err != nil {
		fail(err)
	}
	var ids []string
	for _, c := range found {
		ids = append(ids, c.ID)
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(os.Getpid())))
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		if len(ids) == 0 || rng.IntN(8) == 0 {
			id, err := r.Register(ctx, nurse, record.Register{GivenName: fmt.Sprintf("P%d", i), Sex: "male", EstimatedBirthYear: 1970, HomeClinic: "c"})
			if err != nil {
				fail(err)
			}
			heads, err := r.Heads(ctx, id)
			if err != nil {
				fail(err)
			}
			ids = append(ids, id)
			os.Stdout.WriteString(fmt.Sprintf("registered %s %s\n", id, heads[0]))
			continue
		}
		id := ids[rng.IntN(len(ids))]
		var op record.Op = allergy(i)
		switch rng.IntN(3) {
		case 1:
			op = prescribe("Amoxicillin", float64(100+i))
		case 2:
			op = record.AddEncounter{Date: "2026-03-02", Complaint: fmt.Sprintf("visit %d", i), Note: strings.Repeat("note ", rng.IntN(200))}
		}
		res, err := r.Edit(ctx, id, doctor, op)
		if err != nil {
			fail(err)
		}
		os.Stdout.WriteString(fmt.Sprintf("edited %s %s\n", id, res.Change.Hash))
	}
	os.Exit(0)
}

// A replica's database is one process's at a time: a second Open fails
// with ErrInUse, naming the holder, until the first is closed.
func TestOpenTwiceIsRefused(t *testing.T) {
	ctx := context.Background()
	path := tempDB(t, "clinic")
	first, err := replica.Open(ctx, path, replica.Config{})
	require.NoError(t, err)
	_, err = replica.Open(ctx, path, replica.Config{})
	require.ErrorIs(t, err, replica.ErrInUse)
	assert.Contains(t, err.Error(), "in use by process")

	other, err := replica.Open(ctx, filepath.Join(filepath.Dir(path), "other.db"), replica.Config{})
	require.NoError(t, err, "another replica in the same directory is not held up")
	require.NoError(t, other.Close())

	require.NoError(t, first.Close())
	again, err := replica.Open(ctx, path, replica.Config{})
	require.NoError(t, err, "a closed replica can be opened again")
	require.NoError(t, again.Close())
}
