package audit_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/audit"
)

func TestAppendReopenExportRoundTrip(t *testing.T) {
	ctx := context.Background()
	path := logPath(t)
	clk, model := newClock(), newClock()
	l := openLog(t, path, clk)

	var want []audit.Entry
	for call := range 4 {
		var es []audit.Entry
		for i := range call + 1 { // calls of 1, 2, 3 and 4 entries
			es = append(es, sample(len(want)+i))
		}
		require.NoError(t, l.Append(ctx, es...), "append a sync's entries")
		want = append(want, stamped(model, uint64(len(want)+1), es...)...)
	}
	seq, head := l.Head()
	require.NoError(t, l.Close())

	l = openLog(t, path, clk)
	seq2, head2 := l.Head()
	assert.Equal(t, uint64(len(want)), seq2, "the reopened log ends at the last seq")
	assert.Equal(t, seq, seq2)
	assert.Equal(t, head, head2, "the reopened log has the same head")

	more := sample(10)
	more.Time = time.Date(2025, 3, 5, 12, 0, 0, 123456789, time.FixedZone("EAT", 3*3600))
	require.NoError(t, l.Append(ctx, more), "append after reopening")
	want = append(want, stamped(model, uint64(len(want)+1), more)...)
	assert.Equal(t, time.Date(2025, 3, 5, 9, 0, 0, 123456789, time.UTC), want[len(want)-1].Time, "a given time is kept, in UTC")

	jl, n := exportBytes(t, l, audit.Filter{}, audit.JSONLines)
	assert.Equal(t, len(want), n, "every entry is exported")
	assert.Equal(t, want, parseJSONLines(t, jl), "JSON Lines parse back to the appended entries")
	assert.Equal(t, readFile(t, path), jl, "a JSON Lines export of everything is the log itself")
	got, err := audit.Verify(ctx, bytes.NewReader(jl))
	require.NoError(t, err, "an export of everything verifies")
	assert.Equal(t, len(want), got)

	c, n := exportBytes(t, l, audit.Filter{}, audit.CSV)
	assert.Equal(t, len(want), n)
	assert.Equal(t, want, parseCSV(t, c), "CSV parses back to the appended entries")
	assert.Equal(t, len(want), verifyFile(t, path))
}

func TestAppendAssignsSeqAndTime(t *testing.T) {
	ctx := context.Background()
	path := logPath(t)
	l := openLog(t, path, newClock())
	e := sample(2)
	e.Seq = 99 // ignored
	require.NoError(t, l.Append(ctx, e, e))
	got := parseJSONLines(t, readFile(t, path))
	require.Len(t, got, 2)
	assert.Equal(t, uint64(1), got[0].Seq, "the first entry is seq 1 whatever the caller said")
	assert.Equal(t, uint64(2), got[1].Seq)
	assert.Equal(t, t0.Add(time.Second), got[0].Time, "a zero time comes from Config.Now")
	assert.Equal(t, t0.Add(2*time.Second), got[1].Time)
}

func TestAppendNothing(t *testing.T) {
	path := logPath(t)
	l := openLog(t, path, newClock())
	require.NoError(t, l.Append(context.Background()))
	assert.Empty(t, readFile(t, path), "appending no entries writes nothing")
	seq, head := l.Head()
	assert.Zero(t, seq)
	assert.Equal(t, strings.Repeat("0", 64), head, "an empty log's head is zeros")
}

func TestEmptyLogExports(t *testing.T) {
	l := openLog(t, logPath(t), newClock())
	b, n := exportBytes(t, l, audit.Filter{}, audit.JSONLines)
	assert.Zero(t, n)
	assert.Empty(t, b)
	b, n = exportBytes(t, l, audit.Filter{}, audit.CSV)
	assert.Zero(t, n)
	assert.Equal(t, "seq,time,action,device,clinic,user,role,chart,changes,detail\n", string(b), "an empty CSV export still has its header")
	_, err := l.Export(context.Background(), &bytes.Buffer{}, audit.Filter{}, audit.Format(7))
	assert.Error(t, err, "an unknown format is refused")
}

