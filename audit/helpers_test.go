package audit_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/audit"
)

var t0 = time.Date(2025, 3, 4, 9, 30, 0, 0, time.UTC)

// clock is an injected Config.Now: each reading is one second after the
// last.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: t0} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Second)
	return c.t
}

// T is what the helpers need of a *testing.T or a *rapid.T.
type T interface {
	require.TestingT
	Helper()
}

func logPath(t testing.TB) string { return filepath.Join(t.TempDir(), "access.log") }

func openLog(t testing.TB, path string, clk *clock) *audit.Log {
	t.Helper()
	l, err := audit.Open(path, audit.Config{Now: clk.Now})
	require.NoError(t, err, "open the access log")
	t.Cleanup(func() { l.Close() })
	return l
}

func device(i int) string { return fmt.Sprintf("%032x", 0xd0+i) }

// sample returns a varied entry: reads without a user, writes and refusals
// with one, fields needing JSON and CSV escapes.
func sample(i int) audit.Entry {
	e := audit.Entry{
		Device:  device(i % 3),
		Clinic:  []string{"kamuga", "ol-kalou", "nyeri, \"east\""}[i%3],
		Chart:   fmt.Sprintf("c-%d", i%5),
		Changes: i % 7,
	}
	switch i % 4 {
	case 0, 1:
		e.Action = audit.Read
	case 2:
		e.Action, e.User, e.Role = audit.Write, fmt.Sprintf("u-%d", i%2), "nurse"
	case 3:
		e.Action, e.User, e.Role = audit.Refused, "u-lab", "lab-technician"
		e.Detail = `lab-technician may not prescribe; "Amoxicillin" \ 500 mg — Wanjirũ`
	}
	return e
}

// stamped returns what the log records for es appended from seq first on,
// with clock readings for zero times.
func stamped(clk *clock, first uint64, es ...audit.Entry) []audit.Entry {
	out := make([]audit.Entry, len(es))
	for i, e := range es {
		e.Seq = first + uint64(i)
		if e.Time.IsZero() {
			e.Time = clk.Now()
		}
		e.Time = e.Time.UTC()
		out[i] = e
	}
	return out
}

func exportBytes(t T, l *audit.Log, f audit.Filter, format audit.Format) ([]byte, int) {
	t.Helper()
	var buf bytes.Buffer
	n, err := l.Export(context.Background(), &buf, f, format)
	require.NoError(t, err, "export the access log")
	return buf.Bytes(), n
}

// parseJSONLines reads a JSONLines export with encoding/json, as an
// auditor's tool would.
func parseJSONLines(t T, b []byte) []audit.Entry {
	t.Helper()
	var out []audit.Entry
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var e audit.Entry
		require.NoError(t, json.Unmarshal(sc.Bytes(), &e), "an exported line is JSON")
		out = append(out, e)
	}
	require.NoError(t, sc.Err())
	return out
}

// parseCSV reads a CSV export back into entries.
func parseCSV(t T, b []byte) []audit.Entry {
	t.Helper()
	rows, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	require.NoError(t, err, "the export is CSV")
	require.NotEmpty(t, rows, "the export has a header row")
	require.Equal(t, []string{"seq", "time", "action", "device", "clinic", "user", "role", "chart", "changes", "detail"}, rows[0])
	var out []audit.Entry
	for _, r := range rows[1:] {
		seq, err := strconv.ParseUint(r[0], 10, 64)
		require.NoError(t, err)
		tm, err := time.Parse(time.RFC3339Nano, r[1])
		require.NoError(t, err)
		changes, err := strconv.Atoi(r[8])
		require.NoError(t, err)
		out = append(out, audit.Entry{Seq: seq, Time: tm, Action: audit.Action(r[2]), Device: r[3], Clinic: r[4],
			User: r[5], Role: r[6], Chart: r[7], Changes: changes, Detail: r[9]})
	}
	return out
}

func readFile(t T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return b
}

func verifyFile(t T, path string) int {
	t.Helper()
	n, err := audit.Verify(context.Background(), bytes.NewReader(readFile(t, path)))
	require.NoError(t, err, "the log's chain verifies")
	return n
}
