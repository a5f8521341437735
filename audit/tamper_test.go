package audit_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/audit"
)

// writeLog makes a log of n sample entries and returns its lines, each
// with its newline.
func writeLog(t *testing.T, path string, n int) [][]byte {
	t.Helper()
	l, err := audit.Open(path, audit.Config{Now: newClock().Now})
	require.NoError(t, err)
	for i := range n {
		require.NoError(t, l.Append(context.Background(), sample(i)))
	}
	require.NoError(t, l.Close())
	return bytes.SplitAfter(readFile(t, path), []byte("\n"))[:n]
}

func TestTamperDetected(t *testing.T) {
	const n = 6
	for _, tc := range []struct {
		name   string
		tamper func(lines [][]byte) [][]byte // lines 0-based
		line   int                           // 1-based line where the chain breaks
		reason string                        // a word of the reason
	}{
		{"field edited in a middle line", func(ls [][]byte) [][]byte {
			ls[2] = bytes.Replace(ls[2], []byte(`"chart":"c-2"`), []byte(`"chart":"c-9"`), 1)
			return ls
		}, 4, "prev"},
		{"changes count edited in a middle line", func(ls [][]byte) [][]byte {
			ls[3] = bytes.Replace(ls[3], []byte(`"changes":3`), []byte(`"changes":0`), 1)
			return ls
		}, 5, "prev"},
		{"line deleted", func(ls [][]byte) [][]byte { return append(ls[:2:2], ls[3:]...) }, 3, "seq"},
		{"first line deleted", func(ls [][]byte) [][]byte { return ls[1:] }, 1, "seq"},
		{"two lines swapped", func(ls [][]byte) [][]byte { ls[1], ls[2] = ls[2], ls[1]; return ls }, 2, "seq"},
		{"line duplicated", func(ls [][]byte) [][]byte {
			return append(ls[:3:3], append([][]byte{ls[2]}, ls[3:]...)...)
		}, 4, "seq"},
		{"forged line appended with a wrong prev", func(ls [][]byte) [][]byte {
			forged := bytes.Replace(ls[n-1], []byte(`{"seq":6,`), []byte(`{"seq":7,`), 1)
			return append(ls, forged)
		}, n + 1, "prev"},
		{"forged first line with a non-zero prev", func(ls [][]byte) [][]byte {
			return append([][]byte{bytes.Replace(ls[1], []byte(`{"seq":2,`), []byte(`{"seq":1,`), 1)}, ls[1:]...)
		}, 1, "prev"},
		{"middle line cut short", func(ls [][]byte) [][]byte {
			ls[2] = append(ls[2][:len(ls[2])/2:len(ls[2])/2], '\n')
			return ls
		}, 3, ""},
		{"middle line's newline removed", func(ls [][]byte) [][]byte {
			ls[2] = ls[2][:len(ls[2])-1]
			return ls
		}, 3, "after the record"},
		{"garbage line inserted", func(ls [][]byte) [][]byte {
			return append(ls[:3:3], append([][]byte{[]byte("hello auditor\n")}, ls[3:]...)...)
		}, 4, ""},
		{"blank line inserted", func(ls [][]byte) [][]byte {
			return append(ls[:3:3], append([][]byte{[]byte("\n")}, ls[3:]...)...)
		}, 4, ""},
		{"CRLF line ends", func(ls [][]byte) [][]byte {
			for i := range ls {
				ls[i] = append(ls[i][:len(ls[i])-1:len(ls[i])-1], '\r', '\n')
			}
			return ls
		}, 1, "after the record"},
		{"whitespace added inside a record", func(ls [][]byte) [][]byte {
			ls[4] = bytes.Replace(ls[4], []byte(`,"chart":`), []byte(`, "chart":`), 1)
			return ls
		}, 5, ""},
		{"duplicate key added", func(ls [][]byte) [][]byte {
			ls[4] = bytes.Replace(ls[4], []byte(`,"prev":`), []byte(`,"chart":"c-0","prev":`), 1)
			return ls
		}, 5, ""},
		{"time rewritten in another zone", func(ls [][]byte) [][]byte {
			ls[1] = bytes.Replace(ls[1], []byte(`"time":"2025-03-04T09:30:02Z"`), []byte(`"time":"2025-03-04T12:30:02+03:00"`), 1)
			return ls
		}, 2, "time"},
		{"overlong line", func(ls [][]byte) [][]byte {
			return append(ls[:1:1], append([][]byte{append(bytes.Repeat([]byte("x"), audit.MaxLineLen+1), '\n')}, ls[1:]...)...)
		}, 2, "longer"},
		{"newline-less overlong tail", func(ls [][]byte) [][]byte {
			return append(ls, bytes.Repeat([]byte("x"), audit.MaxLineLen+5))
		}, n + 1, "longer"},
		{"NUL bytes in a middle line", func(ls [][]byte) [][]byte {
			ls[2] = append(make([]byte, 20), '\n')
			return ls
		}, 3, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := logPath(t)
			lines := writeLog(t, path, n)
			tampered := bytes.Join(tc.tamper(lines), nil)
			require.NoError(t, os.WriteFile(path, tampered, 0o600))

			l, err := audit.Open(path, audit.Config{})
			if l != nil {
				l.Close()
			}
			require.ErrorIs(t, err, audit.ErrCorrupt, "Open refuses a tampered log")
			t.Log(err)
			var ce *audit.CorruptError
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, tc.line, ce.Line, "Open names the line where the chain breaks (%v)", err)
			assert.Contains(t, ce.Reason, tc.reason)
			assert.Equal(t, tampered, readFile(t, path), "Open leaves a corrupt log as it is")

			good, err := audit.Verify(context.Background(), bytes.NewReader(tampered))
			require.ErrorAs(t, err, &ce, "Verify refuses a tampered log")
			assert.Equal(t, tc.line, ce.Line, "Verify names the same line")
			assert.Equal(t, tc.line-1, good, "Verify counts the good records before it")
		})
	}
}