func TestFileIsPrivate(t *testing.T) {
	path := logPath(t)
	openLog(t, path, newClock())
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "the access log is readable by its owner only")
}

func TestFilter(t *testing.T) {
	ctx := context.Background()
	l := openLog(t, logPath(t), newClock())
	es := []audit.Entry{
		{Action: audit.Read, Device: device(1), Clinic: "kamuga", Chart: "c-1", Changes: 3, Time: t0},
		{Action: audit.Write, Device: device(1), Clinic: "kamuga", User: "u-achieng", Role: "nurse", Chart: "c-1", Changes: 1, Time: t0.Add(time.Hour)},
		{Action: audit.Write, Device: device(2), Clinic: "ol-kalou", User: "u-mutua", Role: "clinician", Chart: "c-2", Changes: 2, Time: t0.Add(2 * time.Hour)},
		{Action: audit.Refused, Device: device(2), Clinic: "ol-kalou", User: "u-otieno", Role: "lab-technician", Chart: "c-1", Changes: 1, Time: t0.Add(3 * time.Hour), Detail: "may not prescribe"},
		{Action: audit.Read, Device: device(3), Clinic: "kamuga", Chart: "c-2", Changes: 5, Time: t0.Add(30 * time.Minute)}, // out of time order
	}
	require.NoError(t, l.Append(ctx, es...))

	for _, tc := range []struct {
		name   string
		filter audit.Filter
		want   []uint64
	}{
		{"zero filter matches all", audit.Filter{}, []uint64{1, 2, 3, 4, 5}},
		{"chart", audit.Filter{Chart: "c-1"}, []uint64{1, 2, 4}},
		{"device", audit.Filter{Device: device(2)}, []uint64{3, 4}},
		{"user", audit.Filter{User: "u-achieng"}, []uint64{2}},
		{"clinic", audit.Filter{Clinic: "kamuga"}, []uint64{1, 2, 5}},
		{"action", audit.Filter{Action: audit.Refused}, []uint64{4}},
		{"since is inclusive", audit.Filter{Since: t0.Add(time.Hour)}, []uint64{2, 3, 4}},
		{"until is exclusive", audit.Filter{Until: t0.Add(time.Hour)}, []uint64{1, 5}},
		{"time window", audit.Filter{Since: t0.Add(30 * time.Minute), Until: t0.Add(3 * time.Hour)}, []uint64{2, 3, 5}},
		{"since in another zone", audit.Filter{Since: t0.Add(2 * time.Hour).In(time.FixedZone("EAT", 3*3600))}, []uint64{3, 4}},
		{"chart and device", audit.Filter{Chart: "c-1", Device: device(1)}, []uint64{1, 2}},
		{"no chart matches", audit.Filter{Chart: "c-9"}, nil},
		{"empty window", audit.Filter{Since: t0.Add(time.Hour), Until: t0.Add(time.Hour)}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, format := range []audit.Format{audit.JSONLines, audit.CSV} {
				b, n := exportBytes(t, l, tc.filter, format)
				var got []audit.Entry
				if format == audit.CSV {
					got = parseCSV(t, b)
				} else {
					got = parseJSONLines(t, b)
				}
				var seqs []uint64
				for _, e := range got {
					seqs = append(seqs, e.Seq)
					assert.True(t, tc.filter.Match(e), "exported seq %d matches the filter", e.Seq)
				}
				assert.Equal(t, tc.want, seqs, "%v export selects the right entries", format)
				assert.Equal(t, len(tc.want), n, "%v export counts what it wrote", format)
			}
		})
	}
}

