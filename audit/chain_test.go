package audit_test

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/audit"
)

// TestChainWritesTheFileLogsRecords builds records with Chain.Next and
// checks that they are byte for byte the file log's, and that ExportLines
// reads them back to the same head and refuses a cut record.
func TestChainWritesTheFileLogsRecords(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	l := openLog(t, logPath(t), clk)
	var c audit.Chain
	var built bytes.Buffer
	for i := range 20 {
		e := sample(i)
		e.Time = t0.Add(time.Duration(i) * time.Second)
		require.NoError(t, l.Append(ctx, e))
		line, err := c.Next(e)
		require.NoError(t, err)
		built.Write(line)
		built.WriteByte('\n')
	}
	var file bytes.Buffer
	_, err := l.Export(ctx, &file, audit.Filter{}, audit.JSONLines)
	require.NoError(t, err)
	assert.Equal(t, file.String(), built.String(), "Chain writes the records a Log writes")
	seq, head := l.Head()
	assert.Equal(t, seq, c.Seq)
	assert.Equal(t, head, c.String())

	n, end, err := audit.ExportLines(ctx, bytes.NewReader(built.Bytes()), io.Discard, audit.Filter{}, audit.JSONLines)
	require.NoError(t, err)
	assert.Equal(t, 20, n)
	assert.Equal(t, c, end, "ExportLines ends at the chain's head")

	cut := built.Bytes()[:built.Len()-3]
	_, _, err = audit.ExportLines(ctx, bytes.NewReader(cut), io.Discard, audit.Filter{}, audit.JSONLines)
	assert.ErrorIs(t, err, audit.ErrCorrupt, "a record cut short is damage")

	bad := sample(1)
	bad.Time = time.Time{}
	_, err = c.Next(bad)
	assert.ErrorIs(t, err, audit.ErrInvalidEntry, "Next needs a time")
	assert.Equal(t, end, c, "a refused entry leaves the chain as it was")
}