// logBuffer collects what a Log tells its Logger.
func logBuffer() (*slog.Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	return slog.New(slog.NewTextHandler(&buf, nil)), &buf
}

func TestTornTailCut(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		tail func(next []byte) []byte // what a crash left of the next append
	}{
		{"half a line", func(next []byte) []byte { return next[:len(next)/2] }},
		{"a whole line but its newline", func(next []byte) []byte { return next[:len(next)-1] }},
		{"one byte", func(next []byte) []byte { return next[:1] }},
		{"zeros from a crashed filesystem", func(next []byte) []byte { return make([]byte, 300) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := logPath(t)
			lines := writeLog(t, path, 4)
			good := readFile(t, path)

			// What the next append would write: a copy of the log with one
			// more entry, cut short.
			other := logPath(t)
			require.NoError(t, os.WriteFile(other, good, 0o600))
			full := writeMore(t, other, 1)
			next := full[len(good):]
			require.True(t, strings.HasSuffix(string(next), "\n"))
			torn := append(append([]byte{}, good...), tc.tail(next)...)
			require.NoError(t, os.WriteFile(path, torn, 0o600))

			_, err := audit.Verify(ctx, bytes.NewReader(torn))
			var ce *audit.CorruptError
			require.ErrorAs(t, err, &ce, "Verify reports a torn tail to an auditor")
			assert.Equal(t, len(lines)+1, ce.Line)

			logger, logged := logBuffer()
			l, err := audit.Open(path, audit.Config{Now: newClock().Now, Logger: logger})
			require.NoError(t, err, "Open cuts a torn last line")
			defer l.Close()
			assert.Contains(t, logged.String(), "torn last line", "the cut is logged")
			assert.Contains(t, logged.String(), "line=5")
			assert.Equal(t, good, readFile(t, path), "only the torn line is cut")
			seq, _ := l.Head()
			assert.Equal(t, uint64(4), seq)

			require.NoError(t, l.Append(ctx, sample(4), sample(5)), "the log carries on")
			assert.Equal(t, 6, verifyFile(t, path), "the chain verifies after the cut")
		})
	}
}

func TestTornTailOfAMultiEntryAppend(t *testing.T) {
	path := logPath(t)
	writeLog(t, path, 2)
	before := readFile(t, path)
	// An append of three entries cut in its third line: the first two
	// lines are whole and stay, the third goes.
	other := logPath(t)
	require.NoError(t, os.WriteFile(other, before, 0o600))
	full := writeMore(t, other, 3)
	require.NoError(t, os.WriteFile(path, full[:len(full)-20], 0o600))

	l, err := audit.Open(path, audit.Config{})
	require.NoError(t, err)
	defer l.Close()
	seq, _ := l.Head()
	assert.Equal(t, uint64(4), seq, "whole lines of a torn append stay")
	assert.Equal(t, 4, verifyFile(t, path))
}

// writeMore appends n sample entries in one call to the log at path and
// returns the file.
func writeMore(t *testing.T, path string, n int) []byte {
	t.Helper()
	l, err := audit.Open(path, audit.Config{Now: newClock().Now})
	require.NoError(t, err)
	es := make([]audit.Entry, n)
	for i := range es {
		es[i] = sample(10 + i)
	}
	require.NoError(t, l.Append(context.Background(), es...))
	require.NoError(t, l.Close())
	return readFile(t, path)
}