func TestInvalidEntriesRefused(t *testing.T) {
	ctx := context.Background()
	good := audit.Entry{Action: audit.Write, Device: device(1), Clinic: "kamuga", User: "u-1", Role: "nurse", Chart: "c-1", Changes: 1}
	for _, tc := range []struct {
		name  string
		edit  func(*audit.Entry)
		field string
	}{
		{"unknown action", func(e *audit.Entry) { e.Action = "delete" }, "action"},
		{"no action", func(e *audit.Entry) { e.Action = "" }, "action"},
		{"no device", func(e *audit.Entry) { e.Device = "" }, "device"},
		{"device not hex", func(e *audit.Entry) { e.Device = "kamuga-tablet" }, "device"},
		{"device upper-case hex", func(e *audit.Entry) { e.Device = "ABCDEF" }, "device"},
		{"device too long", func(e *audit.Entry) { e.Device = strings.Repeat("a", audit.MaxDeviceLen+1) }, "device"},
		{"no chart", func(e *audit.Entry) { e.Chart = "" }, "chart"},
		{"chart too long", func(e *audit.Entry) { e.Chart = strings.Repeat("c", audit.MaxFieldLen+1) }, "chart"},
		{"newline in user", func(e *audit.Entry) { e.User = "u-1\n{\"seq\":2}" }, "user"},
		{"carriage return in clinic", func(e *audit.Entry) { e.Clinic = "kamuga\r" }, "clinic"},
		{"NUL in role", func(e *audit.Entry) { e.Role = "nurse\x00" }, "role"},
		{"DEL in chart", func(e *audit.Entry) { e.Chart = "c\x7f1" }, "chart"},
		{"NEL in detail", func(e *audit.Entry) { e.Detail = "a\u0085b" }, "detail"},
		{"line separator in detail", func(e *audit.Entry) { e.Detail = "a\u2028b" }, "detail"},
		{"bidi override in user", func(e *audit.Entry) { e.User = "u-\u202e1" }, "user"},
		{"invalid UTF-8 in detail", func(e *audit.Entry) { e.Detail = "a\xffb" }, "detail"},
		{"detail too long", func(e *audit.Entry) { e.Detail = strings.Repeat("x", audit.MaxDetailLen+1) }, "detail"},
		{"negative changes", func(e *audit.Entry) { e.Changes = -1 }, "changes"},
		{"year 10000", func(e *audit.Entry) { e.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }, "time"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := logPath(t)
			l := openLog(t, path, newClock())
			require.NoError(t, l.Append(ctx, good))
			before := readFile(t, path)
			seq, head := l.Head()

			bad := good
			tc.edit(&bad)
			err := l.Append(ctx, good, bad)
			require.ErrorIs(t, err, audit.ErrInvalidEntry, "a bad entry is refused")
			var ee *audit.EntryError
			require.ErrorAs(t, err, &ee)
			assert.Equal(t, 1, ee.Index, "the error names the bad entry")
			assert.Equal(t, tc.field, ee.Field, "the error names the bad field")
			require.ErrorIs(t, bad.Validate(), audit.ErrInvalidEntry, "Validate refuses it too")

			assert.Equal(t, before, readFile(t, path), "nothing of a refused call is written")
			seq2, head2 := l.Head()
			assert.Equal(t, seq, seq2)
			assert.Equal(t, head, head2)
			require.NoError(t, l.Append(ctx, good), "the log carries on")
			assert.Equal(t, 2, verifyFile(t, path))
		})
	}
	assert.NoError(t, good.Validate())
	withUnicode := good
	withUnicode.User, withUnicode.Detail = "u-wanjirũ", "مريض — 患者 \"quoted\" \\ back"
	assert.NoError(t, withUnicode.Validate(), "text in any script is allowed")
}

func TestClockOutOfRangeRefused(t *testing.T) {
	path := logPath(t)
	l, err := audit.Open(path, audit.Config{Now: func() time.Time { return time.Date(12000, 1, 1, 0, 0, 0, 0, time.UTC) }})
	require.NoError(t, err)
	defer l.Close()
	err = l.Append(context.Background(), sample(0))
	require.ErrorIs(t, err, audit.ErrInvalidEntry, "a clock reading that cannot be written is refused")
	assert.Empty(t, readFile(t, path))
}

