package pgaudit_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/audit"
	"github.com/chartsync/chartsync/audit/pgaudit"
	"github.com/chartsync/chartsync/replica/store/postgres/pgtest"
)

var t0 = time.Date(2026, 3, 4, 9, 30, 0, 0, time.UTC)

func device(i int) string { return fmt.Sprintf("%032x", 0xd0+i) }

func entry(i int) audit.Entry {
	return audit.Entry{Time: t0.Add(time.Duration(i) * time.Second), Action: audit.Write, Device: device(i % 7),
		Clinic: "kamuga", User: "u-achieng", Role: "nurse", Chart: fmt.Sprintf("c-%d", i), Changes: 1 + i%3,
		Detail: fmt.Sprintf(`entry "%d" \ here`, i)}
}

func open(t *testing.T, schema string) *pgaudit.Log {
	t.Helper()
	l, err := pgaudit.Open(context.Background(), pgtest.ConnString(t), pgaudit.Config{Schema: schema})
	require.NoError(t, err, "open the access log in PostgreSQL")
	t.Cleanup(func() { l.Close() })
	return l
}

// exec runs SQL in schema, as someone with write access to the tables.
func exec(t *testing.T, schema, sql string, args ...any) {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, pgtest.ConnString(t))
	require.NoError(t, err)
	defer c.Close(ctx)
	_, err = c.Exec(ctx, "SET search_path TO "+pgx.Identifier{schema}.Sanitize())
	require.NoError(t, err)
	_, err = c.Exec(ctx, sql, args...)
	require.NoError(t, err, sql)
}

func TestExportIsTheFileLogsRecords(t *testing.T) {
	ctx := context.Background()
	schema := pgtest.Schema(t)
	l := open(t, schema)
	file, err := audit.Open(t.TempDir()+"/access.log", audit.Config{})
	require.NoError(t, err)
	defer file.Close()
	for i := range 10 {
		es := []audit.Entry{entry(i), entry(100 + i)}
		require.NoError(t, l.Append(ctx, es...))
		require.NoError(t, file.Append(ctx, es...))
	}
	var got, want bytes.Buffer
	n, err := l.Export(ctx, &got, audit.Filter{}, audit.JSONLines)
	require.NoError(t, err)
	assert.Equal(t, 20, n)
	_, err = file.Export(ctx, &want, audit.Filter{}, audit.JSONLines)
	require.NoError(t, err)
	assert.Equal(t, want.String(), got.String(), "the database holds the very records a file log holds")
	v, err := audit.Verify(ctx, bytes.NewReader(got.Bytes()))
	require.NoError(t, err, "the export is a log audit.Verify accepts")
	assert.Equal(t, 20, v)

	seq, sum, err := l.Head(ctx)
	require.NoError(t, err)
	fseq, fsum := file.Head()
	assert.Equal(t, fseq, seq)
	assert.Equal(t, fsum, sum, "the head is the file log's head")

	var csv bytes.Buffer
	n, err = l.Export(ctx, &csv, audit.Filter{Chart: "c-3"}, audit.CSV)
	require.NoError(t, err)
	assert.Equal(t, 1, n, "the filter selects one chart")
	assert.Contains(t, csv.String(), "c-3")

	// Reopened (another node starting), the chain carries on.
	l2 := open(t, schema)
	require.NoError(t, l2.Append(ctx, entry(50)))
	n, err = l2.Verify(ctx)
	require.NoError(t, err)
	assert.Equal(t, 21, n)
}

func TestAppendRefusesAnInvalidEntryAndWritesNothing(t *testing.T) {
	ctx := context.Background()
	l := open(t, pgtest.Schema(t))
	require.NoError(t, l.Append(ctx, entry(1)))
	bad := entry(2)
	bad.Device = "NOT-HEX"
	err := l.Append(ctx, entry(3), bad)
	require.ErrorIs(t, err, audit.ErrInvalidEntry)
	var ee *audit.EntryError
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, 1, ee.Index, "the error names the refused entry")
	assert.Equal(t, "device", ee.Field)
	n, err := l.Verify(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, n, "nothing of the refused call was written")
}

// TestConcurrentAppendersKeepOneChain appends from three Logs (three
// pools, as three cloud nodes) of several goroutines each: the chain
// verifies and holds every entry exactly once.
func TestConcurrentAppendersKeepOneChain(t *testing.T) {
	ctx := context.Background()
	schema := pgtest.Schema(t)
	const nodes, workers, calls = 3, 4, 15
	logs := make([]*pgaudit.Log, nodes)
	for i := range logs {
		logs[i] = open(t, schema)
	}
	var wg sync.WaitGroup
	errs := make(chan error, nodes*workers*calls)
	for n := range nodes {
		for w := range workers {
			wg.Go(func() {
				for c := range calls {
					id := (n*workers+w)*calls + c
					es := []audit.Entry{entry(id)}
					if c%2 == 0 {
						second := entry(id)
						second.Chart += "-b"
						es = append(es, second)
					}
					errs <- logs[n].Append(ctx, es...)
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	want := nodes * workers * (calls + (calls+1)/2)
	var out bytes.Buffer
	n, err := logs[0].Export(ctx, &out, audit.Filter{}, audit.JSONLines)
	require.NoError(t, err, "the chain written by concurrent nodes verifies")
	assert.Equal(t, want, n, "no entry is lost")
	seen := map[string]int{}
	for line := range strings.Lines(out.String()) {
		i := strings.Index(line, `"chart":"`)
		j := strings.Index(line[i+9:], `"`)
		seen[line[i+9:i+9+j]]++
	}
	assert.Len(t, seen, want, "every entry is recorded")
	for chart, k := range seen {
		assert.Equal(t, 1, k, "chart %s recorded once", chart)
	}
}

func TestVerifyDetectsTampering(t *testing.T) {
	for _, tc := range []struct {
		name, sql string
	}{
		{"an edited record", `UPDATE audit_log SET line = convert_to(replace(convert_from(line, 'UTF8'), '"changes":2', '"changes":9'), 'UTF8') WHERE seq = 2`},
		{"an edited last record", `UPDATE audit_log SET line = convert_to(replace(convert_from(line, 'UTF8'), 'nurse', 'admin'), 'UTF8') WHERE seq = 5`},
		{"a deleted record", `DELETE FROM audit_log WHERE seq = 3`},
		{"a deleted last record", `DELETE FROM audit_log WHERE seq = 5`},
		{"two records swapped", `UPDATE audit_log a SET line = b.line FROM audit_log b WHERE (a.seq, b.seq) IN ((2, 3), (3, 2))`},
		{"a head moved back", `UPDATE audit_head SET seq = 4`},
		{"a damaged record", `UPDATE audit_log SET line = '\x7b00ff' WHERE seq = 1`},
		{"a record with a line break", `UPDATE audit_log SET line = line || '\x0a7b7d' WHERE seq = 4`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			schema := pgtest.Schema(t)
			l := open(t, schema)
			for i := range 5 {
				require.NoError(t, l.Append(ctx, entry(i)))
			}
			_, err := l.Verify(ctx)
			require.NoError(t, err)
			exec(t, schema, tc.sql)
			_, err = l.Verify(ctx)
			assert.ErrorIs(t, err, audit.ErrCorrupt, "verify detects %s", tc.name)
			var ce *audit.CorruptError
			assert.ErrorAs(t, err, &ce)
		})
	}
}
