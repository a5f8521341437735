package audit

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var errDisk = errors.New("injected disk error")

func faultLog(t *testing.T) (*Log, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "access.log")
	l, err := Open(path, Config{})
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	e := Entry{Action: Read, Device: "0a", Chart: "c-1"}
	require.NoError(t, l.Append(context.Background(), e, e))
	return l, path
}

func TestFailedWriteIsUndone(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		write func(l *Log) func([]byte) (int, error)
		sync  func(l *Log) func() error
	}{
		{"write fails part-way", func(l *Log) func([]byte) (int, error) {
			return func(b []byte) (int, error) {
				n, _ := l.f.Write(b[:len(b)/2])
				return n, errDisk
			}
		}, nil},
		{"short write", func(l *Log) func([]byte) (int, error) {
			return func(b []byte) (int, error) { return l.f.Write(b[:len(b)-1]) }
		}, nil},
		{"fsync fails", nil, func(l *Log) func() error { return func() error { return errDisk } }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, path := faultLog(t)
			before, err := os.ReadFile(path)
			require.NoError(t, err)
			seq, head := l.Head()

			realWrite, realSync := l.write, l.sync
			if tc.write != nil {
				l.write = tc.write(l)
			}
			if tc.sync != nil {
				failing := tc.sync(l)
				once := true
				l.sync = func() error { // the append's fsync fails, the undo's works
					if once {
						once = false
						return failing()
					}
					return realSync()
				}
			}
			e := Entry{Action: Write, Device: "0b", Chart: "c-2", User: "u", Role: "nurse", Changes: 1}
			err = l.Append(ctx, e, e, e)
			require.Error(t, err, "a failed write is reported")
			assert.NotErrorIs(t, err, ErrFailed, "an undone failure does not stop the log")

			after, err := os.ReadFile(path)
			require.NoError(t, err)
			assert.Equal(t, before, after, "the partial write is cut off")
			seq2, head2 := l.Head()
			assert.Equal(t, seq, seq2, "the chain does not advance on a failed write")
			assert.Equal(t, head, head2)

			l.write, l.sync = realWrite, realSync
			require.NoError(t, l.Append(ctx, e), "the log carries on")
			final, err := os.ReadFile(path)
			require.NoError(t, err)
			n, err := Verify(ctx, bytes.NewReader(final))
			require.NoError(t, err)
			assert.Equal(t, 3, n, "seq continues from the last durable record")
		})
	}
}

func TestFailedUndoStopsTheLog(t *testing.T) {
	ctx := context.Background()
	l, path := faultLog(t)
	l.write = func(b []byte) (int, error) {
		n, _ := l.f.Write(b[:len(b)/2])
		return n, errDisk
	}
	l.cut = func(int64) error { return errDisk }
	e := Entry{Action: Read, Device: "0a", Chart: "c-1"}
	err := l.Append(ctx, e)
	require.ErrorIs(t, err, ErrFailed, "a partial write that cannot be cut off stops the log")
	require.ErrorIs(t, err, errDisk)
	l.write = l.f.Write
	err = l.Append(ctx, e)
	require.ErrorIs(t, err, ErrFailed, "later appends are refused rather than written after a torn line")
	require.NoError(t, l.Close())

	l2, err := Open(path, Config{})
	require.NoError(t, err, "reopening cuts the torn line")
	defer l2.Close()
	seq, _ := l2.Head()
	assert.Equal(t, uint64(2), seq)
	require.NoError(t, l2.Append(ctx, e))
}