func TestClosed(t *testing.T) {
	ctx := context.Background()
	path := logPath(t)
	l, err := audit.Open(path, audit.Config{})
	require.NoError(t, err)
	require.NoError(t, l.Append(ctx, sample(0)), "append with the default clock")
	require.NoError(t, l.Close())
	assert.ErrorIs(t, l.Append(ctx, sample(1)), audit.ErrClosed)
	assert.ErrorIs(t, l.Append(ctx), audit.ErrClosed)
	_, err = l.Export(ctx, &bytes.Buffer{}, audit.Filter{}, audit.CSV)
	assert.ErrorIs(t, err, audit.ErrClosed)
	assert.ErrorIs(t, l.Close(), audit.ErrClosed, "a second Close says the log is closed")
	assert.Equal(t, 1, verifyFile(t, path))
}

func TestSecondOpenLocked(t *testing.T) {
	path := logPath(t)
	l := openLog(t, path, newClock())
	_, err := audit.Open(path, audit.Config{})
	require.ErrorIs(t, err, audit.ErrLocked, "a second writer would fork the chain")
	require.NoError(t, l.Close())
	l2, err := audit.Open(path, audit.Config{})
	require.NoError(t, err, "the lock goes with Close")
	require.NoError(t, l2.Close())
}

func TestCancelledAppendWritesNothing(t *testing.T) {
	path := logPath(t)
	l := openLog(t, path, newClock())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := l.Append(ctx, sample(0))
	require.ErrorIs(t, err, context.Canceled)
	assert.Empty(t, readFile(t, path))
	_, err = l.Export(ctx, &bytes.Buffer{}, audit.Filter{}, audit.JSONLines)
	require.ErrorIs(t, err, context.Canceled, "a cancelled export stops")
}

func TestExportDetectsChangeUnderneath(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		change func(b []byte) []byte
	}{
		{"last line edited in place", func(b []byte) []byte {
			return bytes.Replace(b, []byte(`"chart":"c-4"`), []byte(`"chart":"c-X"`), 1)
		}},
		{"last line removed", func(b []byte) []byte { return b[:bytes.LastIndexByte(b[:len(b)-1], '\n')+1] }},
		{"file cut mid-line", func(b []byte) []byte { return b[:len(b)-10] }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := logPath(t)
			l := openLog(t, path, newClock())
			for i := range 5 {
				require.NoError(t, l.Append(ctx, sample(i)))
			}
			changed := tc.change(readFile(t, path))
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			require.NoError(t, err)
			_, err = f.WriteAt(changed, 0)
			require.NoError(t, err)
			require.NoError(t, f.Truncate(int64(len(changed))))
			require.NoError(t, f.Close())

			_, err = l.Export(ctx, &bytes.Buffer{}, audit.Filter{}, audit.CSV)
			require.ErrorIs(t, err, audit.ErrCorrupt, "an export notices the log changed underneath")
			var ce *audit.CorruptError
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, 5, ce.Line, "the damage is at the last line")
		})
	}
}

func TestExportWriterError(t *testing.T) {
	l := openLog(t, logPath(t), newClock())
	require.NoError(t, l.Append(context.Background(), sample(0)))
	boom := errors.New("disk full")
	_, err := l.Export(context.Background(), failingWriter{boom}, audit.Filter{}, audit.JSONLines)
	require.ErrorIs(t, err, boom, "the writer's error is returned")
}

type failingWriter struct{ err error }

func (w failingWriter) Write([]byte) (int, error) { return 0, w.err }

func TestVerifyReaderError(t *testing.T) {
	boom := errors.New("usb stick removed")
	_, err := audit.Verify(context.Background(), errReader{boom})
	require.ErrorIs(t, err, boom, "a read error is returned")
	assert.NotErrorIs(t, err, audit.ErrCorrupt, "a read error is not corruption")
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }
